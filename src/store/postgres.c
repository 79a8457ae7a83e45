/*
 * postgres.c - the PostgreSQL backend (libpq): the same tables and write
 * semantics as the embedded store (sqlite.c), for several sessiond replicas
 * sharing one database.
 *
 * Writes: the shared writer (store/writer.c) on its own connection, with
 * group commit, as for sqlite.c: every queued write (up to commit_batch) in
 * one transaction with a SAVEPOINT each (a failing write leaves the others),
 * acknowledged only after COMMIT returned OK; postgres_rows.c provides the row
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
 *
 * The files (what they share: postgres_internal.h):
 *   postgres.c         this one: open and close, the health of the writer's
 *                      connection (pings, reconnection with backoff), the vtable
 *   postgres_schema.c  the migrations, run by the first connection
 *   postgres_read.c    connections, row mapping, the readers and every read
 *   postgres_rows.c    the writer's statements, the row operations and the
 *                      transaction
 */
#include "store/postgres_internal.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define PING_INTERVAL_MS 1000
#define BACKOFF_MIN_MS   50
#define BACKOFF_MAX_MS   500

static _Atomic uint64_t generations;

/* ---- health ------------------------------------------------------------ */

static void mark_down(sd_store *st, const char *why)
{
    if (atomic_exchange(&st->up, false))
        sd_error("store: lost postgres (%s): %s; writes and reads answer 503 until it is back",
                 st->where, why);
}

void pg__drop_writer_conn(sd_store *st, const char *why)
{
    char m[320];
    pg__conn_error(st->wconn, m, sizeof m);
    PQfinish(st->wconn);
    st->wconn = NULL;
    st->lost = false;
    st->piped = st->pipe_failed = false;
    st->npend = st->pend_head = 0;
    st->backoff_ms = BACKOFF_MIN_MS;
    mark_down(st, m[0] ? m : why);
}

/* Exponential backoff with jitter: the next wait, between half and all of
 * the current step; the step doubles up to BACKOFF_MAX_MS. */
int pg__next_backoff(sd_store *st)
{
    unsigned r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
        r = (unsigned)sd_mono_ns();
    int step = st->backoff_ms;
    st->backoff_ms = step * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : step * 2;
    return step / 2 + (int)(r % (unsigned)(step / 2 + 1));
}

/* On the writer thread, without mu: reconnects when down, pings when up.
 * Returns the ms until the next check. */
int pg__health_check(sd_store *st)
{
    if (st->wconn) {
        if (pg__exec_ok(st->wconn, "SELECT 1"))
            return PING_INTERVAL_MS;
        pg__drop_writer_conn(st, "ping failed");
    }
    if (!st->migrated && pg__first_connect(st, st->backoff_ms >= BACKOFF_MAX_MS) != 0)
        return pg__next_backoff(st);
    st->wconn = pg__open_conn(st, 'w', st->backoff_ms >= BACKOFF_MAX_MS);
    if (!st->wconn)
        return pg__next_backoff(st);
    st->backoff_ms = BACKOFF_MIN_MS;
    if (!atomic_exchange(&st->up, true))
        sd_info("store: connected to postgres (%s)", st->where);
    return PING_INTERVAL_MS;
}

/* Ready while the primary takes requests, or, while it cannot be reached,
 * while the synchronous standby answers: the validations the cache answers
 * go on and writes wait (--write-hold) or fail alone. Taking every replica
 * out of its load balancer for an outage they all share would fail those
 * too. */
static int pg_ready(sd_store *st)
{
    if (!atomic_load(&st->up) || atomic_load(&st->write_failing))
        return pg__standby_fresh(st) ? 0 : SD_EUNAVAILABLE;
    params p = {0};
    int rc;
    PGresult *res = pg__rquery(st, R_PING, &p, &rc);
    PQclear(res);
    return rc;
}

static void pg_stats(sd_store *st, sd_store_stats *out)
{
    sd_writer_stats(st->writer, out);
    out->broken = false; /* a lost connection is recoverable: see ready() */
    out->rows_read_ahead_total = atomic_load(&st->ahead_used);
    out->standby = st->sb.started;
    out->standby_reads = atomic_load(&st->sb.reads);
    out->standby_misses = atomic_load(&st->sb.misses);
}

static void pg_write(sd_store *st, sd_write *w)
{
    sd_writer_submit(st->writer, w);
}

/* ---- open and close ---------------------------------------------------- */

/* Host, port and dbname of a connection string, never its password. */
void pg__describe(const char *conninfo, char *out, size_t n)
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

static void free_store(sd_store *st)
{
    pg__standby_stop(st);
    for (reader *r = st->readers, *next; r; r = next) {
        next = r->next;
        PQfinish(r->conn);
        free(r);
    }
    PQfinish(st->wconn);
    free(st->pend);
    for (size_t i = 0; i < st->nahead; i++)
        PQclear(st->ahead_res[i]);
    free(st->ahead_id);
    free(st->ahead_res);
    if (st->conninfo) {
        OPENSSL_cleanse(st->conninfo, strlen(st->conninfo));
        free(st->conninfo);
    }
    pthread_mutex_destroy(&st->readers_mu);
    free(st);
}

