/*
 * precond.c - If-Match and If-None-Match on a session's version (see
 * precond.h).
 */
#include "session/precond.h"
#include "util/err.h"

#include <stdio.h>
#include <string.h>

static const char *skip_ows(const char *h)
{
    while (*h == ' ' || *h == '\t')
        h++;
    return h;
}

/* The version an element names: "N" (W/"N" too when weak is allowed), or
 * -1. Strong comparison is exact, so "05" is not the tag of version 5. */
static int64_t tag_version(const char *h, size_t len, bool weak)
{
    if (weak && len >= 2 && h[0] == 'W' && h[1] == '/') {
        h += 2;
        len -= 2;
    }
    if (len < 3 || h[0] != '"' || h[len - 1] != '"' || (len > 3 && h[1] == '0'))
        return -1;
    int64_t v = 0;
    for (size_t i = 1; i + 1 < len; i++) {
        if (h[i] < '0' || h[i] > '9' || v > INT64_MAX / 10 - 10)
            return -1;
        v = v * 10 + (h[i] - '0');
    }
    return v;
}

/* One header's list into v[] (at most SD_PRECOND_TAGS; *more when there
 * were more elements). '*' as the whole value sets *any. */
static void parse_list(const char *h, bool weak, int64_t *v, int *n, bool *any, bool *more)
{
    *n = 0;
    *any = *more = false;
    if (!h)
        return;
    h = skip_ows(h);
    size_t whole = strlen(h);
    while (whole && (h[whole - 1] == ' ' || h[whole - 1] == '\t'))
        whole--;
    if (whole == 1 && h[0] == '*') {
        *any = true;
        return;
    }
    while (*h) {
        const char *end = strchr(h, ',');
        size_t len = end ? (size_t)(end - h) : strlen(h);
        while (len && (h[len - 1] == ' ' || h[len - 1] == '\t'))
            len--;
        if (len) { /* empty list elements are allowed and ignored (RFC 9110 5.6.1) */
            if (*n == SD_PRECOND_TAGS) {
                *more = true;
                return;
            }
            v[(*n)++] = tag_version(h, len, weak);
        }
        if (!end)
            break;
        h = skip_ows(end + 1);
    }
}

int sd_precond_parse(const char *if_match, const char *if_none_match, sd_precond *out, char *err,
                     size_t errlen)
{
    memset(out, 0, sizeof *out);
    bool any, more;
    /* If-Match: '*' holds for any current version, as if absent. */
    parse_list(if_match, false, out->if_match, &out->n_if_match, &any, &more);
    parse_list(if_none_match, true, out->if_none_match, &out->n_if_none_match,
               &out->if_none_match_any, &more);
    if (more) {
        snprintf(err, errlen, "header 'If-None-Match' lists more than %d entity-tags",
                 SD_PRECOND_TAGS);
        return SD_EINVALID;
    }
    return 0;
}

bool sd_precond_any(const sd_precond *p)
{
    return p->n_if_match > 0 || p->n_if_none_match > 0 || p->if_none_match_any;
}

static bool listed(const int64_t *v, int n, int64_t version)
{
    for (int i = 0; i < n; i++)
        if (v[i] == version)
            return true;
    return false;
}

sd_precond_result sd_precond_eval(const sd_precond *p, int64_t version)
{
    if (p->n_if_match > 0 && !listed(p->if_match, p->n_if_match, version))
        return SD_PRECOND_FAILED;
    if (p->if_none_match_any || listed(p->if_none_match, p->n_if_none_match, version))
        return SD_PRECOND_NONE;
    return SD_PRECOND_HOLDS;
}

int sd_precond_check(const sd_precond *p, int64_t version, char *err, size_t n)
{
    sd_precond_result r = p ? sd_precond_eval(p, version) : SD_PRECOND_HOLDS;
    if (r == SD_PRECOND_HOLDS)
        return 0;
    sd_precond_detail(r, version, err, n);
    return SD_ECONFLICT;
}

void sd_precond_detail(sd_precond_result r, int64_t version, char *buf, size_t n)
{
    if (r == SD_PRECOND_NONE)
        snprintf(buf, n,
                 "If-None-Match names the session's current version \"%lld\" (or is '*'): "
                 "nothing was changed",
                 (long long)version);
    else
        snprintf(buf, n,
                 "the session has changed: it is at version \"%lld\" (its ETag), which "
                 "If-Match does not name (GET it again, then retry)",
                 (long long)version);
}
