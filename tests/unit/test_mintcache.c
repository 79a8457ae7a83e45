/* Unit tests of jwt/mintcache.c: a token is handed out again only for the
 * same session, version and key generation, before its reuse point and
 * with an exp within the session's bound; memory stays under the bound
 * whatever is put, and the cache answers as a model of it does over
 * random puts and gets (a printed seed, SEED= to replay). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "jwt/mintcache.h"
#include "util/err.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0    1800000000000LL /* ms */
#define LIFE  300             /* s */
#define FAR   (T0 + 86400000) /* a session bound that never cuts */
#define MB(n) ((size_t)(n) << 20)

typedef struct got {
    bool hit;
    const char *jwt;
    int64_t exp_s;
} got;

static got get(sd_mintcache *c, sd_arena *a, const char *sid, int64_t version, int64_t now,
               int64_t bound)
{
    got g = {0};
    g.hit = sd_mintcache_get(c, sid, version, now, bound, a, &g.jwt, &g.exp_s);
    return g;
}

static void put(sd_mintcache *c, const char *sid, int64_t version, int64_t now, const char *jwt)
{
    sd_mintcache_put(c, sid, version, sd_mintcache_generation(c), now, now / 1000 + LIFE, jwt,
                     strlen(jwt));
}

static void refuses_settings_it_cannot_honour(void **state)
{
    (void)state;
    sd_mintcache *c;
    assert_int_equal(sd_mintcache_new(MB(1), 0.0, &c), SD_EINVALID);
    assert_int_equal(sd_mintcache_new(MB(1), 0.6, &c), SD_EINVALID);
    assert_int_equal(sd_mintcache_new(1024, 0.2, &c), SD_EINVALID);
    assert_null(c);
    sd_mintcache_free(NULL);
}

static void hands_out_the_same_token_until_its_reuse_point(void **state)
{
    (void)state;
    sd_mintcache *c;
    assert_int_equal(sd_mintcache_new(MB(1), 0.2, &c), 0);
    sd_arena a;
    sd_arena_init(&a, NULL, 0);
    assert_false(get(c, &a, "sid-1", 1, T0, FAR).hit);
    put(c, "sid-1", 1, T0, "token-A");
    got g = get(c, &a, "sid-1", 1, T0 + 1000, FAR);
    assert_true(g.hit);
    assert_string_equal(g.jwt, "token-A");
    assert_int_equal(g.exp_s, T0 / 1000 + LIFE);
    /* 20 % of 300 s: handed out up to 60 s after it was minted, not after */
    assert_true(get(c, &a, "sid-1", 1, T0 + 59999, FAR).hit);
    assert_false(get(c, &a, "sid-1", 1, T0 + 60000, FAR).hit);
    assert_false(get(c, &a, "sid-2", 1, T0 + 1000, FAR).hit); /* another session */
    sd_mintcache_stats st;
    sd_mintcache_stats_get(c, &st);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.stale, 1);
    assert_int_equal(st.entries, 1);
    assert_true(st.bytes <= st.max_bytes);
    sd_arena_reset(&a);
    sd_mintcache_free(c);
}

static void another_version_or_generation_never_matches(void **state)
{
    (void)state;
    sd_mintcache *c;
    assert_int_equal(sd_mintcache_new(MB(1), 0.2, &c), 0);
    sd_arena a;
    sd_arena_init(&a, NULL, 0);
    put(c, "sid-1", 3, T0, "v3");
    assert_false(get(c, &a, "sid-1", 4, T0, FAR).hit); /* updated since */
    assert_false(get(c, &a, "sid-1", 2, T0, FAR).hit);
    put(c, "sid-1", 4, T0, "v4"); /* replaces the session's entry */
    assert_string_equal(get(c, &a, "sid-1", 4, T0, FAR).jwt, "v4");
    assert_false(get(c, &a, "sid-1", 3, T0, FAR).hit);
    /* a token signed before a key reload, put after it, is never handed out */
    uint64_t before = sd_mintcache_generation(c);
    sd_mintcache_clear(c);
    assert_false(get(c, &a, "sid-1", 4, T0, FAR).hit);
    sd_mintcache_put(c, "sid-1", 4, before, T0, T0 / 1000 + LIFE, "old-key", 7);
    assert_false(get(c, &a, "sid-1", 4, T0, FAR).hit);
    put(c, "sid-1", 4, T0, "new-key");
    assert_string_equal(get(c, &a, "sid-1", 4, T0, FAR).jwt, "new-key");
    sd_arena_reset(&a);
    sd_mintcache_free(c);
}

