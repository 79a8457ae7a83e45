/*
 * validate.c - the hot path. POST /sessions/validate (by token, for gateways
 * and middleware) and GET /sessions/{sessionId}/validate (by id).
 *
 * By token: shape check, SHA-256, one indexed lookup, the domain's expiry
 * check. Rolling expiry writes only when the extension is worth it
 * (touch_fraction) and never waits for that write: the reply reports the
 * extended expiry; if the process dies before the batched write commits, the
 * session keeps its earlier (shorter) expiry - the safe direction.
 *
 * A token that is no session's current one costs one more indexed read: if
 * a rotation or a renewal retired it longer than --refresh-grace ago, it is
 * treated as stolen and its session revoked, on every route that validates
 * (not only on refresh), by a write that is not awaited either.
 *
 * With ?accessToken=true a valid answer also carries a signed access token
 * (tokens.c): one more read of the session's optional fields and one
 * signature, the only heap work of this route.
 */
#include "api/api.h"
#include "audit/audit.h"
#include "metrics/metrics.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/limiter.h"
#include "util/log.h"
#include "util/utf8.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The hot replies are written straight into the request's arena (util/jsonw.h:
 * no JSON tree, no printf, no malloc once the connection is warm). */
#define LIT(s) s, sizeof(s) - 1

static void reply_invalid(sd_req *r)
{
    sd_reply_bytes(r, 200, "application/json", LIT("{\"isValid\":false,\"expiry\":null}"), NULL);
}

/* The one invalid answer that says why: the token is good, the client's
 * context is not what the session is bound to. */
static void reply_mismatch(sd_req *r)
{
    sd_reply_bytes(r, 200, "application/json",
                   LIT("{\"isValid\":false,\"expiry\":null,\"reason\":\"binding_mismatch\"}"),
                   NULL);
}

/* A signal whose action is stepup fired on the session (api/anomaly.c):
 * invalid until it is renewed with mfa. */
static void reply_step_up(sd_req *r)
{
    sd_reply_bytes(r, 200, "application/json",
                   LIT("{\"isValid\":false,\"expiry\":null,\"reason\":\"step_up_required\"}"),
                   NULL);
}

static int guess_wait_at(sd_app *app, sd_req *r, int64_t now)
{
    if (app->guesses && sd_limiter_wait(app->guesses, sd_req_peer(r), now) > 0)
        return SD_ETHROTTLED;
    return 0;
}

int sd_api_guess_wait(sd_app *app, sd_req *r)
{
    return app->guesses ? guess_wait_at(app, r, sd_now_ms()) : 0;
}

void sd_api_guess_failed(sd_app *app, const char *address, const char *actor)
{
    if (app->guesses && sd_limiter_charge(app->guesses, address, sd_now_ms())) {
        sd_warn("client_throttled address=%s reason=failed_validations", address);
        sd_audit_emit("client_throttled", NULL, NULL, actor, address, "failed_validations");
    }
}

/* A failed validation: counted, charged to the client's bucket, and audited
 * with who asked from where (the session when the token was known but has
 * expired). */
static int invalid(sd_app *app, sd_req *r, const sd_session *s, const char *reason)
{
    sd_metrics_validation(0);
    sd_api_guess_failed(app, sd_req_peer(r), sd_req_actor(r));
    sd_audit_emit("validation_failed", s ? s->id : NULL, s ? s->user_id : NULL, sd_req_actor(r),
                  sd_req_peer(r), reason);
    return 0;
}

int sd_api_cut_off(sd_app *app, const sd_session *s)
{
    int64_t nb = 0;
    int rc = sd_store_not_before(app->store, &nb);
    return rc ? rc : s->created_at < nb;
}

