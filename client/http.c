/*
 * http.c - the client object and its one HTTP exchange, on libcurl.
 *
 * One CURL easy handle per client, so consecutive calls reuse the kept-alive
 * connection. Each exchange sets every per-request option again (method,
 * URL, headers, body), so nothing leaks from one call into the next.
 * Transport failures and HTTP statuses map onto the SD_CLIENT_E* values here
 * and nowhere else.
 */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define DEFAULT_URL        "http://127.0.0.1:8080"
#define DEFAULT_CONNECT_MS 5000L
#define DEFAULT_TIMEOUT_MS 30000L
#define MAX_RETRIES        10
#define DEFAULT_RETRY_MS   10000L /* what a call's retries may sleep in all */
#define BACKOFF_FIRST_MS   100L

static const char *const errors[] = {
#define SDC_ERR_TEXT(name, code, text) [-(code)] = text,
    SD_CLIENT_ERRNO_MAP(SDC_ERR_TEXT)
#undef SDC_ERR_TEXT
};

const char *sd_client_strerror(int rc)
{
    if (rc == 0)
        return "success";
    if (rc < 0 && (size_t)-rc < sizeof errors / sizeof errors[0] && errors[-rc])
        return errors[-rc];
    return "unknown error";
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

void sdc__free_secret(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void sd_client_free_secret(char *s)
{
    sdc__free_secret(s);
}

const char *sdc__if_match(int64_t version, char buf[32])
{
    if (version <= 0)
        return NULL;
    snprintf(buf, 32, "\"%" PRId64 "\"", version);
    return buf;
}

void sd_client_free(void *p)
{
    free(p);
}

void sdc__set_detail(sd_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof c->detail, fmt, ap);
    va_end(ap);
    /* The detail is meant for terminals and logs: no control bytes. */
    for (char *p = c->detail; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    sd_client *c = arg;
    size_t len = size * n;
    if (c->body_len + len + 1 > SDC_MAX_RESPONSE)
        return 0; /* CURLE_WRITE_ERROR */
    if (c->body_len + len + 1 > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : 4096;
        while (cap < c->body_len + len + 1)
            cap *= 2;
        char *b = realloc(c->body, cap);
        if (!b)
            return 0;
        c->body = b;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, data, len);
    c->body_len += len;
    c->body[c->body_len] = '\0';
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    sd_client *c = arg;
    size_t len = size * n;
    static const char name[] = "x-request-id:";
    if (len > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
        const char *v = data + sizeof name - 1;
        size_t vl = len - (sizeof name - 1);
        while (vl && (*v == ' ' || *v == '\t'))
            v++, vl--;
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
            vl--;
        if (vl >= sizeof c->request_id)
            vl = sizeof c->request_id - 1;
        memcpy(c->request_id, v, vl);
        c->request_id[vl] = '\0';
    }
    return len;
}

static char *dup_or(const char *s, const char *dflt)
{
    return strdup(s && *s ? s : dflt);
}

int sd_client_open(const sd_client_options *opt, sd_client **out)
{
    static const sd_client_options none;
    int rc = SD_CLIENT_ENOMEM;
    sd_client *c = NULL;
    if (!out)
        return SD_CLIENT_EINVAL;
    *out = NULL;
    if (!opt)
        opt = &none;
    if (opt->connect_timeout_ms < 0 || opt->timeout_ms < 0)
        return SD_CLIENT_EINVAL;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return SD_CLIENT_ENOMEM;
    c = calloc(1, sizeof *c);
    if (!c)
        goto out;
    c->base_url = dup_or(opt->base_url, DEFAULT_URL);
    c->user_agent = dup_or(opt->user_agent, "libsessiond-client/" SD_CLIENT_VERSION);
    if (!c->base_url || !c->user_agent)
        goto out;
    /* "http://host:port/" and "http://host:port" name the same base. */
    size_t bl = strlen(c->base_url);
    while (bl && c->base_url[bl - 1] == '/')
        c->base_url[--bl] = '\0';
    if (strncmp(c->base_url, "http://", 7) != 0 && strncmp(c->base_url, "https://", 8) != 0) {
        rc = SD_CLIENT_EINVAL;
        goto out;
    }
    if (opt->api_key && *opt->api_key) {
        if (strpbrk(opt->api_key, "\r\n")) {
            rc = SD_CLIENT_EINVAL;
            goto out;
        }
        size_t n = strlen(opt->api_key) + sizeof "X-Api-Key: ";
        c->api_key_header = malloc(n);
        if (!c->api_key_header)
            goto out;
        snprintf(c->api_key_header, n, "X-Api-Key: %s", opt->api_key);
    }
    c->curl = curl_easy_init();
    if (!c->curl)
        goto out;
    CURL *h = c->curl;
    long conn = opt->connect_timeout_ms ? opt->connect_timeout_ms : DEFAULT_CONNECT_MS;
    long total = opt->timeout_ms ? opt->timeout_ms : DEFAULT_TIMEOUT_MS;
    int bad = 0;
    bad |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, conn) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, total) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEDATA, c) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HEADERDATA, c) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
    if (opt->ca_file)
        bad |= curl_easy_setopt(h, CURLOPT_CAINFO, opt->ca_file) != CURLE_OK;
    if (opt->ca_path)
        bad |= curl_easy_setopt(h, CURLOPT_CAPATH, opt->ca_path) != CURLE_OK;
    if (opt->cert_file)
        bad |= curl_easy_setopt(h, CURLOPT_SSLCERT, opt->cert_file) != CURLE_OK;
    if (opt->key_file)
        bad |= curl_easy_setopt(h, CURLOPT_SSLKEY, opt->key_file) != CURLE_OK;
    if (bad) {
        rc = SD_CLIENT_EINVAL;
        goto out;
    }
    *out = c;
    c = NULL;
    rc = 0;
