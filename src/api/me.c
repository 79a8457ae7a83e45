/*
 * me.c - the self-service API: a user's own devices, authenticated by the
 * user's own session token (Authorization: Bearer, or the --auth-cookie
 * cookie), never by an API key (the routes are public in routes.c; the
 * token is the credential).
 *
 * GET    /me/sessions       my active sessions, "current" marking this one
 * DELETE /me/sessions       sign out every other device (this one stays)
 * DELETE /me/sessions/{id}  sign out one of my sessions (this one included);
 *                           If-Match / If-None-Match as on /sessions/{id},
 *                           evaluated by the writer after the owner check
 *
 * The token goes through the validation core (sd_api_check_token), so the
 * guessing throttle, client binding (the connection's address and
 * User-Agent), rolling expiry and reuse detection apply as on validation.
 * A token reaches only its own user's sessions: another user's session id
 * answers 404, as an unknown one does, so ids do not reveal existence.
 * Revocations go through the write path (SD_W_END with the owner,
 * SD_W_END_USER with except) with the actor "self:<sessionId>", so the
 * audit trail says which session signed the others out.
 */
#include "api/api.h"
#include "util/err.h"
#include "util/log.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The fields a user sees of a session: where and when, never the
 * application's `data`, the binding or the token. */
static json_t *device_json(const sd_session *s, const char *current_id)
{
    json_t *full = sd_session_to_json(s), *o = json_object();
    if (!full || !o) {
        json_decref(full);
        json_decref(o);
        return NULL;
    }
    json_object_set_new(o, "sessionId", json_string(s->id));
    json_object_set_new(o, "current", json_boolean(strcmp(s->id, current_id) == 0));
    static const char *const shown[] = {"deviceId",    "deviceInfo", "userAgent", "ipAddress",
                                        "geoLocation", "mfa",        "authTime",  "createdAt",
                                        "lastSeen",    "expiry",     "version"};
    for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++) {
        json_t *v = json_object_get(full, shown[i]);
        if (v)
            json_object_set(o, shown[i], v);
    }
    json_decref(full);
    return o;
}

/* A state-changing request that authenticates by cookie must come from a
 * page of this origin: a browser sends Origin on such a fetch, and one
 * naming another host is a cross-site request riding the user's cookie
 * (CSRF). Compares Origin's authority with Host. Returns 1 after answering
 * 403. */
static int cross_site(sd_req *r)
{
    const char *origin = sd_req_header(r, "Origin"), *host = sd_req_header(r, "Host");
    if (!origin || strcmp(sd_req_method(r), "GET") == 0 || strcmp(sd_req_method(r), "HEAD") == 0)
        return 0;
    const char *auth = strstr(origin, "://");
    if (auth && host && strcasecmp(auth + 3, host) == 0)
        return 0;
    sd_warn("self_service_refused reason=cross_site_origin origin=%.64s request=%s", origin,
            sd_req_id(r));
    sd_reply_problem(r, 403,
                     "a %s authenticated by the session cookie must come from a page of this "
                     "origin, and Origin '%.64s' is another; send the token in "
                     "'Authorization: Bearer' instead",
                     sd_req_method(r), origin);
    return 1;
}

/* Authenticates the caller by its session token through the validation
 * core. Returns 0 with c->s (the caller's session; the caller clears it) and
 * the request's actor set to "self:<sessionId>", or -1 after answering
 * (401 without a valid token, 429 throttled, 403 cross-site, 503). */
static int authenticate(sd_req *r, sd_app *app, sd_check *c)
{
    if (sd_api_protected_mode(app) && sd_api_loopback_only(r))
        return -1;
    size_t len;
    bool cookie;
    const char *tok = sd_api_request_token(r, app, &len, &cookie);
    const char *hdr[] = {"WWW-Authenticate", "Bearer", NULL};
    if (!tok) {
        sd_reply_problem_with(r, 401, hdr,
                              "no session token: send 'Authorization: Bearer <token>' or the "
                              "session cookie ('%s')",
                              app->auth_cookie);
        return -1;
    }
    if (cookie && cross_site(r))
        return -1;
    char token[SD_TOKEN_LEN + 1];
    size_t n = len < SD_TOKEN_LEN ? len : SD_TOKEN_LEN;
    memcpy(token, tok, n);
    token[n] = '\0';
    *c = (sd_check){.touch = true, /* the user is active on this device */
                    .ip = sd_req_peer(r),
                    .user_agent = sd_req_header(r, "User-Agent")};
    int rc = sd_api_check_token(app, r, token, len, c);
    OPENSSL_cleanse(token, sizeof token);
    if (rc < 0) {
        sd_api_fail(r, rc, NULL);
        return -1;
    }
    if (rc == 0) {
        sd_reply_problem_with(r, 401, hdr, "%s",
                              c->binding_mismatch
                                  ? "the session is bound to another client context"
                                  : "the session token is unknown, expired or revoked");
        return -1;
    }
    char actor[8 + SD_ID_LEN];
    snprintf(actor, sizeof actor, "self:%s", c->s.id);
    sd_req_set_actor(r, actor);
    return 0;
}