void sd_api_validate_id(sd_req *r, void *app_)
{
    sd_app *app = app_;
    const char *id = sd_req_capture(r, 0);
    int64_t now = sd_now_ms(); /* one clock read for the request */
    int rc = guess_wait_at(app, r, now);
    if (rc) {
        sd_api_fail(r, rc, NULL);
        return;
    }
    if (!id || !sd_id_wellformed(id, strlen(id))) {
        invalid(app, r, NULL, "malformed_id");
        reply_invalid(r);
        return;
    }
    char uid[SD_MAX_USER_ID + 1];
    sd_session s;
    rc = sd_store_get(app->store, id, false, &s, uid, sizeof uid);
    int cut = rc == 0 && sd_session_active(&s, now) ? sd_api_cut_off(app, &s) : 0;
    if (cut < 0) {
        sd_session_clear(&s);
        sd_api_fail(r, cut, NULL);
        return;
    }
    if (rc == SD_ENOTFOUND || (rc == 0 && (cut || !sd_session_active(&s, now)))) {
        if (rc == 0) {
            invalid(app, r, &s, cut ? "not_before" : "expired");
            sd_session_clear(&s);
        } else {
            sd_session unknown = {.user_id = NULL};
            snprintf(unknown.id, sizeof unknown.id, "%s", id);
            invalid(app, r, &unknown, "unknown_session");
        }
        reply_invalid(r);
        return;
    }
    if (rc) {
        sd_api_fail(r, rc, NULL);
        return;
    }
    if (app->anomaly_state && (rc = sd_api_anomaly_step_up(app, &s)) != 0) {
        if (rc > 0) { /* not a guess: the throttle is not charged */
            sd_metrics_validation(0);
            sd_audit_emit("validation_failed", s.id, s.user_id, sd_req_actor(r), sd_req_peer(r),
                          "step_up_required");
            reply_step_up(r);
        } else {
            sd_api_fail(r, rc, NULL);
        }
        sd_session_clear(&s);
        return;
    }
    sd_metrics_validation(1);
    sd_jw w;
    sd_jw_init(&w, sd_req_arena(r), 64);
    sd_jw_object(&w);
    sd_jw_key(&w, "isValid");
    sd_jw_bool(&w, true);
    sd_jw_key(&w, "expiry");
    sd_jw_time(&w, s.expiry);
    sd_jw_end(&w);
    sd_api_reply_jw(r, 200, &w, NULL);
    sd_session_clear(&s);
}

/* The hot path's answer:
 * {"isValid":true,"expiry":"...","sessionId":"...","userId":"...",
 * "authTime":"...","acr":"..."}, plus "bindingMismatch":true when the
 * binding policy only flags, and "signals":[...] for flagged anomaly
 * signals. authTime and acr are there when known, for
 * step-up decisions. jwt (borrowed; NULL: none) adds "accessToken" and
 * "accessTokenExpiresIn" (?accessToken=true). */
static void reply_valid(sd_req *r, const sd_check *c, const char *jwt, int64_t jwt_expires_in)
{
    const sd_session *s = &c->s;
    sd_jw w;
    sd_jw_init(&w, sd_req_arena(r), 256);
    sd_jw_object(&w);
    sd_jw_key(&w, "isValid");
    sd_jw_bool(&w, true);
    sd_jw_key(&w, "expiry");
    sd_jw_time(&w, c->expiry);
    sd_jw_key(&w, "sessionId");
    sd_jw_str(&w, s->id);
    sd_jw_key(&w, "userId");
    sd_session_jw_user_id(&w, s);
    if (s->auth_time) {
        sd_jw_key(&w, "authTime");
        sd_jw_time(&w, s->auth_time);
    }
    if (s->acr[0]) {
        sd_jw_key(&w, "acr");
        sd_jw_str(&w, s->acr);
    }
    if (c->binding_mismatch) {
        sd_jw_key(&w, "bindingMismatch");
        sd_jw_bool(&w, true);
    }
    if (c->signals) {
        sd_jw_key(&w, "signals");
        sd_jw_array(&w);
        for (int i = 0; i < SD_SIG_COUNT; i++)
            if (c->signals & (1u << i))
                sd_jw_str(&w, sd_signal_name(i));
        sd_jw_end(&w);
    }
    if (jwt) {
        sd_jw_key(&w, "accessToken");
        sd_jw_str(&w, jwt);
        sd_jw_key(&w, "accessTokenExpiresIn");
        sd_jw_int(&w, jwt_expires_in);
    }
    sd_jw_end(&w);
    sd_api_reply_jw(r, 200, &w, NULL);
}

static void touch_done(sd_write *w)
{
    free(w);
}

/* True with probability p: a per-thread xorshift, seeded from the clock
 * (sampling needs no cryptographic randomness). */
static bool sample(double p)
{
    static _Thread_local uint64_t x;
    if (!x)
        x = (uint64_t)sd_mono_ns() | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return (double)(x >> 11) * 0x1.0p-53 < p;
}

static void reuse_done(sd_write *w)
{
    switch (w->rc) {
    case SD_EREUSED:
        sd_warn("token_reuse_detected session=%s address=%s action=revoked", w->id, w->address);
        break;
    case SD_ENOTFOUND: /* ended meanwhile (another presentation of the token, a DELETE) */
    case SD_ECONFLICT:
    case SD_EMISMATCH:
        break;
    default:
        sd_error("token_reuse_detected session=%s address=%s action=none: the revocation "
                 "failed (%s); the token's next presentation tries again",
                 w->id, w->address, sd_strerror(w->rc));
    }
    free(w);
}

