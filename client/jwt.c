/*
 * jwt.c - offline verification of sessiond's access tokens
 * (sd_client_jwt_*, sessiond/client.h; docs/tokens.md).
 *
 * A verifier holds the key set (jwks.c) and the sessions the revocation
 * feed has named, and refreshes both on its own schedule inside the calls
 * that use them, on the borrowed client: the keys at the first use, after
 * jwks_max_age_s and for an unknown kid (at most every KID_REFETCH_MS); the
 * feed when poll_interval_ms has passed since the last poll. Time for those
 * schedules is the monotonic clock; exp/nbf/iat are checked against the
 * wall clock with the configured skew.
 *
 * The order of the checks is the safe one: the header alone decides the
 * algorithm (EdDSA or ES256, and the key's own), the key comes from the
 * cached set by kid only (never from the token: no jku, x5u or embedded
 * jwk), and no claim is read before the signature verifies.
 */
#include "internal.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_SKEW_S     30
#define MAX_SKEW_S         300
#define DEFAULT_JWKS_AGE_S 300
#define DEFAULT_POLL_MS    5000
#define KID_REFETCH_MS     10000
/* A revoked session is forgotten this long after the verifier learned of
 * it: sessiond's tokens live an hour at most (--jwt-lifetime's bound), so
 * none of its tokens can still pass the exp check by then. */
#define REVOKED_KEEP_S (2 * 3600)
#define MAX_FEED_PAGES 1000
#define CACHE_DEFAULT  1024 /* verified tokens kept (jwtcache.c) */
#define CACHE_MAX      1048576
/* verify_cached: the cache has no such token. */
#define NOT_CACHED 1

