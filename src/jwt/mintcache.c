/* mintcache.c - minted access tokens handed out again (see mintcache.h). */
#include "jwt/mintcache.h"
#include "session/token.h"
#include "util/err.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS       64
#define SLOT_BUDGET  512   /* one slot per this many bytes of the bound */
#define MALLOC_EXTRA 16    /* what the allocator adds to each token's block */
#define MIN_BYTES    65536 /* 1 KiB a shard */
#define SWEEP_STEPS  2     /* slots the hand looks at on each insertion */

/* An entry. blob is "<sid>\0<token>\0", malloc'd; NULL: the slot is free
 * (then next links the free list). */
typedef struct slot {
    uint64_t h; /* hash of the session id */
    int64_t version;
    uint64_t gen;
    int64_t reuse_until; /* ms: handed out only before this */
    int64_t exp_s;       /* the token's exp */
    char *blob;
    uint32_t next; /* bucket chain (or free list): slot index + 1; 0 ends it */
    uint32_t sid_len, tok_len;
    bool ref; /* handed out since the hand last passed */
} slot;

typedef struct shard {
    _Alignas(64) pthread_mutex_t mu;
    slot *slots;
    uint32_t *buckets; /* heads: slot index + 1 */
    uint32_t cap, mask, hand, free_head;
    uint32_t fresh;       /* slots from here on were never used (their memory never touched) */
    size_t bytes, budget; /* tokens' bytes held, and their bound */
    uint64_t entries, hits, misses, stale, stored, evicted, skipped;
} shard;

struct sd_mintcache {
    double reuse;
    size_t max_bytes, table_bytes;
    _Atomic uint64_t gen;
    shard shards[SHARDS];
};

static shard *shard_of(sd_mintcache *c, uint64_t h)
{
    return &c->shards[h % SHARDS];
}

static size_t blob_cost(const slot *e)
{
    return e->sid_len + 1 + e->tok_len + 1 + MALLOC_EXTRA;
}

/* Resets sh to empty. */
static void shard_empty(shard *sh)
{
    for (uint32_t i = 0; i < sh->fresh; i++)
        free(sh->slots[i].blob);
    if (sh->fresh) {
        memset(sh->slots, 0, sh->fresh * sizeof *sh->slots);
        memset(sh->buckets, 0, (sh->mask + 1) * sizeof *sh->buckets);
    }
    sh->fresh = sh->free_head = sh->hand = 0;
    sh->bytes = 0;
    sh->entries = 0;
}