out:
    sd_client_close(c);
    return rc;
}

void sd_client_close(sd_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    sdc__free_secret(c->api_key_header);
    free(c->base_url);
    free(c->user_agent);
    if (c->body)
        explicit_bzero(c->body, c->body_len + 1);
    free(c->body);
    free(c);
}

int sd_client_last_status(const sd_client *c)
{
    return c ? c->status : 0;
}

int sd_client_set_retry(sd_client *c, int max_retries, long max_wait_ms)
{
    if (!c || max_retries < 0 || max_retries > MAX_RETRIES || max_wait_ms < 0)
        return SD_CLIENT_EINVAL;
    c->max_retries = max_retries;
    c->max_wait_ms = max_wait_ms ? max_wait_ms : DEFAULT_RETRY_MS;
    return 0;
}

int sd_client_last_retries(const sd_client *c)
{
    return c ? c->retries : 0;
}

const char *sd_client_last_detail(const sd_client *c)
{
    return c ? c->detail : "";
}

const char *sd_client_last_request_id(const sd_client *c)
{
    return c ? c->request_id : "";
}

char *sdc__path(sd_client *c, const char *prefix, const char *seg, const char *suffix)
{
    char *esc = curl_easy_escape(c->curl, seg, (int)strlen(seg));
    if (!esc)
        return NULL;
    size_t n = strlen(prefix) + strlen(esc) + strlen(suffix) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s%s", prefix, esc, suffix);
    curl_free(esc);
    return p;
}

int sdc__query(sd_client *c, char **path, const char *name, const char *value)
{
    char *esc = curl_easy_escape(c->curl, value, (int)strlen(value));
    if (!esc)
        return SD_CLIENT_ENOMEM;
    size_t n = strlen(*path) + strlen(name) + strlen(esc) + 3;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s%c%s=%s", *path, strchr(*path, '?') ? '&' : '?', name, esc);
    curl_free(esc);
    if (!p)
        return SD_CLIENT_ENOMEM;
    free(*path);
    *path = p;
    return 0;
}

