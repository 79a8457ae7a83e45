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

/* One HOST[:PORT] or [IPv6][:PORT] at *pp, ending at one of the bytes of
 * stop (or the end); *pp is left on that byte. 0 or SD_EINVALID. */
static int hostport(const char **pp, const char *stop, int defport, sd_cache_hostport *out,
                    char *err, size_t errlen)
{
    const char *p = *pp, *hend;
    if (*p == '[') {
        hend = strchr(p, ']');
        if (!hend) {
            snprintf(err, errlen, "--cache: unterminated [IPv6 address]");
            return SD_EINVALID;
        }
        snprintf(out->host, sizeof out->host, "%.*s", (int)(hend - p - 1), p + 1);
        hend++;
    } else {
        char set[16];
        snprintf(set, sizeof set, ":%s", stop);
        hend = p + strcspn(p, set);
        snprintf(out->host, sizeof out->host, "%.*s", (int)(hend - p), p);
    }
    out->port = defport;
    if (*hend == ':') {
        char *e;
        long v = strtol(hend + 1, &e, 10);
        if (e == hend + 1 || v < 1 || v > 65535 || (*e && !strchr(stop, *e))) {
            snprintf(err, errlen, "--cache: bad port");
            return SD_EINVALID;
        }
        out->port = (int)v;
        hend = e;
    }
    if (!out->host[0]) {
        snprintf(err, errlen, "--cache: no host");
        return SD_EINVALID;
    }
    *pp = hend;
    return 0;
}

/* "/DB" at p (or nothing, or "/"): 0 or SD_EINVALID. */
static int dbnum(const char *p, int *db, char *err, size_t errlen)
{
    if (*p == '/' && p[1]) {
        char *e;
        long v = strtol(p + 1, &e, 10);
        if (e == p + 1 || *e || v < 0 || v > 1000000) {
            snprintf(err, errlen, "--cache: bad database number");
            return SD_EINVALID;
        }
        *db = (int)v;
    } else if (*p && strcmp(p, "/") != 0) {
        snprintf(err, errlen, "--cache: unexpected text after the host");
        return SD_EINVALID;
    }
    return 0;
}

/* The Sentinels' list, "/" and the master's name at p (after the
 * password), then the database. */
static int sentinel_part(const char *p, sd_cache_url *c, char *err, size_t errlen)
{
    int rc;
    for (;;) {
        if (c->n_sentinels == SD_CACHE_MAX_SENTINELS) {
            snprintf(err, errlen, "--cache: more than %d Sentinels", SD_CACHE_MAX_SENTINELS);
            return SD_EINVALID;
        }
        if ((rc = hostport(&p, ",/", 26379, &c->sentinels[c->n_sentinels], err, errlen)))
            return rc;
        c->n_sentinels++;
        if (*p != ',')
            break;
        p++;
    }
    size_t n = *p == '/' ? strspn(p + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                         "0123456789._-")
                         : 0;
    if (n == 0 || n >= sizeof c->master_name) {
        snprintf(err, errlen,
                 "--cache: expected /MASTER-NAME after the Sentinels (letters, "
                 "digits, '.', '_', '-')");
        return SD_EINVALID;
    }
    memcpy(c->master_name, p + 1, n);
    c->master_name[n] = '\0';
    return dbnum(p + 1 + n, &c->db, err, errlen);
}

/* redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or
 * redis-sentinel://[[USER]:PASSWORD@]HOST[:PORT][,...]/MASTER[/DB] */
int sd_cache_url_parse(const char *url, sd_cache_url *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    bool sentinel = strncmp(url, "redis-sentinel://", 17) == 0;
    if (!sentinel && strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen,
                 "--cache: expected redis://[:PASSWORD@]HOST[:PORT][/DB] or "
                 "redis-sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER-NAME[/DB]");
        return SD_EINVALID;
    }
    const char *p = url + (sentinel ? 17 : 8), *at = strrchr(p, '@');
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
    int rc;
    if (sentinel)
        return sentinel_part(p, c, err, errlen);
    sd_cache_hostport hp;
    if ((rc = hostport(&p, "/", 6379, &hp, err, errlen)))
        return rc;
    memcpy(c->host, hp.host, sizeof c->host);
    c->port = hp.port;
    return dbnum(p, &c->db, err, errlen);
}
