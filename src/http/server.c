/*
 * server.c - the libmicrohttpd adapter behind server.h.
 *
 * MHD calls on_access() several times per request: once with the headers,
 * then once per chunk of body, then once with nothing left. We check the
 * framing on the first call (smuggling, size), collect the body, and run the
 * handler on the last call. A handler that answers later leaves the
 * connection suspended; sd_reply() from another thread stores the response
 * and resumes it, and MHD calls on_access() again, which queues it.
 * (Queueing on the first call makes MHD close the connection, so we only do
 * that for errors where closing is right.)
 */
#include "http/server.h"
#include "metrics/metrics.h"
#include "session/token.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

struct sd_http {
    struct MHD_Daemon *d;
    const sd_route *routes;
    int nroutes;
    void *app;
    size_t max_body;
    int listen_fd;
    char address[128];
    char id_prefix[8];
    _Atomic uint64_t next_id;
    _Atomic int inflight;
    _Atomic bool draining;
};

typedef struct query_value {
    char *value;
    struct query_value *next;
} query_value;

struct sd_req {
    sd_http *http;
    struct MHD_Connection *conn;
    const char *method;
    int64_t t0;
    char id[32];
    sd_match match;
    enum sd_match_result match_result;
    int has_body;
    char *body;
    size_t body_len, body_cap;
    bool dispatched;
    size_t discarded; /* body bytes past the limit, thrown away */
    query_value *queries;

    pthread_mutex_t mu;
    bool suspended;
    struct MHD_Response *resp;
    unsigned status;
};

/* ---- responses --------------------------------------------------------- */

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

static struct MHD_Response *build(sd_req *r, const char *ctype, char *body, size_t len,
                                  const char *const *headers)
{
    struct MHD_Response *resp =
        body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
             : MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return NULL;
    }
    if (ctype)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    for (const char *const *h = headers; h && h[0]; h += 2)
        MHD_add_response_header(resp, h[0], h[1]);
    if (atomic_load(&r->http->draining))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    return resp;
}

void sd_reply(sd_req *r, int status, const char *ctype, char *body, size_t len,
              const char *const *headers)
{
    struct MHD_Response *resp = build(r, ctype, body, len, headers);
    struct MHD_Connection *conn = r->conn;
    pthread_mutex_lock(&r->mu);
    sd_assert(!r->resp);
    r->resp = resp;
    r->status = (unsigned)status;
    bool resume = r->suspended;
    r->suspended = false;
    pthread_mutex_unlock(&r->mu);
    /* Once resumed, the request may complete and be freed on a worker thread
     * at once: r must not be touched after this call. While suspended it
     * cannot go away, so the unlock above is safe. */
    if (resume)
        MHD_resume_connection(conn);
}

void sd_reply_json(sd_req *r, int status, json_t *body, const char *const *headers)
{
    if (!body) {
        sd_reply(r, status, status == 204 ? NULL : "application/json", NULL, 0, headers);
        return;
    }
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text) {
        sd_reply_problem(r, 503, "the server is out of memory");
        return;
    }
    sd_reply(r, status, "application/json", text, strlen(text), headers);
}

static char *problem_text(sd_req *r, int status, const char *detail_in)
{
    /* A detail may quote client bytes; keep it valid UTF-8 for JSON. */
    char detail[512];
    snprintf(detail, sizeof detail, "%s", detail_in);
    json_t *probe = json_string(detail);
    if (!probe)
        for (char *p = detail; *p; p++)
            if ((unsigned char)*p >= 0x80)
                *p = '?';
    json_decref(probe);
    json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", "about:blank", "title",
                          reason(status), "status", status, "detail", detail, "requestId", r->id);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}

void sd_reply_problem(sd_req *r, int status, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    char *text = problem_text(r, status, detail);
    const char *allow[] = {"Allow", r->match.allow, NULL};
    const char *retry[] = {"Retry-After", "1", NULL};
    const char *const *extra = status == 405 ? allow : status == 503 ? retry : NULL;
    sd_reply(r, status, "application/problem+json", text, text ? strlen(text) : 0, extra);
}

/* Answers at once, on the first call: MHD will close the connection after
 * the response, which is what a framing error needs. */
