/* claims.c - a session's JWT claims and their minting (see claims.h). */
#include "jwt/claims.h"
#include "util/jsonmem.h"
#include "util/err.h"
#include "util/random.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The session fields a token may carry (--jwt-claims): the public view's
 * descriptive fields. Ids, times and the assurance fields have claims of
 * their own; the token is never in the public view at all. */
static const char *const selectable[] = {"deviceId",  "deviceInfo",  "userAgent",
                                         "ipAddress", "geoLocation", "mfa",
                                         "data",      "createdAt",   "absoluteExpiry"};
#define NSELECTABLE (sizeof selectable / sizeof selectable[0])

static bool selectable_name(const char *s, size_t n)
{
    for (size_t i = 0; i < NSELECTABLE; i++)
        if (strlen(selectable[i]) == n && memcmp(selectable[i], s, n) == 0)
            return true;
    return false;
}

int sd_jwt_claims_check(const char *list, char *err, size_t errlen)
{
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (!selectable_name(p, n)) {
            snprintf(err, errlen,
                     "jwt-claims: '%.*s' is not a session field a token may carry (deviceId, "
                     "deviceInfo, userAgent, ipAddress, geoLocation, mfa, data, createdAt, "
                     "absoluteExpiry)",
                     (int)(n > 64 ? 64 : n), p);
            return SD_EINVALID;
        }
        p += n + (comma != NULL);
    }
    return 0;
}

/* aud: one string, or an array for a comma-separated list. */
static json_t *audience(const char *a)
{
    if (!strchr(a, ','))
        return json_string(a);
    json_t *v = json_array();
    for (const char *p = a; v && *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n)
            json_array_append_new(v, json_stringn(p, n));
        p += n + (comma != NULL);
    }
    return v;
}

int sd_jwt_claims(const sd_session *s, const sd_jwt_options *o, int64_t now, const char *jti,
                  json_t **out, int64_t *expires_in)
{
    *out = NULL;
    int64_t end = now + o->lifetime_ms;
    if (s->expiry < end)
        end = s->expiry;
    if (s->absolute_expiry < end)
        end = s->absolute_expiry;
    int64_t iat = now / 1000, exp = end / 1000; /* rounded down: never past the session */
    if (exp <= iat)
        return SD_ENOTFOUND;
    json_t *c = json_object();
    if (!c)
        return SD_ENOMEM;
    json_object_set_new(c, "iss", json_string(o->issuer));
    json_object_set_new(c, "sub", json_string(s->user_id ? s->user_id : ""));
    if (o->audience[0])
        json_object_set_new(c, "aud", audience(o->audience));
    json_object_set_new(c, "iat", json_integer(iat));
    json_object_set_new(c, "nbf", json_integer(iat));
    json_object_set_new(c, "exp", json_integer(exp));
    json_object_set_new(c, "jti", json_string(jti));
    json_object_set_new(c, "sid", json_string(s->id));
    json_object_set_new(c, "auth_time",
                        json_integer((s->auth_time ? s->auth_time : s->created_at) / 1000));
    if (s->acr[0])
        json_object_set_new(c, "acr", json_string(s->acr));
    json_t *amr = s->attrs ? json_object_get(s->attrs, "amr") : NULL;
    if (json_is_array(amr))
        json_object_set(c, "amr", amr);
    if (o->claims[0]) {
        json_t *view = sd_session_to_json(s);
        for (const char *p = o->claims; view && *p;) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            char name[32];
            if (n < sizeof name && selectable_name(p, n)) {
                memcpy(name, p, n);
                name[n] = '\0';
                json_t *v = json_object_get(view, name);
                if (v)
                    json_object_set(c, name, v);
            }
            p += n + (comma != NULL);
        }
        json_decref(view);
    }
    *out = c;
    *expires_in = exp - iat;
    return 0;
}

int sd_jwt_mint(const sd_jwks *k, const sd_jwt_options *o, const sd_session *s, int64_t now,
                char **jwt, int64_t *expires_in)
{
    *jwt = NULL;
    unsigned char rnd[16];
    char jti[24];
    if (sd_random(rnd, sizeof rnd))
        return SD_ERANDOM;
    sd_b64url(rnd, sizeof rnd, jti);
    json_t *claims;
    unsigned long mark = sd_json_failures(); /* a claim set without memory fails the token */
    int rc = sd_jwt_claims(s, o, now, jti, &claims, expires_in);
    if (rc)
        return rc;
    char *payload = sd_json_dumps(claims, JSON_COMPACT, mark);
    json_decref(claims);
    if (!payload)
        return SD_ENOMEM;
    *jwt = sd_jws_sign(k, SD_JWT_TYP, payload, strlen(payload));
    free(payload);
    return *jwt ? 0 : SD_ENOMEM;
}
