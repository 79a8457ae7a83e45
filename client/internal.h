/*
 * internal.h - what the files of libsessiond-client share and nothing else
 * sees: the client object, the one HTTP exchange (http.c) and the JSON
 * helpers (json.c). Names crossing files start with sdc__; the exported ones
 * (sd_client_*) are listed by libsessiond-client.map.
 */
#ifndef SDC_INTERNAL_H
#define SDC_INTERNAL_H

#include "sessiond/client.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Responses larger than this are refused (SD_CLIENT_EPROTO). */
#define SDC_MAX_RESPONSE (16u << 20)

struct sd_client {
    CURL *curl; /* one easy handle: its connection is kept alive between calls */
    char *base_url;
    char *api_key_header; /* "X-Api-Key: ..." (wiped on close) */
    char *user_agent;
    char errbuf[CURL_ERROR_SIZE];
    /* The last exchange. */
    int status;
    char detail[512];
    char request_id[64];
    char *body; /* response body, NUL-terminated */
    size_t body_len, body_cap;
    /* Retries of the calls that change nothing (sd_client_set_retry). */
    int max_retries;
    long max_wait_ms;
    int retries; /* the last call's */
};

/* One request to the server. */
typedef struct sdc_req {
    const char *method; /* GET, POST, PUT, DELETE */
    const char *path;   /* already escaped, may carry a query string */
    const char *content_type;
    const char *body; /* NULL: none */
    size_t body_len;
    const char *bearer;   /* token for Authorization: Bearer, or NULL */
    const char *if_match; /* the If-Match header's value, or NULL */
    bool safe;            /* a POST that changes nothing (a validation): may be
                             retried as a GET is (sd_client_set_retry) */
} sdc_req;

/*
 * Sends req and reads the answer into c->body. Returns 0 for a 2xx, else the
 * SD_CLIENT_E* value matching the transport failure or the status (and sets
 * c->detail from the problem body or the transport's message). A GET, or a
 * request marked safe, is sent again after a 503 or a failed connection as
 * sd_client_set_retry allows.
 */
int sdc__exchange(sd_client *c, const sdc_req *req);

/* Like sdc__exchange, then parses a 2xx body as a JSON object into *out. */
int sdc__exchange_json(sd_client *c, const sdc_req *req, json_t **out);

/* "prefix/<escaped seg>suffix" in a fresh string (NULL when out of memory). */
char *sdc__path(sd_client *c, const char *prefix, const char *seg, const char *suffix);
/* Appends "&name=<escaped value>" (or "?" for the first) to *path. */
int sdc__query(sd_client *c, char **path, const char *name, const char *value);

/* The If-Match value for version into buf ("N"), or NULL when version is 0:
 * no precondition. */
const char *sdc__if_match(int64_t version, char buf[32]);

/* GETs one page of a listing: *path (malloc'd; limit > 0 and the cursor, when
 * given, appended as cursor_key) with the bearer token when given. 0 with
 * the answer in *o (the caller's, json_decref; set even on an error after
 * the exchange) and its array_key member in *arr (borrowed), or an error. */
int sdc__get_page(sd_client *c, char **path, int limit, const char *cursor_key, const char *cursor,
                  const char *bearer, const char *array_key, json_t **o, json_t **arr);

