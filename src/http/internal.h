/*
 * internal.h - what the files of the HTTP layer share, and nothing else
 * includes: the request, connection, thread and server structs, and the
 * functions that cross files (sd__ names, as libuv's uv__).
 *
 * The files are layers, each calling only the ones below it:
 *
 *   server.c    start, stop, a thread per loop          (public: server.h)
 *   dispatch.c  requests to handlers, the handler pool
 *   parse.c     bytes into requests: framing checks, http-parser
 *   response.c  replies rendered and handed to the connection (sd_reply*)
 *   request.c   the request object and its accessors (sd_req_*)
 *   conn.c      connections: accept, bytes in and out, limits, TLS, timeouts
 *   loop.c      file events and timers (its own header: loop.h)
 *
 * A lower layer reaches a higher one only through the upcalls in sd_http
 * (sd__upcalls), set by sd_http_start, as libuv's uv_read_cb: conn.c asks
 * parse.c to parse what it read and response.c to answer a timeout,
 * response.c asks parse.c to go on with pipelined input, parse.c hands a
 * whole request to dispatch.c. The sections below follow the files, lowest
 * first; a file uses the declarations of its own section and those above.
 */
#ifndef SD_HTTP_INTERNAL_H
#define SD_HTTP_INTERNAL_H

#include "http/framing.h"
#include "http/loop.h"
#include "http/router.h"
#include "http/server.h"
#include "util/arena.h"

#include <http_parser.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SD__MAX_HEADERS        100
#define SD__REQUEST_TIMEOUT_MS 10000
#define SD__POOL_BUFS          64 /* spare buffers of each kind a thread keeps (conn.c) */
/* The request arena's own chunk (kept while the request waits in its loop's
 * cache): room for a usual head, a small body and the reply. */
#define SD__REQ_ARENA 4096
/* Requests a loop keeps for reuse (request.c); more are freed. */
#define SD__REQ_CACHE 32

/* The struct that holds member p (an sd_loop_io or sd_loop_timer). */
#define SD__CONTAINER_OF(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

typedef struct sd__conn sd__conn;
typedef struct sd__thread sd__thread;

typedef struct sd__header {
    char *name, *value; /* in the request's arena */
    size_t name_len, value_len;
} sd__header;

/* A request. Everything it points to lives in its arena (reset when the
 * request is answered, the struct then kept in its loop's cache), except
 * what the comments say. */
struct sd_req {
    sd__conn *c;
    sd__thread *lp;
    char id[32];
    int64_t t0;
    const char *method;
    bool head; /* HEAD: send no body */
    char *url; /* raw request target */
    size_t url_len;
    char *path, *query; /* split url (point into url) */
    int nheaders;       /* in headers[], below */
    char *body;         /* NUL-terminated */
    size_t body_len, body_cap;
    bool has_body;
    bool keep_alive;
    bool head_done; /* headers complete: later fields are trailers, not kept */
    sd_match match; /* captures in the arena */
    enum sd_match_result match_result;
    char actor[64];            /* the caller's key id, set by the authorize hook */
    const char *cache_control; /* a 2xx reply's Cache-Control (borrowed); NULL: no-store */

    /* the response, rendered by sd_reply on any thread */
    char *out; /* in the arena; NULL: out of memory */
    size_t out_len;
    int status;
    bool close_after;
    sd_req *next_done;    /* the loop's list of finished deferred requests */
    void (*call)(void *); /* on the done list: a call to run (sd_req_call), not a reply */
    void *call_arg;
    sd_req *next_work; /* the handler pool's queue, and the loop's cache */

    /* Not cleared on reuse (sd__req_new clears only what is above): the
     * entries past nheaders are never read, and clearing 3 KiB of them
     * was a visible share of a validation. */
    sd__header headers[SD__MAX_HEADERS];
    sd_arena arena;
    alignas(max_align_t) char arena_mem[SD__REQ_ARENA];
};

/* A connection: conn.c's bytes and buffers, and the parse state parse.c
 * keeps in it (one request at a time). */
