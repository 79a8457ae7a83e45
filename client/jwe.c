/*
 * jwe.c - opening sessiond's encrypted access tokens (--jwt-encrypt-key):
 * a compact JWE (RFC 7516) with alg ECDH-ES+A256KW and enc A256GCM (RFC
 * 7518 sections 4.6 and 5.3) whose plaintext is the signed JWT jwt.c then
 * verifies. OpenSSL does the cryptography: ECDH with the ephemeral key
 * from the header, imported through EVP_PKEY_fromdata (which refuses a
 * point not on P-256: the invalid-curve attack), the Concat KDF (SSKDF with
 * SHA-256), AES key unwrap (RFC 3394, its integrity check) and AES-256-GCM
 * (the tag covers the encoded header as AAD).
 *
 * Only those two algorithms are accepted, from the header alone, before any
 * key is used: no "dir", no RSA, no other enc, no "zip", no "crit". The
 * private key is the verifier's, parsed once (sdc__jwe_key_load); a token
 * cannot pick another.
 */
#include "internal.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define JWE_ALG     "ECDH-ES+A256KW"
#define CEK_LEN     32
#define WRAPPED_LEN (CEK_LEN + 8)
#define IV_LEN      12
#define TAG_LEN     16
#define PARTY_MAX   256 /* apu, apv: bytes each, at most */

int sdc__jwe_key_load(const char *path, EVP_PKEY **out)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f)
        return SD_CLIENT_EINVAL;
    EVP_PKEY *pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    char group[64] = "";
    size_t gl = 0;
    if (!pk || !EVP_PKEY_is_a(pk, "EC") ||
        EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &gl) !=
            1 ||
        (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)) {
        EVP_PKEY_free(pk);
        return SD_CLIENT_EINVAL;
    }
    *out = pk;
    return 0;
}

/* A base64url member of the header, at most max bytes, into out (*n its
 * length; absent: 0 bytes). -1 when it is there but not such a string. */
static int party_info(json_t *h, const char *name, unsigned char *out, size_t max, size_t *n)
{
    json_t *j = json_object_get(h, name);
    *n = 0;
    if (!j)
        return 0;
    const char *t = json_string_value(j);
    if (!t)
        return -1;
    if (!t[0])
        return 0;
    unsigned char *b = sdc__b64url_decode(t, strlen(t), n);
    int rc = b && *n <= max ? 0 : -1;
    if (rc == 0)
        memcpy(out, b, *n);
    free(b);
    return rc;
}

/* The key-encryption key (RFC 7518 section 4.6.2): Concat KDF with
 * SHA-256 of z, OtherInfo = len|alg, len|apu, len|apv, 256. */
static int kek_derive(const unsigned char *z, size_t zlen, const unsigned char *apu, size_t ulen,
                      const unsigned char *apv, size_t vlen, unsigned char kek[32])
{
    unsigned char info[4 + sizeof JWE_ALG - 1 + 4 + PARTY_MAX + 4 + PARTY_MAX + 4];
    size_t o = 0;
    const struct {
        const unsigned char *p;
        size_t n;
    } parts[] = {{(const unsigned char *)JWE_ALG, sizeof JWE_ALG - 1}, {apu, ulen}, {apv, vlen}};
    for (size_t i = 0; i < 3; i++) {
        info[o++] = (unsigned char)(parts[i].n >> 24);
        info[o++] = (unsigned char)(parts[i].n >> 16);
        info[o++] = (unsigned char)(parts[i].n >> 8);
        info[o++] = (unsigned char)parts[i].n;
        if (parts[i].n)
            memcpy(info + o, parts[i].p, parts[i].n);
        o += parts[i].n;
    }
    static const unsigned char bits[4] = {0, 0, 1, 0}; /* SuppPubInfo: 256 */
    memcpy(info + o, bits, 4);
    o += 4;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_SSKDF, NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, (void *)z, zlen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, o),
        OSSL_PARAM_construct_end(),
    };
    int ok = ctx && EVP_KDF_derive(ctx, kek, 32, params) == 1;
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return ok ? 0 : -1;
}

