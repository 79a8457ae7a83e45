/*
 * jwks.c - the signing keys a verifier trusts (jwt.c): sessiond's JWK Set
 * (GET /.well-known/jwks.json) parsed into OpenSSL public keys, and the one
 * signature check over a compact JWS. Only what sessiond signs with is
 * accepted: Ed25519 keys for EdDSA and P-256 keys for ES256, each key only
 * for the algorithm its JWK names; any other member of the set is skipped.
 * base64url is decoded by OpenSSL (EVP_DecodeBlock) once the text is
 * checked to hold nothing but the URL-safe alphabet; ES256's JOSE
 * signature (r||s, 64 bytes) becomes the DER OpenSSL verifies.
 */
#include "internal.h"

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

unsigned char *sdc__b64url_decode(const char *in, size_t n, size_t *len)
{
    *len = 0;
    if (n == 0 || n % 4 == 1 || n > SDC_MAX_JWE)
        return NULL;
    size_t padded = (n + 3) / 4 * 4;
    char *std = malloc(padded + 1);
    unsigned char *out = malloc(padded / 4 * 3 + 1);
    if (!std || !out)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        char ch = in[i];
        if (ch == '-')
            ch = '+';
        else if (ch == '_')
            ch = '/';
        else if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                   (ch >= '0' && ch <= '9')))
            goto fail; /* '+', '/', '=' and anything else are not base64url */
        std[i] = ch;
    }
    memset(std + n, '=', padded - n);
    int got = EVP_DecodeBlock(out, (const unsigned char *)std, (int)padded);
    if (got < 0)
        goto fail;
    free(std);
    *len = (size_t)got - (padded - n); /* EVP_DecodeBlock counts the padding */
    out[*len] = '\0';
    return out;
fail:
    free(std);
    free(out);
    return NULL;
}

void sdc__keys_free(sdc_keys *k)
{
    for (size_t i = 0; i < k->n; i++) {
        EVP_MD_CTX_free(k->v[i].vctx);
        EVP_PKEY_CTX_free(k->v[i].pctx);
        EVP_PKEY_free(k->v[i].pk);
    }
    k->n = 0;
}

/* A base64url member of exactly want bytes into out; -1 otherwise. */
static int member_bytes(json_t *jwk, const char *name, unsigned char *out, size_t want)
{
    const char *t = json_string_value(json_object_get(jwk, name));
    size_t n;
    unsigned char *b = t ? sdc__b64url_decode(t, strlen(t), &n) : NULL;
    int rc = b && n == want ? 0 : -1;
    if (rc == 0)
        memcpy(out, b, want);
    free(b);
    return rc;
}

EVP_PKEY *sdc__p256_key(const unsigned char point[65])
{
    EVP_PKEY *pk = NULL;
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (b && ctx && OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0) &&
        OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, point, 65) &&
        (params = OSSL_PARAM_BLD_to_param(b)) && EVP_PKEY_fromdata_init(ctx) > 0 &&
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pk = NULL; /* not a point of the curve */
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(b);
    EVP_PKEY_CTX_free(ctx);
    return pk;
}

/* One JWK into k's next slot; a key it cannot use is skipped. */
static void add_key(sdc_keys *k, json_t *jwk)
{
    const char *kid = json_string_value(json_object_get(jwk, "kid"));
    const char *alg = json_string_value(json_object_get(jwk, "alg"));
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    const char *use = json_string_value(json_object_get(jwk, "use"));
    if (!kid || !alg || !kty || !crv || (use && strcmp(use, "sig") != 0) || !kid[0] ||
        strlen(kid) >= sizeof k->v[0].kid || k->n == SDC_MAX_KEYS)
        return;
    EVP_PKEY *pk = NULL;
    unsigned char point[65] = {0x04};
    if (strcmp(alg, "EdDSA") == 0 && strcmp(kty, "OKP") == 0 && strcmp(crv, "Ed25519") == 0) {
        if (member_bytes(jwk, "x", point, 32) == 0)
            pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, point, 32);
    } else if (strcmp(alg, "ES256") == 0 && strcmp(kty, "EC") == 0 && strcmp(crv, "P-256") == 0) {
        if (member_bytes(jwk, "x", point + 1, 32) == 0 &&
            member_bytes(jwk, "y", point + 33, 32) == 0)
            pk = sdc__p256_key(point);
    }
    if (!pk)
        return;
    sdc_key *e = &k->v[k->n++];
    snprintf(e->kid, sizeof e->kid, "%s", kid);
    snprintf(e->alg, sizeof e->alg, "%s", alg);
    e->pk = pk;
}

