/*
 * sqlite_internal.h - what the embedded store's files share and nothing
 * else includes: the store struct, the statements' numbers and text, and
 * the functions that cross files (sq__*). sqlite.c opens and closes the
 * store; sqlite_sql.c holds the schema and statements; sqlite_read.c the
 * read connections and reads; sqlite_rows.c the row operations and
 * sqlite_tx.c the transaction the shared writer runs them in.
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
    W_ROT_FIND,
    W_ROT_ADD,
    W_ROT_SET,
    W_ROT_PURGE,
    W_TOKEN_SET,
    W_EV_FIRST,
    W_EV_HEAD,
    W_EV_HEAD_ENDED,
    W_EV_DROP,
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
    R_EV_SESSION_DESC,
    R_EV_USER_DESC,
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

/* The writer's overlay of a batch's own changes (sqlite_users.c). */
typedef struct sq_overlay {
    struct sq_overlay_item *items;
    size_t n, cap, mark; /* mark: where the current write's part begins */
} sq_overlay;

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
    /* the writer's: the batch runs without a savepoint a write (tx_begin),
     * and a write of it failed (the batch runs again, with them) */
    bool whole, whole_failed;
    sq_overlay overlay; /* the writer's: the batch's own changes by user (sqlite_users.c) */

    const sd_keyring *keys; /* encryption at rest of attrs; NULL: plain */
    _Atomic bool broken;
    _Atomic bool write_failing; /* the last commit that tried to change something failed */
};

/* sqlite_users.c: a user's sessions from the in-memory index */
char *sq__ids_json(const char *first, size_t stride, size_t n, size_t *len);
char *sq__user_ids_json(sd_store *st, const char *user, size_t *len);
int sq__user_live(sd_store *st, const char *user, int64_t now, sd_index_user_row **out, size_t *n);
int sq__ov_insert(sd_store *st, const sd_session *s);
int sq__ov_end(sd_store *st, const char *id, const char *user);
int sq__ov_seen(sd_store *st, const sd_session *s);
void sq__ov_mark(sd_store *st);
void sq__ov_undo(sd_store *st);
void sq__ov_clear(sd_store *st);
void sq__ov_free(sd_store *st);

/* The schema version sq__schema makes and migrate() brings older stores to. */
#define SQ_SCHEMA_VERSION 8
extern const char sq__schema[];
extern const char sq__v3_rebuild[];
extern const char sq__v8_chain[];
extern const char *const sq__v8_columns[][2];
extern const size_t sq__n_v8_columns;
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
int sq_events(sd_store *st, sd_event_scope scope, const char *key, int64_t after, int64_t before,
              int limit, sd_event **out, size_t *n);
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
extern const sd_rows_ops sq__rows;
/* sqlite_tx.c */
extern const sd_tx_ops sq__tx;

/* sqlite_pcache.c: SQLite's page cache wrapped to skip truncations that
 * drop nothing. Before SQLite is initialised (sqlite3_config). */
void sq__pcache_install(void);

#endif
