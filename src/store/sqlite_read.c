/*
 * sqlite_read.c - the embedded store's reads: one read connection per
 * reading thread (thread-local, made on first use), the row mapping, and the
 * read operations of sd_store_ops (validation reads the in-memory index
 * instead: store/index.c).
 */
#include "store/sqlite_internal.h"
#include "util/jsonmem.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Atomic uint64_t sq__generations;
static _Thread_local struct {
    uint64_t generation;
    reader *r;
} tl_reader;

/* ---- small helpers ----------------------------------------------------- */

int sq__open_db(const char *path, int flags, sqlite3 **out, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "no memory");
        sqlite3_close(db);
        return SD_EUNAVAILABLE;
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_extended_result_codes(db, 1);
    *out = db;
    return 0;
}

int sq__exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        /* The statement named by its head, not quoted whole (the schema is
         * a page of SQL): "CREATE TABLE IF NOT EXISTS sessions ...". */
        int n = (int)strcspn(sql, "(\n;");
        n = n > 60 ? 60 : n;
        while (n > 0 && sql[n - 1] == ' ')
            n--;
        snprintf(err, errlen, "%.*s%s: %s", n, sql, sql[n] && sql[n] != ';' ? " ..." : "",
                 msg ? msg : "error");
        sqlite3_free(msg);
        return SD_EUNAVAILABLE;
    }
    return 0;
}

void sq__bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

/* Reads the COLS columns of the current row. */
int sq__row_to_session(const sd_store *st, sqlite3_stmt *s, bool want_attrs, sd_session *out)
{
    memset(out, 0, sizeof *out);
    const char *id = (const char *)sqlite3_column_text(s, 0);
    snprintf(out->id, sizeof out->id, "%s", id ? id : "");
    if (sqlite3_column_bytes(s, 1) == SD_HASH_LEN)
        memcpy(out->token_hash, sqlite3_column_blob(s, 1), SD_HASH_LEN);
    const char *uid = (const char *)sqlite3_column_text(s, 2);
    out->user_id = strdup(uid ? uid : "");
    out->created_at = sqlite3_column_int64(s, 3);
    out->last_seen = sqlite3_column_int64(s, 4);
    out->expiry = sqlite3_column_int64(s, 5);
    out->absolute_expiry = sqlite3_column_int64(s, 6);
    out->idle_ttl = sqlite3_column_int64(s, 7);
    out->version = sqlite3_column_int64(s, 8);
    if (sqlite3_column_bytes(s, 10) == (int)sizeof out->binding)
        memcpy(&out->binding, sqlite3_column_blob(s, 10), sizeof out->binding);
    out->auth_time = sqlite3_column_int64(s, 11);
    const char *acr = (const char *)sqlite3_column_text(s, 12);
    snprintf(out->acr, sizeof out->acr, "%s", acr ? acr : "");
    return sd_attrs_finish(st->keys, out, want_attrs, (const char *)sqlite3_column_text(s, 9),
                           (size_t)sqlite3_column_bytes(s, 9));
}

/* ---- readers ----------------------------------------------------------- */

static reader *get_reader(sd_store *st)
{
    if (tl_reader.generation == st->generation && tl_reader.r)
        return tl_reader.r;
    reader *r = calloc(1, sizeof *r);
    char err[256];
    if (!r || sq__open_db(st->path, SQLITE_OPEN_READWRITE, &r->db, err, sizeof err)) {
        sd_error("store: cannot open a read connection: %s", r ? err : "no memory");
        free(r);
        return NULL;
    }
    sq__exec(r->db, "PRAGMA query_only=1; PRAGMA mmap_size=268435456; PRAGMA cache_size=-65536",
             err, sizeof err);
    for (int i = 0; i < R_NSTMT; i++) {
        if (sqlite3_prepare_v3(r->db, sq__rsql[i], -1, SQLITE_PREPARE_PERSISTENT, &r->stmt[i],
                               NULL)) {
            sd_error("store: prepare failed: %s", sqlite3_errmsg(r->db));
            for (int j = 0; j < i; j++)
                sqlite3_finalize(r->stmt[j]);
            sqlite3_close(r->db);
            free(r);
            return NULL;
        }
    }
    pthread_mutex_lock(&st->readers_mu);
    r->next = st->readers;
    st->readers = r;
    pthread_mutex_unlock(&st->readers_mu);
    tl_reader.generation = st->generation;
    tl_reader.r = r;
    return r;
}

