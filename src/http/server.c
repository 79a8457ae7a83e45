/*
 * server.c - the HTTP/1.1 server behind server.h: one epoll event loop per
 * worker thread, each with its own SO_REUSEPORT listening socket, and
 * Debian's http-parser for the message grammar.
 *
 * Why our own loop (see docs/architecture.md): it answers every error itself
 * (problem+json, the common headers, correct framing), it owns the limits and
 * timeouts that stop slow or hostile clients, and a deferred reply (a write
 * waiting for its fsync) costs one eventfd wake-up instead of a
 * suspend/resume cycle.
 *
 * A connection belongs to one loop thread for its whole life. It parses one
 * request at a time: when a request is complete the parser pauses, the
 * handler runs, and parsing of any pipelined bytes resumes only after the
 * response is queued, so responses leave in request order. A handler may
 * answer later from any thread: sd_reply() then renders the response and
 * hands the request back to its loop through a mutex-protected list and an
 * eventfd. A connection whose peer went away while a request was in flight
 * is freed when that reply arrives.
 *
 * Framing rules (RFC 9112): the parser is not built strict, so every head
 * and every chunked body is checked first (http/framing.h) and the parser is
 * given only checked bytes: a line not ended by CRLF (bare LF, or CR without
 * LF), a malformed request line (a tab, control or non-ASCII byte in the
 * target), obsolete line folding, whitespace before a colon, a header name
 * that is not a token, control bytes in a field value, Transfer-Encoding in
 * HTTP/1.0, malformed chunk framing (the CRLF after chunk data, chunk-size
 * lines and extensions, trailer lines, the final CRLF), Content-Length with
 * Transfer-Encoding, repeated Content-Length or Host, a missing Host on
 * HTTP/1.1, invalid Content-Length or chunk sizes: 400 and close, nothing
 * after it read. Trailer fields are dropped, never merged into the headers.
 * A transfer coding other than chunked: 501 and close. Head too large: 431
 * (414 when the target alone is), body too large: 413, both before reading
 * the body. Header and body must arrive within the request timeout
 * (slowloris), and an idle keep-alive connection is closed after the
 * connection timeout.
 */
#include "http/server.h"
#include "http/framing.h"
#include "http/status.h"
#include "http/tls.h"
#include "metrics/metrics.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/random.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADERS        100
#define READ_CHUNK         16384
#define REQUEST_TIMEOUT_MS 10000
#define STOP_GRACE_NS      2000000000LL /* sd_http_stop: the least it waits for threads */

typedef struct conn conn;
typedef struct loop loop;

typedef struct header {
    char *name, *value;
} header;

struct sd_req {
    conn *c;
    loop *lp;
    char id[32];
    int64_t t0;
    const char *method;
    bool head; /* HEAD: send no body */
    char *url; /* raw request target */
    size_t url_len;
    char *path, *query; /* split url (point into url) */
    header headers[MAX_HEADERS];
    int nheaders;
    char *body;
    size_t body_len, body_cap;
    bool has_body;
    bool keep_alive;
    bool head_done; /* headers complete: later fields are trailers, not kept */
    sd_match match;
    enum sd_match_result match_result;
    char *queries[8]; /* decoded query values handed out */
    int nqueries;
    char actor[64]; /* the caller's key id, set by the authorize hook */

    /* the response, rendered by sd_reply on any thread */
    char *out;
    size_t out_len;
    int status;
    bool close_after;
    sd_req *next_done; /* the loop's list of finished deferred requests */
    sd_req *next_work; /* the handler pool's queue */
};

struct conn {
    int fd;
    loop *lp;
    http_parser parser;
    char *in; /* unparsed input */
    size_t in_len, in_cap;
    char *out; /* pending output */
    size_t out_len, out_off, out_cap;
    sd_req *req;     /* being parsed, or in flight */
    bool in_flight;  /* a handler owns req until it replies */
    bool in_process; /* process_input() is on the stack: it frees, not us */
    bool peer_gone;  /* freed when the in-flight reply arrives */
    bool peer_eof;   /* the peer half-closed: answer, then close */
    bool close_after_write;
    uint32_t events;    /* what epoll watches now */
    bool reading_field; /* http-parser: last callback was a header field */
    bool in_message;    /* the head was checked; the parser is inside this request */
    size_t head_len;    /* that head's bytes, given to the parser alone */
    bool chunked;       /* the body is chunked: checked (chunk) before the parser sees it */
    sd_chunk_state chunk;
    bool body_too_large;
    int64_t request_deadline, idle_deadline;
    char ip[INET6_ADDRSTRLEN];
    struct ssl_st *ssl;  /* NULL: plain TCP */
    bool handshaking;    /* TLS: no HTTP before the handshake is done */
    uint32_t tls_events; /* TLS: EPOLLOUT a read waits for, EPOLLIN a write waits for */
    char *peer_cn;       /* TLS: the verified client certificate's CN, or NULL */
    conn *prev, *next;
};

struct loop {
    sd_http *h;
    pthread_t thread;
    bool running; /* thread started and not yet joined */
    int ep, listen_fd, wake_fd;
    int spare_fd;                /* held for the out-of-descriptors case (accept_all) */
    int64_t accept_paused_until; /* mono ns; 0: the listener is watched */
    pthread_mutex_t mu;
    sd_req *done_head, *done_tail;
    conn *conns;
};

struct sd_http {
    const sd_route *routes;
    int nroutes;
    void *app;
    sd_http_options opt;
    loop *loops;
    int nloops;
    char address[128];
    char id_prefix[8];
    _Atomic uint64_t next_id;
    _Atomic int inflight;
    _Atomic int nconns;
    _Atomic bool draining, stopping;
    /* the handler pool (opt.handler_threads > 0): requests whose handler may
     * wait on the network, queued by the loops */
    pthread_t *workers;
    int nworkers;
    pthread_mutex_t work_mu;
    pthread_cond_t work_cv;
    pthread_cond_t idle_cv; /* signalled when work_busy drops to 0 */
    sd_req *work_head, *work_tail;
    int work_busy; /* workers inside a handler */
    bool work_stop;
    pthread_mutex_t ip_mu;
    struct ip_count {
        char ip[INET6_ADDRSTRLEN];
        int n;
    } * ips;
    size_t nips, cap_ips;
};

static http_parser_settings parser_settings;

/* ---- responses --------------------------------------------------------- */

/* The Date header text, cached per thread per second. */
static const char *http_date(void)
{
    static _Thread_local char buf[64];
    static _Thread_local time_t at;
    time_t now = time(NULL);
    if (now != at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        at = now;
    }
    return buf;
}

