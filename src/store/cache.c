/*
 * cache.c - the Redis cache tier (hiredis, synchronous with timeouts, one
 * connection per calling thread like the PostgreSQL readers; the node is
 * reached through sentinel.c, a fixed address or the master Sentinel names).
 *
 * Revocation safety rests on three rules (docs/architecture.md, "The Redis
 * cache"):
 *  1. After a write committed, its session's entry is replaced by a
 *     tombstone (ended) or an invalidation marker carrying the new version;
 *     a fill (Lua, atomic in Redis) never overwrites a tombstone nor a newer
 *     version, so a read that raced the write cannot put the old row back.
 *  2. When that invalidation fails (Redis down, slow beyond the timeout,
 *     breaker open), the write is not acknowledged until the cache epoch was
 *     bumped in the database and FENCE_WAIT_MS have passed.
 *  3. A hit counts only when its entry's epoch equals an epoch this replica
 *     read from the database by a query that started less than FRESH_MS
 *     ago (FENCE_WAIT_MS > FRESH_MS). So once a fenced write is
 *     acknowledged, every replica ignores every entry written before it.
 *  4. With Sentinel (--cache redis-sentinel://), a process sends nothing to
 *     a master whose lineage (run id and replication id: both change when a
 *     node restarts or is promoted) is not the one it adopted last, nor at
 *     its start, before it has bumped the cache epoch in the database
 *     (sentinel.c, sd_master_adopt). Every entry a promoted replica holds
 *     came to it before it was promoted, so under an epoch below that bump;
 *     a tombstone the old master acknowledged and never replicated leaves
 *     only such entries, which no replica trusts once it uses the new
 *     master. Within a process the connections made before the change are
 *     dropped (the count is raised before the bump; an epoch is read before
 *     the connection's count is checked).
 * Validity never rests on the cache: a hit is returned as the store's row
 * and the domain checks its expiry with this server's clock.
 *
 * Threads: the store's writer never waits on Redis: completed writes go to
 * the write-through thread, which invalidates for all of them in one
 * pipelined round trip, fences those that need it, then completes them. The
 * keeper thread reads the epoch every EPOCH_POLL_MS and, with Sentinel, asks
 * which master it names every SENTINEL_POLL_MS.
 *
 * Degradation: every call is bounded by the timeout; after BREAKER_FAILS
 * failures in a row the breaker opens for BREAKER_COOLDOWN_MS (reads go to
 * the store; writes are fenced); the keeper thread then probes with PING.
 */
#include "store/cache.h"
#include "store/cache_entry.h"
#include "store/cache_internal.h"
#include "store/sentinel.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/random.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* KEYS[1] s:<id>, KEYS[2] t:<hash>; ARGV: entry, version, expiry, absolute
 * expiry (ms since the epoch), index ("e|<version>|<hash>"). Never over a
 * tombstone or a newer version; the token key it replaces goes (one token
 * key per session, the one its index names). */
static const char fill_lua[] =
    "local c = redis.call('GET', KEYS[1]) "
    "if c == 'x' then return 0 end "
    "if c then local v, h = string.match(c, '^%a|(%d+)|?(%x*)$') "
    "if not v or tonumber(v) > tonumber(ARGV[2]) then return 0 end "
    "if h ~= '' and '" KEY_T "' .. h ~= KEYS[2] then redis.call('DEL', '" KEY_T "' .. h) end end "
    "redis.call('SET', KEYS[2], ARGV[1], 'PXAT', ARGV[3]) "
    "redis.call('SET', KEYS[1], ARGV[5], 'PXAT', ARGV[4]) "
    "return 1";
/* KEYS[1] s:<id>; ARGV: tombstone or marker, ms. Deletes the token key the
 * index names; leaves a tombstone alone. */
const char cc__invalidate_lua[] = "local c = redis.call('GET', KEYS[1]) "
                                  "if c == 'x' then return 0 end "
                                  "if c then local h = string.match(c, '^e|%d+|(%x+)$') "
                                  "if h then redis.call('DEL', '" KEY_T "' .. h) end end "
                                  "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
                                  "return 1";

static _Atomic uint64_t generations;
static _Thread_local struct {
    uint64_t generation;
    conn *c;
} tl;

/* ---- the breaker ------------------------------------------------------- */

static bool breaker_open(sd_cache *c)
{
    return atomic_load(&c->open_until_ns) > sd_mono_ns();
}

void cc__note_failure(sd_cache *c, const char *what, const char *why)
{
    atomic_fetch_add(&c->errors, 1);
    if (atomic_fetch_add(&c->fails, 1) + 1 >= BREAKER_FAILS) {
        atomic_store(&c->open_until_ns, sd_mono_ns() + (int64_t)BREAKER_COOLDOWN_MS * 1000000);
        if (!atomic_exchange(&c->degraded, true))
            sd_warn("cache: redis (%s) failing (%s: %s): degraded, validation reads go to the "
                    "store, writes are fenced through the database epoch",
                    c->where, what, why);
    }
}

