/*
 * sqlite_sql.c - the embedded store's schema and statements (the writer's
 * and the readers'), as text; their numbers are in sqlite_internal.h.
 */
#include "store/sqlite_internal.h"

/* The active table's columns. No index on token_hash: the in-memory index
 * (index.c) answers every lookup by token, and a random key cost each
 * create a B-tree page of WAL and another at checkpoint (schema version 3;
 * docs/performance.md). last_event: the seq of the session's newest audit
 * event, the head of its chain (see audit_events). */
#define SESSIONS_DEF                                                                               \
    "( id TEXT NOT NULL UNIQUE, token_hash BLOB NOT NULL, user_id TEXT NOT NULL,"                  \
    " created_at INTEGER NOT NULL, last_seen INTEGER NOT NULL, expiry INTEGER NOT NULL,"           \
    " absolute_expiry INTEGER NOT NULL, idle_ttl INTEGER NOT NULL, version INTEGER NOT NULL,"      \
    " attrs TEXT NOT NULL, binding BLOB, auth_time INTEGER, acr TEXT, last_event INTEGER);"

/* The head of session P's chain of events (P a parameter): on its active
 * row, else on its history row. */
#define HEAD_OF(p)                                                                                 \
    "coalesce((SELECT last_event FROM sessions WHERE id = " p "), "                                \
    "(SELECT last_event FROM session_history WHERE id = " p "))"

#define VERSION_TEXT_(v) #v
#define VERSION_TEXT(v)  VERSION_TEXT_(v)

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
    " auth_time INTEGER, acr TEXT, last_event INTEGER);"
    "CREATE INDEX IF NOT EXISTS history_by_ended ON session_history(ended_at);"
    "CREATE INDEX IF NOT EXISTS history_by_user ON session_history(user_id, ended_at);"
    "CREATE TABLE IF NOT EXISTS rotated_tokens(token_hash BLOB PRIMARY KEY, session_id TEXT NOT "
    "NULL,"
    " rotated_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS rotated_by_time ON rotated_tokens(rotated_at);"
    /* AUTOINCREMENT: a seq is never reused, even after a purge emptied the
     * table, so the audit log's cursor into it stays valid.
     * A session's events are a chain, not an index: each names the one
     * before it of the same session (prev), and the session's row its
     * newest (last_event): each statement below that adds an event
     * names its prev and moves its session's head (sqlite_rows.c). An index on
     * (session_id, seq) put each event of an older session at a random
     * page: every update paid a page of WAL and another at checkpoint for
     * it (schema version 8; docs/performance.md). */
    "CREATE TABLE IF NOT EXISTS audit_events(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " at INTEGER NOT NULL, event TEXT NOT NULL, session_id TEXT, user_id TEXT,"
    " actor TEXT, address TEXT, reason TEXT, prev INTEGER);"
    /* A user's events are their sessions' (R_EV_USER), and those that name
     * the user and no session: an index by user on every event cost each
     * create a page at a random place (schema version 4). */
    "CREATE INDEX IF NOT EXISTS events_by_user_alone ON audit_events(user_id, seq) "
    " WHERE session_id IS NULL;"
    /* The revocation feed's (sq_ended); made at open where missing. */
    "CREATE INDEX IF NOT EXISTS events_ended ON audit_events(seq) "
    " WHERE event IN ('revoked', 'evicted');"
    "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', '" VERSION_TEXT(
        SQ_SCHEMA_VERSION) "');";

/* Version 8: the chains made from the index they replace (built where an
 * older store lacks it), in the schema transaction; the columns are added
 * first where missing (sq__v8_columns). */
const char sq__v8_chain[] =
    "CREATE INDEX IF NOT EXISTS events_by_session ON audit_events(session_id, seq);"
    "UPDATE audit_events SET prev = (SELECT max(e.seq) FROM audit_events e "
    " WHERE e.session_id = audit_events.session_id AND e.seq < audit_events.seq) "
    " WHERE session_id IS NOT NULL;"
    "UPDATE sessions SET last_event = (SELECT max(seq) FROM audit_events "
    " WHERE session_id = sessions.id);"
    "UPDATE session_history SET last_event = (SELECT max(seq) FROM audit_events "
    " WHERE session_id = session_history.id);"
    "DROP INDEX events_by_session;"
    "UPDATE meta SET value = '8' WHERE key = 'schema_version';";

const char *const sq__v8_columns[][2] = {
    {"sessions", "last_event"}, {"session_history", "last_event"}, {"audit_events", "prev"}};