int sdc__keys_fetch(sd_client *c, sdc_keys *out)
{
    sdc_req req = {.method = "GET", .path = "/.well-known/jwks.json"};
    json_t *set;
    int rc = sdc__exchange_json(c, &req, &set);
    if (rc)
        return rc;
    rc = sdc__keys_parse(set, out);
    json_decref(set);
    if (rc)
        sdc__set_detail(c, "the JWK Set has no 'keys' array");
    return rc;
}

int sdc__keys_parse(json_t *set, sdc_keys *out)
{
    json_t *arr = json_object_get(set, "keys");
    if (!json_is_array(arr))
        return SD_CLIENT_EPROTO;
    sdc_keys k = {.n = 0};
    size_t i;
    json_t *jwk;
    json_array_foreach(arr, i, jwk)
    {
        if (json_is_object(jwk))
            add_key(&k, jwk);
    }
    sdc__keys_free(out);
    *out = k;
    return 0;
}

sdc_key *sdc__keys_find(sdc_keys *k, const char *kid)
{
    for (size_t i = 0; i < k->n; i++)
        if (strcmp(k->v[i].kid, kid) == 0)
            return &k->v[i];
    return NULL;
}

/* ES256: JOSE's r||s into the DER OpenSSL verifies; NULL on failure. */
static unsigned char *es256_der(const unsigned char *sig, int *len)
{
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *ss = BN_bin2bn(sig + 32, 32, NULL);
    unsigned char *der = NULL;
    *len = 0;
    if (s && r && ss && ECDSA_SIG_set0(s, r, ss)) {
        r = ss = NULL; /* owned by s */
        *len = i2d_ECDSA_SIG(s, &der);
    }
    BN_free(r);
    BN_free(ss);
    ECDSA_SIG_free(s);
    return *len > 0 ? der : NULL;
}

int sdc__signature_ok(sdc_key *key, const char *input, size_t ilen, const unsigned char *sig,
                      size_t slen)
{
    bool es = strcmp(key->alg, "ES256") == 0;
    if (slen != 64)
        return 0;
    if (!es) {
        if (!key->vctx && (key->vctx = EVP_MD_CTX_new()) &&
            EVP_DigestVerifyInit_ex(key->vctx, NULL, NULL, NULL, NULL, key->pk, NULL) != 1) {
            EVP_MD_CTX_free(key->vctx);
            key->vctx = NULL;
        }
        return key->vctx &&
               EVP_DigestVerify(key->vctx, sig, slen, (const unsigned char *)input, ilen) == 1;
    }
    if (!key->pctx && (key->pctx = EVP_PKEY_CTX_new_from_pkey(NULL, key->pk, NULL)) &&
        EVP_PKEY_verify_init(key->pctx) != 1) {
        EVP_PKEY_CTX_free(key->pctx);
        key->pctx = NULL;
    }
    unsigned char digest[SHA256_DIGEST_LENGTH], *der = NULL;
    int dlen = 0;
    if (!key->pctx || !(der = es256_der(sig, &dlen)))
        return 0;
    SHA256((const unsigned char *)input, ilen, digest);
    int ok = EVP_PKEY_verify(key->pctx, der, (size_t)dlen, digest, sizeof digest) == 1;
    OPENSSL_free(der);
    return ok;
}