int sd_mintcache_new(size_t max_bytes, double reuse, sd_mintcache **out)
{
    *out = NULL;
    if (max_bytes < MIN_BYTES || !(reuse > 0.0 && reuse <= 0.5))
        return SD_EINVALID;
    sd_mintcache *c = calloc(1, sizeof *c);
    if (!c)
        return SD_ENOMEM;
    c->reuse = reuse;
    c->max_bytes = max_bytes;
    atomic_init(&c->gen, 1);
    size_t per = max_bytes / SHARDS;
    uint32_t cap = (uint32_t)(per / SLOT_BUDGET), nb = 4;
    if (cap < 2)
        cap = 2;
    while (nb < cap)
        nb *= 2;
    size_t table = cap * sizeof(slot) + nb * sizeof(uint32_t);
    int rc = 0;
    for (int i = 0; i < SHARDS; i++) {
        shard *sh = &c->shards[i];
        pthread_mutex_init(&sh->mu, NULL);
        sh->cap = cap;
        sh->mask = nb - 1;
        sh->budget = per > table ? per - table : 0;
        sh->slots = calloc(cap, sizeof *sh->slots);
        sh->buckets = calloc(nb, sizeof *sh->buckets);
        if (!sh->slots || !sh->buckets) /* calloc'd: touched only as slots are used */
            rc = SD_ENOMEM;
    }
    c->table_bytes = table * SHARDS;
    if (rc) {
        sd_mintcache_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void sd_mintcache_free(sd_mintcache *c)
{
    if (!c)
        return;
    for (int i = 0; i < SHARDS; i++) {
        shard *sh = &c->shards[i];
        if (sh->slots && sh->buckets)
            shard_empty(sh);
        free(sh->slots);
        free(sh->buckets);
        pthread_mutex_destroy(&sh->mu);
    }
    free(c);
}

uint64_t sd_mintcache_generation(const sd_mintcache *c)
{
    return atomic_load_explicit(&c->gen, memory_order_acquire);
}

void sd_mintcache_clear(sd_mintcache *c)
{
    atomic_fetch_add_explicit(&c->gen, 1, memory_order_acq_rel);
    for (int i = 0; i < SHARDS; i++) {
        shard *sh = &c->shards[i];
        pthread_mutex_lock(&sh->mu);
        shard_empty(sh);
        pthread_mutex_unlock(&sh->mu);
    }
}

/* The slot (index + 1) holding sid in sh, or 0. Locked. */
static uint32_t find(const shard *sh, uint64_t h, const char *sid, size_t n)
{
    for (uint32_t i = sh->buckets[(h >> 6) & sh->mask]; i; i = sh->slots[i - 1].next) {
        const slot *e = &sh->slots[i - 1];
        if (e->h == h && e->sid_len == n && memcmp(e->blob, sid, n) == 0)
            return i;
    }
    return 0;
}

/* Takes slot i (index + 1, in use) out of its chain and frees its token;
 * the slot goes on the free list. Locked. */
static void drop(shard *sh, uint32_t i)
{
    slot *e = &sh->slots[i - 1];
    uint32_t *p = &sh->buckets[(e->h >> 6) & sh->mask];
    while (*p != i) {
        sd_assert(*p != 0);
        p = &sh->slots[*p - 1].next;
    }
    *p = e->next;
    sh->bytes -= blob_cost(e);
    sh->entries--;
    free(e->blob);
    *e = (slot){.next = sh->free_head};
    sh->free_head = i;
}

static bool usable(const sd_mintcache *c, const slot *e, int64_t now)
{
    return e->gen == sd_mintcache_generation(c) && now < e->reuse_until;
}

bool sd_mintcache_get(sd_mintcache *c, const char *sid, int64_t version, int64_t now, int64_t bound,
                      sd_arena *a, const char **jwt, int64_t *exp_s)
{
    size_t n = strlen(sid);
    uint64_t h = sd_id_hash(sid);
    shard *sh = shard_of(c, h);
    bool hit = false;
    pthread_mutex_lock(&sh->mu);
    uint32_t i = find(sh, h, sid, n);
    slot *e = i ? &sh->slots[i - 1] : NULL;
    if (!e)
        sh->misses++;
    else if (e->version != version || !usable(c, e, now) || e->exp_s * 1000 > bound)
        sh->stale++;
    else if ((*jwt = sd_arena_strndup(a, e->blob + e->sid_len + 1, e->tok_len))) {
        *exp_s = e->exp_s;
        e->ref = true;
        sh->hits++;
        hit = true;
    }
    pthread_mutex_unlock(&sh->mu);
    return hit;
}

/* The slot under the hand (index + 1), the hand moved on over the slots
 * ever used. Locked; sh->fresh > 0. */
static uint32_t hand_next(shard *sh)
{
    if (sh->hand >= sh->fresh)
        sh->hand = 0;
    return ++sh->hand;
}

/* Frees slots under the hand until one is free and the tokens' bytes
 * leave room for need more, sparing once an entry handed out since the
 * hand passed (CLOCK). Returns the free slot (index + 1). Locked; the
 * shard holds at least one entry whenever it has no room. */
static uint32_t make_room(shard *sh, size_t need)
{
    while ((!sh->free_head && sh->fresh == sh->cap) || sh->bytes + need > sh->budget) {
        sd_assert(sh->entries > 0);
        uint32_t i = hand_next(sh);
        slot *e = &sh->slots[i - 1];
        if (!e->blob)
            continue;
        if (e->ref) {
            e->ref = false;
            continue;
        }
        drop(sh, i);
        sh->evicted++;
    }
    uint32_t i = sh->free_head;
    if (i)
        sh->free_head = sh->slots[i - 1].next;
    else
        i = ++sh->fresh;
    return i;
}

/* The hand looks at a few slots and frees the entries that can no longer
 * be handed out, so that memory follows the sessions in use. Locked. */
static void sweep(sd_mintcache *c, shard *sh, int64_t now)
{
    for (int k = 0; k < SWEEP_STEPS && sh->fresh; k++) {
        uint32_t i = hand_next(sh);
        if (sh->slots[i - 1].blob && !usable(c, &sh->slots[i - 1], now))
            drop(sh, i);
    }
}

void sd_mintcache_put(sd_mintcache *c, const char *sid, int64_t version, uint64_t gen, int64_t now,
                      int64_t exp_s, const char *jwt, size_t len)
{
    size_t n = strlen(sid);
    uint64_t h = sd_id_hash(sid);
    shard *sh = shard_of(c, h);
    int64_t until = now + (int64_t)(c->reuse * (double)(exp_s * 1000 - now));
    size_t need = n + 1 + len + 1 + MALLOC_EXTRA;
    char *blob = until > now && len < UINT32_MAX && need <= sh->budget / 4 ? malloc(need) : NULL;
    if (blob) {
        memcpy(blob, sid, n + 1);
        memcpy(blob + n + 1, jwt, len);
        blob[n + 1 + len] = '\0';
    }
    pthread_mutex_lock(&sh->mu);
    if (!blob) {
        sh->skipped++;
        pthread_mutex_unlock(&sh->mu);
        return;
    }
    uint32_t old = find(sh, h, sid, n);
    if (old)
        drop(sh, old);
    sweep(c, sh, now);
    uint32_t i = make_room(sh, need);
    slot *e = &sh->slots[i - 1];
    uint32_t *head = &sh->buckets[(h >> 6) & sh->mask];
    *e = (slot){.h = h,
                .version = version,
                .gen = gen,
                .reuse_until = until,
                .exp_s = exp_s,
                .blob = blob,
                .next = *head,
                .sid_len = (uint32_t)n,
                .tok_len = (uint32_t)len};
    *head = i;
    sh->bytes += need;
    sh->entries++;
    sh->stored++;
    pthread_mutex_unlock(&sh->mu);
}

void sd_mintcache_stats_get(sd_mintcache *c, sd_mintcache_stats *out)
{
    *out = (sd_mintcache_stats){.bytes = c->table_bytes, .max_bytes = c->max_bytes};
    for (int i = 0; i < SHARDS; i++) {
        shard *sh = &c->shards[i];
        pthread_mutex_lock(&sh->mu);
        out->hits += sh->hits;
        out->misses += sh->misses;
        out->stale += sh->stale;
        out->stored += sh->stored;
        out->evicted += sh->evicted;
        out->skipped += sh->skipped;
        out->entries += sh->entries;
        out->bytes += sh->bytes;
        pthread_mutex_unlock(&sh->mu);
    }
}
