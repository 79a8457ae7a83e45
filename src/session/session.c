/*
 * session.c - the session domain of session.h: input validation for create
 * and update, the JSON view, and the expiry policy.
 */
#include "session/session.h"
#include "session/geo.h"
#include "util/arena.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/jsonmem.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ID_BYTES   256  /* userId, deviceId */
#define MAX_TEXT_BYTES 1024 /* deviceInfo, userAgent */
#define MAX_GEO_BYTES  1024 /* geoLocation, as text or encoded object */
#define FUTURE_SKEW_MS (60 * 1000)

static int fail(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return SD_EINVALID;
}

void sd_session_clear(sd_session *s)
{
    if (s->user_id != s->user_id_buf)
        free(s->user_id);
    json_decref(s->attrs);
    memset(s, 0, sizeof *s);
}

int sd_session_set_user_id(sd_session *s, const char *uid, size_t n)
{
    char *p = s->user_id_buf && n < s->user_id_cap ? s->user_id_buf : malloc(n + 1);
    if (!p)
        return SD_ENOMEM;
    memcpy(p, uid, n);
    p[n] = '\0';
    s->user_id = p;
    return 0;
}

int sd_session_copy(sd_session *dst, const sd_session *src)
{
    *dst = *src;
    dst->user_id_buf = NULL; /* src's caller's memory */
    dst->user_id_cap = 0;
    dst->user_id = src->user_id ? strdup(src->user_id) : NULL;
    dst->attrs = src->attrs ? json_deep_copy(src->attrs) : NULL;
    if ((src->user_id && !dst->user_id) || (src->attrs && !dst->attrs)) {
        sd_session_clear(dst);
        return SD_ENOMEM;
    }
    return 0;
}

bool sd_session_active(const sd_session *s, int64_t now)
{
    return now < s->expiry && now < s->absolute_expiry;
}

static void jw_time(sd_jw *w, const char *key, int64_t ms)
{
    sd_jw_key(w, key);
    sd_jw_time(w, ms);
}

void sd_session_jw_user_id(sd_jw *w, const sd_session *s)
{
    if (sd_jw_str(w, s->user_id ? s->user_id : ""))
        sd_warn("reply_user_id_not_utf8 session=%s: the stored userId is not valid UTF-8; "
                "answered with U+FFFD in place of each bad byte",
                s->id);
}

/* The view, written once: sd_session_to_json parses this text. */
void sd_session_jw(sd_jw *w, const sd_session *s)
{
    sd_jw_key(w, "sessionId");
    sd_jw_str(w, s->id);
    sd_jw_key(w, "userId");
    sd_session_jw_user_id(w, s);
    static const char *const optional[] = {"deviceId",    "deviceInfo", "userAgent", "ipAddress",
                                           "geoLocation", "geoGroup",   "signals"};
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++) {
        const json_t *v = s->attrs ? json_object_get(s->attrs, optional[i]) : NULL;
        if (v) {
            sd_jw_key(w, optional[i]);
            sd_jw_json(w, v);
        }
    }
    sd_jw_key(w, "mfa");
    sd_jw_bool(w, s->attrs && json_is_true(json_object_get(s->attrs, "mfa")));
    if (s->attrs && json_is_true(json_object_get(s->attrs, "stepUp"))) {
        sd_jw_key(w, "stepUpRequired");
        sd_jw_bool(w, true);
    }
    const json_t *data = s->attrs ? json_object_get(s->attrs, "data") : NULL;
    sd_jw_key(w, "data");
    if (data)
        sd_jw_json(w, data);
    else
        sd_jw_raw(w, "{}", 2);
    if (s->binding.flags) {
        sd_jw_key(w, "bind");
        sd_jw_object(w);
        if (s->binding.flags & SD_BIND_IP) {
            sd_jw_key(w, "ip");
            sd_jw_bool(w, true);
        }
        if (s->binding.flags & SD_BIND_UA) {
            sd_jw_key(w, "userAgent");
            sd_jw_bool(w, true);
        }
        sd_jw_end(w);
    }
    if (s->acr[0]) {
        sd_jw_key(w, "acr");
        sd_jw_str(w, s->acr);
    }
    const json_t *amr = s->attrs ? json_object_get(s->attrs, "amr") : NULL;
    if (amr) {
        sd_jw_key(w, "amr");
        sd_jw_json(w, amr);
    }
    if (s->auth_time)
        jw_time(w, "authTime", s->auth_time);
    jw_time(w, "createdAt", s->created_at);
    jw_time(w, "lastSeen", s->last_seen);
    jw_time(w, "expiry", s->expiry);
    jw_time(w, "absoluteExpiry", s->absolute_expiry);
    sd_jw_key(w, "version");
    sd_jw_int(w, s->version);
}

