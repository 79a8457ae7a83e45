/* Unit tests of session/geo.c (distance, speed, geoLocation parsing, the
 * geofence) and session/anomaly.c (which signals fire, what is recorded). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "session/anomaly.h"
#include "session/geo.h"
#include "util/err.h"

#include <math.h>
#include <string.h>

#define PARIS_LAT 48.8566
#define PARIS_LON 2.3522
#define HOUR_MS   (3600LL * 1000)

static void distances_match_known_routes(void **state)
{
    (void)state;
    /* Paris - London 343.5 km, Paris - New York 5,837 km, Paris - Tokyo
     * 9,712 km (great circle, mean radius): within 0.5 %. */
    double pl = sd_geo_distance_km(PARIS_LAT, PARIS_LON, 51.5074, -0.1278);
    double pn = sd_geo_distance_km(PARIS_LAT, PARIS_LON, 40.7128, -74.0060);
    double pt = sd_geo_distance_km(PARIS_LAT, PARIS_LON, 35.6762, 139.6503);
    assert_true(fabs(pl - 343.5) < 343.5 * 0.005);
    assert_true(fabs(pn - 5837) < 5837 * 0.005);
    assert_true(fabs(pt - 9712) < 9712 * 0.005);
    /* Symmetric, zero for one point, half the circumference at the antipode,
     * across the antimeridian the short way. */
    assert_true(fabs(sd_geo_distance_km(40.7128, -74.0060, PARIS_LAT, PARIS_LON) - pn) < 1e-6);
    assert_true(sd_geo_distance_km(10, 20, 10, 20) == 0);
    assert_true(fabs(sd_geo_distance_km(0, 0, 0, 180) - M_PI * 6371.0088) < 1e-6);
    assert_true(fabs(sd_geo_distance_km(90, 0, -90, 0) - M_PI * 6371.0088) < 1e-6);
    assert_true(sd_geo_distance_km(0, 179.5, 0, -179.5) < 112);
}

static void speed_is_distance_over_time(void **state)
{
    (void)state;
    assert_true(fabs(sd_geo_speed_kmh(1000, HOUR_MS) - 1000) < 1e-9);
    assert_true(fabs(sd_geo_speed_kmh(500, 30 * 60 * 1000) - 1000) < 1e-9);
    assert_true(fabs(sd_geo_speed_kmh(9712, 12 * HOUR_MS) - 809.33) < 0.01);
    assert_true(isinf(sd_geo_speed_kmh(10, 0)));
    assert_true(isinf(sd_geo_speed_kmh(10, -5))); /* the clock went back */
    assert_true(sd_geo_speed_kmh(0, 0) == 0);
    assert_true(sd_geo_speed_kmh(0, HOUR_MS) == 0);
}

static int parse(const char *text, sd_geo *g, char *err)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    int rc = sd_geo_parse(v, g, err, 160);
    json_decref(v);
    return rc;
}

static void geolocations_are_checked(void **state)
{
    (void)state;
    sd_geo g;
    char err[160];
    assert_int_equal(
        parse("{\"lat\": -41.28, \"lon\": 174.77, \"country\": \"nz\", \"city\": \"W\"}", &g, err),
        0);
    assert_true(g.has_point && g.lat == -41.28 && g.lon == 174.77);
    assert_string_equal(g.country, "NZ");
    assert_int_equal(parse("\"Paris, FR\"", &g, err), 0);
    assert_false(g.has_point);
    assert_string_equal(g.country, "");
    assert_int_equal(parse("{\"lat\": 90, \"lon\": -180}", &g, err), 0);
    assert_int_equal(parse("{\"c\": \"FR\"}", &g, err), 0); /* the caller's own member */
    const char *bad[] = {"{\"lat\": 91, \"lon\": 0}",
                         "{\"lat\": 0, \"lon\": 180.01}",
                         "{\"lat\": 0, \"lon\": \"x\"}",
                         "{\"lat\": 1}",
                         "{\"lon\": 1}",
                         "{\"country\": \"ZZZ\"}",
                         "{\"country\": \"F\"}",
                         "{\"country\": \"F1\"}",
                         "{\"country\": 7}",
                         "{\"lat\": null, \"lon\": 1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(parse(bad[i], &g, err), SD_EINVALID);
        assert_non_null(strstr(err, "geoLocation"));
    }
}

