/*
 * sqlite_sql.c - the embedded store's schema and statements (the writer's
 * and the readers'), as text; their numbers are in sqlite_internal.h.
 */
#include "store/sqlite_internal.h"

/* The active table's columns. No index on token_hash: the in-memory index
 * (index.c) answers every lookup by token, and a random key cost each
 * create a B-tree page of WAL and another at checkpoint (schema version 3;
 * docs/performance.md). */
#define SESSIONS_DEF                                                                               \
    "( id TEXT NOT NULL UNIQUE, token_hash BLOB NOT NULL, user_id TEXT NOT NULL,"                  \
    " created_at INTEGER NOT NULL, last_seen INTEGER NOT NULL, expiry INTEGER NOT NULL,"           \
    " absolute_expiry INTEGER NOT NULL, idle_ttl INTEGER NOT NULL, version INTEGER NOT NULL,"      \
    " attrs TEXT NOT NULL, binding BLOB, auth_time INTEGER, acr TEXT);"

const char sq__schema[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS sessions" SESSIONS_DEF
    /* By user alone: an index on (user_id, last_seen) moved its entry on
     * every update, a random page a create does not touch (schema version
     * 5). A user's list and the cap's oldest sort the user's rows. */
    /* No index on user_id: a user's sessions are the in-memory index's
     * (sqlite_users.c); each create landed at a random page of one (schema
     * version 7). */
    /* No index on expiry: the sweep takes the expired ids from the
     * in-memory index's wheel (index.h, sd_index_expired) and the sweep's
     * statements (W_SWEEP_*) look them up by id; an index on expiry moved
     * its entry on every update, a random page (schema version 6). */
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
    /* A user's events are their sessions' (R_EV_USER), and those that name
     * the user and no session: an index by user on every event cost each
     * create a page at a random place (schema version 4). */
    "CREATE INDEX IF NOT EXISTS events_by_user_alone ON audit_events(user_id, seq) "
    " WHERE session_id IS NULL;"
    /* The revocation feed's (sq_ended); made at open where missing. */
    "CREATE INDEX IF NOT EXISTS events_ended ON audit_events(seq) "
    " WHERE event IN ('revoked', 'evicted');"
    "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', '7');";

/* Version 3 dropped the UNIQUE index on sessions.token_hash. SQLite cannot
 * drop a constraint's index, so the table is made again, under the same
 * rowids (the scans' cursors), inside the schema transaction; sq__schema
 * then makes its other indexes again. */
const char sq__v3_rebuild[] =
    "CREATE TABLE sessions_v3" SESSIONS_DEF "INSERT INTO sessions_v3(rowid, " COLS
    ") SELECT rowid, " COLS " FROM sessions;"
    "DROP TABLE sessions;"
    "ALTER TABLE sessions_v3 RENAME TO sessions;";

/* Version 2 added columns to sessions and session_history: the binding and
 * the authentication context. Added where missing, inside the schema
 * transaction. */
const char *const sq__v2_columns[][2] = {
    {"binding", "BLOB"}, {"auth_time", "INTEGER"}, {"acr", "TEXT"}};

/* Statements of the writer connection, prepared once. */

const char *const sq__wsql[W_NSTMT] = {
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
    [W_END_ONE_DEL] = "DELETE FROM sessions WHERE id = ?1 RETURNING id, user_id",
    [W_END_USER_COPY] = "INSERT OR REPLACE INTO session_history(" COLS ", ended_at, end_reason) "
                        "SELECT " COLS ", ?2, ?3 FROM sessions "
                        "WHERE id IN (SELECT value FROM json_each(?8)) AND user_id = ?1 "
                        "AND expiry > ?2 AND id IS NOT ?4",
    [W_END_USER_DEL] = "DELETE FROM sessions WHERE id IN (SELECT value FROM json_each(?8)) "
                       "AND user_id = ?1 AND expiry > ?2 AND id IS NOT ?4 RETURNING id, user_id",
    [W_TOUCH] = "UPDATE sessions SET expiry = max(expiry, min(?2, absolute_expiry)), "
                "last_seen = max(last_seen, ?3) WHERE id = ?1 AND expiry > ?3 AND version = ?4",
    [W_SWEEP_COPY] = "INSERT OR REPLACE INTO session_history(" COLS ", ended_at, end_reason) "
                     "SELECT " COLS ", min(expiry, absolute_expiry), 'expired' FROM sessions "
                     "WHERE id IN (SELECT value FROM json_each(?2)) AND expiry <= ?1",
    [W_SWEEP_DEL] = "DELETE FROM sessions WHERE id IN (SELECT value FROM json_each(?2)) "
                    "AND expiry <= ?1 RETURNING id, user_id",
    [W_LOAD] = "SELECT " COLS " FROM sessions",
    [W_ROT_FIND] =
        "SELECT rotated_at FROM rotated_tokens WHERE token_hash = ?1 AND session_id = ?2",
    [W_ROT_ADD] = "INSERT OR REPLACE INTO rotated_tokens(token_hash, session_id, rotated_at) "
                  "VALUES(?1, ?2, ?3)",
    [W_ROT_SET] = "UPDATE sessions SET token_hash = ?2, version = version + 1 WHERE id = ?1",
    [W_ROT_PURGE] = "DELETE FROM rotated_tokens WHERE token_hash IN (SELECT token_hash FROM "
                    "rotated_tokens WHERE rotated_at < ?1 LIMIT ?2)",
    [W_TOKEN_SET] = "UPDATE sessions SET token_hash = ?2 WHERE id = ?1",
    [W_EV_ONE] = "INSERT INTO audit_events(at, event, session_id, user_id, actor, address, reason) "
                 "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    /* The ending events are written from the rows about to end, before the
     * copy to history: same predicates as W_END_ONE_COPY / W_END_USER_COPY. */
    [W_EV_END_ONE] = "INSERT INTO audit_events(at, event, session_id, user_id, actor, address, "
                     "reason) SELECT ?2, ?5, id, user_id, ?6, ?7, ?3 FROM sessions "
                     "WHERE id = ?1 AND expiry > ?2",
    [W_EV_END_USER] = "INSERT INTO audit_events(at, event, session_id, user_id, actor, address, "
                      "reason) SELECT ?2, ?5, id, user_id, ?6, ?7, ?3 FROM sessions "
                      "WHERE id IN (SELECT value FROM json_each(?8)) AND user_id = ?1 "
                      "AND expiry > ?2 AND id IS NOT ?4",
    [W_EV_SWEEP] = "INSERT INTO audit_events(at, event, session_id, user_id, reason) "
                   "SELECT min(expiry, absolute_expiry), 'expired', id, user_id, 'expired' "
                   "FROM sessions WHERE id IN (SELECT value FROM json_each(?2)) "
                   "AND expiry <= ?1 ORDER BY expiry, id",
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
const char *const sq__rsql[R_NSTMT] = {
    [R_GET] = "SELECT " COLS " FROM sessions WHERE id = ?1",
    /* ?6: the user's ids, from the in-memory index (sqlite_users.c) */
    [R_LIST_FIRST] = "SELECT " COLS " FROM sessions WHERE id IN (SELECT value FROM json_each(?6)) "
                     "AND user_id = ?1 AND expiry > ?2 ORDER BY last_seen DESC, id DESC LIMIT ?3",
    [R_LIST_AFTER] = "SELECT " COLS " FROM sessions WHERE id IN (SELECT value FROM json_each(?6)) "
                     "AND user_id = ?1 AND expiry > ?2 "
                     "AND (last_seen, id) < (?4, ?5) ORDER BY last_seen DESC, id DESC LIMIT ?3",
    [R_PING] = "SELECT 1 FROM meta LIMIT 1",
    [R_EV_ALL] = "SELECT " EV_COLS " FROM audit_events WHERE seq > ?2 ORDER BY seq LIMIT ?3",
    [R_EV_SESSION] = "SELECT " EV_COLS " FROM audit_events WHERE session_id = ?1 AND seq > ?2 "
                     "ORDER BY seq LIMIT ?3",
    /* An event that names a session names its user too (a session never
     * changes user): the user's events are those of their sessions, active
     * or ended, and those that name the user alone (a refusal). */
    [R_EV_USER] = "SELECT " EV_COLS " FROM audit_events WHERE seq > ?2 AND ("
                  "session_id IN (SELECT value FROM json_each(?4) "
                  "UNION ALL SELECT id FROM session_history WHERE user_id = ?1) "
                  "OR (session_id IS NULL AND user_id = ?1)) ORDER BY seq LIMIT ?3",
    [R_ROTATED] = "SELECT session_id, rotated_at FROM rotated_tokens WHERE token_hash = ?1",
    /* One writer commits in seq order: seq alone is the feed's order. */
    [R_NOT_BEFORE] = "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'not_before'",
    [R_ENDED] = "SELECT " EV_COLS " FROM audit_events WHERE seq > ?1 AND at >= ?2 "
                "AND event IN ('revoked', 'evicted') ORDER BY seq LIMIT ?3",
    [R_EV_TAIL] = "SELECT COALESCE(max(seq), 0) FROM audit_events",
};

const size_t sq__n_v2_columns = sizeof sq__v2_columns / sizeof sq__v2_columns[0];
