/*
 * postgres_rows.c - the PostgreSQL store's writes, on the writer's own
 * connection (store/writer.c runs them): its statements and how they run,
 * the row operations (sd_rows_ops: a read-modify-write locks its row, a
 * create with a per-user limit takes an advisory lock on the user, a sweep
 * skips rows another replica holds) and the transaction (sd_tx_ops: a
 * SAVEPOINT a write, round trips shared, a COMMIT of unknown outcome never
 * acknowledged).
 */
#include "store/postgres_internal.h"
#include "util/err.h"
#include "util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- statements -------------------------------------------------------- */

/* The copy of ending rows into history (an id seen twice replaces). */
#define TO_HISTORY(from, ended, reason)                                                            \
    "INSERT INTO session_history(" COLS ", ended_at, end_reason) SELECT " COLS ", " ended          \
    ", " reason " FROM " from " ON CONFLICT (id) DO UPDATE SET ended_at = excluded.ended_at, "     \
    "end_reason = excluded.end_reason, attrs = excluded.attrs, version = excluded.version"

const char *const pg__wsql[W_NSTMT] = {
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
    [W_USER_BELOW] = "SELECT count(*) < $3 FROM sessions WHERE user_id = $1 AND expiry > $2",
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
    /* The batch that raises it commits once applied on the synchronous
     * standby, if there is one (postgres_standby.c). */
    [W_NB_RAISE] = PG_REMOTE_APPLY "UPDATE sessiond_not_before SET not_before = "
                                   "GREATEST(not_before, $1::bigint) WHERE id = 1 "
                                   "AND EXISTS (SELECT FROM apply) RETURNING not_before",
    [W_SCAN] = "SELECT " COLS ", rid FROM sessions WHERE rid > $1 AND expiry > $2 "
               "ORDER BY rid LIMIT $3",
    [W_NB_COUNT] = "SELECT count(*) FROM sessions WHERE created_at < $1 AND expiry > $2",
};

/* ---- the writer -------------------------------------------------------- */

/* Runs a one-value query: 0 with *v (0 when no row) or SD_EUNAVAILABLE. */
static int wvalue(sd_store *st, int which, const params *p, int64_t *v)
{
    PGresult *res = pg__wexec(st, which, p);
    if (!res)
        return SD_EUNAVAILABLE;
    *v = PQntuples(res) > 0 ? pg__col_int(res, 0, 0) : 0;
    PQclear(res);
    return 0;
}

/* Runs a statement whose rows are the ids it ended: each is reported to w. */
static int wended(sd_store *st, int which, const params *p, sd_write *w, bool expired)
{
    PGresult *res = pg__wexec(st, which, p);
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
    PGresult *res = pg__ahead_take(st, id);
    if (!res) {
        params p = {0};
        pg__p_text(&p, id);
        res = pg__wexec(st, W_SELECT_LOCK, &p);
    }
    if (!res)
        return SD_EUNAVAILABLE;
    int rc = PQntuples(res) > 0 ? pg__row_to_session(st, res, 0, true, out) : SD_ENOTFOUND;
    PQclear(res);
    return rc;
}

/* The advisory lock on the user, held to the end of the transaction, keeps
 * replicas from both taking the last place under the per-user cap. */
static int r_lock_user(void *rows, const char *user_id)
{
    params p = {0};
    pg__p_text(&p, user_id);
    return pg__wput(rows, W_USER_LOCK, &p, -1, NULL);
}

static int r_count_user(void *rows, const char *user_id, int64_t now, int64_t *count)
{
    params p = {0};
    pg__p_text(&p, user_id);
    pg__p_int(&p, now);
    return wvalue(rows, W_USER_COUNT, &p, count);
}

static int r_user_below(void *rows, const char *user_id, int64_t now, int64_t max, bool *below)
{
    params p = {0};
    pg__p_text(&p, user_id);
    pg__p_int(&p, now);
    pg__p_int(&p, max);
    return pg__wtrue(rows, W_USER_BELOW, &p, below);
}

static int r_oldest_user(void *rows, const char *user_id, int64_t now, size_t limit,
                         char (*ids)[SD_ID_LEN + 1], size_t *n)
{
    params p = {0};
    pg__p_text(&p, user_id);
    pg__p_int(&p, now);
    pg__p_int(&p, (int64_t)limit);
    PGresult *res = pg__wexec(rows, W_USER_OLDEST, &p);
    if (!res)
        return SD_EUNAVAILABLE;
    *n = 0;
    for (int i = 0; i < PQntuples(res) && *n < limit; i++)
        pg__col_copy(res, i, 0, ids[(*n)++], SD_ID_LEN + 1);
    PQclear(res);
    return 0;
}

