/*
 * protected.c - protected mode (no API keys configured, sd_api_protected_mode):
 * a request is served only when its Host names a loopback address, and a
 * state-changing one only when its Origin, if it has one, does too (a DNS
 * rebinding defence: a page of another site that resolves to 127.0.0.1 is
 * refused). sd_api_loopback_authority is the loopback test /metrics uses too.
 */
#include "api/api.h"
#include "audit/audit.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

/* 1 to 5 decimal digits. */
static bool port_ok(const char *s, size_t n)
{
    if (n < 1 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* 127.a.b.c in dotted decimal, each part 0-255 (what a browser's URL parser
 * writes into Host for any spelling of a 127/8 address). */
static bool ipv4_loopback(const char *s, size_t n)
{
    if (n < 9 || memcmp(s, "127.", 4) != 0)
        return false;
    int parts = 0;
    for (size_t i = 4; i <= n; parts++) {
        size_t j = i;
        unsigned v = 0;
        while (j < n && isdigit((unsigned char)s[j]) && j - i < 3)
            v = v * 10 + (unsigned)(s[j++] - '0');
        if (j == i || v > 255 || (j < n && s[j] != '.'))
            return false;
        i = j + 1;
    }
    return parts == 3;
}

/* localhost or <labels>.localhost (RFC 6761: always the loopback; no DNS
 * answer can move them), case-insensitive, with or without a final dot. */
static bool localhost_name(const char *s, size_t n)
{
    if (n && s[n - 1] == '.')
        n--;
    if (n == 9)
        return strncasecmp(s, "localhost", 9) == 0;
    if (n < 11 || strncasecmp(s + n - 10, ".localhost", 10) != 0)
        return false;
    for (size_t i = 0, label = 0; i < n - 10; i++) {
        if (s[i] == '.') {
            if (!label)
                return false;
            label = 0;
        } else if (isalnum((unsigned char)s[i]) || s[i] == '-') {
            label++;
        } else {
            return false;
        }
        if (i == n - 11 && !label)
            return false;
    }
    return true;
}

bool sd_api_loopback_authority(const char *a, size_t n)
{
    if (n && a[0] == '[') {
        const char *close = memchr(a, ']', n);
        if (!close)
            return false;
        size_t len = (size_t)(close - a) - 1, rest = n - len - 2;
        if (rest && (close[1] != ':' || !port_ok(close + 2, rest - 1)))
            return false;
        char text[INET6_ADDRSTRLEN];
        struct in6_addr in6;
        if (len >= sizeof text)
            return false;
        memcpy(text, a + 1, len);
        text[len] = '\0';
        if (inet_pton(AF_INET6, text, &in6) != 1)
            return false;
        return IN6_IS_ADDR_LOOPBACK(&in6) || (IN6_IS_ADDR_V4MAPPED(&in6) && in6.s6_addr[12] == 127);
    }
    const char *colon = memchr(a, ':', n);
    size_t hlen = colon ? (size_t)(colon - a) : n;
    if (colon && !port_ok(colon + 1, n - hlen - 1))
        return false;
    return ipv4_loopback(a, hlen) || localhost_name(a, hlen);
}

/* An Origin (RFC 6454 serialization: scheme "://" host [":" port]) whose
 * host is a loopback name or address. "null" and anything else: false. */
static bool loopback_origin(const char *o)
{
    const char *sep = strstr(o, "://");
    if (!sep)
        return false;
    size_t slen = (size_t)(sep - o);
    if (!((slen == 4 && strncasecmp(o, "http", 4) == 0) ||
          (slen == 5 && strncasecmp(o, "https", 5) == 0)))
        return false;
    const char *auth = sep + 3;
    if (strpbrk(auth, "/?#@"))
        return false;
    return sd_api_loopback_authority(auth, strlen(auth));
}

static bool state_changing(const char *method)
{
    return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 &&
           strcmp(method, "OPTIONS") != 0;
}

int sd_api_loopback_only(sd_req *r)
{
    const char *host = sd_req_header(r, "Host");
    if (host && !sd_api_loopback_authority(host, strlen(host))) {
        sd_warn("protected_mode_refused reason=host host=%.64s request=%s", host, sd_req_id(r));
        sd_audit_emit("caller_auth_failed", NULL, NULL, NULL, sd_req_peer(r), "non_loopback_host");
        sd_reply_problem(
            r, 403,
            "protected mode (no --api-keys): sessiond answers only requests addressed "
            "to a loopback name (localhost, 127.0.0.1, [::1]), and Host '%.64s' is not "
            "one (a DNS rebinding defence). Call it by a loopback address, or give it "
            "API keys (--api-keys FILE) to serve other names",
            host);
        return 1;
    }
    const char *origin = sd_req_header(r, "Origin");
    if (origin && state_changing(sd_req_method(r)) && !loopback_origin(origin)) {
        sd_warn("protected_mode_refused reason=origin origin=%.64s request=%s", origin,
                sd_req_id(r));
        sd_audit_emit("caller_auth_failed", NULL, NULL, NULL, sd_req_peer(r), "cross_site_origin");
        sd_reply_problem(r, 403,
                         "protected mode (no --api-keys): a %s from a page whose Origin is '%.64s' "
                         "is refused; only pages served from a loopback address (such as the "
                         "console at /console/) may change state. Give sessiond API keys "
                         "(--api-keys FILE) to authenticate callers instead",
                         sd_req_method(r), origin);
        return 1;
    }
    return 0;
}

bool sd_api_protected_mode(sd_app *app)
{
    int slot = sd_brlock_rdlock(&app->keys_lock);
    bool open = app->keys == NULL;
    sd_brlock_rdunlock(&app->keys_lock, slot);
    return open;
}
