/*
 * postgres_read.c - the PostgreSQL store's reads, and what every file uses
 * to talk to the database: statement parameters, connections (with our
 * settings and one role's prepared statements) and the mapping of rows to
 * sessions.
 *
 * Reads: one connection per reading thread (thread-local), prepared
 * statements, straight to the database. They block the calling thread for
 * one round trip. While the writer says the database is down they answer
 * SD_EUNAVAILABLE at once; a reader that finds its connection broken
 * replaces it once and asks the writer to check.
 */
#include "store/postgres_internal.h"
#include "util/clock.h"
#include "util/jsonmem.h"
#include "util/err.h"
#include "util/log.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EV_COLS "seq, at, event, session_id, user_id, actor, address, reason"

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
    [R_EV_SESSION_DESC] = "SELECT " EV_COLS " FROM audit_events WHERE session_id = $1 "
                          "AND seq < $2 ORDER BY seq DESC LIMIT $3",
    [R_EV_USER_DESC] = "SELECT " EV_COLS " FROM audit_events WHERE user_id = $1 AND seq < $2 "
                       "ORDER BY seq DESC LIMIT $3",
    [R_EPOCH] = "SELECT epoch FROM sessiond_cache_epoch WHERE id = 1",
    /* Autocommit on the reader: durable when it returns, and applied on
     * the synchronous standby if there is one (postgres_standby.c). */
    [R_EPOCH_BUMP] =
        (PG_REMOTE_APPLY "UPDATE sessiond_cache_epoch SET epoch = epoch + 1 "
                         "WHERE id = 1 AND EXISTS (SELECT FROM apply) RETURNING epoch"),
    [R_ROTATED] = "SELECT session_id, rotated_at FROM rotated_tokens WHERE token_hash = $1",
    [R_NOT_BEFORE] = "SELECT not_before FROM sessiond_not_before WHERE id = 1",
    [R_ENDED] = "SELECT " EV_COLS ", COALESCE(xid, '0'::xid8)::text FROM audit_events "
                "WHERE event IN ('revoked', 'evicted') "
                "AND (COALESCE(xid, '0'::xid8), seq) > ($1::text::xid8, $2::bigint) "
                "AND at >= $3::bigint "
                "AND COALESCE(xid, '0'::xid8) < pg_snapshot_xmin(pg_current_snapshot()) "
                "ORDER BY COALESCE(xid, '0'::xid8), seq LIMIT $4",
    /* The webhook outbox's (postgres_outbox.c). */
    [R_FEED] = pg__sql_feed,
    [R_OUTBOX_INIT] = pg__sql_outbox_init,
    [R_OUTBOX_TAKE] = pg__sql_outbox_take,
};

static _Thread_local struct {
    uint64_t generation;
    reader *r;
} tl_reader;

/* ---- parameters -------------------------------------------------------- */

void pg__p_text(params *p, const char *s)
{
    p->v[p->n] = s;
    p->len[p->n] = 0;
    p->fmt[p->n++] = 0;
}

void pg__p_opt(params *p, const char *s)
{
    pg__p_text(p, s && s[0] ? s : NULL);
}

void pg__p_int(params *p, int64_t x)
{
    snprintf(p->num[p->n], sizeof p->num[0], "%lld", (long long)x);
    pg__p_text(p, p->num[p->n]);
}

void pg__p_bytes(params *p, const void *b, int n)
{
    p->v[p->n] = b;
    p->len[p->n] = n;
    p->fmt[p->n++] = 1;
}

/* ---- connections ------------------------------------------------------- */

/* Connects with our defaults (each overridden by the connection string). */
PGconn *pg__connect_db(const char *conninfo)
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

/* The first line of libpq's message (for logs). */
void pg__conn_error(PGconn *c, char *out, size_t n)
{
    const char *m = c ? PQerrorMessage(c) : "out of memory";
    size_t k = strcspn(m, "\n");
    snprintf(out, n, "%.*s", (int)(k < 300 ? k : 300), m);
}

bool pg__exec_ok(PGconn *c, const char *sql)
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
PGconn *pg__open_conn(sd_store *st, char role, bool log_fail)
{
    PGconn *c = pg__connect_db(st->conninfo);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        if (log_fail) {
            char m[320];
            pg__conn_error(c, m, sizeof m);
            sd_warn("store: cannot connect to postgres (%s): %s", st->where, m);
        }
        PQfinish(c);
        return NULL;
    }
    char origin[160];
    snprintf(origin, sizeof origin, "SET sessiond.origin = '%s'", st->origin);
    bool ok =
        pg__exec_ok(c, "SET bytea_output = 'hex'; SET TIME ZONE 'UTC'") && pg__exec_ok(c, origin) &&
        (role == 'w' ? prepare_all(c, 'w', pg__wsql, W_NSTMT) : prepare_all(c, 'r', rsql, R_NSTMT));
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