struct sd_client_jwt_verifier {
    sd_client *c;
    char *issuer, *audience;
    int skew_s;
    int64_t jwks_age_ms, poll_ms;
    sdc_keys keys;
    int64_t keys_at;   /* monotonic ms of the last fetch; 0: never */
    int64_t polled_at; /* monotonic ms of the last poll; 0: never */
    int64_t polls;
    char cursor[48];       /* the feed's next; "" before the first poll */
    bool static_keys;      /* opt->jwks_json: keys given, never fetched */
    EVP_PKEY *decrypt_key; /* opt->decrypt_key_file: only JWE tokens; NULL: JWS */
    /* The last header that passed the checks, as text, and what it says:
     * sessiond's tokens from one key share it, so most verifications skip
     * decoding and parsing it. */
    char hdr_text[256];
    size_t hdr_len;
    char hdr_alg[8], hdr_kid[128];
    json_t *revoked;   /* sid -> the wall-clock second it was learned */
    sdc_vcache *cache; /* verified tokens (jwtcache.c) */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sd_client_jwt_verifier_new(sd_client *c, const sd_client_jwt_options *opt,
                               sd_client_jwt_verifier **out)
{
    if (!out)
        return SD_CLIENT_EINVAL;
    *out = NULL;
    if (!opt || (!c && !(opt->jwks_json && opt->poll_interval_ms == -1)) || !opt->issuer ||
        !opt->issuer[0] || !opt->audience || !opt->audience[0] || opt->max_clock_skew_s < 0 ||
        opt->max_clock_skew_s > MAX_SKEW_S || opt->jwks_max_age_s < 0 || opt->poll_interval_ms < -1)
        return SD_CLIENT_EINVAL;
    sd_client_jwt_verifier *v = calloc(1, sizeof *v);
    if (!v)
        return SD_CLIENT_ENOMEM;
    v->c = c;
    v->issuer = strdup(opt->issuer);
    v->audience = strdup(opt->audience);
    v->revoked = json_object();
    v->skew_s = opt->max_clock_skew_s ? opt->max_clock_skew_s : DEFAULT_SKEW_S;
    v->jwks_age_ms = (opt->jwks_max_age_s ? opt->jwks_max_age_s : DEFAULT_JWKS_AGE_S) * 1000LL;
    v->poll_ms = opt->poll_interval_ms ? opt->poll_interval_ms : DEFAULT_POLL_MS;
    int rc = v->issuer && v->audience && v->revoked ? sdc__vcache_new(CACHE_DEFAULT, &v->cache)
                                                    : SD_CLIENT_ENOMEM;
    if (opt->decrypt_key_file)
        rc = sdc__jwe_key_load(opt->decrypt_key_file, &v->decrypt_key);
    if (rc == 0 && opt->jwks_json) {
        json_t *set = json_loads(opt->jwks_json, JSON_REJECT_DUPLICATES, NULL);
        rc = set && sdc__keys_parse(set, &v->keys) == 0 ? 0 : SD_CLIENT_EINVAL;
        json_decref(set);
        v->static_keys = true;
        v->keys_at = 1;
    }
    if (rc) {
        sd_client_jwt_verifier_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

void sd_client_jwt_verifier_free(sd_client_jwt_verifier *v)
{
    if (!v)
        return;
    sdc__keys_free(&v->keys);
    EVP_PKEY_free(v->decrypt_key);
    free(v->issuer);
    free(v->audience);
    json_decref(v->revoked);
    sdc__vcache_free(v->cache);
    free(v);
}

int sd_client_jwt_cache(sd_client_jwt_verifier *v, size_t entries)
{
    if (!v || entries > CACHE_MAX)
        return SD_CLIENT_EINVAL;
    return sdc__vcache_resize(v->cache, entries);
}

void sd_client_jwt_cache_counts(const sd_client_jwt_verifier *v, int64_t *hits, int64_t *misses)
{
    sdc__vcache_counts(v ? v->cache : NULL, hits, misses);
}

int64_t sd_client_jwt_polls(const sd_client_jwt_verifier *v)
{
    return v ? v->polls : 0;
}

size_t sd_client_jwt_revoked_count(const sd_client_jwt_verifier *v)
{
    return v ? json_object_size(v->revoked) : 0;
}

/* ---- the revocation feed --------------------------------------------------- */

/* One page: its sids into v->revoked, *more set. */
static int poll_page(sd_client_jwt_verifier *v, int *more)
{
    char *path = strdup("/revocations");
    int rc = path ? 0 : SD_CLIENT_ENOMEM;
    if (rc == 0 && v->cursor[0])
        rc = sdc__query(v->c, &path, "since", v->cursor);
    json_t *page = NULL;
    if (rc == 0) {
        sdc_req req = {.method = "GET", .path = path};
        rc = sdc__exchange_json(v->c, &req, &page);
    }
    free(path);
    if (rc)
        return rc;
    json_t *list = json_object_get(page, "revocations"), *next = json_object_get(page, "next");
    if (!json_is_array(list) || !json_is_string(next) ||
        json_string_length(next) >= sizeof v->cursor) {
        json_decref(page);
        sdc__set_detail(v->c, "the revocation feed's answer is not one sessiond gives");
        return SD_CLIENT_EPROTO;
    }
    json_int_t now = (json_int_t)time(NULL);
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        const char *sid = json_string_value(json_object_get(e, "sid"));
        if (sid && json_object_set_new(v->revoked, sid, json_integer(now)))
            rc = SD_CLIENT_ENOMEM;
    }
    if (rc == 0)
        snprintf(v->cursor, sizeof v->cursor, "%s", json_string_value(next));
    *more = json_is_true(json_object_get(page, "more"));
    json_decref(page);
    return rc;
}

int sd_client_jwt_poll(sd_client_jwt_verifier *v)
{
    if (!v || !v->c)
        return SD_CLIENT_EINVAL;
    int more = 1, rc = 0;
    for (int pages = 0; rc == 0 && more && pages < MAX_FEED_PAGES; pages++)
        rc = poll_page(v, &more);
    if (rc)
        return rc;
    /* Forget what no token can outlive. */
    json_int_t old = (json_int_t)time(NULL) - REVOKED_KEEP_S;
    const char *sid;
    json_t *at;
    void *tmp;
    json_object_foreach_safe(v->revoked, tmp, sid, at)
    {
        if (json_integer_value(at) < old)
            json_object_del(v->revoked, sid);
    }
    v->polled_at = mono_ms();
    v->polls++;
    return 0;
}

/* ---- verification -------------------------------------------------------- */

/* A base64url part as a JSON object; NULL when it is not one. */
static json_t *part_json(const char *p, size_t n)
{
    size_t len;
    unsigned char *b = sdc__b64url_decode(p, n, &len);
    json_t *o = b ? json_loadb((const char *)b, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    free(b);
    if (!json_is_object(o)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* A claim that is a whole number of seconds: 0 and *out, or -1. */
static int seconds(json_t *payload, const char *name, int64_t *out)
{
    json_t *j = json_object_get(payload, name);
    *out = 0;
    if (!j)
        return 1; /* absent */
    if (!json_is_integer(j) || json_integer_value(j) < 0)
        return -1;
    *out = json_integer_value(j);
    return 0;
}

static bool audience_ok(json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    size_t i;
    json_t *a;
    json_array_foreach(aud, i, a)
    {
        if (json_is_string(a) && strcmp(json_string_value(a), want) == 0)
            return true;
    }
    return false;
}

/* The claims of a token whose signature verified. */
static int check_claims(sd_client_jwt_verifier *v, json_t *p, sd_client_jwt_claims *out)
{
    const char *iss = json_string_value(json_object_get(p, "iss"));
    if (!iss || strcmp(iss, v->issuer) != 0)
        return SD_CLIENT_EJWT_ISSUER;
    if (!audience_ok(json_object_get(p, "aud"), v->audience))
        return SD_CLIENT_EJWT_AUDIENCE;
    int64_t now = (int64_t)time(NULL);
    if (seconds(p, "exp", &out->exp) != 0 || seconds(p, "nbf", &out->nbf) < 0 ||
        seconds(p, "iat", &out->iat) < 0 || seconds(p, "auth_time", &out->auth_time) < 0)
        return SD_CLIENT_EJWT_CLAIMS;
    if (now >= out->exp + v->skew_s)
        return SD_CLIENT_EJWT_EXPIRED;
    if (out->nbf > now + v->skew_s || out->iat > now + v->skew_s)
        return SD_CLIENT_EJWT_NOT_YET_VALID;
    json_t *o = p;
    if (sdc__copy_str(o, "sub", out->sub, sizeof out->sub) ||
        sdc__copy_str(o, "sid", out->sid, sizeof out->sid) || !out->sid[0])
        return SD_CLIENT_EJWT_CLAIMS;
    sdc__copy_str(o, "jti", out->jti, sizeof out->jti);
    sdc__copy_str(o, "acr", out->acr, sizeof out->acr);
    if (json_object_get(v->revoked, out->sid))
        return SD_CLIENT_EJWT_REVOKED;
    return 0;
}

/* The protected header's alg and kid (n bytes of base64url at p), checked:
 * alg EdDSA or ES256, typ at+jwt, no crit, a kid. 0 or SD_CLIENT_EJWT_*. */
static int header_fields(sd_client_jwt_verifier *v, const char *p, size_t n, char alg[8],
                         char kid[128])
{
    if (n == v->hdr_len && memcmp(p, v->hdr_text, n) == 0) {
        memcpy(alg, v->hdr_alg, 8);
        memcpy(kid, v->hdr_kid, 128);
        return 0;
    }
    json_t *header = part_json(p, n);
    int rc = header ? 0 : SD_CLIENT_EJWT_MALFORMED;
    const char *a = json_string_value(json_object_get(header, "alg"));
    const char *typ = json_string_value(json_object_get(header, "typ"));
    const char *k = json_string_value(json_object_get(header, "kid"));
    if (rc == 0 && (!a || (strcmp(a, "EdDSA") != 0 && strcmp(a, "ES256") != 0)))
        rc = SD_CLIENT_EJWT_ALG; /* none, HS*, RS*, ...: never */
    else if (rc == 0 && (!typ || strcmp(typ, "at+jwt") != 0 || json_object_get(header, "crit")))
        rc = SD_CLIENT_EJWT_MALFORMED;
    else if (rc == 0 && (!k || !k[0] || strlen(k) >= 128))
        rc = SD_CLIENT_EJWT_KID; /* no published key has a longer one (jwks.c) */
    if (rc == 0) {
        snprintf(alg, 8, "%s", a);
        snprintf(kid, 128, "%s", k);
        if (n < sizeof v->hdr_text) {
            memcpy(v->hdr_text, p, n);
            v->hdr_len = n;
            memcpy(v->hdr_alg, alg, 8);
            memcpy(v->hdr_kid, kid, 128);
        }
    }
    json_decref(header);
    return rc;
}

/* Keys and feed as fresh as the options ask. */
static int refresh(sd_client_jwt_verifier *v, int64_t now)
{
    int rc = 0;
    if (!v->static_keys && (!v->keys_at || now - v->keys_at >= v->jwks_age_ms)) {
        if ((rc = sdc__keys_fetch(v->c, &v->keys)))
            return rc;
        v->keys_at = mono_ms();
        sdc__vcache_clear(v->cache); /* verified against the old set */
    }
    if (v->poll_ms >= 0 && (!v->polled_at || now - v->polled_at >= v->poll_ms))
        rc = sd_client_jwt_poll(v);
    return rc;
}

/* A signed token (compact JWS) and its claims, as the file comment says. */
static int verify_jws(sd_client_jwt_verifier *v, const char *token, sd_client_jwt_claims *out)
{
    size_t n = strnlen(token, SDC_MAX_JWT + 1);
    const char *d1 = memchr(token, '.', n);
    const char *d2 = d1 ? memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - token)) : NULL;
    if (n > SDC_MAX_JWT || !d1 || !d2 || memchr(d2 + 1, '.', n - (size_t)(d2 + 1 - token)))
        return SD_CLIENT_EJWT_MALFORMED;
    json_t *payload = NULL;
    char alg[8], kid[128];
    int rc = header_fields(v, token, (size_t)(d1 - token), alg, kid);
    int64_t now = mono_ms();
    if (rc == 0)
        rc = refresh(v, now);
    sdc_key *key = rc == 0 ? sdc__keys_find(&v->keys, kid) : NULL;
    if (rc == 0 && !key && !v->static_keys && now - v->keys_at >= KID_REFETCH_MS) {
        /* A key published since the last fetch (a rotation). */
        if ((rc = sdc__keys_fetch(v->c, &v->keys)) == 0) {
            v->keys_at = mono_ms();
            sdc__vcache_clear(v->cache);
            key = sdc__keys_find(&v->keys, kid);
        }
    }
    if (rc == 0 && !key)
        rc = SD_CLIENT_EJWT_KID;
    else if (rc == 0 && strcmp(key->alg, alg) != 0)
        rc = SD_CLIENT_EJWT_ALG; /* the header may not pick another use of the key */
    if (rc == 0) {
        snprintf(out->kid, sizeof out->kid, "%s", kid);
        snprintf(out->alg, sizeof out->alg, "%s", alg);
        size_t slen;
        unsigned char *sig = sdc__b64url_decode(d2 + 1, n - (size_t)(d2 + 1 - token), &slen);
        if (!sig)
            rc = SD_CLIENT_EJWT_MALFORMED;
        else if (!sdc__signature_ok(key, token, (size_t)(d2 - token), sig, slen))
            rc = SD_CLIENT_EJWT_SIGNATURE;
        free(sig);
    }
    if (rc == 0 && !(payload = part_json(d1 + 1, (size_t)(d2 - d1 - 1))))
        rc = SD_CLIENT_EJWT_MALFORMED;
    if (rc == 0)
        rc = check_claims(v, payload, out);
    json_decref(payload);
    if (rc) {
        char kid_kept[128], alg_kept[8];
        memcpy(kid_kept, out->kid, sizeof kid_kept);
        memcpy(alg_kept, out->alg, sizeof alg_kept);
        OPENSSL_cleanse(out, sizeof *out);
        memcpy(out->kid, kid_kept, sizeof kid_kept); /* which key said no, for logs */
        memcpy(out->alg, alg_kept, sizeof alg_kept);
    }
    return rc;
}

/* A token verified before (its hash h): the keys and the feed refreshed on
 * their schedule (a fetch of the keys empties the cache), then what time
 * and the feed may have changed since. NOT_CACHED, 0 or a refusal. */
static int verify_cached(sd_client_jwt_verifier *v, const unsigned char h[32],
                         sd_client_jwt_claims *out)
{
    int rc = refresh(v, mono_ms());
    if (rc)
        return rc;
    const sd_client_jwt_claims *cl = sdc__vcache_find(v->cache, h);
    if (!cl)
        return NOT_CACHED;
    int64_t now = (int64_t)time(NULL);
    if (now >= cl->exp + v->skew_s)
        rc = SD_CLIENT_EJWT_EXPIRED;
    else if (cl->nbf > now + v->skew_s || cl->iat > now + v->skew_s)
        rc = SD_CLIENT_EJWT_NOT_YET_VALID; /* the clock went back */
    else if (json_object_get(v->revoked, cl->sid))
        rc = SD_CLIENT_EJWT_REVOKED;
    if (rc == 0) {
        *out = *cl;
        return 0;
    }
    memcpy(out->kid, cl->kid, sizeof out->kid); /* which key said yes once, for logs */
    memcpy(out->alg, cl->alg, sizeof out->alg);
    if (rc == SD_CLIENT_EJWT_EXPIRED)
        sdc__vcache_drop(v->cache, h);
    return rc;
}

/* Encrypted tokens first lose their JWE layer (jwe.c): a verifier with a
 * decryption key takes nothing else, one without takes no JWE. */
static int verify_token(sd_client_jwt_verifier *v, const char *token, size_t n, size_t dots,
                        sd_client_jwt_claims *out)
{
    if (dots != 4)
        return v->decrypt_key && dots == 2 ? SD_CLIENT_EJWT_ENCRYPTION : verify_jws(v, token, out);
    if (!v->decrypt_key)
        return SD_CLIENT_EJWT_ENCRYPTION;
    char *jws;
    int rc = sdc__jwe_decrypt(v->decrypt_key, token, n, &jws);
    if (rc)
        return rc;
    rc = verify_jws(v, jws, out);
    OPENSSL_cleanse(jws, strlen(jws));
    free(jws);
    return rc;
}

int sd_client_jwt_verify(sd_client_jwt_verifier *v, const char *token, sd_client_jwt_claims *out)
{
    sd_client_jwt_claims scratch;
    if (!out)
        out = &scratch;
    memset(out, 0, sizeof *out);
    if (!v || !token)
        return SD_CLIENT_EINVAL;
    size_t n = strnlen(token, SDC_MAX_JWE + 1), dots = 0;
    for (const char *p = token; (p = memchr(p, '.', n - (size_t)(p - token))); p++)
        dots++;
    if (n > SDC_MAX_JWE)
        return SD_CLIENT_EJWT_MALFORMED;
    unsigned char h[32];
    bool cache = sdc__vcache_on(v->cache) && sdc__vcache_hash(v->cache, token, n, h) == 0;
    int rc = cache ? verify_cached(v, h, out) : NOT_CACHED;
    if (rc != NOT_CACHED)
        return rc;
    rc = verify_token(v, token, n, dots, out);
    if (rc == 0 && cache)
        sdc__vcache_put(v->cache, h, out);
    return rc;
}
