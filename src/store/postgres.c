/*
 * postgres.c - the PostgreSQL backend (libpq): the same tables and write
 * semantics as the embedded store (sqlite.c), for several sessiond replicas
 * sharing one database.
 *
 * Writes: the shared writer (store/writer.c) on its own connection, with
 * group commit, as for sqlite.c: every queued write (up to commit_batch) in
 * one transaction with a SAVEPOINT each (a failing write leaves the others),
 * acknowledged only after COMMIT returned OK; this file provides the row
 * operations and the transaction. A COMMIT whose result is unknown (the
 * connection died) is never acknowledged. Other replicas
 * write too, so a read-modify-write locks its row (SELECT ... FOR UPDATE) and
 * writes back conditionally on the version it read; a create with a per-user
 * limit takes a transaction-scoped advisory lock on the user; sweeps skip
 * rows another replica is sweeping (SKIP LOCKED).
 *
 * Reads: one connection per reading thread (thread-local), prepared
 * statements, straight to the database (no in-memory index: other replicas
 * change rows behind our back). They block the calling thread for one round
 * trip: with this store the server runs handlers on its handler pool
 * (--handler-threads), never on an HTTP loop thread.
 *
 * Connection loss: the writer owns the health of the store. When a statement
 * or its idle ping finds the connection broken, the store is down: writes
 * and reads answer SD_EUNAVAILABLE at once (no thread waits on a connect)
 * and ready() says not ready, while the writer reconnects with exponential
 * backoff and jitter. libpq itself walks a multi-host connection string
 * (target_session_attrs=read-write finds the primary). Once the writer is
 * back, each reader reconnects on its next query.
 *
 * Schema: created and migrated by sessiond in one transaction under an
 * advisory lock, so that replicas starting together migrate once; the
 * applied versions are rows of sessiond_schema_migrations.
 *
 * The connection string may hold a password: only host, port and dbname are
 * ever logged.
 */
#include "store/crypt.h"
#include "store/store.h"
#include "store/writer.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define COLS                                                                                       \
    "id, token_hash, user_id, created_at, last_seen, expiry, absolute_expiry, idle_ttl, version, " \
    "attrs, binding, auth_time, acr"
#define EV_COLS          "seq, at, event, session_id, user_id, actor, address, reason"
#define MIGRATION_LOCK   "7305760813462874161" /* pg_advisory_xact_lock key: "sessiond" */
#define PING_INTERVAL_MS 1000
#define BACKOFF_MIN_MS   50
#define BACKOFF_MAX_MS   5000
#define MAXP             20

/* ---- schema and its migrations ---------------------------------------- */

typedef struct migration {
    int version;
    const char *what;
    const char *sql;
} migration;

/* Append only: a released migration is never edited. Version 1 is the
 * embedded store's schema version 2 (bindings and authentication context
 * included), plus rid columns that stand in for SQLite's rowid (the
 * re-encryption cursor). */
static const migration migrations[] = {
    {1, "sessions, history, rotated tokens, audit events",
     "CREATE TABLE sessions("
     " rid bigserial NOT NULL UNIQUE, id text PRIMARY KEY, token_hash bytea NOT NULL UNIQUE,"
     " user_id text NOT NULL, created_at bigint NOT NULL, last_seen bigint NOT NULL,"
     " expiry bigint NOT NULL, absolute_expiry bigint NOT NULL, idle_ttl bigint NOT NULL,"
     " version bigint NOT NULL, attrs text NOT NULL, binding bytea, auth_time bigint, acr text);"
     "CREATE INDEX sessions_by_user ON sessions(user_id, last_seen, id);"
     "CREATE INDEX sessions_by_expiry ON sessions(expiry, id);"
     "CREATE TABLE session_history("
     " rid bigserial NOT NULL UNIQUE, id text PRIMARY KEY, token_hash bytea NOT NULL,"
     " user_id text NOT NULL, created_at bigint NOT NULL, last_seen bigint NOT NULL,"
     " expiry bigint NOT NULL, absolute_expiry bigint NOT NULL, idle_ttl bigint NOT NULL,"
     " version bigint NOT NULL, attrs text NOT NULL, ended_at bigint NOT NULL,"
     " end_reason text NOT NULL, binding bytea, auth_time bigint, acr text);"
     "CREATE INDEX history_by_ended ON session_history(ended_at);"
     "CREATE INDEX history_by_user ON session_history(user_id, ended_at);"
     "CREATE TABLE rotated_tokens(token_hash bytea PRIMARY KEY, session_id text NOT NULL,"
     " rotated_at bigint NOT NULL);"
     "CREATE INDEX rotated_by_time ON rotated_tokens(rotated_at);"
     /* bigserial: a seq is never reused (sequences do not go back). */
     "CREATE TABLE audit_events(seq bigserial PRIMARY KEY, at bigint NOT NULL,"
     " event text NOT NULL, session_id text, user_id text, actor text, address text,"
     " reason text);"
     "CREATE INDEX events_by_session ON audit_events(session_id, seq);"
     "CREATE INDEX events_by_user ON audit_events(user_id, seq);"},
    /* Each replica's audit log follows the events its own writer committed:
     * one writer commits in order, so its seqs are increasing in commit
     * order (across replicas a lower seq can commit after a higher one, and
     * a cursor over all of them could skip it). The writer connection sets
     * sessiond.origin; the default writes it into every event. */
    {2, "audit events carry the replica that wrote them",
     "ALTER TABLE audit_events ADD COLUMN origin text "
     " DEFAULT current_setting('sessiond.origin', true);"
     "CREATE INDEX events_by_origin ON audit_events(origin, seq);"},
    /* The Redis cache tier's epoch (store/cache.c): an entry is trusted only
     * under the current one; a replica that could not invalidate the cache
     * bumps it before acknowledging the write. */
    {3, "the cache epoch",
     "CREATE TABLE sessiond_cache_epoch(id integer PRIMARY KEY CHECK (id = 1),"
     " epoch bigint NOT NULL);"
     "INSERT INTO sessiond_cache_epoch VALUES (1, 1);"},
    /* The revocation feed (pg_ended) reads the ending events of every
     * replica. Their seqs do not commit in order across replicas, so the
     * feed goes by the writing transaction's id (a default: every insert
     * gets it) and lists only events older than every transaction still
     * running (pg_snapshot_xmin): a cursor past them skips nothing that
     * commits later. Rows before this migration have none (0: first). */
    {4, "audit events carry their transaction (the revocation feed)",
     "ALTER TABLE audit_events ADD COLUMN xid xid8;"
     "ALTER TABLE audit_events ALTER COLUMN xid SET DEFAULT pg_current_xact_id();"
     "CREATE INDEX events_ended ON audit_events((COALESCE(xid, '0'::xid8)), seq)"
     " WHERE event IN ('revoked', 'evicted');"},
    /* The global not-before (issue 19): validation refuses every session
     * created before it. Raised only; every replica reads it (store/notbefore.c). */
    {5, "the global not-before",
     "CREATE TABLE sessiond_not_before(id integer PRIMARY KEY CHECK (id = 1),"
     " not_before bigint NOT NULL);"
     "INSERT INTO sessiond_not_before VALUES (1, 0);"},
};
#define NMIGRATIONS (sizeof migrations / sizeof migrations[0])

