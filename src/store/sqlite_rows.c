/*
 * sqlite_rows.c - the embedded store's writes: the row operations
 * (session/write.h, sd_rows_ops) the shared writer runs on the writer's
 * connection, inside the transaction of sqlite_tx.c.
 */
#include "store/sqlite_internal.h"
#include "util/err.h"
#include "util/grow.h"
#include "util/log.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the writer -------------------------------------------------------- */

/* Runs a prepared statement of the writer to completion; returns the SQLite
 * result code (SQLITE_DONE on success) and resets it. */
int sq__wstep(sd_store *st, int which)
{
    sqlite3_stmt *s = st->w[which];
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        ;
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc;
}

#define WOK(rc) ((rc) == SQLITE_DONE)

/* Runs a DELETE FROM sessions ... RETURNING id: each id it removed is
 * reported to w as ended (the index and the cache follow). */
static int wstep_ended(sd_store *st, int which, sd_write *w, bool expired)
{
    sqlite3_stmt *s = st->w[which];
    int rc, erc = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(s, 0);
        if (erc == 0)
            erc = sd_write_ended(w, id ? id : "", expired);
        const char *user = (const char *)sqlite3_column_text(s, 1);
        if (erc == 0)
            erc = sq__ov_end(st, id ? id : "", user ? user : "");
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return erc ? erc : WOK(rc) ? 0 : SD_EUNAVAILABLE;
}

/* ---- a session's chain of audit events (sqlite_sql.c, audit_events) ---- */

/* Moves the head of session id's chain to seq: on its active row, else on
 * its history row (an event after its end). */
static int move_head(sd_store *st, const char *id, int64_t seq)
{
    static const int heads[] = {W_EV_HEAD, W_EV_HEAD_ENDED};
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
        int which = heads[i];
        sqlite3_stmt *q = st->w[which];
        sq__bind_text(q, 1, id);
        sqlite3_bind_int64(q, 2, seq);
        if (!WOK(sq__wstep(st, which)))
            return SD_EUNAVAILABLE;
        if (sqlite3_changes(st->wdb) > 0)
            break;
    }
    return 0;
}

/* Runs a bound statement that adds events for many sessions and returns
 * each one's (session_id, seq); then moves their heads (the returned rows
 * are taken first: the statement is done with the tables by then). */
static int events_of_many(sd_store *st, int which)
{
    typedef struct {
        char id[SD_ID_LEN + 1];
        int64_t seq;
    } head;
    head *v = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *q = st->w[which];
    int rc, erc = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        head *g = erc ? NULL : sd_grow(v, &cap, n, sizeof *v, 16);
        if (!g) {
            erc = SD_ENOMEM;
            continue;
        }
        v = g;
        const char *id = (const char *)sqlite3_column_text(q, 0);
        snprintf(v[n].id, sizeof v[n].id, "%s", id ? id : "");
        v[n++].seq = sqlite3_column_int64(q, 1);
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    if (!erc && !WOK(rc))
        erc = SD_EUNAVAILABLE;
    for (size_t i = 0; i < n && !erc; i++)
        erc = move_head(st, v[i].id, v[i].seq);
    free(v);
    return erc;
}

static void bind_opt(sqlite3_stmt *s, int i, const char *v)
{
    sq__bind_text(s, i, v && v[0] ? v : NULL);
}

/* ---- the row operations (session/write.h) ------------------------------ */

static int r_select(void *rows, const char *id, sd_session *out)
{
    sd_store *st = rows;
    sq__bind_text(st->w[W_SELECT], 1, id);
    return sq__read_one(st, st->w[W_SELECT], true, out);
}

/* Steps a bound writer statement that answers one integer: *v gets it. */
static int wvalue(sqlite3_stmt *q, int64_t *v)
{
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        *v = sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return rc == SQLITE_ROW ? 0 : SD_EUNAVAILABLE;
}

/* A user's live sessions as the batch sees them (sqlite_users.c). */
static int r_count_user(void *rows, const char *user_id, int64_t now, int64_t *count)
{
    sd_index_user_row *v = NULL;
    size_t n = 0;
    int rc = sq__user_live(rows, user_id, now, &v, &n);
    free(v);
    *count = rc ? 0 : (int64_t)n;
    return rc;
}

