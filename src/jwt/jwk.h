/*
 * jwk.h - the signing keys of sessiond's JWT access tokens (issue 18): the
 * key file, the public JWK Set that verifiers fetch, and JWS signing with
 * OpenSSL 3 (EVP_PKEY, EVP_DigestSign).
 *
 * The key file (--jwt-keys) has one key a line ('#' comments):
 *
 *     <key id> <base64 of the PKCS#8 DER private key> [next]
 *
 * An Ed25519 key signs as EdDSA, a P-256 key as ES256; no other key type is
 * accepted, so no token is ever signed with "none" or a shared secret (HS*).
 * Every listed key is published in the JWK Set; the current key, which
 * signs, is the last line not marked `next`. A `next` key is published
 * before it signs, so verifiers' cached key sets know it when it starts to
 * (the rotation steps are in docs/tokens.md). `sessiond jwk generate`
 * writes such a line; so does
 * `openssl genpkey -algorithm ed25519 -outform DER | base64 -w0`.
 */
#ifndef SD_JWT_JWK_H
#define SD_JWT_JWK_H

#include "util/arena.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct sd_jwks sd_jwks;

#define SD_KID_MAX 64

/* Loads the key file at path. Refuses a malformed file (err names the line,
 * never a key's bytes), a file with no signing key, and warns when others
 * may read it. *out is owned by the caller (sd_jwks_free). */
int sd_jwks_load(const char *path, sd_jwks **out, char *err, size_t errlen);

/* The same from text (len bytes; name labels the messages). */
int sd_jwks_parse(const char *text, size_t len, const char *name, sd_jwks **out, char *err,
                  size_t errlen);

void sd_jwks_free(sd_jwks *k);

/* The recipient key of encrypted tokens (--jwt-encrypt-key, jwe.h): k
 * takes ownership of e (freed with k; NULL: tokens are signed only). Kept
 * here so that one SIGHUP swaps both under one lock. */
struct sd_jwe_key;
void sd_jwks_set_recipient(sd_jwks *k, struct sd_jwe_key *e);
const struct sd_jwe_key *sd_jwks_recipient(const sd_jwks *k); /* borrowed; NULL: none */

/* How many keys are published; the current key's id and JWS alg
 * ("EdDSA" or "ES256"). Borrowed from k. */
int sd_jwks_count(const sd_jwks *k);
const char *sd_jwks_current_kid(const sd_jwks *k);
const char *sd_jwks_current_alg(const sd_jwks *k);

/* The public JWK Set (RFC 7517 section 5): {"keys": [...]} with kty, crv,
 * x (and y), kid, alg, use "sig" of every key. New reference, or NULL when
 * out of memory. */
json_t *sd_jwks_public(const sd_jwks *k);

/* The media type in the JWS header (RFC 9068 section 2.1). */
#define SD_JWT_TYP "at+jwt"

/* The compact JWS (RFC 7515) of payload (len bytes of JSON) signed with the
 * current key, protected header {"alg", "kid", "typ": SD_JWT_TYP} (encoded
 * once, when the key is loaded). The text is in arena a (*out_len its
 * length); NULL when out of memory or the signature fails.
 *
 * Cost: each thread keeps OpenSSL's signing context for the key it last
 * signed with (EdDSA: an EVP_MD_CTX set up once; ES256: an EVP_PKEY_CTX and
 * the one-shot SHA256()), so a token costs the signature itself and no
 * key set-up. A thread's context holds a reference to its key until the
 * thread signs with another key or ends (after a SIGHUP that retired it). */
const char *sd_jws_sign(const sd_jwks *k, sd_arena *a, const char *payload, size_t len,
                        size_t *out_len);

/* An ECDSA signature as OpenSSL writes it (DER SEQUENCE of r, s) into
 * JOSE's form (RFC 7518 section 3.4): r then s, each 32 bytes big-endian.
 * Returns 0, or SD_EINVALID for anything but a P-256-sized signature. */
int sd_ecdsa_der_to_jose(const unsigned char *der, size_t n, unsigned char out[64]);

/* A new key file line for alg ("EdDSA" or "ES256") with key id kid (NULL:
 * one is made from the date and random bits), marked `next` when asked.
 * malloc'd; NULL with err on failure. */
char *sd_jwk_generate_line(const char *alg, const char *kid, bool next, char *err, size_t errlen);

#endif