/* ---- statements -------------------------------------------------------- */

/* The copy of ending rows into history (an id seen twice replaces). */
#define TO_HISTORY(from, ended, reason)                                                            \
    "INSERT INTO session_history(" COLS ", ended_at, end_reason) SELECT " COLS ", " ended          \
    ", " reason " FROM " from " ON CONFLICT (id) DO UPDATE SET ended_at = excluded.ended_at, "     \
    "end_reason = excluded.end_reason, attrs = excluded.attrs, version = excluded.version"

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

static const char *const wsql[W_NSTMT] = {
    /* The session and its event ($17: "created") in one round trip. */
    [W_INSERT] = "WITH s AS (INSERT INTO sessions(" COLS ") "
                 "VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) RETURNING id, user_id) "
                 "INSERT INTO audit_events(at, event, session_id, user_id, actor, address) "
                 "SELECT $14, $17, id, user_id, $15, $16 FROM s",
    [W_SELECT_LOCK] = "SELECT " COLS " FROM sessions WHERE id = $1 FOR UPDATE",
    /* Conditional on the version read under the row lock: optimistic
     * locking holds even if the lock were ever dropped. */
    [W_UPDATE] = "UPDATE sessions SET last_seen=$2, expiry=$3, idle_ttl=$4, version=$5, attrs=$6 "
                 "WHERE id = $1 AND version = $7",
    /* Ending: delete, write the events and the history rows from what was
     * deleted, in one statement ($1 id or user, $2 now, $3 reason, $4 event,
     * $5 actor, $6 address, END_USER: $7 the id to keep). */
    [W_END_ONE] = "WITH gone AS (DELETE FROM sessions WHERE id = $1 AND expiry > $2::bigint "
                  "RETURNING *), "
                  "ev AS (INSERT INTO audit_events(at, event, session_id, user_id, actor, address, "
                  "reason) SELECT $2::bigint, $4::text, id, user_id, $5::text, $6::text, $3::text "
                  "FROM gone), "
                  "h AS (" TO_HISTORY("gone", "$2::bigint", "$3::text") ") "
                                                                        "SELECT id FROM gone",
    [W_END_USER] =
        "WITH gone AS (DELETE FROM sessions WHERE user_id = $1 AND expiry > $2::bigint "
        "AND id IS DISTINCT FROM $7::text RETURNING *), "
        "ev AS (INSERT INTO audit_events(at, event, session_id, user_id, actor, address, reason) "
        "SELECT $2::bigint, $4::text, id, user_id, $5::text, $6::text, $3::text FROM gone), "
        "h AS (" TO_HISTORY("gone", "$2::bigint", "$3::text") ") "
                                                              "SELECT id FROM gone",
    [W_TOUCH] =
        "UPDATE sessions SET expiry = GREATEST(expiry, LEAST($2::bigint, absolute_expiry)), "
        "last_seen = GREATEST(last_seen, $3::bigint) "
        "WHERE id = $1 AND expiry > $3::bigint AND version = $4",
    /* Rows another replica's sweep holds are skipped, not waited for. */
    [W_SWEEP] = "WITH gone AS (DELETE FROM sessions WHERE id IN (SELECT id FROM sessions "
                "WHERE expiry <= $1 ORDER BY expiry, id LIMIT $2 FOR UPDATE SKIP LOCKED) "
                "RETURNING *), "
                "ev AS (INSERT INTO audit_events(at, event, session_id, user_id, reason) "
                "SELECT LEAST(expiry, absolute_expiry), 'expired', id, user_id, 'expired' "
                "FROM gone ORDER BY expiry, id), "
                "h AS (" TO_HISTORY("gone", "LEAST(expiry, absolute_expiry)",
                                    "'expired'") ") "
                                                 "SELECT id FROM gone",
    [W_PURGE] = "DELETE FROM session_history WHERE id IN (SELECT id FROM session_history "
                "WHERE ended_at < $1 LIMIT $2)",
    [W_USER_LOCK] = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
    [W_USER_COUNT] = "SELECT count(*) FROM sessions WHERE user_id = $1 AND expiry > $2",
    [W_USER_OLDEST] = "SELECT id FROM sessions WHERE user_id = $1 AND expiry > $2 "
                      "ORDER BY last_seen, id LIMIT $3",
    [W_ROT_FIND] =
        "SELECT rotated_at FROM rotated_tokens WHERE token_hash = $1 AND session_id = $2",
    [W_ROT_ADD] = "INSERT INTO rotated_tokens(token_hash, session_id, rotated_at) VALUES($1,$2,$3) "
                  "ON CONFLICT (token_hash) DO UPDATE SET session_id = excluded.session_id, "
                  "rotated_at = excluded.rotated_at",
    [W_ROT_SET] = "UPDATE sessions SET token_hash = $2, version = version + 1 WHERE id = $1",
    [W_ROT_PURGE] = "DELETE FROM rotated_tokens WHERE token_hash IN (SELECT token_hash FROM "
                    "rotated_tokens WHERE rotated_at < $1 LIMIT $2)",
    [W_TOKEN_SET] = "UPDATE sessions SET token_hash = $2 WHERE id = $1",
    [W_EV_ONE] = "INSERT INTO audit_events(at, event, session_id, user_id, actor, address, reason) "
                 "VALUES($1, $2, $3, $4, $5, $6, $7)",
    /* Events are appended in time order: the old ones are a prefix. */
    [W_EV_PURGE] = "DELETE FROM audit_events WHERE seq IN (SELECT seq FROM audit_events "
                   "ORDER BY seq LIMIT $2) AND at < $1",
    [W_RE_SCAN_ACTIVE] = "SELECT rid, id, attrs FROM sessions WHERE rid > $1 ORDER BY rid LIMIT $2",
    [W_RE_SCAN_HISTORY] =
        "SELECT rid, id, attrs FROM session_history WHERE rid > $1 ORDER BY rid LIMIT $2",
    [W_RE_SET_ACTIVE] = "UPDATE sessions SET attrs = $2 WHERE rid = $1",
    [W_RE_SET_HISTORY] = "UPDATE session_history SET attrs = $2 WHERE rid = $1",
    [W_NB_RAISE] = "UPDATE sessiond_not_before SET not_before = GREATEST(not_before, $1::bigint) "
                   "WHERE id = 1 RETURNING not_before",
    [W_SCAN] = "SELECT " COLS ", rid FROM sessions WHERE rid > $1 AND expiry > $2 "
               "ORDER BY rid LIMIT $3",
    [W_NB_COUNT] = "SELECT count(*) FROM sessions WHERE created_at < $1 AND expiry > $2",
};