int64_t pg__col_int(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

void pg__col_copy(const PGresult *r, int row, int col, char *out, size_t n)
{
    snprintf(out, n, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

/* Reads the COLS columns of row `row`. */
int pg__row_to_session(const sd_store *st, const PGresult *r, int row, bool want_attrs,
                       sd_session *out)
{
    memset(out, 0, sizeof *out);
    pg__col_copy(r, row, 0, out->id, sizeof out->id);
    bytea_exact(PQgetvalue(r, row, 1), out->token_hash, SD_HASH_LEN);
    out->user_id = strdup(PQgetvalue(r, row, 2));
    out->created_at = pg__col_int(r, row, 3);
    out->last_seen = pg__col_int(r, row, 4);
    out->expiry = pg__col_int(r, row, 5);
    out->absolute_expiry = pg__col_int(r, row, 6);
    out->idle_ttl = pg__col_int(r, row, 7);
    out->version = pg__col_int(r, row, 8);
    if (!PQgetisnull(r, row, 10))
        bytea_exact(PQgetvalue(r, row, 10), &out->binding, sizeof out->binding);
    out->auth_time = pg__col_int(r, row, 11);
    pg__col_copy(r, row, 12, out->acr, sizeof out->acr);
    return sd_attrs_finish(st->keys, out, want_attrs, PQgetvalue(r, row, 9),
                           (size_t)PQgetlength(r, row, 9));
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

static PGresult *rquery(sd_store *st, int which, const params *p, int *rc, int attempts);

/* Runs read statement `which`. Returns its result (PGRES_TUPLES_OK) or NULL
 * (*rc set). A broken connection is replaced once, at once, while the writer
 * says the database is up; while it is down nothing waits. */
PGresult *pg__rquery(sd_store *st, int which, const params *p, int *rc)
{
    return rquery(st, which, p, rc, 2);
}

/* attempts 1: a broken connection is dropped, not replaced (a fence read
 * that has the standby to go to does not wait on a connection attempt). */
static PGresult *rquery(sd_store *st, int which, const params *p, int *rc, int attempts)
{
    *rc = SD_EUNAVAILABLE;
    reader *r = get_reader(st);
    if (!r) {
        *rc = SD_ENOMEM;
        return NULL;
    }
    for (int attempt = 0; attempt < attempts; attempt++) {
        if (!atomic_load(&st->up))
            return NULL;
        if (!r->conn && !(r->conn = pg__open_conn(st, 'r', false))) {
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
    PGresult *res = pg__rquery(st, which, p, &rc);
    if (!res)
        return rc;
    rc = PQntuples(res) > 0 ? pg__row_to_session(st, res, 0, want_attrs, out) : SD_ENOTFOUND;
    PQclear(res);
    return rc;
}

int pg__get(sd_store *st, const char *id, bool want_attrs, sd_session *out)
{
    params p = {0};
    pg__p_text(&p, id);
    return read_one(st, R_GET, &p, want_attrs, out);
}

int pg__get_by_token(sd_store *st, const unsigned char hash[SD_HASH_LEN], bool want_attrs,
                     sd_session *out)
{
    params p = {0};
    pg__p_bytes(&p, hash, SD_HASH_LEN);
    int rc = read_one(st, R_TOKEN, &p, want_attrs, out);
    if (rc == 0 && !sd_hash_equal(out->token_hash, hash)) {
        sd_session_clear(out);
        rc = SD_ENOTFOUND;
    }
    return rc;
}

int pg__get_rotated(sd_store *st, const unsigned char hash[SD_HASH_LEN],
                    char session_id[SD_ID_LEN + 1], int64_t *rotated_at)
{
    params p = {0};
    pg__p_bytes(&p, hash, SD_HASH_LEN);
    int rc;
    PGresult *res = pg__rquery(st, R_ROTATED, &p, &rc);
    if (!res)
        return rc;
    rc = SD_ENOTFOUND;
    if (PQntuples(res) > 0) {
        pg__col_copy(res, 0, 0, session_id, SD_ID_LEN + 1);
        *rotated_at = pg__col_int(res, 0, 1);
        rc = 0;
    }
    PQclear(res);
    return rc;
}

int pg__list_user(sd_store *st, const char *user_id, int64_t now, const sd_cursor *after, int limit,
                  sd_session **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    params p = {0};
    pg__p_text(&p, user_id);
    pg__p_int(&p, now);
    pg__p_int(&p, limit);
    if (after) {
        pg__p_int(&p, after->last_seen);
        pg__p_text(&p, after->id);
    }
    int rc;
    PGresult *res = pg__rquery(st, after ? R_LIST_AFTER : R_LIST_FIRST, &p, &rc);
    if (!res)
        return rc;
    size_t rows = (size_t)PQntuples(res);
    if (rows > (size_t)limit)
        rows = (size_t)limit;
    sd_session *v = calloc(rows ? rows : 1, sizeof *v);
    rc = v ? 0 : SD_ENOMEM;
    size_t k = 0;
    for (; rc == 0 && k < rows; k++)
        if ((rc = pg__row_to_session(st, res, (int)k, true, &v[k])))
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

int pg__read_events(PGresult *res, bool with_tx, sd_event **out, size_t *n)
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
        e->seq = pg__col_int(res, i, 0);
        e->time = pg__col_int(res, i, 1);
        pg__col_copy(res, i, 2, e->event, sizeof e->event);
        pg__col_copy(res, i, 3, e->session_id, sizeof e->session_id);
        pg__col_copy(res, i, 4, e->user_id, sizeof e->user_id);
        pg__col_copy(res, i, 5, e->actor, sizeof e->actor);
        pg__col_copy(res, i, 6, e->address, sizeof e->address);
        pg__col_copy(res, i, 7, e->reason, sizeof e->reason);
        e->tx = with_tx ? pg__col_int(res, i, 8) : 0;
    }
    PQclear(res);
    *out = v;
    *n = rows;
    return 0;
}

int pg__events(sd_store *st, sd_event_scope scope, const char *key, int64_t after, int64_t before,
               int limit, sd_event **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    bool desc = before > 0 && scope != SD_EVENTS_ALL;
    params p = {0};
    if (scope != SD_EVENTS_ALL)
        pg__p_text(&p, key);
    pg__p_int(&p, desc ? before : after);
    pg__p_int(&p, limit > 0 ? limit : 0);
    if (scope == SD_EVENTS_ALL)
        pg__p_text(&p, st->origin);
    int rc;
    PGresult *res =
        pg__rquery(st,
                   scope == SD_EVENTS_SESSION ? (desc ? R_EV_SESSION_DESC : R_EV_SESSION)
                   : scope == SD_EVENTS_USER  ? (desc ? R_EV_USER_DESC : R_EV_USER)
                                              : R_EV_ALL,
                   &p, &rc);
    if (!res)
        return rc;
    return pg__read_events(res, false, out, n);
}

int pg__ended(sd_store *st, const sd_feed_cursor *after, int64_t since_time, int limit,
              sd_event **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    params p = {0};
    pg__p_int(&p, after->tx);
    pg__p_int(&p, after->seq);
    pg__p_int(&p, since_time);
    pg__p_int(&p, limit > 0 ? limit : 0);
    int rc;
    PGresult *res = pg__rquery(st, R_ENDED, &p, &rc);
    if (!res)
        return rc;
    return pg__read_events(res, true, out, n);
}

/* A read of one row's one integer (a single-row table's). */
static int read_value(sd_store *st, int which, int64_t *value, int attempts)
{
    params p = {0};
    int rc;
    PGresult *res = rquery(st, which, &p, &rc, attempts);
    if (!res)
        return rc;
    rc = PQntuples(res) == 1 ? 0 : SD_EUNAVAILABLE;
    if (rc == 0)
        *value = pg__col_int(res, 0, 0);
    PQclear(res);
    return rc;
}

/* A fence value: from the primary, or while it cannot be read, from the
 * synchronous standby (postgres_standby.c says why that is safe). With a
 * standby, the primary is asked only while the writer says it is up and no
 * fence read failed there in the last FENCE_SKIP_MS, and a broken connection
 * is not replaced in the call: right after a primary dies, a connection
 * attempt through haproxy takes a second or more, longer than a fence value
 * stays fresh, while the standby's watcher has a value ready. */
#define FENCE_SKIP_MS 2000

static int fence_value(sd_store *st, int which, int64_t *value)
{
    if (!st->sb.started)
        return read_value(st, which, value, 2);
    int64_t now = sd_mono_ns();
    if (atomic_load(&st->up) && now >= atomic_load(&st->fence_skip_until_ns)) {
        if (read_value(st, which, value, 1) == 0)
            return 0;
        atomic_store(&st->fence_skip_until_ns, now + (int64_t)FENCE_SKIP_MS * 1000000);
    }
    return pg__standby_value(st, which == R_EPOCH, value);
}

int pg__cache_epoch(sd_store *st, bool bump, int64_t *epoch)
{
    return bump ? read_value(st, R_EPOCH_BUMP, epoch, 2) : fence_value(st, R_EPOCH, epoch);
}

int pg__not_before(sd_store *st, int64_t *value)
{
    return fence_value(st, R_NOT_BEFORE, value);
}
