/*
 * token.h - the secrets and identifiers of a session.
 *
 * A token is 32 bytes from getrandom(2), written as 43 characters of
 * unpadded base64url. It is the bearer credential: only its SHA-256 is ever
 * stored, and it is shown to the client once, when issued.
 * A session id is public, not a secret: 22 base64url characters, of which
 * the first 7 are the creation time in milliseconds (42 bits: until 2109,
 * then it wraps; written in the base64url characters taken in ASCII order,
 * so ids sort by creation time and the stores' id indexes grow at one end
 * instead of dirtying a random page per insert) and the other 15 are random
 * (90 bits from getrandom(2)).
 */
#ifndef SD_TOKEN_H
#define SD_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/hash.h"

#define SD_TOKEN_BYTES     32
#define SD_TOKEN_LEN       43 /* base64url chars, no padding */
#define SD_ID_LEN          22
#define SD_ID_TIME_CHARS   7
#define SD_ID_RANDOM_CHARS 15
#define SD_HASH_LEN        32 /* SHA-256 */

/* Mints a new token (SD_TOKEN_LEN + 1 bytes), or a session id (SD_ID_LEN +
 * 1) created at now_ms. Return 0 or SD_ERANDOM. */
int sd_token_mint(char out[SD_TOKEN_LEN + 1]);
int sd_id_mint(int64_t now_ms, char out[SD_ID_LEN + 1]);

/* True when s (of length n) has the exact shape of a token / a session id.
 * Checked before any store is touched. */
bool sd_token_wellformed(const char *s, size_t n);
bool sd_id_wellformed(const char *s, size_t n);

/* SHA-256 of the token text. */
void sd_token_hash(const char *token, size_t n, unsigned char out[SD_HASH_LEN]);

/* A 64-bit hash of a session id for hash tables (the index, the access
 * tokens' cache): all of it mixed, 8 bytes at a time. Ids that share a long
 * prefix (their time characters; bulk-loaded or imported ones) must not
 * share a bucket: with only the first 16 characters mixed, a million such
 * ids made one chain and the start's index load quadratic. Inline: the
 * validation by id runs it. */
static inline uint64_t sd_id_hash(const char *id)
{
    return sd_hash64(id, strnlen(id, SD_ID_LEN), 0);
}

/* Constant-time equality of two hashes. */
bool sd_hash_equal(const unsigned char a[SD_HASH_LEN], const unsigned char b[SD_HASH_LEN]);

#endif
