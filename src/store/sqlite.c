/*
 * sqlite.c - the embedded store: SQLite in WAL mode, one read connection per
 * reading thread, and the row operations (session/write.h) and transaction
 * (store/writer.h) the shared writer runs on its connection.
 *
 * Durability: synchronous=FULL, so a COMMIT has been fsync'd when it returns;
 * the shared writer acknowledges a write only after its batch committed (one
 * fsync for the batch), each write inside its own SAVEPOINT. A failed COMMIT
 * with an I/O error marks the store broken: no later write is acknowledged
 * (retrying an fsync can falsely report success). Each committed batch's
 * effects reach the in-memory validation index (store/index.c) before any of
 * its writes is acknowledged.
 *
 * Checkpoints run on their own thread and connection, off the commit path;
 * the writer's WAL hook wakes it when the log grows.
 *
 * Tables: sessions (active), session_history (ended: revoked or expired,
 * kept for the retention period), rotated_tokens, audit_events (every
 * lifecycle change, written in the change's own transaction). Times are ms
 * since the epoch.
 */
#include "store/backup.h"
#include "store/crypt.h"
#include "store/index.h"
#include "store/store.h"
#include "store/writer.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define COLS                                                                                       \
    "id, token_hash, user_id, created_at, last_seen, expiry, absolute_expiry, idle_ttl, version, " \
    "attrs, binding, auth_time, acr"
#if defined(__SANITIZE_ADDRESS__)
#define SD_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SD_SANITIZED 1
#endif
#endif
#ifndef SD_SANITIZED
#define SD_SANITIZED 0
#endif

