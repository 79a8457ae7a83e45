/* Unit tests of http/router.c: matching, 405 sets, percent-decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "http/router.h"

#include <stdlib.h>
#include <string.h>

static void h(sd_req *r, void *a)
{
    (void)r;
    (void)a;
}

static const sd_route R[] = {
    {"POST", "/sessions", h, SD_ROUTE_BODY, NULL, 0},
    {"POST", "/sessions/validate", h, SD_ROUTE_BODY_OPTIONAL, NULL, 0},
    {"GET", "/sessions/{id}", h, 0, NULL, 0},
    {"DELETE", "/sessions/{id}", h, 0, NULL, 0},
    {"GET", "/users/{u}/sessions", h, 0, NULL, 0},
};
#define N (int)(sizeof R / sizeof R[0])

static void literal_beats_capture(void **state)
{
    (void)state;
    sd_match m;
    assert_int_equal(sd_route_match(R, N, "POST", "/sessions/validate", &m), SD_MATCH_OK);
    assert_int_equal(m.route, 1);
    sd_match_free(&m);
    assert_int_equal(sd_route_match(R, N, "GET", "/sessions/validate", &m), SD_MATCH_METHOD);
    assert_string_equal(m.allow, "POST");
    sd_match_free(&m);
}

static void captures_are_decoded(void **state)
{
    (void)state;
    sd_match m;
    assert_int_equal(sd_route_match(R, N, "GET", "/users/a%2Fb%20c%C3%A9/sessions", &m),
                     SD_MATCH_OK);
    assert_int_equal(m.route, 4);
    assert_string_equal(m.captures[0], "a/b c\xc3\xa9");
    sd_match_free(&m);
}

static void method_sets_and_head(void **state)
{
    (void)state;
    sd_match m;
    assert_int_equal(sd_route_match(R, N, "PUT", "/sessions/abc", &m), SD_MATCH_METHOD);
    assert_string_equal(m.allow, "GET, HEAD, DELETE");
    sd_match_free(&m);
    assert_int_equal(sd_route_match(R, N, "HEAD", "/sessions/abc", &m), SD_MATCH_OK);
    assert_int_equal(m.route, 2);
    sd_match_free(&m);
}

static void misses_and_bad_paths(void **state)
{
    (void)state;
    sd_match m;
    const char *missing[] = {"/",
                             "",
                             "/sessions/",
                             "/sessions/a/b",
                             "/users//sessions",
                             "/sessionsx",
                             "/users/a/sessions/"};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        if (sd_route_match(R, N, "GET", missing[i], &m) != SD_MATCH_NOT_FOUND)
            fail_msg("matched %s", missing[i]);
        sd_match_free(&m);
    }
    const char *bad[] = {"/users/%zz/sessions", "/users/a%00/sessions", "/users/%4/sessions",
                         "/users/%/sessions"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (sd_route_match(R, N, "GET", bad[i], &m) != SD_MATCH_BAD_PATH)
            fail_msg("accepted %s", bad[i]);
        sd_match_free(&m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(literal_beats_capture),
        cmocka_unit_test(captures_are_decoded),
        cmocka_unit_test(method_sets_and_head),
        cmocka_unit_test(misses_and_bad_paths),
    };
    return cmocka_run_group_tests_name("router", tests, NULL, NULL);
}
