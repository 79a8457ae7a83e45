/*
 * random.h - random bytes from the kernel, and the two text forms bytes
 * take in this code base: unpadded base64url (tokens, ids) and lowercase
 * hex (request id prefixes, a replica's origin id, hashes). A leaf: it
 * knows nothing of sessions or HTTP, so every layer may use it.
 */
#ifndef SD_RANDOM_H
#define SD_RANDOM_H

#include <stddef.h>

/* Fills buf with n bytes from the kernel CSPRNG (getrandom(2)). Returns 0,
 * or SD_ERANDOM when the source fails (callers must then fail closed). */
int sd_random(void *buf, size_t n);

/* Writes the unpadded base64url text (RFC 4648 section 5) of n bytes into
 * out (4*ceil(n/3)+1 bytes at most, NUL-terminated) and returns its
 * length. */
size_t sd_b64url(const unsigned char *in, size_t n, char *out);

/* The base64url alphabet, in its RFC 4648 order (64 characters). */
extern const char sd_b64url_alphabet[];

/* Writes the lowercase hex text of n bytes into out (2*n+1 bytes,
 * NUL-terminated) and returns its length, 2*n. */
size_t sd_hex(const unsigned char *in, size_t n, char *out);

#endif
