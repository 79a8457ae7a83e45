/*
 * message.h - what one webhook delivery sends, as pure functions: the JSON
 * body of an audit event and its Standard Webhooks signature
 * (https://www.standardwebhooks.com/): headers webhook-id,
 * webhook-timestamp (seconds since the epoch) and webhook-signature,
 * "v1," followed by the base64 of HMAC-SHA256 over "id.timestamp.body"
 * keyed with the secret's bytes (a secret is "whsec_" and their base64).
 * Unit-tested against the convention's published example.
 */
#ifndef SD_WEBHOOK_MESSAGE_H
#define SD_WEBHOOK_MESSAGE_H

#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

#define SD_WEBHOOK_KEY_MAX 64  /* bytes of a secret's key */
#define SD_WEBHOOK_SIG_MAX 128 /* "v1," and the base64 of 32 bytes, NUL included */
#define SD_WEBHOOK_ID_MAX  32

/* Decodes a secret's text ("whsec_" + standard base64 of 16 to 64 bytes)
 * into key (SD_WEBHOOK_KEY_MAX bytes); *len gets its length. 0, or
 * SD_EINVALID when it is not one. */
int sd_webhook_secret_decode(const char *text, unsigned char *key, size_t *len);

/* The webhook-id of an event: "evt_<seq>" (the store's seq is never
 * reused, so every retry of one event carries the same id). */
void sd_webhook_event_id(const sd_event *e, char out[SD_WEBHOOK_ID_MAX]);

/* The JSON body of an event: {"type","timestamp","data":{...}} (the
 * convention's envelope; data holds the audit record's fields, empty ones
 * left out). Malloc'd, NUL-terminated, *len its length; NULL when out of
 * memory. */
char *sd_webhook_body(const sd_event *e, size_t *len);

/* The webhook-signature header's value for (id, timestamp, body) into out:
 * "v1,<base64>". 0, or SD_ENOMEM when the MAC cannot be computed. */
int sd_webhook_sign(const unsigned char *key, size_t key_len, const char *id, int64_t timestamp,
                    const char *body, size_t body_len, char out[SD_WEBHOOK_SIG_MAX]);

#endif