static int r_find_retired(void *rows, const unsigned char hash[SD_HASH_LEN], const char *id,
                          bool *found, int64_t *at)
{
    params p = {0};
    pg__p_bytes(&p, hash, SD_HASH_LEN);
    pg__p_text(&p, id);
    PGresult *res = pg__wexec(rows, W_ROT_FIND, &p);
    if (!res)
        return SD_EUNAVAILABLE;
    *found = PQntuples(res) > 0;
    *at = *found ? pg__col_int(res, 0, 0) : 0;
    PQclear(res);
    return 0;
}

static int r_event(void *rows, const sd_write *w, const char *event, const char *id,
                   const char *user_id, const char *reason)
{
    params p = {0};
    pg__p_int(&p, w->now);
    pg__p_text(&p, event);
    pg__p_text(&p, id);
    pg__p_text(&p, user_id);
    pg__p_opt(&p, w->actor);
    pg__p_opt(&p, w->address);
    pg__p_text(&p, reason);
    return pg__wput(rows, W_EV_ONE, &p, 1, NULL);
}

/* The row and its event in one round trip. */
static int r_insert(void *rows, const sd_write *w, const sd_session *s, const char *event)
{
    sd_store *st = rows;
    char *attrs = sd_attrs_text(st->keys, s->id, s->attrs);
    if (!attrs)
        return SD_ENOMEM;
    params p = {0};
    pg__p_text(&p, s->id);
    pg__p_bytes(&p, s->token_hash, SD_HASH_LEN);
    pg__p_text(&p, s->user_id);
    pg__p_int(&p, s->created_at);
    pg__p_int(&p, s->last_seen);
    pg__p_int(&p, s->expiry);
    pg__p_int(&p, s->absolute_expiry);
    pg__p_int(&p, s->idle_ttl);
    pg__p_int(&p, s->version);
    pg__p_text(&p, attrs);
    if (s->binding.flags)
        pg__p_bytes(&p, &s->binding, (int)sizeof s->binding);
    else
        pg__p_text(&p, NULL);
    pg__p_int(&p, s->auth_time);
    pg__p_opt(&p, s->acr);
    pg__p_int(&p, w->now);
    pg__p_opt(&p, w->actor);
    pg__p_opt(&p, w->address);
    pg__p_text(&p, event);
    pg__ahead_drop(st, s->id);
    int rc = pg__wput(st, W_INSERT, &p, 1, NULL);
    free(attrs);
    return rc;
}

static int r_update(void *rows, const sd_write *w, const sd_session *s, int64_t read_version,
                    const char *event, int64_t *n)
{
    sd_store *st = rows;
    char *attrs = sd_attrs_text(st->keys, s->id, s->attrs);
    if (!attrs)
        return SD_ENOMEM;
    params p = {0};
    pg__p_text(&p, s->id);
    pg__p_int(&p, s->last_seen);
    pg__p_int(&p, s->expiry);
    pg__p_int(&p, s->idle_ttl);
    pg__p_int(&p, s->version);
    pg__p_text(&p, attrs);
    pg__p_int(&p, read_version);
    pg__ahead_drop(st, s->id);
    int rc = pg__wput(st, W_UPDATE, &p, 1, n);
    free(attrs);
    return rc == 0 && event && *n > 0 ? r_event(rows, w, event, s->id, s->user_id, NULL) : rc;
}

static int r_retire(void *rows, const char *id, const unsigned char old_hash[SD_HASH_LEN],
                    const unsigned char new_hash[SD_HASH_LEN], int64_t at, bool bump)
{
    params p = {0};
    pg__p_bytes(&p, old_hash, SD_HASH_LEN);
    pg__p_text(&p, id);
    pg__p_int(&p, at);
    if (pg__wput(rows, W_ROT_ADD, &p, 1, NULL))
        return SD_EUNAVAILABLE;
    params q = {0};
    pg__p_text(&q, id);
    pg__p_bytes(&q, new_hash, SD_HASH_LEN);
    pg__ahead_drop(rows, id);
    return pg__wput(rows, bump ? W_ROT_SET : W_TOKEN_SET, &q, 1, NULL);
}