/* Steps a single-row query; maps SQLite codes to ours. */
int sq__read_one(const sd_store *st, sqlite3_stmt *s, bool want_attrs, sd_session *out)
{
    int rc = sqlite3_step(s), ret;
    if (rc == SQLITE_ROW)
        ret = sq__row_to_session(st, s, want_attrs, out);
    else if (rc == SQLITE_DONE)
        ret = SD_ENOTFOUND;
    else
        ret = SD_EUNAVAILABLE;
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return ret;
}

int sq_get(sd_store *st, const char *id, bool want_attrs, sd_session *out)
{
    if (!want_attrs && st->index)
        return sd_index_get_by_id(st->index, id, out);
    reader *r = get_reader(st);
    if (!r)
        return SD_EUNAVAILABLE;
    sqlite3_stmt *s = r->stmt[R_GET];
    sq__bind_text(s, 1, id);
    return sq__read_one(st, s, want_attrs, out);
}

int sq_get_by_token(sd_store *st, const unsigned char hash[SD_HASH_LEN], bool want_attrs,
                    sd_session *out)
{
    if (!want_attrs)
        return sd_index_get_by_token(st->index, hash, out);
    /* The table has no index on token_hash (sqlite_sql.c): the in-memory
     * index names the session, the table gives its row, which must still
     * hold this token (a rotation may have committed in between). */
    sd_session found = {0};
    int rc = sd_index_get_by_token(st->index, hash, &found);
    char id[SD_ID_LEN + 1];
    memcpy(id, found.id, sizeof id);
    sd_session_clear(&found);
    if (rc)
        return rc;
    rc = sq_get(st, id, true, out);
    if (rc == 0 && !sd_hash_equal(out->token_hash, hash)) {
        sd_session_clear(out);
        rc = SD_ENOTFOUND;
    }
    return rc;
}

