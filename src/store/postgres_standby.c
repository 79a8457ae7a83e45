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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLL_MS    50
#define WAIT_MS    150
#define BACKOFF_MS 1000
/* Readiness (pg_ready) holds this long after the standby's last answer: at
 * a promotion the standby's listener drops it (it is the primary now) a
 * moment before this replica's writer has reconnected to it, and a load
 * balancer that took every replica out for that moment would fail the
 * validations they can still answer. Readiness only routes: what a
 * validation may trust is decided by the fence reads, not by this. */
#define READY_GRACE_MS 3000
#define MS             1000000LL

/* Both values, whether the node is still a standby, and the address the
 * node was reached at (through haproxy: the member's own). */
static const char both_sql[] = "SELECT (SELECT epoch FROM sessiond_cache_epoch WHERE id = 1), "
                               "(SELECT not_before FROM sessiond_not_before WHERE id = 1), "
                               "pg_is_in_recovery(), host(inet_server_addr()), inet_server_port()";

typedef struct reading {
    int64_t epoch, nb;
    bool in_recovery;
    char host[64], port[8]; /* "" over a Unix socket */
} reading;

/* One read on c, or false. */
static bool read_both(PGconn *c, reading *out)
{
    PGresult *res = PQexec(c, both_sql);
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
              !PQgetisnull(res, 0, 0) && !PQgetisnull(res, 0, 1);
    if (ok) {
        out->epoch = pg__col_int(res, 0, 0);
        out->nb = pg__col_int(res, 0, 1);
        out->in_recovery = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
        snprintf(out->host, sizeof out->host, "%s", PQgetvalue(res, 0, 3));
        snprintf(out->port, sizeof out->port, "%s", PQgetvalue(res, 0, 4));
    }
    PQclear(res);
    return ok;
}

/* The member last reached through the listener, by its own address. */
static PGconn *connect_direct(sd_store *st, const char *host, const char *port)
{
    const char *keys[] = {"dbname", "host", "port", "connect_timeout", "application_name", NULL};
    const char *vals[] = {st->sb.conninfo, host, port, "1", "sessiond", NULL};
    return PQconnectdbParams(keys, vals, 1);
}

/* Sleeps until ns (monotonic) or stop; false when stopping. Under mu. */
static bool nap_until(sd_store *st, int64_t ns)
{
    struct timespec ts = sd_mono_ts(ns);
    while (!st->sb.stopping && sd_mono_ns() < ns)
        if (pthread_cond_timedwait(&st->sb.cv, &st->sb.mu, &ts))
            break;
    return !st->sb.stopping;
}

/* Reads through the listener. When it drops the member (at a promotion,
 * the synchronous standby stops answering GET /sync a moment before it
 * answers GET /primary, and haproxy routes to it on neither), the watcher
 * goes to that member by the address it last had and trusts it only once
 * it is no longer in recovery: promoted, it holds every acknowledged commit
 * and is the primary. Still in recovery, it may be a standby Patroni
 * stopped waiting for, so it is not read. */
static void *watcher_main(void *arg)
{
    sd_store *st = arg;
    PGconn *c = NULL;
    bool direct = false; /* c goes to the member's own address */
    char host[64] = "", port[8] = "";
    int64_t listener_at = 0;
    enum { UNKNOWN, READING, FAILING } state = UNKNOWN; /* logged on each change */
    pthread_mutex_lock(&st->sb.mu);
    while (!st->sb.stopping) {
        pthread_mutex_unlock(&st->sb.mu);
        int64_t t0 = sd_mono_ns();
        if (!c || (direct && t0 >= listener_at)) { /* the listener first, again every second */
            PGconn *l = pg__connect_db(st->sb.conninfo);
            listener_at = t0 + (int64_t)BACKOFF_MS * MS;
            if (PQstatus(l) == CONNECTION_OK) {
                PQfinish(c);
                c = l;
                direct = false;
            } else {
                if (state != FAILING && !direct) {
                    char m[320];
                    pg__conn_error(l, m, sizeof m);
                    sd_warn("store: cannot read the synchronous standby (%s): %s", st->sb.where, m);
                }
                PQfinish(l);
            }
        }
        if (!c && host[0]) {
            c = connect_direct(st, host, port);
            direct = true;
            if (PQstatus(c) != CONNECTION_OK) {
                PQfinish(c);
                c = NULL;
            }
        }
        reading r = {0};
        bool read = c && read_both(c, &r), ok = read && !(direct && r.in_recovery);
        if (c && !read) {
            if (state == READING)
                sd_warn("store: the synchronous standby (%s) stopped answering: %s", st->sb.where,
                        PQstatus(c) == CONNECTION_OK ? "a read failed" : "connection lost");
            PQfinish(c);
            c = NULL;
        }
        if (read && !direct && r.host[0]) {
            snprintf(host, sizeof host, "%s", r.host);
            snprintf(port, sizeof port, "%s", r.port);
        }
        if (ok && state != READING)
            sd_info("store: reading the fence values from the synchronous standby (%s%s)",
                    direct ? "promoted, at its own address; " : "", st->sb.where);
        state = ok ? READING : FAILING;
        pthread_mutex_lock(&st->sb.mu);
        st->sb.healthy = ok;
        if (ok) {
            st->sb.epoch = r.epoch;
            st->sb.not_before = r.nb;
            st->sb.read_ns = t0;
        }
        pthread_cond_broadcast(&st->sb.cv);
        /* Quickly again while the member it last read is promoting. */
        nap_until(st, t0 + (ok || (read && direct) ? POLL_MS : BACKOFF_MS) * MS);
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
        struct timespec ts = sd_mono_ts(until);
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
    bool fresh = st->sb.read_ns && sd_mono_ns() - st->sb.read_ns < READY_GRACE_MS * MS;
    pthread_mutex_unlock(&st->sb.mu);
    return fresh;
}
