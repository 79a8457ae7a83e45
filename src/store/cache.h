/*
 * cache.h - the Redis cache tier (hiredis) between the store wrappers and a
 * shared backend (--cache redis://...). Validation by token reads it first;
 * writes go through to it after the backend committed them. Callers never
 * see it: store.c's wrappers call it (see "The Redis cache" in
 * docs/architecture.md for the revocation argument).
 *
 * Keys: sessiond:t:<token hash hex> -> the session's fields without attrs
 * ("e|...", read with one GET on the hot path); sessiond:s:<id> -> its
 * index ("e|<version>|<token hash hex>": the one token key of the session),
 * an invalidation marker ("m|<version>") or a tombstone ("x", the session
 * ended). Fills and invalidations are Lua scripts, atomic in Redis: an
 * invalidation deletes the token key its index names. An entry carries the
 * cache epoch it was read under; the epoch lives in the database and is
 * bumped, before a write is acknowledged, whenever the cache could not be
 * invalidated, so that every older entry is ignored by every replica.
 */
#ifndef SD_CACHE_H
#define SD_CACHE_H

#include "session/session.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct sd_cache sd_cache;
struct sd_write;

/* Reads (bump=false) or increments durably (bump=true) the cache epoch in
 * the shared store; *epoch gets the value. 0 or a negative SD_E* code. */
typedef int (*sd_cache_epoch_fn)(void *ctx, bool bump, int64_t *epoch);

typedef struct sd_cache_options {
    const char *url;      /* redis://[:PASSWORD@]HOST[:PORT][/DB] or
                             redis-sentinel://[:PASSWORD@]HOST:PORT[,...]/MASTER[/DB];
                             borrowed during open */
    const char *password; /* overrides the URL's; "" or NULL: none; borrowed during open */
    int timeout_ms;       /* every connect and command */
    int64_t tombstone_ms; /* how long an ended session's tombstone lives: at least the
                             longest session lifetime (--absolute-timeout) */
    sd_cache_epoch_fn epoch;
    void *epoch_ctx;
} sd_cache_options;

typedef struct sd_cache_stats {
    bool degraded; /* the circuit breaker is open: reads go to the store */
    int64_t hits, misses, errors, fences;
    int64_t master_changes; /* Sentinel: masters adopted, each with an epoch bump */
} sd_cache_stats;

/* Opens the cache (one connection per calling thread, made on first use)
 * and starts its two threads (epoch keeper, write-through). An unreachable Redis is
 * not an error: the cache starts degraded. */
int sd_cache_open(const sd_cache_options *opt, sd_cache **out, char *err, size_t errlen);
/* Stops the threads; the writes queued for write-through are done first.
 * After it, sd_cache_after_write works on the calling thread and no longer
 * fences (a write that would need a fence answers 503). */
void sd_cache_shutdown(sd_cache *c);
void sd_cache_close(sd_cache *c);

/* Looks the token up. 0: a hit, *out filled without attrs (owned by the
 * caller). SD_ENOTFOUND: a miss; *fill_epoch is the epoch to pass to
 * sd_cache_fill after reading the store, or -1 (do not fill). */
int sd_cache_get(sd_cache *c, const unsigned char hash[SD_HASH_LEN], sd_session *out,
                 int64_t *fill_epoch);
/* Stores s (read from the store after sd_cache_get gave fill_epoch) unless
 * a newer version, an invalidation or a tombstone is there. */
void sd_cache_fill(sd_cache *c, const sd_session *s, int64_t fill_epoch);

/* Called once a write completed in the store (w->done is the caller's
 * completion): w->done is called now when the write changed nothing cached;
 * otherwise on the write-through thread, after the invalidation, or, when it
 * failed, after the epoch was bumped and every replica has seen it. */
void sd_cache_after_write(sd_cache *c, struct sd_write *w);

void sd_cache_get_stats(sd_cache *c, sd_cache_stats *out);

#endif
