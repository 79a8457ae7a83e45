/*
 * postgres_schema.c - the PostgreSQL store's schema: the versioned
 * migrations (append only) and migrate(), which applies the missing ones in
 * one transaction under an advisory lock, so that replicas starting together
 * migrate once; the applied versions are rows of sessiond_schema_migrations.
 * The first connection (at open, or by the writer after an outage that began
 * before it) migrates and counts the active rows.
 */
#include "store/postgres_internal.h"
#include "util/err.h"
#include "util/log.h"

#include <stdio.h>
#include <stdlib.h>

#define MIGRATION_LOCK "7305760813462874161" /* pg_advisory_xact_lock key: "sessiond" */

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
    /* The revocation feed (pg__ended) reads the ending events of every
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
    /* The webhook outbox (issue 19, store/postgres_outbox.c): every
     * replica's events in (xid, seq) order, as the revocation feed reads
     * its ending ones, and each webhook's cursor with the lease that lets
     * one replica at a time deliver. */
    {6, "the webhook outbox",
     "CREATE INDEX events_feed ON audit_events((COALESCE(xid, '0'::xid8)), seq);"
     "CREATE TABLE sessiond_outbox(name text PRIMARY KEY, tx xid8 NOT NULL,"
     " seq bigint NOT NULL, owner text, lease_until bigint NOT NULL DEFAULT 0);"},
};
#define NMIGRATIONS (sizeof migrations / sizeof migrations[0])

int pg__schema_newest(void)
{
    return migrations[NMIGRATIONS - 1].version;
}

bool pg__schema_applied(PGconn *c, int *have)
{
    PGresult *r = PQexec(c, "SELECT coalesce(max(version), 0) FROM sessiond_schema_migrations");
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (ok)
        *have = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return ok;
}

int pg__newer_schema(int have, char *err, size_t errlen)
{
    if (have <= pg__schema_newest())
        return 0;
    snprintf(err, errlen,
             "the database has schema version %d, newer than this sessiond knows (%d): "
             "upgrade sessiond",
             have, pg__schema_newest());
    return SD_ECONFIG;
}

/* Creates or upgrades the schema in one transaction. The advisory lock makes
 * replicas that start together take turns: the first migrates, the others
 * find the versions applied. */
static int migrate(PGconn *c, char *err, size_t errlen)
{
    if (!pg__exec_ok(c, "BEGIN") ||
        !pg__exec_ok(c, "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK ")") ||
        !pg__exec_ok(c, "CREATE TABLE IF NOT EXISTS sessiond_schema_migrations("
                        "version integer PRIMARY KEY, description text NOT NULL,"
                        " applied_at timestamptz NOT NULL DEFAULT now())"))
        goto fail;
    int have;
    if (!pg__schema_applied(c, &have))
        goto fail;
    if (pg__newer_schema(have, err, errlen)) {
        pg__exec_ok(c, "ROLLBACK");
        return SD_ECONFIG;
    }
    for (size_t i = 0; i < NMIGRATIONS; i++) {
        if (migrations[i].version <= have)
            continue;
        char v[16];
        snprintf(v, sizeof v, "%d", migrations[i].version);
        const char *vals[] = {v, migrations[i].what};
        if (!pg__exec_ok(c, migrations[i].sql))
            goto fail;
        PGresult *r = PQexecParams(c,
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
    if (!pg__exec_ok(c, "COMMIT"))
        goto fail;
    return 0;
fail:
    pg__conn_error(c, err, errlen);
    if (!err[0])
        snprintf(err, errlen, "schema migration failed (see the log)");
    pg__exec_ok(c, "ROLLBACK");
    return SD_EUNAVAILABLE;
}

/* Connects, migrates the schema and counts the active rows: at open, and on
 * the writer thread while the database has been unreachable since the start.
 * SD_EUNAVAILABLE when it cannot connect (logged when log_fail), SD_ECONFIG
 * for a database this binary cannot use (always logged). */
int pg__first_connect(sd_store *st, bool log_fail)
{
    char err[512] = "";
    PGconn *c = pg__connect_db(st->conninfo);
    int rc = 0;
    if (!c || PQstatus(c) != CONNECTION_OK) {
        pg__conn_error(c, err, sizeof err);
        rc = SD_EUNAVAILABLE;
    } else {
        pg__exec_ok(c, "SET client_min_messages = warning");
        rc = migrate(c, err, sizeof err);
        if (rc && PQstatus(c) == CONNECTION_OK)
            rc = SD_ECONFIG; /* not the network: it would fail again */
    }
    if (rc == 0) {
        PGresult *r = PQexec(c, "SELECT count(*) FROM sessions");
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            st->rows_at_open = pg__col_int(r, 0, 0);
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