void sd_api_me_list(sd_req *r, void *app_)
{
    sd_app *app = app_;
    sd_check c;
    if (authenticate(r, app, &c))
        return;
    sd_session *v;
    size_t n, shown;
    json_t *next;
    if (sd_api_user_page(r, app, c.s.user_id, &v, &n, &shown, &next) == 0) {
        json_t *arr = json_array();
        for (size_t i = 0; i < shown; i++)
            json_array_append_new(arr, device_json(&v[i], c.s.id));
        sd_sessions_free(v, n);
        sd_reply_json(r, 200,
                      json_pack("{s:s, s:s, s:o, s:o}", "userId", c.s.user_id, "currentSessionId",
                                c.s.id, "sessions", arr, "nextCursor", next),
                      NULL);
    }
    sd_session_clear(&c.s);
}

static void end_done(sd_write *w)
{
    sd_api_write *c = w->udata;
    if (w->rc) {
        sd_api_fail_write(c->req, w);
    } else {
        sd_info("self_service_revoked actor=%s session=%s count=%lld", w->actor,
                w->kind == SD_W_END ? w->id : "others", (long long)w->affected);
        if (w->kind == SD_W_END)
            sd_reply_json(c->req, 204, NULL, NULL);
        else
            sd_reply_json(c->req, 200, json_pack("{s:I}", "deleted", (json_int_t)w->affected),
                          NULL);
    }
    sd_api_write_free(c);
}

/* Starts the revocation of the user's session id (SD_W_END) or of the
 * user's other sessions (SD_W_END_USER). Clears chk's session. */
static void revoke(sd_req *r, sd_app *app, sd_check *chk, sd_write_kind kind, const char *id)
{
    sd_api_write *c = sd_api_write_new(r, app, kind, end_done);
    if (c && kind == SD_W_END && sd_api_preconds(r, &c->pre)) { /* answered 400 */
        sd_session_clear(&chk->s);
        sd_api_write_free(c);
        return;
    }
    /* The write borrows the user id and this session's id from c->body,
     * which lives as long as the write. */
    json_t *who =
        c ? json_pack("{s:s, s:s}", "userId", chk->s.user_id, "sessionId", chk->s.id) : NULL;
    sd_session_clear(&chk->s);
    if (!c)
        return;
    if (!who) {
        sd_api_fail(r, SD_ENOMEM, NULL);
        sd_api_write_free(c);
        return;
    }
    c->body = who;
    c->w.user_id = json_string_value(json_object_get(who, "userId"));
    if (kind == SD_W_END) {
        snprintf(c->w.id, sizeof c->w.id, "%s", id);
        c->w.reason = "revoked";
        if (sd_precond_any(&c->pre)) /* evaluated by the writer, as on /sessions/{id} */
            c->w.precond = &c->pre;
    } else {
        c->w.except_id = json_string_value(json_object_get(who, "sessionId"));
        c->w.reason = "user_revoked";
    }
    sd_store_write(app->store, &c->w);
}

void sd_api_me_revoke(sd_req *r, void *app_)
{
    sd_app *app = app_;
    const char *id = sd_req_capture(r, 0);
    if (!id || !sd_id_wellformed(id, strlen(id))) {
        sd_reply_problem(r, 400, "sessionId in the path is not a session id");
        return;
    }
    sd_check c;
    if (authenticate(r, app, &c))
        return;
    revoke(r, app, &c, SD_W_END, id);
}

void sd_api_me_revoke_others(sd_req *r, void *app_)
{
    sd_app *app = app_;
    sd_check c;
    if (authenticate(r, app, &c))
        return;
    revoke(r, app, &c, SD_W_END_USER, NULL);
}