#define CHECKPOINT_PAGES 1000

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS sessions("
    " id TEXT NOT NULL UNIQUE, token_hash BLOB NOT NULL UNIQUE, user_id TEXT NOT NULL,"
    " created_at INTEGER NOT NULL, last_seen INTEGER NOT NULL, expiry INTEGER NOT NULL,"
    " absolute_expiry INTEGER NOT NULL, idle_ttl INTEGER NOT NULL, version INTEGER NOT NULL,"
    " attrs TEXT NOT NULL, binding BLOB, auth_time INTEGER, acr TEXT);"
    "CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(user_id, last_seen, id);"
    "CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions(expiry, id);"
    "CREATE TABLE IF NOT EXISTS session_history("
    " id TEXT NOT NULL UNIQUE, token_hash BLOB NOT NULL, user_id TEXT NOT NULL,"
    " created_at INTEGER NOT NULL, last_seen INTEGER NOT NULL, expiry INTEGER NOT NULL,"
    " absolute_expiry INTEGER NOT NULL, idle_ttl INTEGER NOT NULL, version INTEGER NOT NULL,"
    " attrs TEXT NOT NULL, ended_at INTEGER NOT NULL, end_reason TEXT NOT NULL, binding BLOB,"
    " auth_time INTEGER, acr TEXT);"
    "CREATE INDEX IF NOT EXISTS history_by_ended ON session_history(ended_at);"
    "CREATE INDEX IF NOT EXISTS history_by_user ON session_history(user_id, ended_at);"
    "CREATE TABLE IF NOT EXISTS rotated_tokens(token_hash BLOB PRIMARY KEY, session_id TEXT NOT "
    "NULL,"
    " rotated_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS rotated_by_time ON rotated_tokens(rotated_at);"
    /* AUTOINCREMENT: a seq is never reused, even after a purge emptied the
     * table, so the audit log's cursor into it stays valid. */
    "CREATE TABLE IF NOT EXISTS audit_events(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " at INTEGER NOT NULL, event TEXT NOT NULL, session_id TEXT, user_id TEXT,"
    " actor TEXT, address TEXT, reason TEXT);"
    "CREATE INDEX IF NOT EXISTS events_by_session ON audit_events(session_id, seq);"
    "CREATE INDEX IF NOT EXISTS events_by_user ON audit_events(user_id, seq);"
    /* The revocation feed's (sq_ended); made at open where missing. */
    "CREATE INDEX IF NOT EXISTS events_ended ON audit_events(seq) "
    " WHERE event IN ('revoked', 'evicted');"
    "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', '2');";

/* Version 2 added columns to sessions and session_history: the binding and
 * the authentication context. Added where missing, inside the schema
 * transaction. */
static const char *const v2_columns[][2] = {
    {"binding", "BLOB"}, {"auth_time", "INTEGER"}, {"acr", "TEXT"}};

/* Statements of the writer connection, prepared once. */
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

static const char *const wsql[W_NSTMT] = {
    [W_BEGIN] = "BEGIN IMMEDIATE",
    [W_COMMIT] = "COMMIT",
    [W_ROLLBACK] = "ROLLBACK",
    [W_SAVEPOINT] = "SAVEPOINT w",
    [W_RELEASE] = "RELEASE w",
    [W_ROLLBACK_TO] = "ROLLBACK TO w",
    [W_INSERT] =
        "INSERT INTO sessions(" COLS ") VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)",
    [W_SELECT] = "SELECT " COLS " FROM sessions WHERE id = ?1",
    [W_UPDATE] = "UPDATE sessions SET last_seen=?2, expiry=?3, idle_ttl=?4, version=?5, attrs=?6 "
                 "WHERE id = ?1 AND version = ?7",
    [W_END_ONE_COPY] = "INSERT OR REPLACE INTO session_history(" COLS ", ended_at, end_reason) "
                       "SELECT " COLS ", ?2, ?3 FROM sessions WHERE id = ?1 AND expiry > ?2",
    [W_END_ONE_DEL] = "DELETE FROM sessions WHERE id = ?1 RETURNING id",
    [W_END_USER_COPY] = "INSERT OR REPLACE INTO session_history(" COLS ", ended_at, end_reason) "
                        "SELECT " COLS ", ?2, ?3 FROM sessions "
                        "WHERE user_id = ?1 AND expiry > ?2 AND id IS NOT ?4",
    [W_END_USER_DEL] = "DELETE FROM sessions WHERE user_id = ?1 AND expiry > ?2 AND id IS NOT ?4 "
                       "RETURNING id",
    [W_TOUCH] = "UPDATE sessions SET expiry = max(expiry, min(?2, absolute_expiry)), "
                "last_seen = max(last_seen, ?3) WHERE id = ?1 AND expiry > ?3 AND version = ?4",
    [W_SWEEP_COPY] = "INSERT OR REPLACE INTO session_history(" COLS ", ended_at, end_reason) "
                     "SELECT " COLS ", min(expiry, absolute_expiry), 'expired' FROM sessions "
                     "WHERE id IN (SELECT id FROM sessions WHERE expiry <= ?1 "
                     "ORDER BY expiry, id LIMIT ?2)",
    [W_SWEEP_DEL] = "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expiry <= ?1 "
                    "ORDER BY expiry, id LIMIT ?2) RETURNING id",
    [W_LOAD] = "SELECT " COLS " FROM sessions",
    [W_ROT_FIND] =
        "SELECT rotated_at FROM rotated_tokens WHERE token_hash = ?1 AND session_id = ?2",
    [W_ROT_ADD] = "INSERT OR REPLACE INTO rotated_tokens(token_hash, session_id, rotated_at) "
                  "VALUES(?1, ?2, ?3)",
    [W_ROT_SET] = "UPDATE sessions SET token_hash = ?2, version = version + 1 WHERE id = ?1",
    [W_ROT_PURGE] = "DELETE FROM rotated_tokens WHERE token_hash IN (SELECT token_hash FROM "
                    "rotated_tokens WHERE rotated_at < ?1 LIMIT ?2)",
    [W_TOKEN_SET] = "UPDATE sessions SET token_hash = ?2 WHERE id = ?1",
    [W_USER_COUNT] = "SELECT count(*) FROM sessions WHERE user_id = ?1 AND expiry > ?2",
    [W_USER_OLDEST] = "SELECT id FROM sessions WHERE user_id = ?1 AND expiry > ?2 "
                      "ORDER BY last_seen, id LIMIT ?3",
    [W_EV_ONE] = "INSERT INTO audit_events(at, event, session_id, user_id, actor, address, reason) "
                 "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    /* The ending events are written from the rows about to end, before the
     * copy to history: same predicates as W_END_ONE_COPY / W_END_USER_COPY. */
    [W_EV_END_ONE] = "INSERT INTO audit_events(at, event, session_id, user_id, actor, address, "
                     "reason) SELECT ?2, ?5, id, user_id, ?6, ?7, ?3 FROM sessions "
                     "WHERE id = ?1 AND expiry > ?2",
    [W_EV_END_USER] = "INSERT INTO audit_events(at, event, session_id, user_id, actor, address, "
                      "reason) SELECT ?2, ?5, id, user_id, ?6, ?7, ?3 FROM sessions "
                      "WHERE user_id = ?1 AND expiry > ?2 AND id IS NOT ?4",
    [W_EV_SWEEP] = "INSERT INTO audit_events(at, event, session_id, user_id, reason) "
                   "SELECT min(expiry, absolute_expiry), 'expired', id, user_id, 'expired' "
                   "FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expiry <= ?1 "
                   "ORDER BY expiry, id LIMIT ?2)",
    /* Events are appended in time order, so the old ones are a prefix: look
     * at the first ?2 only (no index on time needed). */
    [W_EV_PURGE] = "DELETE FROM audit_events WHERE seq IN (SELECT seq FROM audit_events "
                   "ORDER BY seq LIMIT ?2) AND at < ?1",
    [W_RE_SCAN_ACTIVE] = "SELECT rowid, id, attrs FROM sessions WHERE rowid > ?1 ORDER BY rowid "
                         "LIMIT ?2",
    [W_RE_SCAN_HISTORY] = "SELECT rowid, id, attrs FROM session_history WHERE rowid > ?1 "
                          "ORDER BY rowid LIMIT ?2",
    [W_RE_SET_ACTIVE] = "UPDATE sessions SET attrs = ?2 WHERE rowid = ?1",
    [W_RE_SET_HISTORY] = "UPDATE session_history SET attrs = ?2 WHERE rowid = ?1",
    /* The global not-before, never lowered (meta holds text). */
    [W_NB_RAISE] =
        "INSERT INTO meta(key, value) VALUES('not_before', ?1) ON CONFLICT(key) DO "
        "UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) "
        "RETURNING CAST(value AS INTEGER)",
    [W_SCAN] = "SELECT " COLS ", rowid FROM sessions WHERE rowid > ?1 AND expiry > ?2 "
               "ORDER BY rowid LIMIT ?3",
    [W_NB_COUNT] = "SELECT count(*) FROM sessions WHERE created_at < ?1 AND expiry > ?2",
    [W_PURGE] = "DELETE FROM session_history WHERE rowid IN (SELECT rowid FROM session_history "
                "WHERE ended_at < ?1 LIMIT ?2)",
};

/* Statements of a read connection. */
enum {
    R_GET,
    R_TOKEN,
    R_LIST_FIRST,
    R_LIST_AFTER,
    R_PING,
    R_EV_ALL,
    R_EV_SESSION,
    R_EV_USER,
    R_ROTATED,
    R_ENDED,
    R_NOT_BEFORE,
    R_NSTMT
};
#define EV_COLS "seq, at, event, session_id, user_id, actor, address, reason"
static const char *const rsql[R_NSTMT] = {
    [R_GET] = "SELECT " COLS " FROM sessions WHERE id = ?1",
    [R_TOKEN] = "SELECT " COLS " FROM sessions WHERE token_hash = ?1",
    [R_LIST_FIRST] = "SELECT " COLS " FROM sessions WHERE user_id = ?1 AND expiry > ?2 "
                     "ORDER BY last_seen DESC, id DESC LIMIT ?3",
    [R_LIST_AFTER] = "SELECT " COLS " FROM sessions WHERE user_id = ?1 AND expiry > ?2 "
                     "AND (last_seen, id) < (?4, ?5) ORDER BY last_seen DESC, id DESC LIMIT ?3",
    [R_PING] = "SELECT 1 FROM meta LIMIT 1",
    [R_EV_ALL] = "SELECT " EV_COLS " FROM audit_events WHERE seq > ?2 ORDER BY seq LIMIT ?3",
    [R_EV_SESSION] = "SELECT " EV_COLS " FROM audit_events WHERE session_id = ?1 AND seq > ?2 "
                     "ORDER BY seq LIMIT ?3",
    [R_EV_USER] = "SELECT " EV_COLS " FROM audit_events WHERE user_id = ?1 AND seq > ?2 "
                  "ORDER BY seq LIMIT ?3",
    [R_ROTATED] = "SELECT session_id, rotated_at FROM rotated_tokens WHERE token_hash = ?1",
    /* One writer commits in seq order: seq alone is the feed's order. */
    [R_NOT_BEFORE] = "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'not_before'",
    [R_ENDED] = "SELECT " EV_COLS " FROM audit_events WHERE seq > ?1 AND at >= ?2 "
                "AND event IN ('revoked', 'evicted') ORDER BY seq LIMIT ?3",
};

typedef struct reader {
    sqlite3 *db;
    sqlite3_stmt *stmt[R_NSTMT];
    struct reader *next;
} reader;

struct sd_store {
    char path[1100];
    int lock_fd;
    uint64_t generation;
    sqlite3 *wdb;
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

    sd_index *index; /* exact in-memory index of the active table */

    const sd_keyring *keys; /* encryption at rest of attrs; NULL: plain */
    _Atomic bool broken;
    _Atomic bool write_failing; /* the last commit that tried to change something failed */
};

static _Atomic uint64_t generations;
static _Thread_local struct {
    uint64_t generation;
    reader *r;
} tl_reader;

/* ---- small helpers ----------------------------------------------------- */

static int open_db(const char *path, int flags, sqlite3 **out, char *err, size_t errlen)
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

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", sql, msg ? msg : "error");
        sqlite3_free(msg);
        return SD_EUNAVAILABLE;
    }
    return 0;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