const size_t sq__n_v8_columns = sizeof sq__v8_columns / sizeof sq__v8_columns[0];

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
    /* After its created event (W_EV_FIRST): ?14 is that event's seq. */
    [W_INSERT] = "INSERT INTO sessions(" COLS ", last_event) "
                 "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)",
    [W_SELECT] = "SELECT " COLS " FROM sessions WHERE id = ?1",
    /* ?8: the update's own event (added first), the new head; or NULL. */
    [W_UPDATE] = "UPDATE sessions SET last_seen=?2, expiry=?3, idle_ttl=?4, version=?5, attrs=?6, "
                 "last_event = coalesce(?8, last_event) WHERE id = ?1 AND version = ?7",
    [W_END_ONE_COPY] = "INSERT OR REPLACE INTO session_history(" COLS ", ended_at, end_reason, "
                       "last_event) SELECT " COLS ", ?2, ?3, ?9 FROM sessions "
                       "WHERE id = ?1 AND expiry > ?2",
    [W_END_ONE_DEL] = "DELETE FROM sessions WHERE id = ?1 RETURNING id, user_id",
    [W_END_USER_COPY] = "INSERT OR REPLACE INTO session_history(" COLS ", ended_at, end_reason, "
                        "last_event) SELECT " COLS ", ?2, ?3, last_event FROM sessions "
                        "WHERE id IN (SELECT value FROM json_each(?8)) AND user_id = ?1 "
                        "AND expiry > ?2 AND id IS NOT ?4",
    [W_END_USER_DEL] = "DELETE FROM sessions WHERE id IN (SELECT value FROM json_each(?8)) "
                       "AND user_id = ?1 AND expiry > ?2 AND id IS NOT ?4 RETURNING id, user_id",
    [W_TOUCH] = "UPDATE sessions SET expiry = max(expiry, min(?2, absolute_expiry)), "
                "last_seen = max(last_seen, ?3) WHERE id = ?1 AND expiry > ?3 AND version = ?4",
    [W_SWEEP_COPY] = "INSERT OR REPLACE INTO session_history(" COLS ", ended_at, end_reason, "
                     "last_event) SELECT " COLS ", min(expiry, absolute_expiry), 'expired', "
                     "last_event FROM sessions "
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
    /* A session's first event: nothing before it. */
    [W_EV_FIRST] = "INSERT INTO audit_events(at, event, session_id, user_id, actor, address, "
                   "reason) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    /* Then the session's head: its active row, else its history row. */
    [W_EV_HEAD] = "UPDATE sessions SET last_event = ?2 WHERE id = ?1",
    [W_EV_HEAD_ENDED] = "UPDATE session_history SET last_event = ?2 WHERE id = ?1",
    /* An update's event when its row was not written after all. */
    [W_EV_DROP] = "DELETE FROM audit_events WHERE seq = ?1",
    [W_EV_ONE] = "INSERT INTO audit_events(at, event, session_id, user_id, actor, address, reason, "
                 "prev) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, " HEAD_OF("?3") ")",
    /* The ending events are written from the rows about to end, before the
     * copy to history: same predicates as W_END_ONE_COPY / W_END_USER_COPY.
     * The copy of one takes the event's seq as the head (?9); those of
     * many return theirs, and the heads move before the copy. */
    [W_EV_END_ONE] =
        "INSERT INTO audit_events(at, event, session_id, user_id, actor, address, "
        "reason, prev) SELECT ?2, ?5, id, user_id, ?6, ?7, ?3, last_event FROM sessions "
        "WHERE id = ?1 AND expiry > ?2",
    [W_EV_END_USER] = "INSERT INTO audit_events(at, event, session_id, user_id, actor, address, "
                      "reason, prev) SELECT ?2, ?5, id, user_id, ?6, ?7, ?3, last_event "
                      "FROM sessions "
                      "WHERE id IN (SELECT value FROM json_each(?8)) AND user_id = ?1 "
                      "AND expiry > ?2 AND id IS NOT ?4 RETURNING session_id, seq",
    [W_EV_SWEEP] = "INSERT INTO audit_events(at, event, session_id, user_id, reason, prev) "
                   "SELECT min(expiry, absolute_expiry), 'expired', id, user_id, 'expired', "
                   "last_event "
                   "FROM sessions WHERE id IN (SELECT value FROM json_each(?2)) "
                   "AND expiry <= ?1 ORDER BY expiry, id RETURNING session_id, seq",
    /* The old events are a prefix: of the first ?2 (no index on time
     * needed), those before the first that is not old yet. Times are
     * mostly in seq order, not always (an expired event has its session's
     * expiry, the clock may step back): a strict prefix never deletes an
     * event a later one still points to (its chain, audit_events.prev). */
    [W_EV_PURGE] = "DELETE FROM audit_events WHERE seq IN (SELECT seq FROM audit_events "
                   "ORDER BY seq LIMIT ?2) AND seq < coalesce((SELECT min(seq) FROM "
                   "(SELECT seq, at FROM audit_events ORDER BY seq LIMIT ?2) WHERE at >= ?1), "
                   "9223372036854775807)",
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
    /* A session's chain walked from its head back to the cursor (prev is
     * always older: the walk ends), then the page taken oldest first. */
    [R_EV_SESSION] = "WITH RECURSIVE chain(seq) AS (SELECT " HEAD_OF(
        "?1") " "
              "UNION ALL SELECT e.prev FROM audit_events e, chain c "
              "WHERE e.seq = c.seq AND c.seq > ?2 AND e.prev < e.seq) "
              "SELECT " EV_COLS " FROM audit_events WHERE seq IN (SELECT seq FROM chain) "
              "AND seq > ?2 AND session_id = ?1 ORDER BY seq LIMIT ?3",
    /* An event that names a session names its user too (a session never
     * changes user): the user's events are those of their sessions, active
     * or ended, and those that name the user alone (a refusal). */
    [R_EV_USER] = "WITH RECURSIVE chain(seq) AS (SELECT last_event FROM sessions "
                  "WHERE id IN (SELECT value FROM json_each(?4)) AND user_id = ?1 "
                  "UNION ALL SELECT last_event FROM session_history WHERE user_id = ?1 "
                  "UNION ALL SELECT e.prev FROM audit_events e, chain c "
                  "WHERE e.seq = c.seq AND c.seq > ?2 AND e.prev < e.seq) "
                  "SELECT " EV_COLS " FROM audit_events WHERE seq > ?2 AND ("
                  "(seq IN (SELECT seq FROM chain) AND user_id = ?1) "
                  "OR (session_id IS NULL AND user_id = ?1)) ORDER BY seq LIMIT ?3",
    /* Newest first, before ?2: the walk starts at the cursor when it is an
     * event of this session (the page costs its own length), else at the
     * head; n counts the events below the cursor so far, and the walk stops
     * with ?3 of them. */
    [R_EV_SESSION_DESC] =
        "WITH RECURSIVE chain(seq, n) AS (SELECT coalesce((SELECT seq FROM audit_events "
        "WHERE seq = ?2 AND session_id = ?1), " HEAD_OF(
            "?1") "), 0 "
                  "UNION ALL SELECT e.prev, c.n + (c.seq < ?2) FROM audit_events e, chain c "
                  "WHERE e.seq = c.seq AND e.prev < e.seq AND c.n + (c.seq < ?2) < ?3) "
                  "SELECT " EV_COLS " FROM audit_events WHERE seq IN (SELECT seq FROM chain) "
                  "AND seq < ?2 AND session_id = ?1 ORDER BY seq DESC LIMIT ?3",
    /* A user's, newest first: up to ?3 below the cursor from each chain. */
    [R_EV_USER_DESC] = "WITH RECURSIVE chain(seq, n) AS (SELECT last_event, 0 FROM sessions "
                       "WHERE id IN (SELECT value FROM json_each(?4)) AND user_id = ?1 "
                       "UNION ALL SELECT last_event, 0 FROM session_history WHERE user_id = ?1 "
                       "UNION ALL SELECT e.prev, c.n + (c.seq < ?2) FROM audit_events e, chain c "
                       "WHERE e.seq = c.seq AND e.prev < e.seq AND c.n + (c.seq < ?2) < ?3) "
                       "SELECT " EV_COLS " FROM audit_events WHERE seq < ?2 AND ("
                       "(seq IN (SELECT seq FROM chain) AND user_id = ?1) "
                       "OR (session_id IS NULL AND user_id = ?1)) ORDER BY seq DESC LIMIT ?3",
    [R_ROTATED] = "SELECT session_id, rotated_at FROM rotated_tokens WHERE token_hash = ?1",
    /* One writer commits in seq order: seq alone is the feed's order. */
    [R_NOT_BEFORE] = "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'not_before'",
    [R_ENDED] = "SELECT " EV_COLS " FROM audit_events WHERE seq > ?1 AND at >= ?2 "
                "AND event IN ('revoked', 'evicted') ORDER BY seq LIMIT ?3",
    [R_EV_TAIL] = "SELECT COALESCE(max(seq), 0) FROM audit_events",
};

const size_t sq__n_v2_columns = sizeof sq__v2_columns / sizeof sq__v2_columns[0];
