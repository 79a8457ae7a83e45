/*
 * store.h - the storage interface: what every backend (SQLite now,
 * PostgreSQL later) provides, as a const struct of function pointers.
 *
 * Reads are synchronous and run on the caller's thread (a backend keeps one
 * read connection per thread). Writes are asynchronous: the caller fills an
 * sd_write, hands it to sd_store_write(), and gets it back through
 * w->done(w) on a backend thread once the write is durable (fsync'd) or has
 * failed. Concurrent writes share one transaction and one fsync (group
 * commit). The backend knows nothing of HTTP; handlers know nothing of SQL.
 *
 * Callers use the sd_store_* wrappers below, never the ops directly: the
 * wrappers are the one place for metrics and fault injection.
 */
#ifndef SD_STORE_H
#define SD_STORE_H

#include "metrics/metrics.h"
#include "session/session.h"
#include "session/write.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct sd_store sd_store; /* opaque, owned by the backend */
/* sd_write, its kinds and effects, and the row operations a backend's
 * writer provides are declared in session/write.h: what a write means is
 * decided there, once, and every backend follows it. */

/* A keyset cursor for listing a user's sessions: (lastSeen, id) of the last
 * row of the previous page. */
typedef struct sd_cursor {
    int64_t last_seen;
    char id[SD_ID_LEN + 1];
} sd_cursor;

/* One event of the store's audit trail: a lifecycle change (created,
 * updated, refreshed, renewed, revoked, expired, evicted,
 * token_reuse_detected), written in the same transaction as the change, so
 * that it exists exactly when the change does. Empty strings for none. */
typedef struct sd_event {
    int64_t seq;  /* increasing, never reused */
    int64_t time; /* ms since the epoch */
    char event[32];
    char session_id[SD_ID_LEN + 1];
    char user_id[257]; /* userId is at most 256 bytes (checked by the API) */
    char actor[64];
    char address[48];
    char reason[32];
    int64_t tx; /* the revocation feed's order (sd_feed_cursor); 0 elsewhere */
} sd_event;

/* A position in the revocation feed (the ended op): the writing
 * transaction's id where commit order and seq order can differ (PostgreSQL,
 * one writer per replica), 0 where they cannot (SQLite, one writer), then
 * the event's seq. The feed advances in (tx, seq) order. */
typedef struct sd_feed_cursor {
    int64_t tx;
    int64_t seq;
} sd_feed_cursor;

typedef enum sd_event_scope {
    SD_EVENTS_ALL,     /* every event after the cursor (the audit log's feed) */
    SD_EVENTS_SESSION, /* one session's */
    SD_EVENTS_USER,    /* one user's */
} sd_event_scope;

/* sd_store_stats (what the store counts) is declared in metrics/metrics.h,
 * which renders it, beside the store operations it times. */

typedef struct sd_store_options {
    const struct sd_keyring *keys; /* encryption at rest (store/crypt.h); NULL: plain */
    const char
        *origin; /* this replica's id in a shared store (its audit feed): [A-Za-z0-9_-]{1,64} */
    int commit_batch;
    int max_queued; /* writes waiting for the writer; beyond, SD_EBUSY (0: 10000) */
    /* A shared store's synchronous standby, read for the fence values while
     * the primary cannot be (PostgreSQL: postgres_standby.c); NULL: none. */
    const char *standby;
    /* How long a write waits for a shared store it cannot reach (a
     * failover) before it fails (0: at once); store/writer.h. */
    int hold_ms;
} sd_store_options;

/* What a backend is, for the callers that must know (never which one it
 * is): sd_store_ops.caps. */
enum {
    SD_STORE_LOCAL = 1,        /* lives in this process's data directory; one server owns it */
    SD_STORE_SHARED = 2,       /* several replicas share it: each needs its own replica id */
    SD_STORE_MEMORY_READS = 4, /* validation reads answer from memory: no handler pool needed */
};