json_t *sd_session_to_json(const sd_session *s)
{
    char mem[1024];
    sd_arena a;
    sd_arena_init(&a, mem, sizeof mem);
    sd_jw w;
    sd_jw_init(&w, &a, 512);
    sd_jw_object(&w);
    sd_session_jw(&w, s);
    sd_jw_end(&w);
    size_t len = 0;
    const char *text = sd_jw_done(&w, &len);
    bool oom = false;
    json_t *o = text ? sd_json_loadb(text, len, JSON_ALLOW_NUL, NULL, &oom) : NULL;
    sd_arena_reset(&a);
    return o;
}

/* ---- field checks shared by create and update -------------------------- */

/* A string field of 1..max bytes; ids also follow the identifier rule. */
static int check_string(const char *key, const json_t *v, size_t max, bool id, char *err, size_t n)
{
    if (!json_is_string(v))
        return fail(err, n, "field '%s' must be a string", key);
    size_t len = json_string_length(v);
    if (!id && (len == 0 || len > max))
        return fail(err, n, "field '%s' must be 1 to %zu bytes long", key, max);
    const char *why = id ? sd_ident_check(json_string_value(v), len, max) : NULL;
    if (why)
        return fail(err, n, "field '%s' %s (an identifier is " SD_IDENT_RULE ")", key, why, max);
    return 0;
}

static size_t encoded_size(const json_t *v)
{
    return json_dumpb(v, NULL, 0, JSON_COMPACT);
}

/* A string of free text, or an object whose "lat", "lon" and "country",
 * when given, are what session/geo.h computes with. */
static int check_geo(const json_t *v, char *err, size_t n)
{
    if (json_is_string(v))
        return check_string("geoLocation", v, MAX_GEO_BYTES, false, err, n);
    if (json_is_object(v)) {
        if (encoded_size(v) > MAX_GEO_BYTES)
            return fail(err, n, "field 'geoLocation' must encode to at most %d bytes",
                        MAX_GEO_BYTES);
        sd_geo g;
        return sd_geo_parse(v, &g, err, n);
    }
    return fail(err, n, "field 'geoLocation' must be a string or an object");
}

static int check_data(const json_t *v, const sd_policy *p, char *err, size_t n)
{
    if (!json_is_object(v))
        return fail(err, n, "field 'data' must be a JSON object");
    if (encoded_size(v) > p->max_data_bytes)
        return fail(err, n, "field 'data' must encode to at most %zu bytes", p->max_data_bytes);
    return 0;
}

/* ttlSeconds: an integer >= 1, clamped to the policy's maximum. */
static int check_ttl(const json_t *v, const sd_policy *p, int64_t *ttl_ms, char *err, size_t n)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return fail(err, n, "field 'ttlSeconds' must be an integer of at least 1");
    json_int_t secs = json_integer_value(v);
    *ttl_ms = secs > p->max_idle_timeout_ms / 1000 ? p->max_idle_timeout_ms : secs * 1000;
    return 0;
}

int64_t sd_policy_max_lifetime(const sd_policy *p)
{
    return p->max_absolute_timeout_ms > p->absolute_timeout_ms ? p->max_absolute_timeout_ms
                                                               : p->absolute_timeout_ms;
}

