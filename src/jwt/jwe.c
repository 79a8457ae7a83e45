/* jwe.c - access tokens encrypted for one recipient (see jwe.h). */
#include "jwt/jwe.h"
#include "jwt/jwk.h"
#include "util/err.h"
#include "util/keyfile.h"
#include "util/random.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILE_MAX    (64 * 1024)
#define LINE_MAX_B  4096
#define CEK_LEN     32 /* A256GCM */
#define WRAPPED_LEN (CEK_LEN + 8)
#define IV_LEN      12
#define TAG_LEN     16

struct sd_jwe_key {
    char kid[SD_KID_MAX + 1];
    EVP_PKEY *pub;
};

void sd_jwe_key_free(sd_jwe_key *k)
{
    if (!k)
        return;
    EVP_PKEY_free(k->pub);
    free(k);
}

const char *sd_jwe_key_kid(const sd_jwe_key *k)
{
    return k->kid;
}

/* A P-256 public key and nothing else. */
static bool p256_public(EVP_PKEY *pk)
{
    char group[64] = "";
    size_t gl = 0;
    return EVP_PKEY_is_a(pk, "EC") &&
           EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                          &gl) == 1 &&
           (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0);
}

/* The one '<kid> <base64 SPKI DER>' line of text (comments and blank lines
 * aside) into k. Returns 0 or SD_ECONFIG with err. */
static int parse_line(const char *text, size_t len, const char *name, sd_jwe_key *k, char *err,
                      size_t errlen)
{
    int lineno = 0, found = 0;
    for (const char *p = text, *end = text + len; p < end;) {
        lineno++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char line[LINE_MAX_B + 1], kid[128], b64[LINE_MAX_B + 1], extra[8];
        if (n > LINE_MAX_B) {
            snprintf(err, errlen, "%s:%d: line too long", name, lineno);
            return SD_ECONFIG;
        }
        memcpy(line, p, n);
        line[n] = '\0';
        p += n + (nl != NULL);
        char *c = strchr(line, '#');
        if (c)
            *c = '\0';
        int fields = sscanf(line, "%127s %4096s %7s", kid, b64, extra);
        if (fields <= 0)
            continue;
        size_t bl = fields == 2 ? strlen(b64) : 0;
        unsigned char der[LINE_MAX_B];
        int dl = bl && bl % 4 == 0 ? EVP_DecodeBlock(der, (const unsigned char *)b64, (int)bl) : -1;
        if (dl > 0)
            dl -= (b64[bl - 1] == '=') + (b64[bl - 2] == '=');
        const unsigned char *q = der;
        EVP_PKEY *pk =
            dl > 0 && sd_key_id_ok(kid, strlen(kid), SD_KID_MAX) ? d2i_PUBKEY(NULL, &q, dl) : NULL;
        if (!pk || q != der + dl || !p256_public(pk) || found) {
            EVP_PKEY_free(pk);
            snprintf(err, errlen,
                     found ? "%s:%d: holds a second key (a JWE has one recipient)"
                           : "%s:%d: expected '<key id> <base64 DER P-256 public key>' (id: 1-64 "
                             "of A-Z a-z 0-9 - _ .), or a PEM public key",
                     name, lineno);
            return SD_ECONFIG;
        }
        memcpy(k->kid, kid, strlen(kid) + 1);
        k->pub = pk;
        found = 1;
    }
    if (!found) {
        snprintf(err, errlen, "%s holds no key", name);
        return SD_ECONFIG;
    }
    return 0;
}

