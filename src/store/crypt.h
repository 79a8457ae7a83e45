/*
 * crypt.h - encryption at rest of a session's sensitive metadata (the attrs
 * column: ipAddress, userAgent, deviceInfo, geoLocation, data, ...) with
 * AES-256-GCM from OpenSSL.
 *
 * Keys come from a file of `<key id> <64 hex digits>` lines ('#' comments);
 * the last line is the newest key, used for every new write; every listed
 * key decrypts. A sealed value is text:
 *
 *     $sd1$<key id>$<base64url(12-byte nonce | ciphertext | 16-byte tag)>
 *
 * with the row's session id as associated data, so a sealed value moved to
 * another row does not open. Plain JSON (it starts with '{') is what a store
 * without keys writes, and is read as it is.
 */
#ifndef SD_STORE_CRYPT_H
#define SD_STORE_CRYPT_H

#include "session/session.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct sd_keyring sd_keyring;

/* Loads the key file. Refuses a malformed file (err names the line) and
 * warns when others may read it. */
int sd_keyring_load(const char *path, sd_keyring **out, char *err, size_t errlen);
void sd_keyring_free(sd_keyring *k);

/* The id of the newest key. */
const char *sd_keyring_current(const sd_keyring *k);

/* Seals plain (n bytes) for the row id under the newest key. Returns a
 * malloc'd NUL-terminated text, or NULL (out of memory, crypto failure). */
char *sd_seal(const sd_keyring *k, const char *id, const char *plain, size_t n);

/* Opens text (n bytes) of row id: sealed, or plain JSON as it is. Returns a
 * malloc'd NUL-terminated plaintext (length in *out_len) or NULL when the
 * key is unknown, the value was altered or moved, or it is sealed and k is
 * NULL. */
char *sd_open(const sd_keyring *k, const char *id, const char *text, size_t n, size_t *out_len);

/* True when text is sealed under the newest key (nothing to re-encrypt). */
bool sd_sealed_current(const sd_keyring *k, const char *text, size_t n);

/* The attrs column of session id: the JSON of attrs, sealed when k is not
 * NULL. malloc'd; NULL when out of memory. (Every backend's.) */
char *sd_attrs_text(const sd_keyring *k, const char *id, const json_t *attrs);

/* The inverse, for every backend's row reader: the attrs column of
 * session id (text, n bytes; NULL for none) opened and parsed into *out
 * (an empty object when none or unparsable). 0, SD_EUNAVAILABLE
 * (logged) when it cannot be opened (an unknown key or an altered row), or
 * SD_ENOMEM (never read as empty: an update would write that back). */
int sd_attrs_parse(const sd_keyring *k, const char *id, const char *text, size_t n, json_t **out);
/* The end of every backend's row reader: s's attrs from their column when
 * want_attrs, then s checked whole; on failure s is cleared and the code
 * returned (sd_attrs_parse's, or SD_ENOMEM when s's user id is missing). */
int sd_attrs_finish(const sd_keyring *k, sd_session *s, bool want_attrs, const char *text,
                    size_t n);

/* Re-sealing for SD_W_REENCRYPT: the attrs text of session id under k's
 * newest key into *sealed (malloc'd), or *sealed NULL when it is sealed
 * under it already. SD_EUNAVAILABLE (logged) when it cannot be opened (an
 * unknown key or an altered row). */
int sd_reseal(const sd_keyring *k, const char *id, const char *text, size_t n, char **sealed);

#endif
