/*
 * geo.h - geolocation as the caller supplies it (issue 19 items 3 and 4):
 * the machine-readable members of a geoLocation object ("lat", "lon",
 * "country"), the great-circle distance and speed between two points, and
 * the geofence (allowed and denied countries, per deployment and per user
 * group). Pure functions: no network lookups, no I/O.
 */
#ifndef SD_GEO_H
#define SD_GEO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a geoLocation says that sessiond can compute with. */
typedef struct sd_geo {
    bool has_point;  /* lat and lon given */
    double lat, lon; /* degrees: -90..90, -180..180 */
    char country[3]; /* ISO 3166-1 alpha-2 in upper case; "" when not given */
} sd_geo;

/* Reads v, a session's geoLocation (a string of free text, or an object),
 * into out. In an object, "lat" and "lon" (numbers, both or neither, in
 * range) and "country" (two ASCII letters, kept in upper case) are read;
 * other members are the caller's and ignored. A string says nothing
 * machine-readable (out is empty). Returns 0, or SD_EINVALID with a
 * sentence for the client in err. */
int sd_geo_parse(const json_t *v, sd_geo *out, char *err, size_t errlen);

/* Great-circle distance in km between two points (haversine, mean Earth
 * radius 6371.0088 km). */
double sd_geo_distance_km(double lat1, double lon1, double lat2, double lon2);

/* The speed in km/h that covering km in elapsed_ms needs: INFINITY when
 * km > 0 and no time has passed (or the clock went back), 0 for km <= 0. */
double sd_geo_speed_kmh(double km, int64_t elapsed_ms);

/* ---- the geofence -------------------------------------------------------- */

#define SD_GEO_MAX_GROUPS 16
#define SD_GEO_GROUP_MAX  64

/* A set of countries: one bit per pair of letters. */
typedef struct sd_geo_set {
    unsigned char bits[(26 * 26 + 7) / 8];
    bool any; /* at least one country in it */
} sd_geo_set;

typedef struct sd_geofence {
    sd_geo_set allow; /* empty: every country not denied */
    sd_geo_set deny;
    size_t n_groups;
    struct {
        char name[SD_GEO_GROUP_MAX + 1];
        sd_geo_set allow, deny;
    } group[SD_GEO_MAX_GROUPS];
} sd_geofence;

/* Parses the settings: allow and deny are comma-separated country codes
 * ("" for none); groups is "NAME=allow:CC,CC;NAME=deny:CC" (one rule per
 * group, "" for none). Returns 0 or SD_ECONFIG with a sentence in err. */
int sd_geofence_parse(const char *allow, const char *deny, const char *groups, sd_geofence *out,
                      char *err, size_t errlen);

/* True when some rule is configured (else nothing is ever refused). */
bool sd_geofence_active(const sd_geofence *g);

/* True when group is one of g's groups. */
bool sd_geofence_has_group(const sd_geofence *g, const char *group);

/* Whether a client in country (two upper-case letters) may use a session
 * of group (NULL or "": none): NULL when it may, else why not, a static
 * phrase for the audit reason ("denied", "not_allowed", "group_denied",
 * "group_not_allowed"). The deployment's
 * rules and the group's both apply. */
const char *sd_geofence_check(const sd_geofence *g, const char *group, const char *country);

#endif