/* A well-formed token that is no session's current one: unknown, or
 * retired by a rotation or a renewal (RFC 9700 section 4.14.2). Retired
 * within --refresh-grace, it is a race between one client's requests: only
 * invalid. Retired longer ago, a stolen token is in use: the session is
 * revoked (history token_reuse, event token_reuse_detected) by an
 * SD_W_REUSE write that the writer decides again under its lock. Only that
 * case writes, and only while the session lives (the first such write to
 * land ends it): an unknown token (a guess) costs one indexed read and
 * never reaches the writer. The write is not awaited (the
 * answer is invalid whatever it does); its completion logs the outcome.
 * Returns 0 (invalid, audited and charged like any failure) or a store
 * error. */
static int not_current(sd_app *app, sd_req *r, const unsigned char hash[SD_HASH_LEN], int64_t now)
{
    sd_session retired = {.user_id = NULL};
    int64_t rotated_at = 0;
    int rc = sd_store_get_rotated(app->store, hash, retired.id, &rotated_at);
    if (rc == SD_ENOTFOUND)
        return invalid(app, r, NULL, "unknown_token");
    if (rc)
        return rc;
    if (sd_rotation_decide(false, true, rotated_at, now, app->policy.refresh_grace_ms) ==
        SD_ROTATE_RACE)
        return invalid(app, r, &retired, "token_rotated");
    sd_session s;
    rc = sd_store_get(app->store, retired.id, false, &s, NULL, 0);
    if (rc == SD_ENOTFOUND || (rc == 0 && !sd_session_active(&s, now))) {
        if (rc == 0)
            sd_session_clear(&s);
        return invalid(app, r, &retired, "token_reuse"); /* nothing left to revoke */
    }
    if (rc)
        return rc;
    sd_write *w = calloc(1, sizeof *w);
    if (!w) {
        sd_session_clear(&s);
        return SD_ENOMEM;
    }
    w->kind = SD_W_REUSE;
    w->now = now;
    w->policy = &app->policy;
    memcpy(w->id, s.id, sizeof w->id);
    memcpy(w->presented_hash, hash, SD_HASH_LEN);
    snprintf(w->actor, sizeof w->actor, "%s", sd_req_actor(r));
    snprintf(w->address, sizeof w->address, "%s", sd_req_peer(r));
    w->done = reuse_done;
    sd_store_write(app->store, w);
    invalid(app, r, &s, "token_reuse");
    sd_session_clear(&s);
    return 0;
}

int sd_api_check_token(sd_app *app, sd_req *r, const char *token, size_t len, sd_check *c)
{
    sd_session *s = &c->s;
    c->binding_mismatch = c->unforwardable = false;
    c->signals = 0;
    c->refused = NULL;
    int64_t now = sd_now_ms(); /* one clock read for the request */
    int rc = guess_wait_at(app, r, now);
    if (rc)
        return rc;
    if (!sd_token_wellformed(token, len))
        return invalid(app, r, NULL, "malformed_token");
    unsigned char hash[SD_HASH_LEN];
    sd_token_hash(token, len, hash);
    rc = sd_store_get_by_token(app->store, hash, false, s, c->user_id_buf, sizeof c->user_id_buf);
    if (rc == SD_ENOTFOUND)
        return not_current(app, r, hash, now);
    if (rc == 0 && !sd_session_active(s, now)) {
        invalid(app, r, s, "expired");
        sd_session_clear(s);
        return 0;
    }
    if (rc)
        return rc;
    if ((rc = sd_api_cut_off(app, s))) { /* created before the global not-before */
        if (rc == 1)
            invalid(app, r, s, "not_before");
        sd_session_clear(s);
        return rc == 1 ? 0 : rc;
    }
    if (c->to_header && sd_ident_check(s->user_id, strlen(s->user_id), SD_MAX_USER_ID)) {
        /* Stored before the identifier rule: a gateway would strip or split
         * the id on its way to the application. Not a guess: the throttle
         * is not charged. */
        c->unforwardable = true;
        sd_warn("forward_auth_refused session=%s reason=user_id_not_forwardable", s->id);
        sd_metrics_validation(0);
        sd_audit_emit("validation_failed", s->id, s->user_id, sd_req_actor(r), sd_req_peer(r),
                      "user_id_not_forwardable");
        sd_session_clear(s);
        return 0;
    }
    if (s->binding.flags && !sd_binding_matches(&s->binding, c->ip, c->user_agent)) {
        /* A stolen token used from elsewhere, or a client that moved. */
        bool enforce = app->policy.bind_enforce;
        c->binding_mismatch = true;
        sd_warn("binding_mismatch session=%s address=%s action=%s", s->id, sd_req_peer(r),
                enforce ? "rejected" : "flagged");
        sd_audit_emit("binding_mismatch", s->id, s->user_id, sd_req_actor(r), sd_req_peer(r),
                      enforce ? "rejected" : "flagged");
        if (enforce) {
            sd_metrics_validation(0);
            sd_session_clear(s);
            return 0;
        }
    }
    if (c->has_geo || app->anomaly_state) { /* the geofence, anomaly signals (anomaly.c) */
        if ((rc = sd_api_anomaly_check(app, r, c, now)) != 1) {
            sd_session_clear(s);
            return rc;
        }
    }
    c->expiry = s->expiry;
    int64_t extended;
    if (c->touch && sd_session_touch(s, &app->policy, now, &extended)) {
        sd_write *w = calloc(1, sizeof *w);
        if (w) {
            w->kind = SD_W_TOUCH;
            w->now = now;
            memcpy(w->id, s->id, sizeof w->id);
            w->touch_expiry = extended;
            w->touch_version = s->version;
            w->done = touch_done;
            sd_store_write(app->store, w);
            c->expiry = extended;
        }
    }
    sd_metrics_validation(1);
    if (app->audit_sample > 0 && sample(app->audit_sample))
        sd_audit_emit("validated", s->id, s->user_id, sd_req_actor(r), sd_req_peer(r), "sampled");
    return 1;
}

