/*
 * metrics.c - the registry of metrics.h and its text rendering.
 *
 * The counters are sharded by thread: the first SHARDS threads that record
 * a sample get a shard of their own (so the HTTP loops never write to the
 * same cache line, and a sample is a few plain loads and stores, no locked
 * instruction), later threads share one more with atomic adds. The
 * renderer sums the shards; every counter is a relaxed atomic, so it reads
 * them while they are written.
 */
#include "metrics/metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};
#define NB (sizeof bounds / sizeof bounds[0])

typedef struct histo {
    _Atomic uint64_t bucket[NB + 1];
    _Atomic uint64_t sum_ns;
    _Atomic uint64_t count;
} histo;

static const int statuses[] = {200, 201, 204, 400, 401, 403, 404, 405, 411, 412,
                               413, 414, 415, 429, 431, 500, 501, 503, 0};
#define NS (sizeof statuses / sizeof statuses[0]) /* last: any other */

static const char *const op_names[SD_OP_COUNT] = {
    "get",      "get_by_token", "list_user", "create", "update", "end",
    "end_user", "bulk_end",     "touch",     "sweep",  "purge",  "get_rotated"};

const char *sd_metrics_store_op_name(enum sd_store_op op)
{
    return op < SD_OP_COUNT ? op_names[op] : "?";
}

static const char *const *routes;
static const char *const *methods;
static int nroutes;

#define SHARDS 32 /* threads with a shard of their own; the rest share shards[SHARDS] */

typedef struct shard {
    _Alignas(64) _Atomic uint64_t requests[SD_METRICS_MAX_ROUTES + 1][NS];
    histo req_latency[SD_METRICS_MAX_ROUTES + 1];
    histo op_latency[SD_OP_COUNT];
    _Atomic uint64_t validations[2];
} shard;

static shard shards[SHARDS + 1];
static _Atomic int shards_taken;
static _Thread_local shard *mine;
static _Thread_local bool mine_alone; /* no other thread writes to mine */

static shard *my_shard(void)
{
    if (!mine) {
        int i = atomic_fetch_add_explicit(&shards_taken, 1, memory_order_relaxed);
        mine_alone = i < SHARDS;
        mine = &shards[mine_alone ? i : SHARDS];
    }
    return mine;
}

/* Adds v to a counter of the calling thread's shard: a load and a store
 * when the shard is the thread's alone, an atomic add in the shared one. */
static void add(_Atomic uint64_t *p, uint64_t v)
{
    if (mine_alone)
        atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + v,
                              memory_order_relaxed);
    else
        atomic_fetch_add_explicit(p, v, memory_order_relaxed);
}

/* The sum over every shard of the counter at p's place (p in shards[0]). */
static uint64_t total(const _Atomic uint64_t *p)
{
    size_t off = (size_t)((const char *)p - (const char *)&shards[0]);
    uint64_t sum = 0;
    for (int i = 0; i <= SHARDS; i++)
        sum += atomic_load_explicit((const _Atomic uint64_t *)((const char *)&shards[i] + off),
                                    memory_order_relaxed);
    return sum;
}

void sd_metrics_init(const char *const *route_methods, const char *const *route_names, int n)
{
    methods = route_methods;
    routes = route_names;
    nroutes = n > SD_METRICS_MAX_ROUTES ? SD_METRICS_MAX_ROUTES : n;
}

/* One observation of ns, counted weight times. */
static void observe_n(histo *h, int64_t ns, uint64_t weight)
{
    double s = (double)ns / 1e9;
    size_t i = 0;
    while (i < NB && s > bounds[i])
        i++;
    add(&h->bucket[i], weight);
    add(&h->sum_ns, (uint64_t)(ns > 0 ? ns : 0) * weight);
    add(&h->count, weight);
}

static void observe(histo *h, int64_t ns)
{
    observe_n(h, ns, 1);
}

void sd_metrics_request(int route, int status, int64_t ns)
{
    if (route < 0 || route > nroutes)
        route = nroutes;
    size_t s = 0;
    while (s < NS - 1 && statuses[s] != status)
        s++;
    shard *sh = my_shard();
    add(&sh->requests[route][s], 1);
    observe(&sh->req_latency[route], ns);
}

void sd_metrics_store_op(enum sd_store_op op, int64_t ns)
{
    sd_metrics_store_op_n(op, ns, 1);
}

void sd_metrics_store_op_n(enum sd_store_op op, int64_t ns, unsigned weight)
{
    if (op >= 0 && op < SD_OP_COUNT)
        observe_n(&my_shard()->op_latency[op], ns, weight);
}

