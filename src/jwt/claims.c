/* claims.c - a session's JWT claims and their minting (see claims.h). */
#include "jwt/claims.h"
#include "jwt/jwe.h"
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
static void audience(sd_jw *w, const char *a)
{
    if (!strchr(a, ',')) {
        sd_jw_str(w, a);
        return;
    }
    sd_jw_array(w);
    for (const char *p = a; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n)
            sd_jw_strn(w, p, n);
        p += n + (comma != NULL);
    }
    sd_jw_end(w);
}

static void claim_int(sd_jw *w, const char *name, int64_t v)
{
    sd_jw_key(w, name);
    sd_jw_int(w, v);
}

static void claim_str(sd_jw *w, const char *name, const char *v)
{
    sd_jw_key(w, name);
    sd_jw_str(w, v);
}

/* The --jwt-claims fields of s's public view. */
static void selected(sd_jw *w, const sd_session *s, const char *list)
{
    json_t *view = sd_session_to_json(s);
    if (!view) {
        w->failed = true;
        return;
    }
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char name[32];
        if (n < sizeof name && selectable_name(p, n)) {
            memcpy(name, p, n);
            name[n] = '\0';
            json_t *v = json_object_get(view, name);
            if (v) {
                sd_jw_key(w, name);
                sd_jw_json(w, v);
            }
        }
        p += n + (comma != NULL);
    }
    json_decref(view);
}

int sd_jwt_claims(const sd_session *s, const sd_jwt_options *o, int64_t now, const char *jti,
                  sd_jw *w, int64_t *expires_in)
{
    int64_t end = now + o->lifetime_ms;
    if (s->expiry < end)
        end = s->expiry;
    if (s->absolute_expiry < end)
        end = s->absolute_expiry;
    int64_t iat = now / 1000, exp = end / 1000; /* rounded down: never past the session */
    if (exp <= iat)
        return SD_ENOTFOUND;
    sd_jw_object(w);
    claim_str(w, "iss", o->issuer);
    sd_jw_key(w, "sub");
    if (sd_jw_str(w, s->user_id ? s->user_id : "")) /* altered: not the user's id */
        return SD_EINVALID;
    if (o->audience[0]) {
        sd_jw_key(w, "aud");
        audience(w, o->audience);
    }
    claim_int(w, "iat", iat);
    claim_int(w, "nbf", iat);
    claim_int(w, "exp", exp);
    claim_str(w, "jti", jti);
    claim_str(w, "sid", s->id);
    claim_int(w, "auth_time", (s->auth_time ? s->auth_time : s->created_at) / 1000);
    if (s->acr[0])
        claim_str(w, "acr", s->acr);
    json_t *amr = s->attrs ? json_object_get(s->attrs, "amr") : NULL;
    if (json_is_array(amr)) {
        sd_jw_key(w, "amr");
        sd_jw_json(w, amr);
    }
    if (o->claims[0])
        selected(w, s, o->claims);
    sd_jw_end(w);
    *expires_in = exp - iat;
    return w->failed ? SD_ENOMEM : 0;
}

int sd_jwt_mint(const sd_jwks *k, const sd_jwt_options *o, const sd_session *s, int64_t now,
                sd_arena *a, const char **jwt, int64_t *expires_in)
{
    *jwt = NULL;
    unsigned char rnd[16];
    char jti[24];
    if (sd_random(rnd, sizeof rnd))
        return SD_ERANDOM;
    sd_b64url(rnd, sizeof rnd, jti);
    sd_jw w;
    sd_jw_init(&w, a, 512);
    int rc = sd_jwt_claims(s, o, now, jti, &w, expires_in);
    size_t plen = 0, jlen = 0;
    const char *payload = rc ? NULL : sd_jw_done(&w, &plen);
    if (rc)
        return rc;
    if (!payload || !(*jwt = sd_jws_sign(k, a, payload, plen, &jlen)))
        return SD_ENOMEM;
    const sd_jwe_key *to = sd_jwks_recipient(k);
    if (to && !(*jwt = sd_jwe_encrypt(to, a, *jwt, jlen)))
        return SD_ENOMEM;
    return 0;
}
