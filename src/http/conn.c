/*
 * conn.c - connections: the layer of bytes. It accepts (the connection caps,
 * total and per address, answered with a ready-made 503; the spare
 * descriptor for when descriptors run out), reads into and writes from each
 * connection's buffers, over plain TCP or TLS (http/tls.h: the handshake
 * first, then one branch per read or write), closes and frees connections
 * (never inside a caller that still holds one: the in_flight and in_process
 * flags), and keeps each connection's timeout as a timer of its own on the
 * loop: a request that does not arrive within SD__REQUEST_TIMEOUT_MS
 * (slowloris: 408), a keep-alive connection idle past --connection-timeout,
 * a TLS handshake that does not end in time, and every idle connection
 * when draining.
 *
 * An idle keep-alive connection costs its struct and no buffer: when it
 * waits for its next request (nothing buffered either way, no request), its
 * read and write buffers go back to its thread's small pool, and the next
 * connection of that thread to read or write takes one from there.
 *
 * It knows no HTTP grammar: what it reads goes up to parse.c, a timeout's
 * answer to response.c, both through the upcalls in sd_http (internal.h).
 */
#include "http/internal.h"
#include "http/tls.h"
#include "util/clock.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK 16384
#define IN_BUF     (2 * READ_CHUNK) /* a read buffer as the pool keeps it */
#define OUT_BUF    4096             /* a write buffer as the pool keeps it */

/* ---- the Date header, per thread ---------------------------------------- */

const char *sd__http_date(void)
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

/* ---- connection caps --------------------------------------------------- */

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

/* ---- buffers: none kept while a connection is idle ---------------------- */

/* A buffer of the pool's size (IN_BUF or OUT_BUF): a spare or a new one.
 * NULL when out of memory. */
static char *buf_take(struct sd__buf_pool *p, size_t size)
{
    return p->n ? p->buf[--p->n] : malloc(size);
}

/* Gives *buf (*cap bytes) back: kept when it is of the pool's size and the
 * pool has room, freed otherwise. */
static void buf_give(struct sd__buf_pool *p, size_t size, char **buf, size_t *cap)
{
    if (*buf && *cap == size && p->n < SD__POOL_BUFS)
        p->buf[p->n++] = *buf;
    else
        free(*buf);
    *buf = NULL;
    *cap = 0;
}

/* Both buffers go back to the thread's pools (their bytes are dropped). */
static void conn_release_buffers(sd__conn *c)
{
    buf_give(&c->lp->in_pool, IN_BUF, &c->in, &c->in_cap);
    buf_give(&c->lp->out_pool, OUT_BUF, &c->out, &c->out_cap);
    c->in_len = c->out_len = c->out_off = 0;
}

void sd__conn_pools_free(sd__thread *lp)
{
    struct sd__buf_pool *pools[] = {&lp->in_pool, &lp->out_pool};
    for (size_t i = 0; i < sizeof pools / sizeof pools[0]; i++) {
        while (pools[i]->n)
            free(pools[i]->buf[--pools[i]->n]);
    }
}

/* ---- timeouts: a timer per connection ------------------------------------ */

static void on_timeout(sd_loop_timer *t);

/* Arms c's timer for the deadline that applies now: the handshake's or the
 * request's (request_deadline), or the idle one; at once for an idle
 * connection when draining; none while a handler owns the request or output
 * waits for the peer (the scan this replaced skipped those too; the timer
 * is armed again when that ends, through sd__conn_set_events). A deadline
 * that moved later leaves the timer where it is: it runs first, finds the
 * later deadline and moves then, so a busy keep-alive connection costs no
 * heap work per request. */
static void conn_arm(sd__conn *c)
{
    sd_loop *l = c->lp->loop;
    if (c->fd < 0 || c->in_flight || c->out_len > c->out_off) {
        sd_loop_timer_stop(l, &c->timer);
        return;
    }
    bool mid_request = !c->handshaking && (c->req || c->in_len > 0);
    int64_t due_ns;
    if (!mid_request && atomic_load(&c->lp->h->draining))
        due_ns = 0; /* in the past: this turn */
    else
        due_ns = (c->handshaking || mid_request ? c->request_deadline : c->idle_deadline) * 1000000;
    if (c->timer.armed && c->timer.due_ns <= due_ns)
        return;
    sd_loop_timer_start_at(l, &c->timer, due_ns, on_timeout);
}

/* c's timer: the request's 408, the idle or handshake close, or (when the
 * deadline has moved on) the timer set again. */
static void on_timeout(sd_loop_timer *t)
{
    sd__conn *c = SD__CONTAINER_OF(t, sd__conn, timer);
    if (c->fd < 0 || c->in_flight || c->out_len > c->out_off)
        return; /* armed again when that is over */
    int64_t now = sd_mono_ms();
    bool draining = atomic_load(&c->lp->h->draining);
    if (c->handshaking) {
        if (draining || now >= c->request_deadline) {
            sd__conn_close(c);
            return;
        }
    } else {
        bool mid_request = c->req != NULL || c->in_len > 0;
        if (mid_request && now >= c->request_deadline) {
            c->lp->h->up.error(c, 408, "the request did not arrive in time");
            return;
        }
        if (!mid_request && (draining || now >= c->idle_deadline)) {
            sd__conn_close(c);
            return;
        }
    }
    conn_arm(c);
}