void cc__note_success(sd_cache *c)
{
    if (atomic_load(&c->fails))
        atomic_store(&c->fails, 0);
    if (atomic_load(&c->degraded) && atomic_exchange(&c->degraded, false)) {
        atomic_store(&c->open_until_ns, 0);
        sd_info("cache: redis (%s) is back", c->where);
    }
}

/* ---- connections ------------------------------------------------------- */

static conn *get_conn(sd_cache *c)
{
    if (tl.generation == c->generation && tl.c)
        return tl.c;
    conn *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    pthread_mutex_lock(&c->conns_mu);
    k->next = c->conns;
    c->conns = k;
    pthread_mutex_unlock(&c->conns_mu);
    tl.generation = c->generation;
    tl.c = k;
    return k;
}

void cc__drop(conn *k)
{
    redisFree(k->rc);
    k->rc = NULL;
}

void cc__set_epoch(sd_cache *c, int64_t e, int64_t read_ns);

/* The cache epoch bump before a new master is used (sd_master_adopt). */
static int bump_for_master(void *ctx, int64_t *epoch)
{
    sd_cache *c = ctx;
    int64_t t0 = sd_mono_ns();
    int rc = c->epoch_fn(c->epoch_ctx, true, epoch);
    if (rc == 0)
        cc__set_epoch(c, *epoch, t0);
    return rc;
}

/* This thread's connection, connected (through Sentinel when configured)
 * and logged in, or NULL: the failure is counted. With the breaker open
 * nothing is sent. A connection to a master adopted before the last is
 * dropped first. */
conn *cc__ready_conn(sd_cache *c)
{
    if (breaker_open(c))
        return NULL;
    conn *k = get_conn(c);
    if (k && k->rc && c->url.n_sentinels && k->lineage_seq != atomic_load(&c->master.seq))
        cc__drop(k);
    if (!k || k->rc)
        return k;
    sd_redis_node node;
    const char *what = "connect";
    char why[300];
    k->rc = sd_redis_connect(&c->url, c->tv, &c->master.first, &node, &what, why, sizeof why);
    int rc = 0;
    if (k->rc && c->url.n_sentinels &&
        (rc = sd_master_adopt(&c->master, &node, c->url.master_name, bump_for_master, c,
                              &k->lineage_seq))) {
        snprintf(why, sizeof why, "%s", sd_strerror(rc));
        what = "the epoch bump for a new master";
        cc__drop(k);
    }
    if (!k->rc) {
        cc__note_failure(c, what, why);
        return NULL;
    }
    return k;
}

/* An error reply: counted; READONLY (the node was demoted) drops every
 * connection so that the next command finds the master again. */
void cc__error_reply(sd_cache *c, conn *k, const char *what, const redisReply *r)
{
    cc__note_failure(c, what, r->str);
    if (strncmp(r->str, "READONLY", 8) == 0) {
        atomic_fetch_add(&c->master.seq, 1);
        cc__drop(k);
    }
}

static redisReply *call(sd_cache *c, int argc, const char **argv, const size_t *lens)
{
    conn *k = cc__ready_conn(c);
    if (!k)
        return NULL;
    redisReply *r = redisCommandArgv(k->rc, argc, argv, lens);
    if (!r) {
        cc__note_failure(c, argv[0], k->rc->errstr);
        cc__drop(k);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        cc__error_reply(c, k, argv[0], r);
        freeReplyObject(r);
        return NULL;
    }
    cc__note_success(c);
    return r;
}

