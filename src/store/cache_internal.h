/*
 * cache_internal.h - what the cache tier's files share and nothing else
 * includes: the cache struct, its keys and timings, and the cc__ functions
 * that cross files. cache.c holds connections, the breaker, the epoch, the
 * lookups and fills, open and close; cache_through.c the write-through.
 */
#ifndef SD_CACHE_INTERNAL_H
#define SD_CACHE_INTERNAL_H

#include "store/cache.h"
#include "store/cache_entry.h"
#include "store/sentinel.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define KEY_T               "sessiond:t:"
#define KEY_S               "sessiond:s:"
#define EPOCH_POLL_MS       50
#define FRESH_MS            250
#define FENCE_WAIT_MS       (FRESH_MS + 50)
#define BREAKER_FAILS       3
#define BREAKER_COOLDOWN_MS 1000
#define SENTINEL_POLL_MS    1000

typedef struct conn {
    redisContext *rc;
    uint64_t lineage_seq; /* the master adopted when it connected */
    struct conn *next;
} conn;

struct sd_cache {
    sd_cache_url url; /* host, port, db; the password never logged, wiped at close */
    char where[300];  /* host:port/db or the master's name for messages */
    struct timeval tv;
    int64_t tombstone_ms;
    sd_cache_epoch_fn epoch_fn;
    void *epoch_ctx;
    uint64_t generation;

    pthread_mutex_t conns_mu;
    conn *conns;

    sd_master_watch master; /* Sentinel: a connection made before its last change is dropped */

    _Atomic int64_t epoch, epoch_read_ns; /* the last epoch read, when its query started */
    _Atomic int fails;                    /* failures in a row */
    _Atomic int64_t open_until_ns;        /* the breaker skips Redis until then */
    _Atomic bool degraded;
    _Atomic int64_t hits, misses, errors, fences;

    pthread_t keeper, througher;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sd_write *queue_head, *queue_tail; /* under mu: awaiting write-through */
    bool stopping, closed;                    /* under mu */
    bool started;
};

typedef struct fill_cmd {
    char *v;
    char skey[sizeof KEY_S + SD_ID_LEN], tkey[sizeof KEY_T + 2 * SD_HASH_LEN];
    char ver[24], exp[24], abs_[24], index[40 + 2 * SD_HASH_LEN];
    const char *argv[10];
} fill_cmd;

extern const char cc__invalidate_lua[];

/* cache.c */
conn *cc__ready_conn(sd_cache *c);
void cc__drop(conn *k);
void cc__note_failure(sd_cache *c, const char *what, const char *why);
void cc__note_success(sd_cache *c);
void cc__error_reply(sd_cache *c, conn *k, const char *what, const redisReply *r);
void cc__set_epoch(sd_cache *c, int64_t e, int64_t read_ns);
bool cc__fill_prepare(fill_cmd *f, const sd_session *s, int64_t epoch);

/* cache_through.c */
void *cc__through_main(void *arg);

#endif
