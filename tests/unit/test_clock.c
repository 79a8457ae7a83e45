/* Unit tests of util/clock.c: RFC 3339 text and durations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "util/clock.h"
#include "util/err.h"

#include <stdint.h>
#include <stdio.h>
#include <time.h>

static void formats_with_milliseconds(void **state)
{
    (void)state;
    char buf[SD_TIME_TEXT_LEN + 1];
    assert_string_equal(sd_time_format(0, buf), "1970-01-01T00:00:00.000Z");
    assert_string_equal(sd_time_format(1795833215123LL, buf), "2026-11-28T02:33:35.123Z");
    assert_string_equal(sd_time_format(951782400000LL, buf), "2000-02-29T00:00:00.000Z");
}

/* The formatter is arithmetic only: it agrees with gmtime_r + snprintf, the
 * way it was written before, across 1970-2400 and before the epoch. */
static void formats_as_gmtime_does(void **state)
{
    (void)state;
    char buf[SD_TIME_TEXT_LEN + 1], want[64];
    for (int64_t t = -2208988800000LL; t < 13569465600000LL;
         t += 3217LL * 86400 * 1000 + 86399999) {
        int64_t secs = t >= 0 ? t / 1000 : (t - 999) / 1000;
        time_t tt = (time_t)secs;
        struct tm tm;
        gmtime_r(&tt, &tm);
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(t - secs * 1000));
        assert_string_equal(sd_time_format(t, buf), want);
    }
}

static void parses_what_it_formats(void **state)
{
    (void)state;
    char buf[SD_TIME_TEXT_LEN + 1];
    for (int64_t t = 0; t < 4102444800000LL; t += 7919LL * 86400 * 1000 + 12345) {
        int64_t back = -1;
        assert_int_equal(sd_time_parse(sd_time_format(t, buf), &back), 0);
        assert_true(back == t);
    }
}

static void parses_offsets_and_fractions(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(sd_time_parse("2026-11-28T03:33:35.5+01:00", &ms), 0);
    assert_true(ms == 1795833215500LL);
    assert_int_equal(sd_time_parse("2026-11-28T02:33:35.123456789Z", &ms), 0);
    assert_true(ms == 1795833215123LL);
    assert_int_equal(sd_time_parse("2026-11-28T02:33:35Z", &ms), 0);
    assert_true(ms == 1795833215000LL);
}

static void rejects_malformed_times(void **state)
{
    (void)state;
    int64_t ms;
    const char *bad[] = {"",
                         "2026-11-28",
                         "2026-11-28T02:33:35",
                         "2026-13-28T02:33:35Z",
                         "2026-02-30T02:33:35Z",
                         "2025-02-29T00:00:00Z",
                         "2026-11-28T24:00:00Z",
                         "2026-11-28T02:33:35.Z",
                         "2026-11-28T02:33:35Zjunk",
                         "2026-11-28T02:33:35+0100",
                         "2026-11-28 02:33:35Z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sd_time_parse(bad[i], &ms), SD_EINVALID);
}

static void durations(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(sd_duration_parse("500ms", &ms), 0);
    assert_true(ms == 500);
    assert_int_equal(sd_duration_parse("2s", &ms), 0);
    assert_true(ms == 2000);
    assert_int_equal(sd_duration_parse("90", &ms), 0);
    assert_true(ms == 90000);
    assert_int_equal(sd_duration_parse("5m", &ms), 0);
    assert_true(ms == 300000);
    assert_int_equal(sd_duration_parse("1h", &ms), 0);
    assert_true(ms == 3600000);
    assert_int_equal(sd_duration_parse("30d", &ms), 0);
    assert_true(ms == 2592000000LL);
    assert_int_equal(sd_duration_parse("-1s", &ms), SD_EINVALID);
    assert_int_equal(sd_duration_parse("1w", &ms), SD_EINVALID);
    assert_int_equal(sd_duration_parse("", &ms), SD_EINVALID);
    assert_int_equal(sd_duration_parse("99999999999999999999d", &ms), SD_EINVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(formats_with_milliseconds), cmocka_unit_test(formats_as_gmtime_does),
        cmocka_unit_test(parses_what_it_formats),    cmocka_unit_test(parses_offsets_and_fractions),
        cmocka_unit_test(rejects_malformed_times),   cmocka_unit_test(durations),
    };
    return cmocka_run_group_tests_name("clock", tests, NULL, NULL);
}
