/*
 * geo.c - the geolocation arithmetic and the geofence of geo.h.
 */
#include "session/geo.h"
#include "util/err.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int fail(int rc, char *err, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(int rc, char *err, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return rc;
}

/* Two ASCII letters into upper case in out; false for anything else. */
static bool country_code(const char *s, size_t len, char out[3])
{
    if (len != 2)
        return false;
    for (int i = 0; i < 2; i++) {
        char c = s[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c < 'A' || c > 'Z')
            return false;
        out[i] = c;
    }
    out[2] = '\0';
    return true;
}

static int coordinate(const json_t *v, const char *key, double max, double *out, char *err,
                      size_t n)
{
    if (!json_is_number(v))
        return fail(SD_EINVALID, err, n, "field 'geoLocation.%s' must be a number", key);
    double d = json_number_value(v);
    if (!(d >= -max && d <= max))
        return fail(SD_EINVALID, err, n, "field 'geoLocation.%s' must be between %g and %g", key,
                    -max, max);
    *out = d;
    return 0;
}

int sd_geo_parse(const json_t *v, sd_geo *out, char *err, size_t n)
{
    memset(out, 0, sizeof *out);
    if (!json_is_object(v))
        return 0; /* free text: nothing to compute with */
    const json_t *lat = json_object_get(v, "lat"), *lon = json_object_get(v, "lon");
    const json_t *cc = json_object_get(v, "country");
    if (!lat != !lon)
        return fail(SD_EINVALID, err, n,
                    "field 'geoLocation' must give both 'lat' and 'lon', or neither");
    int rc;
    if (lat && ((rc = coordinate(lat, "lat", 90, &out->lat, err, n)) ||
                (rc = coordinate(lon, "lon", 180, &out->lon, err, n))))
        return rc;
    out->has_point = lat != NULL;
    if (cc && (!json_is_string(cc) ||
               !country_code(json_string_value(cc), json_string_length(cc), out->country)))
        return fail(SD_EINVALID, err, n,
                    "field 'geoLocation.country' must be an ISO 3166-1 alpha-2 code (two "
                    "letters, such as \"FR\")");
    return 0;
}

double sd_geo_distance_km(double lat1, double lon1, double lat2, double lon2)
{
    const double rad = M_PI / 180.0, r = 6371.0088;
    double dlat = (lat2 - lat1) * rad, dlon = (lon2 - lon1) * rad;
    double a = sin(dlat / 2) * sin(dlat / 2) +
               cos(lat1 * rad) * cos(lat2 * rad) * sin(dlon / 2) * sin(dlon / 2);
    if (a > 1)
        a = 1; /* rounding near the antipode */
    return 2 * r * asin(sqrt(a));
}

double sd_geo_speed_kmh(double km, int64_t elapsed_ms)
{
    if (!(km > 0))
        return 0;
    if (elapsed_ms <= 0)
        return INFINITY;
    return km / ((double)elapsed_ms / 3600000.0);
}

/* ---- the geofence -------------------------------------------------------- */

static int set_index(const char c[3])
{
    return (c[0] - 'A') * 26 + (c[1] - 'A');
}

static bool set_has(const sd_geo_set *s, const char *country)
{
    int i = set_index(country);
    return (s->bits[i / 8] >> (i % 8)) & 1;
}

/* Comma-separated codes (n bytes at text; spaces around each allowed) into s. */
static int parse_set(const char *text, size_t len, sd_geo_set *s, const char *what, char *err,
                     size_t n)
{
    memset(s, 0, sizeof *s);
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        while (p < e && *p == ' ')
            p++;
        const char *q = e;
        while (q > p && q[-1] == ' ')
            q--;
        char cc[3];
        if (!country_code(p, (size_t)(q - p), cc))
            return fail(SD_ECONFIG, err, n,
                        "%s: '%.*s' is not an ISO 3166-1 alpha-2 country code (two letters)", what,
                        (int)(q - p > 16 ? 16 : q - p), p);
        int i = set_index(cc);
        s->bits[i / 8] |= (unsigned char)(1u << (i % 8));
        s->any = true;
        p = comma ? comma + 1 : end;
    }
    return 0;
}