int sdc__get_page(sd_client *c, char **path, int limit, const char *cursor_key, const char *cursor,
                  const char *bearer, const char *array_key, json_t **o, json_t **arr)
{
    *o = *arr = NULL;
    int rc = 0;
    if (limit > 0) {
        char n[16];
        snprintf(n, sizeof n, "%d", limit);
        rc = sdc__query(c, path, "limit", n);
    }
    if (!rc && cursor)
        rc = sdc__query(c, path, cursor_key, cursor);
    sdc_req r = {.method = "GET", .path = *path, .bearer = bearer};
    if (rc || (rc = sdc__exchange_json(c, &r, o)))
        return rc;
    *arr = json_object_get(*o, array_key);
    if (!json_is_array(*arr)) {
        sdc__set_detail(c, "the response has no %s array", array_key);
        return SD_CLIENT_EPROTO;
    }
    return 0;
}

static int from_curl(CURLcode cc)
{
    switch (cc) {
    case CURLE_OUT_OF_MEMORY:
        return SD_CLIENT_ENOMEM;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        return SD_CLIENT_ECONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return SD_CLIENT_ETIMEDOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_USE_SSL_FAILED:
        return SD_CLIENT_ETLS;
    case CURLE_WRITE_ERROR:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL ? SD_CLIENT_EINVAL
                                                                             : SD_CLIENT_EPROTO;
    default:
        return SD_CLIENT_ETRANSPORT;
    }
}

static int from_status(int status)
{
    if (status >= 200 && status < 300)
        return 0;
    switch (status) {
    case 401:
        return SD_CLIENT_EAUTH;
    case 403:
        return SD_CLIENT_EFORBIDDEN;
    case 404:
        return SD_CLIENT_ENOTFOUND;
    case 409:
        return SD_CLIENT_ECONFLICT;
    case 412:
        return SD_CLIENT_EPRECONDITION;
    case 429:
        return SD_CLIENT_ELIMIT;
    case 503:
        return SD_CLIENT_EUNAVAILABLE;
    default:
        return status >= 400 && status < 500 ? SD_CLIENT_EBADREQ : SD_CLIENT_EHTTP;
    }
}

/* The problem's detail, when the body is one. */
static void take_problem(sd_client *c)
{
    json_t *o = c->body ? json_loadb(c->body, c->body_len, 0, NULL) : NULL;
    json_t *d = o ? json_object_get(o, "detail") : NULL;
    if (json_is_string(d))
        sdc__set_detail(c, "%s", json_string_value(d));
    else
        sdc__set_detail(c, "HTTP status %d", c->status);
    json_decref(o);
}

/* Wipes a header list before freeing it: it may hold a token or the key. */
static void free_headers(struct curl_slist *l)
{
    for (struct curl_slist *p = l; p; p = p->next)
        explicit_bzero(p->data, strlen(p->data));
    curl_slist_free_all(l);
}

static struct curl_slist *add_header(struct curl_slist *l, const char *h, int *bad)
{
    struct curl_slist *n = curl_slist_append(l, h);
    if (!n) {
        *bad = 1;
        return l;
    }
    return n;
}