/* lifetimeSeconds: an integer >= 1, clamped to the policy's maximum. */
static int check_lifetime(const json_t *v, const sd_policy *p, int64_t *ms, char *err, size_t n)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return fail(err, n, "field 'lifetimeSeconds' must be an integer of at least 1");
    json_int_t secs = json_integer_value(v);
    int64_t max = sd_policy_max_lifetime(p);
    *ms = secs > max / 1000 ? max : secs * 1000;
    return 0;
}

static const char *const server_fields[] = {
    "signals",        "stepUpRequired", "sessionId",          "id",
    "token",          "createdAt",      "lastSeen",           "expiry",
    "absoluteExpiry", "version",        "idleTimeoutSeconds", "tokenHash"};

static bool in_list(const char *key, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(key, list[i]) == 0)
            return true;
    return false;
}
#define IN(key, arr) in_list(key, arr, sizeof arr / sizeof arr[0])

/* ---- authentication context (NIST 800-63B: time, level, methods) -------- */

/* "amr": up to 8 method names (RFC 8176 values such as "pwd", "otp"). */
static int check_amr(const json_t *v, char *err, size_t n)
{
    if (!json_is_array(v) || json_array_size(v) > 8)
        return fail(err, n, "field 'amr' must be an array of at most 8 method names");
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m)
    {
        char label[32];
        snprintf(label, sizeof label, "amr[%zu]", i);
        if (check_string(label, m, 32, true, err, n))
            return SD_EINVALID;
    }
    return 0;
}

/* "authTime": RFC 3339, not in the future, not before the oldest moment a
 * session of this policy could still be alive for (its longest lifetime). */
static int check_auth_time(const json_t *v, const sd_policy *p, int64_t now, char *err, size_t n)
{
    int64_t t;
    if (!json_is_string(v) || sd_time_parse(json_string_value(v), &t) != 0)
        return fail(err, n, "field 'authTime' must be an RFC 3339 time");
    if (t > now + FUTURE_SKEW_MS || t < now - sd_policy_max_lifetime(p))
        return fail(err, n, "field 'authTime' must be within --max-absolute-timeout before now");
    return 0;
}

/* ---- create ------------------------------------------------------------ */

