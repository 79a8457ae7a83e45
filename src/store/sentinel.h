/*
 * sentinel.h - reaching the Redis node the cache tier writes to: the one
 * --cache redis://... names, or the master Redis Sentinel names for
 * --cache redis-sentinel://... (asked in turn with SENTINEL
 * get-master-addr-by-name, then checked with ROLE), logged in (AUTH,
 * SELECT). A master is named by its dataset's lineage (run id and
 * replication id), which changes when the node restarts or is promoted:
 * cache.c bumps the cache epoch whenever it changes (see "The Redis cache",
 * "Failover", in docs/architecture.md). Blocking hiredis calls, each bounded
 * by the given timeout; no state but the caller's.
 */
#ifndef SD_SENTINEL_H
#define SD_SENTINEL_H

#include "store/cache_entry.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/time.h>

/* The node a connection reached. */
typedef struct sd_redis_node {
    char host[256];
    int port;
    char lineage[96]; /* "<run_id>:<master_replid>" with Sentinel; "" without */
} sd_redis_node;

/* Connects to u's node: u's host and port, or, with Sentinels, the master
 * they name, checked to call itself a master (a Sentinel that has not yet
 * seen a failover names a demoted node: refused, the caller tries again
 * later). *first is the Sentinel asked first, moved to the one that
 * answered (any thread may pass the same one). Returns the connection
 * (the caller's, redisFree) with its timeout set, logged in, on u's
 * database, *node filled; NULL with *what (the step that failed) and a
 * sentence in err that never holds the password. */
redisContext *sd_redis_connect(const sd_cache_url *u, struct timeval tv, _Atomic int *first,
                               sd_redis_node *node, const char **what, char *err, size_t errlen);

/* sessiond check --connect: reaches the node the cache would write to (url
 * as --cache gives it, password as --cache-password, each step bounded by
 * timeout_ms) and checks it is a master, changing nothing. 0 with one line
 * about it in out, else an SD_E* value with the reason there (never the
 * password). */
int sd_redis_probe(const char *url, const char *password, int timeout_ms, char *out, size_t outlen);

/* Only asks the Sentinels which address the master has now. 0, or
 * SD_EUNAVAILABLE with a sentence in err. */
int sd_sentinel_ask(const sd_cache_url *u, struct timeval tv, _Atomic int *first, char *host,
                    size_t hostlen, int *port, char *err, size_t errlen);

/* The master a process uses (Sentinel), shared by its threads. */
typedef struct sd_master_watch {
    pthread_mutex_t mu;
    char lineage[96];     /* adopted last, under mu; "" none yet */
    sd_redis_node master; /* under mu */
    _Atomic uint64_t seq; /* raised at each change: a connection made under an older is stale */
    _Atomic int first;    /* the Sentinel asked first */
    _Atomic int64_t adopted;
} sd_master_watch;

void sd_master_watch_init(sd_master_watch *w);
void sd_master_watch_destroy(sd_master_watch *w);

/* Called with a new connection to node before anything is sent over it:
 * when node's lineage is not the one adopted last, seq is raised first, then
 * bump(ctx, &epoch) must succeed (the cache epoch bump, durable) for node to
 * be adopted (logged with name and the epoch). *seq gets the count the
 * connection belongs to. 0 or bump's error (the connection must not be
 * used). */
int sd_master_adopt(sd_master_watch *w, const sd_redis_node *node, const char *name,
                    int (*bump)(void *ctx, int64_t *epoch), void *ctx, uint64_t *seq);

/* Asks u's Sentinels which master they name; when it is not the adopted one,
 * raises seq (every connection is stale) and says true. */
bool sd_master_moved(sd_master_watch *w, const sd_cache_url *u, struct timeval tv);

#endif
