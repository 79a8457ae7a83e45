/* common.c - helpers every handler uses: body parsing, error mapping, the
 * session reply with its ETag, writes in flight; caller authentication (the
 * authorize hook). Protected mode's loopback-only rule is protected.c's. */
#include "api/api.h"
#include "api/keys.h"
#include "audit/audit.h"
#include "util/log.h"
#include "util/err.h"
#include "util/jsonmem.h"
#include "util/utf8.h"

#include "util/clock.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

json_t *sd_api_body(sd_req *r)
{
    size_t len;
    const char *body = sd_req_body(r, &len);
    if (len == 0) {
        sd_reply_problem(r, 400, "the body is empty; a JSON object is expected");
        return NULL;
    }
    json_error_t e;
    bool oom;
    json_t *v = sd_json_loadb(body, len, JSON_REJECT_DUPLICATES, &e, &oom);
    if (oom) { /* jansson may call that a syntax error */
        sd_reply_problem(r, 503, "the server is out of memory reading the body; retry shortly");
        return NULL;
    }
    if (!v) {
        sd_reply_problem(r, 400, "the body is not valid JSON: %s (at byte %d)", e.text, e.position);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        sd_reply_problem(r, 400, "the body must be a JSON object");
        return NULL;
    }
    return v;
}

void sd_api_fail(sd_req *r, int rc, const char *detail)
{
    switch (rc) {
    case SD_ENOTFOUND:
        sd_reply_problem(r, 404, "no active session with this id");
        break;
    case SD_ECONFLICT:
        if (detail && *detail)
            sd_reply_problem(r, 412, "%s", detail);
        else
            sd_reply_problem(r, 412,
                             "the session has changed: its version does not match "
                             "If-Match or 'version' (GET it again, then retry)");
        break;
    case SD_EINVALID:
        sd_reply_problem(r, 400, "%s", detail && *detail ? detail : "invalid request");
        break;
    case SD_ELIMIT:
        sd_reply_problem(r, 429,
                         "this user has reached the maximum number of active sessions; "
                         "end one first");
        break;
    case SD_ETHROTTLED: {
        /* A bucket refills at least one token a second: 1 s is always enough. */
        const char *hdr[] = {"Retry-After", "1", NULL};
        sd_reply_problem_with(r, 429, hdr,
                              "too many failed validations from this address; retry after the "
                              "Retry-After delay");
        break;
    }
    case SD_EBUSY:
        sd_reply_problem(r, 503,
                         "the server is overloaded: too many writes are waiting for the "
                         "disk; retry shortly");
        break;
    case SD_ENOMEM:
        sd_reply_problem(r, 503, "the server is out of memory; retry shortly");
        break;
    case SD_ERANDOM:
        sd_reply_problem(r, 503, "the random source failed; nothing was created");
        break;
    default:
        sd_reply_problem(r, 503, "the store cannot take the request right now (%s)",
                         sd_strerror(rc));
        break;
    }
}

void sd_api_etag(int64_t version, char out[SD_API_ETAG_LEN])
{
    snprintf(out, SD_API_ETAG_LEN, "\"%lld\"", (long long)version);
}

void sd_api_reply_session(sd_req *r, int status, const sd_session *s, const char *token,
                          const char *location)
{
    sd_api_reply_session_with(r, status, s, token, location, NULL);
}

void sd_api_reply_session_with(sd_req *r, int status, const sd_session *s, const char *token,
                               const char *location, json_t *extra)
{
    sd_jw w;
    sd_jw_init(&w, sd_req_arena(r), 512);
    sd_jw_object(&w);
    sd_session_jw(&w, s);
    if (token) {
        sd_jw_key(&w, "token");
        sd_jw_str(&w, token);
    }
    const char *key;
    json_t *v;
    json_object_foreach(extra, key, v)
    {
        sd_jw_key(&w, key);
        sd_jw_json(&w, v);
    }
    json_decref(extra);
    /* A reply without its token (or the rest) would be a success the
     * client cannot use: out of memory for it is a 503 (sd_api_reply_jw). */
    char etag[SD_API_ETAG_LEN];
    sd_api_etag(s->version, etag);
    const char *headers[] = {"ETag", etag, location ? "Location" : NULL, location, NULL};
    sd_jw_end(&w);
    sd_api_reply_jw(r, status, &w, headers);
}

