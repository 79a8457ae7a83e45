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

const char *sd_api_request_token(sd_req *r, sd_app *app, size_t *len, bool *from_cookie)
{
    const char *tok = sd_api_bearer(r, NULL);
    *len = 0;
    *from_cookie = false;
    if (tok)
        *len = strlen(tok);
    else if (sd_req_header(r, "Cookie")) {
        tok = find_cookie(sd_req_header(r, "Cookie"), app->auth_cookie, len);
        *from_cookie = tok != NULL;
    }
    return tok && *len ? tok : NULL;
}

void sd_api_forward_auth(sd_req *r, void *app_)
{
    sd_app *app = app_;
    size_t len;
    bool cookie;
    const char *tok = sd_api_request_token(r, app, &len, &cookie);
    if (!tok) {
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
    sd_jw w;
    sd_jw_init(&w, sd_req_arena(r), 128);
    sd_jw_object(&w);
    sd_jw_key(&w, "sessionId");
    sd_jw_str(&w, c.s.id);
    sd_jw_key(&w, "userId");
    sd_session_jw_user_id(&w, &c.s);
    sd_jw_end(&w);
    sd_api_reply_jw(r, 200, &w, hdr);
    sd_session_clear(&c.s);
}

/* The value of `name` in an application/x-www-form-urlencoded body,
 * decoded into the request's arena (*len its length; the caller wipes it),
 * or NULL. '+' means a space there. */
static char *form_value(sd_req *r, const char *body, size_t blen, const char *name, size_t *len)
{
    size_t nlen = strlen(name);
    for (const char *p = body, *end = body + blen; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        size_t plen = amp ? (size_t)(amp - p) : (size_t)(end - p);
        if (plen > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
            char *v = sd_req_alloc(r, plen - nlen);
            long n = v ? sd_api_form_decode_into(p + nlen + 1, plen - nlen - 1, v) : -1;
            if (n < 0)
                return NULL;
            *len = strlen(v); /* a decoded value ends at its first NUL, as it always has */
            return v;
        }
        p = amp ? amp + 1 : end;
    }
    return NULL;
}

void sd_api_introspect(sd_req *r, void *app_)
{
    sd_app *app = app_;
    size_t blen, len = 0;
    const char *body = sd_req_body(r, &blen);
    char *tok = form_value(r, body, blen, "token", &len);
    if (!tok) {
        sd_reply_problem(r, 400, "the form body needs a 'token' parameter (RFC 7662)");
        return;
    }
    sd_check c = {.touch = false}; /* RFC 7662 carries no client context */
    int rc = sd_api_check_token(app, r, tok, len, &c);
    sd_session *s = &c.s;
    OPENSSL_cleanse(tok, len);
    if (rc < 0) {
        sd_api_fail(r, rc, NULL);
        return;
    }
    if (rc == 0) {
        sd_reply_bytes(r, 200, "application/json", "{\"active\":false}", 16, NULL);
        return;
    }
    sd_jw w;
    sd_jw_init(&w, sd_req_arena(r), 256);
    sd_jw_object(&w);
    sd_jw_key(&w, "active");
    sd_jw_bool(&w, true);
    sd_jw_key(&w, "sub");
    sd_session_jw_user_id(&w, s);
    sd_jw_key(&w, "exp");
    sd_jw_int(&w, c.expiry / 1000);
    sd_jw_key(&w, "iat");
    sd_jw_int(&w, s->created_at / 1000);
    sd_jw_key(&w, "sid");
    sd_jw_str(&w, s->id);
    sd_jw_key(&w, "token_type");
    sd_jw_str(&w, "session");
    if (s->auth_time) { /* OpenID Connect's names for the authentication context */
        sd_jw_key(&w, "auth_time");
        sd_jw_int(&w, s->auth_time / 1000);
    }
    if (s->acr[0]) {
        sd_jw_key(&w, "acr");
        sd_jw_str(&w, s->acr);
    }
    sd_jw_end(&w);
    sd_api_reply_jw(r, 200, &w, NULL);
    sd_session_clear(s);
}