static enum MHD_Result reply_now(sd_req *r, int status, const char *detail)
{
    char *text = problem_text(r, status, detail);
    const char *close_hdr[] = {MHD_HTTP_HEADER_CONNECTION, "close",
                               status == 503 ? "Retry-After" : NULL, "1", NULL};
    struct MHD_Response *resp = build(r, "application/problem+json", text,
                                      text ? strlen(text) : 0, close_hdr);
    if (!resp)
        return MHD_NO;
    r->status = (unsigned)status;
    r->dispatched = true;
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- request accessors ------------------------------------------------- */

const char *sd_req_method(const sd_req *r)
{
    return r->method;
}

const char *sd_req_header(const sd_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *sd_req_capture(const sd_req *r, int i)
{
    return i >= 0 && i < r->match.ncaptures ? r->match.captures[i] : NULL;
}

int sd_req_query(sd_req *r, const char *name, const char **value)
{
    const char *raw = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
    if (!raw)
        return 0;
    char *dec;
    if (sd_pct_decode(raw, strlen(raw), &dec) != 0)
        return -1;
    query_value *q = malloc(sizeof *q);
    if (!q) {
        free(dec);
        return -1;
    }
    q->value = dec;
    q->next = r->queries;
    r->queries = q;
    *value = dec;
    return 1;
}

const char *sd_req_body(const sd_req *r, size_t *len)
{
    *len = r->body_len;
    return r->body ? r->body : "";
}

int sd_req_has_body(const sd_req *r)
{
    return r->has_body || r->body_len > 0;
}

const char *sd_req_id(const sd_req *r)
{
    return r->id;
}

/* ---- the MHD callbacks ------------------------------------------------- */

typedef struct framing {
    int content_length, transfer_encoding, host, malformed;
} framing;

/* RFC 9110 token characters, for header names. */
static bool is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return false;
    return true;
}

/* A field value must hold no control characters but HTAB (a bare CR
 * included, RFC 9112 section 2.2). */
static bool clean_value(const char *s)
{
    for (; s && *s; s++)
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
            return false;
    return true;
}

static enum MHD_Result count_headers(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    (void)value;
    framing *f = cls;
    if (!is_token(key) || !clean_value(value))
        f->malformed++;
    if (strcasecmp(key, "Content-Length") == 0)
        f->content_length++;
    else if (strcasecmp(key, "Transfer-Encoding") == 0)
        f->transfer_encoding++;
    else if (strcasecmp(key, "Host") == 0)
        f->host++;
    return MHD_YES;
}

static bool is_json(const char *ctype)
{
    if (!ctype)
        return false;
    while (*ctype == ' ')
        ctype++;
    size_t n = strlen("application/json");
    return strncasecmp(ctype, "application/json", n) == 0 &&
           (ctype[n] == '\0' || ctype[n] == ';' || ctype[n] == ' ');
}

/* First call: framing checks and routing. Returns MHD_YES to go on, or the
 * result of an immediate error reply. */
static enum MHD_Result first_call(sd_req *r, const char *url)
{
    sd_http *h = r->http;
    if (atomic_load(&h->draining))
        return reply_now(r, 503, "the server is shutting down");
    framing f = {0};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, count_headers, &f);
    if (f.malformed)
        return reply_now(r, 400, "a header name is not a token, or a header value holds a "
                                 "control character");
    if (f.content_length && f.transfer_encoding)
        return reply_now(r, 400, "a request must not carry both Content-Length and "
                                 "Transfer-Encoding");
    if (f.content_length > 1 || f.transfer_encoding > 1)
        return reply_now(r, 400, "repeated Content-Length or Transfer-Encoding header");
    if (f.host > 1)
        return reply_now(r, 400, "repeated Host header");
    const char *te = sd_req_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (te && strcasecmp(te, "chunked") != 0)
        return reply_now(r, 501, "the only transfer coding supported is chunked");
    const char *cl = sd_req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (!isdigit((unsigned char)*cl) || *end || errno)
            return reply_now(r, 400, "invalid Content-Length");
        if (n > h->max_body)
            return reply_now(r, 413, "the body is larger than the server accepts");
        r->has_body = n > 0;
    }
    if (te)
        r->has_body = 1;
    r->match_result = sd_route_match(h->routes, h->nroutes, r->method, url, &r->match);
    return MHD_YES;
}

