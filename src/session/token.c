/* token.c - minting, shape checks and hashing of tokens and session ids. */
#include "session/token.h"
#include "util/err.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>
#include <sys/random.h>

int sd_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return SD_ERANDOM;
        }
        if (r == 0)
            return SD_ERANDOM;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t sd_b64url(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
        out[o++] = b64[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
    } else if (n - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

static int mint(size_t nbytes, char *out)
{
    unsigned char raw[SD_TOKEN_BYTES];
    int rc = sd_random(raw, nbytes);
    if (rc == 0)
        sd_b64url(raw, nbytes, out);
    OPENSSL_cleanse(raw, sizeof raw);
    return rc;
}

int sd_token_mint(char out[SD_TOKEN_LEN + 1])
{
    return mint(SD_TOKEN_BYTES, out);
}

int sd_id_mint(char out[SD_ID_LEN + 1])
{
    return mint(SD_ID_BYTES, out);
}

static bool b64url_only(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

bool sd_token_wellformed(const char *s, size_t n)
{
    return n == SD_TOKEN_LEN && b64url_only(s, n);
}

bool sd_id_wellformed(const char *s, size_t n)
{
    return n == SD_ID_LEN && b64url_only(s, n);
}

void sd_token_hash(const char *token, size_t n, unsigned char out[SD_HASH_LEN])
{
    SHA256((const unsigned char *)token, n, out);
}

bool sd_hash_equal(const unsigned char a[SD_HASH_LEN], const unsigned char b[SD_HASH_LEN])
{
    return CRYPTO_memcmp(a, b, SD_HASH_LEN) == 0;
}
