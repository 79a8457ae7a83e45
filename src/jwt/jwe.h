/*
 * jwe.h - encrypted access tokens (issue 18, item 3): the signed JWT
 * wrapped as a compact JWE (RFC 7516) for one recipient, with
 * alg ECDH-ES+A256KW and enc A256GCM (RFC 7518 sections 4.6 and 5.3), built
 * with OpenSSL 3 directly: an ephemeral P-256 key per token, ECDH with the
 * recipient's public key, the Concat KDF (OpenSSL's SSKDF with SHA-256)
 * giving the key-encryption key, a random content key wrapped with AES key
 * wrap (RFC 3394), the JWS encrypted with AES-256-GCM.
 *
 * The recipient key file (--jwt-encrypt-key) holds one P-256 public key,
 * either as a line like the signing key file's,
 *
 *     <key id> <base64 of the DER SubjectPublicKeyInfo>
 *
 * (`openssl pkey -pubout -outform DER | base64 -w0`; the id goes into the
 * JWE header as "kid", so a recipient rotating its key knows which to
 * use), or as a PEM public key (`openssl pkey -pubout`; no kid). A private
 * key is refused: sessiond never decrypts, so it must not hold the
 * recipient's secret.
 *
 * The protected header: {"alg":"ECDH-ES+A256KW","enc":"A256GCM","cty":"JWT",
 * "kid":...,"epk":{"kty":"EC","crv":"P-256","x":...,"y":...}}; "cty" says
 * the plaintext is a JWT (a nested JWT, RFC 7519 section 5.2).
 */
#ifndef SD_JWT_JWE_H
#define SD_JWT_JWE_H

#include "util/arena.h"

#include <stddef.h>

typedef struct sd_jwe_key sd_jwe_key;

#define SD_JWE_ALG "ECDH-ES+A256KW"
#define SD_JWE_ENC "A256GCM"

/* Loads the recipient key file at path (see above). *out is owned by the
 * caller (sd_jwe_key_free). Returns 0, or SD_ECONFIG / SD_ENOMEM with err
 * naming the file and what is wrong. */
int sd_jwe_key_load(const char *path, sd_jwe_key **out, char *err, size_t errlen);

/* The same from len bytes of text; name labels the messages. */
int sd_jwe_key_parse(const char *text, size_t len, const char *name, sd_jwe_key **out, char *err,
                     size_t errlen);

void sd_jwe_key_free(sd_jwe_key *k);

/* The recipient key's id ("" when the file gave none). Borrowed from k. */
const char *sd_jwe_key_kid(const sd_jwe_key *k);

/* The compact JWE of the n bytes of jws (a compact JWS) for k: text in
 * arena a, or NULL when out of memory, the random source or a cipher
 * fails. (OpenSSL allocates for the ephemeral key and the KDF.) */
const char *sd_jwe_encrypt(const sd_jwe_key *k, sd_arena *a, const char *jws, size_t n);

#endif
