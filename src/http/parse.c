/*
 * parse.c - from bytes to requests: the framing checks and http-parser.
 *
 * The parser is not built strict, so it is given only bytes framing.c has
 * checked: the head of each request whole (empty lines before it dropped,
 * bounded by the head limit: 431, or 414 when the target alone is too
 * long), then the body - all of it when Content-Length frames it, the
 * checked part when it is chunked (trailer fields dropped, never merged).
 * After the head: a body over the limit is 413 before it is read,
 * Expect: 100-continue is honoured, HTTP/2 and upgrades are refused.
 * Anything else malformed is 400 (501 for an unknown transfer coding) and
 * the connection closes with nothing after it read. The parser pauses at
 * each message's end; the request goes up to dispatch.c (the upcall), and
 * parsing of pipelined bytes resumes only once its reply is queued, so
 * replies leave in order.
 */
#include "http/internal.h"
#include "util/clock.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static http_parser_settings parser_settings;

/* ---- http-parser callbacks ---------------------------------------------- */

/* Appends n bytes to a NUL-terminated string in the request's arena (it
 * grows in place while it is the arena's last allocation: a header name or
 * value split across callbacks). */
static int grow_append(sd__conn *c, char **buf, size_t *len, const char *at, size_t n)
{
    char *p = sd_arena_grow(&c->req->arena, *buf, *buf ? *len + 1 : 0, *len + n + 1);
    if (!p) {
        c->oom = true;
        return -1;
    }
    memcpy(p + *len, at, n);
    *len += n;
    p[*len] = '\0';
    *buf = p;
    return 0;
}

static int on_message_begin(http_parser *p)
{
    sd__conn *c = p->data;
    if (c->req) /* created when its first bytes arrived: the clock runs from then */
        return 0;
    if (!(c->req = sd__req_new(c))) {
        c->oom = true;
        return -1;
    }
    c->request_deadline = sd_loop_now_ns(c->lp->loop) / 1000000 + SD__REQUEST_TIMEOUT_MS;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    sd__conn *c = p->data;
    return grow_append(c, &c->req->url, &c->req->url_len, at, n);
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    sd__conn *c = p->data;
    sd_req *r = c->req;
    if (r->head_done)
        return 0; /* a trailer field: never merged into the header section (RFC 9110 6.5.1) */
    if (!c->reading_field || r->nheaders == 0) {
        if (r->nheaders == SD__MAX_HEADERS)
            return -1;
        r->headers[r->nheaders++] = (sd__header){0}; /* not cleared with the request */
        c->reading_field = true;
    }
    sd__header *hd = &r->headers[r->nheaders - 1];
    return grow_append(c, &hd->name, &hd->name_len, at, n);
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    sd__conn *c = p->data;
    sd_req *r = c->req;
    if (r->head_done)
        return 0;
    c->reading_field = false;
    sd__header *hd = &r->headers[r->nheaders - 1];
    return grow_append(c, &hd->value, &hd->value_len, at, n);
}

static int on_headers_complete(http_parser *p)
{
    sd__conn *c = p->data;
    sd_req *r = c->req;
    c->reading_field = false;
    r->head_done = true;
    r->method = http_method_str((enum http_method)p->method);
    r->head = p->method == HTTP_HEAD;
    r->keep_alive = http_should_keep_alive(p);
    for (int i = 0; i < r->nheaders; i++) {
        sd__header *hd = &r->headers[i];
        if (!hd->value && grow_append(c, &hd->value, &hd->value_len, "", 0))
            return -1;
        /* Field values lose their surrounding whitespace (RFC 9110 5.5). */
        char *v = hd->value;
        size_t n = hd->value_len;
        while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            v[--n] = '\0';
        size_t lead = 0;
        while (lead < n && (v[lead] == ' ' || v[lead] == '\t'))
            lead++;
        if (lead)
            memmove(v, v + lead, n - lead + 1);
        hd->value_len = n - lead;
    }
    if (p->http_major != 1)
        return -1; /* see sd__parse_input: 400 */
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
        sd__conn_append(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    sd__conn *c = p->data;
    sd_req *r = c->req;
    if (r->body_len + n > c->lp->h->opt.max_body_bytes) {
        c->body_too_large = true;
        return -1;
    }
    if (r->body_len + n + 1 > r->body_cap) { /* in the arena: a copy when it moves */
        size_t cap = r->body_cap ? r->body_cap * 2 : 256;
        while (cap < r->body_len + n + 1)
            cap *= 2;
        char *b = sd_arena_grow(&r->arena, r->body, r->body_len + (r->body ? 1 : 0), cap);
        if (!b) {
            c->oom = true;
            return -1;
        }
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

/* ---- from buffered bytes to requests -------------------------------------- */

static void process_input_locked(sd__conn *c);

void sd__parse_input(sd__conn *c)
{
    c->in_process = true;
    process_input_locked(c);
    c->in_process = false;
    if (c->fd >= 0 && c->peer_eof && !c->in_flight && c->out_len == c->out_off)
        sd__conn_close_fd(c); /* everything the peer sent is answered; freed below */
    if (c->fd < 0) {
        if (!c->in_flight) {
            sd__req_free(c->req);
            c->req = NULL;
            sd__conn_free(c);
        }
        return;
    }
    sd__conn_set_events(c);
}

/* The head of the next request: empty lines before it are dropped (RFC 9112
 * section 2.2), then it is checked whole (sd_http_check_head, bounded by the
 * head limit) before the parser sees a byte of it. Returns true with
 * c->head_len set once it has all arrived and passed; false when it has not
 * all arrived yet, or after answering it (400, 414, 431). */
static bool next_head(sd__conn *c)
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
        sd__fail_request(c, 400, why);
        return false;
    }
    if (c->head_len)
        return true;
    if (c->in_len > h->opt.max_header_bytes) {
        /* 414 when the request line alone is over half the limit */
        const char *nl = memchr(c->in, '\n', c->in_len);
        bool long_target = !nl || (size_t)(nl - c->in) > h->opt.max_header_bytes / 2;
        sd__fail_request(c, long_target ? 414 : 431,
                         long_target ? "the request target is longer than the server accepts"
                                     : "the request head is larger than the server accepts");
        return false;
    }
    if (c->in_len && !c->req) { /* the request's clock runs from its first byte */
        c->request_deadline = sd_loop_now_ns(c->lp->loop) / 1000000 + SD__REQUEST_TIMEOUT_MS;
        if (!(c->req = sd__req_new(c)))
            sd__conn_fail_oom(c);
    }
    return false;
}

static void process_input_locked(sd__conn *c)
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
                sd__fail_request(c, why ? status : 400,
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
                sd__fail_request(c, 400, "protocol upgrades are not supported");
                return;
            }
            c->lp->h->up.request(c);
            continue;
        }
        if (e != HPE_OK) {
            int status = 400;
            const char *detail = http_errno_description(e);
            if (c->oom) {
                status = 503;
                detail = "the server is out of memory reading the request; retry shortly";
            } else if (e == HPE_CB_headers_complete && c->parser.http_major != 1) {
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
            sd__fail_request(c, status, detail);
            return;
        }
        if (c->out_len > c->out_off && !sd__conn_flush(c)) /* e.g. 100 Continue */
            return;
        if (feed == avail)
            break; /* the rest of this message has not arrived */
    }
}

/* ---- set-up --------------------------------------------------------------- */

void sd__parse_init(const sd_http_options *opt)
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
}

void sd__parse_open(sd__conn *c)
{
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
}
