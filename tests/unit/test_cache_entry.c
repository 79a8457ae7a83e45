/* Unit tests of store/cache_entry.c's --cache URL parser: the plain
 * redis:// form and the redis-sentinel:// form (issue 16). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "store/cache_entry.h"
#include "util/err.h"

#include <string.h>

static void plain_url(void **state)
{
    (void)state;
    sd_cache_url u;
    char err[256];
    assert_int_equal(sd_cache_url_parse("redis://:pw@[::1]:6380/3", &u, err, sizeof err), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 3);
    assert_string_equal(u.password, "pw");
    assert_int_equal(u.n_sentinels, 0);
    assert_int_equal(sd_cache_url_parse("redis://cache", &u, err, sizeof err), 0);
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_int_equal(sd_cache_url_parse("redis://cache:0", &u, err, sizeof err), SD_EINVALID);
    assert_int_equal(sd_cache_url_parse("redis://:6379", &u, err, sizeof err), SD_EINVALID);
}

static void sentinel_url(void **state)
{
    (void)state;
    sd_cache_url u;
    char err[256];
    assert_int_equal(sd_cache_url_parse("redis-sentinel://:s3cret@10.0.0.1:26379,s2,[::1]:26380/"
                                        "sessiond-cache/2",
                                        &u, err, sizeof err),
                     0);
    assert_int_equal(u.n_sentinels, 3);
    assert_string_equal(u.sentinels[0].host, "10.0.0.1");
    assert_int_equal(u.sentinels[0].port, 26379);
    assert_string_equal(u.sentinels[1].host, "s2");
    assert_int_equal(u.sentinels[1].port, 26379);
    assert_string_equal(u.sentinels[2].host, "::1");
    assert_int_equal(u.sentinels[2].port, 26380);
    assert_string_equal(u.master_name, "sessiond-cache");
    assert_int_equal(u.db, 2);
    assert_string_equal(u.password, "s3cret");
    assert_int_equal(sd_cache_url_parse("redis-sentinel://h:1/m", &u, err, sizeof err), 0);
    assert_int_equal(u.db, 0);
    assert_string_equal(u.master_name, "m");
    /* No master name, a bad one, a bad port, an empty host, too many. */
    assert_int_equal(sd_cache_url_parse("redis-sentinel://h:1", &u, err, sizeof err), SD_EINVALID);
    assert_non_null(strstr(err, "MASTER-NAME"));
    assert_int_equal(sd_cache_url_parse("redis-sentinel://h:1/", &u, err, sizeof err), SD_EINVALID);
    assert_int_equal(sd_cache_url_parse("redis-sentinel://h:1/a b", &u, err, sizeof err),
                     SD_EINVALID);
    assert_int_equal(sd_cache_url_parse("redis-sentinel://h:x/m", &u, err, sizeof err),
                     SD_EINVALID);
    assert_int_equal(sd_cache_url_parse("redis-sentinel://h:1,/m", &u, err, sizeof err),
                     SD_EINVALID);
    assert_int_equal(sd_cache_url_parse("redis-sentinel://h/m/x", &u, err, sizeof err),
                     SD_EINVALID);
    assert_int_equal(
        sd_cache_url_parse("redis-sentinel://a,b,c,d,e,f,g,h,i/m", &u, err, sizeof err),
        SD_EINVALID);
    /* The password never reaches the message. */
    assert_int_equal(sd_cache_url_parse("redis-sentinel://:hunter2@h:99999/m", &u, err, sizeof err),
                     SD_EINVALID);
    assert_null(strstr(err, "hunter2"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_url),
        cmocka_unit_test(sentinel_url),
    };
    return cmocka_run_group_tests_name("cache_entry", tests, NULL, NULL);
}
