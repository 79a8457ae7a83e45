/* jwk.c - the JWT signing keys: key file, JWK Set, JWS signing (see jwk.h). */
#include "jwt/jwk.h"
#include "jwt/jwe.h"
#include "util/err.h"
#include "util/keyfile.h"
#include "util/log.h"
#include "util/random.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define LINE_MAX_BYTES 4096

typedef struct key {
    char kid[SD_KID_MAX + 1];
    const char *alg; /* "EdDSA" or "ES256" (static) */
    bool next;       /* published, not signing yet */
    EVP_PKEY *pkey;
    unsigned char pub[65]; /* Ed25519: 32 bytes; P-256: 04 | x | y */
    size_t pub_len;
    uint64_t gen;  /* unique across loads: what a thread's signing context is for */
    char hdr[200]; /* the base64url of its JWS header */
    size_t hdr_len;
} key;

/* Generations of loaded keys: never reused, so a thread's cached context
 * can never be taken for a newer key's. */
static _Atomic uint64_t key_generation;

struct sd_jwks {
    key *v;
    int n;
    int current;           /* index of the signing key */
    sd_jwe_key *recipient; /* encrypted tokens: the recipient's key; NULL: none */
};

void sd_jwks_set_recipient(sd_jwks *k, sd_jwe_key *e)
{
    sd_jwe_key_free(k->recipient);
    k->recipient = e;
}

const sd_jwe_key *sd_jwks_recipient(const sd_jwks *k)
{
    return k ? k->recipient : NULL;
}

void sd_jwks_free(sd_jwks *k)
{
    if (!k)
        return;
    for (int i = 0; i < k->n; i++)
        EVP_PKEY_free(k->v[i].pkey);
    sd_jwe_key_free(k->recipient);
    free(k->v);
    free(k);
}

int sd_jwks_count(const sd_jwks *k)
{
    return k ? k->n : 0;
}

const char *sd_jwks_current_kid(const sd_jwks *k)
{
    return k->v[k->current].kid;
}

const char *sd_jwks_current_alg(const sd_jwks *k)
{
    return k->v[k->current].alg;
}

/* The encryption keys' id rule, longer: a kid goes into JSON and a JWS
 * header, never into a path or a query. */
static bool kid_ok(const char *s)
{
    return sd_key_id_ok(s, strlen(s), SD_KID_MAX);
}

/* A PKCS#8 private key from base64 text into e (alg and public key filled).
 * Returns 0 or SD_EINVALID. */
static int key_from_b64(const char *b64, key *e)
{
    size_t n = strlen(b64);
    if (n == 0 || n % 4 || n > LINE_MAX_BYTES)
        return SD_EINVALID;
    unsigned char *der = malloc(n);
    if (!der)
        return SD_ENOMEM;
    int len = EVP_DecodeBlock(der, (const unsigned char *)b64, (int)n);
    int rc = SD_EINVALID;
    if (len > 0) {
        len -= (b64[n - 1] == '=') + (n > 1 && b64[n - 2] == '=');
        const unsigned char *p = der;
        e->pkey = d2i_AutoPrivateKey(NULL, &p, len);
    }
    OPENSSL_clear_free(der, n);
    if (!e->pkey) { /* OpenSSL 3.0 marks its allocation failures: not a bad key */
        bool oom = ERR_GET_REASON(ERR_peek_last_error()) == ERR_R_MALLOC_FAILURE;
        ERR_clear_error();
        return oom ? SD_ENOMEM : SD_EINVALID;
    }
    if (EVP_PKEY_is_a(e->pkey, "ED25519")) {
        e->alg = "EdDSA";
        e->pub_len = 32;
        if (EVP_PKEY_get_raw_public_key(e->pkey, e->pub, &e->pub_len) == 1 && e->pub_len == 32)
            rc = 0;
    } else if (EVP_PKEY_is_a(e->pkey, "EC")) {
        char group[64] = "";
        size_t gl = 0;
        e->alg = "ES256";
        if (EVP_PKEY_get_utf8_string_param(e->pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                           &gl) == 1 &&
            (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0) &&
            EVP_PKEY_get_octet_string_param(e->pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, e->pub,
                                            sizeof e->pub, &e->pub_len) == 1 &&
            e->pub_len == 65 && e->pub[0] == 0x04)
            rc = 0;
    }
    if (rc) {
        EVP_PKEY_free(e->pkey);
        e->pkey = NULL;
    }
    return rc;
}

