/*
 * sessions.c - the single-session calls of libsessiond-client: create, get,
 * update, delete, refresh, and the three ways to check a token or id
 * (validate by token, validate by id, RFC 7662 introspection).
 */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sends body (a JSON object, consumed) and reads a session back. */
static int session_call(sd_client *c, sdc_req *req, json_t *body, sd_client_session **out)
{
    char *text = NULL;
    json_t *resp = NULL;
    int rc = SD_CLIENT_ENOMEM;
    if (body) {
        text = sdc__dumps(body);
        if (!text)
            goto out;
        req->body = text;
        req->body_len = strlen(text);
        req->content_type = "application/json";
    }
    rc = sdc__exchange_json(c, req, &resp);
    if (rc == 0 && out)
        rc = sdc__session_from_json(resp, out);
    if (rc == SD_CLIENT_EPROTO && !c->detail[0])
        sdc__set_detail(c, "the response is not a session");
out:
    json_decref(body);
    json_decref(resp);
    free(text);
    return rc;
}

/* Adds key: parsed JSON text; SD_CLIENT_EINVAL when text is not JSON. */
static int set_json_text(sd_client *c, json_t *o, const char *key, const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    if (!v) {
        sdc__set_detail(c, "'%s' is not valid JSON: %s", key, e.text);
        return SD_CLIENT_EINVAL;
    }
    return json_object_set_new(o, key, v) ? SD_CLIENT_ENOMEM : 0;
}

static int set_str(json_t *o, const char *key, const char *v)
{
    return v && json_object_set_new(o, key, json_string(v)) ? SD_CLIENT_ENOMEM : 0;
}

int sd_client_create(sd_client *c, const sd_client_new_session *req, sd_client_session **out)
{
    return sd_client_create_with_lifetime(c, req, 0, out);
}

int sd_client_create_with_lifetime(sd_client *c, const sd_client_new_session *req,
                                   int64_t lifetime_seconds, sd_client_session **out)
{
    if (!c || !req || !req->user_id || !out || lifetime_seconds < 0)
        return SD_CLIENT_EINVAL;
    *out = NULL;
    c->detail[0] = '\0';
    json_t *o = json_object();
    int rc = o ? 0 : SD_CLIENT_ENOMEM;
    if (!rc)
        rc = set_str(o, "userId", req->user_id);
    if (!rc)
        rc = set_str(o, "deviceId", req->device_id);
    if (!rc)
        rc = set_str(o, "deviceInfo", req->device_info);
    if (!rc)
        rc = set_str(o, "userAgent", req->user_agent);
    if (!rc)
        rc = set_str(o, "ipAddress", req->ip_address);
    if (!rc && req->geo_location)
        rc = set_json_text(c, o, "geoLocation", req->geo_location);
    if (!rc && req->data)
        rc = set_json_text(c, o, "data", req->data);
    if (!rc && req->mfa)
        rc = json_object_set_new(o, "mfa", json_true()) ? SD_CLIENT_ENOMEM : 0;
    if (!rc && req->ttl_seconds > 0)
        rc = json_object_set_new(o, "ttlSeconds", json_integer(req->ttl_seconds)) ? SD_CLIENT_ENOMEM
                                                                                  : 0;
    if (!rc && lifetime_seconds > 0)
        rc = json_object_set_new(o, "lifetimeSeconds", json_integer(lifetime_seconds))
                 ? SD_CLIENT_ENOMEM
                 : 0;
    if (!rc && (req->bind_ip || req->bind_user_agent)) {
        json_t *b = json_object();
        if (!b || (req->bind_ip && json_object_set_new(b, "ip", json_true())) ||
            (req->bind_user_agent && json_object_set_new(b, "userAgent", json_true())) ||
            json_object_set_new(o, "bind", b))
            rc = SD_CLIENT_ENOMEM;
    }
    if (rc) {
        json_decref(o);
        return rc;
    }
    sdc_req r = {.method = "POST", .path = "/sessions"};
    return session_call(c, &r, o, out);
}

int sd_client_get(sd_client *c, const char *session_id, sd_client_session **out)
{
    if (!c || !session_id || !out)
        return SD_CLIENT_EINVAL;
    *out = NULL;
    char *path = sdc__path(c, "/sessions", session_id, "");
    if (!path)
        return SD_CLIENT_ENOMEM;
    sdc_req r = {.method = "GET", .path = path};
    int rc = session_call(c, &r, NULL, out);
    free(path);
    return rc;
}