int sd_session_from_create(const json_t *body, const sd_policy *p, int64_t now, sd_session *out,
                           char token_out[SD_TOKEN_LEN + 1], char *err, size_t n)
{
    memset(out, 0, sizeof *out);
    if (!json_is_object(body))
        return fail(err, n, "the body must be a JSON object");
    unsigned long mark = sd_json_failures(); /* see below */

    const char *key;
    json_t *v;
    int64_t ttl = p->idle_timeout_ms, lifetime = p->absolute_timeout_ms;
    json_object_foreach((json_t *)body, key, v)
    {
        int rc = 0;
        if (strcmp(key, "userId") == 0 || strcmp(key, "deviceId") == 0)
            rc = check_string(key, v, MAX_ID_BYTES, true, err, n);
        else if (strcmp(key, "geoGroup") == 0)
            rc = check_string(key, v, SD_GEO_GROUP_MAX, true, err, n);
        else if (strcmp(key, "deviceInfo") == 0 || strcmp(key, "userAgent") == 0)
            rc = check_string(key, v, MAX_TEXT_BYTES, false, err, n);
        else if (strcmp(key, "ipAddress") == 0) {
            unsigned char buf[16];
            if (!json_is_string(v) || json_string_length(v) > 64 ||
                (inet_pton(AF_INET, json_string_value(v), buf) != 1 &&
                 inet_pton(AF_INET6, json_string_value(v), buf) != 1))
                rc = fail(err, n, "field 'ipAddress' must be an IPv4 or IPv6 address");
        } else if (strcmp(key, "geoLocation") == 0)
            rc = check_geo(v, err, n);
        else if (strcmp(key, "mfa") == 0) {
            if (!json_is_boolean(v))
                rc = fail(err, n, "field 'mfa' must be a boolean");
        } else if (strcmp(key, "data") == 0)
            rc = check_data(v, p, err, n);
        else if (strcmp(key, "ttlSeconds") == 0)
            rc = check_ttl(v, p, &ttl, err, n);
        else if (strcmp(key, "lifetimeSeconds") == 0)
            rc = check_lifetime(v, p, &lifetime, err, n);
        else if (strcmp(key, "bind") == 0)
            rc = 0; /* after the loop: it needs the other fields checked */
        else if (strcmp(key, "acr") == 0)
            rc = check_string(key, v, SD_ACR_MAX, true, err, n);
        else if (strcmp(key, "amr") == 0)
            rc = check_amr(v, err, n);
        else if (strcmp(key, "authTime") == 0)
            rc = check_auth_time(v, p, now, err, n);
        else if (IN(key, server_fields))
            rc = fail(err, n, "field '%s' is set by the server and cannot be chosen by the client",
                      key);
        else
            rc = fail(err, n, "unknown field '%.64s'", key);
        if (rc)
            return rc;
    }
    json_t *uid = json_object_get(body, "userId");
    if (!uid)
        return fail(err, n, "field 'userId' is required");
    sd_binding binding = {0};
    if ((v = json_object_get(body, "bind"))) {
        int rc = sd_binding_parse(body, v, p, &binding, err, n);
        if (rc)
            return rc;
    }

    json_t *attrs = json_object();
    if (!attrs)
        return SD_ENOMEM;
    static const char *const copied[] = {"deviceId", "deviceInfo", "userAgent", "geoLocation",
                                         "geoGroup"};
    for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++)
        if ((v = json_object_get(body, copied[i])))
            json_object_set(attrs, copied[i], v);
    if ((v = json_object_get(body, "ipAddress"))) {
        /* Stored in canonical text form. */
        unsigned char buf[16];
        char text[INET6_ADDRSTRLEN];
        int af = inet_pton(AF_INET, json_string_value(v), buf) == 1 ? AF_INET : AF_INET6;
        inet_pton(af, json_string_value(v), buf);
        inet_ntop(af, buf, text, sizeof text);
        json_object_set_new(attrs, "ipAddress", json_string(text));
    }
    json_object_set_new(attrs, "mfa", json_boolean(json_is_true(json_object_get(body, "mfa"))));
    if ((v = json_object_get(body, "amr")))
        json_object_set(attrs, "amr", v);
    v = json_object_get(body, "data");
    json_object_set_new(attrs, "data", v ? json_deep_copy(v) : json_object());

    /* A check or a member that jansson had no memory for (a size check
     * that measured nothing, an attribute left out): the create fails. */
    int rc = sd_json_failures() != mark ? SD_ENOMEM : sd_id_mint(now, out->id);
    if (rc == 0)
        rc = sd_token_mint(token_out);
    if (rc) {
        json_decref(attrs);
        memset(out, 0, sizeof *out);
        return rc;
    }
    sd_token_hash(token_out, SD_TOKEN_LEN, out->token_hash);
    out->user_id = strdup(json_string_value(uid));
    out->attrs = attrs;
    out->binding = binding;
    out->auth_time = now;
    if ((v = json_object_get(body, "authTime")))
        sd_time_parse(json_string_value(v), &out->auth_time);
    if ((v = json_object_get(body, "acr")))
        snprintf(out->acr, sizeof out->acr, "%s", json_string_value(v));
    out->created_at = out->last_seen = now;
    out->idle_ttl = ttl;
    out->absolute_expiry = now + lifetime;
    out->expiry = now + ttl < out->absolute_expiry ? now + ttl : out->absolute_expiry;
    out->version = 1;
    if (!out->user_id) {
        sd_session_clear(out);
        return SD_ENOMEM;
    }
    return 0;
}

/* ---- update ------------------------------------------------------------ */

static const char *const read_only[] = {"userId",
                                        "sessionId",
                                        "createdAt",
                                        "absoluteExpiry",
                                        "token",
                                        "deviceId",
                                        "userAgent",
                                        "ipAddress",
                                        "idleTimeoutSeconds",
                                        "id",
                                        "bind",
                                        "acr",
                                        "amr",
                                        "authTime",
                                        "geoGroup",
                                        "signals",
                                        "stepUpRequired",
                                        "lifetimeSeconds"};

