/*
 * anomaly.c - the anomaly signals of anomaly.h: computed from what the
 * user's live sessions (or the validated session) have shown, recorded in
 * a session's attrs.
 */
#include "session/anomaly.h"
#include "util/err.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define MAX_COUNTRIES 16 /* kept per session; the oldest goes first */

static const char *const signal_names[SD_SIG_COUNT] = {"newDevice", "newCountry",
                                                       "impossibleTravel", "sessionBurst"};
static const char *const action_names[] = {"off", "record", "flag", "stepup"};

const char *sd_signal_name(int sig)
{
    return sig >= 0 && sig < SD_SIG_COUNT ? signal_names[sig] : "unknown";
}

const char *sd_signal_action_name(int action)
{
    return action >= 0 && action <= SD_ACT_STEPUP ? action_names[action] : "unknown";
}

int sd_signal_action_parse(const char *text)
{
    for (int i = 0; i <= SD_ACT_STEPUP; i++)
        if (strcmp(text, action_names[i]) == 0)
            return i;
    return -1;
}

bool sd_anomaly_needs_state(const sd_anomaly_policy *p)
{
    for (int i = 0; i < SD_SIG_COUNT; i++)
        if (p->action[i] >= SD_ACT_FLAG)
            return true;
    return false;
}

bool sd_anomaly_enabled(const sd_anomaly_policy *p)
{
    for (int i = 0; i < SD_SIG_COUNT; i++)
        if (p->action[i] != SD_ACT_OFF)
            return true;
    return false;
}

static bool on(const sd_anomaly_policy *p, int sig)
{
    return p->action[sig] != SD_ACT_OFF;
}

static void fire(const sd_anomaly_policy *p, sd_signals *out, int sig, const char *brief,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void fire(const sd_anomaly_policy *p, sd_signals *out, int sig, const char *brief,
                 const char *fmt, ...)
{
    snprintf(out->brief[sig], sizeof out->brief[sig], "%s", brief);
    out->fired |= 1u << sig;
    out->action[sig] = p->action[sig];
    if (p->action[sig] == SD_ACT_STEPUP)
        out->step_up = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->detail[sig], sizeof out->detail[sig], fmt, ap);
    va_end(ap);
}

static const char *attr_string(const sd_session *s, const char *key)
{
    return s->attrs ? json_string_value(json_object_get(s->attrs, key)) : NULL;
}

/* Whether attrs' countries (or, before any, its geoLocation's country) hold
 * cc; *known whether it holds any country at all. */
static bool seen_country(const sd_session *s, const char *cc, bool *known)
{
    json_t *list = s->attrs ? json_object_get(s->attrs, "countries") : NULL;
    size_t i;
    json_t *v;
    if (json_array_size(list) > 0) {
        *known = true;
        json_array_foreach(list, i, v)
        {
            if (json_is_string(v) && strcmp(json_string_value(v), cc) == 0)
                return true;
        }
        return false;
    }
    sd_geo g;
    char err[8];
    if (s->attrs &&
        sd_geo_parse(json_object_get(s->attrs, "geoLocation"), &g, err, sizeof err) == 0 &&
        g.country[0]) {
        *known = true;
        return strcmp(g.country, cc) == 0;
    }
    return false;
}

/* Where s was last seen, and when: its geoSeen, else its geoLocation's
 * point at its creation. False when it has no point. */
static bool last_point(const sd_session *s, double *lat, double *lon, int64_t *at)
{
    json_t *seen = s->attrs ? json_object_get(s->attrs, "geoSeen") : NULL;
    if (json_is_object(seen) && json_is_number(json_object_get(seen, "lat")) &&
        json_is_number(json_object_get(seen, "lon")) &&
        json_is_integer(json_object_get(seen, "at"))) {
        *lat = json_number_value(json_object_get(seen, "lat"));
        *lon = json_number_value(json_object_get(seen, "lon"));
        *at = json_integer_value(json_object_get(seen, "at"));
        return true;
    }
    sd_geo g;
    char err[8];
    if (!s->attrs ||
        sd_geo_parse(json_object_get(s->attrs, "geoLocation"), &g, err, sizeof err) != 0 ||
        !g.has_point)
        return false;
    *lat = g.lat;
    *lon = g.lon;
    *at = s->created_at;
    return true;
}

/* Impossible travel from (lat, lon) at `at` to here at now. Returns whether
 * the move is longer than the policy's minimum distance. */
static bool travel(const sd_anomaly_policy *p, double lat, double lon, int64_t at,
                   const sd_geo *here, int64_t now, sd_signals *out)
{
    double km = sd_geo_distance_km(lat, lon, here->lat, here->lon);
    if (km < p->min_distance_km)
        return false;
    double speed = sd_geo_speed_kmh(km, now - at);
    if (on(p, SD_SIG_IMPOSSIBLE_TRAVEL) && speed > p->max_speed_kmh) {
        char brief[12];
        snprintf(brief, sizeof brief, "%.0fkm", km);
        fire(p, out, SD_SIG_IMPOSSIBLE_TRAVEL, brief,
             "distance_km=%.0f elapsed_s=%lld speed_kmh=%.0f", km, (long long)((now - at) / 1000),
             speed > 1e9 ? 1e9 : speed);
    }
    return true;
}