int sd_api_user_id_ok(const char *u)
{
    size_t n = strlen(u);
    if (n == 0 || n > SD_MAX_USER_ID)
        return 0;
    for (const char *p = u; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return 0;
    return sd_utf8_valid(u, n);
}

int sd_api_known_fields(sd_req *r, json_t *body, const char *const *names, const char *expected)
{
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        size_t i = 0;
        while (names[i] && strcmp(key, names[i]))
            i++;
        if (!names[i]) {
            sd_reply_problem(r, 400, "unknown field '%.64s' (expected %s)", key, expected);
            return -1;
        }
    }
    return 0;
}

/* The write's completion, on the request's loop thread (sd_req_call): the
 * reply is rendered and the write freed there, not on the store's writer,
 * which every write waits for. */
static void done_on_loop(void *arg)
{
    sd_api_write *c = arg;
    sd_json_oom_clear(); /* a jansson failure of the loop's earlier work is not this reply's */
    c->done(&c->w);
}

static void completed(sd_write *w)
{
    sd_api_write *c = w->udata;
    sd_req_call(c->req, done_on_loop, c);
}

sd_api_write *sd_api_write_new(sd_req *r, sd_app *app, sd_write_kind kind, void (*done)(sd_write *))
{
    /* A write that keeps a session going ignores one the global
     * not-before has cut off (session/write.c), and so does triage: it
     * counts and ends only sessions that could still validate. */
    int64_t nb = 0;
    int rc = kind == SD_W_UPDATE || kind == SD_W_ROTATE || kind == SD_W_TRIAGE
                 ? sd_store_not_before(app->store, &nb)
                 : 0;
    sd_api_write *c = rc ? NULL : calloc(1, sizeof *c);
    if (!c) {
        sd_api_fail(r, rc ? rc : SD_ENOMEM, NULL);
        return NULL;
    }
    c->w.not_before = nb;
    c->req = r;
    c->app = app;
    c->w.kind = kind;
    c->w.now = sd_now_ms();
    c->w.policy = &app->policy;
    c->done = done;
    c->w.done = completed;
    c->w.udata = c;
    snprintf(c->w.actor, sizeof c->w.actor, "%s", sd_req_actor(r));
    snprintf(c->w.address, sizeof c->w.address, "%s", sd_req_peer(r));
    return c;
}

void sd_api_write_free(sd_api_write *c)
{
    sd_session_clear(&c->w.session);
    json_decref(c->body);
    free(c->list);
    free(c->extra);
    OPENSSL_cleanse(c->token, sizeof c->token);
    free(c);
}

void sd_api_reply_jw(sd_req *r, int status, sd_jw *w, const char *const *headers)
{
    size_t len;
    const char *text = sd_jw_done(w, &len);
    if (!text) {
        sd_api_fail(r, SD_ENOMEM, NULL);
        return;
    }
    sd_reply_bytes(r, status, "application/json", text, len, headers);
}

/* ---- caller authentication ---------------------------------------------- */

static int b64_value(int c)
{
    return c >= 'A' && c <= 'Z'   ? c - 'A'
           : c >= 'a' && c <= 'z' ? c - 'a' + 26
           : c >= '0' && c <= '9' ? c - '0' + 52
           : c == '+'             ? 62
           : c == '/'             ? 63
                                  : -1;
}

/* Standard base64 (RFC 4648 section 4), final padding optional. Decodes n
 * bytes of in into out, which holds n * 3 / 4 + 1 bytes, NUL-terminated.
 * Returns the decoded length, or -1. */
static long b64_decode(const char *in, size_t n, unsigned char *out)
{
    size_t pad = 0;
    while (n && in[n - 1] == '=' && pad < 2) {
        n--;
        pad++;
    }
    if ((pad && (n + pad) % 4) || n % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    out[o] = '\0';
    return (long)o;
}

long sd_api_form_decode_into(const char *s, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) /* decoding never writes ahead of what it reads */
        out[i] = s[i] == '+' ? ' ' : s[i];
    return sd_pct_decode_into(out, n, out);
}

char *sd_api_form_decode(const char *s, size_t n)
{
    char *dec = malloc(n + 1);
    if (dec && sd_api_form_decode_into(s, n, dec) < 0) {
        OPENSSL_cleanse(dec, n + 1);
        free(dec);
        dec = NULL;
    }
    return dec;
}

static void free_secret(char *s)
{
    if (s)
        OPENSSL_cleanse(s, strlen(s));
    free(s);
}