static int parse_time_field(const char *key, const json_t *v, int64_t *ms, char *err, size_t n)
{
    if (!json_is_string(v) || sd_time_parse(json_string_value(v), ms))
        return fail(err, n,
                    "field '%s' must be an RFC 3339 date-time such as "
                    "2026-11-28T02:33:35.123Z",
                    key);
    return 0;
}

int sd_patch_parse(const json_t *body, const sd_policy *p, sd_patch *out, char *err, size_t n)
{
    unsigned long mark = sd_json_failures(); /* a size check that measured nothing */
    memset(out, 0, sizeof *out);
    out->body = body;
    if (!json_is_object(body))
        return fail(err, n, "the body must be a JSON object");
    const char *key;
    json_t *v;
    int updatable = 0;
    json_object_foreach((json_t *)body, key, v)
    {
        int rc = 0;
        if (strcmp(key, "expiry") == 0) {
            rc = parse_time_field(key, v, &out->expiry, err, n);
            out->has_expiry = true;
        } else if (strcmp(key, "lastSeen") == 0) {
            rc = parse_time_field(key, v, &out->last_seen, err, n);
            out->has_last_seen = true;
        } else if (strcmp(key, "ttlSeconds") == 0) {
            rc = check_ttl(v, p, &out->ttl_ms, err, n);
            out->has_ttl = true;
        } else if (strcmp(key, "version") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1)
                return fail(err, n, "field 'version' must be an integer of at least 1");
            out->version = json_integer_value(v);
            out->has_version = true;
            continue;
        } else if (strcmp(key, "geoLocation") == 0) {
            rc = json_is_null(v) ? 0 : check_geo(v, err, n);
        } else if (strcmp(key, "deviceInfo") == 0) {
            rc = json_is_null(v) ? 0 : check_string(key, v, MAX_TEXT_BYTES, false, err, n);
        } else if (strcmp(key, "mfa") == 0) {
            if (!json_is_boolean(v))
                rc = fail(err, n, "field 'mfa' must be a boolean");
        } else if (strcmp(key, "data") == 0) {
            if (!json_is_object(v))
                rc = fail(err, n,
                          "field 'data' must be a JSON object (a merge patch: null "
                          "removes a key)");
            else if (encoded_size(v) > 4 * p->max_data_bytes)
                rc = fail(err, n,
                          "field 'data' (the merge patch) must encode to at most %zu "
                          "bytes",
                          4 * p->max_data_bytes);
        } else if (IN(key, read_only)) {
            rc = fail(err, n, "field '%s' is read-only", key);
        } else {
            rc = fail(err, n, "unknown field '%.64s'", key);
        }
        if (rc)
            return rc;
        updatable++;
    }
    if (out->has_expiry && out->has_ttl)
        return fail(err, n, "give either 'expiry' or 'ttlSeconds', not both");
    if (updatable == 0)
        return fail(err, n,
                    "the body names no field to update (expiry, ttlSeconds, lastSeen, "
                    "geoLocation, mfa, deviceInfo, data)");
    return sd_json_failures() != mark ? SD_ENOMEM : 0;
}

/* parent's member key as an object of parent's own: a shallow copy of the
 * object there (its members shared, not copied), or a new empty one; NULL
 * when out of memory. What a merge changes is copied, the rest is shared
 * with the tree it came from, which stays as it was. */
static json_t *own_object(json_t *parent, const char *key)
{
    json_t *t = json_object_get(parent, key);
    t = json_is_object(t) ? json_copy(t) : json_object();
    return t && json_object_set_new(parent, key, t) == 0 ? t : NULL;
}

/* RFC 7396 into target, which is the caller's own (own_object). */
static void merge_patch(json_t *target, const json_t *patch)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)patch, key, v)
    {
        if (json_is_null(v)) {
            json_object_del(target, key);
        } else if (json_is_object(v)) {
            json_t *t = own_object(target, key);
            if (t)
                merge_patch(t, v);
        } else {
            json_object_set(target, key, v);
        }
    }
}

