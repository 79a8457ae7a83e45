/*
 * jwt_verify_bench.c - offline verifications per second of libsessiond-client
 * (sd_client_jwt_verify) on one thread (`make jwt-verify-bench`; a row of
 * `make bench`). Issue 18's target: at least 20,000 a second per core.
 *
 * For EdDSA and ES256 it makes a key, a JWK Set of its public half and
 * tokens shaped like sessiond's (the header, the claims of a session, each
 * with its own jti), and verifies them with a verifier given the set as
 * jwks_json (no server, no network: the keys are parsed once, the feed not
 * polled), for --seconds of CPU time each way:
 *
 *   cold  every token new: made in batches of 256 outside the timed part,
 *         each verified once (the verifier's cache of verified tokens
 *         misses every time and pays its hash and insertion);
 *   warm  64 tokens verified once first, then again and again (what a
 *         service sees when a caller's token comes back within its life:
 *         the cache answers, exp/nbf and the feed are checked each time).
 *
 * The verifier's hits and misses are printed too, so a cold figure that
 * hit, or a warm one that missed, shows. With --jwe it does the same for
 * the encrypted form (ECDH-ES+A256KW, A256GCM), made here as sessiond
 * makes it. Beside each cold rate it prints OpenSSL's own rate for the
 * bare signature check on the same key (EVP_DigestVerify in a loop), the
 * floor no verifier can beat without a cache.
 *
 * Output, one line per algorithm and way (bench/bench.py reads it):
 *   JWTVERIFY {"alg":"EdDSA","mode":"cold","per_s":...,"openssl_per_s":...,"us":...,
 *              "hits":0,"misses":...}
 * per_s and openssl_per_s are per second of this thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID), so other load on a shared machine slows the
 * wall clock but not the figure.
 *
 * --no-cache turns the verifier's cache off (sd_client_jwt_cache(v, 0)):
 * the cold figure then shows what the cache's hash and insertion cost.
 *
 *   build/jwt_verify_bench [--seconds S] [--jwe] [--no-cache]
 */
#include <sessiond/client.h>

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ISSUER   "https://sessiond.bench"
#define AUDIENCE "orders-api"

static void die(const char *what)
{
    fprintf(stderr, "jwt_verify_bench: %s\n", what);
    exit(1);
}

static size_t b64url(const unsigned char *in, size_t n, char *out)
{
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    while (len > 0 && out[len - 1] == '=')
        len--;
    for (int i = 0; i < len; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    out[len] = '\0';
    return (size_t)len;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A signature of in by key in JOSE's form (64 bytes). */
static void sign(EVP_PKEY *key, bool ec, const char *in, size_t n, unsigned char sig[64])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char der[80];
    size_t len = sizeof der;
    if (!ctx ||
        EVP_DigestSignInit_ex(ctx, NULL, ec ? "SHA256" : NULL, NULL, NULL, key, NULL) != 1 ||
        EVP_DigestSign(ctx, der, &len, (const unsigned char *)in, n) != 1)
        die("sign");
    EVP_MD_CTX_free(ctx);
    if (!ec) {
        memcpy(sig, der, 64);
        return;
    }
    const unsigned char *p = der;
    ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)len);
    const BIGNUM *r, *ss;
    ECDSA_SIG_get0(s, &r, &ss);
    BN_bn2binpad(r, sig, 32);
    BN_bn2binpad(ss, sig + 32, 32);
    ECDSA_SIG_free(s);
}

/* The public JWK of key (kid "k1"). */
static void jwk_set(EVP_PKEY *key, bool ec, char *out, size_t cap)
{
    unsigned char pub[65];
    size_t pl = sizeof pub;
    char x[48], y[48];
    if (ec) {
        if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub, pl,
                                            &pl) != 1)
            die("public key");
        b64url(pub + 1, 32, x);
        b64url(pub + 33, 32, y);
        snprintf(out, cap,
                 "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\","
                 "\"kid\":\"k1\",\"alg\":\"ES256\",\"use\":\"sig\"}]}",
                 x, y);
    } else {
        pl = 32;
        if (EVP_PKEY_get_raw_public_key(key, pub, &pl) != 1)
            die("public key");
        b64url(pub, 32, x);
        snprintf(out, cap,
                 "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":\"k1\","
                 "\"alg\":\"EdDSA\",\"use\":\"sig\"}]}",
                 x);
    }
}

