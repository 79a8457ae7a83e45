/*
 * keys.h - who may call the API: API keys with scopes.
 *
 * Keys are configured as SHA-256 hashes, never in the clear, one a line in
 * the file named by --api-keys:
 *
 *     <key-id> <64 hex digits of sha256(key)> <scope>[,<scope>...]
 *
 * Scopes: validate (validation, forward-auth, introspection), sessions
 * (create, read, update, delete, list), admin (user-wide and bulk
 * revocation). A caller sends its key in X-Api-Key (Authorization carries
 * session tokens), or on POST /introspect as HTTP Basic client credentials
 * (the line's id, then the key). Every configured hash is compared, in
 * constant time.
 *
 * A caller may instead present a client certificate (mTLS, --tls-client-ca):
 * a line whose second field is cert:<CN> gives the scopes of the caller
 * whose verified certificate has that subject common name:
 *
 *     <key-id> cert:<subject CN> <scope>[,<scope>...]
 */
#ifndef SD_KEYS_H
#define SD_KEYS_H

#include <stddef.h>

typedef struct sd_keys sd_keys;

/* Loads a key file. Returns 0, or SD_ECONFIG with a sentence in err. */
int sd_keys_load(const char *path, sd_keys **out, char *err, size_t errlen);
void sd_keys_free(sd_keys *k);
int sd_keys_count(const sd_keys *k);

enum sd_key_result { SD_KEY_OK, SD_KEY_MISSING, SD_KEY_UNKNOWN, SD_KEY_FORBIDDEN };

/* Checks a presented key (may be NULL) for scope. *key_id (borrowed from k)
 * names the key when it is known. */
enum sd_key_result sd_keys_check(const sd_keys *k, const char *presented, const char *scope,
                                 const char **key_id);

/* Checks client credentials as RFC 7662 introspection clients send them
 * (HTTP Basic: client id and secret): the key lines whose id is client_id,
 * with secret as their key. Every line's hash is compared, in constant
 * time; a key that belongs to another id does not match. NULL or empty
 * client_id or secret: SD_KEY_UNKNOWN (credentials were presented). */
enum sd_key_result sd_keys_check_client(const sd_keys *k, const char *client_id, const char *secret,
                                        const char *scope, const char **key_id);

/* Checks the subject CN of a verified client certificate (may be NULL)
 * against the cert:<CN> lines, as sd_keys_check does for keys. */
enum sd_key_result sd_keys_check_cert(const sd_keys *k, const char *cn, const char *scope,
                                      const char **key_id);

#endif