int sd_jwe_key_parse(const char *text, size_t len, const char *name, sd_jwe_key **out, char *err,
                     size_t errlen)
{
    *out = NULL;
    sd_jwe_key *k = calloc(1, sizeof *k);
    if (!k) {
        snprintf(err, errlen, "out of memory reading %s", name);
        return SD_ENOMEM;
    }
    int rc = 0;
    if (memmem(text, len, "PRIVATE KEY", 11)) {
        snprintf(err, errlen,
                 "%s holds a private key: give sessiond only the recipient's public key "
                 "(openssl pkey -pubout)",
                 name);
        rc = SD_ECONFIG;
    } else if (memmem(text, len, "-----BEGIN", 10)) {
        BIO *b = BIO_new_mem_buf(text, (int)len);
        k->pub = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        if (!k->pub || !p256_public(k->pub)) {
            snprintf(err, errlen, "%s: not a PEM P-256 public key", name);
            rc = SD_ECONFIG;
        }
    } else {
        rc = parse_line(text, len, name, k, err, errlen);
    }
    if (rc) {
        sd_jwe_key_free(k);
        return rc;
    }
    *out = k;
    return 0;
}

int sd_jwe_key_load(const char *path, sd_jwe_key **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open the JWT encryption key file %s", path);
        return SD_ECONFIG;
    }
    char *buf = malloc(FILE_MAX);
    size_t len = buf ? fread(buf, 1, FILE_MAX, f) : 0;
    int rc = 0;
    if (!buf) {
        snprintf(err, errlen, "out of memory reading %s", path);
        rc = SD_ENOMEM;
    } else if (ferror(f) || len == FILE_MAX) {
        snprintf(err, errlen, "cannot read the JWT encryption key file %s (at most 64 KiB)", path);
        rc = SD_ECONFIG;
    }
    fclose(f);
    if (rc == 0)
        rc = sd_jwe_key_parse(buf, len, path, out, err, errlen);
    free(buf);
    return rc;
}

/* ---- encryption ---------------------------------------------------------- */

/* The key-encryption key from the shared secret z (RFC 7518 section 4.6.2):
 * the Concat KDF with SHA-256, OtherInfo = AlgorithmID (the alg) |
 * PartyUInfo (empty) | PartyVInfo (empty) | SuppPubInfo (256). */
static int concat_kdf(const unsigned char *z, size_t zlen, unsigned char kek[32])
{
    unsigned char info[4 + sizeof SD_JWE_ALG - 1 + 12] = {0, 0, 0, sizeof SD_JWE_ALG - 1};
    memcpy(info + 4, SD_JWE_ALG, sizeof SD_JWE_ALG - 1);
    info[sizeof info - 2] = 1; /* 256 bits, big-endian, after two empty party infos */
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_SSKDF, NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, (void *)z, zlen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, sizeof info),
        OSSL_PARAM_construct_end(),
    };
    int ok = ctx && EVP_KDF_derive(ctx, kek, 32, params) == 1;
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return ok ? 0 : SD_EINVALID;
}

/* An ephemeral P-256 key, its public point (04|x|y) and the ECDH shared
 * secret with the recipient. Returns 0 or SD_EINVALID. */
static int agree(EVP_PKEY *recipient, unsigned char point[65], unsigned char z[32])
{
    EVP_PKEY *eph = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY_CTX *ctx = eph ? EVP_PKEY_CTX_new_from_pkey(NULL, eph, NULL) : NULL;
    size_t pl = 0, zl = 32;
    int ok = ctx &&
             EVP_PKEY_get_octet_string_param(eph, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point, 65,
                                             &pl) == 1 &&
             pl == 65 && EVP_PKEY_derive_init(ctx) == 1 &&
             EVP_PKEY_derive_set_peer(ctx, recipient) == 1 && EVP_PKEY_derive(ctx, z, &zl) == 1 &&
             zl == 32;
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(eph);
    return ok ? 0 : SD_EINVALID;
}