enum {
    R_GET,
    R_TOKEN,
    R_LIST_FIRST,
    R_LIST_AFTER,
    R_PING,
    R_EV_ALL,
    R_EV_SESSION,
    R_EV_USER,
    R_EPOCH,
    R_EPOCH_BUMP,
    R_ROTATED,
    R_ENDED,
    R_NOT_BEFORE,
    R_NSTMT
};
static const char *const rsql[R_NSTMT] = {
    [R_GET] = "SELECT " COLS " FROM sessions WHERE id = $1",
    [R_TOKEN] = "SELECT " COLS " FROM sessions WHERE token_hash = $1",
    [R_LIST_FIRST] = "SELECT " COLS " FROM sessions WHERE user_id = $1 AND expiry > $2 "
                     "ORDER BY last_seen DESC, id DESC LIMIT $3",
    [R_LIST_AFTER] = "SELECT " COLS " FROM sessions WHERE user_id = $1 AND expiry > $2 "
                     "AND (last_seen, id) < ($4, $5) ORDER BY last_seen DESC, id DESC LIMIT $3",
    [R_PING] = "SELECT 1",
    [R_EV_ALL] = "SELECT " EV_COLS " FROM audit_events WHERE seq > $1 AND origin = $3 "
                 "ORDER BY seq LIMIT $2",
    [R_EV_SESSION] = "SELECT " EV_COLS " FROM audit_events WHERE session_id = $1 AND seq > $2 "
                     "ORDER BY seq LIMIT $3",
    [R_EV_USER] = "SELECT " EV_COLS " FROM audit_events WHERE user_id = $1 AND seq > $2 "
                  "ORDER BY seq LIMIT $3",
    [R_EPOCH] = "SELECT epoch FROM sessiond_cache_epoch WHERE id = 1",
    /* Autocommit on the reader: durable when it returns. */
    [R_EPOCH_BUMP] = ("UPDATE sessiond_cache_epoch SET epoch = epoch + 1 WHERE id = 1 "
                      "RETURNING epoch"), /* parenthesised: clang's -Wstring-concatenation */
    [R_ROTATED] = "SELECT session_id, rotated_at FROM rotated_tokens WHERE token_hash = $1",
    [R_NOT_BEFORE] = "SELECT not_before FROM sessiond_not_before WHERE id = 1",
    [R_ENDED] = "SELECT " EV_COLS ", COALESCE(xid, '0'::xid8)::text FROM audit_events "
                "WHERE event IN ('revoked', 'evicted') "
                "AND (COALESCE(xid, '0'::xid8), seq) > ($1::text::xid8, $2::bigint) "
                "AND at >= $3::bigint "
                "AND COALESCE(xid, '0'::xid8) < pg_snapshot_xmin(pg_current_snapshot()) "
                "ORDER BY COALESCE(xid, '0'::xid8), seq LIMIT $4",
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
    PGconn *wconn;     /* the writer's; NULL while down */
    bool lost;         /* the writer's connection broke in this batch */
    bool savepoint;    /* writer-private: a savepoint "w" is open */
    sd_writer *writer; /* the shared writer (store/writer.c) over this store's rows */
    int backoff_ms;    /* writer-private */
    int64_t rows_at_open;

    pthread_mutex_t readers_mu;
    reader *readers;

    const sd_keyring *keys;
    bool migrated;              /* writer-private after open: the schema is current */
    _Atomic bool up;            /* the writer's connection works */
    _Atomic bool write_failing; /* the last COMMIT failed */
};

static _Atomic uint64_t generations;
static _Thread_local struct {
    uint64_t generation;
    reader *r;
} tl_reader;

/* ---- parameters -------------------------------------------------------- */

typedef struct params {
    int n;
    const char *v[MAXP];
    int len[MAXP];
    int fmt[MAXP];
    char num[MAXP][24];
} params;

static void p_text(params *p, const char *s)
{
    p->v[p->n] = s;
    p->len[p->n] = 0;
    p->fmt[p->n++] = 0;
}

static void p_opt(params *p, const char *s)
{
    p_text(p, s && s[0] ? s : NULL);
}

static void p_int(params *p, int64_t x)
{
    snprintf(p->num[p->n], sizeof p->num[0], "%lld", (long long)x);
    p_text(p, p->num[p->n]);
}

static void p_bytes(params *p, const void *b, int n)
{
    p->v[p->n] = b;
    p->len[p->n] = n;
    p->fmt[p->n++] = 1;
}

/* ---- connections ------------------------------------------------------- */

/* Connects with our defaults (each overridden by the connection string). */
static PGconn *connect_db(const char *conninfo)
{
    static const char *const keys[] = {"connect_timeout",
                                       "application_name",
                                       "keepalives",
                                       "keepalives_idle",
                                       "keepalives_interval",
                                       "keepalives_count",
                                       "tcp_user_timeout",
                                       "dbname",
                                       NULL};
    const char *vals[] = {"3", "sessiond", "1", "5", "2", "3", "10000", conninfo, NULL};
    return PQconnectdbParams(keys, vals, 1);
}

/* Host, port and dbname of a connection string, never its password. */
static void describe(const char *conninfo, char *out, size_t n)
{
    char *err = NULL;
    PQconninfoOption *o = PQconninfoParse(conninfo, &err);
    PQfreemem(err);
    if (!o) {
        snprintf(out, n, "(unparsable connection string)");
        return;
    }
    const char *host = "", *port = "", *db = "";
    for (PQconninfoOption *p = o; p->keyword; p++) {
        if (!p->val)
            continue;
        if (strcmp(p->keyword, "host") == 0)
            host = p->val;
        else if (strcmp(p->keyword, "port") == 0)
            port = p->val;
        else if (strcmp(p->keyword, "dbname") == 0)
            db = p->val;
    }
    snprintf(out, n, "host=%s port=%s dbname=%s", host[0] ? host : "(default)",
             port[0] ? port : "(default)", db[0] ? db : "(default)");
    PQconninfoFree(o);
}

/* The first line of libpq's message (for logs). */
static void conn_error(PGconn *c, char *out, size_t n)
{
    const char *m = c ? PQerrorMessage(c) : "out of memory";
    size_t k = strcspn(m, "\n");
    snprintf(out, n, "%.*s", (int)(k < 300 ? k : 300), m);
}

static bool exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);
    bool ok = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
    if (!ok && PQstatus(c) == CONNECTION_OK)
        sd_error("store: postgres: %s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

static bool prepare_all(PGconn *c, char prefix, const char *const *sql, int n)
{
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "%c%d", prefix, i);
        PGresult *r = PQprepare(c, name, sql[i], 0, NULL);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            sd_error("store: postgres: cannot prepare %s: %s", sql[i], PQresultErrorMessage(r));
        PQclear(r);
        if (!ok)
            return false;
    }
    return true;
}

/* A connection with the session settings and the statements of one role
 * ('w' writer, 'r' reader); NULL on failure (logged when log_fail). */
static PGconn *open_conn(sd_store *st, char role, bool log_fail)
{
    PGconn *c = connect_db(st->conninfo);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        if (log_fail) {
            char m[320];
            conn_error(c, m, sizeof m);
            sd_warn("store: cannot connect to postgres (%s): %s", st->where, m);
        }
        PQfinish(c);
        return NULL;
    }
    char origin[160];
    snprintf(origin, sizeof origin, "SET sessiond.origin = '%s'", st->origin);
    bool ok =
        exec_ok(c, "SET bytea_output = 'hex'; SET TIME ZONE 'UTC'") && exec_ok(c, origin) &&
        (role == 'w' ? prepare_all(c, 'w', wsql, W_NSTMT) : prepare_all(c, 'r', rsql, R_NSTMT));
    if (!ok) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* ---- row mapping ------------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes a bytea in hex output ("\x0a1b...") of exactly n bytes. */