int sd_jwks_parse(const char *text, size_t len, const char *name, sd_jwks **out, char *err,
                  size_t errlen)
{
    *out = NULL;
    sd_jwks *k = calloc(1, sizeof *k);
    if (!k) {
        snprintf(err, errlen, "out of memory reading %s", name);
        return SD_ENOMEM;
    }
    k->current = -1;
    int rc = 0, lineno = 0;
    const char *p = text, *end = text + len;
    while (rc == 0 && p < end) {
        lineno++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char line[LINE_MAX_BYTES + 1];
        if (n > LINE_MAX_BYTES) {
            snprintf(err, errlen, "%s:%d: line too long", name, lineno);
            rc = SD_ECONFIG;
            break;
        }
        memcpy(line, p, n);
        line[n] = '\0';
        p += n + (nl != NULL);
        char *c = strchr(line, '#');
        if (c)
            *c = '\0';
        char kid[128], b64[LINE_MAX_BYTES + 1], mark[32], extra[8];
        int fields = sscanf(line, "%127s %4096s %31s %7s", kid, b64, mark, extra);
        OPENSSL_cleanse(line, sizeof line);
        if (fields <= 0)
            continue;
        key e = {0};
        int krc = fields >= 2 && fields <= 3 && kid_ok(kid) ? key_from_b64(b64, &e) : SD_EINVALID;
        OPENSSL_cleanse(b64, sizeof b64);
        if (krc == 0 && fields == 3 && strcmp(mark, "next") != 0)
            krc = SD_EINVALID;
        if (krc == SD_ENOMEM) {
            snprintf(err, errlen, "%s:%d: out of memory reading the key", name, lineno);
            rc = SD_ENOMEM;
            break;
        }
        if (krc) {
            EVP_PKEY_free(e.pkey);
            snprintf(err, errlen,
                     "%s:%d: expected '<key id> <base64 PKCS#8 Ed25519 or P-256 private key> "
                     "[next]' (id: 1-64 of A-Z a-z 0-9 - _ .)",
                     name, lineno);
            rc = SD_ECONFIG;
            break;
        }
        for (int i = 0; i < k->n; i++)
            if (strcmp(k->v[i].kid, kid) == 0) {
                snprintf(err, errlen, "%s:%d: key id '%s' appears twice", name, lineno, kid);
                rc = SD_ECONFIG;
            }
        key *v = rc == 0 ? realloc(k->v, (size_t)(k->n + 1) * sizeof *v) : NULL;
        if (!v) {
            EVP_PKEY_free(e.pkey);
            if (rc == 0) {
                snprintf(err, errlen, "out of memory reading %s", name);
                rc = SD_ENOMEM;
            }
            break;
        }
        memcpy(e.kid, kid, strlen(kid) + 1); /* kid_ok: at most SD_KID_MAX */
        e.next = fields == 3;
        e.gen = atomic_fetch_add(&key_generation, 1) + 1;
        char h[128]; /* kid_ok: nothing in it needs escaping */
        int hl = snprintf(h, sizeof h, "{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":\"" SD_JWT_TYP "\"}",
                          e.alg, e.kid);
        sd_assert(hl > 0 && (size_t)hl < sizeof h && 4 * ((size_t)hl / 3 + 1) < sizeof e.hdr);
        e.hdr_len = sd_b64url((const unsigned char *)h, (size_t)hl, e.hdr);
        k->v = v;
        k->v[k->n] = e;
        if (!e.next)
            k->current = k->n;
        k->n++;
    }
    if (rc == 0 && k->current < 0) {
        snprintf(err, errlen, "%s holds no signing key (every line is marked 'next')", name);
        rc = SD_ECONFIG;
    }
    if (rc) {
        sd_jwks_free(k);
        return rc;
    }
    *out = k;
    return 0;
}

int sd_jwks_load(const char *path, sd_jwks **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = sd_key_file_open(path, "JWT key file", err, errlen);
    if (!f)
        return SD_ECONFIG;
    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap);
    int rc = buf ? 0 : SD_ENOMEM;
    while (rc == 0) {
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
        if (len == cap) {
            snprintf(err, errlen, "the JWT key file %s is larger than 64 KiB", path);
            rc = SD_ECONFIG;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "cannot read the JWT key file %s", path);
        rc = SD_ECONFIG;
    }
    fclose(f);
    if (rc == SD_ENOMEM)
        snprintf(err, errlen, "out of memory reading %s", path);
    if (rc == 0)
        rc = sd_jwks_parse(buf, len, path, out, err, errlen);
    if (buf)
        OPENSSL_clear_free(buf, cap);
    return rc;
}

