/*
 * dispatch.c - from requests to handlers. A whole request first passes the
 * framing checks http-parser leaves to us (repeated Content-Length,
 * Transfer-Encoding or Host, a missing Host on HTTP/1.1: 400; a transfer
 * coding other than chunked: 501), then is routed (router.h: 404, 405
 * with Allow, 400 for a bad path), authorized (the authorize hook of a
 * route with a scope), its body's media type checked (411, 415), and its
 * handler run: on the loop thread, or queued for the handler pool
 * (handler_threads) when the route is not marked on_loop. While draining,
 * every request is answered 503 and its connection closed. The connection
 * reads nothing more until the reply (in_flight).
 */
#include "http/internal.h"
#include "util/jsonmem.h"
#include "util/clock.h"
#include "util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- dispatch ------------------------------------------------------------- */

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

void sd__dispatch(sd__conn *c)
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
    if (sd__req_header_count(r, "Content-Length") > 1 ||
        sd__req_header_count(r, "Transfer-Encoding") > 1) {
        r->close_after = true;
        sd_reply_problem(r, 400, "repeated Content-Length or Transfer-Encoding header");
        return;
    }
    if (sd__req_header_count(r, "Host") > 1 ||
        (sd__req_header_count(r, "Host") == 0 && c->parser.http_major == 1 &&
         c->parser.http_minor >= 1)) {
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
    r->match_result =
        sd_route_match_in(h->routes, h->nroutes, r->method, r->path, &r->match, &r->arena);
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
    sd_json_oom_clear(); /* sd_reply_json: what the handler builds is checked */
    route->fn(r, h->app);
}

/* ---- the handler pool ---------------------------------------------------- */

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
        sd_json_oom_clear();
        h->routes[r->match.route].fn(r, h->app);
        pthread_mutex_lock(&h->work_mu);
        if (--h->work_busy == 0)
            pthread_cond_broadcast(&h->idle_cv); /* sd_http_stop may be waiting */
    }
    pthread_mutex_unlock(&h->work_mu);
    return NULL;
}

int sd__workers_start(sd_http *h, char *err, size_t errlen)
{
    h->workers = calloc((size_t)h->opt.handler_threads, sizeof *h->workers);
    int rc = h->workers ? 0 : SD_ENOMEM;
    for (int i = 0; rc == 0 && i < h->opt.handler_threads; i++) {
        if (pthread_create(&h->workers[i], NULL, worker_main, h)) {
            snprintf(err, errlen, "cannot start handler threads");
            rc = SD_ENOMEM;
        } else {
            pthread_setname_np(h->workers[i], "sd-handler");
            h->nworkers++;
        }
    }
    return rc;
}

/* Stops the handler pool: idle workers leave at once; a worker inside a
 * handler is waited for until deadline_ns (monotonic). Requests queued and
 * never started stay with their connections (sd_http_free frees them).
 * Returns how many workers are still inside a handler (then none is
 * joined). */
int sd__workers_stop(sd_http *h, int64_t deadline_ns)
{
    struct timespec until = sd_mono_ts(deadline_ns);
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