/* Reads the COLS columns of the current row. */
static int row_to_session(const sd_store *st, sqlite3_stmt *s, bool want_attrs, sd_session *out)
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
    if (want_attrs) {
        /* Sealed when the store has keys (crypt.h); plain JSON otherwise. */
        const char *a = (const char *)sqlite3_column_text(s, 9);
        size_t n = 0;
        char *plain =
            a ? sd_open(st->keys, out->id, a, (size_t)sqlite3_column_bytes(s, 9), &n) : NULL;
        if (a && !plain) {
            sd_error("store: cannot decrypt the metadata of session %s (unknown key or altered "
                     "row)",
                     out->id);
            sd_session_clear(out);
            return SD_EUNAVAILABLE;
        }
        out->attrs = plain ? json_loadb(plain, n, 0, NULL) : NULL;
        if (plain)
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

/* ---- readers ----------------------------------------------------------- */

static reader *get_reader(sd_store *st)
{
    if (tl_reader.generation == st->generation && tl_reader.r)
        return tl_reader.r;
    reader *r = calloc(1, sizeof *r);
    char err[256];
    if (!r || open_db(st->path, SQLITE_OPEN_READWRITE, &r->db, err, sizeof err)) {
        sd_error("store: cannot open a read connection: %s", r ? err : "no memory");
        free(r);
        return NULL;
    }
    exec(r->db, "PRAGMA query_only=1; PRAGMA mmap_size=268435456; PRAGMA cache_size=-65536", err,
         sizeof err);
    for (int i = 0; i < R_NSTMT; i++) {
        if (sqlite3_prepare_v3(r->db, rsql[i], -1, SQLITE_PREPARE_PERSISTENT, &r->stmt[i], NULL)) {
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
static int read_one(const sd_store *st, sqlite3_stmt *s, bool want_attrs, sd_session *out)
{
    int rc = sqlite3_step(s), ret;
    if (rc == SQLITE_ROW)
        ret = row_to_session(st, s, want_attrs, out);
    else if (rc == SQLITE_DONE)
        ret = SD_ENOTFOUND;
    else
        ret = SD_EUNAVAILABLE;
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return ret;
}

static int sq_get(sd_store *st, const char *id, bool want_attrs, sd_session *out)
{
    if (!want_attrs && st->index)
        return sd_index_get_by_id(st->index, id, out);
    reader *r = get_reader(st);
    if (!r)
        return SD_EUNAVAILABLE;
    sqlite3_stmt *s = r->stmt[R_GET];
    bind_text(s, 1, id);
    return read_one(st, s, want_attrs, out);
}

static int sq_get_by_token(sd_store *st, const unsigned char hash[SD_HASH_LEN], bool want_attrs,
                           sd_session *out)
{
    if (!want_attrs && st->index)
        return sd_index_get_by_token(st->index, hash, out);
    reader *r = get_reader(st);
    if (!r)
        return SD_EUNAVAILABLE;
    sqlite3_stmt *s = r->stmt[R_TOKEN];
    sqlite3_bind_blob(s, 1, hash, SD_HASH_LEN, SQLITE_STATIC);
    int rc = read_one(st, s, want_attrs, out);
    if (rc == 0 && !sd_hash_equal(out->token_hash, hash)) {
        sd_session_clear(out);
        rc = SD_ENOTFOUND;
    }
    return rc;
}

static int sq_list_user(sd_store *st, const char *user_id, int64_t now, const sd_cursor *after,
                        int limit, sd_session **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    reader *r = get_reader(st);
    if (!r)
        return SD_EUNAVAILABLE;
    sqlite3_stmt *s = r->stmt[after ? R_LIST_AFTER : R_LIST_FIRST];
    bind_text(s, 1, user_id);
    sqlite3_bind_int64(s, 2, now);
    sqlite3_bind_int(s, 3, limit);
    if (after) {
        sqlite3_bind_int64(s, 4, after->last_seen);
        bind_text(s, 5, after->id);
    }
    sd_session *v = calloc((size_t)limit, sizeof *v);
    int ret = v ? 0 : SD_ENOMEM, rc;
    size_t k = 0;
    while (ret == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW && k < (size_t)limit)
        if ((ret = row_to_session(st, s, true, &v[k])) == 0)
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

static int sq_get_rotated(sd_store *st, const unsigned char hash[SD_HASH_LEN],
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

static int sq_events(sd_store *st, sd_event_scope scope, const char *key, int64_t after, int limit,
                     sd_event **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    reader *r = get_reader(st);
    if (!r)
        return SD_EUNAVAILABLE;
    sqlite3_stmt *s = r->stmt[scope == SD_EVENTS_SESSION ? R_EV_SESSION
                              : scope == SD_EVENTS_USER  ? R_EV_USER
                                                         : R_EV_ALL];
    if (scope != SD_EVENTS_ALL)
        bind_text(s, 1, key);
    sqlite3_bind_int64(s, 2, after);
    sqlite3_bind_int(s, 3, limit);
    return read_events(s, limit, out, n);
}

static int sq_ended(sd_store *st, const sd_feed_cursor *after, int64_t since_time, int limit,
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

static int sq_not_before(sd_store *st, int64_t *value)
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

static int sq_ready(sd_store *st)
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

static void sq_stats(sd_store *st, sd_store_stats *out)
{
    sd_writer_stats(st->writer, out);
    out->broken = atomic_load(&st->broken);
}

/* ---- the writer -------------------------------------------------------- */

/* Runs a prepared statement of the writer to completion; returns the SQLite
 * result code (SQLITE_DONE on success) and resets it. */
static int wstep(sd_store *st, int which)
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
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return erc ? erc : WOK(rc) ? 0 : SD_EUNAVAILABLE;
}

static void bind_opt(sqlite3_stmt *s, int i, const char *v)
{
    bind_text(s, i, v && v[0] ? v : NULL);
}

/* ---- the row operations (session/write.h) ------------------------------ */

static int r_select(void *rows, const char *id, sd_session *out)
{
    sd_store *st = rows;
    bind_text(st->w[W_SELECT], 1, id);
    return read_one(st, st->w[W_SELECT], true, out);
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

static int r_count_user(void *rows, const char *user_id, int64_t now, int64_t *count)
{
    sd_store *st = rows;
    sqlite3_stmt *q = st->w[W_USER_COUNT];
    bind_text(q, 1, user_id);
    sqlite3_bind_int64(q, 2, now);
    *count = 0;
    return wvalue(q, count);
}

static int r_oldest_user(void *rows, const char *user_id, int64_t now, size_t limit,
                         char (*ids)[SD_ID_LEN + 1], size_t *n)
{
    sd_store *st = rows;
    sqlite3_stmt *q = st->w[W_USER_OLDEST];
    bind_text(q, 1, user_id);
    sqlite3_bind_int64(q, 2, now);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)limit);
    int rc = SQLITE_DONE;
    *n = 0;
    while (*n < limit && (rc = sqlite3_step(q)) == SQLITE_ROW)
        snprintf(ids[(*n)++], SD_ID_LEN + 1, "%s", (const char *)sqlite3_column_text(q, 0));
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : SD_EUNAVAILABLE;
}

static int r_find_retired(void *rows, const unsigned char hash[SD_HASH_LEN], const char *id,
                          bool *found, int64_t *at)
{
    sd_store *st = rows;
    sqlite3_stmt *q = st->w[W_ROT_FIND];
    sqlite3_bind_blob(q, 1, hash, SD_HASH_LEN, SQLITE_STATIC);
    bind_text(q, 2, id);
    int rc = sqlite3_step(q);
    *found = rc == SQLITE_ROW;
    *at = *found ? sqlite3_column_int64(q, 0) : 0;
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : SD_EUNAVAILABLE;
}

static int r_event(void *rows, const sd_write *w, const char *event, const char *id,
                   const char *user_id, const char *reason)
{
    sd_store *st = rows;
    sqlite3_stmt *q = st->w[W_EV_ONE];
    sqlite3_bind_int64(q, 1, w->now);
    bind_text(q, 2, event);
    bind_text(q, 3, id);
    bind_text(q, 4, user_id);
    bind_opt(q, 5, w->actor);
    bind_opt(q, 6, w->address);
    bind_text(q, 7, reason);
    return WOK(wstep(st, W_EV_ONE)) ? 0 : SD_EUNAVAILABLE;
}

static int r_insert(void *rows, const sd_write *w, const sd_session *s, const char *event)
{
    sd_store *st = rows;
    char *attrs = sd_attrs_text(st->keys, s->id, s->attrs);
    if (!attrs)
        return SD_ENOMEM;
    sqlite3_stmt *q = st->w[W_INSERT];
    bind_text(q, 1, s->id);
    sqlite3_bind_blob(q, 2, s->token_hash, SD_HASH_LEN, SQLITE_STATIC);
    bind_text(q, 3, s->user_id);
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
    bind_text(q, 13, s->acr[0] ? s->acr : NULL);
    int rc = wstep(st, W_INSERT);
    free(attrs);
    if (!WOK(rc))
        return SD_EUNAVAILABLE; /* a UNIQUE clash of 128/256-bit random values included */
    return r_event(rows, w, event, s->id, s->user_id, NULL);
}

static int r_update(void *rows, const sd_session *s, int64_t read_version, int64_t *n)
{
    sd_store *st = rows;
    char *attrs = sd_attrs_text(st->keys, s->id, s->attrs);
    if (!attrs)
        return SD_ENOMEM;
    sqlite3_stmt *q = st->w[W_UPDATE];
    bind_text(q, 1, s->id);
    sqlite3_bind_int64(q, 2, s->last_seen);
    sqlite3_bind_int64(q, 3, s->expiry);
    sqlite3_bind_int64(q, 4, s->idle_ttl);
    sqlite3_bind_int64(q, 5, s->version);
    sqlite3_bind_text(q, 6, attrs, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 7, read_version);
    int rc = wstep(st, W_UPDATE);
    free(attrs);
    *n = sqlite3_changes(st->wdb);
    return WOK(rc) ? 0 : SD_EUNAVAILABLE;
}

static int r_retire(void *rows, const char *id, const unsigned char old_hash[SD_HASH_LEN],
                    const unsigned char new_hash[SD_HASH_LEN], int64_t at, bool bump)
{
    sd_store *st = rows;
    sqlite3_stmt *q = st->w[W_ROT_ADD];
    sqlite3_bind_blob(q, 1, old_hash, SD_HASH_LEN, SQLITE_STATIC);
    bind_text(q, 2, id);
    sqlite3_bind_int64(q, 3, at);
    if (!WOK(wstep(st, W_ROT_ADD)))
        return SD_EUNAVAILABLE;
    int which = bump ? W_ROT_SET : W_TOKEN_SET;
    q = st->w[which];
    bind_text(q, 1, id);
    sqlite3_bind_blob(q, 2, new_hash, SD_HASH_LEN, SQLITE_STATIC);
    return WOK(wstep(st, which)) ? 0 : SD_EUNAVAILABLE;
}

/* The events first (from the rows about to end), then the copy to history,
 * then the delete, which reports the ids. */
static int r_end(void *rows, sd_write *w, const sd_end_rows *e)
{
    sd_store *st = rows;
    bool user = e->user_id != NULL;
    sqlite3_stmt *q = st->w[user ? W_EV_END_USER : W_EV_END_ONE];
    bind_text(q, 1, user ? e->user_id : e->id);
    sqlite3_bind_int64(q, 2, w->now);
    bind_text(q, 3, e->reason);
    if (user)
        bind_text(q, 4, e->except_id);
    bind_text(q, 5, e->event);
    bind_opt(q, 6, w->actor);
    bind_opt(q, 7, w->address);
    if (!WOK(wstep(st, user ? W_EV_END_USER : W_EV_END_ONE)))
        return SD_EUNAVAILABLE;
    q = st->w[user ? W_END_USER_COPY : W_END_ONE_COPY];
    bind_text(q, 1, user ? e->user_id : e->id);
    sqlite3_bind_int64(q, 2, w->now);
    bind_text(q, 3, e->reason);
    if (user)
        bind_text(q, 4, e->except_id);
    if (!WOK(wstep(st, user ? W_END_USER_COPY : W_END_ONE_COPY)))
        return SD_EUNAVAILABLE;
    if (sqlite3_changes(st->wdb) == 0)
        return 0;
    q = st->w[user ? W_END_USER_DEL : W_END_ONE_DEL];
    bind_text(q, 1, user ? e->user_id : e->id);
    if (user) {
        sqlite3_bind_int64(q, 2, w->now);
        bind_text(q, 4, e->except_id);
    }
    return wstep_ended(st, user ? W_END_USER_DEL : W_END_ONE_DEL, w, false);
}

static int r_touch(void *rows, const sd_write *w, int64_t *n)
{
    sd_store *st = rows;
    sqlite3_stmt *q = st->w[W_TOUCH];
    bind_text(q, 1, w->id);
    sqlite3_bind_int64(q, 2, w->touch_expiry);
    sqlite3_bind_int64(q, 3, w->now);
    sqlite3_bind_int64(q, 4, w->touch_version);
    int rc = wstep(st, W_TOUCH);
    *n = sqlite3_changes(st->wdb);
    return WOK(rc) ? 0 : SD_EUNAVAILABLE;
}

static int r_sweep(void *rows, sd_write *w)
{
    sd_store *st = rows;
    static const int steps[] = {W_EV_SWEEP, W_SWEEP_COPY, W_SWEEP_DEL};
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        int i = steps[k];
        sqlite3_bind_int64(st->w[i], 1, w->now);
        sqlite3_bind_int(st->w[i], 2, w->limit);
        int rc = i == W_SWEEP_DEL    ? wstep_ended(st, i, w, true)
                 : WOK(wstep(st, i)) ? 0
                                     : SD_EUNAVAILABLE;
        if (rc)
            return rc;
    }
    return 0;
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
        if (!WOK(wstep(st, steps[k])))
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
        if (rc == 0 && !WOK(wstep(st, set)))
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
        if ((erc = row_to_session(st, q, true, &v[*n])))
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

static const sd_rows_ops sq_rows = {
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

static bool fatal_code(int rc)
{
    int primary = rc & 0xff;
    return primary == SQLITE_IOERR || primary == SQLITE_CORRUPT || primary == SQLITE_FULL ||
           primary == SQLITE_NOTADB || primary == SQLITE_CANTOPEN;
}

/* ---- the transaction (store/writer.h) ---------------------------------- */

static int tx_begin(void *be)
{
    sd_store *st = be;
    if (atomic_load(&st->broken) || !WOK(wstep(st, W_BEGIN)))
        return SD_EUNAVAILABLE;
    st->changes_at_begin = sqlite3_total_changes(st->wdb);
    return 0;
}

static int tx_savepoint(void *be)
{
    return WOK(wstep(be, W_SAVEPOINT)) ? 0 : SD_EUNAVAILABLE;
}

static void tx_release(void *be, bool more)
{
    (void)more;
    wstep(be, W_RELEASE);
}

static void tx_rollback_to(void *be)
{
    wstep(be, W_ROLLBACK_TO);
    wstep(be, W_RELEASE);
}

/* A COMMIT that fails with an I/O error marks the store broken: retrying
 * an fsync can falsely report success. Readiness comes back with the first
 * commit that really wrote. */
static int tx_commit(void *be)
{
    sd_store *st = be;
    if (WOK(wstep(st, W_COMMIT))) {
        if (sqlite3_total_changes(st->wdb) != st->changes_at_begin)
            atomic_store(&st->write_failing, false);
        return 0;
    }
    int ext = sqlite3_extended_errcode(st->wdb);
    sd_error("store: commit failed: %s (%d)", sqlite3_errmsg(st->wdb), ext);
    if (!sqlite3_get_autocommit(st->wdb))
        wstep(st, W_ROLLBACK);
    if (fatal_code(ext) && (ext & 0xff) != SQLITE_FULL) {
        atomic_store(&st->broken, true);
        sd_error("store: marked broken after an I/O error; no further write will be "
                 "acknowledged until restart");
    }
    atomic_store(&st->write_failing, true);
    return SD_EUNAVAILABLE;
}

/* After a successful COMMIT, and before any write of the batch is
 * acknowledged: bring the in-memory index to the committed state, by the
 * effects of the writes that were kept. */
static void tx_committed(void *be, sd_write *batch)
{
    sd_store *st = be;
    sd_index_lock(st->index);
    for (sd_write *w = batch; w; w = w->next) {
        if (!sd_write_kept(w->rc))
            continue;
        for (size_t i = 0; i < w->n_effects; i++) {
            const sd_effect *e = &w->effects[i];
            switch ((sd_effect_kind)e->kind) {
            case SD_FX_PUT:
                if (sd_index_put_locked(st->index, &w->session))
                    sd_error("store: out of memory adding session %s to the validation index: "
                             "it validates as unknown (fails closed) until a restart reloads "
                             "the index",
                             w->session.id);
                break;
            case SD_FX_TOUCH:
                sd_index_touch_locked(st->index, e->id, e->expiry, w->now);
                break;
            case SD_FX_END:
                sd_index_remove_locked(st->index, e->id);
                break;
            }
        }
    }
    sd_index_unlock(st->index);
}

static const sd_tx_ops sq_tx = {
    .begin = tx_begin,
    .savepoint = tx_savepoint,
    .release = tx_release,
    .rollback_to = tx_rollback_to,
    .commit = tx_commit,
    .committed = tx_committed,
};

/* Brings a store made by an older version up to date. */
static int migrate(sd_store *st, char *err, size_t errlen)
{
    static const char *const tables[] = {"sessions", "session_history"};
    int changed = 0;
    for (size_t t = 0; t < 2; t++)
        for (size_t c = 0; c < sizeof v2_columns / sizeof v2_columns[0]; c++) {
            char sql[160];
            sqlite3_stmt *s = NULL;
            snprintf(sql, sizeof sql, "SELECT %s FROM %s LIMIT 0", v2_columns[c][0], tables[t]);
            int rc = sqlite3_prepare_v2(st->wdb, sql, -1, &s, NULL);
            sqlite3_finalize(s);
            if (rc == SQLITE_OK)
                continue;
            snprintf(sql, sizeof sql, "ALTER TABLE %s ADD COLUMN %s %s", tables[t],
                     v2_columns[c][0], v2_columns[c][1]);
            if ((rc = exec(st->wdb, sql, err, errlen)))
                return rc;
            changed++;
        }
    if (!changed)
        return 0;
    sd_info("store: upgraded the schema to version 2 (bindings, authentication context)");
    return exec(st->wdb, "UPDATE meta SET value = '2' WHERE key = 'schema_version'", err, errlen);
}

/* Fills the index from the active table (at open, before any thread runs). */
static int load_index(sd_store *st, char *err, size_t errlen)
{
    st->index = sd_index_new();
    if (!st->index) {
        snprintf(err, errlen, "out of memory for the session index");
        return SD_ENOMEM;
    }
    /* Size the tables once (count(*) reads the smallest index: a fraction
     * of the table scan below, which is then spared ten or more rehashes). */
    sqlite3_stmt *m = NULL;
    if (sqlite3_prepare_v2(st->wdb, "SELECT count(*) FROM sessions", -1, &m, NULL) == SQLITE_OK &&
        sqlite3_step(m) == SQLITE_ROW && sqlite3_column_int64(m, 0) > 0)
        sd_index_reserve(st->index, (size_t)sqlite3_column_int64(m, 0));
    sqlite3_finalize(m);
    sqlite3_stmt *s = st->w[W_LOAD];
    int rc;
    int64_t n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        sd_session sess;
        if (row_to_session(st, s, false, &sess) || sd_index_add(st->index, &sess)) {
            sd_session_clear(&sess);
            rc = SQLITE_NOMEM;
            break;
        }
        sd_session_clear(&sess);
        n++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "cannot load the session index: %s", sqlite3_errmsg(st->wdb));
        return SD_EUNAVAILABLE;
    }
    st->rows_at_open = n;
    sd_info("store: %lld sessions in the active table, indexed in memory", (long long)n);
    return 0;
}

/* After each commit, on the writer thread. Past CHECKPOINT_PAGES the
 * checkpoint thread copies frames back to the database in the background.
 * Under constant writes it can never finish (the writer keeps appending), and
 * the WAL is only reused once a checkpoint is complete when a write begins,
 * so past four times that the writer copies the (few) remaining frames
 * itself: the WAL then restarts from its beginning instead of growing. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    sd_store *st = arg;
    if (pages >= 4 * CHECKPOINT_PAGES) {
        int log = 0, done = 0;
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        return SQLITE_OK;
    }
    if (pages >= CHECKPOINT_PAGES) {
        pthread_mutex_lock(&st->mu);
        st->ckpt_wanted = true;
        pthread_cond_signal(&st->ckpt_cv);
        pthread_mutex_unlock(&st->mu);
    }
    return SQLITE_OK;
}

static void *checkpointer_main(void *arg)
{
    sd_store *st = arg;
    sqlite3 *db;
    char err[256];
    if (open_db(st->path, SQLITE_OPEN_READWRITE, &db, err, sizeof err) ||
        exec(db, "PRAGMA journal_mode=WAL", err, sizeof err)) { /* opens the WAL */
        sd_error("store: checkpointer: %s", err);
        sqlite3_close(db);
        return NULL;
    }
    pthread_mutex_lock(&st->mu);
    while (!st->stopping) {
        while (!st->ckpt_wanted && !st->stopping)
            pthread_cond_wait(&st->ckpt_cv, &st->mu);
        if (st->stopping)
            break;
        st->ckpt_wanted = false;
        pthread_mutex_unlock(&st->mu);
        int log = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            sd_warn("store: checkpoint: %s", sqlite3_errmsg(db));
        pthread_mutex_lock(&st->mu);
    }
    pthread_mutex_unlock(&st->mu);
    sqlite3_close(db);
    return NULL;
}

static void sq_write(sd_store *st, sd_write *w)
{
    sd_writer_submit(st->writer, w);
}

/* ---- open and close ---------------------------------------------------- */

/* The store closes on the way out of the process, which hands every page
 * back to the kernel at once: freeing 10M index entries one by one took 12 s
 * of a shutdown. Sanitizer builds (the tests, the fuzzers) free them, so that
 * their leak checks still see everything else. */
static void drop_index(sd_index *ix)
{
#if SD_SANITIZED
    sd_index_free(ix);
#else
    (void)ix;
#endif
}

static void free_store(sd_store *st)
{
    for (int i = 0; i < W_NSTMT; i++)
        sqlite3_finalize(st->w[i]);
    for (reader *r = st->readers, *next; r; r = next) {
        next = r->next;
        for (int i = 0; i < R_NSTMT; i++)
            sqlite3_finalize(r->stmt[i]);
        sqlite3_close(r->db);
        free(r);
    }
    if (st->wdb)
        sqlite3_close(st->wdb);
    if (st->lock_fd >= 0)
        close(st->lock_fd);
    drop_index(st->index);
    pthread_mutex_destroy(&st->mu);
    pthread_mutex_destroy(&st->readers_mu);
    pthread_cond_destroy(&st->ckpt_cv);
    free(st);
}

static int make_dir(const char *dir, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode)) {
            snprintf(err, errlen, "data directory %s is not a directory", dir);
            return SD_ECONFIG;
        }
        return 0;
    }
    if (mkdir(dir, 0700) != 0) {
        snprintf(err, errlen, "cannot create data directory %s: %s", dir, strerror(errno));
        return SD_ECONFIG;
    }
    return 0;
}