/* ---- the body of POST /sessions/validate --------------------------------- */

/* The body as it nearly always comes: one JSON object whose members are
 * among "token", "ipAddress" and "userAgent", each once, with string values
 * free of escapes, of control bytes and of invalid UTF-8. Read without
 * jansson (whose tree costs about nine heap calls), into the request's
 * arena. Anything else - other members or values, escapes, duplicates,
 * bad JSON - returns false and goes to jansson as before, so every error
 * answer stays jansson's; this accepts only texts jansson reads the same. */
static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* A plain string at p (its opening quote): *s and *n its bytes; NULL when
 * it is not plain. */
static const char *plain_string(const char *p, const char *end, const char **s, size_t *n)
{
    if (p == end || *p != '"')
        return NULL;
    const unsigned char *q = (const unsigned char *)p + 1, *e = (const unsigned char *)end;
    while (q < e && *q != '"') {
        uint32_t cp;
        size_t k = *q < 0x80 ? 1 : sd_utf8_next(q, (size_t)(e - q), &cp);
        if (k == 0 || *q < 0x20 || *q == '\\')
            return NULL;
        q += k;
    }
    if (q == e)
        return NULL;
    *s = p + 1;
    *n = (size_t)((const char *)q - *s);
    return (const char *)q + 1;
}

static bool body_plain(sd_req *r, const char *b, size_t len, const char **tok, sd_check *c)
{
    static const char *const keys[] = {"token", "ipAddress", "userAgent"};
    const char *vals[3] = {NULL, NULL, NULL};
    const char *p = skip_ws(b, b + len), *end = b + len;
    if (p == end || *p++ != '{')
        return false;
    p = skip_ws(p, end);
    bool first = true;
    while (p < end && *p != '}') {
        if (!first && (*p++ != ',' || (p = skip_ws(p, end)) == end))
            return false;
        first = false;
        const char *k, *v;
        size_t kn, vn;
        int which = -1;
        if (!(p = plain_string(p, end, &k, &kn)))
            return false;
        for (int i = 0; i < 3; i++)
            if (kn == strlen(keys[i]) && memcmp(k, keys[i], kn) == 0)
                which = i;
        p = skip_ws(p, end);
        if (which < 0 || vals[which] || p == end || *p++ != ':')
            return false;
        if (!(p = plain_string(skip_ws(p, end), end, &v, &vn)) ||
            !(vals[which] = sd_arena_strndup(sd_req_arena(r), v, vn)))
            return false;
        p = skip_ws(p, end);
    }
    if (p == end || skip_ws(p + 1, end) != end)
        return false;
    *tok = vals[0];
    c->ip = vals[1];
    c->user_agent = vals[2];
    return true;
}

/* Finds the token: Authorization: Bearer, or {"token": "..."}. Copies it
 * into out (at most SD_TOKEN_LEN + 1 bytes kept, *len the real length).
 * The body may also give the client's context ("ipAddress", "userAgent")
 * for bound sessions: c points into *body_out, which the caller releases.
 * Returns 0, or answers 400 and returns -1. */