/* Last call: validate what the route needs, then run the handler. */
static void dispatch(sd_req *r)
{
    r->dispatched = true;
    switch (r->match_result) {
    case SD_MATCH_NOT_FOUND:
        sd_reply_problem(r, 404, "no such resource");
        return;
    case SD_MATCH_METHOD:
        sd_reply_problem(r, 405, "%s is not allowed here; allowed: %s", r->method,
                         r->match.allow);
        return;
    case SD_MATCH_BAD_PATH:
        sd_reply_problem(r, 400, "a path segment is empty or badly percent-encoded");
        return;
    case SD_MATCH_OK:
        break;
    }
    const sd_route *route = &r->http->routes[r->match.route];
    const char *ctype = sd_req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (route->body == SD_ROUTE_BODY) {
        if (!sd_req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH) &&
            !sd_req_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
            sd_reply_problem(r, 411, "this request needs a JSON body with a Content-Length");
            return;
        }
        if (!is_json(ctype)) {
            sd_reply_problem(r, 415, "the body must be application/json");
            return;
        }
    } else if (route->body == SD_ROUTE_BODY_OPTIONAL && r->body_len > 0 && !is_json(ctype)) {
        sd_reply_problem(r, 415, "the body must be application/json");
        return;
    }
    route->fn(r, r->http->app);
}

static enum MHD_Result queue_stored(sd_req *r)
{
    struct MHD_Response *resp = r->resp;
    r->resp = NULL;
    if (!resp)
        return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(r->conn, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    (void)version;
    sd_http *h = cls;
    sd_req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->http = h;
        r->conn = conn;
        r->method = method;
        r->t0 = sd_mono_ns();
        r->match.route = -1;
        pthread_mutex_init(&r->mu, NULL);
        snprintf(r->id, sizeof r->id, "%s-%llu", h->id_prefix,
                 (unsigned long long)atomic_fetch_add(&h->next_id, 1));
        atomic_fetch_add(&h->inflight, 1);
        *con_cls = r;
        return first_call(r, url);
    }
    if (*upload_size) {
        if (r->dispatched) { /* answered early: discard */
            *upload_size = 0;
            return MHD_YES;
        }
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->discarded || r->body_len + n > h->max_body) {
            /* libmicrohttpd cannot answer in the middle of a body: drop the
             * rest and answer 413 at its end, or close past a hard cap. */
            r->discarded += n;
            return r->discarded > 16 * h->max_body ? MHD_NO : MHD_YES;
        }
        if (r->body_len + n + 1 > r->body_cap) {
            size_t cap = r->body_cap ? r->body_cap : 1024;
            while (cap < r->body_len + n + 1)
                cap *= 2;
            char *b = realloc(r->body, cap);
            if (!b)
                return MHD_NO;
            r->body = b;
            r->body_cap = cap;
        }
        memcpy(r->body + r->body_len, upload, n);
        r->body_len += n;
        r->body[r->body_len] = '\0';
        return MHD_YES;
    }
    if (r->resp) /* resumed, or answered inline */
        return queue_stored(r);
    if (r->dispatched)
        return MHD_YES;
    if (r->discarded)
        return reply_now(r, 413, "the body is larger than the server accepts");
    dispatch(r);
    pthread_mutex_lock(&r->mu);
    enum MHD_Result ret = MHD_YES;
    if (r->resp) {
        ret = queue_stored(r);
    } else {
        r->suspended = true;
        MHD_suspend_connection(conn);
    }
    pthread_mutex_unlock(&r->mu);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    sd_http *h = cls;
    sd_req *r = *con_cls;
    if (!r)
        return;
    int64_t ns = sd_mono_ns() - r->t0;
    int route = r->match_result == SD_MATCH_OK ? r->match.route : -1;
    sd_metrics_request(route, (int)r->status, ns);
    if (sd_log_get_level() <= SD_LOG_DEBUG)
        sd_debug("request id=%s method=%s route=%s status=%u us=%lld end=%d", r->id, r->method,
                 route >= 0 ? h->routes[route].pattern : "-", r->status, (long long)(ns / 1000),
                 (int)toe);
    if (r->resp)
        MHD_destroy_response(r->resp);
    sd_match_free(&r->match);
    for (query_value *q = r->queries, *next; q; q = next) {
        next = q->next;
        free(q->value);
        free(q);
    }
    free(r->body);
    pthread_mutex_destroy(&r->mu);
    free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&h->inflight, 1);
}

