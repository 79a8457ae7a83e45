/*
 * tokens.c - the JWT half of sessiond (issue 18; docs/tokens.md):
 *
 *   GET /.well-known/jwks.json   the public signing keys (public route)
 *   POST /sessions/token         a session token (Bearer) for a short-lived
 *                                signed access token (validate scope)
 *   GET /revocations             sessions revoked, for verifiers to poll
 *                                (validate scope)
 *
 * and sd_api_mint, which refresh (sessions.c) uses too. The opaque session
 * stays the source of truth: a token is minted only from a session the
 * validation core has just found valid, and never outlives it.
 */
#include "api/api.h"
#include "jwt/mintcache.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FEED_DEFAULT_LIMIT 500
#define FEED_MAX_LIMIT     1000
/* The feed reaches this much further back than the longest token lives
 * (the clocks of other replicas may lag). */
#define FEED_SLACK_MS 60000
/* How long a verifier or a shared cache may keep the JWKS. A rotation is
 * safe across it as long as a new key is published ('next') at least this
 * long before it signs (docs/tokens.md, "Rotating the signing key"). */
#define JWKS_CACHE_CONTROL "public, max-age=300"

/* sd_api_mint, and the generation of the keys that signed (read under the
 * same lock, so that a SIGHUP cannot come between the two). */
static int mint(sd_app *app, const sd_session *s, int64_t now, sd_arena *a, const char **jwt,
                int64_t *expires_in, uint64_t *gen)
{
    *jwt = NULL;
    pthread_rwlock_rdlock(&app->jwt_lock);
    *gen = app->jwt_cache ? sd_mintcache_generation(app->jwt_cache) : 0;
    int rc = app->jwt_keys ? sd_jwt_mint(app->jwt_keys, &app->jwt, s, now, a, jwt, expires_in)
                           : SD_ECONFIG;
    pthread_rwlock_unlock(&app->jwt_lock);
    return rc;
}

int sd_api_mint(sd_app *app, const sd_session *s, int64_t now, sd_arena *a, const char **jwt,
                int64_t *expires_in)
{
    uint64_t gen;
    return mint(app, s, now, a, jwt, expires_in, &gen);
}

bool sd_api_jwt_enabled(sd_app *app)
{
    pthread_rwlock_rdlock(&app->jwt_lock);
    bool on = app->jwt_keys != NULL;
    pthread_rwlock_unlock(&app->jwt_lock);
    return on;
}

int sd_api_mint_checked(sd_app *app, const sd_check *c, int64_t now, sd_arena *a, const char **jwt,
                        int64_t *expires_in)
{
    /* The validation decided that the session is valid; the cache only
     * saves the signature (and the read below). */
    *jwt = NULL;
    int64_t bound = c->expiry < c->s.absolute_expiry ? c->expiry : c->s.absolute_expiry, exp_s;
    if (app->jwt_cache &&
        sd_mintcache_get(app->jwt_cache, c->s.id, c->s.version, now, bound, a, jwt, &exp_s)) {
        *expires_in = exp_s - now / 1000;
        sd_debug("access_token_issued session=%s expires_in=%lld reused=1", c->s.id,
                 (long long)*expires_in);
        return 0;
    }
    /* The validation core reads without the optional fields; amr and the
     * --jwt-claims fields live there. */
    sd_session full;
    int rc = sd_store_get(app->store, c->s.id, true, &full, NULL, 0);
    if (rc)
        return rc;
    full.expiry = c->expiry > full.expiry ? c->expiry : full.expiry; /* the rolling touch */
    uint64_t gen = 0;
    rc = sd_session_active(&full, now) ? mint(app, &full, now, a, jwt, expires_in, &gen)
                                       : SD_ENOTFOUND;
    if (rc == 0 && app->jwt_cache) /* keyed by the version the claims were read from */
        sd_mintcache_put(app->jwt_cache, full.id, full.version, gen, now, now / 1000 + *expires_in,
                         *jwt, strlen(*jwt));
    if (rc == 0)
        sd_debug("access_token_issued session=%s expires_in=%lld reused=0", full.id,
                 (long long)*expires_in);
    sd_session_clear(&full);
    return rc;
}