/* Appends n bytes; the caller sized the buffer. */
#define PUT(out, o, str, n) (memcpy((out) + (o), (str), (n)), (o) += (n))
#define PUTS(out, o, lit)   PUT(out, o, lit, sizeof(lit) - 1)

static size_t put_str(char *out, size_t o, const char *s)
{
    size_t n = strlen(s);
    memcpy(out + o, s, n);
    return o + n;
}

static size_t put_uint(char *out, size_t o, size_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        out[o++] = tmp[--n];
    return o;
}

/* Renders the whole response into r->out (no printf: this is the hot path).
 * body is consumed (freed). */
static void render(sd_req *r, int status, const char *ctype, char *body, size_t len,
                   const char *const *headers)
{
    sd_http *h = r->lp->h;
    bool close = !r->keep_alive || r->close_after || atomic_load(&h->draining);
    const char *date = http_date();
    size_t extra = ctype ? strlen(ctype) + 16 : 0;
    for (const char *const *p = headers; p && p[0]; p += 2)
        extra += strlen(p[0]) + strlen(p[1] ? p[1] : "") + 4;
    size_t cap = 256 + strlen(date) + strlen(r->id) + extra + (r->head ? 0 : len);
    char *out = malloc(cap);
    if (!out) {
        free(body);
        r->out = NULL;
        r->status = status;
        r->close_after = true;
        return;
    }
    size_t o = 0;
    PUTS(out, o, "HTTP/1.1 ");
    o = put_uint(out, o, (size_t)status);
    out[o++] = ' ';
    o = put_str(out, o, sd_http_reason_or_class(status));
    PUTS(out, o, "\r\nDate: ");
    o = put_str(out, o, date);
    PUTS(out, o,
         "\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nX-Request-Id: ");
    o = put_str(out, o, r->id);
    PUTS(out, o, "\r\n");
    if (ctype) {
        PUTS(out, o, "Content-Type: ");
        o = put_str(out, o, ctype);
        PUTS(out, o, "\r\n");
    }
    for (const char *const *p = headers; p && p[0]; p += 2) {
        if (!p[1])
            continue;
        o = put_str(out, o, p[0]);
        PUTS(out, o, ": ");
        o = put_str(out, o, p[1]);
        PUTS(out, o, "\r\n");
    }
    if (status != 204 && status >= 200) {
        PUTS(out, o, "Content-Length: ");
        o = put_uint(out, o, len);
        PUTS(out, o, "\r\n");
    }
    if (close)
        PUTS(out, o, "Connection: close\r\n");
    PUTS(out, o, "\r\n");
    if (!r->head && len && status != 204)
        PUT(out, o, body, len);
    sd_assert(o <= cap);
    free(body);
    r->out = out;
    r->out_len = o;
    r->status = status;
    r->close_after = close;
}

static void deliver(sd_req *r);

void sd_reply(sd_req *r, int status, const char *content_type, char *body, size_t len,
              const char *const *headers)
{
    render(r, status, content_type, body, len, headers);
    loop *lp = r->lp;
    if (pthread_equal(pthread_self(), lp->thread)) {
        deliver(r);
        return;
    }
    pthread_mutex_lock(&lp->mu);
    r->next_done = NULL;
    if (lp->done_tail)
        lp->done_tail->next_done = r;
    else
        lp->done_head = r;
    lp->done_tail = r;
    pthread_mutex_unlock(&lp->mu);
    uint64_t one = 1;
    ssize_t w = write(lp->wake_fd, &one, sizeof one);
    (void)w;
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
                          sd_http_reason_or_class(status), "status", status, "detail", detail,
                          "requestId", r->id);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}

static void problem_va(sd_req *r, int status, const char *const *headers, const char *fmt,
                       va_list ap)
{
    char detail[512];
    vsnprintf(detail, sizeof detail, fmt, ap);
    char *text = problem_text(r, status, detail);
    const char *allow[] = {"Allow", r->match.allow, NULL};
    const char *retry[] = {"Retry-After", "1", NULL};
    const char *const *extra = headers         ? headers
                               : status == 405 ? allow
                               : status == 503 ? retry
                                               : NULL;
    sd_reply(r, status, "application/problem+json", text, text ? strlen(text) : 0, extra);
}

void sd_reply_problem(sd_req *r, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    problem_va(r, status, NULL, fmt, ap);
    va_end(ap);
}

void sd_reply_problem_with(sd_req *r, int status, const char *const *headers, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    problem_va(r, status, headers, fmt, ap);
    va_end(ap);
}

/* ---- request accessors ------------------------------------------------- */

const char *sd_req_method(const sd_req *r)
{
    return r->method;
}

