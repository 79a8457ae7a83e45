/* Unit tests of util/limiter.c: token buckets in bounded memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "util/limiter.h"

#include <stdio.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(blocks_after_the_burst_and_refills),
        cmocka_unit_test(never_more_than_the_burst),
        cmocka_unit_test(spraying_addresses_cannot_free_a_blocked_one),
        cmocka_unit_test(a_blocked_key_survives_idle_newcomers),
    };
    return cmocka_run_group_tests_name("limiter", tests, NULL, NULL);
}