/* sessiond check --connect: connects as a start would and reads, changing
 * nothing: the server, whether it takes writes, the schema version applied
 * and, when a start would have to create or migrate it, whether this role
 * may. */
static int pg_probe(const char *conninfo, char *out, size_t outlen)
{
    char where[300], e[320];
    pg__describe(conninfo, where, sizeof where);
    PGconn *c = pg__connect_db(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        pg__conn_error(c, e, sizeof e);
        snprintf(out, outlen, "cannot connect to postgres (%s): %s", where, e);
        PQfinish(c);
        return SD_EUNAVAILABLE;
    }
    PGresult *r = PQexec(c, "SELECT current_setting('server_version'), pg_is_in_recovery(), "
                            "to_regclass('sessiond_schema_migrations') IS NOT NULL, "
                            "coalesce(has_schema_privilege(current_schema(), 'CREATE'), false), "
                            "coalesce(current_schema(), '(none)')");
    bool answered = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    char version[64] = "", schema_name[64] = "";
    bool standby = false, schema = false, may_create = false;
    if (answered) {
        snprintf(version, sizeof version, "%s", PQgetvalue(r, 0, 0));
        snprintf(schema_name, sizeof schema_name, "%s", PQgetvalue(r, 0, 4));
        standby = PQgetvalue(r, 0, 1)[0] == 't';
        schema = PQgetvalue(r, 0, 2)[0] == 't';
        may_create = PQgetvalue(r, 0, 3)[0] == 't';
    }
    PQclear(r);
    int rc = SD_ECONFIG, have = 0, newest = pg__schema_newest();
    if (!answered || (!standby && schema && !pg__schema_applied(c, &have))) {
        pg__conn_error(c, e, sizeof e);
        snprintf(out, outlen, "postgres (%s) did not answer: %s", where, e);
        rc = SD_EUNAVAILABLE;
    } else if (standby) {
        snprintf(out, outlen,
                 "postgres %s (%s) is a standby, read-only: sessiond writes to the primary "
                 "(name every host, with target_session_attrs=read-write)",
                 version, where);
    } else if (pg__newer_schema(have, out, outlen)) {
        /* out says why */
    } else if (have < newest && !may_create) {
        snprintf(out, outlen,
                 "postgres %s (%s): a start must %s the schema (version %d to %d), and this role "
                 "may not create in schema %s (GRANT CREATE ON SCHEMA %s TO it)",
                 version, where, have ? "migrate" : "create", have, newest, schema_name,
                 schema_name);
    } else {
        char upgrade[64] = "";
        if (have < newest)
            snprintf(upgrade, sizeof upgrade, " (a start %s it, version %d)",
                     have ? "migrates" : "creates", newest);
        snprintf(out, outlen, "store postgres %s (%s): primary, schema version %d%s", version,
                 where, have, upgrade);
        rc = 0;
    }
    PQfinish(c);
    return rc;
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
    pg__describe(conninfo, st->where, sizeof st->where);
    if (pg__standby_start(st, opt ? opt->standby : NULL)) {
        snprintf(err, errlen, "cannot start the standby's reader thread");
        goto fail;
    }
    /* Unreachable at start is not fatal: sessiond serves 503 (not ready)
     * and the writer keeps trying, as after a loss. A database it cannot
     * use (a newer schema, a failed migration) is. */
    rc = pg__first_connect(st, true);
    if (rc == SD_ECONFIG) {
        snprintf(err, errlen, "the database at %s cannot be used (see the log)", st->where);
        goto fail;
    }
    if (rc == 0 && !(st->wconn = pg__open_conn(st, 'w', true))) {
        snprintf(err, errlen, "cannot prepare the writer's connection to postgres (%s)", st->where);
        rc = SD_EUNAVAILABLE;
        goto fail;
    }
    atomic_store(&st->up, st->wconn != NULL);
    sd_writer_options wo = {.commit_batch = opt ? opt->commit_batch : 0,
                            .max_queued = opt ? opt->max_queued : 0,
                            .first_upkeep_ms = PING_INTERVAL_MS,
                            .hold_ms = opt ? opt->hold_ms : 0};
    if (sd_writer_start(&wo, &pg__tx, &pg__rows, st, &st->writer)) {
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

static void pg_drain(sd_store *st)
{
    sd_writer_drain(st->writer);
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
    .probe = pg_probe,
    .close = pg_close,
    .drain = pg_drain,
    .get = pg__get,
    .get_by_token = pg__get_by_token,
    .get_rotated = pg__get_rotated,
    .list_user = pg__list_user,
    .write = pg_write,
    .ready = pg_ready,
    .stats = pg_stats,
    .events = pg__events,
    .ended = pg__ended,
    .feed = pg__feed,
    .outbox_cursor = pg__outbox_cursor,
    .cache_epoch = pg__cache_epoch,
    .not_before = pg__not_before,
};