struct sd__conn {
    sd_loop_io io; /* the socket on its thread's loop */
    int fd;        /* -1 once closed (the struct may live on: in_flight) */
    sd__thread *lp;
    http_parser parser;
    char *in; /* unparsed input */
    size_t in_len, in_cap;
    char *out; /* pending output */
    size_t out_len, out_off, out_cap;
    sd_req *req;     /* being parsed, or in flight */
    bool in_flight;  /* a handler owns req until it replies */
    bool in_process; /* sd__parse_input() is on the stack: it frees, not us */
    bool peer_gone;  /* freed when the in-flight reply arrives */
    bool peer_eof;   /* the peer half-closed: answer, then close */
    bool close_after_write;
    bool reading_field; /* http-parser: last callback was a header field */
    bool in_message;    /* the head was checked; the parser is inside this request */
    size_t head_len;    /* that head's bytes, given to the parser alone */
    bool chunked;       /* the body is chunked: checked (chunk) before the parser sees it */
    sd_chunk_state chunk;
    bool body_too_large;
    bool oom; /* an allocation for the request failed: 503, then close */
    /* sd_mono_ms; set by whoever starts a request or ends one, watched by
     * timer (conn.c arms it for the deadline that applies whenever the
     * connection's events are set) */
    int64_t request_deadline, idle_deadline;
    sd_loop_timer timer;
    char ip[INET6_ADDRSTRLEN];
    struct ssl_st *ssl;  /* NULL: plain TCP */
    bool handshaking;    /* TLS: no HTTP before the handshake is done */
    uint32_t tls_events; /* TLS: EPOLLOUT a read waits for, EPOLLIN a write waits for */
    char *peer_cn;       /* TLS: the verified client certificate's CN, or NULL */
    sd__conn *prev, *next;
};

/* One HTTP thread: its event loop, listener, wake-up eventfd and
 * connections. */
struct sd__thread {
    sd_http *h;
    pthread_t thread;
    bool running; /* thread started and not yet joined */
    sd_loop *loop;
    int listen_fd, wake_fd; /* -1: none (the listener closes when draining) */
    sd_loop_io listen_io, wake_io;
    int spare_fd;               /* held for the out-of-descriptors case (conn.c) */
    sd_loop_timer accept_timer; /* watches the listener again after a pause */
    /* buffers of idle connections, for the next to read or write (conn.c) */
    struct sd__buf_pool {
        int n;
        char *buf[SD__POOL_BUFS];
    } in_pool, out_pool;
    pthread_mutex_t mu;
    sd_req *done_head, *done_tail;
    bool ended; /* under mu: the loop has run its done list for the last time */
    sd__conn *conns;
    sd_req *free_reqs; /* answered requests kept for reuse (request.c; this thread's) */
    int nfree_reqs;
};

/* The upward calls, set by sd_http_start. */
typedef struct sd__upcalls {
    void (*open)(sd__conn *c);  /* conn -> parse: a new connection (sd__parse_open) */
    void (*input)(sd__conn *c); /* conn, response -> parse: input is buffered (sd__parse_input) */
    /* conn -> response: answer an error and close (sd__fail_request) */
    void (*error)(sd__conn *c, int status, const char *detail);
    void (*release)(sd_req *r);   /* conn -> request: free a request (sd__req_free) */
    void (*request)(sd__conn *c); /* parse -> dispatch: c->req is whole (sd__dispatch) */
} sd__upcalls;