/* One "NAME=allow:CC,CC" or "NAME=deny:CC" rule of geo-groups. */
static int parse_group(sd_geofence *g, const char *p, size_t len, char *err, size_t n)
{
    const char *eq = memchr(p, '=', len), *end = p + len;
    const char *colon = eq ? memchr(eq, ':', (size_t)(end - eq)) : NULL;
    if (!eq || !colon || eq == p || (size_t)(eq - p) > SD_GEO_GROUP_MAX)
        return fail(SD_ECONFIG, err, n,
                    "geo-groups: each rule is NAME=allow:CC,CC or NAME=deny:CC,CC (NAME 1 to %d "
                    "bytes), separated by ';'",
                    SD_GEO_GROUP_MAX);
    if (g->n_groups == SD_GEO_MAX_GROUPS)
        return fail(SD_ECONFIG, err, n, "geo-groups: at most %d groups", SD_GEO_MAX_GROUPS);
    size_t k = g->n_groups;
    snprintf(g->group[k].name, sizeof g->group[k].name, "%.*s", (int)(eq - p), p);
    if (sd_geofence_has_group(g, g->group[k].name))
        return fail(SD_ECONFIG, err, n, "geo-groups: group '%s' is given twice", g->group[k].name);
    bool allow = (size_t)(colon - eq - 1) == 5 && memcmp(eq + 1, "allow", 5) == 0;
    bool deny = (size_t)(colon - eq - 1) == 4 && memcmp(eq + 1, "deny", 4) == 0;
    if (!allow && !deny)
        return fail(SD_ECONFIG, err, n,
                    "geo-groups: group '%s' must say allow: or deny:", g->group[k].name);
    sd_geo_set *s = allow ? &g->group[k].allow : &g->group[k].deny;
    int rc = parse_set(colon + 1, (size_t)(end - colon - 1), s, "geo-groups", err, n);
    if (rc == 0 && !s->any)
        rc = fail(SD_ECONFIG, err, n, "geo-groups: group '%s' names no country", g->group[k].name);
    if (rc == 0)
        g->n_groups++;
    return rc;
}

int sd_geofence_parse(const char *allow, const char *deny, const char *groups, sd_geofence *out,
                      char *err, size_t n)
{
    memset(out, 0, sizeof *out);
    int rc = parse_set(allow, strlen(allow), &out->allow, "geo-allow", err, n);
    if (rc == 0)
        rc = parse_set(deny, strlen(deny), &out->deny, "geo-deny", err, n);
    const char *p = groups;
    while (rc == 0 && *p) {
        const char *semi = strchr(p, ';');
        size_t len = semi ? (size_t)(semi - p) : strlen(p);
        rc = parse_group(out, p, len, err, n);
        p = semi ? semi + 1 : p + len;
    }
    return rc;
}

bool sd_geofence_active(const sd_geofence *g)
{
    return g->allow.any || g->deny.any || g->n_groups > 0;
}

bool sd_geofence_has_group(const sd_geofence *g, const char *group)
{
    for (size_t i = 0; group && i < g->n_groups; i++)
        if (strcmp(g->group[i].name, group) == 0)
            return true;
    return false;
}

const char *sd_geofence_check(const sd_geofence *g, const char *group, const char *country)
{
    if (!country || !country[0])
        return NULL;
    if (set_has(&g->deny, country))
        return "denied";
    if (g->allow.any && !set_has(&g->allow, country))
        return "not_allowed";
    for (size_t i = 0; group && i < g->n_groups; i++) {
        if (strcmp(g->group[i].name, group) != 0)
            continue;
        if (set_has(&g->group[i].deny, country))
            return "group_denied";
        if (g->group[i].allow.any && !set_has(&g->group[i].allow, country))
            return "group_not_allowed";
    }
    return NULL;
}
