/*
 * write.h - what a write means, decided once for every backend.
 *
 * A handler fills an sd_write (a create, an update, a revocation ...) and
 * hands it to the store. The store's writer opens a transaction (and a
 * savepoint per write) and calls sd_write_apply(), which runs the session
 * policy over the backend's row operations: the per-user cap and its
 * evictions, token rotation and reuse detection, renewal on a raised
 * privilege, the audit events and their names. A backend only stores rows
 * (sd_rows_ops); it never decides what a write means.
 *
 * Every outcome that something outside the database must learn about is
 * recorded on the write as an effect, by the same code that causes it: the
 * session put (created, updated, rotated), its expiry moved (a rolling
 * touch), or ended (revoked, evicted, reused, expired). The embedded
 * store's validation index and the Redis cache both follow the effects, so
 * an outcome cannot be missed by one of them by construction (an eviction
 * through the cache was, before: docs/architecture.md, "The write path").
 *
 * No I/O here beyond the row operations; nothing of HTTP, SQL or Redis.
 */
#ifndef SD_WRITE_H
#define SD_WRITE_H

#include "session/session.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sd_write sd_write;

typedef enum sd_write_kind {
    SD_W_CREATE,     /* insert w->session; at w->policy's per-user cap, first end the user's
                        least recently seen sessions (reason evicted) until the new one fits,
                        or refuse (SD_ELIMIT) */
    SD_W_UPDATE,     /* read w->id, run w->patch through sd_patch_apply, write back */
    SD_W_END,        /* move w->id to history with w->reason (only if w->user_id owns it,
                        when set) */
    SD_W_END_USER,   /* end every active session of w->user_id except w->except_id */
    SD_W_BULK_END,   /* end w->ids[] and every session of w->users[] */
    SD_W_TOUCH,      /* rolling expiry: raise expiry to w->touch_expiry (not awaited) */
    SD_W_SWEEP,      /* move up to w->limit expired sessions to history */
    SD_W_PURGE,      /* delete up to w->limit history rows that ended before w->before */
    SD_W_ROTATE,     /* replace the token of w->id: w->presented_hash -> w->session.token_hash */
    SD_W_REENCRYPT,  /* seal under the newest key up to w->limit rows of table w->table
                        (0 active, 1 history) after row w->cursor; w->cursor moves on */
    SD_W_REUSE,      /* end w->id (reason token_reuse) when w->presented_hash is a token it
                        retired longer than the refresh grace ago (a retired token came back
                        on a validation). Decided as for ROTATE, but never rotates:
                        SD_EREUSED when it ended the session; else nothing changes (SD_ECONFLICT
                        within the grace or for the current token, SD_EMISMATCH not a token of
                        this session, SD_ENOTFOUND the session has ended) */
    SD_W_NOT_BEFORE, /* raise the global not-before to w->before (never lowered; out: the
                        value in force) and audit it (not_before_set) with the count of
                        active sessions created before it (w->affected). Ends no row:
                        validation compares each session's creation with the value */
    SD_W_TRIAGE,     /* incident response: read up to w->limit active rows after row
                        w->cursor (out: the last read; w->limit out: rows read, fewer
                        than asked when the table is done) and end those w->triage
                        matches that w->not_before has not cut off (reason
                        incident_revoked); the last batch audits
                        incident_revoked with w->total + w->affected. With w->dry_run:
                        counts the matches in w->affected, ends none, audits nothing */
    SD_W_SIGNAL,     /* a validation saw w->signals on w->id (session/anomaly.h): record them
                        on the session (attrs, version + 1) and audit each fired one
                        (anomaly_detected); not awaited. SD_ENOTFOUND when it has ended */
    SD_W_REFUSAL,    /* the geofence refused a create or a validation: audit it
                        (geofence_refused, reason w->reason, session w->id or none, user
                        w->user_id), so it is as durable as the other events (the webhooks
                        deliver it); changes no row; not awaited */
} sd_write_kind;

/* One outcome of a write for the world outside the database. */
typedef enum sd_effect_kind {
    SD_FX_PUT,   /* w->session is the session's new state (create, update, rotate) */
    SD_FX_TOUCH, /* its expiry moved to `expiry` (rolling), still at `version` */
    SD_FX_END,   /* it ended (or, for an END, was asked to: see sd_effect_required) */
} sd_effect_kind;

typedef struct sd_effect {
    char id[SD_ID_LEN + 1];
    unsigned char kind; /* sd_effect_kind */
    bool expired;       /* END by the sweeper: a cache entry checks expiry itself */
    bool gone;          /* END: its row left the table (an intent alone leaves it) */
    int64_t version;    /* PUT, TOUCH: the session's version after the write */
    int64_t expiry;     /* TOUCH */
} sd_effect;