/* An EVAL of script over keys and args; true when Redis ran it. */
static bool eval(sd_cache *c, const char *script, int nkeys, const char *const *keys, int nargs,
                 const char *const *args, redisReply **out)
{
    const char *argv[12];
    size_t lens[12];
    char nk[8];
    snprintf(nk, sizeof nk, "%d", nkeys);
    int n = 0;
    argv[n++] = "EVAL";
    argv[n++] = script;
    argv[n++] = nk;
    for (int i = 0; i < nkeys; i++)
        argv[n++] = keys[i];
    for (int i = 0; i < nargs; i++)
        argv[n++] = args[i];
    for (int i = 0; i < n; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = call(c, n, argv, lens);
    if (out)
        *out = r;
    else
        freeReplyObject(r);
    return r != NULL;
}

/* ---- the epoch --------------------------------------------------------- */

/* The epoch a hit must carry, or -1 when the last read is not fresh. */
static int64_t fresh_epoch(sd_cache *c)
{
    int64_t at = atomic_load(&c->epoch_read_ns);
    int64_t e = atomic_load(&c->epoch);
    return at && sd_mono_ns() - at < (int64_t)FRESH_MS * 1000000 ? e : -1;
}

void cc__set_epoch(sd_cache *c, int64_t e, int64_t read_ns)
{
    if (e > atomic_load(&c->epoch))
        atomic_store(&c->epoch, e);
    atomic_store(&c->epoch_read_ns, read_ns);
}

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Keeps the epoch fresh; probes Redis while the breaker is open; every
 * SENTINEL_POLL_MS asks Sentinel which master it names, and when another
 * than the one in use, drops every connection and adopts it with a PING (a
 * failover is followed even while no request comes). */
static void *keeper_main(void *arg)
{
    sd_cache *c = arg;
    int64_t next_ask = 0;
    pthread_mutex_lock(&c->mu);
    while (!c->stopping) {
        pthread_mutex_unlock(&c->mu);
        int64_t t0 = sd_mono_ns(), e = 0;
        if (c->epoch_fn(c->epoch_ctx, false, &e) == 0)
            cc__set_epoch(c, e, t0);
        bool moved = false;
        if (c->url.n_sentinels && sd_mono_ns() >= next_ask) {
            next_ask = sd_mono_ns() + (int64_t)SENTINEL_POLL_MS * 1000000;
            moved = sd_master_moved(&c->master, &c->url, c->tv);
        }
        if ((moved || atomic_load(&c->degraded)) && !breaker_open(c)) {
            const char *argv[] = {"PING"};
            size_t lens[] = {4};
            freeReplyObject(call(c, 1, argv, lens));
        }
        struct timespec ts;
        deadline_in(&ts, EPOCH_POLL_MS);
        pthread_mutex_lock(&c->mu);
        if (!c->stopping)
            pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- entries ----------------------------------------------------------- */

/* ---- lookups and fills ------------------------------------------------- */

int sd_cache_get(sd_cache *c, const unsigned char hash[SD_HASH_LEN], sd_session *out,
                 int64_t *fill_epoch)
{
    int64_t want = fresh_epoch(c);
    *fill_epoch = want;
    if (want < 0 || breaker_open(c)) {
        atomic_fetch_add(&c->misses, 1);
        *fill_epoch = -1;
        return SD_ENOTFOUND;
    }
    char key[sizeof KEY_T + 2 * SD_HASH_LEN];
    memcpy(key, KEY_T, sizeof KEY_T - 1);
    sd_hex(hash, SD_HASH_LEN, key + sizeof KEY_T - 1);
    const char *argv[] = {"GET", key};
    size_t lens[] = {3, sizeof key - 1};
    redisReply *r = call(c, 2, argv, lens);
    if (!r) {
        atomic_fetch_add(&c->misses, 1);
        *fill_epoch = -1; /* Redis is failing: do not add to its trouble */
        return SD_ENOTFOUND;
    }
    int rc = SD_ENOTFOUND;
    if (r->type == REDIS_REPLY_STRING) {
        int64_t e = -1;
        sd_session s;
        if (sd_cache_entry_decode(r->str, r->len, &e, &s)) {
            /* The epoch must still be fresh now that the entry is read:
             * the decision is taken now, not when the lookup began. */
            if (e == want && e == fresh_epoch(c) && sd_hash_equal(s.token_hash, hash) &&
                s.expiry > sd_now_ms()) {
                *out = s;
                rc = 0;
            } else {
                sd_session_clear(&s);
            }
        }
    }
    freeReplyObject(r);
    atomic_fetch_add(rc == 0 ? &c->hits : &c->misses, 1);
    return rc;
}

/* The EVAL of fill_lua for s under epoch, as argv (v malloc'd). */

bool cc__fill_prepare(fill_cmd *f, const sd_session *s, int64_t epoch)
{
    size_t len;
    if (!(f->v = sd_cache_entry_encode(s, epoch, &len)))
        return false;
    snprintf(f->skey, sizeof f->skey, KEY_S "%s", s->id);
    memcpy(f->tkey, KEY_T, sizeof KEY_T - 1);
    sd_hex(s->token_hash, SD_HASH_LEN, f->tkey + sizeof KEY_T - 1);
    snprintf(f->ver, sizeof f->ver, "%lld", (long long)s->version);
    snprintf(f->exp, sizeof f->exp, "%lld", (long long)s->expiry);
    snprintf(f->abs_, sizeof f->abs_, "%lld", (long long)s->absolute_expiry);
    snprintf(f->index, sizeof f->index, "e|%lld|%s", (long long)s->version,
             f->tkey + sizeof KEY_T - 1);
    const char *argv[] = {"EVAL", fill_lua, "2",    f->skey, f->tkey,
                          f->v,   f->ver,   f->exp, f->abs_, f->index};
    memcpy(f->argv, argv, sizeof argv);
    return true;
}

void sd_cache_fill(sd_cache *c, const sd_session *s, int64_t fill_epoch)
{
    fill_cmd f;
    if (fill_epoch < 0 || s->expiry <= sd_now_ms() || !cc__fill_prepare(&f, s, fill_epoch))
        return;
    eval(c, fill_lua, 2, f.argv + 3, 5, f.argv + 5, NULL);
    free(f.v);
}

/* ---- open and close ---------------------------------------------------- */

static void free_cache(sd_cache *c)
{
    for (conn *k = c->conns, *next; k; k = next) {
        next = k->next;
        redisFree(k->rc);
        free(k);
    }
    explicit_bzero(c->url.password, sizeof c->url.password);
    pthread_mutex_destroy(&c->conns_mu);
    sd_master_watch_destroy(&c->master);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

int sd_cache_open(const sd_cache_options *opt, sd_cache **out, char *err, size_t errlen)
{
    sd_cache *c = calloc(1, sizeof *c);
    if (!c)
        return SD_ENOMEM;
    pthread_mutex_init(&c->conns_mu, NULL);
    sd_master_watch_init(&c->master);
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = sd_cache_url_parse(opt->url, &c->url, err, errlen);
    if (rc) {
        free_cache(c);
        return rc;
    }
    if (opt->password && opt->password[0])
        snprintf(c->url.password, sizeof c->url.password, "%s", opt->password);
    if (c->url.n_sentinels)
        snprintf(c->where, sizeof c->where, "master %s through %d Sentinels, /%d",
                 c->url.master_name, c->url.n_sentinels, c->url.db);
    else
        snprintf(c->where, sizeof c->where, "%s:%d/%d", c->url.host, c->url.port, c->url.db);
    int ms = opt->timeout_ms > 0 ? opt->timeout_ms : 50;
    c->tv.tv_sec = ms / 1000;
    c->tv.tv_usec = (ms % 1000) * 1000;
    c->tombstone_ms = opt->tombstone_ms > 0 ? opt->tombstone_ms : 86400000;
    c->epoch_fn = opt->epoch;
    c->epoch_ctx = opt->epoch_ctx;
    c->generation = atomic_fetch_add(&generations, 1) + 1;
    int64_t t0 = sd_mono_ns(), e = 0;
    if ((rc = c->epoch_fn(c->epoch_ctx, false, &e)) == SD_EUNAVAILABLE) {
        /* The store is down at start: no hit counts until the keeper has
         * read the epoch (fresh_epoch says -1 before the first read). */
        sd_warn("cache: the store is unavailable: no cache hit counts until it is back");
    } else if (rc) {
        snprintf(err, errlen, "cannot read the cache epoch from the store: %s", sd_strerror(rc));
        free_cache(c);
        return rc;
    } else {
        cc__set_epoch(c, e, t0);
    }
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    redisReply *r = call(c, 1, argv, lens);
    if (r)
        sd_info("cache: redis (%s), epoch %lld", c->where, (long long)e);
    else
        sd_warn("cache: redis (%s) not reachable at start: serving from the store until it is",
                c->where);
    freeReplyObject(r);
    if (pthread_create(&c->keeper, NULL, keeper_main, c)) {
        snprintf(err, errlen, "cannot start the cache threads");
        free_cache(c);
        return SD_ENOMEM;
    }
    pthread_setname_np(c->keeper, "sd-cache-epoch");
    if (pthread_create(&c->througher, NULL, cc__through_main, c)) {
        pthread_mutex_lock(&c->mu);
        c->stopping = true;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->keeper, NULL);
        snprintf(err, errlen, "cannot start the cache threads");
        free_cache(c);
        return SD_ENOMEM;
    }
    pthread_setname_np(c->througher, "sd-cache-write");
    c->started = true;
    *out = c;
    return 0;
}

void sd_cache_shutdown(sd_cache *c)
{
    if (!c || !c->started)
        return;
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->keeper, NULL);
    pthread_join(c->througher, NULL); /* it finishes what is queued first */
    pthread_mutex_lock(&c->mu);
    c->closed = true;
    pthread_mutex_unlock(&c->mu);
    c->started = false;
}

void sd_cache_close(sd_cache *c)
{
    if (!c)
        return;
    sd_cache_shutdown(c);
    free_cache(c);
}

void sd_cache_get_stats(sd_cache *c, sd_cache_stats *out)
{
    out->degraded = atomic_load(&c->degraded);
    out->hits = atomic_load(&c->hits);
    out->misses = atomic_load(&c->misses);
    out->errors = atomic_load(&c->errors);
    out->fences = atomic_load(&c->fences);
    out->master_changes = atomic_load(&c->master.adopted);
}