/* Checks `Authorization: Basic <credentials>` (RFC 7617) as RFC 7662
 * introspection clients send them: base64 of "<client id>:<secret>", each
 * form-urlencoded first (RFC 6749 section 2.3.1; oauth4webapi encodes '-'
 * and '_' too). Clients that skip that encoding (curl -u) send a key as it
 * is, which decodes to itself unless it holds '+' or '%': those are tried as
 * sent as well. *malformed: the credentials do not decode to "id:secret".
 * Call with keys_lock held. */
static enum sd_key_result check_basic(const sd_keys *k, const char *auth, const char *scope,
                                      const char **key_id, bool *malformed)
{
    const char *p = auth + 5;
    while (*p == ' ')
        p++;
    size_t n = strlen(p);
    while (n && p[n - 1] == ' ')
        n--;
    unsigned char raw[1540];
    long len = n && n <= 2048 ? b64_decode(p, n, raw) : -1;
    char *colon = len > 0 ? memchr(raw, ':', (size_t)len) : NULL;
    enum sd_key_result res = SD_KEY_UNKNOWN;
    *malformed = !colon || memchr(raw, '\0', (size_t)len);
    if (!*malformed) {
        size_t idn = (size_t)(colon - (char *)raw);
        char *id = sd_api_form_decode((char *)raw, idn);
        char *secret = sd_api_form_decode(colon + 1, (size_t)len - idn - 1);
        *colon = '\0';
        const char *raw_id = (char *)raw, *raw_secret = colon + 1;
        if (id && secret)
            res = sd_keys_check_client(k, id, secret, scope, key_id);
        if (res == SD_KEY_UNKNOWN &&
            (!id || !secret || strcmp(id, raw_id) != 0 || strcmp(secret, raw_secret) != 0))
            res = sd_keys_check_client(k, raw_id, raw_secret, scope, key_id);
        free_secret(id);
        free_secret(secret);
    }
    OPENSSL_cleanse(raw, sizeof raw);
    return res;
}

#define APIKEY_CHALLENGE "ApiKey header=\"X-Api-Key\""