void sd_anomaly_on_create(const sd_anomaly_policy *p, const sd_session *s, const sd_geo *here,
                          const sd_session *others, size_t n, int64_t now, sd_signals *out)
{
    memset(out, 0, sizeof *out);
    out->here = *here;
    out->at = now;
    if (on(p, SD_SIG_NEW_DEVICE)) {
        const char *key = attr_string(s, "deviceId") ? "deviceId" : "userAgent";
        const char *mine = attr_string(s, key);
        bool known = false, seen = false;
        for (size_t i = 0; mine && i < n; i++) {
            const char *theirs = attr_string(&others[i], key);
            known |= theirs != NULL;
            seen |= theirs && strcmp(theirs, mine) == 0;
        }
        if (known && !seen)
            fire(p, out, SD_SIG_NEW_DEVICE, key, "by=%s", key);
    }
    if (on(p, SD_SIG_NEW_COUNTRY) && here->country[0]) {
        bool known = false, seen = false;
        for (size_t i = 0; i < n && !seen; i++)
            seen = seen_country(&others[i], here->country, &known);
        if (known && !seen)
            fire(p, out, SD_SIG_NEW_COUNTRY, here->country, "country=%s", here->country);
    }
    if (on(p, SD_SIG_IMPOSSIBLE_TRAVEL) && here->has_point) {
        /* From the point the user was seen at last, among the sessions. */
        double lat = 0, lon = 0, la, lo;
        int64_t at = INT64_MIN, t;
        for (size_t i = 0; i < n; i++)
            if (last_point(&others[i], &la, &lo, &t) && t > at) {
                lat = la;
                lon = lo;
                at = t;
            }
        if (at != INT64_MIN)
            travel(p, lat, lon, at, here, now, out);
    }
    if (on(p, SD_SIG_BURST)) {
        int recent = 1; /* this one */
        for (size_t i = 0; i < n; i++)
            recent += others[i].created_at > now - p->burst_window_ms;
        char brief[12];
        snprintf(brief, sizeof brief, "%d", recent);
        if (recent > p->burst_count)
            fire(p, out, SD_SIG_BURST, brief, "creates=%d window_s=%lld", recent,
                 (long long)(p->burst_window_ms / 1000));
    }
}

void sd_anomaly_on_validate(const sd_anomaly_policy *p, const sd_session *s, const sd_geo *here,
                            int64_t now, sd_signals *out)
{
    memset(out, 0, sizeof *out);
    out->here = *here;
    out->at = now;
    if (on(p, SD_SIG_NEW_COUNTRY) && here->country[0]) {
        bool known = false;
        if (!seen_country(s, here->country, &known)) {
            out->remember = true;
            if (known)
                fire(p, out, SD_SIG_NEW_COUNTRY, here->country, "country=%s", here->country);
        }
    }
    if (on(p, SD_SIG_IMPOSSIBLE_TRAVEL) && here->has_point) {
        double lat, lon;
        int64_t at;
        if (!last_point(s, &lat, &lon, &at) || travel(p, lat, lon, at, here, now, out))
            out->remember = true;
    }
    out->remember |= out->fired != 0;
}

/* Appends the string v to the array at attrs[key] unless it is there;
 * beyond max entries the first goes. */
static int add_unique(json_t *attrs, const char *key, const char *v, size_t max)
{
    json_t *list = json_object_get(attrs, key);
    if (!json_is_array(list)) {
        list = json_array();
        if (!list || json_object_set_new(attrs, key, list))
            return SD_ENOMEM;
    }
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        if (json_is_string(e) && strcmp(json_string_value(e), v) == 0)
            return 0;
    }
    if (json_array_size(list) >= max)
        json_array_remove(list, 0);
    return json_array_append_new(list, json_string(v)) ? SD_ENOMEM : 0;
}

int sd_anomaly_apply(const sd_signals *sig, json_t *attrs)
{
    int rc = 0;
    for (int i = 0; rc == 0 && i < SD_SIG_COUNT; i++)
        if (sig->fired & (1u << i))
            rc = add_unique(attrs, "signals", signal_names[i], SD_SIG_COUNT);
    if (rc == 0 && sig->step_up &&
        (json_object_set_new(attrs, "stepUp", json_true()) ||
         json_object_set_new(attrs, "mfa", json_false())))
        rc = SD_ENOMEM;
    if (rc == 0 && sig->here.country[0])
        rc = add_unique(attrs, "countries", sig->here.country, MAX_COUNTRIES);
    if (rc == 0 && sig->here.has_point) {
        json_t *seen = json_pack("{s:f,s:f,s:I}", "lat", sig->here.lat, "lon", sig->here.lon, "at",
                                 (json_int_t)sig->at);
        if (!seen || json_object_set_new(attrs, "geoSeen", seen))
            rc = SD_ENOMEM;
    }
    return rc;
}

void sd_anomaly_clear(json_t *attrs)
{
    json_object_del(attrs, "stepUp");
    json_object_del(attrs, "signals");
}

unsigned sd_anomaly_state(const sd_anomaly_policy *p, const json_t *attrs, bool *step_up)
{
    *step_up = attrs && json_is_true(json_object_get(attrs, "stepUp"));
    json_t *list = attrs ? json_object_get(attrs, "signals") : NULL;
    unsigned bits = 0;
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        for (int k = 0; k < SD_SIG_COUNT; k++)
            if (json_is_string(v) && strcmp(json_string_value(v), signal_names[k]) == 0 &&
                p->action[k] == SD_ACT_FLAG)
                bits |= 1u << k;
    }
    return bits;
}