void sd__conn_drain(sd__thread *lp)
{
    for (sd__conn *c = lp->conns; c; c = c->next)
        conn_arm(c);
}

/* ---- lifetime and I/O --------------------------------------------------- */

void sd__conn_free(sd__conn *c)
{
    sd__thread *lp = c->lp;
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
    sd_loop_timer_stop(lp->loop, &c->timer);
    conn_release_buffers(c);
    free(c);
}

/* Closes the socket. With a request in flight the struct lives on until its
 * reply arrives (response.c frees it then). */
void sd__conn_close_fd(sd__conn *c)
{
    if (c->fd >= 0) {
        sd_loop_io_stop(c->lp->loop, &c->io);
        sd_loop_timer_stop(c->lp->loop, &c->timer);
        sd_tls_close(c->ssl, true);
        c->ssl = NULL;
        close(c->fd);
        c->fd = -1;
    }
}

void sd__conn_close(sd__conn *c)
{
    sd__conn_close_fd(c);
    if (c->in_flight) {
        c->peer_gone = true;
        return;
    }
    if (c->in_process)
        return; /* sd__parse_input() frees it on its way out */
    c->lp->h->up.release(c->req);
    c->req = NULL;
    sd__conn_free(c);
}

/* Also the moment a connection's state is settled after reading, replying
 * or writing: an idle one gives its buffers back, and the timer follows the
 * deadline that now applies. */
void sd__conn_set_events(sd__conn *c)
{
    if (c->fd < 0)
        return;
    uint32_t want = (c->in_flight || c->peer_eof ? 0 : EPOLLIN | EPOLLRDHUP) |
                    (c->out_len > c->out_off ? EPOLLOUT : 0) | c->tls_events;
    sd_loop_io_set(c->lp->loop, &c->io, want); /* no system call when unchanged */
    if (!c->in_process && !c->in_flight && !c->req && c->in_len == 0 && c->out_len == c->out_off)
        conn_release_buffers(c); /* idle: waits for its next request */
    conn_arm(c);
}

/* The transport: plain TCP or TLS, one branch per call. A TLS read may have
 * to write first and a write to read (tls_events adds what they wait for). */
static ssize_t conn_recv(sd__conn *c, char *buf, size_t n)
{
    if (!c->ssl)
        return recv(c->fd, buf, n, 0);
    int want = 0;
    ssize_t r = sd_tls_read(c->ssl, buf, n, &want);
    c->tls_events =
        (c->tls_events & ~(uint32_t)EPOLLOUT) | (r < 0 && want == SD_TLS_WANT_WRITE ? EPOLLOUT : 0);
    return r;
}

static ssize_t conn_send(sd__conn *c, const char *buf, size_t n)
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
bool sd__conn_flush(sd__conn *c)
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
        sd__conn_close(c);
        return false;
    }
    c->out_off = c->out_len = 0;
    if (c->close_after_write) {
        sd__conn_close(c);
        return false;
    }
    return true;
}