/* The ephemeral public key of the header ("epk"): a P-256 point, on the
 * curve (sdc__p256_key refuses any other); NULL otherwise. */
static EVP_PKEY *ephemeral_key(json_t *h)
{
    json_t *epk = json_object_get(h, "epk");
    const char *kty = json_string_value(json_object_get(epk, "kty"));
    const char *crv = json_string_value(json_object_get(epk, "crv"));
    const char *x = json_string_value(json_object_get(epk, "x"));
    const char *y = json_string_value(json_object_get(epk, "y"));
    if (!kty || !crv || !x || !y || strcmp(kty, "EC") != 0 || strcmp(crv, "P-256") != 0)
        return NULL;
    size_t xl = 0, yl = 0;
    unsigned char *xb = sdc__b64url_decode(x, strlen(x), &xl);
    unsigned char *yb = sdc__b64url_decode(y, strlen(y), &yl);
    EVP_PKEY *pk = NULL;
    if (xb && yb && xl == 32 && yl == 32) {
        unsigned char point[65] = {0x04};
        memcpy(point + 1, xb, 32);
        memcpy(point + 33, yb, 32);
        pk = sdc__p256_key(point);
    }
    free(xb);
    free(yb);
    return pk;
}

/* ECDH of key with the ephemeral key, then the KDF and the unwrap of the
 * content key. 0 or -1. */
