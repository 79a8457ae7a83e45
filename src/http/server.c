/*
 * server.c - the HTTP/1.1 server behind server.h: start, drain, stop and
 * free. One thread per --threads runs an event loop (loop.h) with its own
 * SO_REUSEPORT listening socket, an eventfd that wakes it for replies made
 * on other threads, and its connections; the handler pool (dispatch.c)
 * runs beside them. Here the layers are wired together (the upcalls, see
 * internal.h) and the loops' duty on draining set: the listener's close,
 * and every idle connection's (conn.c keeps a timer per connection for its
 * timeouts).
 *
 * Why our own loop (see docs/architecture.md): it answers every error itself
 * (problem+json, the common headers, correct framing), it owns the limits and
 * timeouts that stop slow or hostile clients, and a deferred reply (a write
 * waiting for its fsync) costs one eventfd wake-up instead of a
 * suspend/resume cycle. A connection belongs to one loop thread for its
 * whole life; how a request travels through the layers is told in
 * internal.h.
 */
#include "http/internal.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/random.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define STOP_GRACE_NS 2000000000LL /* sd_http_stop: the least it waits for threads */

/* ---- a thread per loop ---------------------------------------------------- */

/* Before each wait: once draining has begun, the listener closes and idle
 * connections close at the end of the turn (those idle later close when
 * they become idle: conn.c). */
static void before_sleep(void *arg)
{
    sd__thread *lp = arg;
    if (lp->listen_fd < 0 || !atomic_load(&lp->h->draining))
        return;
    sd_loop_io_stop(lp->loop, &lp->listen_io);
    close(lp->listen_fd);
    lp->listen_fd = -1;
    sd__conn_drain(lp);
}

static void *loop_main(void *arg)
{
    sd__thread *lp = arg;
    sd_loop_set_before_sleep(lp->loop, before_sleep, lp);
    sd_loop_run(lp->loop);
    sd__run_done(lp, true); /* calls queued before the end run here */
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
    sd__parse_init(opt);
    sd_http *h = calloc(1, sizeof *h);
    if (!h)
        return SD_ENOMEM;
    h->routes = routes;
    h->nroutes = nroutes;
    h->app = app;
    h->opt = *opt;
    h->up = (sd__upcalls){.open = sd__parse_open,
                          .input = sd__parse_input,
                          .error = sd__fail_request,
                          .release = sd__req_free,
                          .request = sd__dispatch};
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
        sd__thread *lp = &h->loops[i];
        lp->h = h;
        lp->listen_fd = lp->wake_fd = lp->spare_fd = -1;
        lp->listen_io.fd = lp->wake_io.fd = -1;
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
        sd__thread *lp = &h->loops[i];
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
        int lrc = sd_loop_new(&lp->loop);
        lp->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (lrc || lp->wake_fd < 0) {
            snprintf(err, errlen, "epoll/eventfd: %s", strerror(lrc ? -lrc : errno));
            rc = SD_ENOMEM;
            break;
        }
        sd_loop_io_start(lp->loop, &lp->listen_io, lp->listen_fd, EPOLLIN, sd__conn_on_listen);
        sd_loop_io_start(lp->loop, &lp->wake_io, lp->wake_fd, EPOLLIN, sd__on_wake);
    }
    if (res)
        freeaddrinfo(res);
    if (rc == 0 && opt->handler_threads > 0)
        rc = sd__workers_start(h, err, errlen);
    for (int i = 0; rc == 0 && i < h->nloops; i++) {
        if (pthread_create(&h->loops[i].thread, NULL, loop_main, &h->loops[i])) {
            snprintf(err, errlen, "cannot start HTTP threads");
            rc = SD_ENOMEM;
        } else {
            pthread_setname_np(h->loops[i].thread, "sd-http");
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

int sd_http_stop(sd_http *h, int64_t deadline_ns)
{
    if (!h)
        return 0;
    int64_t least = sd_mono_ns() + STOP_GRACE_NS;
    if (deadline_ns < least)
        deadline_ns = least;
    struct timespec until = sd_mono_ts(deadline_ns);
    for (int i = 0; i < h->nloops; i++) {
        uint64_t one = 1;
        if (h->loops[i].loop)
            sd_loop_stop(h->loops[i].loop);
        if (h->loops[i].running) {
            ssize_t w = write(h->loops[i].wake_fd, &one, sizeof one);
            (void)w;
        }
    }
    /* A loop runs the handlers of its requests itself (the embedded store):
     * one still inside a handler is waited for like a worker. */
    int busy = 0;
    for (int i = 0; i < h->nloops; i++) {
        sd__thread *lp = &h->loops[i];
        if (!lp->running)
            continue;
        if (pthread_clockjoin_np(lp->thread, NULL, CLOCK_MONOTONIC, &until) == 0)
            lp->running = false;
        else
            busy++;
    }
    busy += sd__workers_stop(h, deadline_ns);
    if (busy)
        return busy; /* they may still use anything here: nothing is touched */
    for (int i = 0; i < h->nloops; i++) {
        sd__thread *lp = &h->loops[i];
        for (sd__conn *c = lp->conns; c; c = c->next)
            sd__conn_close_fd(c);
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
        sd__thread *lp = &h->loops[i];
        sd_assert(!lp->running);
        /* A request in flight is its connection's req, whether it waits in
         * the pool's queue or its reply in the loop's done list (or never
         * came): freeing the connections frees them all. */
        for (sd__conn *c = lp->conns, *next; c; c = next) {
            next = c->next;
            sd__conn_close_fd(c);
            sd__req_free(c->req);
            sd__conn_free(c);
        }
        sd__conn_pools_free(lp);
        sd__req_cache_free(lp);
        int fds[] = {lp->listen_fd, lp->wake_fd, lp->spare_fd};
        for (size_t k = 0; k < sizeof fds / sizeof fds[0]; k++)
            if (fds[k] >= 0)
                close(fds[k]);
        sd_loop_free(lp->loop);
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