/* A token as sessiond mints one: header, the claims of a session, jti n. */
static void make_token(EVP_PKEY *key, bool ec, long n, char *out, size_t cap)
{
    char h[128], p[512], hb[256], pb[700];
    long now = (long)time(NULL);
    snprintf(h, sizeof h, "{\"alg\":\"%s\",\"kid\":\"k1\",\"typ\":\"at+jwt\"}",
             ec ? "ES256" : "EdDSA");
    snprintf(p, sizeof p,
             "{\"iss\":\"" ISSUER "\",\"sub\":\"alice@example.com\",\"aud\":\"" AUDIENCE "\","
             "\"iat\":%ld,\"nbf\":%ld,\"exp\":%ld,\"jti\":\"kjTndOhOM7YSZ3rQ-%08ld\","
             "\"sid\":\"P82cZloyXhQ2cvw9k53UyU\",\"auth_time\":%ld,\"acr\":\"aal2\","
             "\"amr\":[\"pwd\",\"otp\"]}",
             now, now, now + 3600, n, now);
    b64url((const unsigned char *)h, strlen(h), hb);
    b64url((const unsigned char *)p, strlen(p), pb);
    int len = snprintf(out, cap, "%s.%s", hb, pb);
    unsigned char sig[64];
    char sb[100];
    sign(key, ec, out, (size_t)len, sig);
    b64url(sig, 64, sb);
    snprintf(out + len, cap - (size_t)len, ".%s", sb);
}

/* ---- the encrypted form (as src/jwt/jwe.c makes it) ---------------------- */

static void concat_kdf(const unsigned char z[32], unsigned char kek[32])
{
    static const unsigned char info[] = {0,   0,   0,   14,  'E', 'C', 'D', 'H', '-', 'E',
                                         'S', '+', 'A', '2', '5', '6', 'K', 'W', 0,   0,
                                         0,   0,   0,   0,   0,   0,   0,   0,   1,   0};
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SSKDF", NULL);
    EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, (void *)z, 32),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, sizeof info),
        OSSL_PARAM_construct_end(),
    };
    if (!ctx || EVP_KDF_derive(ctx, kek, 32, params) != 1)
        die("kdf");
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
}

static void make_jwe(EVP_PKEY *rcpt, const char *jws, char *out, size_t cap)
{
    EVP_PKEY *eph = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY_CTX *d = EVP_PKEY_CTX_new_from_pkey(NULL, eph, NULL);
    unsigned char z[32], kek[32], cek[32], iv[12], wrapped[40], tag[16], pt[65];
    size_t zl = 32, pl = 0;
    if (!d || EVP_PKEY_derive_init(d) != 1 || EVP_PKEY_derive_set_peer(d, rcpt) != 1 ||
        EVP_PKEY_derive(d, z, &zl) != 1 ||
        EVP_PKEY_get_octet_string_param(eph, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt, 65, &pl) != 1)
        die("ecdh");
    concat_kdf(z, kek);
    RAND_bytes(cek, 32);
    RAND_bytes(iv, 12);
    int l = 0, lf = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    if (EVP_EncryptInit_ex(c, EVP_aes_256_wrap(), NULL, kek, NULL) != 1 ||
        EVP_EncryptUpdate(c, wrapped, &l, cek, 32) != 1 ||
        EVP_EncryptFinal_ex(c, wrapped + l, &lf) != 1)
        die("wrap");
    EVP_CIPHER_CTX_free(c);
    char x[48], y[48], h[300], hb[420], kb[64], ivb[24], tb[32];
    b64url(pt + 1, 32, x);
    b64url(pt + 33, 32, y);
    snprintf(h, sizeof h,
             "{\"alg\":\"ECDH-ES+A256KW\",\"enc\":\"A256GCM\",\"cty\":\"JWT\",\"epk\":{\"kty\":"
             "\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}}",
             x, y);
    size_t hl = b64url((const unsigned char *)h, strlen(h), hb);
    size_t n = strlen(jws);
    unsigned char *ct = malloc(n);
    char *ctb = malloc(n * 2);
    c = EVP_CIPHER_CTX_new();
    if (!ct || !ctb || EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, cek, iv) != 1 ||
        EVP_EncryptUpdate(c, NULL, &l, (unsigned char *)hb, (int)hl) != 1 ||
        EVP_EncryptUpdate(c, ct, &l, (const unsigned char *)jws, (int)n) != 1 ||
        EVP_EncryptFinal_ex(c, ct + l, &lf) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
        die("gcm");
    EVP_CIPHER_CTX_free(c);
    b64url(wrapped, 40, kb);
    b64url(iv, 12, ivb);
    b64url(ct, n, ctb);
    b64url(tag, 16, tb);
    snprintf(out, cap, "%s.%s.%s.%s.%s", hb, kb, ivb, ctb, tb);
    free(ct);
    free(ctb);
    EVP_PKEY_CTX_free(d);
    EVP_PKEY_free(eph);
}