const char *sd_req_header(const sd_req *r, const char *name)
{
    for (int i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

static int header_count(const sd_req *r, const char *name)
{
    int n = 0;
    for (int i = 0; i < r->nheaders; i++)
        n += strcasecmp(r->headers[i].name, name) == 0;
    return n;
}

int sd_req_header_count(const sd_req *r, const char *name)
{
    return header_count(r, name);
}

const char *sd_req_capture(const sd_req *r, int i)
{
    return i >= 0 && i < r->match.ncaptures ? r->match.captures[i] : NULL;
}

int sd_req_query(sd_req *r, const char *name, const char **value)
{
    size_t nlen = strlen(name);
    for (const char *p = r->query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        if (klen == nlen && memcmp(p, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : p + len;
            size_t vlen = (size_t)(p + len - v);
            char *dec;
            if (r->nqueries == (int)(sizeof r->queries / sizeof r->queries[0]) ||
                sd_pct_decode(v, vlen, &dec) != 0)
                return -1;
            r->queries[r->nqueries++] = dec;
            *value = dec;
            return 1;
        }
        p = amp ? amp + 1 : p + len;
    }
    return 0;
}

const char *sd_req_body(const sd_req *r, size_t *len)
{
    *len = r->body_len;
    return r->body ? r->body : "";
}

int sd_req_has_body(const sd_req *r)
{
    return r->has_body;
}

const char *sd_req_client_cert(const sd_req *r)
{
    return r->c->peer_cn;
}

const char *sd_req_id(const sd_req *r)
{
    return r->id;
}

const char *sd_req_peer(const sd_req *r)
{
    return r->c->ip;
}

void sd_req_set_actor(sd_req *r, const char *actor)
{
    snprintf(r->actor, sizeof r->actor, "%s", actor ? actor : "");
}

const char *sd_req_actor(const sd_req *r)
{
    return r->actor;
}

/* ---- connections ------------------------------------------------------- */

static void req_free(sd_req *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    for (int i = 0; i < r->nqueries; i++)
        free(r->queries[i]);
    sd_match_free(&r->match);
    free(r->url);
    free(r->body);
    free(r->out);
    free(r);
}

static sd_req *req_new(conn *c)
{
    sd_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    sd_http *h = c->lp->h;
    r->c = c;
    r->lp = c->lp;
    r->t0 = sd_mono_ns();
    r->match.route = -1;
    r->keep_alive = true;
    snprintf(r->id, sizeof r->id, "%s-%llu", h->id_prefix,
             (unsigned long long)atomic_fetch_add(&h->next_id, 1));
    return r;
}

static void ip_release(sd_http *h, const char *ip)
{
    if (h->opt.max_connections_per_ip <= 0)
        return;
    pthread_mutex_lock(&h->ip_mu);
    for (size_t i = 0; i < h->nips; i++) {
        if (strcmp(h->ips[i].ip, ip) == 0) {
            if (--h->ips[i].n == 0)
                h->ips[i] = h->ips[--h->nips];
            break;
        }
    }
    pthread_mutex_unlock(&h->ip_mu);
}

/* Counts a new connection from ip; false when over the per-address cap. */
static bool ip_acquire(sd_http *h, const char *ip)
{
    if (h->opt.max_connections_per_ip <= 0)
        return true;
    bool ok = true;
    pthread_mutex_lock(&h->ip_mu);
    size_t i = 0;
    while (i < h->nips && strcmp(h->ips[i].ip, ip) != 0)
        i++;
    if (i == h->nips) {
        if (h->nips == h->cap_ips) {
            size_t cap = h->cap_ips ? h->cap_ips * 2 : 64;
            void *p = realloc(h->ips, cap * sizeof *h->ips);
            if (!p) {
                pthread_mutex_unlock(&h->ip_mu);
                return false;
            }
            h->ips = p;
            h->cap_ips = cap;
        }
        snprintf(h->ips[i].ip, sizeof h->ips[i].ip, "%s", ip);
        h->ips[i].n = 0;
        h->nips++;
    }
    if (h->ips[i].n >= h->opt.max_connections_per_ip)
        ok = false;
    else
        h->ips[i].n++;
    pthread_mutex_unlock(&h->ip_mu);
    return ok;
}

static void conn_free(conn *c)
{
    loop *lp = c->lp;
    if (c->prev)
        c->prev->next = c->next;
    else
        lp->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    ip_release(lp->h, c->ip);
    atomic_fetch_sub(&lp->h->nconns, 1);
    sd_tls_close(c->ssl, false);
    free(c->peer_cn);
    free(c->in);
    free(c->out);
    free(c);
}

/* Closes the socket. With a request in flight the struct lives on until its
 * reply arrives (deliver() frees it then). */
static void close_fd(conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(c->lp->ep, EPOLL_CTL_DEL, c->fd, NULL);
        sd_tls_close(c->ssl, true);
        c->ssl = NULL;
        close(c->fd);
        c->fd = -1;
    }
}

static void conn_close(conn *c)
{
    close_fd(c);
    if (c->in_flight) {
        c->peer_gone = true;
        return;
    }
    if (c->in_process)
        return; /* process_input() frees it on its way out */
    req_free(c->req);
    c->req = NULL;
    conn_free(c);
}

static void set_events(conn *c)
{
    if (c->fd < 0)
        return;
    uint32_t want = (c->in_flight || c->peer_eof ? 0 : EPOLLIN | EPOLLRDHUP) |
                    (c->out_len > c->out_off ? EPOLLOUT : 0) | c->tls_events;
    if (want == c->events)
        return; /* the common case: no system call */
    struct epoll_event ev = {.events = want, .data.ptr = c};
    epoll_ctl(c->lp->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->events = want;
}

/* The transport: plain TCP or TLS, one branch per call. A TLS read may have
 * to write first and a write to read (tls_events adds what they wait for). */
static ssize_t conn_recv(conn *c, char *buf, size_t n)
{
    if (!c->ssl)
        return recv(c->fd, buf, n, 0);
    int want = 0;
    ssize_t r = sd_tls_read(c->ssl, buf, n, &want);
    c->tls_events =
        (c->tls_events & ~(uint32_t)EPOLLOUT) | (r < 0 && want == SD_TLS_WANT_WRITE ? EPOLLOUT : 0);
    return r;
}

static ssize_t conn_send(conn *c, const char *buf, size_t n)
{
    if (!c->ssl)
        return send(c->fd, buf, n, MSG_NOSIGNAL);
    int want = 0;
    ssize_t r = sd_tls_write(c->ssl, buf, n, &want);
    c->tls_events =
        (c->tls_events & ~(uint32_t)EPOLLIN) | (r < 0 && want == SD_TLS_WANT_READ ? EPOLLIN : 0);
    return r;
}

/* Writes what it can. Returns false when the connection was closed. */
static bool flush_out(conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = conn_send(c, c->out + c->out_off, c->out_len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        conn_close(c);
        return false;
    }
    c->out_off = c->out_len = 0;
    if (c->close_after_write) {
        conn_close(c);
        return false;
    }
    return true;
}

static bool append_out(conn *c, const char *data, size_t len)
{
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + len)
            cap *= 2;
        char *p = realloc(c->out, cap);
        if (!p)
            return false;
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return true;
}

static void process_input(conn *c);

/* A rendered response reaches its connection (on the loop thread). */
static void deliver(sd_req *r)
{
    conn *c = r->c;
    sd_http *h = r->lp->h;
    int route = r->match_result == SD_MATCH_OK ? r->match.route : -1;
    int64_t ns = sd_mono_ns() - r->t0;
    sd_metrics_request(route, r->status, ns);
    if (sd_log_get_level() <= SD_LOG_DEBUG)
        sd_debug("request id=%s method=%s route=%s status=%d us=%lld", r->id, r->method,
                 route >= 0 ? h->routes[route].pattern : "-", r->status, (long long)(ns / 1000));
    if (c->in_flight) {
        c->in_flight = false;
        atomic_fetch_sub(&h->inflight, 1);
    }
    c->req = NULL;
    if (c->peer_gone) {
        req_free(r);
        conn_free(c);
        return;
    }
    bool ok = r->out && append_out(c, r->out, r->out_len);
    if (!ok || r->close_after)
        c->close_after_write = true;
    req_free(r);
    if (!flush_out(c))
        return;
    c->idle_deadline = sd_now_ms() + h->opt.connection_timeout_s * 1000LL;
    if (c->close_after_write) { /* output pending: close once it is out */
        set_events(c);
        return;
    }
    /* Pipelined requests already buffered are parsed now, in order (by the
     * caller's loop when process_input() is on the stack). */
    if (c->in_process)
        return;
    if (c->peer_eof && c->in_len == 0 && c->out_len == 0) {
        conn_close(c);
        return;
    }
    if (c->in_len > 0 && c->out_len == 0)
        process_input(c);
    else
        set_events(c);
}

/* An error found while reading a request: answer it and close. */
static void fail_request(conn *c, int status, const char *detail)
{
    if (!c->req)
        c->req = req_new(c);
    if (!c->req) {
        conn_close(c);
        return;
    }
    sd_req *r = c->req;
    r->method = r->method ? r->method : "-";
    r->close_after = true;
    r->keep_alive = false;
    char *text = problem_text(r, status, detail);
    const char *retry[] = {"Retry-After", "1", NULL};
    render(r, status, "application/problem+json", text, text ? strlen(text) : 0,
           status == 503 ? retry : NULL);
    c->in_len = 0; /* nothing after a framing error is trusted */
    deliver(r);
}

/* ---- http-parser callbacks --------------------------------------------- */

static int grow_append(char **buf, size_t *len, const char *at, size_t n)
{
    char *p = realloc(*buf, *len + n + 1);
    if (!p)
        return -1;
    memcpy(p + *len, at, n);
    *len += n;
    p[*len] = '\0';
    *buf = p;
    return 0;
}

static int on_message_begin(http_parser *p)
{
    conn *c = p->data;
    if (c->req) /* created when its first bytes arrived: the clock runs from then */
        return 0;
    if (!(c->req = req_new(c)))
        return -1;
    c->request_deadline = sd_now_ms() + REQUEST_TIMEOUT_MS;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    conn *c = p->data;
    return grow_append(&c->req->url, &c->req->url_len, at, n);
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    conn *c = p->data;
    sd_req *r = c->req;
    if (r->head_done)
        return 0; /* a trailer field: never merged into the header section (RFC 9110 6.5.1) */
    if (!c->reading_field || r->nheaders == 0) {
        if (r->nheaders == MAX_HEADERS)
            return -1;
        r->nheaders++;
        c->reading_field = true;
    }
    header *hd = &r->headers[r->nheaders - 1];
    size_t len = hd->name ? strlen(hd->name) : 0;
    return grow_append(&hd->name, &len, at, n);
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    conn *c = p->data;
    sd_req *r = c->req;
    if (r->head_done)
        return 0;
    c->reading_field = false;
    header *hd = &r->headers[r->nheaders - 1];
    size_t len = hd->value ? strlen(hd->value) : 0;
    if (!hd->value && grow_append(&hd->value, &len, "", 0))
        return -1;
    return grow_append(&hd->value, &len, at, n);
}

static int on_headers_complete(http_parser *p)
{
    conn *c = p->data;
    sd_req *r = c->req;
    c->reading_field = false;
    r->head_done = true;
    r->method = http_method_str((enum http_method)p->method);
    r->head = p->method == HTTP_HEAD;
    r->keep_alive = http_should_keep_alive(p);
    for (int i = 0; i < r->nheaders; i++) {
        if (!r->headers[i].value)
            r->headers[i].value = strdup("");
        /* Field values lose their surrounding whitespace (RFC 9110 5.5). */
        char *v = r->headers[i].value;
        size_t n = v ? strlen(v) : 0;
        while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            v[--n] = '\0';
        size_t lead = 0;
        while (lead < n && (v[lead] == ' ' || v[lead] == '\t'))
            lead++;
        if (lead)
            memmove(v, v + lead, n - lead + 1);
    }
    if (p->http_major != 1)
        return -1; /* see process_input: 400 */
    r->has_body = (p->flags & F_CHUNKED) || p->content_length > 0;
    /* The parser frames a chunked body as it does, whatever the bytes
     * between chunks: process_input_locked() checks them first. */
    c->chunked = (p->flags & F_CHUNKED) != 0;
    c->chunk = (sd_chunk_state){0};
    if (p->content_length != ULLONG_MAX && p->content_length > c->lp->h->opt.max_body_bytes)
        return -1; /* checked by the caller: 413 before the body is read */
    /* The request must not be answered with a body the handler never sees:
     * Expect: 100-continue is honoured once the head is accepted. */
    const char *expect = sd_req_header(r, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && r->has_body)
        append_out(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    conn *c = p->data;
    sd_req *r = c->req;
    if (r->body_len + n > c->lp->h->opt.max_body_bytes) {
        c->body_too_large = true;
        return -1;
    }
    if (r->body_len + n + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 1024;
        while (cap < r->body_len + n + 1)
            cap *= 2;
        char *b = realloc(r->body, cap);
        if (!b)
            return -1;
        r->body = b;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_parser_pause(p, 1);
    return 0;
}

/* ---- dispatch ---------------------------------------------------------- */

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

static void dispatch(conn *c)
{
    sd_req *r = c->req;
    sd_http *h = c->lp->h;
    c->in_flight = true;
    atomic_fetch_add(&h->inflight, 1);
    if (atomic_load(&h->draining)) {
        r->close_after = true;
        sd_reply_problem(r, 503, "the server is shutting down");
        return;
    }
    /* Framing checks http-parser leaves to us. */
    const char *te = sd_req_header(r, "Transfer-Encoding");
    if (header_count(r, "Content-Length") > 1 || header_count(r, "Transfer-Encoding") > 1) {
        r->close_after = true;
        sd_reply_problem(r, 400, "repeated Content-Length or Transfer-Encoding header");
        return;
    }
    if (header_count(r, "Host") > 1 ||
        (header_count(r, "Host") == 0 && c->parser.http_major == 1 && c->parser.http_minor >= 1)) {
        r->close_after = true;
        sd_reply_problem(r, 400, "HTTP/1.1 requests need exactly one Host header");
        return;
    }
    if (te && strcasecmp(te, "chunked") != 0) {
        r->close_after = true;
        sd_reply_problem(r, 501, "the only transfer coding supported is chunked");
        return;
    }
    /* Split the target into path and query; only origin-form is served. */
    if (!r->url || r->url[0] != '/') {
        sd_reply_problem(r, 400, "the request target must be a path");
        return;
    }
    r->path = r->url;
    char *q = strchr(r->url, '?');
    if (q) {
        *q = '\0';
        r->query = q + 1;
    }
    char *frag = strchr(r->url, '#');
    if (frag)
        *frag = '\0';
    r->match_result = sd_route_match(h->routes, h->nroutes, r->method, r->path, &r->match);
    switch (r->match_result) {
    case SD_MATCH_NOT_FOUND:
        sd_reply_problem(r, 404, "no such resource");
        return;
    case SD_MATCH_METHOD:
        sd_reply_problem(r, 405, "%s is not allowed here; allowed: %s", r->method, r->match.allow);
        return;
    case SD_MATCH_BAD_PATH:
        sd_reply_problem(r, 400, "a path segment is empty or badly percent-encoded");
        return;
    case SD_MATCH_OK:
        break;
    }
    const sd_route *route = &h->routes[r->match.route];
    if (route->scope && h->opt.authorize && h->opt.authorize(h->app, r, route->scope))
        return;
    const char *ctype = sd_req_header(r, "Content-Type");
    if (route->body == SD_ROUTE_BODY) {
        if (!sd_req_header(r, "Content-Length") && !te) {
            sd_reply_problem(r, 411, "this request needs a JSON body with a Content-Length");
            return;
        }
        if (!is_json(ctype)) {
            sd_reply_problem(r, 415, "the body must be application/json");
            return;
        }
    } else if (route->body == SD_ROUTE_FORM) {
        if (!ctype || strncasecmp(ctype, "application/x-www-form-urlencoded", 33) != 0) {
            sd_reply_problem(r, 415, "the body must be application/x-www-form-urlencoded");
            return;
        }
    } else if (route->body == SD_ROUTE_BODY_OPTIONAL && r->body_len > 0 && !is_json(ctype)) {
        sd_reply_problem(r, 415, "the body must be application/json");
        return;
    }
    if (h->nworkers > 0 && !route->on_loop) {
        /* The connection reads nothing more until the reply arrives, as
         * for any deferred reply. */
        r->next_work = NULL;
        pthread_mutex_lock(&h->work_mu);
        if (h->work_tail)
            h->work_tail->next_work = r;
        else
            h->work_head = r;
        h->work_tail = r;
        pthread_cond_signal(&h->work_cv);
        pthread_mutex_unlock(&h->work_mu);
        return;
    }
    route->fn(r, h->app);
}

/* A handler pool thread: runs queued handlers until the server stops. The
 * request belongs to its loop again once the handler has replied. */
static void *worker_main(void *arg)
{
    sd_http *h = arg;
    pthread_mutex_lock(&h->work_mu);
    for (;;) {
        while (!h->work_head && !h->work_stop)
            pthread_cond_wait(&h->work_cv, &h->work_mu);
        if (h->work_stop)
            break;
        sd_req *r = h->work_head;
        h->work_head = r->next_work;
        if (!h->work_head)
            h->work_tail = NULL;
        h->work_busy++;
        pthread_mutex_unlock(&h->work_mu);
        h->routes[r->match.route].fn(r, h->app);
        pthread_mutex_lock(&h->work_mu);
        if (--h->work_busy == 0)
            pthread_cond_broadcast(&h->idle_cv); /* sd_http_stop may be waiting */
    }
    pthread_mutex_unlock(&h->work_mu);
    return NULL;
}

static void process_input_locked(conn *c);

/* Parses buffered input, dispatching complete requests one at a time. The
 * connection may be closed meanwhile; it is freed here, at the end. */
static void process_input(conn *c)
{
    c->in_process = true;
    process_input_locked(c);
    c->in_process = false;
    if (c->fd >= 0 && c->peer_eof && !c->in_flight && c->out_len == c->out_off)
        close_fd(c); /* everything the peer sent is answered; freed below */
    if (c->fd < 0) {
        if (!c->in_flight) {
            req_free(c->req);
            c->req = NULL;
            conn_free(c);
        }
        return;
    }
    set_events(c);
}

/* The head of the next request: empty lines before it are dropped (RFC 9112
 * section 2.2), then it is checked whole (sd_http_check_head, bounded by the
 * head limit) before the parser sees a byte of it. Returns true with
 * c->head_len set once it has all arrived and passed; false when it has not
 * all arrived yet, or after answering it (400, 414, 431). */
static bool next_head(conn *c)
{
    sd_http *h = c->lp->h;
    size_t skip = 0;
    while (skip + 1 < c->in_len && c->in[skip] == '\r' && c->in[skip + 1] == '\n')
        skip += 2;
    if (skip) {
        memmove(c->in, c->in + skip, c->in_len - skip);
        c->in_len -= skip;
    }
    size_t limit = c->in_len < h->opt.max_header_bytes ? c->in_len : h->opt.max_header_bytes;
    const char *why = sd_http_check_head(c->in, limit, &c->head_len);
    if (why) {
        fail_request(c, 400, why);
        return false;
    }
    if (c->head_len)
        return true;
    if (c->in_len > h->opt.max_header_bytes) {
        /* 414 when the request line alone is over half the limit */
        const char *nl = memchr(c->in, '\n', c->in_len);
        bool long_target = !nl || (size_t)(nl - c->in) > h->opt.max_header_bytes / 2;
        fail_request(c, long_target ? 414 : 431,
                     long_target ? "the request target is longer than the server accepts"
                                 : "the request head is larger than the server accepts");
        return false;
    }
    if (c->in_len && !c->req) { /* the request's clock runs from its first byte */
        c->request_deadline = sd_now_ms() + REQUEST_TIMEOUT_MS;
        if (!(c->req = req_new(c)))
            conn_close(c);
    }
    return false;
}

static void process_input_locked(conn *c)
{
    sd_http *h = c->lp->h;
    while (c->in_len > 0 && !c->in_flight && c->fd >= 0 && c->out_len == c->out_off) {
        /* What the parser may see: a checked head alone (so that a chunked
         * body after it is checked too), then the body - all of it when
         * Content-Length frames it, the checked part when it is chunked. */
        size_t avail = c->in_len, feed = avail;
        if (!c->in_message) {
            if (!next_head(c))
                return;
            feed = c->head_len;
            c->in_message = true;
        } else if (c->chunked) {
            int status;
            const char *why = sd_chunk_check(&c->chunk, c->in, avail,
                                             (uint64_t)h->opt.max_body_bytes, &feed, &status);
            if (why || feed == 0) { /* feed 0: the check ended the body, the parser did not */
                fail_request(c, why ? status : 400,
                             why ? why : "the chunked body's framing is inconsistent");
                return;
            }
        }
        size_t n = http_parser_execute(&c->parser, &parser_settings, c->in, feed);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        memmove(c->in, c->in + n, c->in_len - n);
        c->in_len -= n;
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            c->in_message = c->chunked = false;
            if (c->parser.upgrade) {
                fail_request(c, 400, "protocol upgrades are not supported");
                return;
            }
            dispatch(c);
            continue;
        }
        if (e != HPE_OK) {
            int status = 400;
            const char *detail = http_errno_description(e);
            if (e == HPE_CB_headers_complete && c->parser.http_major != 1) {
                detail = "only HTTP/1.0 and HTTP/1.1 are served";
            } else if (e == HPE_CB_headers_complete && c->req && c->req->method) {
                status = 413;
                detail = "the body is larger than the server accepts";
            } else if (c->body_too_large) {
                status = 413;
                detail = "the body is larger than the server accepts";
            } else if (e == HPE_HEADER_OVERFLOW || e == HPE_CB_header_field) {
                status = 431;
                detail = "too many or too large headers";
            } else if (e == HPE_INVALID_METHOD) {
                detail = "unknown or malformed method";
            } else if (e == HPE_INVALID_TRANSFER_ENCODING) {
                status = 501;
            } else if (e == HPE_UNEXPECTED_CONTENT_LENGTH) {
                detail = "conflicting framing: repeated Content-Length, or Content-Length with "
                         "Transfer-Encoding";
            }
            fail_request(c, status, detail);
            return;
        }
        if (c->out_len > c->out_off && !flush_out(c)) /* e.g. 100 Continue */
            return;
        if (feed == avail)
            break; /* the rest of this message has not arrived */
    }
}

static void on_readable(conn *c)
{
    for (;;) {
        if (c->in_cap - c->in_len < READ_CHUNK) {
            size_t cap = c->in_cap ? c->in_cap * 2 : READ_CHUNK * 2;
            char *p = realloc(c->in, cap);
            if (!p) {
                conn_close(c);
                return;
            }
            c->in = p;
            c->in_cap = cap;
        }
        ssize_t n = conn_recv(c, c->in + c->in_len, c->in_cap - c->in_len);
        if (n > 0) {
            c->in_len += (size_t)n;
            if ((size_t)n < READ_CHUNK && !(c->ssl && sd_tls_pending(c->ssl)))
                break;
            if (c->in_len > c->lp->h->opt.max_header_bytes + c->lp->h->opt.max_body_bytes + 65536)
                break; /* parse what we have before reading more */
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n == 0 && c->in_len > 0 && !c->peer_eof) {
            /* The peer has finished sending (half-close): answer what it
             * sent, then close. */
            c->peer_eof = true;
            break;
        }
        conn_close(c); /* EOF or error */
        return;
    }
    process_input(c);
}

/* A new TLS connection: the handshake first. Once it is done the verified
 * client certificate's name is kept and HTTP starts; request bytes may
 * already wait inside the SSL object, so they are read at once. */
static void tls_handshake(conn *c)
{
    int want = 0, rc = sd_tls_handshake(c->ssl, &want);
    if (rc < 0) {
        conn_close(c);
        return;
    }
    c->tls_events = rc == 0 && want == SD_TLS_WANT_WRITE ? EPOLLOUT : 0;
    if (rc == 0) {
        set_events(c);
        return;
    }
    c->handshaking = false;
    c->peer_cn = sd_tls_peer_cn(c->ssl);
    c->idle_deadline = sd_now_ms() + c->lp->h->opt.connection_timeout_s * 1000LL;
    on_readable(c);
}

/* ---- the loop ---------------------------------------------------------- */

static void accept_all(loop *lp)
{
    sd_http *h = lp->h;
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(lp->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
            /* Out of descriptors: the pending connection would keep the
             * (level-triggered) listener readable and the loop spinning.
             * Give up the spare descriptor, take the connection and close
             * it at once (the client sees a reset), then take the spare
             * back. Another thread may take the freed slot first: then
             * stop watching the listener for a moment instead. */
            int taken = -1;
            if (lp->spare_fd >= 0) {
                close(lp->spare_fd);
                taken = accept4(lp->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (taken >= 0)
                    close(taken);
                lp->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            }
            static _Atomic int64_t last_warn;
            int64_t now = sd_mono_ns();
            if (now - atomic_load(&last_warn) > 10 * 1000000000LL) {
                atomic_store(&last_warn, now);
                sd_warn("out of file descriptors: refusing connections (raise the limit or "
                        "lower --max-connections)");
            }
            if (taken >= 0 && lp->spare_fd >= 0)
                continue;
            struct epoll_event ev = {.events = 0, .data.ptr = &lp->listen_fd};
            epoll_ctl(lp->ep, EPOLL_CTL_MOD, lp->listen_fd, &ev);
            lp->accept_paused_until = now + 100 * 1000000LL;
            return;
        }
        if (fd < 0)
            return;
        char ip[INET6_ADDRSTRLEN] = "?";
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof ip);
        else if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof ip);
        if (atomic_load(&h->nconns) >= h->opt.max_connections || !ip_acquire(h, ip)) {
            /* Over a connection cap: a well-formed 503 without reading the
             * request, then close (shutdown first, so the unread request
             * does not turn the close into a reset before the answer). */
            static const char body[] =
                "{\"type\":\"about:blank\",\"title\":\"Service Unavailable\",\"status\":503,"
                "\"detail\":\"too many connections; retry shortly\"}";
            char busy[512];
            int n = snprintf(busy, sizeof busy,
                             "HTTP/1.1 503 Service Unavailable\r\nDate: %s\r\n"
                             "Content-Type: application/problem+json\r\n"
                             "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n"
                             "Retry-After: 1\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
                             http_date(), sizeof body - 1, body);
            ssize_t w = h->opt.tls ? 0 : send(fd, busy, (size_t)n, MSG_NOSIGNAL);
            (void)w;
            shutdown(fd, SHUT_WR);
            close(fd);
            continue;
        }
        conn *c = calloc(1, sizeof *c);
        if (c && h->opt.tls && !(c->ssl = sd_tls_accept(h->opt.tls, fd))) {
            free(c);
            c = NULL;
        }
        if (!c) {
            ip_release(h, ip);
            close(fd);
            continue;
        }
        atomic_fetch_add(&h->nconns, 1);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->fd = fd;
        c->lp = lp;
        snprintf(c->ip, sizeof c->ip, "%s", ip);
        http_parser_init(&c->parser, HTTP_REQUEST);
        c->parser.data = c;
        c->idle_deadline = sd_now_ms() + h->opt.connection_timeout_s * 1000LL;
        if (c->ssl) { /* the handshake must end within the request and idle timeouts */
            c->handshaking = true;
            int64_t ms = h->opt.connection_timeout_s * 1000LL;
            c->request_deadline = sd_now_ms() + (ms < REQUEST_TIMEOUT_MS ? ms : REQUEST_TIMEOUT_MS);
        }
        c->next = lp->conns;
        if (lp->conns)
            lp->conns->prev = c;
        lp->conns = c;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        c->events = ev.events;
        epoll_ctl(lp->ep, EPOLL_CTL_ADD, fd, &ev);
    }
}

static void drain_done(loop *lp)
{
    uint64_t v;
    ssize_t rd = read(lp->wake_fd, &v, sizeof v);
    (void)rd;
    pthread_mutex_lock(&lp->mu);
    sd_req *list = lp->done_head;
    lp->done_head = lp->done_tail = NULL;
    pthread_mutex_unlock(&lp->mu);
    while (list) {
        sd_req *next = list->next_done;
        deliver(list);
        list = next;
    }
}

/* Timeouts: a request that takes too long to arrive, an idle keep-alive
 * connection, and (when draining) every idle connection. */
static void check_timers(loop *lp)
{
    int64_t now = sd_now_ms();
    bool draining = atomic_load(&lp->h->draining);
    for (conn *c = lp->conns, *next; c; c = next) {
        next = c->next;
        if (c->fd < 0 || c->in_flight || c->out_len > c->out_off)
            continue;
        if (c->handshaking) {
            if (draining || now > c->request_deadline)
                conn_close(c);
            continue;
        }
        bool mid_request = c->req != NULL || c->in_len > 0;
        if (mid_request && now > c->request_deadline)
            fail_request(c, 408, "the request did not arrive in time");
        else if (!mid_request && (draining || now > c->idle_deadline))
            conn_close(c);
    }
}

static void *loop_main(void *arg)
{
    loop *lp = arg;
    sd_http *h = lp->h;
    struct epoll_event evs[128];
    int64_t next_timer = sd_now_ms() + 1000;
    bool listening = true;
    while (!atomic_load(&h->stopping)) {
        if (listening && atomic_load(&h->draining)) {
            epoll_ctl(lp->ep, EPOLL_CTL_DEL, lp->listen_fd, NULL);
            close(lp->listen_fd);
            lp->listen_fd = -1;
            listening = false;
            check_timers(lp);
        }
        int n = epoll_wait(lp->ep, evs, 128, 250);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &lp->listen_fd) {
                if (listening)
                    accept_all(lp);
            } else if (p == &lp->wake_fd) {
                drain_done(lp);
            } else {
                conn *c = p;
                if (c->fd < 0)
                    continue;
                if (c->handshaking) {
                    tls_handshake(c);
                    continue;
                }
                uint32_t ev = evs[i].events;
                if (c->tls_events) /* a TLS read that waited to write, or a write to read */
                    ev |= (ev & c->tls_events & EPOLLOUT ? EPOLLIN : 0) |
                          (ev & c->tls_events & EPOLLIN ? EPOLLOUT : 0);
                if (ev & EPOLLOUT) {
                    if (!flush_out(c))
                        continue;
                    if (c->out_len == 0 && c->peer_eof && c->in_len == 0 && !c->in_flight) {
                        conn_close(c);
                        continue;
                    }
                    if (c->out_len == 0 && c->in_len > 0 && !c->in_flight) {
                        process_input(c);
                        continue; /* c may be gone; level-triggered events come again */
                    }
                    set_events(c);
                }
                if (c->fd >= 0 && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)))
                    on_readable(c);
            }
        }
        if (lp->accept_paused_until && listening && sd_mono_ns() >= lp->accept_paused_until) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &lp->listen_fd};
            epoll_ctl(lp->ep, EPOLL_CTL_MOD, lp->listen_fd, &ev);
            lp->accept_paused_until = 0;
            if (lp->spare_fd < 0)
                lp->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        }
        int64_t now = sd_now_ms();
        if (now >= next_timer || atomic_load(&h->draining)) {
            check_timers(lp);
            next_timer = now + 1000;
        }
    }
    return NULL;
}