struct sd_write {
    /* in */
    sd_write_kind kind;
    int64_t now;
    sd_session session; /* CREATE: the new session (owned by the write);
                           UPDATE, ROTATE, SIGNAL: the result on success (owned by the
                           write) */
    char id[SD_ID_LEN + 1];
    const char *user_id; /* END_USER; END: when set, the session's owner (self-service:
                            another user's session is SD_ENOTFOUND, no effect); borrowed */
    const char *except_id;
    const char *const *ids;
    size_t n_ids;
    const char *const *users;
    size_t n_users;
    const sd_patch *patch; /* UPDATE; borrowed */
    const sd_policy *policy;
    const char *reason;        /* END: "revoked" */
    const sd_precond *precond; /* END: If-Match, If-None-Match on the session (NULL: none;
                                  UPDATE's are in its patch); borrowed */
    int64_t touch_expiry;      /* TOUCH: applied only while the session still has */
    int64_t touch_version;     /* this version (a PUT since the read wins) */
    unsigned char presented_hash[SD_HASH_LEN]; /* ROTATE, REUSE: the token the client holds */
    bool renew_possible; /* UPDATE: renew_hash is the token to switch to if the update */
    bool renewed;        /* raises privilege (sd_privilege_raised); out: it did */
    unsigned char renew_hash[SD_HASH_LEN];
    int64_t before;                 /* PURGE; NOT_BEFORE (in: wanted, out: in force) */
    int64_t not_before;             /* UPDATE, ROTATE, REUSE: a session created before it has ended
                                       for every write (the global not-before, 0: none) */
    int limit;                      /* SWEEP, PURGE, REENCRYPT (out: rows scanned) */
    int table;                      /* REENCRYPT */
    int64_t cursor;                 /* REENCRYPT, TRIAGE (in and out) */
    const struct sd_triage *triage; /* TRIAGE: which sessions; borrowed */
    const struct sd_signals *signals; /* CREATE (NULL: none computed), SIGNAL: the anomaly
                                         signals to record; borrowed */
    int64_t total;                    /* TRIAGE: sessions the earlier batches ended */
    bool dry_run;                     /* TRIAGE: count the matches only */
    char actor[64];   /* who asked (API key id), for the audit events; "" when none */
    char address[48]; /* the client's address; "" when none */

    /* out */
    int rc;                /* 0, SD_ENOTFOUND, SD_ECONFLICT, SD_EINVALID, SD_ELIMIT, SD_EREUSED,
                              SD_EMISMATCH, SD_EUNAVAILABLE, or SD_EBUSY: the writer's queue is
                              full (shed; retry later) */
    int64_t affected;      /* rows ended/removed (CREATE: sessions evicted) */
    char detail[256];      /* for SD_EINVALID, and SD_ECONFLICT from a precondition: the
                              sentence for the client */
    int64_t version_found; /* SD_ECONFLICT from a precondition (UPDATE, END): the session's
                              version, its ETag; else 0 */
    /* The effects, in the order they happened; malloc'd by sd_write_effect and
     * freed by the store wrapper before w->done runs (done never sees them).
     * After a failed write they may name changes that were undone. */
    sd_effect *effects;
    size_t n_effects, cap_effects;
    int64_t delta; /* change in the number of active rows (the writer's count) */

    /* completion: called exactly once, on a backend thread */
    void (*done)(sd_write *w);
    void *udata;

    sd_write *next;                    /* backend-private queue link */
    int64_t hold_until_ns;             /* writer-private: fails past this while the store is down */
    int64_t t_submit_ns;               /* wrapper-private */
    void (*wrapped_done)(sd_write *w); /* wrapper-private */
    struct sd_cache *cache;            /* wrapper-private */
    struct sd_store_handle *handle;    /* wrapper-private */
};

/* How rows end: one session (id) or a user's (user_id, but except_id). The
 * backend moves each to history with `reason` and writes `event` for it
 * (with the write's time, actor and address), and reports each id it ended
 * through sd_write_ended. */
typedef struct sd_end_rows {
    const char *id;
    const char *user_id;
    const char *except_id;
    const char *reason;
    const char *event;
} sd_end_rows;

/* The row operations a backend provides to its writer, inside the open
 * transaction (and the write's savepoint). `rows` is the backend's writer
 * context. Each returns 0, SD_ENOTFOUND where said, SD_ENOMEM, or
 * SD_EUNAVAILABLE (the statement failed: the writer rolls the write back). */