int sd_api_authorize(void *app_, sd_req *r, const char *scope)
{
    sd_app *app = app_;
    int slot = sd_brlock_rdlock(&app->keys_lock);
    if (!app->keys) {
        sd_brlock_rdunlock(&app->keys_lock, slot);
        /* protected mode: loopback only, no keys; a browser page must not
         * reach it through a rebound name or from another site */
        return sd_api_loopback_only(r);
    }
    /* /introspect also takes RFC 7662 client credentials (HTTP Basic), so
     * Authorization is a credential there. Two credentials are refused
     * rather than one picked: which caller asked would be a guess. */
    bool introspect = scope == sd_api_scope_introspect;
    int nkeys = sd_req_header_count(r, "X-Api-Key");
    int nauth = introspect ? sd_req_header_count(r, "Authorization") : 0;
    if (nkeys > 1 || nauth > 1 || (nkeys && nauth)) {
        sd_brlock_rdunlock(&app->keys_lock, slot);
        sd_warn("caller_auth_failed reason=ambiguous_credentials scope=%s request=%s", scope,
                sd_req_id(r));
        sd_audit_emit("caller_auth_failed", NULL, NULL, NULL, sd_req_peer(r),
                      "ambiguous_credentials");
        if (nkeys > 1)
            sd_reply_problem(r, 400,
                             "the request carries %d X-Api-Key headers; send exactly one API key",
                             nkeys);
        else if (nauth > 1)
            sd_reply_problem(r, 400,
                             "the request carries %d Authorization headers; send one set of "
                             "client credentials",
                             nauth);
        else
            sd_reply_problem(r, 400,
                             "the request carries both X-Api-Key and Authorization; authenticate "
                             "one way: the API key in X-Api-Key, or HTTP Basic client credentials "
                             "(the key's id, then the key)");
        return 1;
    }
    /* An X-Api-Key decides when present; on /introspect, Basic credentials;
     * otherwise a verified client certificate (mTLS) is looked up by its
     * subject CN. */
    const char *id = NULL, *key = sd_req_header(r, "X-Api-Key");
    const char *auth = introspect && !key ? sd_req_header(r, "Authorization") : NULL;
    bool basic = auth && strncasecmp(auth, "Basic", 5) == 0 && (auth[5] == ' ' || !auth[5]);
    bool malformed = false;
    const char *cn = key || basic ? NULL : sd_req_client_cert(r);
    enum sd_key_result res = basic ? check_basic(app->keys, auth, scope, &id, &malformed)
                             : cn  ? sd_keys_check_cert(app->keys, cn, scope, &id)
                                   : sd_keys_check(app->keys, key, scope, &id);
    char key_id[64];
    snprintf(key_id, sizeof key_id, "%s", id ? id : "-");
    sd_brlock_rdunlock(&app->keys_lock, slot);
    const char *hdr[] = {"WWW-Authenticate",
                         introspect ? APIKEY_CHALLENGE
                             ", Basic realm=\"sessiond\", charset=\"UTF-8\""
                                    : APIKEY_CHALLENGE,
                         NULL};
    switch (res) {
    case SD_KEY_OK:
        sd_req_set_actor(r, key_id);
        return 0;
    case SD_KEY_MISSING:
        sd_warn("caller_auth_failed reason=missing_key scope=%s request=%s", scope, sd_req_id(r));
        sd_audit_emit("caller_auth_failed", NULL, NULL, NULL, sd_req_peer(r), "missing_key");
        sd_reply_problem_with(r, 401, hdr, "%s",
                              !introspect ? "this endpoint needs an API key in X-Api-Key"
                              : auth ? "this endpoint takes an API key in X-Api-Key or HTTP Basic "
                                       "client credentials (the key's id, then the key); an "
                                       "Authorization header of another scheme is neither"
                                     : "this endpoint needs an API key in X-Api-Key, or HTTP Basic "
                                       "client credentials (the key's id, then the key)");
        return 1;
    case SD_KEY_UNKNOWN: {
        const char *why = cn          ? "unmapped_certificate"
                          : malformed ? "malformed_client_credentials"
                          : basic     ? "unknown_client_credentials"
                                      : "unknown_key";
        sd_warn("caller_auth_failed reason=%s scope=%s request=%s", why, scope, sd_req_id(r));
        sd_audit_emit("caller_auth_failed", NULL, NULL, NULL, sd_req_peer(r), why);
        sd_reply_problem_with(
            r, 401, hdr, "%s",
            cn          ? "the client certificate is not mapped to a caller"
            : malformed ? "the Basic credentials are not base64 of '<key id>:<key>' (each "
                          "form-urlencoded, RFC 6749 section 2.3.1)"
            : basic     ? "the client credentials are not valid: the user name must be the id "
                          "of an API key and the password that key"
                        : "the API key is not valid");
        return 1;
    }
    case SD_KEY_FORBIDDEN: {
        sd_warn("caller_auth_failed reason=scope key=%s scope=%s request=%s", key_id, scope,
                sd_req_id(r));
        char why[32];
        snprintf(why, sizeof why, "lacks_scope_%s", scope);
        sd_audit_emit("caller_forbidden", NULL, NULL, key_id, sd_req_peer(r), why);
        sd_reply_problem(r, 403, "the %s lacks the '%s' scope",
                         cn ? "client certificate" : "API key", scope);
        return 1;
    }
    }
    return 1;
}

const char *sd_api_bearer(const sd_req *r, bool *other)
{
    const char *auth = sd_req_header(r, "Authorization");
    if (other)
        *other = false;
    if (!auth)
        return NULL;
    if (strncasecmp(auth, "Bearer ", 7) != 0) {
        if (other)
            *other = true;
        return NULL;
    }
    const char *tok = auth + 7;
    while (*tok == ' ')
        tok++;
    return *tok ? tok : NULL;
}

const char *sd_api_path_user(sd_req *r)
{
    const char *u = sd_req_capture(r, 0);
    if (!u || !sd_api_user_id_ok(u)) {
        sd_reply_problem(r, 400,
                         "userId in the path must be 1 to %d bytes of UTF-8 without "
                         "control characters",
                         SD_MAX_USER_ID);
        return NULL;
    }
    return u;
}

int sd_api_query_limit(sd_req *r, int dflt, int max, int *limit)
{
    const char *q;
    *limit = dflt;
    int has = sd_req_query(r, "limit", &q);
    if (has) {
        char *end;
        errno = 0;
        long v = has > 0 ? strtol(q, &end, 10) : 0;
        if (has < 0 || errno || end == q || *end || v < 1 || v > max) {
            sd_reply_problem(r, 400, "query 'limit' must be an integer from 1 to %d", max);
            return -1;
        }
        *limit = (int)v;
    }
    return 0;
}