static void the_geofence_applies_deployment_and_group_rules(void **state)
{
    (void)state;
    sd_geofence g;
    char err[200];
    assert_int_equal(
        sd_geofence_parse("", "RU, kp", "eu=allow:FR,DE;ops=deny:US", &g, err, sizeof err), 0);
    assert_true(sd_geofence_active(&g));
    assert_null(sd_geofence_check(&g, NULL, "US"));
    assert_null(sd_geofence_check(&g, NULL, ""));
    assert_string_equal(sd_geofence_check(&g, NULL, "RU"), "denied");
    assert_string_equal(sd_geofence_check(&g, "eu", "KP"), "denied");
    assert_null(sd_geofence_check(&g, "eu", "DE"));
    assert_string_equal(sd_geofence_check(&g, "eu", "US"), "group_not_allowed");
    assert_string_equal(sd_geofence_check(&g, "ops", "US"), "group_denied");
    assert_null(sd_geofence_check(&g, "ops", "FR"));
    assert_true(sd_geofence_has_group(&g, "ops") && !sd_geofence_has_group(&g, "op"));
    assert_int_equal(sd_geofence_parse("FR", "", "", &g, err, sizeof err), 0);
    assert_string_equal(sd_geofence_check(&g, NULL, "BE"), "not_allowed");
    assert_int_equal(sd_geofence_parse("", "", "", &g, err, sizeof err), 0);
    assert_false(sd_geofence_active(&g));
    const char *groups[] = {"x",        "=allow:FR",   "x=maybe:FR",
                            "x=allow:", "x=allow:FRA", "x=allow:FR;x=deny:DE"};
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        assert_int_equal(sd_geofence_parse("", "", groups[i], &g, err, sizeof err), SD_ECONFIG);
    assert_int_equal(sd_geofence_parse("FRA", "", "", &g, err, sizeof err), SD_ECONFIG);
    assert_int_equal(sd_geofence_parse("", "F,", "", &g, err, sizeof err), SD_ECONFIG);
}

/* ---- anomaly signals ----------------------------------------------------- */

static sd_anomaly_policy policy(int action)
{
    sd_anomaly_policy p = {.max_speed_kmh = 1000,
                           .min_distance_km = 100,
                           .burst_count = 3,
                           .burst_window_ms = 60 * 1000};
    for (int i = 0; i < SD_SIG_COUNT; i++)
        p.action[i] = (unsigned char)action;
    return p;
}

static sd_session session(const char *attrs, int64_t created)
{
    sd_session s = {.created_at = created};
    s.attrs = json_loads(attrs, 0, NULL);
    assert_non_null(s.attrs);
    return s;
}

static sd_geo at(double lat, double lon, const char *cc)
{
    sd_geo g = {.has_point = true, .lat = lat, .lon = lon};
    strcpy(g.country, cc);
    return g;
}

static void travel_fires_above_the_speed_only(void **state)
{
    (void)state;
    sd_anomaly_policy p = policy(SD_ACT_FLAG);
    sd_session paris = session("{\"geoLocation\": {\"lat\": 48.8566, \"lon\": 2.3522, "
                               "\"country\": \"FR\"}}",
                               0);
    sd_session me = session("{}", 0);
    sd_signals sig;
    /* London (343 km) after 1 h: 343 km/h. After 10 min: 2,061 km/h. */
    sd_geo london = at(51.5074, -0.1278, "GB");
    sd_anomaly_on_create(&p, &me, &london, &paris, 1, HOUR_MS, &sig);
    assert_false(sig.fired & (1u << SD_SIG_IMPOSSIBLE_TRAVEL));
    assert_true(sig.fired & (1u << SD_SIG_NEW_COUNTRY));
    assert_string_equal(sig.brief[SD_SIG_NEW_COUNTRY], "GB");
    sd_anomaly_on_create(&p, &me, &london, &paris, 1, 10 * 60 * 1000, &sig);
    assert_true(sig.fired & (1u << SD_SIG_IMPOSSIBLE_TRAVEL));
    assert_string_equal(sig.brief[SD_SIG_IMPOSSIBLE_TRAVEL], "344km");
    assert_false(sig.step_up);
    /* A short hop at once never counts (the accuracy of the source). */
    sd_geo near = at(48.9, 2.4, "FR");
    sd_anomaly_on_create(&p, &me, &near, &paris, 1, 0, &sig);
    assert_int_equal(sig.fired, 0);
    /* Validation: from the session's own point; a move is remembered. */
    sd_anomaly_on_validate(&p, &paris, &near, 1000, &sig);
    assert_int_equal(sig.fired, 0);
    assert_false(sig.remember);
    sd_anomaly_on_validate(&p, &paris, &london, 1000, &sig);
    assert_int_equal(sig.fired, (1u << SD_SIG_IMPOSSIBLE_TRAVEL) | (1u << SD_SIG_NEW_COUNTRY));
    assert_true(sig.remember);
    p.action[SD_SIG_IMPOSSIBLE_TRAVEL] = SD_ACT_STEPUP;
    sd_anomaly_on_validate(&p, &paris, &london, 1000, &sig);
    assert_true(sig.step_up);
    sd_session_clear(&paris);
    sd_session_clear(&me);
}