static int by_last_seen(const void *a, const void *b)
{
    const sd_index_user_row *x = a, *y = b;
    if (x->last_seen != y->last_seen)
        return x->last_seen < y->last_seen ? -1 : 1;
    return strcmp(x->id, y->id);
}

/* The least recently seen first (then by id), as the listing orders them
 * the other way round. */
static int r_oldest_user(void *rows, const char *user_id, int64_t now, size_t limit,
                         char (*ids)[SD_ID_LEN + 1], size_t *n)
{
    sd_index_user_row *v = NULL;
    size_t k = 0;
    int rc = sq__user_live(rows, user_id, now, &v, &k);
    *n = 0;
    if (rc)
        return rc;
    qsort(v, k, sizeof *v, by_last_seen);
    for (; *n < limit && *n < k; (*n)++)
        memcpy(ids[*n], v[*n].id, SD_ID_LEN + 1);
    free(v);
    return 0;
}

static int r_find_retired(void *rows, const unsigned char hash[SD_HASH_LEN], const char *id,
                          bool *found, int64_t *at)
{
    sd_store *st = rows;
    sqlite3_stmt *q = st->w[W_ROT_FIND];
    sqlite3_bind_blob(q, 1, hash, SD_HASH_LEN, SQLITE_STATIC);
    sq__bind_text(q, 2, id);
    int rc = sqlite3_step(q);
    *found = rc == SQLITE_ROW;
    *at = *found ? sqlite3_column_int64(q, 0) : 0;
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : SD_EUNAVAILABLE;
}

/* An event of the write, after its session's head (none when first: a
 * session's created event); the head stays. */
static int add_event(sd_store *st, const sd_write *w, const char *event, const char *id,
                     const char *user_id, const char *reason, bool first)
{
    int which = first ? W_EV_FIRST : W_EV_ONE;
    sqlite3_stmt *q = st->w[which];
    sqlite3_bind_int64(q, 1, w->now);
    sq__bind_text(q, 2, event);
    sq__bind_text(q, 3, id);
    sq__bind_text(q, 4, user_id);
    bind_opt(q, 5, w->actor);
    bind_opt(q, 6, w->address);
    sq__bind_text(q, 7, reason);
    return WOK(sq__wstep(st, which)) ? 0 : SD_EUNAVAILABLE;
}

static int r_event(void *rows, const sd_write *w, const char *event, const char *id,
                   const char *user_id, const char *reason)
{
    sd_store *st = rows;
    int rc = add_event(st, w, event, id, user_id, reason, false);
    return rc == 0 && id ? move_head(st, id, sqlite3_last_insert_rowid(st->wdb)) : rc;
}

static int r_insert(void *rows, const sd_write *w, const sd_session *s, const char *event)
{
    sd_store *st = rows;
    if (add_event(st, w, event, s->id, s->user_id, NULL, true)) /* the row names it as its head */
        return SD_EUNAVAILABLE;
    char *attrs = sd_attrs_text(st->keys, s->id, s->attrs);
    if (!attrs)
        return SD_ENOMEM;
    sqlite3_stmt *q = st->w[W_INSERT];
    sq__bind_text(q, 1, s->id);
    sqlite3_bind_blob(q, 2, s->token_hash, SD_HASH_LEN, SQLITE_STATIC);
    sq__bind_text(q, 3, s->user_id);
    sqlite3_bind_int64(q, 4, s->created_at);
    sqlite3_bind_int64(q, 5, s->last_seen);
    sqlite3_bind_int64(q, 6, s->expiry);
    sqlite3_bind_int64(q, 7, s->absolute_expiry);
    sqlite3_bind_int64(q, 8, s->idle_ttl);
    sqlite3_bind_int64(q, 9, s->version);
    sqlite3_bind_text(q, 10, attrs, -1, SQLITE_STATIC);
    if (s->binding.flags)
        sqlite3_bind_blob(q, 11, &s->binding, sizeof s->binding, SQLITE_STATIC);
    sqlite3_bind_int64(q, 12, s->auth_time);
    sq__bind_text(q, 13, s->acr[0] ? s->acr : NULL);
    sqlite3_bind_int64(q, 14, sqlite3_last_insert_rowid(st->wdb));
    int rc = sq__wstep(st, W_INSERT);
    free(attrs);
    if (!WOK(rc))
        return SD_EUNAVAILABLE; /* a UNIQUE clash of 128/256-bit random values included */
    return sq__ov_insert(st, s) ? SD_ENOMEM : 0;
}