static void never_an_exp_past_the_sessions_bound(void **state)
{
    (void)state;
    sd_mintcache *c;
    assert_int_equal(sd_mintcache_new(MB(1), 0.5, &c), 0);
    sd_arena a;
    sd_arena_init(&a, NULL, 0);
    put(c, "sid-1", 1, T0, "t");
    int64_t exp_ms = (T0 / 1000 + LIFE) * 1000;
    assert_true(get(c, &a, "sid-1", 1, T0 + 1000, exp_ms).hit);
    assert_false(get(c, &a, "sid-1", 1, T0 + 1000, exp_ms - 1).hit); /* the session ends first */
    /* a token too short-lived to be worth keeping is not kept */
    sd_mintcache_put(c, "sid-2", 1, sd_mintcache_generation(c), T0 + 999, T0 / 1000 + 1, "x", 1);
    assert_false(get(c, &a, "sid-2", 1, T0 + 999, FAR).hit);
    sd_arena_reset(&a);
    sd_mintcache_free(c);
}

static void memory_stays_under_the_bound(void **state)
{
    (void)state;
    sd_mintcache *c;
    size_t bound = 256 * 1024;
    assert_int_equal(sd_mintcache_new(bound, 0.2, &c), 0);
    sd_arena a;
    sd_arena_init(&a, NULL, 0);
    char tok[400], sid[32];
    memset(tok, 'x', sizeof tok - 1);
    tok[sizeof tok - 1] = '\0';
    for (int i = 0; i < 20000; i++) {
        snprintf(sid, sizeof sid, "sess-%06d", i);
        put(c, sid, 1, T0, tok);
        sd_mintcache_stats st;
        sd_mintcache_stats_get(c, &st);
        assert_true(st.bytes <= bound);
    }
    sd_mintcache_stats st;
    sd_mintcache_stats_get(c, &st);
    assert_true(st.evicted > 0 && st.entries > 0 && st.entries < 20000);
    assert_int_equal(st.stored, 20000);
    printf("# 256 KiB: %llu tokens of 400 bytes kept, %llu evicted\n",
           (unsigned long long)st.entries, (unsigned long long)st.evicted);
    /* a token larger than a quarter of a shard is not kept at all */
    char *big = malloc(8192);
    memset(big, 'y', 8191);
    big[8191] = '\0';
    put(c, "big", 1, T0, big);
    assert_false(get(c, &a, "big", 1, T0, FAR).hit);
    sd_mintcache_stats_get(c, &st);
    assert_int_equal(st.skipped, 1);
    free(big);
    sd_arena_reset(&a);
    sd_mintcache_free(c);
}

static void entries_past_their_reuse_point_are_freed_as_the_hand_passes(void **state)
{
    (void)state;
    sd_mintcache *c;
    assert_int_equal(sd_mintcache_new(MB(2), 0.2, &c), 0); /* 64 slots a shard: no eviction */
    char sid[32];
    for (int i = 0; i < 500; i++) {
        snprintf(sid, sizeof sid, "early-%d", i);
        put(c, sid, 1, T0, "early");
    }
    sd_mintcache_stats st;
    sd_mintcache_stats_get(c, &st);
    assert_int_equal(st.entries, 500);
    for (int round = 0; round < 10; round++) /* an hour later: the early ones are dead */
        for (int i = 0; i < 500; i++) {
            snprintf(sid, sizeof sid, "late-%d", i);
            put(c, sid, 1, T0 + 3600000, "late");
        }
    sd_mintcache_stats_get(c, &st);
    assert_int_equal(st.entries, 500);
    assert_int_equal(st.evicted, 0);
    sd_mintcache_free(c);
}

/* The model: one entry per session, the last put; a get hits when the
 * entry's version, generation, reuse point and exp allow it and the cache
 * kept it (a miss of a kept-by-the-model entry is an eviction, allowed;
 * a hit the model refuses is the failure this test looks for). */
typedef struct model {
    bool set;
    int64_t version, until, exp_s;
    uint64_t gen;
    char jwt[32];
} model;

