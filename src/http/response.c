/*
 * response.c - replies: sd_reply and its problem+json and JSON forms
 * (server.h), rendered whole into the request's arena (status line, the
 * common headers - Date, nosniff, Cache-Control (no-store unless the
 * handler chose another for a 2xx: sd_req_set_cache_control), X-Request-Id -,
 * Content-Length, Connection: close when the connection ends, no body for
 * HEAD) on whichever thread answers, without printf or malloc once the
 * connection is warm, then copied into the connection's output buffer and handed to the connection
 * through conn's API on its loop thread: at once on that thread, otherwise through the loop's done
 * list and its eventfd. Delivering counts the request in the metrics, frees it and, unless the
 * connection closes, goes on with pipelined input (up to parse.c, through the upcall).
 * sd__fail_request answers what parse.c and a connection's timeout timer find wrong, and closes.
 */
#include "http/internal.h"
#include "util/jsonmem.h"
#include "http/status.h"
#include "metrics/metrics.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- rendering ---------------------------------------------------------- */

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

/* The problem body of last resort (see sd__oom_response). */
static int oom_body(char *buf, size_t cap, const char *rid, const char *detail)
{
    return snprintf(buf, cap,
                    "{\"type\":\"about:blank\",\"title\":\"Service Unavailable\",\"status\":503,"
                    "\"detail\":\"%s\",\"requestId\":\"%s\"}",
                    detail, rid);
}