/* ---- the loops --------------------------------------------------------- */

#define BATCH 256
#define WARM  64
#define TOKEN 4096

/* What to verify: tokens of key, encrypted for rcpt when it is not NULL. */
typedef struct maker {
    EVP_PKEY *key, *rcpt;
    bool ec;
    long n; /* tokens made so far: the next jti */
} maker;

static void make(maker *m, char *out)
{
    char jws[2048];
    make_token(m->key, m->ec, m->n++, m->rcpt ? jws : out, m->rcpt ? sizeof jws : TOKEN);
    if (m->rcpt)
        make_jwe(m->rcpt, jws, out, TOKEN);
}

/* Verifications per CPU second by v of tokens never seen before, for about
 * secs of verifying (the making is not counted). */
static double rate_cold(sd_client_jwt_verifier *v, maker *m, double secs)
{
    static char tok[BATCH][TOKEN];
    sd_client_jwt_claims cl;
    long n = 0;
    double t = 0;
    do {
        for (int i = 0; i < BATCH; i++)
            make(m, tok[i]);
        double t0 = cpu_s();
        for (int i = 0; i < BATCH; i++)
            if (sd_client_jwt_verify(v, tok[i], &cl) != 0)
                die("a verification failed");
        t += cpu_s() - t0;
        n += BATCH;
    } while (t < secs);
    return (double)n / t;
}

/* Verifications per CPU second by v of WARM tokens it has verified once. */
static double rate_warm(sd_client_jwt_verifier *v, maker *m, double secs)
{
    static char tok[WARM][TOKEN];
    sd_client_jwt_claims cl;
    for (int i = 0; i < WARM; i++) {
        make(m, tok[i]);
        if (sd_client_jwt_verify(v, tok[i], &cl) != 0)
            die("the token does not verify");
    }
    long n = 0;
    double t0 = cpu_s(), t;
    do {
        for (int i = 0; i < 200; i++)
            if (sd_client_jwt_verify(v, tok[i % WARM], &cl) != 0)
                die("a verification failed");
        n += 200;
    } while ((t = cpu_s() - t0) < secs);
    return (double)n / t;
}

/* One line for bench.py; floor <= 0: none. */
static void report(sd_client_jwt_verifier *v, const char *alg, const char *mode, double r,
                   double floor)
{
    int64_t hits, misses;
    sd_client_jwt_cache_counts(v, &hits, &misses);
    printf("JWTVERIFY {\"alg\":\"%s\",\"mode\":\"%s\",\"per_s\":%.0f,", alg, mode, r);
    if (floor > 0)
        printf("\"openssl_per_s\":%.0f,", floor);
    printf("\"us\":%.2f,\"hits\":%lld,\"misses\":%lld}\n", 1e6 / r, (long long)hits,
           (long long)misses);
    fflush(stdout);
}

