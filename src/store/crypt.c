/* crypt.c - AES-256-GCM sealing of the attrs column (see crypt.h). */
#include "store/crypt.h"
#include "util/jsonmem.h"
#include "util/err.h"
#include "util/keyfile.h"
#include "util/log.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define KEY_LEN   32
#define NONCE_LEN 12
#define TAG_LEN   16
#define ID_MAX    32
#define PREFIX    "$sd1$"

typedef struct key {
    char id[ID_MAX + 1];
    unsigned char bytes[KEY_LEN];
} key;

struct sd_keyring {
    key *v;
    int n; /* v[n - 1] is the newest */
};

void sd_keyring_free(sd_keyring *k)
{
    if (!k)
        return;
    OPENSSL_cleanse(k->v, (size_t)k->n * sizeof *k->v);
    free(k->v);
    free(k);
}

static bool id_ok(const char *s, size_t n)
{
    return sd_key_id_ok(s, n, ID_MAX);
}

int sd_keyring_load(const char *path, sd_keyring **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = sd_key_file_open(path, "encryption key file", err, errlen);
    if (!f)
        return SD_ECONFIG;
    sd_keyring *k = calloc(1, sizeof *k);
    char line[512];
    int lineno = 0, rc = k ? 0 : SD_ENOMEM;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *c = strchr(line, '#');
        if (c)
            *c = '\0';
        char id[64], hex[128];
        int fields = sscanf(line, "%63s %127s", id, hex);
        if (fields <= 0)
            continue;
        long len = 0;
        unsigned char *bytes = fields == 2 ? OPENSSL_hexstr2buf(hex, &len) : NULL;
        if (fields != 2 || !id_ok(id, strlen(id)) || !bytes || len != KEY_LEN) {
            OPENSSL_clear_free(bytes, bytes ? (size_t)len : 0);
            snprintf(err, errlen,
                     "%s:%d: expected '<key id> <64 hex digits>' (id: 1-32 of A-Z a-z 0-9 - _ .)",
                     path, lineno);
            rc = SD_ECONFIG;
            break;
        }
        for (int i = 0; i < k->n; i++)
            if (strcmp(k->v[i].id, id) == 0) {
                snprintf(err, errlen, "%s:%d: key id '%s' appears twice", path, lineno, id);
                rc = SD_ECONFIG;
            }
        key *v = rc == 0 ? realloc(k->v, (size_t)(k->n + 1) * sizeof *v) : NULL;
        if (rc == 0 && !v)
            rc = SD_ENOMEM;
        if (v) {
            k->v = v;
            memcpy(v[k->n].id, id, strlen(id) + 1); /* id_ok: at most ID_MAX */
            memcpy(v[k->n].bytes, bytes, KEY_LEN);
            k->n++;
        }
        OPENSSL_clear_free(bytes, (size_t)len);
        OPENSSL_cleanse(hex, sizeof hex);
    }
    OPENSSL_cleanse(line, sizeof line);
    fclose(f);
    if (rc == 0 && k->n == 0) {
        snprintf(err, errlen, "%s holds no key", path);
        rc = SD_ECONFIG;
    }
    if (rc) {
        if (rc == SD_ENOMEM)
            snprintf(err, errlen, "out of memory reading %s", path);
        sd_keyring_free(k);
        return rc;
    }
    *out = k;
    return 0;
}

const char *sd_keyring_current(const sd_keyring *k)
{
    return k->v[k->n - 1].id;
}

/* AES-256-GCM one shot. Returns 0 on success (for decryption: the tag
 * verified). */
static int gcm(bool enc, const unsigned char *keyb, const unsigned char *nonce, const char *aad,
               const unsigned char *in, int n, unsigned char *out, unsigned char *tag)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, ok = c && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) &&
                      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) &&
                      EVP_CipherInit_ex(c, NULL, NULL, keyb, nonce, enc) &&
                      EVP_CipherUpdate(c, NULL, &len, (const unsigned char *)aad, (int)strlen(aad));
    if (ok && !enc)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag);
    ok = ok && EVP_CipherUpdate(c, out, &len, in, n) && EVP_CipherFinal_ex(c, out + len, &len);
    if (ok && enc)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag);
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -1;
}

char *sd_seal(const sd_keyring *k, const char *id, const char *plain, size_t n)
{
    const key *cur = &k->v[k->n - 1];
    size_t raw_len = NONCE_LEN + n + TAG_LEN;
    unsigned char *raw = malloc(raw_len);
    size_t idlen = strlen(cur->id);
    size_t cap = sizeof PREFIX + idlen + 1 + 4 * ((raw_len + 2) / 3) + 1;
    char *out = malloc(cap);
    if (!raw || !out || n > INT32_MAX || RAND_bytes(raw, NONCE_LEN) != 1 ||
        gcm(true, cur->bytes, raw, id, (const unsigned char *)plain, (int)n, raw + NONCE_LEN,
            raw + NONCE_LEN + n)) {
        free(raw);
        free(out);
        return NULL;
    }
    size_t o = (size_t)snprintf(out, cap, PREFIX "%s$", cur->id);
    EVP_EncodeBlock((unsigned char *)out + o, raw, (int)raw_len);
    free(raw);
    return out;
}