/* ---- the public key set -------------------------------------------------- */

static void put_b64url(json_t *o, const char *name, const unsigned char *b, size_t n)
{
    char text[4 * 65 / 3 + 4];
    sd_b64url(b, n, text);
    json_object_set_new(o, name, json_string(text));
}

json_t *sd_jwks_public(const sd_jwks *k)
{
    json_t *set = json_object(), *keys = json_array();
    if (!set || !keys) {
        json_decref(set);
        json_decref(keys);
        return NULL;
    }
    for (int i = 0; k && i < k->n; i++) {
        const key *e = &k->v[i];
        json_t *j = json_object();
        if (!j)
            break;
        if (strcmp(e->alg, "EdDSA") == 0) {
            json_object_set_new(j, "kty", json_string("OKP"));
            json_object_set_new(j, "crv", json_string("Ed25519"));
            put_b64url(j, "x", e->pub, 32);
        } else {
            json_object_set_new(j, "kty", json_string("EC"));
            json_object_set_new(j, "crv", json_string("P-256"));
            put_b64url(j, "x", e->pub + 1, 32);
            put_b64url(j, "y", e->pub + 33, 32);
        }
        json_object_set_new(j, "kid", json_string(e->kid));
        json_object_set_new(j, "alg", json_string(e->alg));
        json_object_set_new(j, "use", json_string("sig"));
        json_array_append_new(keys, j);
    }
    json_object_set_new(set, "keys", keys);
    return set;
}

/* ---- signing ------------------------------------------------------------- */

int sd_ecdsa_der_to_jose(const unsigned char *der, size_t n, unsigned char out[64])
{
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)n);
    int rc = SD_EINVALID;
    if (sig && p == der + n) {
        const BIGNUM *r, *s;
        ECDSA_SIG_get0(sig, &r, &s);
        if (BN_num_bytes(r) <= 32 && BN_num_bytes(s) <= 32 && BN_bn2binpad(r, out, 32) == 32 &&
            BN_bn2binpad(s, out + 32, 32) == 32)
            rc = 0;
    }
    ECDSA_SIG_free(sig);
    return rc;
}

/* ---- the per-thread signing context ---------------------------------- */

typedef struct signer {
    uint64_t gen;       /* the key it is set up for; 0: none */
    EVP_MD_CTX *md;     /* EdDSA: DigestSign-initialised with the key (one-shot, reusable) */
    EVP_PKEY_CTX *pctx; /* ES256: sign-initialised with the key, signs a SHA-256 digest */
} signer;

static pthread_key_t signer_tls;
static pthread_once_t signer_once = PTHREAD_ONCE_INIT;
static int signer_tls_rc;

static void signer_reset(signer *s)
{
    EVP_MD_CTX_free(s->md);
    EVP_PKEY_CTX_free(s->pctx);
    *s = (signer){0};
}

static void signer_free(void *p)
{
    signer_reset(p);
    free(p);
}

static void signer_tls_init(void)
{
    signer_tls_rc = pthread_key_create(&signer_tls, signer_free);
}

/* This thread's context for e, set up when it was last for another key.
 * NULL when out of memory or OpenSSL refuses. */
static signer *signer_for(const key *e)
{
    pthread_once(&signer_once, signer_tls_init);
    if (signer_tls_rc)
        return NULL;
    signer *s = pthread_getspecific(signer_tls);
    if (!s) {
        if (!(s = calloc(1, sizeof *s)))
            return NULL;
        if (pthread_setspecific(signer_tls, s)) {
            free(s);
            return NULL;
        }
    }
    if (s->gen == e->gen)
        return s;
    signer_reset(s);
    bool ok;
    if (strcmp(e->alg, "ES256") == 0) {
        s->pctx = EVP_PKEY_CTX_new_from_pkey(NULL, e->pkey, NULL);
        ok = s->pctx && EVP_PKEY_sign_init(s->pctx) == 1 &&
             EVP_PKEY_CTX_set_signature_md(s->pctx, EVP_sha256()) == 1;
    } else {
        s->md = EVP_MD_CTX_new();
        ok = s->md && EVP_DigestSignInit_ex(s->md, NULL, NULL, NULL, NULL, e->pkey, NULL) == 1;
    }
    if (!ok) {
        signer_reset(s);
        return NULL;
    }
    s->gen = e->gen;
    return s;
}

