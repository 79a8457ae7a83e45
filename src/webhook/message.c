/*
 * message.c - a webhook's body and signature (see message.h). HMAC-SHA256
 * and base64 are OpenSSL's.
 */
#include "webhook/message.h"
#include "util/jsonmem.h"
#include "util/clock.h"
#include "util/err.h"

#include <inttypes.h>
#include <stdbool.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "whsec_"

int sd_webhook_secret_decode(const char *text, unsigned char *key, size_t *len)
{
    size_t plen = strlen(PREFIX);
    if (strncmp(text, PREFIX, plen) != 0)
        return SD_EINVALID;
    const char *b64 = text + plen;
    size_t n = strlen(b64);
    /* 16 to 64 bytes: 24 to 88 characters, padded to a multiple of 4. */
    if (n < 24 || n > 88 || n % 4)
        return SD_EINVALID;
    for (size_t i = 0; i < n; i++) {
        char c = b64[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '/' || (c == '=' && i >= n - 2);
        if (!ok || (c != '=' && i > 0 && b64[i - 1] == '='))
            return SD_EINVALID;
    }
    unsigned char raw[SD_WEBHOOK_KEY_MAX + 3];
    int got = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n);
    if (got < 0)
        return SD_EINVALID;
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    size_t k = (size_t)got - (b64[n - 1] == '=') - (b64[n - 2] == '=');
    if (k < 16 || k > SD_WEBHOOK_KEY_MAX) {
        OPENSSL_cleanse(raw, sizeof raw);
        return SD_EINVALID;
    }
    memcpy(key, raw, k);
    OPENSSL_cleanse(raw, sizeof raw);
    *len = k;
    return 0;
}

void sd_webhook_event_id(const sd_event *e, char out[SD_WEBHOOK_ID_MAX])
{
    snprintf(out, SD_WEBHOOK_ID_MAX, "evt_%" PRId64, e->seq);
}

/* Sets name to s unless s is empty. */
static int put(json_t *o, const char *name, const char *s)
{
    return s[0] ? json_object_set_new(o, name, json_string(s)) : 0;
}

char *sd_webhook_body(const sd_event *e, size_t *len)
{
    char when[40];
    sd_time_format(e->time, when);
    unsigned long mark = sd_json_failures(); /* never a body jansson left parts out of */
    json_t *data =
        json_pack("{s:I,s:s,s:s}", "seq", (json_int_t)e->seq, "time", when, "event", e->event);
    json_t *root =
        data ? json_pack("{s:s,s:s,s:o}", "type", e->event, "timestamp", when, "data", data) : NULL;
    char *out = NULL;
    if (root && put(data, "sessionId", e->session_id) == 0 &&
        put(data, "userId", e->user_id) == 0 && put(data, "actor", e->actor) == 0 &&
        put(data, "clientAddress", e->address) == 0 && put(data, "reason", e->reason) == 0)
        out = sd_json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER, mark);
    if (!root)
        json_decref(data);
    json_decref(root);
    if (out)
        *len = strlen(out);
    return out;
}

int sd_webhook_sign(const unsigned char *key, size_t key_len, const char *id, int64_t timestamp,
                    const char *body, size_t body_len, char out[SD_WEBHOOK_SIG_MAX])
{
    char head[SD_WEBHOOK_ID_MAX + 32];
    int hn = snprintf(head, sizeof head, "%s.%" PRId64 ".", id, timestamp);
    unsigned char mac[EVP_MAX_MD_SIZE];
    int rc = SD_ENOMEM;
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = m ? EVP_MAC_CTX_new(m) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    size_t got = 0;
    if (c && EVP_MAC_init(c, key, key_len, params) == 1 &&
        EVP_MAC_update(c, (const unsigned char *)head, (size_t)hn) == 1 &&
        EVP_MAC_update(c, (const unsigned char *)body, body_len) == 1 &&
        EVP_MAC_final(c, mac, &got, sizeof mac) == 1 && got == 32) {
        memcpy(out, "v1,", 3);
        EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)got); /* 44 characters and a NUL */
        rc = 0;
    }
    EVP_MAC_CTX_free(c);
    EVP_MAC_free(m);
    return rc;
}