void sd_metrics_validation(int valid)
{
    add(&my_shard()->validations[valid ? 1 : 0], 1);
}

typedef struct buf {
    char *p;
    size_t len, cap;
    int oom;
} buf;

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 16384;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* labels: the series' label pairs, rendered (`op="get"`); h is in shards[0],
 * the series is the sum of every shard's. */
static void put_histo(buf *b, const char *name, const char *labels, const histo *h)
{
    uint64_t cum = 0;
    for (size_t i = 0; i <= NB; i++) {
        cum += total(&h->bucket[i]);
        if (i < NB)
            put(b, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, bounds[i],
                (unsigned long long)cum);
        else
            put(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cum);
    }
    put(b, "%s_sum{%s} %.9f\n", name, labels, (double)total(&h->sum_ns) / 1e9);
    put(b, "%s_count{%s} %llu\n", name, labels, (unsigned long long)total(&h->count));
}

/* The method and route labels of route r (patterns hold no '"' or '\\'). */
static void route_labels(int r, char *out, size_t n)
{
    bool known = r < nroutes && routes && methods;
    snprintf(out, n, "method=\"%s\",route=\"%s\"", known ? methods[r] : "other",
             known ? routes[r] : "unmatched");
}

char *sd_metrics_render(const sd_store_stats *st, int ready, size_t *len)
{
    buf b = {0};
    char labels[256];
    put(&b, "# HELP sessiond_http_requests_total HTTP requests by method, route and status.\n"
            "# TYPE sessiond_http_requests_total counter\n");
    for (int r = 0; r <= nroutes; r++)
        for (size_t s = 0; s < NS; s++) {
            uint64_t v = total(&shards[0].requests[r][s]);
            if (!v)
                continue;
            char code[8];
            snprintf(code, sizeof code, "%d", statuses[s]);
            route_labels(r, labels, sizeof labels);
            put(&b, "sessiond_http_requests_total{%s,status=\"%s\"} %llu\n", labels,
                statuses[s] ? code : "other", (unsigned long long)v);
        }
    put(&b, "# HELP sessiond_http_request_duration_seconds Time from request to response.\n"
            "# TYPE sessiond_http_request_duration_seconds histogram\n");
    for (int r = 0; r <= nroutes; r++)
        if (total(&shards[0].req_latency[r].count)) {
            route_labels(r, labels, sizeof labels);
            put_histo(&b, "sessiond_http_request_duration_seconds", labels,
                      &shards[0].req_latency[r]);
        }
    put(&b, "# HELP sessiond_store_operation_duration_seconds Store operations, writes from "
            "submission to durable commit; get and get_by_token timed one in 16, each "
            "counted 16 times.\n"
            "# TYPE sessiond_store_operation_duration_seconds histogram\n");
    for (int o = 0; o < SD_OP_COUNT; o++) {
        snprintf(labels, sizeof labels, "op=\"%s\"", op_names[o]);
        put_histo(&b, "sessiond_store_operation_duration_seconds", labels,
                  &shards[0].op_latency[o]);
    }
    put(&b,
        "# HELP sessiond_validations_total Token and id validations by outcome.\n"
        "# TYPE sessiond_validations_total counter\n"
        "sessiond_validations_total{result=\"valid\"} %llu\n"
        "sessiond_validations_total{result=\"invalid\"} %llu\n",
        (unsigned long long)total(&shards[0].validations[1]),
        (unsigned long long)total(&shards[0].validations[0]));
    put(&b,
        "# HELP sessiond_sessions_active Sessions in the active table (expired ones until the "
        "next sweep).\n"
        "# TYPE sessiond_sessions_active gauge\n"
        "sessiond_sessions_active %lld\n"
        "# HELP sessiond_expiry_sweeps_total Expiry sweeps run.\n"
        "# TYPE sessiond_expiry_sweeps_total counter\n"
        "sessiond_expiry_sweeps_total %lld\n"
        "# HELP sessiond_sessions_expired_total Sessions moved to history by sweeps.\n"
        "# TYPE sessiond_sessions_expired_total counter\n"
        "sessiond_sessions_expired_total %lld\n"
        "# HELP sessiond_store_commits_total Group commits (one fsync each).\n"
        "# TYPE sessiond_store_commits_total counter\n"
        "sessiond_store_commits_total %lld\n"
        "# HELP sessiond_store_writes_total Writes committed.\n"
        "# TYPE sessiond_store_writes_total counter\n"
        "sessiond_store_writes_total %lld\n"
        "# HELP sessiond_store_batch_retries_total Batches in which a write failed while they "
        "ran pipelined (PostgreSQL) or without a savepoint a write (SQLite), run again with "
        "one, where the failing write is undone alone.\n"
        "# TYPE sessiond_store_batch_retries_total counter\n"
        "sessiond_store_batch_retries_total %lld\n"
        "# HELP sessiond_store_writes_queued Writes waiting for the store's writer (at most "
        "--max-queued-writes; past it a write answers 503).\n"
        "# TYPE sessiond_store_writes_queued gauge\n"
        "sessiond_store_writes_queued %lld\n"
        "# HELP sessiond_store_rows_read_ahead_total Selects of read-modify-writes in pipelined "
        "batches (PostgreSQL) answered by the rows the batch read ahead in one round trip.\n"
        "# TYPE sessiond_store_rows_read_ahead_total counter\n"
        "sessiond_store_rows_read_ahead_total %lld\n"
        "# HELP sessiond_store_writes_held_total Times a write waited for a store it could not "
        "reach (--write-hold; a write held twice counts twice).\n"
        "# TYPE sessiond_store_writes_held_total counter\n"
        "sessiond_store_writes_held_total %lld\n"
        "# HELP sessiond_store_write_holds_expired_total Held writes that failed (503) when "
        "their hold ended before the store came back.\n"
        "# TYPE sessiond_store_write_holds_expired_total counter\n"
        "sessiond_store_write_holds_expired_total %lld\n"
        "# HELP sessiond_store_broken 1 after a fatal store I/O error.\n"
        "# TYPE sessiond_store_broken gauge\n"
        "sessiond_store_broken %d\n"
        "# HELP sessiond_ready 1 when the store takes requests (GET /readyz answers 200).\n"
        "# TYPE sessiond_ready gauge\n"
        "sessiond_ready %d\n",
        (long long)st->active_rows, (long long)st->sweeps_total, (long long)st->swept_total,
        (long long)st->commits_total, (long long)st->writes_total,
        (long long)st->batch_retries_total, (long long)st->writes_queued,
        (long long)st->rows_read_ahead_total, (long long)st->writes_held_total,
        (long long)st->write_holds_expired_total, st->broken ? 1 : 0, ready ? 1 : 0);
    if (st->standby)
        put(&b,
            "# HELP sessiond_store_standby_reads_total Reads of the cache epoch or the global "
            "not-before answered by the synchronous standby (--store-standby) because the primary "
            "could not be read.\n"
            "# TYPE sessiond_store_standby_reads_total counter\n"
            "sessiond_store_standby_reads_total %lld\n"
            "# HELP sessiond_store_standby_misses_total Those reads the standby could not answer "
            "either (the validation that needed one answered 503).\n"
            "# TYPE sessiond_store_standby_misses_total counter\n"
            "sessiond_store_standby_misses_total %lld\n",
            (long long)st->standby_reads, (long long)st->standby_misses);
    if (st->cache)
        put(&b,
            "# HELP sessiond_cache_degraded 1 while the Redis cache tier is failing (breaker "
            "open): validation reads go to the store.\n"
            "# TYPE sessiond_cache_degraded gauge\n"
            "sessiond_cache_degraded %d\n"
            "# HELP sessiond_cache_requests_total Cache lookups of validation by result.\n"
            "# TYPE sessiond_cache_requests_total counter\n"
            "sessiond_cache_requests_total{result=\"hit\"} %lld\n"
            "sessiond_cache_requests_total{result=\"miss\"} %lld\n"
            "# HELP sessiond_cache_errors_total Redis calls that failed or timed out.\n"
            "# TYPE sessiond_cache_errors_total counter\n"
            "sessiond_cache_errors_total %lld\n"
            "# HELP sessiond_cache_fences_total Cache epoch bumps: writes the cache could not "
            "invalidate.\n"
            "# TYPE sessiond_cache_fences_total counter\n"
            "sessiond_cache_fences_total %lld\n"
            "# HELP sessiond_cache_master_changes_total Redis masters adopted (Sentinel): "
            "each bumps the cache epoch.\n"
            "# TYPE sessiond_cache_master_changes_total counter\n"
            "sessiond_cache_master_changes_total %lld\n",
            st->cache_degraded ? 1 : 0, (long long)st->cache_hits, (long long)st->cache_misses,
            (long long)st->cache_errors, (long long)st->cache_fences,
            (long long)st->cache_master_changes);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
