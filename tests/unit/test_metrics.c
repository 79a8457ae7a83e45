/* Unit tests of metrics/metrics.c: samples recorded by more threads than
 * there are shards (some share the last) all count, once each, in the
 * rendered totals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "metrics/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 40 /* more than metrics.c's shards */
#define SAMPLES 2000

static void *record(void *arg)
{
    (void)arg;
    for (int i = 0; i < SAMPLES; i++) {
        sd_metrics_request(0, 200, 1000);
        sd_metrics_request(1, 404, 1000000);
        sd_metrics_store_op(SD_OP_GET, 2000);
        sd_metrics_validation(i % 2);
    }
    return NULL;
}

/* The value of the line that starts with series (followed by a space). */
static unsigned long long value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p;) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtoull(p + n + 1, NULL, 10);
        if ((p = strchr(p, '\n')))
            p++;
    }
    fail_msg("no series %s", series);
    return 0;
}

static void every_thread_counts_once(void **state)
{
    (void)state;
    static const char *const methods[] = {"GET", "POST"};
    static const char *const names[] = {"/a", "/b"};
    sd_metrics_init(methods, names, 2);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, record, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    sd_store_stats st = {0};
    size_t len = 0;
    char *text = sd_metrics_render(&st, 1, &len);
    assert_non_null(text);
    unsigned long long all = (unsigned long long)THREADS * SAMPLES;
    assert_int_equal(
        value_of(text, "sessiond_http_requests_total{method=\"GET\",route=\"/a\",status=\"200\"}"),
        all);
    assert_int_equal(
        value_of(text, "sessiond_http_requests_total{method=\"POST\",route=\"/b\",status=\"404\"}"),
        all);
    assert_int_equal(
        value_of(text, "sessiond_http_request_duration_seconds_count{method=\"GET\",route=\"/a\"}"),
        all);
    assert_int_equal(value_of(text, "sessiond_http_request_duration_seconds_bucket{method=\"GET\","
                                    "route=\"/a\",le=\"0.0001\"}"),
                     all);
    assert_int_equal(value_of(text, "sessiond_http_request_duration_seconds_bucket{method=\"POST\","
                                    "route=\"/b\",le=\"0.0005\"}"),
                     0);
    assert_int_equal(value_of(text, "sessiond_http_request_duration_seconds_bucket{method=\"POST\","
                                    "route=\"/b\",le=\"0.001\"}"),
                     all);
    assert_int_equal(value_of(text, "sessiond_store_operation_duration_seconds_count{op=\"get\"}"),
                     all);
    assert_int_equal(value_of(text, "sessiond_validations_total{result=\"valid\"}"), all / 2);
    assert_int_equal(value_of(text, "sessiond_validations_total{result=\"invalid\"}"), all / 2);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_thread_counts_once),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