size_t sd__oom_response(char *buf, size_t cap, const char *rid, const char *detail)
{
    char body[512];
    int bn = oom_body(body, sizeof body, rid, detail);
    if (bn < 0 || (size_t)bn >= sizeof body)
        return 0;
    int n = snprintf(buf, cap,
                     "HTTP/1.1 503 Service Unavailable\r\nDate: %s\r\n"
                     "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n"
                     "X-Request-Id: %s\r\nContent-Type: application/problem+json\r\n"
                     "Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
                     sd__http_date(), rid, bn, body);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

/* Renders the whole response into r->out, in the request's arena (no
 * printf: this is the hot path). body is borrowed. */
static void render(sd_req *r, int status, const char *ctype, const char *body, size_t len,
                   const char *const *headers)
{
    sd_http *h = r->lp->h;
    bool close = !r->keep_alive || r->close_after || atomic_load(&h->draining);
    const char *date = sd__http_date();
    /* Only a success may be cached: errors, redirects and 304s never are. */
    const char *cache =
        r->cache_control && status >= 200 && status < 300 ? r->cache_control : "no-store";
    size_t extra = (ctype ? strlen(ctype) + 16 : 0) + strlen(cache);
    for (const char *const *p = headers; p && p[0]; p += 2)
        extra += strlen(p[0]) + strlen(p[1] ? p[1] : "") + 4;
    size_t cap = 256 + strlen(date) + strlen(r->id) + extra + (r->head ? 0 : len);
    char *out = sd_arena_alloc(&r->arena, cap);
    if (!out) {
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
    PUTS(out, o, "\r\nX-Content-Type-Options: nosniff\r\nCache-Control: ");
    o = put_str(out, o, cache);
    PUTS(out, o, "\r\nX-Request-Id: ");
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
    if (status != 204 && status != 304 && status >= 200) { /* neither has content */
        PUTS(out, o, "Content-Length: ");
        o = put_uint(out, o, len);
        PUTS(out, o, "\r\n");
    }
    if (close)
        PUTS(out, o, "Connection: close\r\n");
    PUTS(out, o, "\r\n");
    if (!r->head && len && status != 204 && status != 304)
        PUT(out, o, body, len);
    sd_assert(o <= cap);
    r->out = out;
    r->out_len = o;
    r->status = status;
    r->close_after = close;
}

static void deliver(sd_req *r);
static bool to_loop(sd_req *r, bool only_open);

/* ---- the public replies (server.h) --------------------------------------- */

void sd_reply(sd_req *r, int status, const char *content_type, char *body, size_t len,
              const char *const *headers)
{
    sd_reply_bytes(r, status, content_type, body, len, headers);
    free(body);
}

void sd_reply_bytes(sd_req *r, int status, const char *content_type, const char *body, size_t len,
                    const char *const *headers)
{
    render(r, status, content_type, body, len, headers);
    if (pthread_equal(pthread_self(), r->lp->thread))
        deliver(r);
    else
        to_loop(r, false);
}

/* Queues r on its loop's done list and wakes the loop; false (nothing
 * queued) when only_open and the loop has ended. Only the first of a list
 * wakes it (one write(2) for a batch's replies, not one each): the loop
 * reads the eventfd before it takes the list (sd__on_wake), so a reply
 * queued behind others is always taken with them or wakes it again. */
static bool to_loop(sd_req *r, bool only_open)
{
    sd__thread *lp = r->lp;
    pthread_mutex_lock(&lp->mu);
    if (only_open && lp->ended) {
        pthread_mutex_unlock(&lp->mu);
        return false;
    }
    r->next_done = NULL;
    bool first = !lp->done_head;
    if (lp->done_tail)
        lp->done_tail->next_done = r;
    else
        lp->done_head = r;
    lp->done_tail = r;
    pthread_mutex_unlock(&lp->mu);
    if (first) {
        uint64_t one = 1;
        ssize_t w = write(lp->wake_fd, &one, sizeof one);
        (void)w;
    }
    return true;
}

void sd_req_call(sd_req *r, void (*fn)(void *), void *arg)
{
    if (!pthread_equal(pthread_self(), r->lp->thread)) {
        r->call = fn;
        r->call_arg = arg;
        if (to_loop(r, true))
            return;
        r->call = NULL;
    }
    fn(arg);
}

void sd_reply_json(sd_req *r, int status, json_t *body, const char *const *headers)
{
    if (!body && status != 204) { /* json_pack and the like had no memory */
        sd_reply_problem(r, 503, "the server is out of memory");
        return;
    }
    if (!body) {
        sd_reply(r, status, NULL, NULL, 0, headers);
        return;
    }
    /* Not cleared here: a member the handler set without memory (since the
     * dispatch, or since sd_session_to_json) makes this NULL too. */
    char *text = sd_json_dumps(body, JSON_COMPACT, sd_json_failures());
    if (text && sd_json_oom()) {
        free(text);
        text = NULL;
    }
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
    unsigned long mark = sd_json_failures();
    json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", "about:blank", "title",
                          sd_http_reason_or_class(status), "status", status, "detail", detail,
                          "requestId", r->id);
    char *text = o ? sd_json_dumps(o, JSON_COMPACT, mark) : NULL;
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
    if (!text) { /* out of memory for the problem: a 503 made without any */
        char body[512];
        int n = oom_body(body, sizeof body, r->id, "the server is out of memory; retry shortly");
        sd_reply_bytes(r, 503, "application/problem+json", body, (size_t)n, retry);
        return;
    }
    const char *const *extra = headers         ? headers
                               : status == 405 ? allow
                               : status == 503 ? retry
                                               : NULL;
    sd_reply(r, status, "application/problem+json", text, strlen(text), extra);
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

/* ---- to the connection --------------------------------------------------- */

static void deliver(sd_req *r)
{
    sd__conn *c = r->c;
    sd_http *h = r->lp->h;
    int route = r->match_result == SD_MATCH_OK ? r->match.route : -1;
    int64_t now = sd_loop_update_time(r->lp->loop);
    int64_t ns = now - r->t0;
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
        sd__req_free(r);
        sd__conn_free(c);
        return;
    }
    bool ok = r->out && sd__conn_append(c, r->out, r->out_len);
    if (!ok) { /* out of memory for the answer: the one made without any */
        char buf[1024];
        sd__conn_append_last(
            c, buf,
            sd__oom_response(buf, sizeof buf, r->id, "the server is out of memory; retry shortly"));
    }
    if (!ok || r->close_after)
        c->close_after_write = true;
    sd__req_free(r);
    if (!sd__conn_flush(c))
        return;
    c->idle_deadline = now / 1000000 + h->opt.connection_timeout_s * 1000LL;
    if (c->close_after_write) { /* output pending: close once it is out */
        sd__conn_set_events(c);
        return;
    }
    /* Pipelined requests already buffered are parsed now, in order (by the
     * caller's loop when sd__parse_input() is on the stack). */
    if (c->in_process)
        return;
    if (c->peer_eof && c->in_len == 0 && c->out_len == 0) {
        sd__conn_close(c);
        return;
    }
    if (c->in_len > 0 && c->out_len == 0)
        h->up.input(c);
    else
        sd__conn_set_events(c);
}

void sd__fail_request(sd__conn *c, int status, const char *detail)
{
    if (!c->req)
        c->req = sd__req_new(c);
    if (!c->req) {
        sd__conn_fail_oom(c);
        return;
    }
    sd_req *r = c->req;
    r->method = r->method ? r->method : "-";
    r->close_after = true;
    r->keep_alive = false;
    char *text = problem_text(r, status, detail);
    const char *retry[] = {"Retry-After", "1", NULL};
    char oom[512];
    if (!text) { /* out of memory for the problem: a 503 made without any */
        status = 503;
        oom_body(oom, sizeof oom, r->id, "the server is out of memory; retry shortly");
    }
    render(r, status, "application/problem+json", text ? text : oom, strlen(text ? text : oom),
           status == 503 ? retry : NULL);
    free(text);
    c->in_len = 0; /* nothing after a framing error is trusted */
    deliver(r);
}

/* ---- replies made on other threads ------------------------------------- */

void sd__on_wake(sd_loop_io *io, uint32_t events)
{
    (void)events;
    sd__thread *lp = SD__CONTAINER_OF(io, sd__thread, wake_io);
    uint64_t v;
    ssize_t rd = read(lp->wake_fd, &v, sizeof v);
    (void)rd;
    sd__run_done(lp, false);
}

/* The done list: each call run (it answers, here or later), each reply
 * delivered. The last run (end: the loop is ending) marks the loop ended,
 * so that a call made after it runs on its caller's thread instead. */
void sd__run_done(sd__thread *lp, bool end)
{
    pthread_mutex_lock(&lp->mu);
    sd_req *list = lp->done_head;
    lp->done_head = lp->done_tail = NULL;
    lp->ended = lp->ended || end;
    pthread_mutex_unlock(&lp->mu);
    while (list) {
        sd_req *next = list->next_done;
        void (*call)(void *) = list->call;
        if (call) {
            list->call = NULL;
            call(list->call_arg);
        } else {
            deliver(list);
        }
        list = next;
    }
}
