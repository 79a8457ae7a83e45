/*
 * postgres_internal.h - what the files of the PostgreSQL store share, and
 * nothing else includes: the store struct, the statements' numbers, the
 * parameters of a statement and the functions that cross files (pg__ names,
 * as libuv's uv__).
 *
 *   postgres.c         the public face: open and close, the health of the
 *                      writer's connection (pings, reconnection), the vtable
 *   postgres_schema.c  the migrations and the first connection that runs them
 *   postgres_read.c    connections, parameters, row mapping, the readers'
 *                      connections and every read
 *   postgres_rows.c    the writer's statements, the row operations
 *                      (sd_rows_ops) and the transaction (sd_tx_ops)
 *
 * The sections below follow the files; each function is declared in the
 * section of the file that defines it.
 */
#ifndef SD_STORE_POSTGRES_INTERNAL_H
#define SD_STORE_POSTGRES_INTERNAL_H

#include "store/crypt.h"
#include "store/store.h"
#include "store/writer.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COLS                                                                                       \
    "id, token_hash, user_id, created_at, last_seen, expiry, absolute_expiry, idle_ttl, version, " \
    "attrs, binding, auth_time, acr"
#define MAXP 20
/* A statement's prefix by which its transaction commits with
 * synchronous_commit = remote_apply: set_config(..., true) lasts until the
 * transaction ends, and the commit reads it then (postgres_standby.c). The
 * statement must read `apply` (EXISTS (SELECT FROM apply)) for it to run. */
#define PG_REMOTE_APPLY                                                                            \
    "WITH apply AS (SELECT set_config('synchronous_commit', 'remote_apply', true)) "

/* ---- statements -------------------------------------------------------- */

/* The writer's statements (their SQL: pg__wsql, postgres_rows.c), prepared
 * as "w<n>" on the writer's connection. */
enum {
    W_INSERT,
    W_SELECT_LOCK,
    W_UPDATE,
    W_END_ONE,
    W_END_USER,
    W_TOUCH,
    W_SWEEP,
    W_PURGE,
    W_USER_LOCK,
    W_USER_COUNT,
    W_USER_BELOW,
    W_USER_OLDEST,
    W_ROT_FIND,
    W_ROT_ADD,
    W_ROT_SET,
    W_ROT_PURGE,
    W_TOKEN_SET,
    W_EV_ONE,
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

/* The readers' statements (their SQL: postgres_read.c), prepared as "r<n>"
 * on each reader's connection. */
enum {
    R_GET,
    R_TOKEN,
    R_LIST_FIRST,
    R_LIST_AFTER,
    R_PING,
    R_EV_ALL,
    R_EV_SESSION,
    R_EV_USER,
    R_EV_SESSION_DESC,
    R_EV_USER_DESC,
    R_EPOCH,
    R_EPOCH_BUMP,
    R_ROTATED,
    R_ENDED,
    R_NOT_BEFORE,
    R_FEED,
    R_OUTBOX_INIT,
    R_OUTBOX_TAKE,
    R_NSTMT
};

/* ---- the store --------------------------------------------------------- */

typedef struct reader {
    PGconn *conn;
    struct reader *next;
} reader;

struct sd_store {
    char *conninfo;  /* as given; holds the password, if any: never logged */
    char where[300]; /* "host=... port=... dbname=..." for messages */
    char origin[65]; /* this replica's id: its writer's events feed its audit log */
    uint64_t generation;
    PGconn *wconn;  /* the writer's; NULL while down */
    bool lost;      /* the writer's connection broke in this batch */
    bool savepoint; /* writer-private: a savepoint "w" is open */
    /* writer-private: the batch runs in pipeline mode (postgres_pipe.c),
     * a pipelined statement has failed, and the row counts expected of the
     * statements whose results are still to be read (pend_head first) */
    bool piped, pipe_failed;
    int64_t *pend;
    size_t npend, pend_head, cap_pend;
    /* writer-private: the rows a pipelined batch's writes will select, read
     * ahead under their row locks in one round trip (tx_begin), ids sorted;
     * the first select of each id takes its result (NULL once taken, or once
     * a write of the batch changed that row) */
    char (*ahead_id)[SD_ID_LEN + 1];
    PGresult **ahead_res;
    size_t nahead, cap_ahead;
    _Atomic int64_t ahead_used; /* selects answered from them (the metrics') */
    sd_writer *writer;          /* the shared writer (store/writer.c) over this store's rows */
    int backoff_ms;             /* writer-private */
    int64_t rows_at_open;