static void what_is_recorded_and_read_back(void **state)
{
    (void)state;
    sd_anomaly_policy p = policy(SD_ACT_FLAG);
    p.action[SD_SIG_NEW_COUNTRY] = SD_ACT_RECORD;
    p.action[SD_SIG_IMPOSSIBLE_TRAVEL] = SD_ACT_STEPUP;
    sd_session s = session("{\"mfa\": true, \"geoLocation\": {\"lat\": 48.8566, "
                           "\"lon\": 2.3522, \"country\": \"FR\"}}",
                           0);
    sd_geo tokyo = at(35.6762, 139.6503, "JP");
    sd_signals sig;
    sd_anomaly_on_validate(&p, &s, &tokyo, HOUR_MS, &sig);
    assert_true(sig.step_up);
    assert_int_equal(sd_anomaly_apply(&sig, s.attrs), 0);
    bool step_up;
    /* Recorded: both; flagged: neither (record, and stepup refuses). */
    assert_int_equal(sd_anomaly_state(&p, s.attrs, &step_up), 0);
    assert_true(step_up);
    assert_true(json_is_false(json_object_get(s.attrs, "mfa")));
    assert_int_equal(json_array_size(json_object_get(s.attrs, "signals")), 2);
    /* Tokyo is now where it was seen, and JP a country it knows. */
    sd_geo shinjuku = at(35.69, 139.70, "JP");
    sd_anomaly_on_validate(&p, &s, &shinjuku, HOUR_MS + 1000, &sig);
    assert_int_equal(sig.fired, 0);
    p.action[SD_SIG_NEW_COUNTRY] = SD_ACT_FLAG;
    assert_int_equal(sd_anomaly_state(&p, s.attrs, &step_up), 1u << SD_SIG_NEW_COUNTRY);
    sd_anomaly_clear(s.attrs);
    assert_int_equal(sd_anomaly_state(&p, s.attrs, &step_up), 0);
    assert_false(step_up);
    sd_session_clear(&s);
}

static void devices_and_bursts(void **state)
{
    (void)state;
    sd_anomaly_policy p = policy(SD_ACT_RECORD);
    sd_session others[3] = {session("{\"deviceId\": \"a\", \"userAgent\": \"X\"}", 0),
                            session("{\"deviceId\": \"b\"}", 30 * 1000),
                            session("{\"userAgent\": \"Y\"}", 50 * 1000)};
    sd_geo nowhere = {0};
    sd_signals sig;
    sd_session dev_b = session("{\"deviceId\": \"b\", \"userAgent\": \"Z\"}", 0);
    sd_session dev_c = session("{\"deviceId\": \"c\", \"userAgent\": \"X\"}", 0);
    sd_session ua_y = session("{\"userAgent\": \"Y\"}", 0);
    sd_session bare = session("{}", 0);
    sd_anomaly_on_create(&p, &dev_b, &nowhere, others, 3, 59 * 1000, &sig);
    assert_int_equal(sig.fired, 1u << SD_SIG_BURST); /* 4 within the minute */
    assert_string_equal(sig.brief[SD_SIG_BURST], "4");
    sd_anomaly_on_create(&p, &dev_c, &nowhere, others, 3, 61 * 1000, &sig);
    assert_int_equal(sig.fired, 1u << SD_SIG_NEW_DEVICE); /* 3 within the minute */
    assert_string_equal(sig.brief[SD_SIG_NEW_DEVICE], "deviceId");
    sd_anomaly_on_create(&p, &ua_y, &nowhere, others, 3, 10 * 60 * 1000, &sig);
    assert_int_equal(sig.fired, 0);
    sd_anomaly_on_create(&p, &bare, &nowhere, others, 3, 10 * 60 * 1000, &sig);
    assert_int_equal(sig.fired, 0);
    /* A first session has nothing to compare with. */
    sd_anomaly_on_create(&p, &dev_c, &nowhere, NULL, 0, 0, &sig);
    assert_int_equal(sig.fired, 0);
    for (int i = 0; i < 3; i++)
        sd_session_clear(&others[i]);
    sd_session_clear(&dev_b);
    sd_session_clear(&dev_c);
    sd_session_clear(&ua_y);
    sd_session_clear(&bare);
}

static void names_and_actions(void **state)
{
    (void)state;
    assert_int_equal(sd_signal_action_parse("off"), SD_ACT_OFF);
    assert_int_equal(sd_signal_action_parse("stepup"), SD_ACT_STEPUP);
    assert_int_equal(sd_signal_action_parse("block"), -1);
    assert_string_equal(sd_signal_name(SD_SIG_IMPOSSIBLE_TRAVEL), "impossibleTravel");
    sd_anomaly_policy p = policy(SD_ACT_OFF);
    assert_false(sd_anomaly_enabled(&p) || sd_anomaly_needs_state(&p));
    p.action[SD_SIG_BURST] = SD_ACT_RECORD;
    assert_true(sd_anomaly_enabled(&p) && !sd_anomaly_needs_state(&p));
    p.action[SD_SIG_BURST] = SD_ACT_FLAG;
    assert_true(sd_anomaly_needs_state(&p));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(distances_match_known_routes),
        cmocka_unit_test(speed_is_distance_over_time),
        cmocka_unit_test(geolocations_are_checked),
        cmocka_unit_test(the_geofence_applies_deployment_and_group_rules),
        cmocka_unit_test(travel_fires_above_the_speed_only),
        cmocka_unit_test(what_is_recorded_and_read_back),
        cmocka_unit_test(devices_and_bursts),
        cmocka_unit_test(names_and_actions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
