/*
 * mintcache.h - access tokens already minted, handed out again while most
 * of their lifetime remains (issue 18's minting target; docs/tokens.md,
 * "Reusing a minted token"). A signature costs more than a whole
 * validation, and a gateway that asks for a token on every validation
 * asks for the same session's many times a minute: the second ask gets the
 * token the first one got, the same bytes (same iat, jti and exp).
 *
 * One entry per session id, holding the token minted for one version of
 * the session under one generation of the signing keys. A lookup matches
 * only the same id, the same version (every write that changes what a
 * token says bumps it: update, renewal, rotation, signals), the current
 * generation (bumped by sd_mintcache_clear when a SIGHUP swaps the keys or
 * the recipient key), a time before the entry's reuse point (minted at m
 * with exp e: m + reuse x (e - m), so the token handed out still has at
 * least 1 - reuse of its lifetime), and an exp not past the session's
 * current expiry bound. The cache only replaces the signing: the caller
 * asks it only for a session the validation core has just found valid, so
 * a revoked, expired or cut-off session never reaches it.
 *
 * Memory: at most max_bytes (the table, allocated at creation, plus each
 * token with its session id and 16 bytes of the allocator's). Eviction is
 * CLOCK within a shard (an entry handed out since the hand last passed is
 * spared once); each insertion also frees up to two entries under the
 * hand that can no longer be handed out, so memory follows the sessions
 * in use. Thread safety: 64 shards by a hash of the session id, each with
 * its own mutex on its own cache line; a hit copies the token out under
 * it. Nothing here knows keys or sessions beyond an id and a version.
 */
#ifndef SD_JWT_MINTCACHE_H
#define SD_JWT_MINTCACHE_H

#include "util/arena.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sd_mintcache sd_mintcache;

/* A cache of at most max_bytes (at least 64 KiB) that hands a token out
 * again while less than reuse (0 < reuse <= 0.5) of its lifetime has
 * passed. Returns 0 with *out (sd_mintcache_free) or SD_ENOMEM /
 * SD_EINVALID. */
int sd_mintcache_new(size_t max_bytes, double reuse, sd_mintcache **out);
void sd_mintcache_free(sd_mintcache *c); /* NULL: nothing */

/* The generation to tag a token with: read it under the same lock as the
 * keys that sign the token, so that a token and its tag belong together. */
uint64_t sd_mintcache_generation(const sd_mintcache *c);

/* Bumps the generation (no entry matches any more) and frees every entry.
 * Call with the keys' write lock held, after the new keys are in place. */
void sd_mintcache_clear(sd_mintcache *c);

/* The token of session sid (SD_ID_LEN characters or fewer) at version,
 * still to be handed out at now (ms) with an exp (seconds) at or before
 * bound (ms: the session's expiry bound as the validation found it):
 * copied into arena a, *jwt and *exp_s set, true. False on any mismatch
 * (or when a is out of memory): mint one. */
bool sd_mintcache_get(sd_mintcache *c, const char *sid, int64_t version, int64_t now, int64_t bound,
                      sd_arena *a, const char **jwt, int64_t *exp_s);

/* Remembers jwt (len bytes) minted at now for session sid at version,
 * signed under generation gen, with exp exp_s (seconds). Replaces the
 * session's entry. Silent when the token is too large for a shard or
 * memory is short (counted as skipped): the next ask mints again. */
void sd_mintcache_put(sd_mintcache *c, const char *sid, int64_t version, uint64_t gen, int64_t now,
                      int64_t exp_s, const char *jwt, size_t len);

typedef struct sd_mintcache_stats {
    uint64_t hits;      /* handed out again */
    uint64_t misses;    /* no entry for the session */
    uint64_t stale;     /* an entry, but another version or generation, past its
                           reuse point or its exp past the session's bound */
    uint64_t stored;    /* tokens put */
    uint64_t evicted;   /* entries pushed out for room (CLOCK) */
    uint64_t skipped;   /* tokens not stored (too large, no memory) */
    uint64_t entries;   /* held now */
    uint64_t bytes;     /* held now, the table included */
    uint64_t max_bytes; /* the bound */
} sd_mintcache_stats;

void sd_mintcache_stats_get(sd_mintcache *c, sd_mintcache_stats *out);

#endif