static bool bytea_exact(const char *s, void *out, size_t n)
{
    if (!s || s[0] != '\\' || s[1] != 'x' || strlen(s + 2) != 2 * n)
        return false;
    unsigned char *o = out;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 + 2 * i]), lo = hexval(s[3 + 2 * i]);
        if (hi < 0 || lo < 0)
            return false;
        o[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

static int64_t col_int(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static void col_copy(const PGresult *r, int row, int col, char *out, size_t n)
{
    snprintf(out, n, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

/* Reads the COLS columns of row `row`. */
static int row_to_session(const sd_store *st, const PGresult *r, int row, bool want_attrs,
                          sd_session *out)
{
    memset(out, 0, sizeof *out);
    col_copy(r, row, 0, out->id, sizeof out->id);
    bytea_exact(PQgetvalue(r, row, 1), out->token_hash, SD_HASH_LEN);
    out->user_id = strdup(PQgetvalue(r, row, 2));
    out->created_at = col_int(r, row, 3);
    out->last_seen = col_int(r, row, 4);
    out->expiry = col_int(r, row, 5);
    out->absolute_expiry = col_int(r, row, 6);
    out->idle_ttl = col_int(r, row, 7);
    out->version = col_int(r, row, 8);
    if (!PQgetisnull(r, row, 10))
        bytea_exact(PQgetvalue(r, row, 10), &out->binding, sizeof out->binding);
    out->auth_time = col_int(r, row, 11);
    col_copy(r, row, 12, out->acr, sizeof out->acr);
    if (want_attrs) {
        const char *a = PQgetvalue(r, row, 9);
        size_t alen = (size_t)PQgetlength(r, row, 9), n = 0;
        char *plain = sd_open(st->keys, out->id, a, alen, &n);
        if (!plain) {
            sd_error("store: cannot decrypt the metadata of session %s (unknown key or altered "
                     "row)",
                     out->id);
            sd_session_clear(out);
            return SD_EUNAVAILABLE;
        }
        out->attrs = json_loadb(plain, n, 0, NULL);
        OPENSSL_cleanse(plain, n);
        free(plain);
        if (!out->attrs)
            out->attrs = json_object();
    }
    if (!out->user_id || (want_attrs && !out->attrs)) {
        sd_session_clear(out);
        return SD_ENOMEM;
    }
    return 0;
}

/* ---- health ------------------------------------------------------------ */

static void mark_down(sd_store *st, const char *why)
{
    if (atomic_exchange(&st->up, false))
        sd_error("store: lost postgres (%s): %s; writes and reads answer 503 until it is back",
                 st->where, why);
}

/* Asks the writer to check the connection now (a reader saw it break). */
static void want_check(sd_store *st)
{
    sd_writer_poke(st->writer);
}

/* ---- readers ----------------------------------------------------------- */

static reader *get_reader(sd_store *st)
{
    if (tl_reader.generation == st->generation && tl_reader.r)
        return tl_reader.r;
    reader *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    pthread_mutex_lock(&st->readers_mu);
    r->next = st->readers;
    st->readers = r;
    pthread_mutex_unlock(&st->readers_mu);
    tl_reader.generation = st->generation;
    tl_reader.r = r;
    return r;
}

/* Runs read statement `which`. Returns its result (PGRES_TUPLES_OK) or NULL
 * (*rc set). A broken connection is replaced once, at once, while the writer
 * says the database is up; while it is down nothing waits. */
static PGresult *rquery(sd_store *st, int which, const params *p, int *rc)
{
    *rc = SD_EUNAVAILABLE;
    reader *r = get_reader(st);
    if (!r) {
        *rc = SD_ENOMEM;
        return NULL;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!atomic_load(&st->up))
            return NULL;
        if (!r->conn && !(r->conn = open_conn(st, 'r', false))) {
            want_check(st);
            return NULL;
        }
        char name[16];
        snprintf(name, sizeof name, "r%d", which);
        PGresult *res = PQexecPrepared(r->conn, name, p->n, p->v, p->len, p->fmt, 0);
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
            *rc = 0;
            return res;
        }
        bool broken = PQstatus(r->conn) != CONNECTION_OK;
        if (!broken)
            sd_error("store: postgres read failed: %s", PQresultErrorMessage(res));
        PQclear(res);
        if (!broken)
            return NULL;
        PQfinish(r->conn);
        r->conn = NULL;
    }
    want_check(st);
    return NULL;
}

static int read_one(sd_store *st, int which, const params *p, bool want_attrs, sd_session *out)
{
    int rc;
    PGresult *res = rquery(st, which, p, &rc);
    if (!res)
        return rc;
    rc = PQntuples(res) > 0 ? row_to_session(st, res, 0, want_attrs, out) : SD_ENOTFOUND;
    PQclear(res);
    return rc;
}

static int pg_get(sd_store *st, const char *id, bool want_attrs, sd_session *out)
{
    params p = {0};
    p_text(&p, id);
    return read_one(st, R_GET, &p, want_attrs, out);
}

static int pg_get_by_token(sd_store *st, const unsigned char hash[SD_HASH_LEN], bool want_attrs,
                           sd_session *out)
{
    params p = {0};
    p_bytes(&p, hash, SD_HASH_LEN);
    int rc = read_one(st, R_TOKEN, &p, want_attrs, out);
    if (rc == 0 && !sd_hash_equal(out->token_hash, hash)) {
        sd_session_clear(out);
        rc = SD_ENOTFOUND;
    }
    return rc;
}

static int pg_get_rotated(sd_store *st, const unsigned char hash[SD_HASH_LEN],
                          char session_id[SD_ID_LEN + 1], int64_t *rotated_at)
{
    params p = {0};
    p_bytes(&p, hash, SD_HASH_LEN);
    int rc;
    PGresult *res = rquery(st, R_ROTATED, &p, &rc);
    if (!res)
        return rc;
    rc = SD_ENOTFOUND;
    if (PQntuples(res) > 0) {
        col_copy(res, 0, 0, session_id, SD_ID_LEN + 1);
        *rotated_at = col_int(res, 0, 1);
        rc = 0;
    }
    PQclear(res);
    return rc;
}

static int pg_list_user(sd_store *st, const char *user_id, int64_t now, const sd_cursor *after,
                        int limit, sd_session **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    params p = {0};
    p_text(&p, user_id);
    p_int(&p, now);
    p_int(&p, limit);
    if (after) {
        p_int(&p, after->last_seen);
        p_text(&p, after->id);
    }
    int rc;
    PGresult *res = rquery(st, after ? R_LIST_AFTER : R_LIST_FIRST, &p, &rc);
    if (!res)
        return rc;
    size_t rows = (size_t)PQntuples(res);
    if (rows > (size_t)limit)
        rows = (size_t)limit;
    sd_session *v = calloc(rows ? rows : 1, sizeof *v);
    rc = v ? 0 : SD_ENOMEM;
    size_t k = 0;
    for (; rc == 0 && k < rows; k++)
        if ((rc = row_to_session(st, res, (int)k, true, &v[k])))
            break;
    PQclear(res);
    if (rc) {
        sd_sessions_free(v, k);
        return rc;
    }
    *out = v;
    *n = k;
    return 0;
}

/* The rows of res (EV_COLS, then the transaction when with_tx) into a
 * malloc'd array; clears res. */
static int read_events(PGresult *res, bool with_tx, sd_event **out, size_t *n)
{
    size_t rows = (size_t)PQntuples(res);
    sd_event *v = calloc(rows ? rows : 1, sizeof *v);
    if (!v) {
        PQclear(res);
        return SD_ENOMEM;
    }
    for (size_t k = 0; k < rows; k++) {
        sd_event *e = &v[k];
        int i = (int)k;
        e->seq = col_int(res, i, 0);
        e->time = col_int(res, i, 1);
        col_copy(res, i, 2, e->event, sizeof e->event);
        col_copy(res, i, 3, e->session_id, sizeof e->session_id);
        col_copy(res, i, 4, e->user_id, sizeof e->user_id);
        col_copy(res, i, 5, e->actor, sizeof e->actor);
        col_copy(res, i, 6, e->address, sizeof e->address);
        col_copy(res, i, 7, e->reason, sizeof e->reason);
        e->tx = with_tx ? col_int(res, i, 8) : 0;
    }
    PQclear(res);
    *out = v;
    *n = rows;
    return 0;
}

static int pg_events(sd_store *st, sd_event_scope scope, const char *key, int64_t after, int limit,
                     sd_event **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    params p = {0};
    if (scope != SD_EVENTS_ALL)
        p_text(&p, key);
    p_int(&p, after);
    p_int(&p, limit > 0 ? limit : 0);
    if (scope == SD_EVENTS_ALL)
        p_text(&p, st->origin);
    int rc;
    PGresult *res = rquery(st,
                           scope == SD_EVENTS_SESSION ? R_EV_SESSION
                           : scope == SD_EVENTS_USER  ? R_EV_USER
                                                      : R_EV_ALL,
                           &p, &rc);
    if (!res)
        return rc;
    return read_events(res, false, out, n);
}

static int pg_ended(sd_store *st, const sd_feed_cursor *after, int64_t since_time, int limit,
                    sd_event **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    params p = {0};
    p_int(&p, after->tx);
    p_int(&p, after->seq);
    p_int(&p, since_time);
    p_int(&p, limit > 0 ? limit : 0);
    int rc;
    PGresult *res = rquery(st, R_ENDED, &p, &rc);
    if (!res)
        return rc;
    return read_events(res, true, out, n);
}

static int pg_ready(sd_store *st)
{
    if (!atomic_load(&st->up) || atomic_load(&st->write_failing))
        return SD_EUNAVAILABLE;
    params p = {0};
    int rc;
    PGresult *res = rquery(st, R_PING, &p, &rc);
    PQclear(res);
    return rc;
}

/* A read of one row's one integer (a single-row table's). */
static int read_value(sd_store *st, int which, int64_t *value)
{
    params p = {0};
    int rc;
    PGresult *res = rquery(st, which, &p, &rc);
    if (!res)
        return rc;
    rc = PQntuples(res) == 1 ? 0 : SD_EUNAVAILABLE;
    if (rc == 0)
        *value = col_int(res, 0, 0);
    PQclear(res);
    return rc;
}

static int pg_cache_epoch(sd_store *st, bool bump, int64_t *epoch)
{
    return read_value(st, bump ? R_EPOCH_BUMP : R_EPOCH, epoch);
}

static int pg_not_before(sd_store *st, int64_t *value)
{
    return read_value(st, R_NOT_BEFORE, value);
}

static void pg_stats(sd_store *st, sd_store_stats *out)
{
    sd_writer_stats(st->writer, out);
    out->broken = false; /* a lost connection is recoverable: see ready() */
}

/* ---- the writer -------------------------------------------------------- */

/* Runs writer statement `which`. Returns its result when it succeeded, else
 * NULL (logged; st->lost set when the connection broke). */
static PGresult *wexec(sd_store *st, int which, const params *p)
{
    if (st->lost)
        return NULL;
    char name[16];
    snprintf(name, sizeof name, "w%d", which);
    PGresult *res = PQexecPrepared(st->wconn, name, p->n, p->v, p->len, p->fmt, 0);
    ExecStatusType s = PQresultStatus(res);
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK)
        return res;
    if (PQstatus(st->wconn) != CONNECTION_OK) {
        st->lost = true;
    } else {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        sd_warn("store: postgres write failed (%s): %s", state ? state : "?",
                PQresultErrorMessage(res));
    }
    PQclear(res);
    return NULL;
}

/* Runs it for its effect: 0 or SD_EUNAVAILABLE; *n (if given) the rows. */
static int wrun(sd_store *st, int which, const params *p, int64_t *n)
{
    PGresult *res = wexec(st, which, p);
    if (!res)
        return SD_EUNAVAILABLE;
    if (n)
        *n = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return 0;
}

/* Runs a one-value query: 0 with *v (0 when no row) or SD_EUNAVAILABLE. */
static int wvalue(sd_store *st, int which, const params *p, int64_t *v)
{
    PGresult *res = wexec(st, which, p);
    if (!res)
        return SD_EUNAVAILABLE;
    *v = PQntuples(res) > 0 ? col_int(res, 0, 0) : 0;
    PQclear(res);
    return 0;
}

static bool wcmd(sd_store *st, const char *sql)
{
    if (st->lost)
        return false;
    bool ok = exec_ok(st->wconn, sql);
    if (!ok && PQstatus(st->wconn) != CONNECTION_OK)
        st->lost = true;
    return ok;
}

/* Runs a statement whose rows are the ids it ended: each is reported to w. */
static int wended(sd_store *st, int which, const params *p, sd_write *w, bool expired)
{
    PGresult *res = wexec(st, which, p);
    if (!res)
        return SD_EUNAVAILABLE;
    int rc = 0;
    for (int i = 0; rc == 0 && i < PQntuples(res); i++)
        rc = sd_write_ended(w, PQgetvalue(res, i, 0), expired);
    PQclear(res);
    return rc;
}

/* ---- the row operations (session/write.h) ------------------------------ */

/* Reads session id under a row lock (to the end of the transaction). */
static int r_select(void *rows, const char *id, sd_session *out)
{
    sd_store *st = rows;
    params p = {0};
    p_text(&p, id);
    PGresult *res = wexec(st, W_SELECT_LOCK, &p);
    if (!res)
        return SD_EUNAVAILABLE;
    int rc = PQntuples(res) > 0 ? row_to_session(st, res, 0, true, out) : SD_ENOTFOUND;
    PQclear(res);
    return rc;
}

/* The advisory lock on the user, held to the end of the transaction, keeps
 * replicas from both taking the last place under the per-user cap. */
static int r_lock_user(void *rows, const char *user_id)
{
    params p = {0};
    p_text(&p, user_id);
    return wrun(rows, W_USER_LOCK, &p, NULL);
}

static int r_count_user(void *rows, const char *user_id, int64_t now, int64_t *count)
{
    params p = {0};
    p_text(&p, user_id);
    p_int(&p, now);
    return wvalue(rows, W_USER_COUNT, &p, count);
}

static int r_oldest_user(void *rows, const char *user_id, int64_t now, size_t limit,
                         char (*ids)[SD_ID_LEN + 1], size_t *n)
{
    params p = {0};
    p_text(&p, user_id);
    p_int(&p, now);
    p_int(&p, (int64_t)limit);
    PGresult *res = wexec(rows, W_USER_OLDEST, &p);
    if (!res)
        return SD_EUNAVAILABLE;
    *n = 0;
    for (int i = 0; i < PQntuples(res) && *n < limit; i++)
        col_copy(res, i, 0, ids[(*n)++], SD_ID_LEN + 1);
    PQclear(res);
    return 0;
}

static int r_find_retired(void *rows, const unsigned char hash[SD_HASH_LEN], const char *id,
                          bool *found, int64_t *at)
{
    params p = {0};
    p_bytes(&p, hash, SD_HASH_LEN);
    p_text(&p, id);
    PGresult *res = wexec(rows, W_ROT_FIND, &p);
    if (!res)
        return SD_EUNAVAILABLE;
    *found = PQntuples(res) > 0;
    *at = *found ? col_int(res, 0, 0) : 0;
    PQclear(res);
    return 0;
}

static int r_event(void *rows, const sd_write *w, const char *event, const char *id,
                   const char *user_id, const char *reason)
{
    params p = {0};
    p_int(&p, w->now);
    p_text(&p, event);
    p_text(&p, id);
    p_text(&p, user_id);
    p_opt(&p, w->actor);
    p_opt(&p, w->address);
    p_text(&p, reason);
    return wrun(rows, W_EV_ONE, &p, NULL);
}

/* The row and its event in one round trip. */
static int r_insert(void *rows, const sd_write *w, const sd_session *s, const char *event)
{
    sd_store *st = rows;
    char *attrs = sd_attrs_text(st->keys, s->id, s->attrs);
    if (!attrs)
        return SD_ENOMEM;
    params p = {0};
    p_text(&p, s->id);
    p_bytes(&p, s->token_hash, SD_HASH_LEN);
    p_text(&p, s->user_id);
    p_int(&p, s->created_at);
    p_int(&p, s->last_seen);
    p_int(&p, s->expiry);
    p_int(&p, s->absolute_expiry);
    p_int(&p, s->idle_ttl);
    p_int(&p, s->version);
    p_text(&p, attrs);
    if (s->binding.flags)
        p_bytes(&p, &s->binding, (int)sizeof s->binding);
    else
        p_text(&p, NULL);
    p_int(&p, s->auth_time);
    p_opt(&p, s->acr);
    p_int(&p, w->now);
    p_opt(&p, w->actor);
    p_opt(&p, w->address);
    p_text(&p, event);
    int rc = wrun(st, W_INSERT, &p, NULL);
    free(attrs);
    return rc;
}

static int r_update(void *rows, const sd_session *s, int64_t read_version, int64_t *n)
{
    sd_store *st = rows;
    char *attrs = sd_attrs_text(st->keys, s->id, s->attrs);
    if (!attrs)
        return SD_ENOMEM;
    params p = {0};
    p_text(&p, s->id);
    p_int(&p, s->last_seen);
    p_int(&p, s->expiry);
    p_int(&p, s->idle_ttl);
    p_int(&p, s->version);
    p_text(&p, attrs);
    p_int(&p, read_version);
    int rc = wrun(st, W_UPDATE, &p, n);
    free(attrs);
    return rc;
}

static int r_retire(void *rows, const char *id, const unsigned char old_hash[SD_HASH_LEN],
                    const unsigned char new_hash[SD_HASH_LEN], int64_t at, bool bump)
{
    params p = {0};
    p_bytes(&p, old_hash, SD_HASH_LEN);
    p_text(&p, id);
    p_int(&p, at);
    if (wrun(rows, W_ROT_ADD, &p, NULL))
        return SD_EUNAVAILABLE;
    params q = {0};
    p_text(&q, id);
    p_bytes(&q, new_hash, SD_HASH_LEN);
    return wrun(rows, bump ? W_ROT_SET : W_TOKEN_SET, &q, NULL);
}

/* Delete, events and history rows in one statement. */
static int r_end(void *rows, sd_write *w, const sd_end_rows *e)
{
    bool user = e->user_id != NULL;
    params p = {0};
    p_text(&p, user ? e->user_id : e->id);
    p_int(&p, w->now);
    p_text(&p, e->reason);
    p_text(&p, e->event);
    p_opt(&p, w->actor);
    p_opt(&p, w->address);
    if (user)
        p_text(&p, e->except_id);
    return wended(rows, user ? W_END_USER : W_END_ONE, &p, w, false);
}

static int r_touch(void *rows, const sd_write *w, int64_t *n)
{
    params p = {0};
    p_text(&p, w->id);
    p_int(&p, w->touch_expiry);
    p_int(&p, w->now);
    p_int(&p, w->touch_version);
    return wrun(rows, W_TOUCH, &p, n);
}

static int r_sweep(void *rows, sd_write *w)
{
    params p = {0};
    p_int(&p, w->now);
    p_int(&p, w->limit);
    return wended(rows, W_SWEEP, &p, w, true);
}

static int r_purge(void *rows, int64_t before, int limit, int64_t *n)
{
    params p = {0};
    p_int(&p, before);
    p_int(&p, limit);
    /* rotated tokens and audit events are kept as long as history */
    if (wrun(rows, W_PURGE, &p, n) || wrun(rows, W_ROT_PURGE, &p, NULL) ||
        wrun(rows, W_EV_PURGE, &p, NULL))
        return SD_EUNAVAILABLE;
    return 0;
}

static int r_reencrypt(void *rows, sd_write *w)
{
    sd_store *st = rows;
    if (!st->keys || w->limit <= 0)
        return SD_EINVALID;
    params p = {0};
    p_int(&p, w->cursor);
    p_int(&p, w->limit);
    PGresult *res = wexec(st, w->table ? W_RE_SCAN_HISTORY : W_RE_SCAN_ACTIVE, &p);
    if (!res)
        return SD_EUNAVAILABLE;
    int rows_ = PQntuples(res), rc = 0;
    int64_t changed = 0;
    for (int i = 0; rc == 0 && i < rows_; i++) {
        w->cursor = col_int(res, i, 0);
        char *sealed = NULL;
        rc = sd_reseal(st->keys, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
                       (size_t)PQgetlength(res, i, 2), &sealed);
        if (rc || !sealed)
            continue;
        params q = {0};
        p_int(&q, w->cursor);
        p_text(&q, sealed);
        rc = wrun(st, w->table ? W_RE_SET_HISTORY : W_RE_SET_ACTIVE, &q, NULL);
        free(sealed);
        changed++;
    }
    PQclear(res);
    w->affected = changed;
    w->limit = rows_;
    return rc;
}

static int r_raise_not_before(void *rows, int64_t *value)
{
    params p = {0};
    p_int(&p, *value);
    return wvalue(rows, W_NB_RAISE, &p, value);
}

static int r_count_before(void *rows, int64_t before, int64_t now, int64_t *n)
{
    params p = {0};
    p_int(&p, before);
    p_int(&p, now);
    return wvalue(rows, W_NB_COUNT, &p, n);
}

static int r_scan(void *rows, int64_t cursor, int limit, int64_t now, sd_session **out, size_t *n,
                  int64_t *last)
{
    sd_store *st = rows;
    params p = {0};
    p_int(&p, cursor);
    p_int(&p, now);
    p_int(&p, limit);
    PGresult *res = wexec(st, W_SCAN, &p);
    if (!res)
        return SD_EUNAVAILABLE;
    int rows_ = PQntuples(res), rc = 0;
    sd_session *v = calloc(rows_ ? (size_t)rows_ : 1, sizeof *v);
    *n = 0;
    for (int i = 0; v && rc == 0 && i < rows_; i++) {
        *last = col_int(res, i, 13); /* after COLS */
        if ((rc = row_to_session(st, res, i, true, &v[i])) == 0)
            (*n)++;
    }
    PQclear(res);
    if (!v || rc) {
        for (size_t i = 0; v && i < *n; i++)
            sd_session_clear(&v[i]);
        free(v);
        *n = 0;
        return v ? rc : SD_ENOMEM;
    }
    *out = v;
    return 0;
}

static const sd_rows_ops pg_rows = {
    .select = r_select,
    .lock_user = r_lock_user,
    .count_user = r_count_user,
    .oldest_user = r_oldest_user,
    .find_retired = r_find_retired,
    .insert = r_insert,
    .update = r_update,
    .retire = r_retire,
    .event = r_event,
    .end = r_end,
    .touch = r_touch,
    .sweep = r_sweep,
    .purge = r_purge,
    .reencrypt = r_reencrypt,
    .raise_not_before = r_raise_not_before,
    .count_before = r_count_before,
    .scan = r_scan,
};

static void drop_writer_conn(sd_store *st, const char *why)
{
    char m[320];
    conn_error(st->wconn, m, sizeof m);
    PQfinish(st->wconn);
    st->wconn = NULL;
    st->lost = false;
    st->backoff_ms = BACKOFF_MIN_MS;
    mark_down(st, m[0] ? m : why);
}

/* ---- the transaction (store/writer.h) ---------------------------------- */

/* Each write runs after a SAVEPOINT, so that a failed one is undone alone.
 * The commands around it share round trips (a simple query may hold
 * several): BEGIN with the first SAVEPOINT, each RELEASE with the next
 * SAVEPOINT, and ROLLBACK TO keeps the savepoint for the next. Once the
 * connection is lost in a batch, the rest of its writes fail at once. */
static int tx_begin(void *be)
{
    sd_store *st = be;
    if (st->wconn && (st->savepoint = wcmd(st, "BEGIN; SAVEPOINT w")))
        return 0;
    if (st->wconn && st->lost)
        drop_writer_conn(st, "BEGIN failed");
    if (st->wconn && !st->lost)
        exec_ok(st->wconn, "ROLLBACK");
    return SD_EUNAVAILABLE;
}

static int tx_savepoint(void *be)
{
    sd_store *st = be;
    if (!st->lost && !st->savepoint)
        st->savepoint = wcmd(st, "SAVEPOINT w");
    return !st->lost && st->savepoint ? 0 : SD_EUNAVAILABLE;
}

static void tx_release(void *be, bool more)
{
    sd_store *st = be;
    st->savepoint = wcmd(st, more ? "RELEASE w; SAVEPOINT w" : "RELEASE w") && more;
}

static void tx_rollback_to(void *be)
{
    sd_store *st = be;
    st->savepoint = wcmd(st, "ROLLBACK TO w");
}

/* Acknowledges only after COMMIT returned OK; a COMMIT whose result is
 * unknown (the connection died) is never acknowledged. */
static int tx_commit(void *be)
{
    sd_store *st = be;
    if (st->lost) {
        drop_writer_conn(st, "connection lost in a transaction");
        return SD_EUNAVAILABLE;
    }
    PGresult *res = PQexec(st->wconn, "COMMIT");
    /* A COMMIT of an aborted transaction answers OK with the tag ROLLBACK. */
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(res), "COMMIT") == 0;
    if (!ok) {
        sd_error("store: postgres commit failed: %s", PQresultErrorMessage(res));
        PQclear(res);
        if (PQstatus(st->wconn) != CONNECTION_OK)
            drop_writer_conn(st, "connection lost at COMMIT");
        else
            exec_ok(st->wconn, "ROLLBACK");
        atomic_store(&st->write_failing, true);
        return SD_EUNAVAILABLE;
    }
    PQclear(res);
    atomic_store(&st->write_failing, false);
    return 0;
}