int sd_api_jwt_metrics(sd_app *app, char **buf, size_t *len)
{
    if (!app->jwt_cache)
        return 0;
    sd_mintcache_stats st;
    sd_mintcache_stats_get(app->jwt_cache, &st);
    char text[1600];
    int n = snprintf(
        text, sizeof text,
        "# HELP sessiond_jwt_reuse_total Asks for an access token of a valid session, by "
        "whether a minted token was handed out again (--jwt-reuse).\n"
        "# TYPE sessiond_jwt_reuse_total counter\n"
        "sessiond_jwt_reuse_total{result=\"hit\"} %llu\n"
        "sessiond_jwt_reuse_total{result=\"miss\"} %llu\n"
        "sessiond_jwt_reuse_total{result=\"stale\"} %llu\n"
        "# HELP sessiond_jwt_reuse_evicted_total Kept tokens pushed out for room.\n"
        "# TYPE sessiond_jwt_reuse_evicted_total counter\n"
        "sessiond_jwt_reuse_evicted_total %llu\n"
        "# HELP sessiond_jwt_reuse_skipped_total Minted tokens not kept (too large, no memory).\n"
        "# TYPE sessiond_jwt_reuse_skipped_total counter\n"
        "sessiond_jwt_reuse_skipped_total %llu\n"
        "# HELP sessiond_jwt_reuse_entries Tokens kept.\n"
        "# TYPE sessiond_jwt_reuse_entries gauge\n"
        "sessiond_jwt_reuse_entries %llu\n"
        "# HELP sessiond_jwt_reuse_bytes Memory of the kept tokens and their table "
        "(bound: --jwt-reuse-max-mb).\n"
        "# TYPE sessiond_jwt_reuse_bytes gauge\n"
        "sessiond_jwt_reuse_bytes %llu\n",
        (unsigned long long)st.hits, (unsigned long long)st.misses, (unsigned long long)st.stale,
        (unsigned long long)st.evicted, (unsigned long long)st.skipped,
        (unsigned long long)st.entries, (unsigned long long)st.bytes);
    char *p = n > 0 && (size_t)n < sizeof text ? realloc(*buf, *len + (size_t)n + 1) : NULL;
    if (!p)
        return SD_ENOMEM;
    memcpy(p + *len, text, (size_t)n + 1);
    *buf = p;
    *len += (size_t)n;
    return 0;
}

int sd_api_want_access_token(sd_req *r, sd_app *app, bool *want)
{
    const char *v;
    int has = sd_req_query(r, "accessToken", &v);
    *want = false;
    if (has < 0 || (has > 0 && strcmp(v, "true") != 0 && strcmp(v, "false") != 0)) {
        sd_reply_problem(r, 400, "query 'accessToken' must be true or false");
        return -1;
    }
    *want = has > 0 && strcmp(v, "true") == 0;
    if (*want && !sd_api_jwt_enabled(app)) {
        sd_reply_problem(r, 400, "access tokens are not enabled on this server (no --jwt-keys)");
        return -1;
    }
    return 0;
}

static void reply_not_configured(sd_req *r)
{
    sd_reply_problem(r, 404, "access tokens are not enabled on this server (no --jwt-keys)");
}

/* ---- GET /.well-known/jwks.json ------------------------------------------ */

void sd_api_jwks(sd_req *r, void *app_)
{
    sd_app *app = app_;
    pthread_rwlock_rdlock(&app->jwt_lock);
    json_t *set = app->jwt_keys ? sd_jwks_public(app->jwt_keys) : NULL;
    bool on = app->jwt_keys != NULL;
    pthread_rwlock_unlock(&app->jwt_lock);
    if (!on) {
        reply_not_configured(r);
        return;
    }
    if (!set) {
        sd_api_fail(r, SD_ENOMEM, NULL);
        return;
    }
    sd_req_set_cache_control(r, JWKS_CACHE_CONTROL);
    sd_reply_json(r, 200, set, NULL);
}

/* ---- POST /sessions/token -------------------------------------------------- */

static void reply_unauthorized(sd_req *r, const char *detail)
{
    const char *hdr[] = {"WWW-Authenticate", "Bearer error=\"invalid_token\"", NULL};
    sd_reply_problem_with(r, 401, hdr, "%s", detail);
}

/* The optional body: the client's context for a bound session. Returns 0
 * (*body_out owned by the caller, c's strings point into it) or answers
 * 400 and returns -1. */
static int token_context(sd_req *r, sd_check *c, json_t **body_out)
{
    *body_out = NULL;
    size_t blen;
    sd_req_body(r, &blen);
    if (blen == 0)
        return 0;
    json_t *body = sd_api_body(r);
    if (!body)
        return -1;
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        if ((strcmp(key, "ipAddress") != 0 && strcmp(key, "userAgent") != 0) ||
            !json_is_string(v)) {
            sd_reply_problem(r, 400,
                             "the body may only hold 'ipAddress' and 'userAgent', strings (the "
                             "session token goes in 'Authorization: Bearer')");
            json_decref(body);
            return -1;
        }
    }
    c->ip = json_string_value(json_object_get(body, "ipAddress"));
    c->user_agent = json_string_value(json_object_get(body, "userAgent"));
    *body_out = body;
    return 0;
}