/* With an event: the event first, then the row, which names it as its head
 * (one write of the row, not a second to move the head). */
static int r_update(void *rows, const sd_write *w, const sd_session *s, int64_t read_version,
                    const char *event, int64_t *n)
{
    sd_store *st = rows;
    *n = 0;
    if (event && add_event(st, w, event, s->id, s->user_id, NULL, false))
        return SD_EUNAVAILABLE;
    char *attrs = sd_attrs_text(st->keys, s->id, s->attrs);
    if (!attrs)
        return SD_ENOMEM;
    sqlite3_stmt *q = st->w[W_UPDATE];
    sq__bind_text(q, 1, s->id);
    sqlite3_bind_int64(q, 2, s->last_seen);
    sqlite3_bind_int64(q, 3, s->expiry);
    sqlite3_bind_int64(q, 4, s->idle_ttl);
    sqlite3_bind_int64(q, 5, s->version);
    sqlite3_bind_text(q, 6, attrs, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 7, read_version);
    int64_t seq = event ? sqlite3_last_insert_rowid(st->wdb) : 0;
    if (event)
        sqlite3_bind_int64(q, 8, seq);
    int rc = sq__wstep(st, W_UPDATE);
    free(attrs);
    *n = sqlite3_changes(st->wdb);
    if (WOK(rc) && *n == 0 && event) { /* no row to name it: no event either */
        sqlite3_bind_int64(st->w[W_EV_DROP], 1, seq);
        rc = sq__wstep(st, W_EV_DROP);
    }
    if (WOK(rc) && *n > 0 && sq__ov_seen(st, s))
        return SD_ENOMEM;
    return WOK(rc) ? 0 : SD_EUNAVAILABLE;
}

static int r_retire(void *rows, const char *id, const unsigned char old_hash[SD_HASH_LEN],
                    const unsigned char new_hash[SD_HASH_LEN], int64_t at, bool bump)
{
    sd_store *st = rows;
    sqlite3_stmt *q = st->w[W_ROT_ADD];
    sqlite3_bind_blob(q, 1, old_hash, SD_HASH_LEN, SQLITE_STATIC);
    sq__bind_text(q, 2, id);
    sqlite3_bind_int64(q, 3, at);
    if (!WOK(sq__wstep(st, W_ROT_ADD)))
        return SD_EUNAVAILABLE;
    int which = bump ? W_ROT_SET : W_TOKEN_SET;
    q = st->w[which];
    sq__bind_text(q, 1, id);
    sqlite3_bind_blob(q, 2, new_hash, SD_HASH_LEN, SQLITE_STATIC);
    return WOK(sq__wstep(st, which)) ? 0 : SD_EUNAVAILABLE;
}

/* The events first (from the rows about to end), then the copy to history,
 * then the delete, which reports the ids. A user's sessions are those the
 * batch sees (sqlite_users.c), as ?8. */
static int end_rows(sd_store *st, sd_write *w, const sd_end_rows *e, const char *ids, size_t len)
{
    bool user = e->user_id != NULL;
    sqlite3_stmt *q = st->w[user ? W_EV_END_USER : W_EV_END_ONE];
    if (user)
        sqlite3_bind_text(q, 8, ids, (int)len, SQLITE_STATIC);
    sq__bind_text(q, 1, user ? e->user_id : e->id);
    sqlite3_bind_int64(q, 2, w->now);
    sq__bind_text(q, 3, e->reason);
    if (user)
        sq__bind_text(q, 4, e->except_id);
    sq__bind_text(q, 5, e->event);
    bind_opt(q, 6, w->actor);
    bind_opt(q, 7, w->address);
    int64_t seq = 0; /* one session's end event: the head its history row takes */
    if (user) {
        int rc = events_of_many(st, W_EV_END_USER);
        if (rc)
            return rc;
    } else {
        if (!WOK(sq__wstep(st, W_EV_END_ONE)))
            return SD_EUNAVAILABLE;
        if (sqlite3_changes(st->wdb) == 0)
            return 0; /* nothing to end: no row to copy or delete either */
        seq = sqlite3_last_insert_rowid(st->wdb);
    }
    q = st->w[user ? W_END_USER_COPY : W_END_ONE_COPY];
    sq__bind_text(q, 1, user ? e->user_id : e->id);
    sqlite3_bind_int64(q, 2, w->now);
    sq__bind_text(q, 3, e->reason);
    if (user) {
        sq__bind_text(q, 4, e->except_id);
        sqlite3_bind_text(q, 8, ids, (int)len, SQLITE_STATIC);
    } else {
        sqlite3_bind_int64(q, 9, seq);
    }
    if (!WOK(sq__wstep(st, user ? W_END_USER_COPY : W_END_ONE_COPY)))
        return SD_EUNAVAILABLE;
    if (sqlite3_changes(st->wdb) == 0)
        return 0;
    q = st->w[user ? W_END_USER_DEL : W_END_ONE_DEL];
    sq__bind_text(q, 1, user ? e->user_id : e->id);
    if (user) {
        sqlite3_bind_int64(q, 2, w->now);
        sq__bind_text(q, 4, e->except_id);
        sqlite3_bind_text(q, 8, ids, (int)len, SQLITE_STATIC);
    }
    return wstep_ended(st, user ? W_END_USER_DEL : W_END_ONE_DEL, w, false);
}