static bool tx_accepting(void *be)
{
    sd_store *st = be;
    return atomic_load(&st->up);
}

static int health_check(sd_store *st);
static int next_backoff(sd_store *st);

/* The writer owns the connection's health: a ping when idle, reconnection
 * with backoff when down (also right after a batch that lost it). */
static int tx_upkeep(void *be, bool after_batch)
{
    sd_store *st = be;
    if (after_batch)
        return st->wconn ? -1 : next_backoff(st);
    return health_check(st);
}

static const sd_tx_ops pg_tx = {
    .begin = tx_begin,
    .savepoint = tx_savepoint,
    .release = tx_release,
    .rollback_to = tx_rollback_to,
    .commit = tx_commit,
    .accepting = tx_accepting,
    .upkeep = tx_upkeep,
};

/* Exponential backoff with jitter: the next wait, between half and all of
 * the current step; the step doubles up to BACKOFF_MAX_MS. */
static int next_backoff(sd_store *st)
{
    unsigned r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
        r = (unsigned)sd_mono_ns();
    int step = st->backoff_ms;
    st->backoff_ms = step * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : step * 2;
    return step / 2 + (int)(r % (unsigned)(step / 2 + 1));
}

static int migrate(PGconn *c, char *err, size_t errlen);

/* Connects, migrates the schema and counts the active rows: at open, and on
 * the writer thread while the database has been unreachable since the start.
 * SD_EUNAVAILABLE when it cannot connect (logged when log_fail), SD_ECONFIG
 * for a database this binary cannot use (always logged). */