int sq_list_user(sd_store *st, const char *user_id, int64_t now, const sd_cursor *after, int limit,
                 sd_session **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    reader *r = get_reader(st);
    if (!r)
        return SD_EUNAVAILABLE;
    size_t len = 0;
    char *ids = sq__user_ids_json(st, user_id, &len);
    if (!ids)
        return SD_ENOMEM;
    sqlite3_stmt *s = r->stmt[after ? R_LIST_AFTER : R_LIST_FIRST];
    sqlite3_bind_text(s, 6, ids, (int)len, free);
    sq__bind_text(s, 1, user_id);
    sqlite3_bind_int64(s, 2, now);
    sqlite3_bind_int(s, 3, limit);
    if (after) {
        sqlite3_bind_int64(s, 4, after->last_seen);
        sq__bind_text(s, 5, after->id);
    }
    sd_session *v = calloc((size_t)limit, sizeof *v);
    int ret = v ? 0 : SD_ENOMEM, rc;
    size_t k = 0;
    while (ret == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW && k < (size_t)limit)
        if ((ret = sq__row_to_session(st, s, true, &v[k])) == 0)
            k++;
    if (ret == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
        ret = SD_EUNAVAILABLE;
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (ret) {
        sd_sessions_free(v, k);
        return ret;
    }
    *out = v;
    *n = k;
    return 0;
}

static void column_copy(sqlite3_stmt *s, int i, char *out, size_t size)
{
    const char *v = (const char *)sqlite3_column_text(s, i);
    snprintf(out, size, "%s", v ? v : "");
}

int sq_get_rotated(sd_store *st, const unsigned char hash[SD_HASH_LEN],
                   char session_id[SD_ID_LEN + 1], int64_t *rotated_at)
{
    reader *r = get_reader(st);
    if (!r)
        return SD_EUNAVAILABLE;
    sqlite3_stmt *s = r->stmt[R_ROTATED];
    sqlite3_bind_blob(s, 1, hash, SD_HASH_LEN, SQLITE_STATIC);
    int rc = sqlite3_step(s), ret = SD_EUNAVAILABLE;
    if (rc == SQLITE_ROW) {
        column_copy(s, 0, session_id, SD_ID_LEN + 1);
        *rotated_at = sqlite3_column_int64(s, 1);
        ret = 0;
    } else if (rc == SQLITE_DONE) {
        ret = SD_ENOTFOUND;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return ret;
}

/* Steps s (bound, EV_COLS) into a malloc'd array of at most limit events,
 * then resets it. */
static int read_events(sqlite3_stmt *s, int limit, sd_event **out, size_t *n)
{
    sd_event *v = calloc(limit > 0 ? (size_t)limit : 1, sizeof *v);
    int ret = v ? 0 : SD_ENOMEM, rc = SQLITE_DONE;
    size_t k = 0;
    while (ret == 0 && k < (size_t)limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        sd_event *e = &v[k++];
        e->seq = sqlite3_column_int64(s, 0);
        e->time = sqlite3_column_int64(s, 1);
        column_copy(s, 2, e->event, sizeof e->event);
        column_copy(s, 3, e->session_id, sizeof e->session_id);
        column_copy(s, 4, e->user_id, sizeof e->user_id);
        column_copy(s, 5, e->actor, sizeof e->actor);
        column_copy(s, 6, e->address, sizeof e->address);
        column_copy(s, 7, e->reason, sizeof e->reason);
    }
    if (ret == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
        ret = SD_EUNAVAILABLE;
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (ret) {
        free(v);
        return ret;
    }
    *out = v;
    *n = k;
    return 0;
}

int sq_events(sd_store *st, sd_event_scope scope, const char *key, int64_t after, int64_t before,
              int limit, sd_event **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    reader *r = get_reader(st);
    if (!r)
        return SD_EUNAVAILABLE;
    bool desc = before > 0 && scope != SD_EVENTS_ALL;
    sqlite3_stmt *s = r->stmt[scope == SD_EVENTS_SESSION ? (desc ? R_EV_SESSION_DESC : R_EV_SESSION)
                              : scope == SD_EVENTS_USER  ? (desc ? R_EV_USER_DESC : R_EV_USER)
                                                         : R_EV_ALL];
    if (scope != SD_EVENTS_ALL)
        sq__bind_text(s, 1, key);
    if (scope == SD_EVENTS_USER) {
        size_t len = 0;
        char *ids = sq__user_ids_json(st, key, &len);
        if (!ids)
            return SD_ENOMEM;
        sqlite3_bind_text(s, 4, ids, (int)len, free);
    }
    sqlite3_bind_int64(s, 2, desc ? before : after);
    sqlite3_bind_int(s, 3, limit);
    return read_events(s, limit, out, n);
}

int sq_ended(sd_store *st, const sd_feed_cursor *after, int64_t since_time, int limit,
             sd_event **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    reader *r = get_reader(st);
    if (!r)
        return SD_EUNAVAILABLE;
    sqlite3_stmt *s = r->stmt[R_ENDED];
    sqlite3_bind_int64(s, 1, after->seq);
    sqlite3_bind_int64(s, 2, since_time);
    sqlite3_bind_int(s, 3, limit);
    return read_events(s, limit, out, n);
}

int sq_feed(sd_store *st, const sd_feed_cursor *after, int limit, sd_event **out, size_t *n)
{
    /* One writer commits in seq order: the audit log's feed is this one. */
    return sq_events(st, SD_EVENTS_ALL, NULL, after->seq, 0, limit, out, n);
}

int sq__feed_end(sd_store *st, int64_t *seq)
{
    reader *r = get_reader(st);
    if (!r)
        return SD_EUNAVAILABLE;
    sqlite3_stmt *s = r->stmt[R_EV_TAIL];
    int rc = sqlite3_step(s);
    *seq = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : SD_EUNAVAILABLE;
}

int sq_not_before(sd_store *st, int64_t *value)
{
    reader *r = get_reader(st);
    if (!r)
        return SD_EUNAVAILABLE;
    sqlite3_stmt *s = r->stmt[R_NOT_BEFORE];
    int rc = sqlite3_step(s);
    *value = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : SD_EUNAVAILABLE;
}

int sq_ready(sd_store *st)
{
    if (atomic_load(&st->broken) || atomic_load(&st->write_failing))
        return SD_EUNAVAILABLE;
    reader *r = get_reader(st);
    if (!r)
        return SD_EUNAVAILABLE;
    sqlite3_stmt *s = r->stmt[R_PING];
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : SD_EUNAVAILABLE;
}

void sq_stats(sd_store *st, sd_store_stats *out)
{
    sd_writer_stats(st->writer, out);
    out->broken = atomic_load(&st->broken);
}