/* Leaves percent-escapes alone: the router decodes each path segment and
 * sd_req_query each value, so that an encoded '/' stays inside its segment. */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    sd_debug("http: %s", msg);
}

/* ---- start and stop ---------------------------------------------------- */

static int open_listener(sd_http *h, const char *listen_addr, char *err, size_t errlen)
{
    char host[256];
    const char *port;
    if (listen_addr[0] == '[') {
        const char *close = strchr(listen_addr, ']');
        if (!close || close[1] != ':' || (size_t)(close - listen_addr) >= sizeof host) {
            snprintf(err, errlen, "listen address '%s' is not [IPV6]:PORT", listen_addr);
            return SD_ECONFIG;
        }
        snprintf(host, sizeof host, "%.*s", (int)(close - listen_addr - 1), listen_addr + 1);
        port = close + 2;
    } else {
        const char *colon = strrchr(listen_addr, ':');
        if (!colon || (size_t)(colon - listen_addr) >= sizeof host) {
            snprintf(err, errlen, "listen address '%s' is not HOST:PORT", listen_addr);
            return SD_ECONFIG;
        }
        snprintf(host, sizeof host, "%.*s", (int)(colon - listen_addr), listen_addr);
        port = colon + 1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *res = NULL;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (gai) {
        snprintf(err, errlen, "cannot resolve listen address '%s': %s", listen_addr,
                 gai_strerror(gai));
        return SD_ECONFIG;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 1024)) {
        snprintf(err, errlen, "cannot listen on %s: %s", listen_addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return SD_ECONFIG;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    char ip[INET6_ADDRSTRLEN] = "?";
    int bound_port = 0;
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        bound_port = ntohs(a->sin6_port);
        snprintf(h->address, sizeof h->address, "[%s]:%d", ip, bound_port);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        bound_port = ntohs(a->sin_port);
        snprintf(h->address, sizeof h->address, "%s:%d", ip, bound_port);
    }
    h->listen_fd = fd;
    return 0;
}

int sd_http_start(const sd_http_options *opt, const sd_route *routes, int nroutes, void *app,
                  sd_http **out, char *err, size_t errlen)
{
    sd_http *h = calloc(1, sizeof *h);
    if (!h)
        return SD_ENOMEM;
    h->routes = routes;
    h->nroutes = nroutes;
    h->app = app;
    h->max_body = opt->max_body_bytes;
    h->listen_fd = -1;
    unsigned char rnd[3];
    if (sd_random(rnd, sizeof rnd) == 0)
        snprintf(h->id_prefix, sizeof h->id_prefix, "%02x%02x%02x", rnd[0], rnd[1], rnd[2]);
    int rc = open_listener(h, opt->listen, err, errlen);
    if (rc) {
        free(h);
        return rc;
    }
    unsigned int flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    h->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, h->listen_fd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)opt->threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)opt->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned int)opt->max_connections_per_ip, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)opt->connection_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)opt->max_header_bytes, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL, MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
        MHD_OPTION_END);
    if (!h->d) {
        snprintf(err, errlen, "cannot start the HTTP server on %s", h->address);
        close(h->listen_fd);
        free(h);
        return SD_ECONFIG;
    }
    *out = h;
    return 0;
}

const char *sd_http_address(const sd_http *h)
{
    return h->address;
}

void sd_http_drain(sd_http *h)
{
    atomic_store(&h->draining, true);
    MHD_socket fd = MHD_quiesce_daemon(h->d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    h->listen_fd = -1;
}

int sd_http_inflight(sd_http *h)
{
    return atomic_load(&h->inflight);
}

void sd_http_stop(sd_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->d);
    if (h->listen_fd >= 0)
        close(h->listen_fd);
    free(h);
}