/* OpenSSL's bare signature checks per CPU second (the floor). */
static double openssl_rate(EVP_PKEY *key, bool ec, const char *token, double secs)
{
    const char *dot = strrchr(token, '.');
    unsigned char sig[64], der[80];
    sign(key, ec, token, (size_t)(dot - token), sig);
    size_t sl = 64;
    const unsigned char *s = sig;
    if (ec) {
        ECDSA_SIG *es = ECDSA_SIG_new();
        ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
        unsigned char *p = der;
        sl = (size_t)i2d_ECDSA_SIG(es, &p);
        ECDSA_SIG_free(es);
        s = der;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    long n = 0;
    double t0 = cpu_s(), t;
    do {
        for (int i = 0; i < 200; i++)
            if (EVP_DigestVerifyInit_ex(ctx, NULL, ec ? "SHA256" : NULL, NULL, NULL, key, NULL) !=
                    1 ||
                EVP_DigestVerify(ctx, s, sl, (const unsigned char *)token, (size_t)(dot - token)) !=
                    1)
                die("openssl verify");
        n += 200;
    } while ((t = cpu_s() - t0) < secs);
    EVP_MD_CTX_free(ctx);
    return (double)n / t;
}

int main(int argc, char **argv)
{
    double secs = 2;
    bool jwe = false, no_cache = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            secs = atof(argv[++i]);
        else if (strcmp(argv[i], "--jwe") == 0)
            jwe = true;
        else if (strcmp(argv[i], "--no-cache") == 0)
            no_cache = true;
        else {
            fprintf(stderr, "usage: %s [--seconds S] [--jwe] [--no-cache]\n", argv[0]);
            return 2;
        }
    }
    EVP_PKEY *rcpt = NULL;
    char keyfile[] = "/tmp/jwt-verify-bench-XXXXXX";
    if (jwe) { /* the recipient's key, as a PEM file for the verifier */
        rcpt = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        int fd = mkstemp(keyfile);
        FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!rcpt || !f || !PEM_write_PrivateKey(f, rcpt, NULL, NULL, 0, NULL, NULL))
            die("recipient key");
        fclose(f);
    }
    static const char *const algs[] = {"EdDSA", "ES256"};
    for (int a = 0; a < 2; a++) {
        bool ec = a == 1;
        EVP_PKEY *key = ec ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
                           : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        char set[512], token[TOKEN], alg[16];
        jwk_set(key, ec, set, sizeof set);
        make_token(key, ec, 0, token, sizeof token);
        double floor = openssl_rate(key, ec, token, secs);
        for (int e = 0; e < (jwe ? 2 : 1); e++) {
            maker m = {.key = key, .rcpt = e ? rcpt : NULL, .ec = ec, .n = 1};
            snprintf(alg, sizeof alg, "%s%s", algs[a], e ? "+JWE" : "");
            sd_client_jwt_options o = {.issuer = ISSUER,
                                       .audience = AUDIENCE,
                                       .poll_interval_ms = -1,
                                       .jwks_json = set,
                                       .decrypt_key_file = e ? keyfile : NULL};
            for (int warm = 0; warm < (no_cache ? 1 : 2); warm++) {
                sd_client_jwt_verifier *v;
                if (sd_client_jwt_verifier_new(NULL, &o, &v) ||
                    (no_cache && sd_client_jwt_cache(v, 0)))
                    die("verifier");
                double r = warm ? rate_warm(v, &m, secs) : rate_cold(v, &m, secs);
                report(v, alg, warm ? "warm" : "cold", r, e || warm ? 0 : floor);
                sd_client_jwt_verifier_free(v);
            }
        }
        EVP_PKEY_free(key);
    }
    if (jwe)
        unlink(keyfile);
    EVP_PKEY_free(rcpt);
    return 0;
}