static void answers_as_the_model_does(void **state)
{
    (void)state;
    unsigned seed = getenv("SEED") ? (unsigned)strtoul(getenv("SEED"), NULL, 10) : 4242u;
    printf("# mintcache model: SEED=%u\n", seed);
    srand(seed);
    sd_mintcache *c;
    assert_int_equal(sd_mintcache_new(128 * 1024, 0.2, &c), 0);
    sd_arena a;
    sd_arena_init(&a, NULL, 0);
    enum { N = 300 };
    static model m[N];
    memset(m, 0, sizeof m);
    int hits = 0, evicted_misses = 0;
    int64_t now = T0;
    for (int step = 0; step < 200000; step++) {
        now += rand() % 400;
        int k = rand() % N;
        char sid[16];
        snprintf(sid, sizeof sid, "s%d", k);
        int op = rand() % 100;
        if (op < 2) {
            sd_mintcache_clear(c);
            continue;
        }
        int64_t version = 1 + rand() % 3;
        if (op < 40) {
            model *e = &m[k];
            int64_t life = 10 + rand() % LIFE;
            e->set = true;
            e->version = version;
            e->gen =
                sd_mintcache_generation(c) - (rand() % 10 == 0); /* some signed before a reload */
            e->exp_s = now / 1000 + life;
            e->until = now + (int64_t)(0.2 * (double)(e->exp_s * 1000 - now));
            snprintf(e->jwt, sizeof e->jwt, "tok-%d-%d", k, step);
            sd_mintcache_put(c, sid, version, e->gen, now, e->exp_s, e->jwt, strlen(e->jwt));
            continue;
        }
        int64_t bound = now + (rand() % 2 ? 86400000 : rand() % (LIFE * 1000));
        got g = get(c, &a, sid, version, now, bound);
        const model *e = &m[k];
        bool allowed = e->set && e->version == version && e->gen == sd_mintcache_generation(c) &&
                       now < e->until && e->exp_s * 1000 <= bound;
        if (g.hit) {
            assert_true(allowed);
            assert_string_equal(g.jwt, e->jwt);
            assert_int_equal(g.exp_s, e->exp_s);
            hits++;
        } else if (allowed) {
            evicted_misses++;
        }
        if (step % 1000 == 0)
            sd_arena_reset(&a);
    }
    printf("# mintcache model: %d hits, %d misses of evicted entries\n", hits, evicted_misses);
    assert_true(hits > 1000);
    sd_arena_reset(&a);
    sd_mintcache_free(c);
}

/* Threads putting and getting the same sessions: every hit is the token
 * of the session and version asked for (its text names them). */
typedef struct worker {
    sd_mintcache *c;
    unsigned seed;
    int hits;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    sd_arena a;
    sd_arena_init(&a, NULL, 0);
    for (int i = 0; i < 50000; i++) {
        char sid[16], tok[48];
        int k = rand_r(&w->seed) % 200;
        int64_t version = 1 + rand_r(&w->seed) % 2;
        snprintf(sid, sizeof sid, "s%d", k);
        if (rand_r(&w->seed) % 3 == 0) {
            snprintf(tok, sizeof tok, "%s/v%lld", sid, (long long)version);
            put(w->c, sid, version, T0, tok);
            continue;
        }
        got g = get(w->c, &a, sid, version, T0, FAR);
        if (g.hit) {
            snprintf(tok, sizeof tok, "%s/v%lld", sid, (long long)version);
            if (strcmp(g.jwt, tok) != 0)
                return (void *)1;
            w->hits++;
        }
        if (i % 500 == 0)
            sd_arena_reset(&a);
    }
    sd_arena_reset(&a);
    return NULL;
}

static void threads_get_only_their_sessions_token(void **state)
{
    (void)state;
    sd_mintcache *c;
    assert_int_equal(sd_mintcache_new(128 * 1024, 0.2, &c), 0); /* small: evictions too */
    worker w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){.c = c, .seed = 7u + (unsigned)i};
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    int hits = 0;
    for (int i = 0; i < 4; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        assert_null(ret);
        hits += w[i].hits;
    }
    printf("# 4 threads: %d hits\n", hits);
    assert_true(hits > 1000);
    sd_mintcache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(refuses_settings_it_cannot_honour),
        cmocka_unit_test(hands_out_the_same_token_until_its_reuse_point),
        cmocka_unit_test(another_version_or_generation_never_matches),
        cmocka_unit_test(never_an_exp_past_the_sessions_bound),
        cmocka_unit_test(memory_stays_under_the_bound),
        cmocka_unit_test(entries_past_their_reuse_point_are_freed_as_the_hand_passes),
        cmocka_unit_test(answers_as_the_model_does),
        cmocka_unit_test(threads_get_only_their_sessions_token),
    };
    return cmocka_run_group_tests_name("mintcache", tests, NULL, NULL);
}