/* AES key wrap (RFC 3394) of the content key under kek. */
static int wrap(const unsigned char kek[32], const unsigned char cek[CEK_LEN],
                unsigned char out[WRAPPED_LEN])
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0, ok = 0;
    if (ctx) {
        EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
        ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_wrap(), NULL, kek, NULL) == 1 &&
             EVP_EncryptUpdate(ctx, out, &l1, cek, CEK_LEN) == 1 &&
             EVP_EncryptFinal_ex(ctx, out + l1, &l2) == 1 && l1 + l2 == WRAPPED_LEN;
    }
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : SD_EINVALID;
}

/* AES-256-GCM of n bytes of in into out (n bytes) and tag, with aad. */
static int seal(const unsigned char cek[CEK_LEN], const unsigned char iv[IV_LEN], const char *aad,
                size_t alen, const char *in, size_t n, unsigned char *out,
                unsigned char tag[TAG_LEN])
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int l = 0, lf = 0;
    int ok = ctx && n <= (size_t)INT32_MAX &&
             EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, IV_LEN, NULL) == 1 &&
             EVP_EncryptInit_ex(ctx, NULL, NULL, cek, iv) == 1 &&
             EVP_EncryptUpdate(ctx, NULL, &l, (const unsigned char *)aad, (int)alen) == 1 &&
             EVP_EncryptUpdate(ctx, out, &l, (const unsigned char *)in, (int)n) == 1 &&
             EVP_EncryptFinal_ex(ctx, out + l, &lf) == 1 && (size_t)(l + lf) == n &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : SD_EINVALID;
}

const char *sd_jwe_encrypt(const sd_jwe_key *k, sd_arena *a, const char *jws, size_t n)
{
    unsigned char point[65], z[32], kek[32], cek[CEK_LEN], iv[IV_LEN], wrapped[WRAPPED_LEN],
        tag[TAG_LEN];
    unsigned char *ct = sd_arena_alloc(a, n ? n : 1);
    char *out = NULL;
    if (!ct || agree(k->pub, point, z) || concat_kdf(z, sizeof z, kek) ||
        sd_random(cek, sizeof cek) || sd_random(iv, sizeof iv) || wrap(kek, cek, wrapped))
        goto out;
    /* The protected header: every value is fixed text, base64url, or a key
     * id of the safe alphabet (sd_key_id_ok), so nothing needs escaping. */
    char x[48], y[48], header[320];
    sd_b64url(point + 1, 32, x);
    sd_b64url(point + 33, 32, y);
    int hl =
        snprintf(header, sizeof header,
                 "{\"alg\":\"" SD_JWE_ALG "\",\"enc\":\"" SD_JWE_ENC "\",\"cty\":\"JWT\",%s%s%s"
                 "\"epk\":{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}}",
                 k->kid[0] ? "\"kid\":\"" : "", k->kid, k->kid[0] ? "\"," : "", x, y);
    sd_assert(hl > 0 && (size_t)hl < sizeof header);
    size_t cap = 4 * ((size_t)hl / 3 + 1) + 4 * (WRAPPED_LEN / 3 + 1) + 4 * (IV_LEN / 3 + 1) +
                 4 * (n / 3 + 1) + 4 * (TAG_LEN / 3 + 1) + 8;
    out = sd_arena_alloc(a, cap);
    if (!out)
        goto out;
    size_t o = sd_b64url((const unsigned char *)header, (size_t)hl, out);
    if (seal(cek, iv, out, o, jws, n, ct, tag)) { /* the AAD: the encoded header */
        out = NULL;
        goto out;
    }
    out[o++] = '.';
    o += sd_b64url(wrapped, sizeof wrapped, out + o);
    out[o++] = '.';
    o += sd_b64url(iv, sizeof iv, out + o);
    out[o++] = '.';
    o += sd_b64url(ct, n, out + o);
    out[o++] = '.';
    o += sd_b64url(tag, sizeof tag, out + o);
    sd_assert(o < cap);
out:
    OPENSSL_cleanse(z, sizeof z);
    OPENSSL_cleanse(kek, sizeof kek);
    OPENSSL_cleanse(cek, sizeof cek);
    return out;
}