struct sd_http {
    const sd_route *routes;
    int nroutes;
    void *app;
    sd_http_options opt;
    sd__upcalls up;
    sd__thread *loops;
    int nloops;
    char address[128];
    char id_prefix[8];
    _Atomic uint64_t next_id;
    _Atomic int inflight;
    _Atomic int nconns;
    _Atomic bool draining;
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

/* ---- conn.c ------------------------------------------------------------ */

/* The Date header text, cached per thread per second; the thread's own. */
const char *sd__http_date(void);
/* The listener's file event: accepts what it can (registered by server.c). */
void sd__conn_on_listen(sd_loop_io *io, uint32_t events);
/* Draining has begun: every idle connection closes at the end of this
 * turn (and each that becomes idle later, when it does). */
void sd__conn_drain(sd__thread *lp);
/* Frees the thread's spare buffers (once its loop has stopped). */
void sd__conn_pools_free(sd__thread *lp);
/* Closes the socket; the struct lives on while a request is in flight or
 * sd__parse_input is on the stack (they free it). */
void sd__conn_close(sd__conn *c);
/* Closes the socket only. */
void sd__conn_close_fd(sd__conn *c);
/* Unlinks and frees the struct (its request is the caller's to free). */
void sd__conn_free(sd__conn *c);
/* Watches what the connection waits for now (read, write, TLS). */
void sd__conn_set_events(sd__conn *c);
/* Writes what it can of the pending output. Returns false when the
 * connection was closed. */
bool sd__conn_flush(sd__conn *c);
/* Queues output bytes (copied). Returns false when out of memory. */
bool sd__conn_append(sd__conn *c, const char *data, size_t len);
/* The last-resort answer (sd__oom_response) when memory has run out: into
 * the output buffer if it has room, else straight to the socket when nothing
 * else is pending on it (else dropped); never allocates. The caller closes. */
void sd__conn_append_last(sd__conn *c, const char *data, size_t len);
/* Out of memory with no request to answer through: the last-resort 503
 * (unless a request is in flight), then the connection closes. */
void sd__conn_fail_oom(sd__conn *c);

/* ---- request.c --------------------------------------------------------- */

/* A new request on c, with its id (NULL when out of memory): one of its
 * loop's cached requests when there is one. On the loop thread only. */
sd_req *sd__req_new(sd__conn *c);
/* A new request id ("<prefix>-<n>") in out, for an answer with no request. */
void sd__req_mint_id(sd_http *h, char *out, size_t cap);
/* The answer of last resort when memory runs out (response.c): a whole 503
 * problem response naming request rid, rendered into buf without malloc or
 * jansson; its length (0 when cap is too small). detail: a constant
 * sentence without quotes or backslashes. */
size_t sd__oom_response(char *buf, size_t cap, const char *rid, const char *detail);
/* Releases a request and all it holds (its arena reset, the struct cached
 * for reuse or freed); NULL is fine. On the loop thread, or once the loops
 * have stopped. */
void sd__req_free(sd_req *r);
/* Frees the loop's cached requests (sd_http_free). */
void sd__req_cache_free(sd__thread *lp);
int sd__req_header_count(const sd_req *r, const char *name);

/* ---- response.c -------------------------------------------------------- */

/* An error found while reading a request: answer it and close. */
void sd__fail_request(sd__conn *c, int status, const char *detail);
/* The wake-up eventfd's file event: delivers replies made on other
 * threads (registered by server.c). */
void sd__on_wake(sd_loop_io *io, uint32_t events);
/* Runs the done list (response.c); end: for the last time, as the loop
 * ends (later calls run on their callers' threads). */
void sd__run_done(sd__thread *lp, bool end);

/* ---- parse.c ----------------------------------------------------------- */

/* Sets up http-parser's callbacks and limits; once, before any loop runs. */
void sd__parse_init(const sd_http_options *opt);
void sd__parse_open(sd__conn *c);
/* Parses buffered input, dispatching complete requests one at a time. The
 * connection may be closed meanwhile; it is freed here, at the end. */
void sd__parse_input(sd__conn *c);

/* ---- dispatch.c -------------------------------------------------------- */

/* c->req is whole: checks what the parser left to us, routes it, and runs
 * (or queues for the pool) its handler. */
void sd__dispatch(sd__conn *c);
/* Starts opt.handler_threads pool threads. Returns 0 or SD_ENOMEM (with a
 * sentence in err). */
int sd__workers_start(sd_http *h, char *err, size_t errlen);
/* Stops the pool; see dispatch.c. Returns how many workers are still
 * inside a handler at deadline_ns. */
int sd__workers_stop(sd_http *h, int64_t deadline_ns);

#endif