/* Delete, events and history rows in one statement. */
static int r_end(void *rows, sd_write *w, const sd_end_rows *e)
{
    bool user = e->user_id != NULL;
    params p = {0};
    pg__p_text(&p, user ? e->user_id : e->id);
    pg__p_int(&p, w->now);
    pg__p_text(&p, e->reason);
    pg__p_text(&p, e->event);
    pg__p_opt(&p, w->actor);
    pg__p_opt(&p, w->address);
    if (user)
        pg__p_text(&p, e->except_id);
    if (user)
        pg__ahead_clear(rows);
    else
        pg__ahead_drop(rows, e->id);
    return wended(rows, user ? W_END_USER : W_END_ONE, &p, w, false);
}

static int r_touch(void *rows, const sd_write *w, int64_t *n)
{
    params p = {0};
    pg__p_text(&p, w->id);
    pg__p_int(&p, w->touch_expiry);
    pg__p_int(&p, w->now);
    pg__p_int(&p, w->touch_version);
    pg__ahead_drop(rows, w->id);
    return pg__wrun(rows, W_TOUCH, &p, n);
}

static int r_sweep(void *rows, sd_write *w)
{
    params p = {0};
    pg__p_int(&p, w->now);
    pg__p_int(&p, w->limit);
    pg__ahead_clear(rows);
    return wended(rows, W_SWEEP, &p, w, true);
}

static int r_purge(void *rows, int64_t before, int limit, int64_t *n)
{
    params p = {0};
    pg__p_int(&p, before);
    pg__p_int(&p, limit);
    /* rotated tokens and audit events are kept as long as history */
    if (pg__wrun(rows, W_PURGE, &p, n) || pg__wrun(rows, W_ROT_PURGE, &p, NULL) ||
        pg__wrun(rows, W_EV_PURGE, &p, NULL))
        return SD_EUNAVAILABLE;
    return 0;
}