bool sd__conn_append(sd__conn *c, const char *data, size_t len)
{
    if (!c->out && len <= OUT_BUF && (c->out = buf_take(&c->lp->out_pool, OUT_BUF)))
        c->out_cap = OUT_BUF;
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

void sd__conn_append_last(sd__conn *c, const char *data, size_t len)
{
    if (c->out && c->out_cap - c->out_len >= len) {
        memcpy(c->out + c->out_len, data, len);
        c->out_len += len;
    } else if (c->out_len == c->out_off && c->fd >= 0) {
        for (size_t o = 0; o < len;) {
            ssize_t n = conn_send(c, data + o, len - o);
            if (n <= 0)
                break;
            o += (size_t)n;
        }
    }
}

void sd__conn_fail_oom(sd__conn *c)
{
    if (!c->in_flight && c->fd >= 0) {
        /* What the peer sent and nobody will read would turn the close into
         * a reset that can overtake the answer: read it away first. */
        char sink[4096];
        if (!c->ssl)
            while (recv(c->fd, sink, sizeof sink, MSG_DONTWAIT) > 0)
                ;
        char rid[32], buf[1024];
        sd__req_mint_id(c->lp->h, rid, sizeof rid);
        sd__conn_append_last(c, buf,
                             sd__oom_response(buf, sizeof buf, c->req ? c->req->id : rid,
                                              "the server is out of memory; retry shortly"));
        c->close_after_write = true;
        if (!sd__conn_flush(c))
            return; /* closed */
    }
    sd__conn_close(c);
}

static void on_readable(sd__conn *c)
{
    for (;;) {
        if (c->in_cap - c->in_len < READ_CHUNK) {
            size_t cap = c->in ? c->in_cap * 2 : IN_BUF;
            char *p = c->in ? realloc(c->in, cap) : buf_take(&c->lp->in_pool, IN_BUF);
            if (!p) {
                sd__conn_fail_oom(c);
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
        sd__conn_close(c); /* EOF or error */
        return;
    }
    c->lp->h->up.input(c);
}

/* A new TLS connection: the handshake first. Once it is done the verified
 * client certificate's name is kept and HTTP starts; request bytes may
 * already wait inside the SSL object, so they are read at once. */
static void tls_handshake(sd__conn *c)
{
    int want = 0, rc = sd_tls_handshake(c->ssl, &want);
    if (rc < 0) {
        sd__conn_close(c);
        return;
    }
    c->tls_events = rc == 0 && want == SD_TLS_WANT_WRITE ? EPOLLOUT : 0;
    if (rc == 0) {
        sd__conn_set_events(c);
        return;
    }
    c->handshaking = false;
    c->peer_cn = sd_tls_peer_cn(c->ssl);
    c->idle_deadline = sd_mono_ms() + c->lp->h->opt.connection_timeout_s * 1000LL;
    on_readable(c);
}

/* The listener is watched again after a pause for want of descriptors. */
static void accept_resume(sd_loop_timer *t)
{
    sd__thread *lp = SD__CONTAINER_OF(t, sd__thread, accept_timer);
    if (lp->listen_fd < 0)
        return; /* draining: the listener is closed */
    sd_loop_io_set(lp->loop, &lp->listen_io, EPOLLIN);
    if (lp->spare_fd < 0)
        lp->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* A connection's file event. */
static void on_event(sd_loop_io *io, uint32_t events)
{
    sd__conn *c = SD__CONTAINER_OF(io, sd__conn, io);
    if (c->fd < 0)
        return;
    if (c->handshaking) {
        tls_handshake(c);
        return;
    }
    uint32_t ev = events;
    if (c->tls_events) /* a TLS read that waited to write, or a write to read */
        ev |= (ev & c->tls_events & EPOLLOUT ? EPOLLIN : 0) |
              (ev & c->tls_events & EPOLLIN ? EPOLLOUT : 0);
    if (ev & EPOLLOUT) {
        if (!sd__conn_flush(c))
            return;
        if (c->out_len == 0 && c->peer_eof && c->in_len == 0 && !c->in_flight) {
            sd__conn_close(c);
            return;
        }
        if (c->out_len == 0 && c->in_len > 0 && !c->in_flight) {
            c->lp->h->up.input(c);
            return; /* c may be gone; level-triggered events come again */
        }
        sd__conn_set_events(c);
    }
    if (c->fd >= 0 && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)))
        on_readable(c);
}

/* ---- accepting ---------------------------------------------------------- */

/* A well-formed 503 without reading the request, then close (shutdown
 * first, so the unread request does not turn the close into a reset before
 * the answer). Over TLS there is no session to answer in: only the close.
 * detail: a constant sentence (sd__oom_response). */
static void refuse(sd_http *h, int fd, const char *detail)
{
    char rid[32], busy[1024];
    sd__req_mint_id(h, rid, sizeof rid);
    size_t n = sd__oom_response(busy, sizeof busy, rid, detail);
    ssize_t w = h->opt.tls ? 0 : send(fd, busy, n, MSG_NOSIGNAL);
    (void)w;
    shutdown(fd, SHUT_WR);
    close(fd);
}

static void accept_all(sd__thread *lp)
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
            sd_loop_io_set(lp->loop, &lp->listen_io, 0);
            sd_loop_timer_start(lp->loop, &lp->accept_timer, 100, accept_resume);
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
            refuse(h, fd, "too many connections; retry shortly");
            continue;
        }
        sd__conn *c = calloc(1, sizeof *c);
        if (c && h->opt.tls && !(c->ssl = sd_tls_accept(h->opt.tls, fd))) {
            free(c);
            c = NULL;
        }
        if (!c) {
            ip_release(h, ip);
            refuse(h, fd, "the server is out of memory for a new connection; retry shortly");
            continue;
        }
        atomic_fetch_add(&h->nconns, 1);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->fd = fd;
        c->lp = lp;
        snprintf(c->ip, sizeof c->ip, "%s", ip);
        h->up.open(c);
        c->idle_deadline = sd_mono_ms() + h->opt.connection_timeout_s * 1000LL;
        if (c->ssl) { /* the handshake must end within the request and idle timeouts */
            c->handshaking = true;
            int64_t ms = h->opt.connection_timeout_s * 1000LL;
            c->request_deadline =
                sd_mono_ms() + (ms < SD__REQUEST_TIMEOUT_MS ? ms : SD__REQUEST_TIMEOUT_MS);
        }
        c->next = lp->conns;
        if (lp->conns)
            lp->conns->prev = c;
        lp->conns = c;
        sd_loop_io_start(lp->loop, &c->io, fd, EPOLLIN | EPOLLRDHUP, on_event);
        conn_arm(c);
    }
}

void sd__conn_on_listen(sd_loop_io *io, uint32_t events)
{
    (void)events;
    accept_all(SD__CONTAINER_OF(io, sd__thread, listen_io));
}