typedef struct sd_store_ops {
    const char *name;
    unsigned caps; /* SD_STORE_* */
    /* Opens the store at location (for sqlite: a data directory). */
    int (*open)(const char *location, const sd_store_options *opt, sd_store **out, char *err,
                size_t errlen);
    /* sessiond check --connect: reaches the store at location as open
     * would, changing nothing (nothing is created, migrated or locked), and
     * writes one line about what it found into out (never a password). 0
     * when a start could open it, else an SD_E* value with the reason in
     * out. */
    int (*probe)(const char *location, char *out, size_t outlen);
    /* Finishes every queued write, then closes. */
    void (*close)(sd_store *st);
    /* The server is stopping: writes waiting for an unreachable database
     * (--write-hold) fail now, and no new one waits. NULL: none wait. */
    void (*drain)(sd_store *st);
    /* Reads. out is filled on 0 and owned by the caller (sd_session_clear).
     * They return rows of the active table whatever their expiry: the domain
     * decides validity. want_attrs=false skips the optional fields.
     * out arrives zeroed but for user_id_buf and user_id_cap (the wrappers
     * set them): a backend may put the user id there (sd_session_set_user_id). */
    int (*get)(sd_store *st, const char *id, bool want_attrs, sd_session *out);
    int (*get_by_token)(sd_store *st, const unsigned char hash[SD_HASH_LEN], bool want_attrs,
                        sd_session *out);
    /* A token retired by a rotation or a renewal (rotated_tokens, kept as
     * long as history): the session it belonged to (session_id, filled on 0)
     * and when it was retired (ms since the epoch). SD_ENOTFOUND when the
     * hash was never retired or has been purged. Whether that session is
     * still active is not looked at. One indexed read, no write. */
    int (*get_rotated)(sd_store *st, const unsigned char hash[SD_HASH_LEN],
                       char session_id[SD_ID_LEN + 1], int64_t *rotated_at);
    /* Active (expiry > now) sessions of a user, lastSeen descending, after
     * the cursor when given; *out is a malloc'd array of *n sessions. */
    int (*list_user)(sd_store *st, const char *user_id, int64_t now, const sd_cursor *after,
                     int limit, sd_session **out, size_t *n);
    void (*write)(sd_store *st, sd_write *w);
    /* Audit events (of the session or user named by key): with before 0,
     * those with seq > after, oldest first; with before > 0 (SESSION and
     * USER only), those with seq < before, newest first (after unused). At
     * most limit; *out is a malloc'd array of *n. Events are kept for the
     * history retention. */
    int (*events)(sd_store *st, sd_event_scope scope, const char *key, int64_t after,
                  int64_t before, int limit, sd_event **out, size_t *n);
    /* The revocation feed: ending events ("revoked", "evicted"; not
     * "expired") of every origin, after the cursor in (tx, seq) order, with
     * time >= since_time (ms), at most limit; *out is a malloc'd array of
     * *n, each with its tx. Only events that no transaction still running
     * can come before are listed, so a cursor taken from the last one skips
     * nothing that commits later, on any replica. */
    int (*ended)(sd_store *st, const sd_feed_cursor *after, int64_t since_time, int limit,
                 sd_event **out, size_t *n);
    /* The webhook outbox's feed (webhook/webhook.c): every event of every
     * origin after the cursor, in (tx, seq) order, at most limit, each with
     * its tx; the same guarantee as ended (a cursor taken from the last one
     * skips nothing that commits later). Read on the caller's connection. */
    int (*feed)(sd_store *st, const sd_feed_cursor *after, int limit, sd_event **out, size_t *n);
    /* A named consumer's durable cursor into the feed (one per webhook),
     * with a lease so that one replica at a time consumes it: takes or
     * renews the lease of name for this replica for lease_ms (0 gives it up
     * at once), stores *save when given, and fills *cursor with the stored
     * cursor. A name seen for the first time starts at the feed's current
     * end. SD_EBUSY while another replica's lease runs; SD_EUNAVAILABLE
     * when the store cannot say. name: [A-Za-z0-9_-]{1,64}. The embedded
     * store (one process owns its directory) keeps it in a file there. */
    int (*outbox_cursor)(sd_store *st, const char *name, int64_t lease_ms,
                         const sd_feed_cursor *save, sd_feed_cursor *cursor);
    /* 0 when the store can take requests. */
    int (*ready)(sd_store *st);
    void (*stats)(sd_store *st, sd_store_stats *out);
    /* The cache tier's epoch (store/cache.h): read, or increment durably
     * (bump) and read. NULL when the backend cannot share one (sqlite). */
    int (*cache_epoch)(sd_store *st, bool bump, int64_t *epoch);
    /* The global not-before in the database (ms since the epoch, 0: none),
     * read on the caller's thread (store/notbefore.h keeps it in memory). */
    int (*not_before)(sd_store *st, int64_t *value);
    /* `sessiond backup`: copies the live store at location into dest (a new
     * directory); a sentence in err on failure. NULL when the database has
     * its own tools (PostgreSQL: pg_dump, base backups). */
    int (*backup)(const char *location, const char *dest, char *err, size_t errlen);
} sd_store_ops;

