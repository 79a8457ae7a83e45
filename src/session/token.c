/* token.c - minting, shape checks and hashing of tokens and session ids. */
/* SHA256_Init/Update/Final, deprecated in OpenSSL 3 but kept by it: the
 * one-shot SHA256() goes through EVP_Q_digest, which allocates and frees a
 * digest context (three heap calls) on every validation. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "session/token.h"
#include "util/err.h"
#include "util/random.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>

int sd_token_mint(char out[SD_TOKEN_LEN + 1])
{
    unsigned char raw[SD_TOKEN_BYTES];
    int rc = sd_random(raw, sizeof raw);
    if (rc == 0)
        sd_b64url(raw, sizeof raw, out);
    OPENSSL_cleanse(raw, sizeof raw);
    return rc;
}

/* The base64url characters in ASCII order: text in it sorts as its value. */
static const char sorted64[] = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

int sd_id_mint(int64_t now_ms, char out[SD_ID_LEN + 1])
{
    unsigned char raw[SD_ID_RANDOM_CHARS];
    int rc = sd_random(raw, sizeof raw);
    if (rc)
        return rc;
    uint64_t t = now_ms < 0 ? 0 : (uint64_t)now_ms; /* the low 42 bits are written */
    for (int i = SD_ID_TIME_CHARS - 1; i >= 0; i--, t >>= 6)
        out[i] = sorted64[t & 63];
    for (int i = 0; i < SD_ID_RANDOM_CHARS; i++)
        out[SD_ID_TIME_CHARS + i] = sd_b64url_alphabet[raw[i] & 63];
    out[SD_ID_LEN] = '\0';
    OPENSSL_cleanse(raw, sizeof raw);
    return 0;
}

/* The base64url characters, as a table: validation asks this of every
 * token it is shown, and a lookup per byte beats four range tests. */
static const unsigned char b64url_char[256] = {
    ['-'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
    ['7'] = 1, ['8'] = 1, ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,
    ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1,
    ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
    ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['_'] = 1, ['a'] = 1, ['b'] = 1,
    ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1,
    ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1};

static bool b64url_only(const char *s, size_t n)
{
    unsigned ok = 1;
    for (size_t i = 0; i < n; i++)
        ok &= b64url_char[(unsigned char)s[i]];
    return ok;
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
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, token, n);
    SHA256_Final(out, &ctx);
    OPENSSL_cleanse(&ctx, sizeof ctx); /* it held the token */
}

bool sd_hash_equal(const unsigned char a[SD_HASH_LEN], const unsigned char b[SD_HASH_LEN])
{
    return CRYPTO_memcmp(a, b, SD_HASH_LEN) == 0;
}
