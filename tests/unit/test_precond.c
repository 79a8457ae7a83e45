/* Unit tests of session/precond.c: If-Match and If-None-Match parsed and
 * evaluated against a session's version (RFC 9110 section 13). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "session/precond.h"
#include "util/err.h"

#include <string.h>

static sd_precond parsed(const char *im, const char *inm)
{
    sd_precond p;
    char err[128] = "";
    assert_int_equal(sd_precond_parse(im, inm, &p, err, sizeof err), 0);
    return p;
}

static void none_asked_holds(void **state)
{
    (void)state;
    sd_precond p = parsed(NULL, NULL);
    assert_false(sd_precond_any(&p));
    assert_int_equal(sd_precond_eval(&p, 1), SD_PRECOND_HOLDS);
    p = parsed("", " "); /* empty values count as absent */
    assert_false(sd_precond_any(&p));
    p = parsed(" * ", NULL); /* any current version */
    assert_false(sd_precond_any(&p));
    assert_int_equal(sd_precond_eval(&p, 7), SD_PRECOND_HOLDS);
}

static void if_match_is_strong(void **state)
{
    (void)state;
    sd_precond p = parsed("\"3\", \"4\"", NULL);
    assert_true(sd_precond_any(&p));
    assert_int_equal(sd_precond_eval(&p, 3), SD_PRECOND_HOLDS);
    assert_int_equal(sd_precond_eval(&p, 4), SD_PRECOND_HOLDS);
    assert_int_equal(sd_precond_eval(&p, 5), SD_PRECOND_FAILED);
    p = parsed("W/\"3\"", NULL); /* a weak tag never matches strongly */
    assert_int_equal(sd_precond_eval(&p, 3), SD_PRECOND_FAILED);
    p = parsed("\"03\"", NULL); /* exact, not numeric */
    assert_int_equal(sd_precond_eval(&p, 3), SD_PRECOND_FAILED);
    p = parsed("3", NULL); /* unquoted */
    assert_int_equal(sd_precond_eval(&p, 3), SD_PRECOND_FAILED);
    p = parsed("\"99999999999999999999999\"", NULL); /* past int64: never matches */
    assert_int_equal(sd_precond_eval(&p, 1), SD_PRECOND_FAILED);
    p = parsed(",, \"2\" ,", NULL); /* empty list elements are ignored */
    assert_int_equal(sd_precond_eval(&p, 2), SD_PRECOND_HOLDS);
    /* Only the first 8 are looked at: a version past them fails, never
     * passes wrongly. */
    p = parsed("\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"", NULL);
    assert_int_equal(sd_precond_eval(&p, 8), SD_PRECOND_HOLDS);
    assert_int_equal(sd_precond_eval(&p, 9), SD_PRECOND_FAILED);
}

static void if_none_match_is_weak(void **state)
{
    (void)state;
    sd_precond p = parsed(NULL, "\"3\"");
    assert_true(sd_precond_any(&p));
    assert_int_equal(sd_precond_eval(&p, 3), SD_PRECOND_NONE);
    assert_int_equal(sd_precond_eval(&p, 4), SD_PRECOND_HOLDS);
    p = parsed(NULL, "W/\"3\", \"9\"");
    assert_int_equal(sd_precond_eval(&p, 3), SD_PRECOND_NONE);
    assert_int_equal(sd_precond_eval(&p, 9), SD_PRECOND_NONE);
    p = parsed(NULL, "*");
    assert_true(sd_precond_any(&p));
    assert_int_equal(sd_precond_eval(&p, 1), SD_PRECOND_NONE);
    p = parsed(NULL, "\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\"");
    assert_int_equal(sd_precond_eval(&p, 8), SD_PRECOND_NONE);
}

static void more_than_eight_none_match_tags_is_refused(void **state)
{
    (void)state;
    sd_precond p;
    char err[128] = "";
    assert_int_equal(sd_precond_parse(NULL, "\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"",
                                      &p, err, sizeof err),
                     SD_EINVALID);
    assert_non_null(strstr(err, "If-None-Match"));
}

static void if_match_is_evaluated_first(void **state)
{
    (void)state;
    sd_precond p = parsed("\"2\"", "\"2\"");
    assert_int_equal(sd_precond_eval(&p, 3), SD_PRECOND_FAILED);
    assert_int_equal(sd_precond_eval(&p, 2), SD_PRECOND_NONE);
    p = parsed("\"2\"", "\"5\"");
    assert_int_equal(sd_precond_eval(&p, 2), SD_PRECOND_HOLDS);
}

static void details_name_the_version(void **state)
{
    (void)state;
    char d[256];
    sd_precond_detail(SD_PRECOND_FAILED, 12, d, sizeof d);
    assert_non_null(strstr(d, "\"12\""));
    assert_non_null(strstr(d, "If-Match"));
    sd_precond_detail(SD_PRECOND_NONE, 12, d, sizeof d);
    assert_non_null(strstr(d, "If-None-Match"));
    /* A write's check: none asked holds; a failure is a conflict with the
     * sentence, If-None-Match's too (a write has no 304). */
    d[0] = '\0';
    assert_int_equal(sd_precond_check(NULL, 12, d, sizeof d), 0);
    sd_precond p = parsed("\"12\"", NULL);
    assert_int_equal(sd_precond_check(&p, 12, d, sizeof d), 0);
    assert_string_equal(d, "");
    assert_int_equal(sd_precond_check(&p, 13, d, sizeof d), SD_ECONFLICT);
    assert_non_null(strstr(d, "\"13\""));
    p = parsed(NULL, "*");
    assert_int_equal(sd_precond_check(&p, 13, d, sizeof d), SD_ECONFLICT);
    assert_non_null(strstr(d, "If-None-Match"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(none_asked_holds),
        cmocka_unit_test(if_match_is_strong),
        cmocka_unit_test(if_none_match_is_weak),
        cmocka_unit_test(more_than_eight_none_match_tags_is_refused),
        cmocka_unit_test(if_match_is_evaluated_first),
        cmocka_unit_test(details_name_the_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