static int exchange_once(sd_client *c, const sdc_req *req)
{
    int rc = SD_CLIENT_ENOMEM, bad = 0;
    struct curl_slist *hdrs = NULL;
    char *url = NULL, *auth = NULL;
    CURL *h = c->curl;

    c->status = 0;
    c->detail[0] = c->request_id[0] = c->errbuf[0] = '\0';
    if (c->body) /* it may hold the token of the previous answer */
        explicit_bzero(c->body, c->body_len + 1);
    c->body_len = 0;
    if (req->bearer && (!*req->bearer || strpbrk(req->bearer, "\r\n"))) {
        sdc__set_detail(c, "the token is empty or spans lines");
        return SD_CLIENT_EINVAL;
    }

    size_t ul = strlen(c->base_url) + strlen(req->path) + 1;
    url = malloc(ul);
    if (!url)
        goto out;
    snprintf(url, ul, "%s%s", c->base_url, req->path);

    hdrs = add_header(hdrs, "Accept: application/json, application/problem+json, text/plain", &bad);
    hdrs = add_header(hdrs, "Expect:", &bad); /* no 100-continue round trip */
    if (c->api_key_header)
        hdrs = add_header(hdrs, c->api_key_header, &bad);
    if (req->bearer) {
        size_t n = strlen(req->bearer) + sizeof "Authorization: Bearer ";
        auth = malloc(n);
        if (!auth)
            goto out;
        snprintf(auth, n, "Authorization: Bearer %s", req->bearer);
        hdrs = add_header(hdrs, auth, &bad);
    }
    char line[128];
    if (req->if_match) {
        snprintf(line, sizeof line, "If-Match: %s", req->if_match);
        hdrs = add_header(hdrs, line, &bad);
    }
    if (req->content_type) {
        snprintf(line, sizeof line, "Content-Type: %s", req->content_type);
        hdrs = add_header(hdrs, line, &bad);
    }
    if (bad)
        goto out;

    int opt_bad = 0;
    opt_bad |= curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK;
    opt_bad |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs) != CURLE_OK;
    if (req->body || strcmp(req->method, "POST") == 0) {
        opt_bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)req->body_len) != CURLE_OK;
        opt_bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "") != CURLE_OK;
    } else {
        opt_bad |= curl_easy_setopt(h, CURLOPT_HTTPGET, 1L) != CURLE_OK;
    }
    const char *custom =
        strcmp(req->method, "GET") && strcmp(req->method, "POST") ? req->method : NULL;
    opt_bad |= curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, custom) != CURLE_OK;
    if (opt_bad) {
        rc = SD_CLIENT_EINVAL;
        goto out;
    }

    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        rc = from_curl(cc);
        sdc__set_detail(c, "%s", c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
        goto out;
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    c->status = (int)status;
    rc = from_status(c->status);
    if (rc)
        take_problem(c);
out:
    /* Nothing of this request may outlive it in the handle. */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    free_headers(hdrs);
    sdc__free_secret(auth);
    free(url);
    return rc;
}

/* The wait before retry `k` (0 first): the last answer's Retry-After
 * (libcurl reads both of its forms; 0 when there was none), else 100 ms
 * doubling, each drawn from its upper half (so that clients the same outage
 * turned away do not come back in step). */
static long retry_wait_ms(const sd_client *c, int k)
{
    curl_off_t after = 0;
    if (curl_easy_getinfo(c->curl, CURLINFO_RETRY_AFTER, &after) == CURLE_OK && after > 0)
        return after > 86400 ? 86400L * 1000 : (long)after * 1000;
    long step = BACKOFF_FIRST_MS << (k < 16 ? k : 16);
    unsigned r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
        r = (unsigned)clock();
    return step / 2 + (long)(r % (unsigned long)(step / 2 + 1));
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* Answers worth asking again: the server shed the request or could not
 * serve it (503), or no connection carried the exchange. Not a timeout: the
 * caller's budget for the call is spent. */
static bool retryable(int rc)
{
    return rc == SD_CLIENT_EUNAVAILABLE || rc == SD_CLIENT_ECONNECT || rc == SD_CLIENT_ETRANSPORT;
}

int sdc__exchange(sd_client *c, const sdc_req *req)
{
    bool safe = req->safe || strcmp(req->method, "GET") == 0;
    long slept = 0;
    int rc;
    c->retries = 0;
    while ((rc = exchange_once(c, req)) != 0 && safe && retryable(rc) &&
           c->retries < c->max_retries) {
        long wait = retry_wait_ms(c, c->retries);
        if (wait > c->max_wait_ms - slept)
            break; /* the server asks for longer than is left: answer now */
        sleep_ms(wait);
        slept += wait;
        c->retries++;
    }
    return rc;
}

int sdc__exchange_json(sd_client *c, const sdc_req *req, json_t **out)
{
    *out = NULL;
    int rc = sdc__exchange(c, req);
    if (rc)
        return rc;
    json_error_t e;
    json_t *o = json_loadb(c->body ? c->body : "", c->body_len, 0, &e);
    if (!json_is_object(o)) {
        json_decref(o);
        sdc__set_detail(c, "the response body is not a JSON object");
        return SD_CLIENT_EPROTO;
    }
    *out = o;
    return 0;
}
