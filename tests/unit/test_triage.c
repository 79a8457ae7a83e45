/* Unit tests of session/triage.c: the CIDR parser (strict: host bits, prefix
 * range, families) and the match over a session's attrs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "session/triage.h"
#include "util/err.h"

#include <string.h>

static bool match_ip(const char *net, const char *ip)
{
    sd_triage t;
    char err[160];
    assert_int_equal(sd_triage_network(net, &t, err, sizeof err), 0);
    sd_session s = {.attrs = json_pack("{s:s}", "ipAddress", ip)};
    bool m = sd_triage_match(&t, &s);
    json_decref(s.attrs);
    return m;
}

static void networks_match_their_addresses_only(void **state)
{
    (void)state;
    assert_true(match_ip("203.0.113.0/24", "203.0.113.7"));
    assert_true(match_ip("203.0.113.0/24", "203.0.113.255"));
    assert_false(match_ip("203.0.113.0/24", "203.0.114.1"));
    assert_true(match_ip("203.0.113.128/25", "203.0.113.200"));
    assert_false(match_ip("203.0.113.128/25", "203.0.113.127"));
    assert_true(match_ip("198.51.100.9", "198.51.100.9"));
    assert_false(match_ip("198.51.100.9", "198.51.100.10"));
    assert_true(match_ip("0.0.0.0/0", "192.0.2.1"));
    assert_true(match_ip("2001:db8::/32", "2001:db8:1::5"));
    assert_false(match_ip("2001:db8::/32", "2001:db9::5"));
    assert_false(match_ip("2001:db8::/32", "203.0.113.7")); /* another family */
    assert_false(match_ip("203.0.113.0/24", "2001:db8::1"));
}

static void bad_networks_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {"",
                                      "/24",
                                      "203.0.113.0/",
                                      "203.0.113.0/33",
                                      "203.0.113.1/24",
                                      "203.0.113.0/024",
                                      "203.0.113.0/-1",
                                      "2001:db8::/129",
                                      "2001:db8::1/32",
                                      "example.com/8",
                                      "203.0.113.0/24x",
                                      "203.0.113.0 /24"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sd_triage t;
        char err[160] = "";
        assert_int_equal(sd_triage_network(bad[i], &t, err, sizeof err), SD_EINVALID);
        assert_true(strstr(err, "network") != NULL);
    }
}

static void device_ids_match_exactly(void **state)
{
    (void)state;
    sd_triage t = {.device_id = "dev-1"};
    sd_session s = {.attrs = json_pack("{s:s}", "deviceId", "dev-1")};
    assert_true(sd_triage_match(&t, &s));
    t.device_id = "DEV-1";
    assert_false(sd_triage_match(&t, &s));
    json_decref(s.attrs);
    s.attrs = json_object(); /* no deviceId, no ipAddress */
    assert_false(sd_triage_match(&t, &s));
    t = (sd_triage){0};
    assert_int_equal(sd_triage_network("10.0.0.0/8", &t, NULL, 0), 0);
    assert_false(sd_triage_match(&t, &s));
    json_decref(s.attrs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(networks_match_their_addresses_only),
        cmocka_unit_test(bad_networks_are_refused),
        cmocka_unit_test(device_ids_match_exactly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