static int first_connect(sd_store *st, bool log_fail)
{
    char err[512] = "";
    PGconn *c = connect_db(st->conninfo);
    int rc = 0;
    if (!c || PQstatus(c) != CONNECTION_OK) {
        conn_error(c, err, sizeof err);
        rc = SD_EUNAVAILABLE;
    } else {
        exec_ok(c, "SET client_min_messages = warning");
        rc = migrate(c, err, sizeof err);
        if (rc && PQstatus(c) == CONNECTION_OK)
            rc = SD_ECONFIG; /* not the network: it would fail again */
    }
    if (rc == 0) {
        PGresult *r = PQexec(c, "SELECT count(*) FROM sessions");
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            st->rows_at_open = col_int(r, 0, 0);
            if (st->writer) /* connected by the writer's upkeep, after an outage */
                sd_writer_set_active(st->writer, st->rows_at_open);
        }
        PQclear(r);
        st->migrated = true;
        sd_info("store: postgres (%s), schema version %d, %lld sessions in the active table",
                st->where, migrations[NMIGRATIONS - 1].version, (long long)st->rows_at_open);
    } else if (log_fail || rc != SD_EUNAVAILABLE) {
        sd_log(rc == SD_EUNAVAILABLE ? SD_LOG_WARN : SD_LOG_ERROR,
               "store: cannot connect to postgres (%s): %s; writes and reads answer 503 until it "
               "can",
               st->where, err);
    }
    PQfinish(c);
    return rc;
}

