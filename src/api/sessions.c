/*
 * sessions.c - POST /sessions, GET/PUT/DELETE /sessions/{sessionId}.
 *
 * Writes go to the store asynchronously; the reply is sent from the write's
 * completion, after the write is durable.
 */
#include "api/api.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The path's session id, or NULL after answering 404 for a malformed one. */
static const char *path_id(sd_req *r)
{
    const char *id = sd_req_capture(r, 0);
    if (!id || !sd_id_wellformed(id, strlen(id))) {
        sd_reply_problem(r, 404, "no active session with this id");
        return NULL;
    }
    return id;
}

/* ---- create ------------------------------------------------------------ */

static void create_done(sd_write *w)
{
    sd_api_write *c = w->udata;
    char q[SD_LOG_QUOTED(SD_MAX_USER_ID)];
    const char *user = sd_log_quote(w->session.user_id, q, sizeof q);
    if (w->rc) {
        if (w->rc == SD_ELIMIT)
            sd_warn("excess_sessions_exceeded user=%s refused", user);
        sd_api_fail(c->req, w->rc, w->detail);
    } else {
        char location[64];
        snprintf(location, sizeof location, "/sessions/%s", w->session.id);
        if (w->affected > 0)
            sd_info("excess_sessions_exceeded user=%s evicted=%lld (least recently seen)", user,
                    (long long)w->affected);
        sd_info("session_created session=%s user=%s", w->session.id, user);
        sd_api_anomaly_log(w, w->session.id);
        sd_api_reply_session(c->req, 201, &w->session, c->token, location);
    }
    sd_api_write_free(c);
}

void sd_api_session_create(sd_req *r, void *app_)
{
    sd_app *app = app_;
    json_t *body = sd_api_body(r);
    if (!body)
        return;
    sd_api_write *c = sd_api_write_new(r, app, SD_W_CREATE, create_done);
    if (!c) {
        json_decref(body);
        return;
    }
    c->body = body;
    char err[256] = "";
    int rc = sd_session_from_create(body, &app->policy, c->w.now, &c->w.session, c->token, err,
                                    sizeof err);
    if (rc) {
        if (rc == SD_ERANDOM)
            sd_error("random source failed: no session created");
        sd_api_fail(r, rc, err);
        sd_api_write_free(c);
        return;
    }
    if (sd_api_anomaly_create(app, r, c)) {
        sd_api_write_free(c);
        return;
    }
    sd_store_write(app->store, &c->w);
}

/* ---- get ----------------------------------------------------------------- */

void sd_api_session_get(sd_req *r, void *app_)
{
    sd_app *app = app_;
    const char *id = path_id(r);
    if (!id)
        return;
    sd_precond pre;
    if (sd_api_preconds(r, &pre))
        return;
    sd_session s;
    int rc = sd_store_get(app->store, id, true, &s, NULL, 0);
    int cut = rc == 0 ? sd_api_cut_off(app, &s) : 0;
    if (rc == 0 && (cut || !sd_session_active(&s, sd_now_ms()))) {
        sd_session_clear(&s);
        rc = cut < 0 ? cut : SD_ENOTFOUND;
    }
    if (rc) {
        sd_api_fail(r, rc, NULL);
        return;
    }
    if (sd_api_precond_answer(r, &pre, s.version) == 0)
        sd_api_reply_session(r, 200, &s, NULL, NULL);
    sd_session_clear(&s);
}

/* ---- update -------------------------------------------------------------- */

static void update_done(sd_write *w)
{
    sd_api_write *c = w->udata;
    if (w->rc) {
        sd_api_fail_write(c->req, w);
    } else {
        if (w->renewed)
            sd_info("session_renewed session=%s reason=privilege_raised", w->session.id);
        /* A renewed token is shown once, here; the old one no longer works. */
        sd_api_reply_session(c->req, 200, &w->session, w->renewed ? c->token : NULL, NULL);
    }
    sd_api_write_free(c);
}

void sd_api_session_update(sd_req *r, void *app_)
{
    sd_app *app = app_;
    const char *id = path_id(r);
    if (!id)
        return;
    json_t *body = sd_api_body(r);
    if (!body)
        return;
    sd_api_write *c = sd_api_write_new(r, app, SD_W_UPDATE, update_done);
    if (!c) {
        json_decref(body);
        return;
    }
    c->body = body;
    char err[256] = "";
    int rc = sd_patch_parse(body, &app->policy, &c->patch, err, sizeof err);
    if (rc) {
        sd_api_fail(r, rc, err);
        sd_api_write_free(c);
        return;
    }
    if (sd_api_preconds(r, &c->pre)) {
        sd_api_write_free(c);
        return;
    }
    c->patch.pre = &c->pre;
    /* Setting mfa true may raise the privilege: have a new token ready (the
     * writer uses it only if mfa really goes from false to true). */
    if (json_is_true(json_object_get(body, "mfa"))) {
        if (sd_token_mint(c->token)) {
            sd_api_fail(r, SD_ERANDOM, NULL);
            sd_api_write_free(c);
            return;
        }
        sd_token_hash(c->token, SD_TOKEN_LEN, c->w.renew_hash);
        c->w.renew_possible = true;
    }
    memcpy(c->w.id, id, SD_ID_LEN + 1);
    c->w.patch = &c->patch;
    sd_store_write(app->store, &c->w);
}

