/*
 * binding.c - client binding (session.h, sd_binding): a session bound at
 * creation to the network of its ipAddress and/or a digest of its userAgent,
 * and the check of a client's context against it on validation.
 */
#include "session/session.h"
#include "session/token.h"
#include "util/err.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

static void ua_digest(const char *ua, unsigned char out[16])
{
    unsigned char md[SD_HASH_LEN];
    sd_token_hash(ua, strlen(ua), md); /* SHA-256 */
    memcpy(out, md, 16);
}

/* Parses ip and masks it to the prefix of its family. */
static bool masked_ip(const char *text, const sd_binding *like, int v4_prefix, int v6_prefix,
                      unsigned char out[16], unsigned char *family, unsigned char *prefix)
{
    memset(out, 0, 16);
    if (inet_pton(AF_INET, text, out) == 1) {
        *family = 4;
        *prefix = (unsigned char)(like ? like->prefix : v4_prefix);
    } else if (inet_pton(AF_INET6, text, out) == 1) {
        *family = 6;
        *prefix = (unsigned char)(like ? like->prefix : v6_prefix);
    } else {
        return false;
    }
    for (int bit = *prefix; bit < 128; bit++)
        out[bit / 8] &= (unsigned char)~(0x80 >> (bit % 8));
    return true;
}

bool sd_binding_matches(const sd_binding *b, const char *ip, const char *user_agent)
{
    if (b->flags & SD_BIND_IP) {
        unsigned char a[16], family, prefix;
        if (!ip || !masked_ip(ip, b, 0, 0, a, &family, &prefix) || family != b->family ||
            memcmp(a, b->ip, 16) != 0)
            return false;
    }
    if (b->flags & SD_BIND_UA) {
        unsigned char d[16];
        if (!user_agent)
            return false;
        ua_digest(user_agent, d);
        if (CRYPTO_memcmp(d, b->ua, 16) != 0)
            return false;
    }
    return true;
}

static int fail(char *err, size_t n, const char *what)
{
    snprintf(err, n, "%s", what);
    return SD_EINVALID;
}

int sd_binding_parse(const json_t *body, const json_t *v, const sd_policy *p, sd_binding *out,
                     char *err, size_t n)
{
    memset(out, 0, sizeof *out);
    if (!json_is_object(v))
        return fail(err, n,
                    "field 'bind' must be an object like {\"ip\": true, \"userAgent\": true}");
    const char *key;
    json_t *f;
    json_object_foreach((json_t *)v, key, f)
    {
        if (strcmp(key, "ip") != 0 && strcmp(key, "userAgent") != 0)
            return fail(err, n, "field 'bind' may only hold 'ip' and 'userAgent'");
        if (!json_is_boolean(f)) {
            snprintf(err, n, "'bind.%s' must be a boolean", key);
            return SD_EINVALID;
        }
    }
    if (json_is_true(json_object_get(v, "ip"))) {
        json_t *ip = json_object_get(body, "ipAddress");
        if (!ip)
            return fail(err, n, "'bind.ip' needs the session's 'ipAddress'");
        masked_ip(json_string_value(ip), NULL, p->bind_v4_prefix, p->bind_v6_prefix, out->ip,
                  &out->family, &out->prefix);
        out->flags |= SD_BIND_IP;
    }
    if (json_is_true(json_object_get(v, "userAgent"))) {
        json_t *ua = json_object_get(body, "userAgent");
        if (!ua)
            return fail(err, n, "'bind.userAgent' needs the session's 'userAgent'");
        ua_digest(json_string_value(ua), out->ua);
        out->flags |= SD_BIND_UA;
    }
    return 0;
}