typedef struct sd_rows_ops {
    /* The active row id, whatever its expiry; PostgreSQL locks it to the end
     * of the transaction. SD_ENOTFOUND when there is none. */
    int (*select)(void *rows, const char *id, sd_session *out);
    /* Serialises the writes of one user across writers (NULL: one writer). */
    int (*lock_user)(void *rows, const char *user_id);
    /* The user's active sessions (expiry > now): how many, and the ids of
     * the `limit` least recently seen into ids (*n of them). */
    int (*count_user)(void *rows, const char *user_id, int64_t now, int64_t *count);
    /* Optional (NULL: count_user decides): whether the user has fewer than
     * max active sessions. A pipelining backend may answer true at once and
     * check it before the batch is acknowledged (a false answer found late
     * runs the batch again, one statement at a time); false sends the
     * domain to count_user and oldest_user. */
    int (*user_below)(void *rows, const char *user_id, int64_t now, int64_t max, bool *below);
    int (*oldest_user)(void *rows, const char *user_id, int64_t now, size_t limit,
                       char (*ids)[SD_ID_LEN + 1], size_t *n);
    /* When hash was retired from session id: *found and *at. */
    int (*find_retired)(void *rows, const unsigned char hash[SD_HASH_LEN], const char *id,
                        bool *found, int64_t *at);
    /* Inserts s and its `event` (a UNIQUE clash answers SD_EUNAVAILABLE). */
    int (*insert)(void *rows, const sd_write *w, const sd_session *s, const char *event);
    /* Writes s's mutable fields (last_seen, expiry, idle_ttl, version,
     * attrs) where its version is still read_version; *n rows changed.
     * With an event (not NULL), also that audit event, as event() writes
     * it, unless *n is 0 (then no event is kept). */
    int (*update)(void *rows, const sd_write *w, const sd_session *s, int64_t read_version,
                  const char *event, int64_t *n);
    /* Keeps old_hash in the retired tokens (id, at), then sets the session's
     * token to new_hash, and its version + 1 with bump. */
    int (*retire)(void *rows, const char *id, const unsigned char old_hash[SD_HASH_LEN],
                  const unsigned char new_hash[SD_HASH_LEN], int64_t at, bool bump);
    /* One audit event for the write (its time, actor and address). */
    int (*event)(void *rows, const sd_write *w, const char *event, const char *id,
                 const char *user_id, const char *reason);
    /* Ends the active (expiry > w->now) rows e names. */
    int (*end)(void *rows, sd_write *w, const sd_end_rows *e);
    /* TOUCH's conditional update; *n rows changed. */
    int (*touch)(void *rows, const sd_write *w, int64_t *n);
    /* Ends up to limit expired rows (reason and event "expired", at their
     * own expiry), each reported through sd_write_ended. */
    int (*sweep)(void *rows, sd_write *w);
    /* Deletes up to limit history rows, retired tokens and events older than
     * before; *n history rows. */
    int (*purge)(void *rows, int64_t before, int limit, int64_t *n);
    /* Re-seals attrs of up to w->limit rows of w->table after w->cursor. */
    int (*reencrypt)(void *rows, sd_write *w);
    /* The global not-before (ms since the epoch): raised to *value unless it
     * is already later; *value gets the one in force. */
    int (*raise_not_before)(void *rows, int64_t *value);
    /* How many active (expiry > now) sessions were created before `before`. */
    int (*count_before)(void *rows, int64_t before, int64_t now, int64_t *n);
    /* Up to limit active (expiry > now) sessions, with attrs, of rows after
     * row cursor, in row order: *out a malloc'd array of *n (sd_sessions
     * cleared and freed by the caller), *last the last row read. */
    int (*scan)(void *rows, int64_t cursor, int limit, int64_t now, sd_session **out, size_t *n,
                int64_t *last);
} sd_rows_ops;

/* Runs write w over the backend's rows: the one place that decides what each
 * kind of write does. Returns w's result code (also in w->rc); any code but
 * the outcomes listed for w->rc means the writer must roll the write back. */
int sd_write_apply(const sd_rows_ops *ops, void *rows, sd_write *w);

/* True for a result the writer keeps (releases the savepoint): a decision
 * of the policy, not a failure. */
bool sd_write_kept(int rc);

/* Whether w can run again after its batch was rolled back (sd_write_rewind):
 * the session writes can; the upkeep and admin writes whose inputs move as
 * they run (sweep, purge, re-encryption, triage, not-before) cannot. */
bool sd_write_rewindable(const sd_write *w);

/* The id of the row the write reads first (the rows' select, under a row
 * lock where the backend has them), or NULL: for a backend that reads a
 * batch's rows ahead, in one round trip, before its writes run. */
const char *sd_write_reads(const sd_write *w);
/* Puts a rewindable w back as it was before sd_write_apply ran: its outputs
 * and effects dropped, its inputs kept (a create's session; a rotation's
 * new token hash). */
void sd_write_rewind(sd_write *w);
/* Whether, once w committed (rc 0), w->session is the session's row as it
 * committed: a create's, an update's, a rotation's, a signal's. */
bool sd_write_has_row(const sd_write *w);

/* Records an effect on w; SD_ENOMEM when it cannot. */
int sd_write_effect(sd_write *w, sd_effect_kind kind, const char *id, int64_t version,
                    int64_t expiry);
/* For backends, from sd_rows_ops.end and .sweep: row id has ended (counted
 * in w->affected and w->delta). */
int sd_write_ended(sd_write *w, const char *id, bool expired);
void sd_write_free_effects(sd_write *w);

/* Whether an invalidation of effect e that fails must hold w's
 * acknowledgement back (fence): the change is committed and acknowledged.
 * A touch never must (only an earlier expiry can be stale), nor a create's
 * put (no entry of a new id can be stale), nor an expiry; an END's
 * tombstone is wanted also when the session was not found (a retry of an
 * END whose outcome was unknown). */
bool sd_effect_required(const sd_write *w, const sd_effect *e);

#endif