/* ---- delete -------------------------------------------------------------- */

static void delete_done(sd_write *w)
{
    sd_api_write *c = w->udata;
    if (w->rc) {
        sd_api_fail_write(c->req, w);
    } else {
        sd_info("session_logout session=%s", w->id);
        sd_reply_json(c->req, 204, NULL, NULL);
    }
    sd_api_write_free(c);
}

void sd_api_session_delete(sd_req *r, void *app_)
{
    sd_app *app = app_;
    const char *id = path_id(r);
    if (!id)
        return;
    sd_api_write *c = sd_api_write_new(r, app, SD_W_END, delete_done);
    if (!c)
        return;
    if (sd_api_preconds(r, &c->pre)) {
        sd_api_write_free(c);
        return;
    }
    if (sd_precond_any(&c->pre)) /* evaluated by the writer, on the row it ends */
        c->w.precond = &c->pre;
    memcpy(c->w.id, id, SD_ID_LEN + 1);
    c->w.reason = "revoked";
    sd_store_write(app->store, &c->w);
}

/* ---- refresh (token rotation) -------------------------------------------- */

/* The members refresh adds when asked for an access token:
 * accessToken and accessTokenExpiresIn, or nothing when the session ends
 * within the second (the rotation stands; the new session token is in the
 * answer). */
static json_t *access_token(sd_app *app, const sd_session *s)
{
    /* This runs on a backend thread (the write's completion): an arena of
     * its own, not the request's. */
    char first[2048];
    sd_arena a;
    sd_arena_init(&a, first, sizeof first);
    const char *jwt = NULL;
    int64_t expires_in = 0;
    int rc = sd_api_mint(app, s, sd_now_ms(), &a, &jwt, &expires_in);
    json_t *o = rc ? NULL
                   : json_pack("{s:s, s:I}", "accessToken", jwt, "accessTokenExpiresIn",
                               (json_int_t)expires_in);
    sd_arena_reset(&a);
    if (rc)
        sd_warn("refresh: no access token for session=%s: %s", s->id, sd_strerror(rc));
    return o;
}

static void refresh_done(sd_write *w)
{
    sd_api_write *c = w->udata;
    const char *hdr[] = {"WWW-Authenticate", "Bearer", NULL};
    char q[SD_LOG_QUOTED(SD_MAX_USER_ID)];
    switch (w->rc) {
    case 0:
        sd_info("session_refreshed session=%s user=%s", w->session.id,
                sd_log_quote(w->session.user_id, q, sizeof q));
        sd_api_reply_session_with(c->req, 200, &w->session, c->token, NULL,
                                  c->want_jwt ? access_token(c->app, &w->session) : NULL);
        break;
    case SD_ECONFLICT:
        sd_reply_problem(c->req, 409,
                         "this token was rotated moments ago by another request; use "
                         "the token that request received");
        break;
    case SD_EREUSED:
        sd_warn("token_reuse_detected session=%s action=revoked", w->id);
        sd_reply_problem_with(c->req, 401, hdr,
                              "token reuse detected: this token was rotated away earlier, so the "
                              "session has been revoked (sign in again)");
        break;
    case SD_EMISMATCH:
        sd_api_guess_failed(c->app, c->w.address, c->w.actor);
        sd_reply_problem_with(c->req, 401, hdr, "the token does not belong to this session");
        break;
    default:
        sd_api_fail(c->req, w->rc, w->detail);
    }
    sd_api_write_free(c);
}

void sd_api_session_refresh(sd_req *r, void *app_)
{
    sd_app *app = app_;
    const char *id = path_id(r);
    if (!id)
        return;
    const char *tok = sd_api_bearer(r, NULL);
    if (!tok) {
        sd_reply_problem(r, 400,
                         "send the session's current token as 'Authorization: Bearer "
                         "<token>'");
        return;
    }
    /* ?accessToken=true: a JWT access token with the new session token. */
    bool want_jwt;
    if (sd_api_want_access_token(r, app, &want_jwt))
        return;
    int rc = sd_api_guess_wait(app, r);
    if (rc) {
        sd_api_fail(r, rc, NULL);
        return;
    }
    size_t len = strlen(tok);
    if (!sd_token_wellformed(tok, len)) {
        sd_api_guess_failed(app, sd_req_peer(r), sd_req_actor(r));
        const char *hdr[] = {"WWW-Authenticate", "Bearer", NULL};
        sd_reply_problem_with(r, 401, hdr, "the token does not belong to this session");
        return;
    }
    sd_api_write *c = sd_api_write_new(r, app, SD_W_ROTATE, refresh_done);
    if (!c)
        return;
    c->want_jwt = want_jwt;
    sd_token_hash(tok, len, c->w.presented_hash);
    if (sd_token_mint(c->token)) {
        sd_error("random source failed: no token rotated");
        sd_api_fail(r, SD_ERANDOM, NULL);
        sd_api_write_free(c);
        return;
    }
    sd_token_hash(c->token, SD_TOKEN_LEN, c->w.session.token_hash);
    memcpy(c->w.id, id, SD_ID_LEN + 1);
    sd_store_write(app->store, &c->w);
}