/* On the writer thread, without mu: reconnects when down, pings when up.
 * Returns the ms until the next check. */
static int health_check(sd_store *st)
{
    if (st->wconn) {
        if (exec_ok(st->wconn, "SELECT 1"))
            return PING_INTERVAL_MS;
        drop_writer_conn(st, "ping failed");
    }
    if (!st->migrated && first_connect(st, st->backoff_ms >= BACKOFF_MAX_MS) != 0)
        return next_backoff(st);
    st->wconn = open_conn(st, 'w', st->backoff_ms >= BACKOFF_MAX_MS);
    if (!st->wconn)
        return next_backoff(st);
    st->backoff_ms = BACKOFF_MIN_MS;
    if (!atomic_exchange(&st->up, true))
        sd_info("store: connected to postgres (%s)", st->where);
    return PING_INTERVAL_MS;
}

static void pg_write(sd_store *st, sd_write *w)
{
    sd_writer_submit(st->writer, w);
}

/* ---- open and close ---------------------------------------------------- */

/* Creates or upgrades the schema in one transaction. The advisory lock makes
 * replicas that start together take turns: the first migrates, the others
 * find the versions applied. */
static int migrate(PGconn *c, char *err, size_t errlen)
{
    if (!exec_ok(c, "BEGIN") || !exec_ok(c, "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK ")") ||
        !exec_ok(c, "CREATE TABLE IF NOT EXISTS sessiond_schema_migrations("
                    "version integer PRIMARY KEY, description text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"))
        goto fail;
    PGresult *r = PQexec(c, "SELECT coalesce(max(version), 0) FROM sessiond_schema_migrations");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        goto fail;
    }
    int have = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (have > migrations[NMIGRATIONS - 1].version) {
        exec_ok(c, "ROLLBACK");
        snprintf(err, errlen,
                 "the database has schema version %d, newer than this sessiond knows (%d): "
                 "upgrade sessiond",
                 have, migrations[NMIGRATIONS - 1].version);
        return SD_ECONFIG;
    }
    for (size_t i = 0; i < NMIGRATIONS; i++) {
        if (migrations[i].version <= have)
            continue;
        char v[16];
        snprintf(v, sizeof v, "%d", migrations[i].version);
        const char *vals[] = {v, migrations[i].what};
        if (!exec_ok(c, migrations[i].sql))
            goto fail;
        r = PQexecParams(c,
                         "INSERT INTO sessiond_schema_migrations(version, description) "
                         "VALUES($1, $2)",
                         2, NULL, vals, NULL, NULL, 0);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok)
            goto fail;
        sd_info("store: postgres schema migrated to version %d (%s)", migrations[i].version,
                migrations[i].what);
    }
    if (!exec_ok(c, "COMMIT"))
        goto fail;
    return 0;