/* ---- start and stop ---------------------------------------------------- */

static int parse_listen(const char *listen_addr, char *host, size_t hostlen, const char **port,
                        char *err, size_t errlen)
{
    if (listen_addr[0] == '[') {
        const char *close_b = strchr(listen_addr, ']');
        if (!close_b || close_b[1] != ':' || (size_t)(close_b - listen_addr) >= hostlen) {
            snprintf(err, errlen, "listen address '%s' is not [IPV6]:PORT", listen_addr);
            return SD_ECONFIG;
        }
        snprintf(host, hostlen, "%.*s", (int)(close_b - listen_addr - 1), listen_addr + 1);
        *port = close_b + 2;
        return 0;
    }
    const char *colon = strrchr(listen_addr, ':');
    if (!colon || (size_t)(colon - listen_addr) >= hostlen) {
        snprintf(err, errlen, "listen address '%s' is not HOST:PORT", listen_addr);
        return SD_ECONFIG;
    }
    snprintf(host, hostlen, "%.*s", (int)(colon - listen_addr), listen_addr);
    *port = colon + 1;
    return 0;
}

/* Opens one listening socket; the first fixes the port for the others. */
static int open_listener(sd_http *h, const struct addrinfo *ai, int *out, char *err, size_t errlen)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 4096)) {
        snprintf(err, errlen, "cannot listen on %s: %s", h->opt.listen, strerror(errno));
        if (fd >= 0)
            close(fd);
        return SD_ECONFIG;
    }
    *out = fd;
    return 0;
}