    pthread_mutex_t readers_mu;
    reader *readers;

    /* The synchronous standby the fence values are read from
     * (postgres_standby.c): conninfo NULL when none. */
    struct {
        char *conninfo; /* holds the password, if any: never logged */
        char where[300];
        bool init, started;
        pthread_t thread; /* the watcher */
        pthread_mutex_t mu;
        pthread_cond_t cv;
        bool stopping, healthy;        /* under mu */
        int64_t epoch, not_before;     /* under mu: the last read's */
        int64_t read_ns;               /* under mu: when it started (monotonic) */
        _Atomic int64_t reads, misses; /* fence reads answered here, or not */
    } sb;
    _Atomic int64_t fence_skip_until_ns; /* fence reads skip the primary until (postgres_read.c) */

    const sd_keyring *keys;
    bool migrated;              /* writer-private after open: the schema is current */
    _Atomic bool up;            /* the writer's connection works */
    _Atomic bool write_failing; /* the last COMMIT failed */
};

/* ---- parameters -------------------------------------------------------- */

typedef struct params {
    int n;
    const char *v[MAXP];
    int len[MAXP];
    int fmt[MAXP];
    char num[MAXP][24];
} params;

/* ---- postgres.c: health ------------------------------------------------ */

void pg__drop_writer_conn(sd_store *st, const char *why);
int pg__next_backoff(sd_store *st);
int pg__health_check(sd_store *st);

/* ---- postgres_schema.c ------------------------------------------------- */

int pg__first_connect(sd_store *st, bool log_fail);
/* The newest schema version this sessiond knows (its last migration). */
int pg__schema_newest(void);
/* The newest version applied to c's database (its migrations table must
 * exist) into *have; false when the query failed. */
bool pg__schema_applied(PGconn *c, int *have);
/* A database a newer sessiond migrated: SD_ECONFIG with the sentence in
 * err, else 0. */
int pg__newer_schema(int have, char *err, size_t errlen);

/* ---- postgres_read.c --------------------------------------------------- */

void pg__p_text(params *p, const char *s);
void pg__p_opt(params *p, const char *s);
void pg__p_int(params *p, int64_t x);
void pg__p_bytes(params *p, const void *b, int n);

PGconn *pg__connect_db(const char *conninfo);
void pg__conn_error(PGconn *c, char *out, size_t n);
/* Host, port and dbname of a connection string into out, never its
 * password (the log's "where"; "(unparsable connection string)" when libpq
 * cannot parse it). */
void pg__describe(const char *conninfo, char *out, size_t n);

/* postgres_standby.c: the fence values from the synchronous standby. */
int pg__standby_start(sd_store *st, const char *conninfo); /* none when conninfo is NULL or "" */
void pg__standby_stop(sd_store *st);
/* The cache epoch (epoch) or the global not-before from a read on the
 * standby that started after this call: 0, or SD_EUNAVAILABLE. */
int pg__standby_value(sd_store *st, bool epoch, int64_t *value);
/* The standby answered a read in the last few seconds (readiness only). */
bool pg__standby_fresh(sd_store *st);
bool pg__exec_ok(PGconn *c, const char *sql);
PGconn *pg__open_conn(sd_store *st, char role, bool log_fail);

int64_t pg__col_int(const PGresult *r, int row, int col);
void pg__col_copy(const PGresult *r, int row, int col, char *out, size_t n);
int pg__row_to_session(const sd_store *st, const PGresult *r, int row, bool want_attrs,
                       sd_session *out);

PGresult *pg__rquery(sd_store *st, int which, const params *p, int *rc);

int pg__get(sd_store *st, const char *id, bool want_attrs, sd_session *out);
int pg__get_by_token(sd_store *st, const unsigned char hash[SD_HASH_LEN], bool want_attrs,
                     sd_session *out);
int pg__get_rotated(sd_store *st, const unsigned char hash[SD_HASH_LEN],
                    char session_id[SD_ID_LEN + 1], int64_t *rotated_at);
int pg__list_user(sd_store *st, const char *user_id, int64_t now, const sd_cursor *after, int limit,
                  sd_session **out, size_t *n);
int pg__events(sd_store *st, sd_event_scope scope, const char *key, int64_t after, int64_t before,
               int limit, sd_event **out, size_t *n);
int pg__ended(sd_store *st, const sd_feed_cursor *after, int64_t since_time, int limit,
              sd_event **out, size_t *n);
int pg__cache_epoch(sd_store *st, bool bump, int64_t *epoch);
/* The rows of res (the events' columns, then the transaction when with_tx)
 * into a malloc'd array; clears res. */
int pg__read_events(PGresult *res, bool with_tx, sd_event **out, size_t *n);
int pg__not_before(sd_store *st, int64_t *value);

/* ---- postgres_outbox.c ------------------------------------------------- */

extern const char pg__sql_feed[], pg__sql_outbox_init[], pg__sql_outbox_take[];
int pg__feed(sd_store *st, const sd_feed_cursor *after, int limit, sd_event **out, size_t *n);
int pg__outbox_cursor(sd_store *st, const char *name, int64_t lease_ms, const sd_feed_cursor *save,
                      sd_feed_cursor *cursor);

/* ---- postgres_pipe.c --------------------------------------------------- */

/* Writer statement `which`, its result wanted now: the result when it
 * succeeded, else NULL (logged; st->lost set when the connection broke). */
PGresult *pg__wexec(sd_store *st, int which, const params *p);
/* Writer statement `which` for its effect, waited for: 0 or
 * SD_EUNAVAILABLE, *n (if given) the rows it changed. */
int pg__wrun(sd_store *st, int which, const params *p, int64_t *n);
/* Writer statement `which` for its effect: 0 or SD_EUNAVAILABLE, *n (if
 * given) the rows it changed. Pipelined, it is only sent: *n is `expect`
 * (the rows the write counts on, or -1 for any), checked before the batch
 * is acknowledged. */
int pg__wput(sd_store *st, int which, const params *p, int64_t expect, int64_t *n);
/* Writer statement `which`, a one-value boolean query, wanted true: *v its
 * value. Pipelined, it is only sent and *v is true, checked before the
 * batch is acknowledged (false then runs the batch again). */
int pg__wtrue(sd_store *st, int which, const params *p, bool *v);
/* A command without parameters (BEGIN, SAVEPOINT ...): false when it failed
 * (pipelined: could not be sent). */
bool pg__wcmd(sd_store *st, const char *sql);
/* Pipeline mode for the batch: false when libpq would not enter it. */
bool pg__pipe_enter(sd_store *st);
/* A pipelined batch's rows read ahead (see postgres_pipe.c): read at the
 * top of its transaction, the rows its writes will select; taken by the
 * first select of each id (NULL: read it now); dropped when a write of the
 * batch changes that row (all of them: rows it does not name); cleared at
 * the batch's end. */
void pg__read_ahead(sd_store *st, const sd_write *batch);
PGresult *pg__ahead_take(sd_store *st, const char *id);
void pg__ahead_drop(sd_store *st, const char *id);
void pg__ahead_clear(sd_store *st);
/* The pipelined batch's COMMIT: 0 once durable; SD_ERETRY when a statement
 * failed before it (rolled back: run the batch again without pipelining);
 * SD_EUNAVAILABLE when the COMMIT failed or the connection broke
 * (st->lost). Leaves pipeline mode. */
int pg__pipe_commit(sd_store *st);

/* ---- postgres_rows.c --------------------------------------------------- */

extern const char *const pg__wsql[W_NSTMT];
extern const sd_rows_ops pg__rows;
extern const sd_tx_ops pg__tx;

#endif
