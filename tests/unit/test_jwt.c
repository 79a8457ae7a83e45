/* Unit tests of jwt/jwk.c and jwt/claims.c: the key file, ES256's JOSE
 * signature form, claims and lifetime bounds, signatures that verify (with
 * the per-thread signing context, across a reload). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "jwt/claims.h"
#include "jwt/jwk.h"
#include "util/err.h"

#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A fresh key of type ("ED25519" or "EC") and its PKCS#8 base64 text. */
static EVP_PKEY *new_key(const char *type, char *b64, size_t cap)
{
    EVP_PKEY *k = strcmp(type, "EC") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
                                          : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(k);
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(k);
    unsigned char *der = NULL;
    int n = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
    assert_true(n > 0 && (size_t)(4 * (n / 3 + 1)) < cap);
    EVP_EncodeBlock((unsigned char *)b64, der, n);
    OPENSSL_free(der);
    PKCS8_PRIV_KEY_INFO_free(p8);
    return k;
}

/* base64url (unpadded) to bytes; returns the length. */
static size_t unb64url(const char *s, size_t n, unsigned char *out)
{
    char *t = calloc(n + 4, 1);
    for (size_t i = 0; i < n; i++)
        t[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    size_t m = n;
    while (m % 4)
        t[m++] = '=';
    int len = EVP_DecodeBlock(out, (unsigned char *)t, (int)m);
    free(t);
    assert_true(len >= 0);
    return (size_t)len - (n % 4 == 2 ? 2 : n % 4 == 3 ? 1 : 0);
}

/* Verifies a compact JWS with pub (Ed25519, or P-256 from JOSE's r||s). */
static bool verifies(const char *jws, EVP_PKEY *pub, bool ec)
{
    const char *dot2 = strrchr(jws, '.');
    unsigned char sig[128], der[128];
    size_t sl = unb64url(dot2 + 1, strlen(dot2 + 1), sig), dl = 0;
    if (sl != 64)
        return false;
    const unsigned char *s = sig;
    if (ec) {
        ECDSA_SIG *es = ECDSA_SIG_new();
        ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
        unsigned char *p = der;
        dl = (size_t)i2d_ECDSA_SIG(es, &p);
        ECDSA_SIG_free(es);
        s = der;
        sl = dl;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok =
        EVP_DigestVerifyInit_ex(ctx, NULL, ec ? "SHA256" : NULL, NULL, NULL, pub, NULL) == 1 &&
        EVP_DigestVerify(ctx, s, sl, (const unsigned char *)jws, (size_t)(dot2 - jws)) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

static sd_jwks *parse(const char *text, int want_rc)
{
    sd_jwks *k = NULL;
    char err[512] = "";
    int rc = sd_jwks_parse(text, strlen(text), "keys", &k, err, sizeof err);
    assert_int_equal(rc, want_rc);
    if (rc)
        assert_non_null(strstr(err, "keys"));
    return k;
}

static void key_file_current_next_and_errors(void **state)
{
    (void)state;
    char a[512], b[512], text[2048];
    EVP_PKEY *ka = new_key("ED25519", a, sizeof a), *kb = new_key("EC", b, sizeof b);
    snprintf(text, sizeof text, "# comment\n\nold %s\ncur %s # signing\nnew %s next\n", a, b, a);
    /* the same key under two ids is fine; the same id twice is not */
    sd_jwks *k = parse(text, 0);
    assert_int_equal(sd_jwks_count(k), 3);
    assert_string_equal(sd_jwks_current_kid(k), "cur");
    assert_string_equal(sd_jwks_current_alg(k), "ES256");
    json_t *pub = sd_jwks_public(k);
    json_t *keys = json_object_get(pub, "keys");
    assert_int_equal(json_array_size(keys), 3);
    json_t *e0 = json_array_get(keys, 0), *e1 = json_array_get(keys, 1);
    assert_string_equal(json_string_value(json_object_get(e0, "kty")), "OKP");
    assert_string_equal(json_string_value(json_object_get(e0, "alg")), "EdDSA");
    assert_null(json_object_get(e0, "d")); /* never the private part */
    assert_string_equal(json_string_value(json_object_get(e1, "crv")), "P-256");
    assert_int_equal(strlen(json_string_value(json_object_get(e1, "y"))), 43);
    assert_null(json_object_get(e1, "d"));
    json_decref(pub);
    sd_jwks_free(k);

    snprintf(text, sizeof text, "a %s\na %s\n", a, a);
    parse(text, SD_ECONFIG);
    snprintf(text, sizeof text, "only %s next\n", a);
    parse(text, SD_ECONFIG); /* nothing signs */
    snprintf(text, sizeof text, "a %s later\n", a);
    parse(text, SD_ECONFIG);
    parse("a bm90IGEga2V5\n", SD_ECONFIG);
    parse("bad/id MC4CAQAwBQYDK2VwBCIEIIqOKbElv\n", SD_ECONFIG);
    parse("", SD_ECONFIG);
    /* an error message never holds the key's text */
    sd_jwks *none = NULL;
    char err[512];
    snprintf(text, sizeof text, "a %s x y\n", a);
    assert_int_equal(sd_jwks_parse(text, strlen(text), "f", &none, err, sizeof err), SD_ECONFIG);
    assert_null(strstr(err, a));
    EVP_PKEY_free(ka);
    EVP_PKEY_free(kb);
}

static void es256_der_to_jose(void **state)
{
    (void)state;
    unsigned char r[32] = {0}, s[32], out[64], *der = NULL;
    r[31] = 7; /* a short r: padded on the left to 32 bytes */
    memset(s, 0xee, sizeof s);
    ECDSA_SIG *sig = ECDSA_SIG_new();
    ECDSA_SIG_set0(sig, BN_bin2bn(r, 32, NULL), BN_bin2bn(s, 32, NULL));
    int n = i2d_ECDSA_SIG(sig, &der);
    assert_int_equal(sd_ecdsa_der_to_jose(der, (size_t)n, out), 0);
    assert_memory_equal(out, r, 32);
    assert_memory_equal(out + 32, s, 32);
    assert_int_equal(sd_ecdsa_der_to_jose(der, (size_t)n - 1, out), SD_EINVALID);
    OPENSSL_free(der);
    ECDSA_SIG_free(sig);
    unsigned char big[33];
    memset(big, 0x7f, sizeof big); /* 33 bytes: not P-256 */
    sig = ECDSA_SIG_new();
    ECDSA_SIG_set0(sig, BN_bin2bn(big, 33, NULL), BN_bin2bn(s, 32, NULL));
    der = NULL;
    n = i2d_ECDSA_SIG(sig, &der);
    assert_int_equal(sd_ecdsa_der_to_jose(der, (size_t)n, out), SD_EINVALID);
    OPENSSL_free(der);
    ECDSA_SIG_free(sig);
}

static sd_session session_at(int64_t now)
{
    sd_session s = {.id = "P81yMkS8uUULm0zlEtArt1",
                    .created_at = now - 1000,
                    .auth_time = now - 500,
                    .expiry = now + 3600 * 1000,
                    .absolute_expiry = now + 86400 * 1000,
                    .acr = "aal2"};
    memset(s.token_hash, 0xab, sizeof s.token_hash);
    s.user_id = strdup("alice");
    s.attrs = json_pack("{s:[s,s], s:s, s:{s:s, s:f, s:n, s:[b,i]}, s:b}", "amr", "pwd", "otp",
                        "deviceId", "d1", "data", "plan", "pro", "ratio", 0.1, "none", "n", 1, -2,
                        "mfa", 1);
    return s;
}

/* sd_jwt_claims into a fresh arena, parsed back; NULL when rc is not 0. */
static json_t *claims_of(const sd_session *s, const sd_jwt_options *o, int64_t now, const char *jti,
                         int64_t *in, int want_rc)
{
    char first[256];
    sd_arena a;
    sd_arena_init(&a, first, sizeof first); /* small: the writer grows past it */
    sd_jw w;
    sd_jw_init(&w, &a, 16);
    assert_int_equal(sd_jwt_claims(s, o, now, jti, &w, in), want_rc);
    json_t *c = NULL;
    if (want_rc == 0) {
        size_t n;
        const char *text = sd_jw_done(&w, &n);
        assert_non_null(text);
        assert_null(strstr(text, "abab")); /* nothing of the token hash */
        c = json_loadb(text, n, JSON_REJECT_DUPLICATES, NULL);
        assert_non_null(c);
    }
    sd_arena_reset(&a);
    return c;
}

static void claims_and_lifetime_bounds(void **state)
{
    (void)state;
    int64_t now = 1796419976123LL;
    sd_session s = session_at(now);
    sd_jwt_options o = {.issuer = "https://sessiond.example",
                        .audience = "api,admin",
                        .lifetime_ms = 300000,
                        .claims = "deviceId,data"};
    int64_t in;
    json_t *c = claims_of(&s, &o, now, "jti1", &in, 0);
    assert_int_equal(in, 300);
    assert_string_equal(json_string_value(json_object_get(c, "sub")), "alice");
    assert_string_equal(json_string_value(json_object_get(c, "sid")), s.id);
    assert_string_equal(json_string_value(json_object_get(c, "iss")), o.issuer);
    assert_int_equal(json_array_size(json_object_get(c, "aud")), 2);
    assert_int_equal(json_integer_value(json_object_get(c, "iat")), now / 1000);
    assert_int_equal(json_integer_value(json_object_get(c, "exp")), now / 1000 + 300);
    assert_int_equal(json_integer_value(json_object_get(c, "auth_time")), (now - 500) / 1000);
    assert_string_equal(json_string_value(json_object_get(c, "acr")), "aal2");
    assert_int_equal(json_array_size(json_object_get(c, "amr")), 2);
    assert_string_equal(json_string_value(json_object_get(c, "deviceId")), "d1");
    json_t *data = json_object_get(c, "data");
    assert_string_equal(json_string_value(json_object_get(data, "plan")), "pro");
    assert_true(json_real_value(json_object_get(data, "ratio")) == 0.1); /* reals round-trip */
    assert_true(json_is_null(json_object_get(data, "none")));
    assert_int_equal(json_integer_value(json_array_get(json_object_get(data, "n"), 1)), -2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(c, "amr"), 1)), "otp");
    assert_null(json_object_get(c, "mfa")); /* not asked for */
    assert_null(json_object_get(c, "token"));
    json_decref(c);

    /* bounded by the idle expiry, then by the absolute expiry (rounded down) */
    s.expiry = now + 42500;
    c = claims_of(&s, &o, now, "j", &in, 0);
    assert_int_equal(json_integer_value(json_object_get(c, "exp")), (now + 42500) / 1000);
    assert_true(json_integer_value(json_object_get(c, "exp")) * 1000 <= s.expiry);
    json_decref(c);
    s.absolute_expiry = now + 10000;
    c = claims_of(&s, &o, now, "j", &in, 0);
    assert_int_equal(json_integer_value(json_object_get(c, "exp")), (now + 10000) / 1000);
    json_decref(c);
    /* a session ending within the second gets no token */
    s.absolute_expiry = now + 500;
    assert_null(claims_of(&s, &o, now, "j", &in, SD_ENOTFOUND));
    sd_session_clear(&s);
}

static void claims_list_check(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(sd_jwt_claims_check("", err, sizeof err), 0);
    assert_int_equal(sd_jwt_claims_check("deviceId,mfa,data", err, sizeof err), 0);
    assert_int_equal(sd_jwt_claims_check("token", err, sizeof err), SD_EINVALID);
    assert_int_equal(sd_jwt_claims_check("sub", err, sizeof err), SD_EINVALID);
    assert_int_equal(sd_jwt_claims_check("deviceId,,mfa", err, sizeof err), SD_EINVALID);
}

static void minted_tokens_verify(void **state)
{
    (void)state;
    const char *types[] = {"ED25519", "EC"};
    for (int t = 0; t < 2; t++) {
        char b64[512], text[700];
        EVP_PKEY *key = new_key(types[t], b64, sizeof b64);
        snprintf(text, sizeof text, "k%d %s\n", t, b64);
        sd_jwks *k = parse(text, 0);
        int64_t now = 1796419976123LL;
        sd_session s = session_at(now);
        sd_jwt_options o = {.issuer = "i", .audience = "a", .lifetime_ms = 60000, .claims = ""};
        const char *jwt;
        int64_t in;
        char first[1024];
        sd_arena a;
        sd_arena_init(&a, first, sizeof first);
        /* ECDSA: r and s of every length; both: the thread's cached signing
         * context signs token after token */
        for (int i = 0; i < 50; i++) {
            assert_int_equal(sd_jwt_mint(k, &o, &s, now, &a, &jwt, &in), 0);
            assert_true(verifies(jwt, key, t == 1));
            char *copy = strdup(jwt);
            char *c = &copy[strlen(copy) - 3]; /* a changed signature does not verify */
            *c = *c == 'A' ? 'B' : 'A';
            assert_false(verifies(copy, key, t == 1));
            free(copy);
            sd_arena_reset(&a);
        }
        assert_int_equal(sd_jwt_mint(k, &o, &s, now, &a, &jwt, &in), 0);
        unsigned char head[256];
        size_t hl = unb64url(jwt, (size_t)(strchr(jwt, '.') - jwt), head);
        head[hl] = '\0';
        char want[128];
        snprintf(want, sizeof want, "{\"alg\":\"%s\",\"kid\":\"k%d\",\"typ\":\"at+jwt\"}",
                 t ? "ES256" : "EdDSA", t);
        assert_string_equal((char *)head, want);
        sd_arena_reset(&a);
        sd_session_clear(&s);
        sd_jwks_free(k);
        EVP_PKEY_free(key);
    }
}

/* A reload (SIGHUP) frees the key set and loads another, maybe at the same
 * address: the thread's cached signing context must follow the new key. */
static void a_reloaded_key_signs_at_once(void **state)
{
    (void)state;
    int64_t now = 1796419976123LL;
    sd_session s = session_at(now);
    sd_jwt_options o = {.issuer = "i", .audience = "a", .lifetime_ms = 60000, .claims = ""};
    char first[1024];
    sd_arena a;
    sd_arena_init(&a, first, sizeof first);
    for (int i = 0; i < 4; i++) {
        char b64[512], text[700];
        EVP_PKEY *key = new_key(i % 2 ? "EC" : "ED25519", b64, sizeof b64);
        snprintf(text, sizeof text, "same %s\n", b64); /* the same kid every time */
        sd_jwks *k = parse(text, 0);
        const char *jwt;
        int64_t in;
        for (int j = 0; j < 3; j++) {
            assert_int_equal(sd_jwt_mint(k, &o, &s, now, &a, &jwt, &in), 0);
            assert_true(verifies(jwt, key, i % 2));
            sd_arena_reset(&a);
        }
        sd_jwks_free(k);
        EVP_PKEY_free(key);
    }
    sd_session_clear(&s);
}

static void generated_lines_load(void **state)
{
    (void)state;
    char err[256];
    char *a = sd_jwk_generate_line("EdDSA", NULL, false, err, sizeof err);
    char *b = sd_jwk_generate_line("ES256", "es-1", true, err, sizeof err);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(sd_jwk_generate_line("HS256", NULL, false, err, sizeof err));
    assert_null(sd_jwk_generate_line("none", NULL, false, err, sizeof err));
    assert_null(sd_jwk_generate_line("EdDSA", "a b", false, err, sizeof err));
    char text[2048];
    snprintf(text, sizeof text, "%s%s", a, b);
    sd_jwks *k = parse(text, 0);
    assert_int_equal(sd_jwks_count(k), 2);
    assert_string_equal(sd_jwks_current_alg(k), "EdDSA"); /* es-1 is only published */
    sd_jwks_free(k);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(key_file_current_next_and_errors),
        cmocka_unit_test(es256_der_to_jose),
        cmocka_unit_test(claims_and_lifetime_bounds),
        cmocka_unit_test(claims_list_check),
        cmocka_unit_test(minted_tokens_verify),
        cmocka_unit_test(a_reloaded_key_signs_at_once),
        cmocka_unit_test(generated_lines_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