int sd_http_start(const sd_http_options *opt, const sd_route *routes, int nroutes, void *app,
                  sd_http **out, char *err, size_t errlen)
{
    parser_settings = (http_parser_settings){
        .on_message_begin = on_message_begin,
        .on_url = on_url,
        .on_header_field = on_header_field,
        .on_header_value = on_header_value,
        .on_headers_complete = on_headers_complete,
        .on_body = on_body,
        .on_message_complete = on_message_complete,
    };
    http_parser_set_max_header_size((uint32_t)opt->max_header_bytes);
    sd_http *h = calloc(1, sizeof *h);
    if (!h)
        return SD_ENOMEM;
    h->routes = routes;
    h->nroutes = nroutes;
    h->app = app;
    h->opt = *opt;
    pthread_mutex_init(&h->ip_mu, NULL);
    pthread_mutex_init(&h->work_mu, NULL);
    pthread_cond_init(&h->work_cv, NULL);
    pthread_cond_init(&h->idle_cv, NULL);
    unsigned char rnd[3];
    if (sd_random(rnd, sizeof rnd) == 0)
        sd_hex(rnd, sizeof rnd, h->id_prefix);
    /* Every loop is made safe to stop and free before any can fail: a
     * loop the start never reached holds no descriptor (-1, not the 0 of
     * calloc, which the stop would close). */
    int n = opt->threads > 0 ? opt->threads : 1;
    if ((h->loops = calloc((size_t)n, sizeof *h->loops)))
        h->nloops = n;
    for (int i = 0; i < h->nloops; i++) {
        loop *lp = &h->loops[i];
        lp->h = h;
        lp->listen_fd = lp->wake_fd = lp->ep = lp->spare_fd = -1;
        pthread_mutex_init(&lp->mu, NULL);
    }

    char host[256] = "";
    const char *port = NULL;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *res = NULL;
    int rc =
        h->loops ? parse_listen(opt->listen, host, sizeof host, &port, err, errlen) : SD_ENOMEM;
    if (rc == 0) {
        int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
        if (gai) {
            snprintf(err, errlen, "cannot resolve listen address '%s': %s", opt->listen,
                     gai_strerror(gai));
            rc = SD_ECONFIG;
        }
    }
    for (int i = 0; rc == 0 && i < h->nloops; i++) {
        loop *lp = &h->loops[i];
        lp->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC); /* see accept_all */
        if ((rc = open_listener(h, res, &lp->listen_fd, err, errlen)))
            break;
        if (i == 0) { /* port 0: the others must bind the port the first got */
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            getsockname(lp->listen_fd, (struct sockaddr *)&ss, &sl);
            char ip[INET6_ADDRSTRLEN] = "?";
            if (ss.ss_family == AF_INET6) {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
                inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
                snprintf(h->address, sizeof h->address, "[%s]:%d", ip, ntohs(a->sin6_port));
                ((struct sockaddr_in6 *)res->ai_addr)->sin6_port = a->sin6_port;
            } else {
                struct sockaddr_in *a = (struct sockaddr_in *)&ss;
                inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
                snprintf(h->address, sizeof h->address, "%s:%d", ip, ntohs(a->sin_port));
                ((struct sockaddr_in *)res->ai_addr)->sin_port = a->sin_port;
            }
        }
        lp->ep = epoll_create1(EPOLL_CLOEXEC);
        lp->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (lp->ep < 0 || lp->wake_fd < 0) {
            snprintf(err, errlen, "epoll/eventfd: %s", strerror(errno));
            rc = SD_ENOMEM;
            break;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &lp->listen_fd};
        epoll_ctl(lp->ep, EPOLL_CTL_ADD, lp->listen_fd, &ev);
        ev.data.ptr = &lp->wake_fd;
        epoll_ctl(lp->ep, EPOLL_CTL_ADD, lp->wake_fd, &ev);
    }
    if (res)
        freeaddrinfo(res);
    if (rc == 0 && opt->handler_threads > 0) {
        h->workers = calloc((size_t)opt->handler_threads, sizeof *h->workers);
        rc = h->workers ? 0 : SD_ENOMEM;
        for (int i = 0; rc == 0 && i < opt->handler_threads; i++) {
            if (pthread_create(&h->workers[i], NULL, worker_main, h)) {
                snprintf(err, errlen, "cannot start handler threads");
                rc = SD_ENOMEM;
            } else {
                h->nworkers++;
            }
        }
    }
    for (int i = 0; rc == 0 && i < h->nloops; i++) {
        if (pthread_create(&h->loops[i].thread, NULL, loop_main, &h->loops[i])) {
            snprintf(err, errlen, "cannot start HTTP threads");
            rc = SD_ENOMEM;
        } else {
            h->loops[i].running = true;
        }
    }
    if (rc) { /* the threads started have nothing to do: they stop at once */
        if (sd_http_stop(h, 0) == 0)
            sd_http_free(h);
        return rc;
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
    for (int i = 0; i < h->nloops; i++) {
        uint64_t one = 1;
        ssize_t w = write(h->loops[i].wake_fd, &one, sizeof one);
        (void)w;
    }
}