/* Splits "$sd1$<id>$<b64>": the key (NULL when unknown) and the base64. */
static const key *parse(const sd_keyring *k, const char *text, size_t n, const char **b64,
                        size_t *b64_len)
{
    if (!k || n < sizeof PREFIX || memcmp(text, PREFIX, sizeof PREFIX - 1) != 0)
        return NULL;
    const char *id = text + sizeof PREFIX - 1;
    const char *end = memchr(id, '$', n - (size_t)(id - text));
    if (!end)
        return NULL;
    size_t idlen = (size_t)(end - id);
    *b64 = end + 1;
    *b64_len = n - (size_t)(*b64 - text);
    for (int i = k->n - 1; i >= 0; i--)
        if (strlen(k->v[i].id) == idlen && memcmp(k->v[i].id, id, idlen) == 0)
            return &k->v[i];
    return NULL;
}

char *sd_open(const sd_keyring *k, const char *id, const char *text, size_t n, size_t *out_len)
{
    if (n > 0 && text[0] == '{') { /* plain JSON, written without a key */
        char *p = malloc(n + 1);
        if (p) {
            memcpy(p, text, n);
            p[n] = '\0';
            *out_len = n;
        }
        return p;
    }
    const char *b64;
    size_t b64_len;
    const key *kk = parse(k, text, n, &b64, &b64_len);
    if (!kk || b64_len % 4 != 0 || b64_len > INT32_MAX)
        return NULL;
    unsigned char *raw = malloc(b64_len / 4 * 3 + 1);
    int raw_len = raw ? EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)b64_len) : -1;
    /* EVP_DecodeBlock counts '=' padding as zero bytes. */
    for (size_t i = b64_len; raw_len > 0 && i > 0 && b64[i - 1] == '='; i--)
        raw_len--;
    if (raw_len < NONCE_LEN + TAG_LEN) {
        free(raw);
        return NULL;
    }
    size_t ct_len = (size_t)raw_len - NONCE_LEN - TAG_LEN;
    char *plain = malloc(ct_len + 1);
    if (!plain || gcm(false, kk->bytes, raw, id, raw + NONCE_LEN, (int)ct_len,
                      (unsigned char *)plain, raw + NONCE_LEN + ct_len)) {
        free(raw);
        free(plain);
        return NULL;
    }
    free(raw);
    plain[ct_len] = '\0';
    *out_len = ct_len;
    return plain;
}

bool sd_sealed_current(const sd_keyring *k, const char *text, size_t n)
{
    const char *b64;
    size_t b64_len;
    return parse(k, text, n, &b64, &b64_len) == &k->v[k->n - 1];
}

char *sd_attrs_text(const sd_keyring *k, const char *id, const json_t *attrs)
{
    /* never a text jansson left parts out of */
    char *json = sd_json_dumps(attrs, JSON_COMPACT, sd_json_failures());
    if (!json || !k)
        return json;
    size_t n = strlen(json);
    char *sealed = sd_seal(k, id, json, n);
    OPENSSL_cleanse(json, n);
    free(json);
    return sealed;
}

int sd_attrs_parse(const sd_keyring *k, const char *id, const char *text, size_t n, json_t **out)
{
    *out = NULL;
    size_t plen = 0;
    char *plain = text ? sd_open(k, id, text, n, &plen) : NULL;
    if (text && !plain) {
        sd_error("store: cannot decrypt the metadata of session %s (unknown key or altered row)",
                 id);
        return SD_EUNAVAILABLE;
    }
    bool oom = false;
    *out = plain ? sd_json_loadb(plain, plen, 0, NULL, &oom) : NULL;
    if (plain)
        OPENSSL_cleanse(plain, plen);
    free(plain);
    if (oom)
        return SD_ENOMEM;
    if (!*out && !(*out = json_object()))
        return SD_ENOMEM;
    return 0;
}

int sd_attrs_finish(const sd_keyring *k, sd_session *s, bool want_attrs, const char *text, size_t n)
{
    int rc = want_attrs ? sd_attrs_parse(k, s->id, text, n, &s->attrs) : 0;
    if (rc == 0 && !s->user_id)
        rc = SD_ENOMEM;
    if (rc)
        sd_session_clear(s);
    return rc;
}

int sd_reseal(const sd_keyring *k, const char *id, const char *text, size_t n, char **sealed)
{
    *sealed = NULL;
    if (sd_sealed_current(k, text, n))
        return 0;
    size_t plen = 0;
    char *plain = sd_open(k, id, text, n, &plen);
    *sealed = plain ? sd_seal(k, id, plain, plen) : NULL;
    if (plain)
        OPENSSL_cleanse(plain, plen);
    free(plain);
    if (*sealed)
        return 0;
    sd_error("store: cannot re-encrypt session %s (unknown key or altered row)", id);
    return SD_EUNAVAILABLE;
}
