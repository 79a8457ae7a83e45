/* fuzz_jwks.c - the JWT key file (--jwt-keys: "<kid> <base64 PKCS#8 key>
 * [next]" lines) through sd_jwks_parse; a file that loads then publishes
 * its JWK Set and signs a token. The first byte picks that, or the ECDSA
 * signature converter (DER to JOSE). Oracle besides the sanitizers: an
 * error never quotes a line's key field. */
#include "jwt/jwk.h"
#include "util/arena.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Calls fn(first, second, ctx) for the first two fields of each line. */
static void each_line(const char *text, size_t len, void (*fn)(const char *, const char *, void *),
                      void *ctx)
{
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char line[8192], kid[128], field[8192];
        if (n < sizeof line) {
            memcpy(line, p, n);
            line[n] = '\0';
            if (sscanf(line, "%127s %8191s", kid, field) == 2)
                fn(kid, field, ctx);
        }
        p += n + 1;
    }
}

struct check {
    const char *err;
};

static void check_field(const char *kid, const char *field, void *ctx)
{
    (void)kid;
    struct check *c = ctx;
    if (strlen(field) >= 16 && strstr(c->err, field))
        abort();
}

/* abort()s when err holds the second field of any line of text (a key).
 * The key id an error quotes ("key id '<kid>' appears twice") is public and
 * is blanked first: a file may hold a key that is part of a key id, or one
 * that matches a key id's end and the quote after it (both found by the
 * fuzzer, both regression seeds). Fields hold no space, so none can match
 * across the blank. */
static void check_no_key_in(const char *err, const char *text, size_t len)
{
    char shown[1024];
    snprintf(shown, sizeof shown, "%s", err);
    char *from = strstr(shown, "key id '"), *to = strstr(shown, "' appears twice");
    if (from && to && to > from)
        memset(from + 8, ' ', (size_t)(to - from - 8));
    struct check c = {shown};
    each_line(text, len, check_field, &c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    if (data[0] & 1) {
        unsigned char jose[64];
        sd_ecdsa_der_to_jose((const unsigned char *)text, n, jose);
        return 0;
    }
    char err[512] = "";
    sd_jwks *k = NULL;
    if (sd_jwks_parse(text, n, "fuzz", &k, err, sizeof err) != 0) {
        check_no_key_in(err, text, n);
        return 0;
    }
    if (sd_jwks_count(k) < 1 || !sd_jwks_current_kid(k) || !sd_jwks_current_alg(k))
        abort();
    json_decref(sd_jwks_public(k));
    char mem[1024];
    sd_arena a;
    sd_arena_init(&a, mem, sizeof mem);
    size_t len = 0;
    sd_jws_sign(k, &a, "{\"sub\":\"u\"}", 11, &len);
    sd_arena_reset(&a);
    sd_jwks_free(k);
    return 0;
}