static json_t *update_body(sd_client *c, const sd_client_update *u, int *rc)
{
    json_t *o = json_object();
    *rc = o ? 0 : SD_CLIENT_ENOMEM;
    if (!*rc && u->version > 0)
        *rc = json_object_set_new(o, "version", json_integer(u->version)) ? SD_CLIENT_ENOMEM : 0;
    if (!*rc)
        *rc = set_str(o, "expiry", u->expiry);
    if (!*rc && u->ttl_seconds > 0)
        *rc = json_object_set_new(o, "ttlSeconds", json_integer(u->ttl_seconds)) ? SD_CLIENT_ENOMEM
                                                                                 : 0;
    if (!*rc)
        *rc = set_str(o, "lastSeen", u->last_seen);
    if (!*rc && u->geo_location)
        *rc = set_json_text(c, o, "geoLocation", u->geo_location);
    if (!*rc && u->remove_device_info)
        *rc = json_object_set_new(o, "deviceInfo", json_null()) ? SD_CLIENT_ENOMEM : 0;
    else if (!*rc)
        *rc = set_str(o, "deviceInfo", u->device_info);
    if (!*rc && u->mfa != SD_CLIENT_MFA_KEEP)
        *rc = json_object_set_new(o, "mfa", json_boolean(u->mfa == SD_CLIENT_MFA_TRUE))
                  ? SD_CLIENT_ENOMEM
                  : 0;
    if (!*rc && u->data)
        *rc = set_json_text(c, o, "data", u->data);
    if (*rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int sd_client_update_session(sd_client *c, const char *session_id, const sd_client_update *u,
                             sd_client_session **out)
{
    if (!c || !session_id || !u)
        return SD_CLIENT_EINVAL;
    if (out)
        *out = NULL;
    c->detail[0] = '\0';
    int rc;
    json_t *o = update_body(c, u, &rc);
    if (!o)
        return rc;
    char *path = sdc__path(c, "/sessions", session_id, "");
    if (!path) {
        json_decref(o);
        return SD_CLIENT_ENOMEM;
    }
    char etag[32];
    sdc_req r = {.method = "PUT", .path = path, .if_match = sdc__if_match(u->if_match, etag)};
    rc = session_call(c, &r, o, out);
    free(path);
    return rc;
}

/* DELETE /sessions/{id}, with If-Match "version" when version > 0. */
static int delete_session(sd_client *c, const char *session_id, int64_t version)
{
    if (!c || !session_id)
        return SD_CLIENT_EINVAL;
    char *path = sdc__path(c, "/sessions", session_id, "");
    if (!path)
        return SD_CLIENT_ENOMEM;
    char etag[32];
    sdc_req r = {.method = "DELETE", .path = path, .if_match = sdc__if_match(version, etag)};
    int rc = sdc__exchange(c, &r);
    free(path);
    return rc;
}

int sd_client_delete(sd_client *c, const char *session_id)
{
    return delete_session(c, session_id, 0);
}

int sd_client_delete_if(sd_client *c, const char *session_id, int64_t version)
{
    return version > 0 ? delete_session(c, session_id, version) : SD_CLIENT_EINVAL;
}

int sd_client_refresh(sd_client *c, const char *session_id, const char *token,
                      sd_client_session **out)
{
    if (!c || !session_id || !token || !out)
        return SD_CLIENT_EINVAL;
    *out = NULL;
    char *path = sdc__path(c, "/sessions", session_id, "/refresh");
    if (!path)
        return SD_CLIENT_ENOMEM;
    sdc_req r = {.method = "POST", .path = path, .bearer = token};
    int rc = session_call(c, &r, NULL, out);
    free(path);
    return rc;
}

static int validation_from(sd_client *c, json_t *o, sd_client_validation *out)
{
    json_t *v = json_object_get(o, "isValid");
    if (!json_is_boolean(v)) {
        sdc__set_detail(c, "the response has no isValid");
        return SD_CLIENT_EPROTO;
    }
    out->valid = json_is_true(v);
    if (out->valid && sdc__copy_str(o, "expiry", out->expiry, sizeof out->expiry)) {
        sdc__set_detail(c, "a valid answer without expiry");
        return SD_CLIENT_EPROTO;
    }
    sdc__copy_str(o, "sessionId", out->session_id, sizeof out->session_id);
    sdc__copy_str(o, "userId", out->user_id, sizeof out->user_id);
    sdc__copy_str(o, "reason", out->reason, sizeof out->reason);
    out->binding_mismatch = json_is_true(json_object_get(o, "bindingMismatch"));
    return 0;
}

int sd_client_validate_token_ctx(sd_client *c, const char *token, int touch, const char *ip_address,
                                 const char *user_agent, sd_client_validation *out)
{
    if (!c || !token || !out)
        return SD_CLIENT_EINVAL;
    memset(out, 0, sizeof *out);
    json_t *o = NULL, *ctx = NULL;
    char *text = NULL;
    int rc = 0;
    if (ip_address || user_agent) {
        ctx = json_object();
        if (!ctx || set_str(ctx, "ipAddress", ip_address) ||
            set_str(ctx, "userAgent", user_agent) || !(text = sdc__dumps(ctx)))
            rc = SD_CLIENT_ENOMEM;
    }
    sdc_req r = {.method = "POST",
                 .safe = true,
                 .path = touch ? "/sessions/validate" : "/sessions/validate?touch=false",
                 .bearer = token,
                 .content_type = text ? "application/json" : NULL,
                 .body = text,
                 .body_len = text ? strlen(text) : 0};
    if (!rc)
        rc = sdc__exchange_json(c, &r, &o);
    if (rc == 0)
        rc = validation_from(c, o, out);
    json_decref(o);
    json_decref(ctx);
    free(text);
    return rc;
}

int sd_client_validate_token(sd_client *c, const char *token, int touch, sd_client_validation *out)
{
    return sd_client_validate_token_ctx(c, token, touch, NULL, NULL, out);
}

int sd_client_validate_id(sd_client *c, const char *session_id, sd_client_validation *out)
{
    if (!c || !session_id || !out)
        return SD_CLIENT_EINVAL;
    memset(out, 0, sizeof *out);
    char *path = sdc__path(c, "/sessions", session_id, "/validate");
    if (!path)
        return SD_CLIENT_ENOMEM;
    json_t *o;
    sdc_req r = {.method = "GET", .path = path};
    int rc = sdc__exchange_json(c, &r, &o);
    if (rc == 0)
        rc = validation_from(c, o, out);
    json_decref(o);
    free(path);
    return rc;
}

int sd_client_introspect(sd_client *c, const char *token, sd_client_introspection *out)
{
    if (!c || !token || !out)
        return SD_CLIENT_EINVAL;
    memset(out, 0, sizeof *out);
    char *esc = curl_easy_escape(c->curl, token, (int)strlen(token));
    if (!esc)
        return SD_CLIENT_ENOMEM;
    size_t n = strlen(esc) + sizeof "token=";
    char *form = malloc(n);
    if (!form) {
        explicit_bzero(esc, strlen(esc));
        curl_free(esc);
        return SD_CLIENT_ENOMEM;
    }
    snprintf(form, n, "token=%s", esc);
    explicit_bzero(esc, strlen(esc));
    curl_free(esc);
    json_t *o;
    sdc_req r = {.method = "POST",
                 .safe = true,
                 .path = "/introspect",
                 .content_type = "application/x-www-form-urlencoded",
                 .body = form,
                 .body_len = strlen(form)};
    int rc = sdc__exchange_json(c, &r, &o);
    sdc__free_secret(form);
    if (rc == 0) {
        json_t *a = json_object_get(o, "active");
        if (!json_is_boolean(a)) {
            sdc__set_detail(c, "the response has no active");
            rc = SD_CLIENT_EPROTO;
        } else {
            out->active = json_is_true(a);
            sdc__copy_str(o, "sub", out->sub, sizeof out->sub);
            sdc__copy_str(o, "sid", out->sid, sizeof out->sid);
            out->exp = json_integer_value(json_object_get(o, "exp"));
            out->iat = json_integer_value(json_object_get(o, "iat"));
        }
    }
    json_decref(o);
    return rc;
}

int sd_client_access_token(sd_client *c, const char *token, char **access_token,
                           int64_t *expires_in)
{
    if (!c || !token || !access_token)
        return SD_CLIENT_EINVAL;
    *access_token = NULL;
    json_t *o = NULL;
    /* A validation that also signs: changes nothing a retry could repeat. */
    sdc_req r = {.method = "POST", .safe = true, .path = "/sessions/token", .bearer = token};
    int rc = sdc__exchange_json(c, &r, &o);
    if (rc == 0) {
        json_t *t = json_object_get(o, "accessToken"), *e = json_object_get(o, "expiresIn");
        if (!json_is_string(t) || !json_is_integer(e)) {
            sdc__set_detail(c, "the response has no accessToken or expiresIn");
            rc = SD_CLIENT_EPROTO;
        } else if (!(*access_token = strdup(json_string_value(t)))) {
            rc = SD_CLIENT_ENOMEM;
        } else if (expires_in) {
            *expires_in = json_integer_value(e);
        }
    }
    json_decref(o); /* its copy of the JWT: c->body is wiped by the next call or close */
    return rc;
}