static int find_token(sd_req *r, char *out, size_t *len, json_t **body_out, sd_check *c)
{
    bool other;
    const char *tok = sd_api_bearer(r, &other);
    json_t *body = NULL;
    if (other) {
        sd_reply_problem(r, 400, "the Authorization header must use the Bearer scheme");
        return -1;
    }
    size_t blen;
    const char *text = sd_req_body(r, &blen), *in_body = NULL;
    if (blen > 0 && !body_plain(r, text, blen, &in_body, c)) {
        body = sd_api_body(r);
        if (!body)
            return -1;
        const char *key;
        json_t *v;
        json_object_foreach(body, key, v)
        {
            if (strcmp(key, "geoLocation") == 0 && json_is_object(v))
                continue;
            if ((strcmp(key, "token") != 0 && strcmp(key, "ipAddress") != 0 &&
                 strcmp(key, "userAgent") != 0) ||
                !json_is_string(v)) {
                sd_reply_problem(r, 400,
                                 "the body may only hold 'token', 'ipAddress' and 'userAgent', "
                                 "strings, and 'geoLocation', an object");
                json_decref(body);
                return -1;
            }
        }
        char err[160];
        json_t *geo = json_object_get(body, "geoLocation");
        if (geo && sd_geo_parse(geo, &c->geo, err, sizeof err)) {
            sd_reply_problem(r, 400, "%s", err);
            json_decref(body);
            return -1;
        }
        c->has_geo = geo && (c->geo.has_point || c->geo.country[0]);
        c->ip = json_string_value(json_object_get(body, "ipAddress"));
        c->user_agent = json_string_value(json_object_get(body, "userAgent"));
        in_body = json_string_value(json_object_get(body, "token"));
    }
    if (in_body && tok) {
        sd_reply_problem(r, 400,
                         "give the token in the Authorization header or the "
                         "body, not both");
        json_decref(body);
        return -1;
    }
    if (in_body)
        tok = in_body;
    if (!tok) {
        sd_reply_problem(r, 400,
                         "no token: send 'Authorization: Bearer <token>' or "
                         "{\"token\": \"...\"}");
        json_decref(body);
        return -1;
    }
    *len = strlen(tok);
    size_t n = *len < SD_TOKEN_LEN ? *len : SD_TOKEN_LEN;
    memcpy(out, tok, n);
    out[n] = '\0';
    *body_out = body;
    return 0;
}

void sd_api_validate_token(sd_req *r, void *app_)
{
    sd_app *app = app_;
    bool touch = true;
    const char *q;
    int has = sd_req_query(r, "touch", &q);
    if (has < 0 ||
        (has == 1 && strcmp(q, "true") && strcmp(q, "false") && strcmp(q, "1") && strcmp(q, "0"))) {
        sd_reply_problem(r, 400, "query 'touch' must be true or false");
        return;
    }
    if (has == 1 && (strcmp(q, "false") == 0 || strcmp(q, "0") == 0))
        touch = false;
    bool want_jwt; /* ?accessToken=true: a signed access token too */
    if (sd_api_want_access_token(r, app, &want_jwt))
        return;

    char token[SD_TOKEN_LEN + 1];
    size_t len;
    json_t *body = NULL;
    sd_check c = {.touch = touch};
    if (find_token(r, token, &len, &body, &c))
        return;
    int rc = sd_api_check_token(app, r, token, len, &c);
    OPENSSL_cleanse(token, sizeof token);
    json_decref(body);
    if (rc == 0) {
        if (c.refused && strcmp(c.refused, "geofence") == 0)
            sd_reply_problem(r, 403,
                             "the session cannot be used from country %s: the geofence refuses "
                             "it",
                             c.geo.country);
        else if (c.refused && strcmp(c.refused, "step_up_required") == 0)
            reply_step_up(r);
        else if (c.binding_mismatch)
            reply_mismatch(r);
        else
            reply_invalid(r);
        return;
    }
    if (rc < 0) {
        sd_api_fail(r, rc, NULL);
        return;
    }
    const char *jwt = NULL;
    int64_t expires_in = 0;
    if (want_jwt) {
        /* Minting may allocate; the plain path above does not. A session
         * that ends within the second is valid without a token (as on
         * refresh). */
        rc = sd_api_mint_checked(app, &c, sd_now_ms(), sd_req_arena(r), &jwt, &expires_in);
        if (rc && rc != SD_ENOTFOUND) {
            sd_session_clear(&c.s);
            sd_api_fail(r, rc, NULL);
            return;
        }
    }
    reply_valid(r, &c, jwt, expires_in);
    sd_session_clear(&c.s);
}
