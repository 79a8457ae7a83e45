/*
 * sqlite_internal.h - what the embedded store's files share and nothing
 * else includes: the store struct, the statements' numbers and text, and
 * the functions that cross files (sq__*). sqlite.c opens and closes the
 * store; sqlite_sql.c holds the schema and statements; sqlite_read.c the
 * read connections and reads; sqlite_rows.c the row operations and the
 * transaction the shared writer runs.
 */
#ifndef SD_SQLITE_INTERNAL_H
#define SD_SQLITE_INTERNAL_H

#include "store/crypt.h"
#include "store/index.h"
#include "store/store.h"
#include "store/writer.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COLS                                                                                       \
    "id, token_hash, user_id, created_at, last_seen, expiry, absolute_expiry, idle_ttl, version, " \
    "attrs, binding, auth_time, acr"
#define EV_COLS "seq, at, event, session_id, user_id, actor, address, reason"

enum {
    W_BEGIN,
    W_COMMIT,
    W_ROLLBACK,
    W_SAVEPOINT,
    W_RELEASE,
    W_ROLLBACK_TO,
    W_BATCH,
    W_BATCH_RELEASE,
    W_BATCH_ROLLBACK,
    W_REDO_LSN,
    W_INSERT,
    W_SELECT,
    W_UPDATE,
    W_END_ONE_COPY,
    W_END_ONE_DEL,
    W_END_USER_COPY,
    W_END_USER_DEL,
    W_TOUCH,
    W_SWEEP_COPY,
    W_SWEEP_DEL,
    W_PURGE,
    W_LOAD,
    W_USER_COUNT,
    W_USER_OLDEST,
    W_ROT_FIND,
    W_ROT_ADD,
    W_ROT_SET,
    W_ROT_PURGE,
    W_TOKEN_SET,
    W_EV_ONE,
    W_EV_END_ONE,
    W_EV_END_USER,
    W_EV_SWEEP,
    W_EV_PURGE,
    W_RE_SCAN_ACTIVE,
    W_RE_SCAN_HISTORY,
    W_RE_SET_ACTIVE,
    W_RE_SET_HISTORY,
    W_NB_RAISE,
    W_NB_COUNT,
    W_SCAN,
    W_NSTMT
};

enum {
    R_GET,
    R_LIST_FIRST,
    R_LIST_AFTER,
    R_PING,
    R_EV_ALL,
    R_EV_SESSION,
    R_EV_USER,
    R_ROTATED,
    R_ENDED,
    R_NOT_BEFORE,
    R_EV_TAIL,
    R_NSTMT
};

typedef struct reader {
    sqlite3 *db;
    sqlite3_stmt *stmt[R_NSTMT];
    struct reader *next;
} reader;

/* How long the writer's transaction may stay open across batches (their
 * durability in the redo log meanwhile: sqlite_redo.c). */
#define SQ_FLUSH_MS 50
/* The redo log (sqlite_redo.c). Writer-private but for the atomics and
 * what mu guards. */
typedef struct sq_redo {
    int fd;                    /* DIR/sessiond.redo (O_APPEND), or -1 */
    char *buf;                 /* the open batch's statements, NUL-terminated */
    size_t len, cap, mark;     /* mark: where the open write's statements start */
    bool recording;            /* between a batch's begin and its commit */
    bool failed;               /* a statement could not be recorded: commit the batch */
    bool txn_open;             /* SQLite's transaction spans batches */
    bool batch_lost;           /* SQLite rolled the transaction back under this batch */
    bool low_space;            /* little free: each batch commits itself (sqlite_redo.c) */
    _Atomic bool behind;       /* a COMMIT of logged batches failed: the tables lack them */
    int64_t space_at;          /* when free space was last looked at */
    int64_t txn_start_ms;      /* when it began (sd_mono_ms) */
    int64_t lsn;               /* the last batch logged */
    int64_t file_bytes;        /* in the log since it was last emptied */
    _Atomic int64_t batches;   /* logged since the start (/metrics) */
    _Atomic int64_t commits;   /* COMMITs of the transaction (/metrics) */
    _Atomic int64_t logged;    /* acknowledged through the log up to this batch */
    _Atomic int64_t committed; /* in the tables (COMMIT returned) up to this batch */
    _Atomic bool wanted;       /* a reader waits for a COMMIT */
    pthread_mutex_t mu;        /* with cv: readers waiting for committed */
    pthread_cond_t cv;
} sq_redo;
struct sd_store {
    char dir[1024]; /* the data directory */
    char path[1100];
    int lock_fd;
    uint64_t generation;
    sqlite3 *wdb;
    sqlite3 *ckpt_db; /* the checkpointer thread's connection */
    sqlite3_stmt *w[W_NSTMT];
    sd_writer *writer;    /* the shared writer (store/writer.c) over this store's rows */
    int changes_at_begin; /* writer-private: sqlite3_total_changes at BEGIN */

    pthread_t checkpointer;
    pthread_mutex_t mu;     /* the checkpointer's flags */
    pthread_cond_t ckpt_cv; /* checkpointer: WAL grew or stopping */
    bool stopping, ckpt_wanted;
    int64_t rows_at_open; /* counted by load_index */

    pthread_mutex_t readers_mu;
    reader *readers;

    sd_index *index;         /* exact in-memory index of the active table */
    sd_index_batch prepared; /* the writer's: entries for the batch's puts (tx_prepare) */

