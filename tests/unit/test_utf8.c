/* Unit tests of util/utf8.c: sd_utf8_valid over whole strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "util/utf8.h"

#include <string.h>

static bool valid(const char *s)
{
    return sd_utf8_valid(s, strlen(s));
}

static void accepts_utf8(void **state)
{
    (void)state;
    assert_true(valid(""));
    assert_true(valid("alice"));
    assert_true(valid("\xc3\xa9t\xc3\xa9"));    /* é */
    assert_true(valid("\xe2\x82\xac 5"));       /* € */
    assert_true(valid("\xf0\x9f\x94\x91 key")); /* U+1F511 */
    assert_true(sd_utf8_valid("ab\xff", 2));    /* only n bytes are read */
}

static void refuses_the_rest(void **state)
{
    (void)state;
    assert_false(valid("bad\xff"));
    assert_false(valid("\x80"));             /* a stray continuation byte */
    assert_false(valid("\xc3"));             /* truncated */
    assert_false(valid("\xc3("));            /* not a continuation */
    assert_false(valid("\xc0\xaf"));         /* overlong */
    assert_false(valid("\xed\xa0\x80"));     /* a surrogate */
    assert_false(valid("\xf4\x90\x80\x80")); /* past U+10FFFF */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_utf8),
        cmocka_unit_test(refuses_the_rest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