static int r_reencrypt(void *rows, sd_write *w)
{
    sd_store *st = rows;
    pg__ahead_clear(st);
    if (!st->keys || w->limit <= 0)
        return SD_EINVALID;
    params p = {0};
    pg__p_int(&p, w->cursor);
    pg__p_int(&p, w->limit);
    PGresult *res = pg__wexec(st, w->table ? W_RE_SCAN_HISTORY : W_RE_SCAN_ACTIVE, &p);
    if (!res)
        return SD_EUNAVAILABLE;
    int rows_ = PQntuples(res), rc = 0;
    int64_t changed = 0;
    for (int i = 0; rc == 0 && i < rows_; i++) {
        w->cursor = pg__col_int(res, i, 0);
        char *sealed = NULL;
        rc = sd_reseal(st->keys, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
                       (size_t)PQgetlength(res, i, 2), &sealed);
        if (rc || !sealed)
            continue;
        params q = {0};
        pg__p_int(&q, w->cursor);
        pg__p_text(&q, sealed);
        rc = pg__wrun(st, w->table ? W_RE_SET_HISTORY : W_RE_SET_ACTIVE, &q, NULL);
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
    pg__p_int(&p, *value);
    return wvalue(rows, W_NB_RAISE, &p, value);
}

static int r_count_before(void *rows, int64_t before, int64_t now, int64_t *n)
{
    params p = {0};
    pg__p_int(&p, before);
    pg__p_int(&p, now);
    return wvalue(rows, W_NB_COUNT, &p, n);
}

static int r_scan(void *rows, int64_t cursor, int limit, int64_t now, sd_session **out, size_t *n,
                  int64_t *last)
{
    sd_store *st = rows;
    params p = {0};
    pg__p_int(&p, cursor);
    pg__p_int(&p, now);
    pg__p_int(&p, limit);
    PGresult *res = pg__wexec(st, W_SCAN, &p);
    if (!res)
        return SD_EUNAVAILABLE;
    int rows_ = PQntuples(res), rc = 0;
    sd_session *v = calloc(rows_ ? (size_t)rows_ : 1, sizeof *v);
    *n = 0;
    for (int i = 0; v && rc == 0 && i < rows_; i++) {
        *last = pg__col_int(res, i, 13); /* after COLS */
        if ((rc = pg__row_to_session(st, res, i, true, &v[i])) == 0)
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

const sd_rows_ops pg__rows = {
    .select = r_select,
    .lock_user = r_lock_user,
    .count_user = r_count_user,
    .user_below = r_user_below,
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

/* ---- the transaction (store/writer.h) ---------------------------------- */

/* Each write runs after a SAVEPOINT, so that a failed one is undone alone.
 * The commands around it share round trips: one at a time, a simple query
 * holds several (BEGIN with the first SAVEPOINT, each RELEASE with the next
 * SAVEPOINT; ROLLBACK TO keeps the savepoint for the next); pipelined
 * (postgres_pipe.c), they are only sent. Once the connection is lost in a
 * batch, the rest of its writes fail at once. */
static bool wcmd2(sd_store *st, const char *a, const char *b)
{
    if (st->piped) /* the extended protocol takes one statement at a time */
        return pg__wcmd(st, a) && pg__wcmd(st, b);
    char sql[64];
    snprintf(sql, sizeof sql, "%s; %s", a, b);
    return pg__wcmd(st, sql);
}

static int tx_begin(void *be, bool pipeline, const sd_write *batch)
{
    sd_store *st = be;
    pg__ahead_clear(st);
    if (!st->wconn)
        return SD_EUNAVAILABLE;
    if (pipeline)
        pg__pipe_enter(st);
    if (st->piped && pg__wcmd(st, "BEGIN")) {
        /* The rows read ahead at the top of the transaction, not in the
         * first write's savepoint (undoing that must not undo their locks).
         * A read that failed fails the pipelined attempt alone: the commit
         * answers SD_ERETRY and the batch runs again, one statement at a
         * time. Only a lost connection fails the batch here. */
        pg__read_ahead(st, batch);
        st->savepoint = pg__wcmd(st, "SAVEPOINT w");
        if (!st->lost)
            return 0;
    } else if (!st->piped && (st->savepoint = wcmd2(st, "BEGIN", "SAVEPOINT w"))) {
        return 0;
    }
    if (st->lost || st->piped)
        pg__drop_writer_conn(st, "BEGIN failed");
    else
        pg__exec_ok(st->wconn, "ROLLBACK");
    return SD_EUNAVAILABLE;
}

static int tx_savepoint(void *be)
{
    sd_store *st = be;
    if (!st->lost && !st->savepoint)
        st->savepoint = pg__wcmd(st, "SAVEPOINT w");
    return !st->lost && st->savepoint ? 0 : SD_EUNAVAILABLE;
}

static void tx_release(void *be, bool more)
{
    sd_store *st = be;
    bool ok = more ? wcmd2(st, "RELEASE w", "SAVEPOINT w") : pg__wcmd(st, "RELEASE w");
    st->savepoint = ok && more;
}

static void tx_rollback_to(void *be)
{
    sd_store *st = be;
    st->savepoint = pg__wcmd(st, "ROLLBACK TO w");
}

static int commit_failed(sd_store *st, int rc)
{
    atomic_store(&st->write_failing, true);
    return rc;
}

/* Acknowledges only after COMMIT returned OK; a COMMIT whose result is
 * unknown (the connection died) is never acknowledged. */
static int tx_commit(void *be)
{
    sd_store *st = be;
    pg__ahead_clear(st); /* unread ones: their writes failed before their select */
    if (st->lost) {      /* before the COMMIT: nothing was committed */
        pg__drop_writer_conn(st, "connection lost in a transaction");
        return commit_failed(st, SD_ENOTSENT);
    }
    if (st->piped) {
        int rc = pg__pipe_commit(st);
        if (st->lost)
            pg__drop_writer_conn(st, "connection lost in a pipelined transaction");
        if (rc == SD_ERETRY) /* a failure is logged where it was read; a cap reached is not one */
            sd_debug("store: a pipelined batch runs again, one statement at a time");
        if (rc == 0)
            atomic_store(&st->write_failing, false);
        return rc == 0 || rc == SD_ERETRY ? rc : commit_failed(st, rc);
    }
    PGresult *res = PQexec(st->wconn, "COMMIT");
    /* A COMMIT of an aborted transaction answers OK with the tag ROLLBACK. */
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(res), "COMMIT") == 0;
    if (!ok) {
        sd_error("store: postgres commit failed: %s", PQresultErrorMessage(res));
        PQclear(res);
        if (PQstatus(st->wconn) != CONNECTION_OK)
            pg__drop_writer_conn(st, "connection lost at COMMIT");
        else
            pg__exec_ok(st->wconn, "ROLLBACK");
        return commit_failed(st, SD_EUNAVAILABLE);
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

/* The writer owns the connection's health: a ping when idle, reconnection
 * with backoff when down (also right after a batch that lost it). */
static int tx_upkeep(void *be, bool after_batch)
{
    sd_store *st = be;
    if (after_batch)
        return st->wconn ? -1 : pg__next_backoff(st);
    return pg__health_check(st);
}

const sd_tx_ops pg__tx = {
    .begin = tx_begin,
    .savepoint = tx_savepoint,
    .release = tx_release,
    .rollback_to = tx_rollback_to,
    .commit = tx_commit,
    .accepting = tx_accepting,
    .upkeep = tx_upkeep,
};