    const sd_keyring *keys; /* encryption at rest of attrs; NULL: plain */
    sq_redo redo;
    _Atomic int64_t not_before; /* the global not-before as committed (validation reads it) */
    _Atomic bool broken;
    _Atomic bool write_failing; /* the last commit that tried to change something failed */
};

extern const char sq__schema[];
extern const char sq__v3_rebuild[];
extern const char *const sq__v2_columns[][2];
extern const size_t sq__n_v2_columns;
extern const char *const sq__wsql[W_NSTMT];
extern const char *const sq__rsql[R_NSTMT];
extern _Atomic uint64_t sq__generations;

/* sqlite_read.c */
int sq__open_db(const char *path, int flags, sqlite3 **out, char *err, size_t errlen);
int sq__exec(sqlite3 *db, const char *sql, char *err, size_t errlen);
void sq__bind_text(sqlite3_stmt *s, int i, const char *v);
int sq__row_to_session(const sd_store *st, sqlite3_stmt *s, bool want_attrs, sd_session *out);
int sq__read_one(const sd_store *st, sqlite3_stmt *s, bool want_attrs, sd_session *out);
int sq_get(sd_store *st, const char *id, bool want_attrs, sd_session *out);
int sq_get_by_token(sd_store *st, const unsigned char hash[SD_HASH_LEN], bool want_attrs,
                    sd_session *out);
int sq_list_user(sd_store *st, const char *user_id, int64_t now, const sd_cursor *after, int limit,
                 sd_session **out, size_t *n);
int sq_get_rotated(sd_store *st, const unsigned char hash[SD_HASH_LEN],
                   char session_id[SD_ID_LEN + 1], int64_t *rotated_at);
int sq_events(sd_store *st, sd_event_scope scope, const char *key, int64_t after, int limit,
              sd_event **out, size_t *n);
int sq_ended(sd_store *st, const sd_feed_cursor *after, int64_t since_time, int limit,
             sd_event **out, size_t *n);
int sq_not_before(sd_store *st, int64_t *value);
/* sqlite_read.c: the webhook outbox's feed (seq order: one writer) and the
 * feed's end (the greatest seq). */
int sq_feed(sd_store *st, const sd_feed_cursor *after, int limit, sd_event **out, size_t *n);
int sq__feed_end(sd_store *st, int64_t *seq);
/* sqlite_outbox.c */
int sq_outbox_cursor(sd_store *st, const char *name, int64_t lease_ms, const sd_feed_cursor *save,
                     sd_feed_cursor *cursor);
int sq_ready(sd_store *st);
void sq_stats(sd_store *st, sd_store_stats *out);

/* sqlite_rows.c */
int sq__wstep(sd_store *st, int which);
/* Commits the writer's transaction (and the batches logged in it). */
int sq__commit_tables(sd_store *st);
/* sqlite_redo.c */
int sq__redo_open(sd_store *st, char *err, size_t errlen);
void sq__redo_close(sd_store *st);
/* A writer statement just ran: recorded for the batch's log record when
 * it changed something. */
void sq__redo_note(sd_store *st, sqlite3_stmt *s);
void sq__redo_batch(sd_store *st); /* a batch begins */
void sq__redo_mark(sd_store *st);  /* a write's savepoint */
void sq__redo_undo(sd_store *st);  /* the write was rolled back to it */
/* At the batch's end, how to make it durable: it changed nothing; append
 * it to the log (the transaction stays open for the upkeep to commit); or
 * commit now (it could not be recorded, or the log is full). */
typedef enum { SQ_NOTHING, SQ_LOG, SQ_COMMIT } sq_durable;
sq_durable sq__redo_defer(sd_store *st);
/* Before a batch: 0, or SD_EUNAVAILABLE while the tables lack logged
 * batches that cannot be run again yet (a full disk). */
int sq__redo_ready(sd_store *st);
/* The writer's upkeep: commits the open transaction when it is time (see
 * tx_upkeep); the ms until it wants to be called again. */
int sq__redo_upkeep(sd_store *st);
/* Appends the batch's record and syncs it: 0, SD_ELIMIT (no space: the
 * record is cut, nothing is lost), or SD_EUNAVAILABLE (final). */
int sq__redo_append(sd_store *st);
/* After the COMMIT that closed the transaction (ok) or failed to. */
void sq__redo_committed(sd_store *st, bool ok);
/* Waits until every batch acknowledged so far is in the tables (a reader
 * of another connection must see what was acknowledged): 0, or
 * SD_EUNAVAILABLE (the store broke, or 10 s passed). */
int sq__reads_barrier(sd_store *st);
/* A record's header for batch lsn of payload[0..n). */
#define SQ_REDO_HEAD 24
void sq__redo_head(int64_t lsn, const char *payload, size_t n, unsigned char head[SQ_REDO_HEAD]);
/* The whole file at path (none: *n 0): 0, or an error. */
int sq__redo_read(const char *path, char **out, size_t *n);
/* Runs the records of log[0..n) after meta's redo_lsn on db, in one
 * transaction: *last the last batch now in the tables, *batches how many
 * ran. 0, or an error with a sentence in err. */
int sq__redo_replay(sqlite3 *db, const char *log, size_t n, int64_t *last, int64_t *batches,
                    char *err, size_t errlen);
extern const sd_rows_ops sq__rows;
extern const sd_tx_ops sq__tx;

#endif
