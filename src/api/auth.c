/*
 * auth.c - the gateway conventions on top of the validation core:
 *
 * GET /auth - forward-auth for nginx auth_request, Traefik ForwardAuth and
 *   Envoy ext_authz: the token comes from `Authorization: Bearer` or the
 *   cookie named by --auth-cookie; 200 with X-Session-Id and X-User-Id, or
 *   401. Counts as activity (rolling expiry), like POST /sessions/validate.
 * POST /introspect - RFC 7662 token introspection: a form-encoded `token`,
 *   answering {"active": true, "sub", "exp", "iat", "sid"} or
 *   {"active": false}. It does not extend the session (looking is not use).
 */
#include "api/api.h"
#include "util/err.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

/* Finds cookie `name` in a Cookie header; returns its value's span. */
static const char *find_cookie(const char *header, const char *name, size_t *len)
{
    size_t nlen = strlen(name);
    for (const char *p = header; p && *p;) {
        while (*p == ' ' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        size_t plen = end ? (size_t)(end - p) : strlen(p);
        if (plen > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
            const char *v = p + nlen + 1;
            size_t vlen = plen - nlen - 1;
            while (vlen && v[vlen - 1] == ' ')
                vlen--;
            if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') { /* quoted cookie-value */
                v++;
                vlen -= 2;
            }
            *len = vlen;
            return v;
        }
        p = end;
    }
    return NULL;
}

static void unauthorized(sd_req *r, const char *why)
{
    const char *hdr[] = {"WWW-Authenticate", "Bearer", NULL};
    sd_reply_problem_with(r, 401, hdr, "%s", why);
}

void sd_api_forward_auth(sd_req *r, void *app_)
{
    sd_app *app = app_;
    size_t len = 0;
    const char *tok = sd_api_bearer(r, NULL);
    if (tok)
        len = strlen(tok);
    else if (sd_req_header(r, "Cookie"))
        tok = find_cookie(sd_req_header(r, "Cookie"), app->auth_cookie, &len);
    if (!tok || len == 0) {
        unauthorized(r, "no session token (Authorization: Bearer or the session cookie)");
        return;
    }
    char token[SD_TOKEN_LEN + 1];
    size_t n = len < SD_TOKEN_LEN ? len : SD_TOKEN_LEN;
    memcpy(token, tok, n);
    token[n] = '\0';
    /* The gateway names the client: X-Real-IP (nginx: proxy_set_header
     * X-Real-IP $remote_addr) and the forwarded User-Agent. */
    sd_check c = {.touch = true,
                  .ip = sd_req_header(r, "X-Real-IP"),
                  .user_agent = sd_req_header(r, "User-Agent"),
                  .to_header = true};
    int rc = sd_api_check_token(app, r, token, len, &c);
    OPENSSL_cleanse(token, sizeof token);
    if (rc < 0) {
        sd_api_fail(r, rc, NULL);
        return;
    }
    if (rc == 0) {
        unauthorized(r, c.unforwardable ? "the session's userId cannot be passed on in a header "
                                          "unchanged (it was stored before the identifier rule): "
                                          "sign in again"
                        : c.binding_mismatch ? "the session is bound to another client context"
                                             : "the session is unknown, expired or revoked");
        return;
    }
    /* The application must see exactly the stored id: sessions whose id
     * breaks the identifier rule (edge whitespace, which HTTP parsers strip;
     * control characters; separators) were refused above, so it is echoed
     * as it is. */
    const char *hdr[] = {"X-Session-Id",
                         c.s.id,
                         "X-User-Id",
                         c.s.user_id,
                         c.binding_mismatch ? "X-Session-Binding-Mismatch" : NULL,
                         "1",
                         NULL};
    sd_reply_json(r, 200, json_pack("{s:s, s:s}", "sessionId", c.s.id, "userId", c.s.user_id), hdr);
    sd_session_clear(&c.s);
}

/* The value of `name` in an application/x-www-form-urlencoded body,
 * decoded (malloc'd), or NULL. '+' means a space there. */
static char *form_value(const char *body, size_t blen, const char *name)
{
    size_t nlen = strlen(name);
    for (const char *p = body, *end = body + blen; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        size_t len = amp ? (size_t)(amp - p) : (size_t)(end - p);
        if (len > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=')
            return sd_api_form_decode(p + nlen + 1, len - nlen - 1);
        p = amp ? amp + 1 : end;
    }
    return NULL;
}

void sd_api_introspect(sd_req *r, void *app_)
{
    sd_app *app = app_;
    size_t blen;
    const char *body = sd_req_body(r, &blen);
    char *tok = form_value(body, blen, "token");
    if (!tok) {
        sd_reply_problem(r, 400, "the form body needs a 'token' parameter (RFC 7662)");
        return;
    }
    size_t len = strlen(tok);
    sd_check c = {.touch = false}; /* RFC 7662 carries no client context */
    int rc = sd_api_check_token(app, r, tok, len, &c);
    sd_session s = c.s;
    int64_t expiry = c.expiry;
    OPENSSL_cleanse(tok, len);
    free(tok);
    if (rc < 0) {
        sd_api_fail(r, rc, NULL);
        return;
    }
    if (rc == 0) {
        sd_reply_json(r, 200, json_pack("{s:b}", "active", 0), NULL);
        return;
    }
    json_t *o = json_pack("{s:b, s:s, s:I, s:I, s:s, s:s}", "active", 1, "sub", s.user_id, "exp",
                          (json_int_t)(expiry / 1000), "iat", (json_int_t)(s.created_at / 1000),
                          "sid", s.id, "token_type", "session");
    if (o && s.auth_time) /* OpenID Connect's names for the authentication context */
        json_object_set_new(o, "auth_time", json_integer((json_int_t)(s.auth_time / 1000)));
    if (o && s.acr[0])
        json_object_set_new(o, "acr", json_string(s.acr));
    sd_reply_json(r, 200, o, NULL);
    sd_session_clear(&s);
}