void sd_api_session_token(sd_req *r, void *app_)
{
    sd_app *app = app_;
    if (!sd_api_jwt_enabled(app)) {
        reply_not_configured(r);
        return;
    }
    bool other;
    const char *tok = sd_api_bearer(r, &other);
    if (!tok) {
        sd_reply_problem(r, 400,
                         other ? "the Authorization header must use the Bearer scheme"
                               : "send the session token as 'Authorization: Bearer <token>'");
        return;
    }
    sd_check c = {.touch = true};
    json_t *body;
    if (token_context(r, &c, &body))
        return;
    int rc = sd_api_check_token(app, r, tok, strlen(tok), &c);
    json_decref(body);
    if (rc == 0) {
        reply_unauthorized(r, c.binding_mismatch ? "the session is bound to another client context"
                                                 : "the session token is not valid");
        return;
    }
    if (rc < 0) {
        sd_api_fail(r, rc, NULL);
        return;
    }
    const char *jwt = NULL;
    int64_t expires_in = 0;
    rc = sd_api_mint_checked(app, &c, sd_now_ms(), sd_req_arena(r), &jwt, &expires_in);
    sd_session_clear(&c.s);
    if (rc == 0) {
        sd_jw w;
        sd_jw_init(&w, sd_req_arena(r), strlen(jwt) + 64);
        sd_jw_object(&w);
        sd_jw_key(&w, "accessToken");
        sd_jw_str(&w, jwt);
        sd_jw_key(&w, "expiresIn");
        sd_jw_int(&w, expires_in);
        sd_jw_key(&w, "tokenType");
        sd_jw_str(&w, "Bearer");
        sd_jw_end(&w);
        sd_api_reply_jw(r, 200, &w, NULL);
    } else if (rc == SD_ENOTFOUND)
        reply_unauthorized(r, "the session ends within the second: sign in again");
    else
        sd_api_fail(r, rc, NULL);
}

/* ---- GET /revocations ------------------------------------------------------ */

/* The feed's cursor on the wire: "<tx>.<seq>", both decimal. Returns 0, or
 * -1 when text is not one this server issues. */
static int cursor_parse(const char *text, sd_feed_cursor *c)
{
    char *end;
    errno = 0;
    if (strlen(text) > 41 || text[0] < '0' || text[0] > '9')
        return -1;
    long long tx = strtoll(text, &end, 10);
    if (errno || *end != '.' || end[1] < '0' || end[1] > '9')
        return -1;
    const char *s = end + 1;
    long long seq = strtoll(s, &end, 10);
    if (errno || *end || tx < 0 || seq < 0)
        return -1;
    c->tx = tx;
    c->seq = seq;
    return 0;
}

void sd_api_revocations(sd_req *r, void *app_)
{
    sd_app *app = app_;
    int limit;
    if (sd_api_query_limit(r, FEED_DEFAULT_LIMIT, FEED_MAX_LIMIT, &limit))
        return;
    const char *q;
    int has = sd_req_query(r, "since", &q);
    sd_feed_cursor after = {0, 0};
    if (has < 0 || (has > 0 && cursor_parse(q, &after))) {
        sd_reply_problem(r, 400,
                         "query 'since' is not a cursor this server issued (give the "
                         "'next' of an earlier answer, or none)");
        return;
    }
    /* A session revoked longer ago than a token lives has no live token
     * left (none is minted after the revocation), whatever the cursor. */
    int64_t since_time = sd_now_ms() - app->jwt.lifetime_ms - FEED_SLACK_MS;
    sd_event *v;
    size_t n;
    int rc = sd_store_ended(app->store, &after, since_time, limit, &v, &n);
    if (rc) {
        sd_api_fail(r, rc, NULL);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        char t[SD_TIME_TEXT_LEN + 1];
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "sid", v[i].session_id, "revokedAt",
                                             sd_time_format(v[i].time, t), "reason",
                                             v[i].reason[0] ? v[i].reason : "revoked"));
    }
    if (n > 0)
        after = (sd_feed_cursor){v[n - 1].tx, v[n - 1].seq};
    free(v);
    char next[48];
    snprintf(next, sizeof next, "%lld.%lld", (long long)after.tx, (long long)after.seq);
    json_t *body = arr ? json_pack("{s:o, s:s, s:b}", "revocations", arr, "next", next, "more",
                                   n == (size_t)limit)
                       : NULL;
    if (!body) {
        sd_api_fail(r, SD_ENOMEM, NULL);
        return;
    }
    sd_reply_json(r, 200, body, NULL);
}