static int r_end(void *rows, sd_write *w, const sd_end_rows *e)
{
    sd_store *st = rows;
    if (!e->user_id)
        return end_rows(st, w, e, NULL, 0);
    sd_index_user_row *v = NULL;
    size_t n = 0, len = 0;
    int rc = sq__user_live(st, e->user_id, w->now, &v, &n);
    char *ids = rc ? NULL : sq__ids_json(v ? v[0].id : "", sizeof *v, n, &len);
    free(v);
    if (!rc && !ids)
        rc = SD_ENOMEM;
    if (!rc)
        rc = end_rows(st, w, e, ids, len);
    free(ids);
    return rc;
}

static int r_touch(void *rows, const sd_write *w, int64_t *n)
{
    sd_store *st = rows;
    sqlite3_stmt *q = st->w[W_TOUCH];
    sq__bind_text(q, 1, w->id);
    sqlite3_bind_int64(q, 2, w->touch_expiry);
    sqlite3_bind_int64(q, 3, w->now);
    sqlite3_bind_int64(q, 4, w->touch_version);
    int rc = sq__wstep(st, W_TOUCH);
    *n = sqlite3_changes(st->wdb);
    return WOK(rc) ? 0 : SD_EUNAVAILABLE;
}

/* The expired sessions are those the in-memory index names (it tracks
 * every row's expiry: there is no index on expiry in the table), looked up
 * by id as a JSON array; the statements check each row's expiry again. */
static int r_sweep(void *rows, sd_write *w)
{
    sd_store *st = rows;
    int max = w->limit > 0 ? w->limit : 1;
    char(*ids)[SD_ID_LEN + 1] = malloc((size_t)max * sizeof *ids);
    if (!ids)
        return SD_ENOMEM;
    int n = sd_index_expired(st->index, w->now, ids, max), rc = 0;
    size_t len = 0;
    char *json = sq__ids_json(ids[0], sizeof *ids, (size_t)n, &len);
    if (!json) {
        free(ids);
        return SD_ENOMEM;
    }
    static const int steps[] = {W_EV_SWEEP, W_SWEEP_COPY, W_SWEEP_DEL};
    for (size_t k = 0; n > 0 && rc == 0 && k < sizeof steps / sizeof steps[0]; k++) {
        int i = steps[k];
        sqlite3_bind_int64(st->w[i], 1, w->now);
        sqlite3_bind_text(st->w[i], 2, json, (int)len, SQLITE_STATIC);
        rc = i == W_SWEEP_DEL        ? wstep_ended(st, i, w, true)
             : i == W_EV_SWEEP       ? events_of_many(st, i)
             : WOK(sq__wstep(st, i)) ? 0
                                     : SD_EUNAVAILABLE;
    }
    free(ids);
    free(json);
    return rc;
}

static int r_purge(void *rows, int64_t before, int limit, int64_t *n)
{
    sd_store *st = rows;
    /* History, then the retired tokens and audit events, kept as long. */
    static const int steps[] = {W_PURGE, W_ROT_PURGE, W_EV_PURGE};
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        sqlite3_stmt *q = st->w[steps[k]];
        sqlite3_bind_int64(q, 1, before);
        sqlite3_bind_int(q, 2, limit);
        if (!WOK(sq__wstep(st, steps[k])))
            return SD_EUNAVAILABLE;
        if (k == 0)
            *n = sqlite3_changes(st->wdb);
    }
    return 0;
}

