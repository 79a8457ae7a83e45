/*
 * limiter.c - set-associative token buckets (see limiter.h).
 *
 * A charge (a failure) takes its set's lock. A wait (every validation asks
 * one) takes no lock unless a key of its set may be blocked: each set keeps
 * `until`, a time from which none of its keys is blocked (raised under the
 * lock by a charge that empties a bucket, never lowered), read with one
 * atomic load. An address that is not throttled, and shares no set with
 * one that is, costs a hash and that load; the answer is the one the locked
 * path would give, since `until` is an upper bound of every key's blocked
 * time.
 */
#include "util/limiter.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define WAYS    8
#define KEY_MAX 48 /* an IPv6 address in text is at most 45 bytes */

typedef struct bucket {
    char key[KEY_MAX]; /* "" when free */
    double tokens;
    int64_t at_ms; /* when tokens was last brought up to date */
} bucket;

typedef struct set {
    pthread_mutex_t mu;
    bucket way[WAYS];
} set;

struct sd_limiter {
    double rate, burst;
    size_t nsets;
    set *sets;
    _Atomic int64_t *until; /* per set: no key blocked from then on (ms) */
};

sd_limiter *sd_limiter_new(int slots, double rate, double burst)
{
    sd_limiter *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->rate = rate;
    l->burst = burst < 1 ? 1 : burst;
    l->nsets = (size_t)(slots > WAYS ? (slots + WAYS - 1) / WAYS : 1);
    l->sets = calloc(l->nsets, sizeof *l->sets);
    l->until = calloc(l->nsets, sizeof *l->until);
    if (!l->sets || !l->until) {
        free(l->sets);
        free(l->until);
        free(l);
        return NULL;
    }
    for (size_t i = 0; i < l->nsets; i++)
        pthread_mutex_init(&l->sets[i].mu, NULL);
    return l;
}

void sd_limiter_free(sd_limiter *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->nsets; i++)
        pthread_mutex_destroy(&l->sets[i].mu);
    free(l->sets);
    free(l->until);
    free(l);
}

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void refill(const sd_limiter *l, bucket *b, int64_t now)
{
    if (now > b->at_ms) {
        b->tokens += (double)(now - b->at_ms) * l->rate / 1000.0;
        if (b->tokens > l->burst)
            b->tokens = l->burst;
        b->at_ms = now;
    }
}

/* The key's bucket in its (locked) set, or NULL when it has none and
 * create is false. A new bucket starts full. */
static bucket *find(const sd_limiter *l, set *s, const char *key, int64_t now, bool create)
{
    bucket *victim = NULL;
    for (int i = 0; i < WAYS; i++) {
        bucket *b = &s->way[i];
        if (b->key[0] && strcmp(b->key, key) == 0) {
            refill(l, b, now);
            return b;
        }
    }
    if (!create)
        return NULL;
    for (int i = 0; i < WAYS; i++) {
        bucket *b = &s->way[i];
        if (!b->key[0]) {
            victim = b;
            break;
        }
        refill(l, b, now);
        if (!victim || b->tokens > victim->tokens)
            victim = b;
    }
    size_t n = strlen(key);
    if (n >= KEY_MAX)
        n = KEY_MAX - 1;
    memcpy(victim->key, key, n);
    victim->key[n] = '\0';
    victim->tokens = l->burst;
    victim->at_ms = now;
    return victim;
}

int64_t sd_limiter_wait(sd_limiter *l, const char *key, int64_t now_ms)
{
    size_t i = hash(key) % l->nsets;
    if (now_ms >= atomic_load_explicit(&l->until[i], memory_order_acquire))
        return 0; /* no key of this set is blocked now: no lock */
    set *s = &l->sets[i];
    pthread_mutex_lock(&s->mu);
    bucket *b = find(l, s, key, now_ms, false);
    int64_t wait = 0;
    if (b && b->tokens < 1.0)
        wait = l->rate > 0 ? (int64_t)((1.0 - b->tokens) * 1000.0 / l->rate) + 1 : INT64_MAX;
    pthread_mutex_unlock(&s->mu);
    return wait;
}

bool sd_limiter_charge(sd_limiter *l, const char *key, int64_t now_ms)
{
    size_t i = hash(key) % l->nsets;
    set *s = &l->sets[i];
    pthread_mutex_lock(&s->mu);
    bucket *b = find(l, s, key, now_ms, true);
    bool was_open = b->tokens >= 1.0;
    b->tokens -= 1.0;
    if (b->tokens < 0)
        b->tokens = 0;
    bool emptied = was_open && b->tokens < 1.0;
    if (b->tokens < 1.0) {
        /* Blocked until its tokens refill to one: (1 - tokens) / rate
         * seconds after at_ms, rounded up, with a millisecond to spare for
         * the rounding of the locked path's arithmetic. */
        int64_t until = INT64_MAX;
        double ms = l->rate > 0 ? (1.0 - b->tokens) * 1000.0 / l->rate : INFINITY;
        if (ms < (double)(INT64_MAX / 4) && b->at_ms < INT64_MAX / 4)
            until = b->at_ms + (int64_t)ms + 2;
        if (until > atomic_load_explicit(&l->until[i], memory_order_relaxed))
            atomic_store_explicit(&l->until[i], until, memory_order_release);
    }
    pthread_mutex_unlock(&s->mu);
    return emptied;
}
