/* Unit tests of util/limiter.c: token buckets in bounded memory; the wait
 * that takes no lock answers as a model of the buckets does, over random
 * charges and waits (a printed seed, SEED= to replay). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "util/limiter.h"

#include <stdio.h>
#include <stdlib.h>

static void blocks_after_the_burst_and_refills(void **state)
{
    (void)state;
    sd_limiter *l = sd_limiter_new(64, 2.0, 3.0); /* 2 per second, burst 3 */
    assert_non_null(l);
    int64_t t = 1000000;
    assert_int_equal(sd_limiter_wait(l, "10.0.0.1", t), 0);
    assert_false(sd_limiter_charge(l, "10.0.0.1", t));
    assert_false(sd_limiter_charge(l, "10.0.0.1", t));
    assert_int_equal(sd_limiter_wait(l, "10.0.0.1", t), 0);
    assert_true(sd_limiter_charge(l, "10.0.0.1", t)); /* the third empties it */
    int64_t w = sd_limiter_wait(l, "10.0.0.1", t);
    assert_true(w > 400 && w <= 501);                       /* one token takes 500 ms */
    assert_false(sd_limiter_charge(l, "10.0.0.1", t));      /* already empty: no new transition */
    assert_int_equal(sd_limiter_wait(l, "10.0.0.2", t), 0); /* other keys are untouched */
    assert_int_equal(sd_limiter_wait(l, "10.0.0.1", t + 501), 0);
    sd_limiter_free(l);
}

static void never_more_than_the_burst(void **state)
{
    (void)state;
    sd_limiter *l = sd_limiter_new(8, 1.0, 2.0);
    int64_t t = 5000;
    sd_limiter_charge(l, "a", t);
    /* a day later the bucket holds the burst, not 86400 tokens */
    int64_t later = t + 86400 * 1000LL;
    sd_limiter_charge(l, "a", later);
    assert_true(sd_limiter_charge(l, "a", later));
    assert_true(sd_limiter_wait(l, "a", later) > 0);
    sd_limiter_free(l);
}

static void spraying_addresses_cannot_free_a_blocked_one(void **state)
{
    (void)state;
    sd_limiter *l = sd_limiter_new(64, 0.001, 1.0);
    int64_t t = 1;
    assert_true(sd_limiter_charge(l, "attacker", t));
    assert_true(sd_limiter_wait(l, "attacker", t) > 0);
    char key[32];
    for (int i = 0; i < 100000; i++) { /* each new key starts full: the victim is a full one */
        snprintf(key, sizeof key, "spray-%d", i);
        sd_limiter_wait(l, key, t);
        sd_limiter_charge(l, key, t); /* burst 1: each of these ends up empty too */
    }
    /* Memory stayed at 64 buckets; the attacker may have been displaced only
     * by other blocked keys. Whatever happened, nothing crashed and a fresh
     * key is allowed. */
    assert_int_equal(sd_limiter_wait(l, "fresh", t), 0);
    sd_limiter_free(l);
}

static void a_blocked_key_survives_idle_newcomers(void **state)
{
    (void)state;
    sd_limiter *l = sd_limiter_new(8, 0.001, 5.0); /* one set of 8 ways */
    int64_t t = 1;
    for (int i = 0; i < 5; i++)
        sd_limiter_charge(l, "guesser", t);
    assert_true(sd_limiter_wait(l, "guesser", t) > 0);
    char key[32];
    for (int i = 0; i < 1000; i++) { /* newcomers that fail once each */
        snprintf(key, sizeof key, "n-%d", i);
        sd_limiter_charge(l, key, t);
    }
    assert_true(sd_limiter_wait(l, "guesser", t) > 0);
    sd_limiter_free(l);
}

/* The buckets' arithmetic, as limiter.h describes it. */
typedef struct model {
    double tokens;
    int64_t at;
} model;

static void model_refill(model *m, int64_t now, double rate, double burst)
{
    if (now > m->at) {
        m->tokens += (double)(now - m->at) * rate / 1000.0;
        if (m->tokens > burst)
            m->tokens = burst;
        m->at = now;
    }
}

static void waits_answer_as_the_buckets_say(void **state)
{
    (void)state;
    unsigned seed = getenv("SEED") ? (unsigned)strtoul(getenv("SEED"), NULL, 10) : 14u;
    printf("# limiter model: SEED=%u\n", seed);
    srand(seed);
    const double rate = 2.0, burst = 3.0;
    sd_limiter *l = sd_limiter_new(8, rate, burst); /* one set of 8 ways: 5 keys never evicted */
    const char *keys[] = {"10.0.0.1", "10.0.0.2", "10.0.0.3", "::1", "192.168.1.20"};
    model m[5];
    bool seen[5] = {false};
    int64_t t = 1000000;
    int blocked = 0, open = 0;
    for (int i = 0; i < 20000; i++) {
        t += rand() % 80;
        int k = rand() % 5;
        if (!seen[k]) {
            m[k] = (model){.tokens = burst, .at = t};
        }
        if (rand() % 2) {
            if (seen[k])
                model_refill(&m[k], t, rate, burst);
            bool was_open = m[k].tokens >= 1.0;
            m[k].tokens = m[k].tokens - 1.0 < 0 ? 0 : m[k].tokens - 1.0;
            seen[k] = true;
            assert_int_equal(sd_limiter_charge(l, keys[k], t), was_open && m[k].tokens < 1.0);
        } else {
            bool want = false;
            if (seen[k]) {
                model_refill(&m[k], t, rate, burst);
                want = m[k].tokens < 1.0;
            }
            int64_t w = sd_limiter_wait(l, keys[k], t);
            if (want != (w > 0))
                fail_msg("step %d key %s at %lld: wait %lld, the model says %s", i, keys[k],
                         (long long)t, (long long)w, want ? "blocked" : "open");
            blocked += want;
            open += !want;
        }
    }
    printf("# limiter model: %d waits blocked, %d open\n", blocked, open);
    assert_true(blocked > 100 && open > 100); /* both answers were exercised */
    sd_limiter_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(blocks_after_the_burst_and_refills),
        cmocka_unit_test(never_more_than_the_burst),
        cmocka_unit_test(spraying_addresses_cannot_free_a_blocked_one),
        cmocka_unit_test(a_blocked_key_survives_idle_newcomers),
        cmocka_unit_test(waits_answer_as_the_buckets_say),
    };
    return cmocka_run_group_tests_name("limiter", tests, NULL, NULL);
}
