/*
 * postgres_standby.c - the two fence values (the cache epoch and the global
 * not-before) read from the synchronous standby (--store-standby) while the
 * primary cannot be read, so that the validations the Redis cache answers go
 * on while Patroni promotes, instead of failing with the primary.
 *
 * Why a standby's value is safe to trust (docs/architecture.md, "Fence
 * values during a failover"): a fenced write is acknowledged FENCE_WAIT_MS
 * after the commit of its bump returned, and a reader trusts a value only
 * FRESH_MS (< FENCE_WAIT_MS) after its read started. Both bumps commit with
 * synchronous_commit = remote_apply (PG_REMOTE_APPLY in their statements), so
 * the commit returns only once the synchronous standby has applied it. A read
 * on that standby that started at t and did not see a bump ran before the
 * bump's commit returned, and the write it fences is acknowledged after
 * t + FENCE_WAIT_MS: past the reader's trust. This holds for the standby the
 * primary waits for; the address must reach only that one (Patroni's REST
 * API GET /sync behind haproxy, deploy/haproxy/patroni.cfg), never an
 * asynchronous replica. When the standby is promoted it holds everything.
 * The primary stays the first choice (postgres_read.c, fence_value): the
 * standby is asked only while the primary cannot be read.
 *
 * A watcher thread reads both values every POLL_MS and keeps the connection,
 * so no caller ever waits on a connection attempt (through haproxy, one to a
 * member that just died takes a second or more): a read waits for the
 * watcher's next read that starts after the call, at most WAIT_MS.
 */
#include "store/postgres_internal.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#define POLL_MS    50
#define WAIT_MS    150
#define BACKOFF_MS 1000
#define MS         1000000LL

static const char both_sql[] = "SELECT (SELECT epoch FROM sessiond_cache_epoch WHERE id = 1), "
                               "(SELECT not_before FROM sessiond_not_before WHERE id = 1)";

/* One read on c: both values, or false. */
static bool read_both(PGconn *c, int64_t *epoch, int64_t *nb)
{
    PGresult *res = PQexec(c, both_sql);
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
              !PQgetisnull(res, 0, 0) && !PQgetisnull(res, 0, 1);
    if (ok) {
        *epoch = pg__col_int(res, 0, 0);
        *nb = pg__col_int(res, 0, 1);
    }
    PQclear(res);
    return ok;
}

/* Sleeps until ns (monotonic) or stop; false when stopping. Under mu. */
static bool nap_until(sd_store *st, int64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL)};
    while (!st->sb.stopping && sd_mono_ns() < ns)
        if (pthread_cond_timedwait(&st->sb.cv, &st->sb.mu, &ts))
            break;
    return !st->sb.stopping;
}

static void *watcher_main(void *arg)
{
    sd_store *st = arg;
    PGconn *c = NULL;
    enum { UNKNOWN, READING, FAILING } state = UNKNOWN; /* logged on each change */
    pthread_mutex_lock(&st->sb.mu);
    while (!st->sb.stopping) {
        pthread_mutex_unlock(&st->sb.mu);
        int64_t t0 = sd_mono_ns(), epoch = 0, nb = 0;
        if (!c) {
            c = pg__connect_db(st->sb.conninfo);
            if (PQstatus(c) != CONNECTION_OK) {
                if (state != FAILING) {
                    char m[320];
                    pg__conn_error(c, m, sizeof m);
                    sd_warn("store: cannot read the synchronous standby (%s): %s; the fence "
                            "values are read from the primary meanwhile",
                            st->sb.where, m);
                }
                PQfinish(c);
                c = NULL;
            }
        }
        bool ok = c && read_both(c, &epoch, &nb);
        if (c && !ok) {
            if (state != FAILING)
                sd_warn("store: the synchronous standby (%s) stopped answering: %s", st->sb.where,
                        PQstatus(c) == CONNECTION_OK ? "a read failed" : "connection lost");
            PQfinish(c);
            c = NULL;
        }
        if (ok && state != READING)
            sd_info("store: reading the fence values from the synchronous standby (%s)",
                    st->sb.where);
        state = ok ? READING : FAILING;
        pthread_mutex_lock(&st->sb.mu);
        st->sb.healthy = ok;
        if (ok) {
            st->sb.epoch = epoch;
            st->sb.not_before = nb;
            st->sb.read_ns = t0;
        }
        pthread_cond_broadcast(&st->sb.cv);
        nap_until(st, t0 + (ok ? POLL_MS : BACKOFF_MS) * MS);
    }
    pthread_mutex_unlock(&st->sb.mu);
    PQfinish(c);
    return NULL;
}

int pg__standby_start(sd_store *st, const char *conninfo)
{
    if (!conninfo || !conninfo[0])
        return 0;
    if (!(st->sb.conninfo = strdup(conninfo)))
        return SD_ENOMEM;
    pg__describe(conninfo, st->sb.where, sizeof st->sb.where);
    pthread_mutex_init(&st->sb.mu, NULL);
    sd_cond_init_mono(&st->sb.cv);
    st->sb.init = true;
    if (pthread_create(&st->sb.thread, NULL, watcher_main, st))
        return SD_ENOMEM;
    pthread_setname_np(st->sb.thread, "sd-pg-standby");
    st->sb.started = true;
    return 0;
}

void pg__standby_stop(sd_store *st)
{
    if (st->sb.started) {
        pthread_mutex_lock(&st->sb.mu);
        st->sb.stopping = true;
        pthread_cond_broadcast(&st->sb.cv);
        pthread_mutex_unlock(&st->sb.mu);
        pthread_join(st->sb.thread, NULL);
        st->sb.started = false;
    }
    if (st->sb.init) {
        pthread_mutex_destroy(&st->sb.mu);
        pthread_cond_destroy(&st->sb.cv);
        st->sb.init = false;
    }
    if (st->sb.conninfo) {
        OPENSSL_cleanse(st->sb.conninfo, strlen(st->sb.conninfo));
        free(st->sb.conninfo);
        st->sb.conninfo = NULL;
    }
}

int pg__standby_value(sd_store *st, bool epoch, int64_t *value)
{
    if (!st->sb.started)
        return SD_EUNAVAILABLE;
    int64_t called = sd_mono_ns(), until = called + WAIT_MS * MS;
    int rc = SD_EUNAVAILABLE;
    pthread_mutex_lock(&st->sb.mu);
    /* A read that started after this call: as fresh as one made now. */
    while (st->sb.healthy && st->sb.read_ns < called && !st->sb.stopping && sd_mono_ns() < until) {
        struct timespec ts = {(time_t)(until / 1000000000LL), (long)(until % 1000000000LL)};
        pthread_cond_timedwait(&st->sb.cv, &st->sb.mu, &ts);
    }
    if (st->sb.healthy && st->sb.read_ns >= called) {
        *value = epoch ? st->sb.epoch : st->sb.not_before;
        rc = 0;
    }
    pthread_mutex_unlock(&st->sb.mu);
    atomic_fetch_add(rc == 0 ? &st->sb.reads : &st->sb.misses, 1);
    return rc;
}

bool pg__standby_fresh(sd_store *st)
{
    if (!st->sb.started)
        return false;
    pthread_mutex_lock(&st->sb.mu);
    bool fresh = st->sb.healthy && sd_mono_ns() - st->sb.read_ns < 1000 * MS;
    pthread_mutex_unlock(&st->sb.mu);
    return fresh;
}
