/*
 * triage.c - the match of an incident-response revocation (see triage.h).
 */
#include "session/triage.h"
#include "util/err.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool prefix_equal(const unsigned char *a, const unsigned char *b, int bits)
{
    int bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)bytes) != 0)
        return false;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return rest == 0 || ((a[bytes] ^ b[bytes]) & mask) == 0;
}

int sd_triage_network(const char *text, sd_triage *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(text, '/');
    size_t n = slash ? (size_t)(slash - text) : strlen(text);
    if (n == 0 || n >= sizeof addr)
        goto bad;
    memcpy(addr, text, n);
    addr[n] = '\0';
    if (inet_pton(AF_INET, addr, t->net) == 1)
        t->family = AF_INET;
    else if (inet_pton(AF_INET6, addr, t->net) == 1)
        t->family = AF_INET6;
    else
        goto bad;
    int max = t->family == AF_INET ? 32 : 128;
    t->prefix = max;
    if (slash) {
        const char *p = slash + 1;
        char *end;
        long v = strtol(p, &end, 10);
        if (*p < '0' || *p > '9' || *end || v > max || (p[0] == '0' && p[1]))
            goto bad;
        t->prefix = (int)v;
    }
    for (int bit = t->prefix; bit < max; bit++) /* host bits must be zero */
        if (t->net[bit / 8] & (0x80 >> (bit % 8))) {
            snprintf(err, errlen, "field 'network' has host bits set past /%d", t->prefix);
            return SD_EINVALID;
        }
    return 0;
bad:
    snprintf(err, errlen,
             "field 'network' must be an IPv4 or IPv6 network in CIDR notation "
             "(203.0.113.0/24, 2001:db8::/32)");
    return SD_EINVALID;
}

bool sd_triage_match(const sd_triage *t, const sd_session *s)
{
    if (!s->attrs)
        return false;
    if (!t->family) {
        const char *d = json_string_value(json_object_get(s->attrs, "deviceId"));
        return d && t->device_id && strcmp(d, t->device_id) == 0;
    }
    const char *ip = json_string_value(json_object_get(s->attrs, "ipAddress"));
    unsigned char a[16];
    return ip && inet_pton(t->family, ip, a) == 1 && prefix_equal(a, t->net, t->prefix);
}