extern const sd_store_ops sd_store_sqlite;
extern const sd_store_ops sd_store_postgres;

/* Picks a backend by name from the compiled-in list; NULL when unknown. */
const sd_store_ops *sd_store_find(const char *name);

/* Picks the backend the --store setting names: "sqlite" (the embedded store
 * in data_dir) or a PostgreSQL connection string (postgres://...,
 * postgresql://... or libpq key=value pairs). *location gets what to pass to
 * open (data_dir or the setting itself; borrowed). NULL when unrecognised. */
const sd_store_ops *sd_store_from_setting(const char *setting, const char *data_dir,
                                          const char **location);

/* ---- the wrappers every caller uses ------------------------------------ */

typedef struct sd_store_handle sd_store_handle;

int sd_store_open(const sd_store_ops *ops, const char *location, const sd_store_options *opt,
                  sd_store_handle **out, char *err, size_t errlen);
void sd_store_close(sd_store_handle *h);
/* At shutdown, before waiting for the requests in flight: no write waits
 * any longer for a database that cannot be reached. */
void sd_store_drain(sd_store_handle *h);
/* Whether a --cache of url could be put in front of ops's store (it must
 * provide cache_epoch; url must parse): 0, else SD_EINVALID with the
 * sentence in err. Checked before the store opens (startup.c) and again by
 * sd_store_attach_cache. */
int sd_store_cache_check(const sd_store_ops *ops, const char *url, char *err, size_t errlen);
/* Puts the Redis cache tier (store/cache.h) in front of the backend's
 * validation reads, with write-through after every commit. url and password
 * are borrowed for the call. The backend must provide cache_epoch. */
int sd_store_attach_cache(sd_store_handle *h, const char *url, const char *password, int timeout_ms,
                          int64_t tombstone_ms, char *err, size_t errlen);
/* The reads: out is filled on 0 and owned by the caller (sd_session_clear).
 * uid_buf (uid_cap bytes, the caller's, outliving out; NULL and 0: none) is
 * where the user id may go instead of a malloc: validation passes one, so
 * the embedded store's index answers without a heap call. */
int sd_store_get(sd_store_handle *h, const char *id, bool want_attrs, sd_session *out,
                 char *uid_buf, size_t uid_cap);
int sd_store_get_by_token(sd_store_handle *h, const unsigned char hash[SD_HASH_LEN],
                          bool want_attrs, sd_session *out, char *uid_buf, size_t uid_cap);
/* The backend's get_rotated (never the cache: retired tokens are not
 * cached). */
int sd_store_get_rotated(sd_store_handle *h, const unsigned char hash[SD_HASH_LEN],
                         char session_id[SD_ID_LEN + 1], int64_t *rotated_at);
int sd_store_list_user(sd_store_handle *h, const char *user_id, int64_t now, const sd_cursor *after,
                       int limit, sd_session **out, size_t *n);
void sd_store_write(sd_store_handle *h, sd_write *w);
/* This replica's id, kept in data_dir/replica-id (made on first use: 16
 * random hex digits), so that it survives restarts. 0 or an error. */
int sd_store_replica_id(const char *data_dir, char out[17]);
int sd_store_events(sd_store_handle *h, sd_event_scope scope, const char *key, int64_t after,
                    int64_t before, int limit, sd_event **out, size_t *n);
/* The backend's ended op (never the cache). */
int sd_store_ended(sd_store_handle *h, const sd_feed_cursor *after, int64_t since_time, int limit,
                   sd_event **out, size_t *n);
/* The backend's feed and outbox_cursor ops (webhook/webhook.c). */
int sd_store_feed(sd_store_handle *h, const sd_feed_cursor *after, int limit, sd_event **out,
                  size_t *n);
int sd_store_outbox_cursor(sd_store_handle *h, const char *name, int64_t lease_ms,
                           const sd_feed_cursor *save, sd_feed_cursor *cursor);
int sd_store_ready(sd_store_handle *h);
/* The global not-before in force (ms since the epoch; 0: none) for a
 * validation starting now: an atomic load, or, on a shared store whose
 * last read is no longer fresh, one read on the caller's thread
 * (store/notbefore.h). 0, or SD_EUNAVAILABLE when it cannot be known. */
int sd_store_not_before(sd_store_handle *h, int64_t *value);
void sd_store_get_stats(sd_store_handle *h, sd_store_stats *out);

/* Frees an array from list_user. */
void sd_sessions_free(sd_session *v, size_t n);

#endif