static int sq_open(const char *dir, const sd_store_options *opt, sd_store **out, char *err,
                   size_t errlen)
{
    int rc = make_dir(dir, err, errlen);
    if (rc)
        return rc;
    sd_store *st = calloc(1, sizeof *st);
    if (!st)
        return SD_ENOMEM;
    st->lock_fd = -1;
    st->keys = opt ? opt->keys : NULL;
    st->generation = atomic_fetch_add(&generations, 1) + 1;
    pthread_mutex_init(&st->mu, NULL);
    pthread_mutex_init(&st->readers_mu, NULL);
    pthread_cond_init(&st->ckpt_cv, NULL);

    char lock[1100];
    snprintf(lock, sizeof lock, "%s/LOCK", dir);
    snprintf(st->path, sizeof st->path, "%s/sessiond.db", dir);
    st->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (st->lock_fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s (is the data directory writable?)", lock,
                 strerror(errno));
        rc = SD_ECONFIG;
        goto fail;
    }
    if (flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, errlen, "data directory %s is in use by another sessiond", dir);
        rc = SD_ECONFIG;
        goto fail;
    }
    if ((rc = open_db(st->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &st->wdb, err, errlen)))
        goto fail;
    if ((rc = exec(st->wdb,
                   "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                   "PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-65536; "
                   "PRAGMA temp_store=MEMORY;",
                   err, errlen)) ||
        (rc = exec(st->wdb, "BEGIN IMMEDIATE", err, errlen)) ||
        (rc = exec(st->wdb, schema, err, errlen)) || (rc = migrate(st, err, errlen)) ||
        (rc = exec(st->wdb, "COMMIT", err, errlen)))
        goto fail;
    for (int i = 0; i < W_NSTMT; i++) {
        if (sqlite3_prepare_v3(st->wdb, wsql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->w[i], NULL)) {
            snprintf(err, errlen, "prepare: %s", sqlite3_errmsg(st->wdb));
            rc = SD_EUNAVAILABLE;
            goto fail;
        }
    }
    if ((rc = load_index(st, err, errlen)))
        goto fail;
    sqlite3_wal_hook(st->wdb, wal_hook, st);

    sd_writer_options wo = {opt ? opt->commit_batch : 0, opt ? opt->max_queued : 0, 0};
    if (sd_writer_start(&wo, &sq_tx, &sq_rows, st, &st->writer)) {
        snprintf(err, errlen, "cannot start the writer thread");
        rc = SD_ENOMEM;
        goto fail;
    }
    sd_writer_set_active(st->writer, st->rows_at_open);
    if (pthread_create(&st->checkpointer, NULL, checkpointer_main, st)) {
        sd_writer_stop(st->writer);
        st->writer = NULL;
        snprintf(err, errlen, "cannot start the checkpoint thread");
        rc = SD_ENOMEM;
        goto fail;
    }
    pthread_setname_np(st->checkpointer, "sd-checkpoint");
    *out = st;
    return 0;
fail:
    free_store(st);
    return rc;
}

static void sq_close(sd_store *st)
{
    sd_writer_stop(st->writer); /* finishes every queued write */
    st->writer = NULL;
    pthread_mutex_lock(&st->mu);
    st->stopping = true;
    pthread_cond_broadcast(&st->ckpt_cv);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->checkpointer, NULL);
    char err[256];
    if (!atomic_load(&st->broken) &&
        exec(st->wdb, "PRAGMA wal_checkpoint(TRUNCATE)", err, sizeof err))
        sd_warn("store: final checkpoint: %s", err);
    free_store(st);
}

const sd_store_ops sd_store_sqlite = {
    .name = "sqlite",
    .caps = SD_STORE_LOCAL | SD_STORE_MEMORY_READS,
    .open = sq_open,
    .close = sq_close,
    .get = sq_get,
    .get_by_token = sq_get_by_token,
    .get_rotated = sq_get_rotated,
    .list_user = sq_list_user,
    .write = sq_write,
    .ready = sq_ready,
    .stats = sq_stats,
    .events = sq_events,
    .backup = sd_sqlite_backup,
    .not_before = sq_not_before,
    .ended = sq_ended,
};
