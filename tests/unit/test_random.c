/* Unit tests of util/random.c: kernel random bytes, base64url and hex. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "util/random.h"

#include <string.h>

static void random_fills_every_byte(void **state)
{
    (void)state;
    /* 64 bytes all zero after a fill: a 2^-512 chance, i.e. a bug. */
    unsigned char a[64] = {0}, b[64] = {0}, zero[64] = {0};
    assert_int_equal(sd_random(a, sizeof a), 0);
    assert_int_equal(sd_random(b, sizeof b), 0);
    assert_memory_not_equal(a, zero, sizeof a);
    assert_memory_not_equal(a, b, sizeof a);
    assert_int_equal(sd_random(a, 0), 0);
}

static void b64url_matches_rfc4648_vectors(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(sd_b64url((const unsigned char *)"", 0, out), 0);
    assert_string_equal(out, "");
    sd_b64url((const unsigned char *)"f", 1, out);
    assert_string_equal(out, "Zg");
    sd_b64url((const unsigned char *)"fo", 2, out);
    assert_string_equal(out, "Zm8");
    sd_b64url((const unsigned char *)"foo", 3, out);
    assert_string_equal(out, "Zm9v");
    assert_int_equal(sd_b64url((const unsigned char *)"foobar", 6, out), 8);
    assert_string_equal(out, "Zm9vYmFy");
    const unsigned char hi[] = {0xfb, 0xff};
    sd_b64url(hi, 2, out);
    assert_string_equal(out, "-_8");
    assert_int_equal(strlen(sd_b64url_alphabet), 64);
}

static void hex_is_lowercase_two_digits_a_byte(void **state)
{
    (void)state;
    char out[16];
    const unsigned char in[] = {0x00, 0x0f, 0xa5, 0xff};
    assert_int_equal(sd_hex(in, sizeof in, out), 8);
    assert_string_equal(out, "000fa5ff");
    assert_int_equal(sd_hex(in, 0, out), 0);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(random_fills_every_byte),
        cmocka_unit_test(b64url_matches_rfc4648_vectors),
        cmocka_unit_test(hex_is_lowercase_two_digits_a_byte),
    };
    return cmocka_run_group_tests_name("random", tests, NULL, NULL);
}