static int content_key(EVP_PKEY *key, EVP_PKEY *epk, json_t *h, const unsigned char *wrapped,
                       size_t wlen, unsigned char cek[CEK_LEN])
{
    unsigned char z[32], kek[32], apu[PARTY_MAX], apv[PARTY_MAX];
    size_t zl = sizeof z, ul, vl;
    int l1 = 0, l2 = 0, ok = 0;
    EVP_PKEY_CTX *dctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    EVP_CIPHER_CTX *cctx = EVP_CIPHER_CTX_new();
    if (dctx && cctx && wlen == WRAPPED_LEN && party_info(h, "apu", apu, sizeof apu, &ul) == 0 &&
        party_info(h, "apv", apv, sizeof apv, &vl) == 0 && EVP_PKEY_derive_init(dctx) == 1 &&
        EVP_PKEY_derive_set_peer(dctx, epk) == 1 && EVP_PKEY_derive(dctx, z, &zl) == 1 &&
        zl == 32 && kek_derive(z, zl, apu, ul, apv, vl, kek) == 0) {
        EVP_CIPHER_CTX_set_flags(cctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
        unsigned char out[WRAPPED_LEN];
        ok = EVP_DecryptInit_ex(cctx, EVP_aes_256_wrap(), NULL, kek, NULL) == 1 &&
             EVP_DecryptUpdate(cctx, out, &l1, wrapped, (int)wlen) == 1 &&
             EVP_DecryptFinal_ex(cctx, out + l1, &l2) == 1 && l1 + l2 == CEK_LEN;
        if (ok)
            memcpy(cek, out, CEK_LEN);
        OPENSSL_cleanse(out, sizeof out);
    }
    OPENSSL_cleanse(z, sizeof z);
    OPENSSL_cleanse(kek, sizeof kek);
    EVP_PKEY_CTX_free(dctx);
    EVP_CIPHER_CTX_free(cctx);
    return ok ? 0 : -1;
}

/* AES-256-GCM: n bytes of ct into out (n bytes), checking tag over aad. */
static int open_gcm(const unsigned char cek[CEK_LEN], const unsigned char *iv, const char *aad,
                    size_t alen, const unsigned char *ct, size_t n, unsigned char *tag,
                    unsigned char *out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int l = 0, lf = 0;
    int ok = ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, IV_LEN, NULL) == 1 &&
             EVP_DecryptInit_ex(ctx, NULL, NULL, cek, iv) == 1 &&
             EVP_DecryptUpdate(ctx, NULL, &l, (const unsigned char *)aad, (int)alen) == 1 &&
             EVP_DecryptUpdate(ctx, out, &l, ct, (int)n) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1 &&
             EVP_DecryptFinal_ex(ctx, out + l, &lf) == 1 && (size_t)(l + lf) == n;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

int sdc__jwe_decrypt(EVP_PKEY *key, const char *tok, size_t n, char **jws)
{
    *jws = NULL;
    const char *dot[4];
    const char *p = tok, *end = tok + n;
    for (int i = 0; i < 4; i++) {
        dot[i] = memchr(p, '.', (size_t)(end - p));
        if (!dot[i])
            return SD_CLIENT_EJWT_MALFORMED;
        p = dot[i] + 1;
    }
    if (memchr(p, '.', (size_t)(end - p)))
        return SD_CLIENT_EJWT_MALFORMED;
    size_t hl = 0, wl = 0, il = 0, cl = 0, tl = 0;
    unsigned char *hb = sdc__b64url_decode(tok, (size_t)(dot[0] - tok), &hl);
    json_t *h = hb ? json_loadb((const char *)hb, hl, JSON_REJECT_DUPLICATES, NULL) : NULL;
    free(hb);
    int rc = json_is_object(h) ? 0 : SD_CLIENT_EJWT_MALFORMED;
    const char *alg = json_string_value(json_object_get(h, "alg"));
    const char *enc = json_string_value(json_object_get(h, "enc"));
    json_t *cty = json_object_get(h, "cty");
    if (rc == 0 && (!alg || !enc || strcmp(alg, JWE_ALG) != 0 || strcmp(enc, "A256GCM") != 0))
        rc = SD_CLIENT_EJWT_ALG; /* dir, RSA, A128KW, CBC-HS, ...: never */
    else if (rc == 0 &&
             (json_object_get(h, "crit") || json_object_get(h, "zip") ||
              (cty && (!json_is_string(cty) || strcasecmp(json_string_value(cty), "JWT") != 0))))
        rc = SD_CLIENT_EJWT_MALFORMED;
    unsigned char *wrapped = NULL, *iv = NULL, *ct = NULL, *tag = NULL, *plain = NULL;
    EVP_PKEY *epk = NULL;
    if (rc == 0) {
        wrapped = sdc__b64url_decode(dot[0] + 1, (size_t)(dot[1] - dot[0] - 1), &wl);
        iv = sdc__b64url_decode(dot[1] + 1, (size_t)(dot[2] - dot[1] - 1), &il);
        ct = sdc__b64url_decode(dot[2] + 1, (size_t)(dot[3] - dot[2] - 1), &cl);
        tag = sdc__b64url_decode(dot[3] + 1, (size_t)(end - dot[3] - 1), &tl);
        if (!wrapped || !iv || !ct || !tag || il != IV_LEN || tl != TAG_LEN || cl > SDC_MAX_JWT)
            rc = SD_CLIENT_EJWT_MALFORMED;
    }
    unsigned char cek[CEK_LEN];
    if (rc == 0 && !(epk = ephemeral_key(h)))
        rc = SD_CLIENT_EJWT_MALFORMED; /* absent, or not a point of P-256 */
    else if (rc == 0 && content_key(key, epk, h, wrapped, wl, cek))
        rc = SD_CLIENT_EJWT_ENCRYPTION; /* another recipient's, or altered */
    else if (rc == 0 && !(plain = malloc(cl + 1)))
        rc = SD_CLIENT_ENOMEM;
    else if (rc == 0 && open_gcm(cek, iv, tok, (size_t)(dot[0] - tok), ct, cl, tag, plain))
        rc = SD_CLIENT_EJWT_ENCRYPTION; /* header, ciphertext or tag altered */
    OPENSSL_cleanse(cek, sizeof cek);
    if (rc == 0) {
        plain[cl] = '\0';
        *jws = (char *)plain;
        plain = NULL;
    }
    if (plain) {
        OPENSSL_cleanse(plain, cl + 1);
        free(plain);
    }
    EVP_PKEY_free(epk);
    json_decref(h);
    free(wrapped);
    free(iv);
    free(ct);
    free(tag);
    return rc;
}
