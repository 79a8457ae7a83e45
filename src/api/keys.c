/* keys.c - the API key file and the constant-time check of keys.h. */
#include "api/keys.h"
#include "session/token.h"
#include "util/err.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SCOPE_VALIDATE = 1, SCOPE_SESSIONS = 2, SCOPE_ADMIN = 4 };

typedef struct key {
    char id[64];
    unsigned char hash[SD_HASH_LEN];
    unsigned scopes;
    char *cn; /* cert:<CN> line: a client certificate's subject CN, not a key */
} key;

struct sd_keys {
    key *v;
    int n;
};

static unsigned scope_bit(const char *s, size_t n)
{
    if (n == 8 && memcmp(s, "validate", 8) == 0)
        return SCOPE_VALIDATE;
    if (n == 8 && memcmp(s, "sessions", 8) == 0)
        return SCOPE_SESSIONS;
    if (n == 5 && memcmp(s, "admin", 5) == 0)
        return SCOPE_ADMIN;
    return 0;
}

static int hexval(int c)
{
    return isdigit(c)               ? c - '0'
           : (c >= 'a' && c <= 'f') ? c - 'a' + 10
           : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                    : -1;
}

int sd_keys_load(const char *path, sd_keys **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open API key file %s: %s", path, strerror(errno));
        return SD_ECONFIG;
    }
    sd_keys *k = calloc(1, sizeof *k);
    char line[1024];
    int lineno = 0, rc = k ? 0 : SD_ENOMEM;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char id[64], hex[256], scopes[256];
        int got = sscanf(line, "%63s %255s %255s", id, hex, scopes);
        if (got <= 0)
            continue;
        key e = {0};
        bool cert = got == 3 && strncmp(hex, "cert:", 5) == 0 && hex[5];
        if (got != 3 || (!cert && strlen(hex) != 2 * SD_HASH_LEN)) {
            snprintf(err, errlen, "%s:%d: expected '<key-id> <sha256 hex or cert:CN> <scopes>'",
                     path, lineno);
            rc = SD_ECONFIG;
            break;
        }
        if (cert && !(e.cn = strdup(hex + 5))) {
            rc = SD_ENOMEM;
            break;
        }
        for (int i = 0; i < SD_HASH_LEN && rc == 0 && !cert; i++) {
            int hi = hexval((unsigned char)hex[2 * i]), lo = hexval((unsigned char)hex[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                snprintf(err, errlen, "%s:%d: the hash is not hexadecimal", path, lineno);
                rc = SD_ECONFIG;
                break;
            }
            e.hash[i] = (unsigned char)(hi << 4 | lo);
        }
        for (const char *p = scopes; rc == 0 && *p;) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            unsigned bit = scope_bit(p, n);
            if (!bit) {
                snprintf(err, errlen, "%s:%d: unknown scope '%.*s' (validate, sessions, admin)",
                         path, lineno, (int)n, p);
                rc = SD_ECONFIG;
            }
            e.scopes |= bit;
            p = comma ? comma + 1 : p + n;
        }
        if (rc) {
            free(e.cn);
            break;
        }
        snprintf(e.id, sizeof e.id, "%s", id);
        key *v = realloc(k->v, (size_t)(k->n + 1) * sizeof *v);
        if (!v) {
            free(e.cn);
            rc = SD_ENOMEM;
            break;
        }
        k->v = v;
        k->v[k->n++] = e;
    }
    fclose(f);
    if (rc) {
        sd_keys_free(k);
        return rc;
    }
    *out = k;
    return 0;
}

void sd_keys_free(sd_keys *k)
{
    if (!k)
        return;
    for (int i = 0; i < k->n; i++)
        free(k->v[i].cn);
    OPENSSL_cleanse(k->v, (size_t)k->n * sizeof *k->v);
    free(k->v);
    free(k);
}

int sd_keys_count(const sd_keys *k)
{
    return k ? k->n : 0;
}

enum sd_key_result sd_keys_check(const sd_keys *k, const char *presented, const char *scope,
                                 const char **key_id)
{
    *key_id = NULL;
    if (!presented || !*presented)
        return SD_KEY_MISSING;
    unsigned char h[SD_HASH_LEN];
    sd_token_hash(presented, strlen(presented), h);
    const key *match = NULL;
    for (int i = 0; i < k->n; i++) /* every entry, so timing says nothing */
        if (sd_hash_equal(h, k->v[i].hash) && !k->v[i].cn && !match)
            match = &k->v[i];
    if (!match)
        return SD_KEY_UNKNOWN;
    *key_id = match->id;
    unsigned need = scope ? scope_bit(scope, strlen(scope)) : 0;
    return (match->scopes & need) == need ? SD_KEY_OK : SD_KEY_FORBIDDEN;
}

enum sd_key_result sd_keys_check_client(const sd_keys *k, const char *client_id, const char *secret,
                                        const char *scope, const char **key_id)
{
    *key_id = NULL;
    if (!client_id || !*client_id || !secret || !*secret)
        return SD_KEY_UNKNOWN;
    unsigned char h[SD_HASH_LEN];
    sd_token_hash(secret, strlen(secret), h);
    const key *match = NULL;
    /* every entry's hash, so timing says nothing about the key; ids are not
     * secret (they name the caller in logs and audit records) */
    for (int i = 0; i < k->n; i++) {
        bool same_hash = sd_hash_equal(h, k->v[i].hash);
        if (same_hash && !k->v[i].cn && !match && strcmp(k->v[i].id, client_id) == 0)
            match = &k->v[i];
    }
    OPENSSL_cleanse(h, sizeof h);
    if (!match)
        return SD_KEY_UNKNOWN;
    *key_id = match->id;
    unsigned need = scope ? scope_bit(scope, strlen(scope)) : 0;
    return (match->scopes & need) == need ? SD_KEY_OK : SD_KEY_FORBIDDEN;
}

enum sd_key_result sd_keys_check_cert(const sd_keys *k, const char *cn, const char *scope,
                                      const char **key_id)
{
    *key_id = NULL;
    if (!cn)
        return SD_KEY_MISSING;
    const key *match = NULL; /* a CN is public: no need for constant time */
    for (int i = 0; i < k->n && !match; i++)
        if (k->v[i].cn && strcmp(k->v[i].cn, cn) == 0)
            match = &k->v[i];
    if (!match)
        return SD_KEY_UNKNOWN;
    *key_id = match->id;
    unsigned need = scope ? scope_bit(scope, strlen(scope)) : 0;
    return (match->scopes & need) == need ? SD_KEY_OK : SD_KEY_FORBIDDEN;
}