/* The signature of tbs (n bytes) by e, in JOSE's form, into sig (64 bytes
 * for both algorithms). Returns 0 or SD_EINVALID. */
static int sign_raw(const key *e, const unsigned char *tbs, size_t n, unsigned char sig[64])
{
    signer *s = signer_for(e);
    unsigned char der[80], digest[SHA256_DIGEST_LENGTH];
    size_t len = sizeof der;
    if (!s)
        return SD_EINVALID;
    if (s->md) { /* Ed25519: 64 bytes, already JOSE's form */
        size_t sl = 64;
        return EVP_DigestSign(s->md, sig, &sl, tbs, n) == 1 && sl == 64 ? 0 : SD_EINVALID;
    }
    SHA256(tbs, n, digest);
    if (EVP_PKEY_sign(s->pctx, der, &len, digest, sizeof digest) != 1)
        return SD_EINVALID;
    return sd_ecdsa_der_to_jose(der, len, sig);
}

const char *sd_jws_sign(const sd_jwks *k, sd_arena *a, const char *payload, size_t len,
                        size_t *out_len)
{
    const key *e = &k->v[k->current];
    /* header . payload . signature (86 characters) */
    size_t cap = e->hdr_len + 1 + 4 * (len / 3 + 1) + 1 + 88 + 1;
    char *out = sd_arena_alloc(a, cap);
    if (!out)
        return NULL;
    memcpy(out, e->hdr, e->hdr_len);
    size_t o = e->hdr_len;
    out[o++] = '.';
    o += sd_b64url((const unsigned char *)payload, len, out + o);
    unsigned char sig[64];
    if (sign_raw(e, (const unsigned char *)out, o, sig))
        return NULL;
    out[o++] = '.';
    o += sd_b64url(sig, sizeof sig, out + o);
    sd_assert(o < cap);
    *out_len = o;
    return out;
}

/* ---- generation ---------------------------------------------------------- */

char *sd_jwk_generate_line(const char *alg, const char *kid, bool next, char *err, size_t errlen)
{
    bool ec = strcmp(alg, "ES256") == 0;
    if (!ec && strcmp(alg, "EdDSA") != 0) {
        snprintf(err, errlen, "--alg must be EdDSA or ES256");
        return NULL;
    }
    char made[SD_KID_MAX + 1];
    if (!kid) {
        unsigned char rnd[3];
        char hex[7];
        time_t t = time(NULL);
        struct tm tm;
        if (sd_random(rnd, sizeof rnd)) {
            snprintf(err, errlen, "the random source failed");
            return NULL;
        }
        sd_hex(rnd, sizeof rnd, hex);
        gmtime_r(&t, &tm);
        snprintf(made, sizeof made, "%s-%04d%02d%02d-%s", ec ? "es256" : "ed25519",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, hex);
        kid = made;
    }
    if (!kid_ok(kid)) {
        snprintf(err, errlen, "--kid: 1-64 of A-Z a-z 0-9 - _ .");
        return NULL;
    }
    EVP_PKEY *pkey = ec ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
                        : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    PKCS8_PRIV_KEY_INFO *p8 = pkey ? EVP_PKEY2PKCS8(pkey) : NULL;
    unsigned char *der = NULL;
    int dl = p8 ? i2d_PKCS8_PRIV_KEY_INFO(p8, &der) : -1;
    char *line = NULL;
    if (dl > 0) {
        size_t cap = strlen(kid) + 1 + 4 * ((size_t)dl / 3 + 1) + 1 + 6 + 2;
        line = malloc(cap);
        if (line) {
            size_t o = (size_t)snprintf(line, cap, "%s ", kid);
            o += (size_t)EVP_EncodeBlock((unsigned char *)line + o, der, dl);
            snprintf(line + o, cap - o, "%s\n", next ? " next" : "");
        }
    }
    if (!line)
        snprintf(err, errlen, "key generation failed");
    if (der)
        OPENSSL_clear_free(der, (size_t)dl);
    PKCS8_PRIV_KEY_INFO_free(p8);
    EVP_PKEY_free(pkey);
    return line;
}