/* Sets c->detail (printf-style). */
void sdc__set_detail(sd_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* JSON helpers (json.c). */
char *sdc__strdup_or_null(json_t *o, const char *key);
int sdc__copy_str(json_t *o, const char *key, char *dst, size_t cap);
/* The integer member key of o into *out (when not NULL); SD_CLIENT_EPROTO
 * (detail set) when o has none. */
int sdc__read_count(sd_client *c, json_t *o, const char *key, int64_t *out);
int sdc__session_from_json(json_t *o, sd_client_session **out);
char *sdc__dumps(json_t *o);
/* Overwrites s with zeros before freeing it. */
void sdc__free_secret(char *s);

/* ---- access tokens (jwks.c, jwt.c) -------------------------------------- */

#define SDC_MAX_JWT  8192              /* longer tokens are refused unread */
#define SDC_MAX_KEYS 32                /* keys kept from one JWK Set */
#define SDC_MAX_JWE  (SDC_MAX_JWT * 2) /* an encrypted one: the JWT and a header */

typedef struct evp_pkey_st EVP_PKEY;

typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;

typedef struct sdc_key {
    char kid[128];
    char alg[8]; /* "EdDSA" or "ES256": the only algorithm this key verifies */
    EVP_PKEY *pk;
    /* Set up at the key's first use and kept (a verifier is used by one
     * thread at a time): EdDSA an EVP_MD_CTX DigestVerify-initialised with
     * pk (one-shot, reusable), ES256 an EVP_PKEY_CTX verify-initialised
     * with pk (over the SHA256() of the input). */
    EVP_MD_CTX *vctx;
    EVP_PKEY_CTX *pctx;
} sdc_key;

typedef struct sdc_keys {
    sdc_key v[SDC_MAX_KEYS];
    size_t n;
} sdc_keys;

/* base64url text (no padding) into a malloc'd buffer, NUL-terminated,
 * *len its size; NULL when in holds anything but the URL-safe alphabet. */
unsigned char *sdc__b64url_decode(const char *in, size_t n, size_t *len);
/* GET /.well-known/jwks.json into *out (its keys freed and replaced only on
 * success). 0 or an SD_CLIENT_E* value. */
int sdc__keys_fetch(sd_client *c, sdc_keys *out);
void sdc__keys_free(sdc_keys *k);
/* The key with this kid, or NULL. Borrowed from k. */
sdc_key *sdc__keys_find(sdc_keys *k, const char *kid);
/* A JWK Set (parsed JSON) into *out, as sdc__keys_fetch does. 0 or
 * SD_CLIENT_EPROTO when it has no "keys" array. */
int sdc__keys_parse(json_t *set, sdc_keys *out);
/* A P-256 public key from its uncompressed point (04|x|y); NULL when the
 * point is not on the curve. */
EVP_PKEY *sdc__p256_key(const unsigned char point[65]);

/* jwe.c: the verifier's P-256 private key from a PEM file (0 or
 * SD_CLIENT_EINVAL), and the signed JWT inside a compact JWE for it:
 * *jws malloc'd (the caller clears and frees it), or an SD_CLIENT_EJWT_*
 * value. */
int sdc__jwe_key_load(const char *path, EVP_PKEY **out);
int sdc__jwe_decrypt(EVP_PKEY *key, const char *tok, size_t n, char **jws);

/* jwtcache.c: verified tokens by the SHA-256 of the whole token, with the
 * claims they carried (the caller checks time and revocation on each use).
 * sdc__vcache_new: entries 0 is off; nothing is allocated for them before
 * the first put. find returns the kept claims (borrowed until the next
 * put, drop, clear or resize) or NULL; put never fails (no memory: not
 * kept). */
typedef struct sdc_vcache sdc_vcache;
int sdc__vcache_new(size_t entries, sdc_vcache **out);
void sdc__vcache_free(sdc_vcache *c);
int sdc__vcache_resize(sdc_vcache *c, size_t entries);
bool sdc__vcache_on(const sdc_vcache *c);
int sdc__vcache_hash(sdc_vcache *c, const char *token, size_t n, unsigned char h[32]);
sd_client_jwt_claims *sdc__vcache_find(sdc_vcache *c, const unsigned char h[32]);
void sdc__vcache_put(sdc_vcache *c, const unsigned char h[32], const sd_client_jwt_claims *cl);
void sdc__vcache_drop(sdc_vcache *c, const unsigned char h[32]);
void sdc__vcache_clear(sdc_vcache *c);
void sdc__vcache_counts(const sdc_vcache *c, int64_t *hits, int64_t *misses);

/* 1 when sig is key's valid signature (key->alg) of input, else 0. */
int sdc__signature_ok(sdc_key *key, const char *input, size_t ilen, const unsigned char *sig,
                      size_t slen);

#endif
