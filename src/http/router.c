/* router.c - route matching and percent-decoding for router.h. */
#include "http/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long sd_pct_decode_into(const char *in, size_t n, char *s)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '%') {
            int hi = i + 1 < n ? hexval(in[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(in[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            s[j++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            s[j++] = in[i];
        }
    }
    s[j] = '\0';
    return (long)j;
}

int sd_pct_decode(const char *in, size_t n, char **out)
{
    char *s = malloc(n + 1);
    if (!s)
        return -1;
    if (sd_pct_decode_into(in, n, s) < 0) {
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

void sd_match_free(sd_match *m)
{
    for (int i = 0; i < m->ncaptures && !m->arena; i++)
        free(m->captures[i]);
    m->ncaptures = 0;
}

/* Matches path against pattern; on success fills captures (raw spans). */
static int match_pattern(const char *pattern, const char *path, const char **cap, size_t *caplen,
                         int *ncap)
{
    const char *p = pattern, *s = path;
    *ncap = 0;
    while (*p && *s) {
        if (*p != '/' || *s != '/')
            return 0;
        p++;
        s++;
        const char *pe = strchr(p, '/'), *se = strchr(s, '/');
        size_t plen = pe ? (size_t)(pe - p) : strlen(p);
        size_t slen = se ? (size_t)(se - s) : strlen(s);
        if (plen > 1 && p[0] == '{' && p[plen - 1] == '}') {
            if (slen == 0 || *ncap == SD_MAX_CAPTURES)
                return 0;
            cap[*ncap] = s;
            caplen[(*ncap)++] = slen;
        } else if (plen != slen || memcmp(p, s, plen) != 0) {
            return 0;
        }
        p += plen;
        s += slen;
    }
    return *p == '\0' && *s == '\0';
}

enum sd_match_result sd_route_match(const sd_route *routes, int n, const char *method,
                                    const char *path, sd_match *m)
{
    return sd_route_match_in(routes, n, method, path, m, NULL);
}

/* A capture decoded into the arena (or malloc'd without one); NULL when
 * badly encoded, empty or out of memory. */
static char *decode_capture(const char *s, size_t n, sd_arena *a)
{
    char *out = a ? sd_arena_alloc(a, n + 1) : malloc(n + 1);
    if (out && sd_pct_decode_into(s, n, out) > 0)
        return out;
    if (!a)
        free(out);
    return NULL;
}

enum sd_match_result sd_route_match_in(const sd_route *routes, int n, const char *method,
                                       const char *path, sd_match *m, sd_arena *a)
{
    memset(m, 0, sizeof *m);
    m->route = -1;
    m->arena = a;
    const char *cap[SD_MAX_CAPTURES];
    size_t caplen[SD_MAX_CAPTURES];
    int ncap = 0;
    const char *group = NULL;
    for (int i = 0; i < n && m->route < 0; i++) {
        if (group ? strcmp(routes[i].pattern, group) != 0
                  : !match_pattern(routes[i].pattern, path, cap, caplen, &ncap))
            continue;
        if (!group)
            group = routes[i].pattern;
        int is_head = strcmp(method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0;
        if (strcmp(routes[i].method, method) == 0 || is_head)
            m->route = i;
    }
    if (!group)
        return SD_MATCH_NOT_FOUND;
    if (m->route < 0) { /* the methods of the pattern, for the 405's Allow */
        for (int i = 0; i < n; i++) {
            if (strcmp(routes[i].pattern, group) != 0)
                continue;
            size_t len = strlen(m->allow);
            snprintf(m->allow + len, sizeof m->allow - len, "%s%s%s", len ? ", " : "",
                     routes[i].method, strcmp(routes[i].method, "GET") == 0 ? ", HEAD" : "");
        }
        return SD_MATCH_METHOD;
    }
    for (int i = 0; i < ncap; i++) {
        if (!(m->captures[i] = decode_capture(cap[i], caplen[i], a))) {
            sd_match_free(m);
            return SD_MATCH_BAD_PATH;
        }
        m->ncaptures = i + 1;
    }
    return SD_MATCH_OK;
}
