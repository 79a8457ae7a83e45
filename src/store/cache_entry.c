/*
 * cache_entry.c - the Redis cache tier's text formats (see cache_entry.h):
 * a session's entry, and the --cache URL. Pure functions: no Redis, no
 * threads; fuzzed by fuzz/fuzz_text.c.
 */
#include "store/cache_entry.h"
#include "util/err.h"
#include "util/random.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool unhex(const char *s, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int v = 0;
        for (int j = 0; j < 2; j++) {
            char ch = s[2 * i + j];
            int x = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
            if (x < 0)
                return false;
            v = v * 16 + x;
        }
        out[i] = (unsigned char)v;
    }
    return true;
}

/* "e|version|epoch|id|hash|created|last_seen|expiry|absolute|idle|auth_time|
 * binding|acr length|user length|" then acr and user id. malloc'd. */
char *sd_cache_entry_encode(const sd_session *s, int64_t epoch, size_t *len)
{
    char hh[2 * SD_HASH_LEN + 1], bh[2 * sizeof s->binding + 1];
    sd_hex(s->token_hash, SD_HASH_LEN, hh);
    sd_hex((const unsigned char *)&s->binding, sizeof s->binding, bh);
    size_t al = strlen(s->acr), ul = strlen(s->user_id);
    size_t cap = 512 + al + ul;
    char *v = malloc(cap);
    if (!v)
        return NULL;
    int n =
        snprintf(v, cap, "e|%lld|%lld|%s|%s|%lld|%lld|%lld|%lld|%lld|%lld|%s|%zu|%zu|%s%s",
                 (long long)s->version, (long long)epoch, s->id, hh, (long long)s->created_at,
                 (long long)s->last_seen, (long long)s->expiry, (long long)s->absolute_expiry,
                 (long long)s->idle_ttl, (long long)s->auth_time, bh, al, ul, s->acr, s->user_id);
    *len = (size_t)n;
    return v;
}

/* A decimal field and its '|', within [*p, end): never reads past end (a
 * reply need not be NUL-terminated where this is called from a test). */
static bool field(const char **p, const char *end, int64_t *out)
{
    const char *q = *p;
    bool neg = q < end && *q == '-';
    q += neg;
    uint64_t x = 0;
    const char *digits = q;
    while (q < end && *q >= '0' && *q <= '9') {
        if (x > (UINT64_C(1) << 62))
            return false; /* far beyond any time or version */
        x = x * 10 + (uint64_t)(*q++ - '0');
    }
    if (q == digits || q >= end || *q != '|')
        return false;
    *out = neg ? -(int64_t)x : (int64_t)x;
    *p = q + 1;
    return true;
}

/* Parses an entry into out (owned by the caller on true). false: not an
 * entry. */
bool sd_cache_entry_decode(const char *v, size_t len, int64_t *epoch, sd_session *out)
{
    const char *p = v, *end = v + len;
    int64_t f[12];
    if (len < 2 || memcmp(v, "e|", 2) != 0)
        return false;
    p += 2;
    memset(out, 0, sizeof *out);
    if (!field(&p, end, &out->version) || !field(&p, end, epoch))
        return false;
    if (end - p < SD_ID_LEN + 1 || p[SD_ID_LEN] != '|' || memchr(p, '|', SD_ID_LEN))
        return false;
    memcpy(out->id, p, SD_ID_LEN);
    out->id[SD_ID_LEN] = '\0';
    if (!sd_id_wellformed(out->id, SD_ID_LEN))
        return false;
    p += SD_ID_LEN + 1;
    if (end - p < 2 * SD_HASH_LEN + 1 || !unhex(p, out->token_hash, SD_HASH_LEN) ||
        p[2 * SD_HASH_LEN] != '|')
        return false;
    p += 2 * SD_HASH_LEN + 1;
    for (int i = 0; i < 6; i++)
        if (!field(&p, end, &f[i]))
            return false;
    size_t bl = 2 * sizeof out->binding;
    if ((size_t)(end - p) < bl + 1 ||
        !unhex(p, (unsigned char *)&out->binding, sizeof out->binding) || p[bl] != '|')
        return false;
    p += bl + 1;
    if (!field(&p, end, &f[6]) || !field(&p, end, &f[7]))
        return false;
    size_t al = (size_t)f[6], ul = (size_t)f[7];
    if (f[6] < 0 || f[7] < 0 || al > SD_ACR_MAX || (size_t)(end - p) != al + ul ||
        memchr(p, '\0', al + ul))
        return false;
    memcpy(out->acr, p, al);
    out->acr[al] = '\0';
    out->user_id = malloc(ul + 1);
    if (!out->user_id)
        return false;
    memcpy(out->user_id, p + al, ul);
    out->user_id[ul] = '\0';
    out->created_at = f[0];
    out->last_seen = f[1];
    out->expiry = f[2];
    out->absolute_expiry = f[3];
    out->idle_ttl = f[4];
    out->auth_time = f[5];
    return true;
}

/* redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] */
int sd_cache_url_parse(const char *url, sd_cache_url *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "--cache: expected redis://[:PASSWORD@]HOST[:PORT][/DB]");
        return SD_EINVALID;
    }
    const char *p = url + 8, *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        size_t n = (size_t)(at - pw);
        if (n >= sizeof c->password) {
            snprintf(err, errlen, "--cache: the password is too long");
            return SD_EINVALID;
        }
        memcpy(c->password, pw, n);
        c->password[n] = '\0';
        p = at + 1;
    }
    const char *hend;
    if (*p == '[') {
        hend = strchr(p, ']');
        if (!hend) {
            snprintf(err, errlen, "--cache: unterminated [IPv6 address]");
            return SD_EINVALID;
        }
        snprintf(c->host, sizeof c->host, "%.*s", (int)(hend - p - 1), p + 1);
        hend++;
    } else {
        hend = p + strcspn(p, ":/");
        snprintf(c->host, sizeof c->host, "%.*s", (int)(hend - p), p);
    }
    c->port = 6379;
    if (*hend == ':') {
        char *e;
        long v = strtol(hend + 1, &e, 10);
        if (e == hend + 1 || v < 1 || v > 65535 || (*e && *e != '/')) {
            snprintf(err, errlen, "--cache: bad port");
            return SD_EINVALID;
        }
        c->port = (int)v;
        hend = e;
    }
    if (*hend == '/' && hend[1]) {
        char *e;
        long v = strtol(hend + 1, &e, 10);
        if (e == hend + 1 || *e || v < 0 || v > 1000000) {
            snprintf(err, errlen, "--cache: bad database number");
            return SD_EINVALID;
        }
        c->db = (int)v;
    } else if (*hend && strcmp(hend, "/") != 0) {
        snprintf(err, errlen, "--cache: unexpected text after the host");
        return SD_EINVALID;
    }
    if (!c->host[0]) {
        snprintf(err, errlen, "--cache: no host");
        return SD_EINVALID;
    }
    return 0;
}
