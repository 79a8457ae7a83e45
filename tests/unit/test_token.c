/* Unit tests of session/token.c: minting, shapes, hashing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "session/token.h"

#include <stdlib.h>
#include <string.h>

static int cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void tokens_are_long_unique_and_urlsafe(void **state)
{
    (void)state;
    enum { N = 20000 };
    char(*t)[SD_TOKEN_LEN + 1] = malloc(N * sizeof *t);
    assert_non_null(t);
    for (int i = 0; i < N; i++) {
        assert_int_equal(sd_token_mint(t[i]), 0);
        assert_int_equal(strlen(t[i]), SD_TOKEN_LEN);
        assert_true(sd_token_wellformed(t[i], SD_TOKEN_LEN));
    }
    qsort(t, N, sizeof *t, cmp);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(t[i - 1], t[i]);
    free(t);
}

static void ids_are_distinct_from_tokens(void **state)
{
    (void)state;
    char id[SD_ID_LEN + 1], tok[SD_TOKEN_LEN + 1];
    assert_int_equal(sd_id_mint(1795833215123LL, id), 0);
    assert_int_equal(sd_token_mint(tok), 0);
    assert_int_equal(strlen(id), SD_ID_LEN);
    assert_true(sd_id_wellformed(id, strlen(id)));
    assert_false(sd_token_wellformed(id, strlen(id)));
    assert_false(sd_id_wellformed(tok, strlen(tok)));
}

/* Ids sort by their creation time (strcmp, as the stores' text indexes
 * do), also across the characters where base64url's own order is not ASCII
 * order, and keep 90 random bits after the time; none starts with '-'
 * (it would read as an option on a command line) before 2109. */
static void ids_sort_by_time_and_stay_random(void **state)
{
    (void)state;
    static const int64_t times[] = {0,
                                    1,
                                    63,
                                    64,
                                    1795833215123LL,
                                    1795833215124LL,
                                    1795833216000LL,
                                    2000000000000LL,
                                    (1LL << 42) - 1};
    char prev[SD_ID_LEN + 1] = "";
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        char id[SD_ID_LEN + 1];
        assert_int_equal(sd_id_mint(times[i], id), 0);
        assert_true(sd_id_wellformed(id, strlen(id)));
        if (i > 0)
            assert_true(strncmp(prev, id, SD_ID_TIME_CHARS) < 0);
        if (times[i] >= 1000000000000LL) /* 2001 on */
            assert_true(id[0] != '-');
        memcpy(prev, id, sizeof prev);
    }
    /* Same millisecond: same prefix, different random part. */
    enum { N = 2000 };
    static char ids[N][SD_ID_LEN + 1];
    for (int i = 0; i < N; i++) {
        assert_int_equal(sd_id_mint(1795833215123LL, ids[i]), 0);
        assert_memory_equal(ids[i], ids[0], SD_ID_TIME_CHARS);
    }
    int counts[256] = {0};
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < i; j++)
            assert_string_not_equal(ids[i], ids[j]);
        for (int k = SD_ID_TIME_CHARS; k < SD_ID_LEN; k++)
            counts[(unsigned char)ids[i][k]]++;
    }
    /* All 64 characters occur in the random part (30,000 draws). */
    int used = 0;
    for (int c = 0; c < 256; c++)
        used += counts[c] > 0;
    assert_int_equal(used, 64);
}

static void shapes_are_strict(void **state)
{
    (void)state;
    char tok[SD_TOKEN_LEN + 1];
    sd_token_mint(tok);
    tok[5] = '+';
    assert_false(sd_token_wellformed(tok, SD_TOKEN_LEN));
    tok[5] = '=';
    assert_false(sd_token_wellformed(tok, SD_TOKEN_LEN));
    assert_false(sd_token_wellformed("", 0));
    assert_false(sd_token_wellformed(tok, SD_TOKEN_LEN - 1));
}

static void hash_is_sha256_and_compare_works(void **state)
{
    (void)state;
    unsigned char h1[SD_HASH_LEN], h2[SD_HASH_LEN];
    sd_token_hash("abc", 3, h1);
    static const unsigned char want[] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                         0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23};
    assert_memory_equal(h1, want, sizeof want);
    sd_token_hash("abd", 3, h2);
    assert_false(sd_hash_equal(h1, h2));
    sd_token_hash("abc", 3, h2);
    assert_true(sd_hash_equal(h1, h2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tokens_are_long_unique_and_urlsafe),
        cmocka_unit_test(ids_are_distinct_from_tokens),
        cmocka_unit_test(ids_sort_by_time_and_stay_random),
        cmocka_unit_test(shapes_are_strict),
        cmocka_unit_test(hash_is_sha256_and_compare_works),
    };
    return cmocka_run_group_tests_name("token", tests, NULL, NULL);
}