int sd_patch_apply(const sd_patch *patch, const sd_policy *p, sd_session *s, int64_t now, char *err,
                   size_t n)
{
    if (!sd_session_active(s, now))
        return SD_ENOTFOUND;
    if (patch->has_version && patch->version != s->version) {
        snprintf(err, n,
                 "the session has changed: it is at version %lld, not the body's 'version' %lld "
                 "(GET it again, then retry)",
                 (long long)s->version, (long long)patch->version);
        return SD_ECONFLICT;
    }
    int rc = sd_precond_check(patch->pre, s->version, err, n);
    if (rc)
        return rc;

    int64_t expiry = s->expiry, idle = s->idle_ttl, last_seen = s->last_seen;
    if (patch->has_expiry) {
        if (patch->expiry <= now)
            return fail(err, n, "field 'expiry' must be in the future (DELETE ends a session)");
        expiry = patch->expiry;
    }
    if (patch->has_ttl) {
        idle = patch->ttl_ms;
        expiry = now + patch->ttl_ms;
    }
    if (expiry > s->absolute_expiry)
        expiry = s->absolute_expiry;
    if (patch->has_last_seen) {
        if (patch->last_seen < s->created_at || patch->last_seen > now + FUTURE_SKEW_MS)
            return fail(err, n, "field 'lastSeen' must lie between createdAt and now");
        last_seen = patch->last_seen > now ? now : patch->last_seen;
    }

    /* A merge is never half applied: it changes a copy (of the objects it
     * changes only), which replaces s->attrs once whole. */
    unsigned long mark = sd_json_failures();
    json_t *attrs = json_is_object(s->attrs) ? json_copy(s->attrs) : json_object();
    if (!attrs)
        return SD_ENOMEM;
    const json_t *b = patch->body;
    json_t *v;
    static const char *const nullable[] = {"geoLocation", "deviceInfo"};
    for (size_t i = 0; i < 2; i++) {
        if ((v = json_object_get(b, nullable[i]))) {
            if (json_is_null(v))
                json_object_del(attrs, nullable[i]);
            else
                json_object_set(attrs, nullable[i], v);
        }
    }
    if ((v = json_object_get(b, "mfa")))
        json_object_set(attrs, "mfa", v);
    if ((v = json_object_get(b, "data"))) {
        json_t *data = own_object(attrs, "data");
        if (!data) {
            json_decref(attrs);
            return SD_ENOMEM;
        }
        merge_patch(data, v);
        if (encoded_size(data) > p->max_data_bytes) {
            json_decref(attrs);
            return fail(err, n, "field 'data' would encode to more than %zu bytes after the merge",
                        p->max_data_bytes);
        }
    }
    if (sd_json_failures() != mark) {
        json_decref(attrs);
        return SD_ENOMEM;
    }
    json_decref(s->attrs);
    s->attrs = attrs;
    s->expiry = expiry;
    s->idle_ttl = idle;
    s->last_seen = last_seen;
    s->version++;
    return 0;
}

bool sd_session_touch(const sd_session *s, const sd_policy *p, int64_t now, int64_t *new_expiry)
{
    int64_t e = now + s->idle_ttl;
    if (e > s->absolute_expiry)
        e = s->absolute_expiry;
    if (e < s->expiry)
        e = s->expiry;
    *new_expiry = e;
    return e - s->expiry > (int64_t)(p->touch_fraction * (double)s->idle_ttl);
}

enum sd_rotation sd_rotation_decide(bool is_current, bool was_rotated, int64_t rotated_at,
                                    int64_t now, int64_t grace_ms)
{
    if (is_current)
        return SD_ROTATE;
    if (!was_rotated)
        return SD_ROTATE_MISMATCH;
    return now - rotated_at <= grace_ms ? SD_ROTATE_RACE : SD_ROTATE_REUSE;
}

static bool has_mfa(const sd_session *s)
{
    return s->attrs && json_is_true(json_object_get(s->attrs, "mfa"));
}

bool sd_privilege_raised(const sd_session *before, const sd_session *after)
{
    return !has_mfa(before) && has_mfa(after);
}