fail:
    conn_error(c, err, errlen);
    if (!err[0])
        snprintf(err, errlen, "schema migration failed (see the log)");
    exec_ok(c, "ROLLBACK");
    return SD_EUNAVAILABLE;
}

static void free_store(sd_store *st)
{
    for (reader *r = st->readers, *next; r; r = next) {
        next = r->next;
        PQfinish(r->conn);
        free(r);
    }
    PQfinish(st->wconn);
    if (st->conninfo) {
        OPENSSL_cleanse(st->conninfo, strlen(st->conninfo));
        free(st->conninfo);
    }
    pthread_mutex_destroy(&st->readers_mu);
    free(st);
}

static int pg_open(const char *conninfo, const sd_store_options *opt, sd_store **out, char *err,
                   size_t errlen)
{
    sd_store *st = calloc(1, sizeof *st);
    if (!st)
        return SD_ENOMEM;
    st->conninfo = strdup(conninfo);
    st->keys = opt ? opt->keys : NULL;
    /* Checked by the caller's shape rule: letters, digits, '-' and '_'. */
    snprintf(st->origin, sizeof st->origin, "%s", opt && opt->origin ? opt->origin : "default");
    st->generation = atomic_fetch_add(&generations, 1) + 1;
    st->backoff_ms = BACKOFF_MIN_MS;
    pthread_mutex_init(&st->readers_mu, NULL);
    int rc = SD_ENOMEM;
    if (!st->conninfo)
        goto fail;
    describe(conninfo, st->where, sizeof st->where);
    /* Unreachable at start is not fatal: sessiond serves 503 (not ready)
     * and the writer keeps trying, as after a loss. A database it cannot
     * use (a newer schema, a failed migration) is. */
    rc = first_connect(st, true);
    if (rc == SD_ECONFIG) {
        snprintf(err, errlen, "the database at %s cannot be used (see the log)", st->where);
        goto fail;
    }
    if (rc == 0 && !(st->wconn = open_conn(st, 'w', true))) {
        snprintf(err, errlen, "cannot prepare the writer's connection to postgres (%s)", st->where);
        rc = SD_EUNAVAILABLE;
        goto fail;
    }
    atomic_store(&st->up, st->wconn != NULL);
    sd_writer_options wo = {opt ? opt->commit_batch : 0, opt ? opt->max_queued : 0,
                            PING_INTERVAL_MS};
    if (sd_writer_start(&wo, &pg_tx, &pg_rows, st, &st->writer)) {
        snprintf(err, errlen, "cannot start the writer thread");
        rc = SD_ENOMEM;
        goto fail;
    }
    sd_writer_set_active(st->writer, st->rows_at_open);
    *out = st;
    return 0;
fail:
    free_store(st);
    return rc;
}

static void pg_close(sd_store *st)
{
    sd_writer_stop(st->writer); /* finishes every queued write */
    free_store(st);
}

const sd_store_ops sd_store_postgres = {
    .name = "postgres",
    .caps = SD_STORE_SHARED,
    .open = pg_open,
    .close = pg_close,
    .get = pg_get,
    .get_by_token = pg_get_by_token,
    .get_rotated = pg_get_rotated,
    .list_user = pg_list_user,
    .write = pg_write,
    .ready = pg_ready,
    .stats = pg_stats,
    .events = pg_events,
    .ended = pg_ended,
    .cache_epoch = pg_cache_epoch,
    .not_before = pg_not_before,
};
