/*
 * server.h - the HTTP layer: our own epoll loops with http-parser underneath,
 * routes and replies on top. It knows nothing of sessions or storage.
 *
 * A handler receives a request whose route, captures, headers and (whole)
 * body are ready, and must answer it exactly once with one of the sd_reply*
 * calls - either before it returns, or later from any thread (for example the
 * store's writer thread once a write is durable). In the second case the
 * connection stops reading meanwhile, so the loop thread serves others.
 * With handler_threads, handlers run on a pool instead of the loop thread
 * (see sd_http_options).
 *
 * Every response carries Content-Type, X-Content-Type-Options: nosniff,
 * Cache-Control (no-store, unless the handler chose otherwise for a 2xx
 * reply: sd_req_set_cache_control) and X-Request-Id. Errors are problem+json
 * (RFC 9457).
 */
#ifndef SD_HTTP_SERVER_H
#define SD_HTTP_SERVER_H

#include "http/router.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sd_http sd_http;

typedef struct sd_http_options {
    const char *listen; /* "HOST:PORT" or "[V6]:PORT" */
    int threads;
    int max_connections;
    int max_connections_per_ip;
    int connection_timeout_s;
    size_t max_header_bytes;
    size_t max_body_bytes;
    /* Called before the handler of a route with a scope. Returns 0 to go on,
     * or non-zero after answering the request itself (401, 403). NULL: no
     * checks. */
    int (*authorize)(void *app, sd_req *r, const char *scope);
    /* NULL: plain TCP. Otherwise (borrowed, must outlive the server) the
     * listener speaks TLS only; see http/tls.h. */
    struct sd_tls *tls;
    /* 0: handlers run on the loop threads (the embedded store answers from
     * memory). N > 0: a pool of N threads runs the handlers of every route
     * not marked on_loop, so a loop thread never waits on a handler that
     * waits on the network (PostgreSQL, Redis); its connections are served
     * meanwhile. */
    int handler_threads;
} sd_http_options;

/* Starts serving routes (borrowed, must outlive the server). app is passed to
 * every handler. On failure writes a sentence into err. */
int sd_http_start(const sd_http_options *opt, const sd_route *routes, int nroutes, void *app,
                  sd_http **out, char *err, size_t errlen);

/* The address actually bound (useful with port 0). */
const char *sd_http_address(const sd_http *h);

/* Graceful stop, step 1: close the listening socket and answer any further
 * request on open connections with 503 and Connection: close. */
void sd_http_drain(sd_http *h);

/* Requests accepted and not yet completed. */
int sd_http_inflight(sd_http *h);

/* Step 2: stops the loops and the handler pool and closes every connection.
 * A handler still running (on a loop or in the pool) is waited for until
 * deadline_ns (sd_mono_ns clock; at least two seconds from the call, time
 * for the threads to notice). Returns 0, or how many handlers are still
 * running then: their threads run on, and nothing they may use - this
 * server, the store, the keys, the limiter, the audit log in the handler's
 * app - may be closed or freed; the caller should end the process without
 * its clean-up. Calling it again waits again. */
int sd_http_stop(sd_http *h, int64_t deadline_ns);

/* Step 3: frees the server, once sd_http_stop has returned 0 and nothing can
 * reply any more (the store, whose writes reply from its writer thread, is
 * closed). Replies made between the two (a write completing while the store
 * closes) land in the stopped server and are dropped with it. */
void sd_http_free(sd_http *h);

/* ---- the request, for handlers ----------------------------------------- */

const char *sd_req_method(const sd_req *r);
/* Header value by case-insensitive name, or NULL. Borrowed until reply. */
const char *sd_req_header(const sd_req *r, const char *name);
/* How many times the request carries the header (case-insensitive name):
 * sd_req_header returns the first of them. */
int sd_req_header_count(const sd_req *r, const char *name);
/* Decoded path capture i (0-based), or NULL. Borrowed until completion. */
const char *sd_req_capture(const sd_req *r, int i);
/* Query argument, percent-decoded. Returns 1 and sets *value when present,
 * 0 when absent, -1 when its encoding is invalid. Borrowed until completion. */
int sd_req_query(sd_req *r, const char *name, const char **value);
/* The whole body (NUL-terminated for convenience); *len may be 0. */
const char *sd_req_body(const sd_req *r, size_t *len);
/* True when the request carried a body (Content-Length > 0 or chunked). */
int sd_req_has_body(const sd_req *r);
const char *sd_req_id(const sd_req *r);
/* The client's IP address (text). Valid until the request is answered. */
const char *sd_req_peer(const sd_req *r);
/* Who the caller is (an API key id), as the authorize hook found it, for
 * audit records; "" when unknown. */
void sd_req_set_actor(sd_req *r, const char *actor);
const char *sd_req_actor(const sd_req *r);
/* The Cache-Control value of this request's reply when it is a 2xx (any
 * other status is answered with no-store whatever is set), e.g. "public,
 * max-age=300"; NULL restores no-store. value is borrowed until the reply
 * (a string literal, or the request's arena) and must be visible ASCII and
 * spaces, non-empty (an assertion checks). */
void sd_req_set_cache_control(sd_req *r, const char *value);
/* n bytes from the request's arena, aligned for any type: they live until
 * the request is answered (the reply is copied out before sd_reply*
 * returns), with no free. NULL when out of memory. */
void *sd_req_alloc(sd_req *r, size_t n);
/* The request's arena itself, for writers that grow (util/jsonw.h); the
 * same lifetime. */
sd_arena *sd_req_arena(sd_req *r);
/* The subject CN of the client certificate the TLS handshake verified
 * against --tls-client-ca, or NULL (plain TCP, no certificate, no single
 * CN). Borrowed until reply. */
const char *sd_req_client_cert(const sd_req *r);

/* Runs fn(arg) on the thread of r's connection, before r is answered: at
 * once when called there, else queued to that loop (woken by its eventfd,
 * as a reply made elsewhere is). A handler's completion made on another
 * thread (the store's writer) renders its reply there instead of on the
 * thread every write waits for. Once the loop has ended (the server
 * stopping), fn runs at once on the caller's thread. */
void sd_req_call(sd_req *r, void (*fn)(void *), void *arg);

/* ---- replies: exactly one per request, from any thread ------------------ */

/* Extra headers: NULL-terminated array of name, value, name, value, ...
 * body is malloc'd and consumed (freed). */
void sd_reply(sd_req *r, int status, const char *content_type, char *body, size_t len,
              const char *const *headers);
/* The same with a borrowed body (static text, or the request's arena): it
 * is copied into the response before this returns. No malloc on a warm
 * connection: the hot routes answer through it. */
void sd_reply_bytes(sd_req *r, int status, const char *content_type, const char *body, size_t len,
                    const char *const *headers);
/* body is stolen (json_decref'd); NULL means no body for a 204, and for
 * any other status a value jansson had no memory for (json_pack's NULL):
 * 503. So is a body a jansson allocation failed for on this thread since
 * the request was dispatched (a member json_object_set_new left out; see
 * util/jsonmem.h), or whose text could not be made. */
void sd_reply_json(sd_req *r, int status, json_t *body, const char *const *headers);
void sd_reply_problem(sd_req *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with extra headers (NULL-terminated name, value pairs). */
void sd_reply_problem_with(sd_req *r, int status, const char *const *headers, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