int sd_http_inflight(sd_http *h)
{
    return atomic_load(&h->inflight);
}

/* Stops the handler pool: idle workers leave at once; a worker inside a
 * handler is waited for until deadline_ns (monotonic). Requests queued and
 * never started stay with their connections (sd_http_free frees them).
 * Returns how many workers are still inside a handler (then none is
 * joined). */
static int stop_workers(sd_http *h, int64_t deadline_ns)
{
    struct timespec until = {.tv_sec = deadline_ns / 1000000000,
                             .tv_nsec = deadline_ns % 1000000000};
    pthread_mutex_lock(&h->work_mu);
    h->work_stop = true;
    pthread_cond_broadcast(&h->work_cv);
    while (h->work_busy > 0 &&
           pthread_cond_clockwait(&h->idle_cv, &h->work_mu, CLOCK_MONOTONIC, &until) == 0)
        ;
    int busy = h->work_busy;
    pthread_mutex_unlock(&h->work_mu);
    if (busy)
        return busy;
    for (int i = 0; i < h->nworkers; i++)
        pthread_join(h->workers[i], NULL);
    h->nworkers = 0;
    return 0;
}

int sd_http_stop(sd_http *h, int64_t deadline_ns)
{
    if (!h)
        return 0;
    int64_t least = sd_mono_ns() + STOP_GRACE_NS;
    if (deadline_ns < least)
        deadline_ns = least;
    struct timespec until = {.tv_sec = deadline_ns / 1000000000,
                             .tv_nsec = deadline_ns % 1000000000};
    atomic_store(&h->stopping, true);
    for (int i = 0; i < h->nloops; i++) {
        uint64_t one = 1;
        if (h->loops[i].running) {
            ssize_t w = write(h->loops[i].wake_fd, &one, sizeof one);
            (void)w;
        }
    }
    /* A loop runs the handlers of its requests itself (the embedded store):
     * one still inside a handler is waited for like a worker. */
    int busy = 0;
    for (int i = 0; i < h->nloops; i++) {
        loop *lp = &h->loops[i];
        if (!lp->running)
            continue;
        if (pthread_clockjoin_np(lp->thread, NULL, CLOCK_MONOTONIC, &until) == 0)
            lp->running = false;
        else
            busy++;
    }
    busy += stop_workers(h, deadline_ns);
    if (busy)
        return busy; /* they may still use anything here: nothing is touched */
    for (int i = 0; i < h->nloops; i++) {
        loop *lp = &h->loops[i];
        for (conn *c = lp->conns; c; c = c->next)
            close_fd(c);
        if (lp->listen_fd >= 0)
            close(lp->listen_fd);
        lp->listen_fd = -1;
    }
    return 0;
}

void sd_http_free(sd_http *h)
{
    if (!h)
        return;
    sd_assert(h->nworkers == 0);
    for (int i = 0; i < h->nloops; i++) {
        loop *lp = &h->loops[i];
        sd_assert(!lp->running);
        /* A request in flight is its connection's req, whether it waits in
         * the pool's queue or its reply in the loop's done list (or never
         * came): freeing the connections frees them all. */
        for (conn *c = lp->conns, *next; c; c = next) {
            next = c->next;
            close_fd(c);
            req_free(c->req);
            conn_free(c);
        }
        int fds[] = {lp->listen_fd, lp->wake_fd, lp->ep, lp->spare_fd};
        for (size_t k = 0; k < sizeof fds / sizeof fds[0]; k++)
            if (fds[k] >= 0)
                close(fds[k]);
        pthread_mutex_destroy(&lp->mu);
    }
    free(h->loops);
    free(h->ips);
    pthread_mutex_destroy(&h->ip_mu);
    free(h->workers);
    pthread_mutex_destroy(&h->work_mu);
    pthread_cond_destroy(&h->work_cv);
    pthread_cond_destroy(&h->idle_cv);
    free(h);
}