/* Seals the attrs of up to w->limit rows after w->cursor under the newest
 * key (rows already sealed under it are skipped). w->affected counts the
 * rows rewritten; w->limit comes back as the rows scanned (fewer than asked:
 * the table is done). */
static int r_reencrypt(void *rows, sd_write *w)
{
    sd_store *st = rows;
    if (!st->keys || w->limit <= 0)
        return SD_EINVALID;
    int scan = w->table ? W_RE_SCAN_HISTORY : W_RE_SCAN_ACTIVE;
    int set = w->table ? W_RE_SET_HISTORY : W_RE_SET_ACTIVE;
    sqlite3_stmt *q = st->w[scan];
    sqlite3_bind_int64(q, 1, w->cursor);
    sqlite3_bind_int(q, 2, w->limit);
    /* Collect first, then update: the scan must not run over rows it changes. */
    typedef struct change {
        int64_t rowid;
        char *sealed;
    } change;
    change *v = calloc((size_t)w->limit, sizeof *v);
    int rc = v ? 0 : SD_ENOMEM, scanned = 0;
    size_t n = 0;
    while (rc == 0 && sqlite3_step(q) == SQLITE_ROW) {
        scanned++;
        w->cursor = sqlite3_column_int64(q, 0);
        const char *id = (const char *)sqlite3_column_text(q, 1);
        const char *a = (const char *)sqlite3_column_text(q, 2);
        char *sealed = NULL;
        if (id && a &&
            (rc = sd_reseal(st->keys, id, a, (size_t)sqlite3_column_bytes(q, 2), &sealed)) == 0 &&
            sealed) {
            v[n].rowid = w->cursor;
            v[n++].sealed = sealed;
        }
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    for (size_t i = 0; i < n; i++) {
        q = st->w[set];
        sqlite3_bind_int64(q, 1, v[i].rowid);
        sqlite3_bind_text(q, 2, v[i].sealed, -1, SQLITE_STATIC);
        if (rc == 0 && !WOK(sq__wstep(st, set)))
            rc = SD_EUNAVAILABLE;
        else
            sqlite3_clear_bindings(q);
        free(v[i].sealed);
    }
    free(v);
    w->affected = (int64_t)n;
    w->limit = scanned;
    return rc;
}

static int r_raise_not_before(void *rows, int64_t *value)
{
    sd_store *st = rows;
    sqlite3_stmt *q = st->w[W_NB_RAISE];
    sqlite3_bind_int64(q, 1, *value);
    return wvalue(q, value);
}

static int r_count_before(void *rows, int64_t before, int64_t now, int64_t *n)
{
    sd_store *st = rows;
    sqlite3_stmt *q = st->w[W_NB_COUNT];
    sqlite3_bind_int64(q, 1, before);
    sqlite3_bind_int64(q, 2, now);
    *n = 0;
    return wvalue(q, n);
}

static int r_scan(void *rows, int64_t cursor, int limit, int64_t now, sd_session **out, size_t *n,
                  int64_t *last)
{
    sd_store *st = rows;
    sqlite3_stmt *q = st->w[W_SCAN];
    sd_session *v = calloc((size_t)limit, sizeof *v);
    int rc = v ? SQLITE_DONE : SQLITE_NOMEM, erc = 0;
    *n = 0;
    sqlite3_bind_int64(q, 1, cursor);
    sqlite3_bind_int64(q, 2, now);
    sqlite3_bind_int(q, 3, limit);
    while (v && *n < (size_t)limit && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        *last = sqlite3_column_int64(q, 13); /* after COLS */
        if ((erc = sq__row_to_session(st, q, true, &v[*n])))
            break;
        (*n)++;
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    if (!erc && rc != SQLITE_ROW && rc != SQLITE_DONE)
        erc = v ? SD_EUNAVAILABLE : SD_ENOMEM;
    if (erc) {
        for (size_t i = 0; i < *n; i++)
            sd_session_clear(&v[i]);
        free(v);
        *n = 0;
        return erc;
    }
    *out = v;
    return 0;
}

const sd_rows_ops sq__rows = {
    .select = r_select,
    .lock_user = NULL, /* one writer: the writer thread */
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
