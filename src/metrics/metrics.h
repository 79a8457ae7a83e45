/*
 * metrics.h - counters and latency histograms, rendered in the Prometheus
 * text exposition format. Lock-free: recording a sample costs a few
 * increments of relaxed atomics in the calling thread's own shard (no
 * locked instruction, no cache line shared with another thread's samples);
 * rendering sums the shards.
 */
#ifndef SD_METRICS_H
#define SD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SD_METRICS_MAX_ROUTES 32

enum sd_store_op {
    SD_OP_GET,
    SD_OP_GET_BY_TOKEN,
    SD_OP_LIST_USER,
    SD_OP_CREATE,
    SD_OP_UPDATE,
    SD_OP_END,
    SD_OP_END_USER,
    SD_OP_BULK_END,
    SD_OP_TOUCH,
    SD_OP_SWEEP,
    SD_OP_PURGE,
    SD_OP_GET_ROTATED,
    SD_OP_COUNT
};

/* The store's counters, as sd_store_get_stats (store/store.h) fills them
 * for rendering. Declared here, like the store operations above, so that
 * metrics knows nothing of the store and whoever records a request (the
 * HTTP layer) includes no store header. */
typedef struct sd_store_stats {
    int64_t active_rows; /* rows in the active table (expired ones until swept) */
    int64_t swept_total; /* sessions moved to history by sweeps */
    int64_t sweeps_total;
    int64_t commits_total;
    int64_t writes_total;
    int64_t batch_retries_total;   /* pipelined batches run again one statement at a time */
    int64_t rows_read_ahead_total; /* selects answered by a batch's rows read ahead */
    int64_t writes_queued;         /* waiting for the writer now (a gauge) */
    int64_t writes_held_total;     /* writes that waited for an unreachable store (--write-hold) */
    int64_t write_holds_expired_total; /* of those, failed when their hold ended */
    bool broken;                       /* a fatal I/O error: no further write is acknowledged */
    bool standby; /* fence values read from a synchronous standby (--store-standby) */
    int64_t standby_reads, standby_misses; /* fence reads answered there; not answered either */
    bool cache; /* a Redis cache tier is attached (--cache): the fields below count */
    bool cache_degraded;
    int64_t cache_hits, cache_misses, cache_errors, cache_fences;
    int64_t cache_master_changes;
} sd_store_stats;

/* Names the routes: route i is methods[i] on route_names[i] (a pattern),
 * the labels method and route of the HTTP series. Each method + pattern
 * pair must be unique, so that no two series share a label set. Borrowed;
 * they must live as long as the process. Route index n_routes is
 * route="unmatched", method="other" (no route: 400, 404, 405, HTTP-layer
 * errors). Call once before serving. */
void sd_metrics_init(const char *const *methods, const char *const *route_names, int n_routes);

void sd_metrics_request(int route, int status, int64_t ns);
void sd_metrics_store_op(enum sd_store_op op, int64_t ns);
/* One timed operation standing for weight of them (a sampled read). */
void sd_metrics_store_op_n(enum sd_store_op op, int64_t ns, unsigned weight);
/* The op="..." label of a store operation. */
const char *sd_metrics_store_op_name(enum sd_store_op op);
void sd_metrics_validation(int valid);

/* Renders every metric; ready: whether /readyz would answer 200 now. The
 * text is malloc'd, *len its length. */
char *sd_metrics_render(const sd_store_stats *st, int ready, size_t *len);

#endif
