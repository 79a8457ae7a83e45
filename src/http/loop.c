/*
 * loop.c - the event loop of loop.h: one epoll instance, a short list of
 * timers kept in due order, a before-sleep hook.
 *
 * A turn: the hook, one epoll_wait (up to 128 events, no longer than the
 * next timer or MAX_WAIT_MS), each event's callback in the order epoll
 * gave them, then the timers that are due. Timers are few (the HTTP layer
 * has two a loop), so a sorted list is enough; connection timeouts are
 * not timers here but one periodic scan (see conn.c).
 */
#include "http/loop.h"
#include "util/clock.h"
#include "util/err.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define MAX_EVENTS  128
#define MAX_WAIT_MS 250

struct sd_loop {
    int ep;
    _Atomic bool stop;
    sd_loop_timer *timers; /* armed, soonest first */
    sd_loop_hook before_sleep;
    void *before_sleep_data;
};

int sd_loop_new(sd_loop **out)
{
    sd_loop *l = calloc(1, sizeof *l);
    if (!l)
        return SD_ENOMEM;
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    if (l->ep < 0) {
        int rc = -errno;
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

void sd_loop_free(sd_loop *l)
{
    if (!l)
        return;
    close(l->ep);
    free(l);
}

void sd_loop_set_before_sleep(sd_loop *l, sd_loop_hook fn, void *data)
{
    l->before_sleep = fn;
    l->before_sleep_data = data;
}

int sd_loop_io_start(sd_loop *l, sd_loop_io *io, int fd, uint32_t events, sd_loop_io_cb cb)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};
    io->cb = cb;
    io->fd = fd;
    io->events = events;
    if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        io->fd = -1;
        return -errno;
    }
    return 0;
}

void sd_loop_io_set(sd_loop *l, sd_loop_io *io, uint32_t events)
{
    if (io->fd < 0 || events == io->events)
        return; /* the common case: no system call */
    struct epoll_event ev = {.events = events, .data.ptr = io};
    epoll_ctl(l->ep, EPOLL_CTL_MOD, io->fd, &ev);
    io->events = events;
}

void sd_loop_io_stop(sd_loop *l, sd_loop_io *io)
{
    if (io->fd < 0)
        return;
    epoll_ctl(l->ep, EPOLL_CTL_DEL, io->fd, NULL);
    io->fd = -1;
}

void sd_loop_timer_stop(sd_loop *l, sd_loop_timer *t)
{
    if (!t->armed)
        return;
    sd_loop_timer **p = &l->timers;
    while (*p != t)
        p = &(*p)->next;
    *p = t->next;
    t->armed = false;
}

void sd_loop_timer_start(sd_loop *l, sd_loop_timer *t, int64_t after_ms, sd_loop_timer_cb cb)
{
    sd_loop_timer_stop(l, t);
    t->cb = cb;
    t->due_ns = sd_mono_ns() + after_ms * 1000000;
    sd_loop_timer **p = &l->timers;
    while (*p && (*p)->due_ns <= t->due_ns)
        p = &(*p)->next;
    t->next = *p;
    *p = t;
    t->armed = true;
}

/* How long the next wait may last: until the soonest timer, at most
 * MAX_WAIT_MS. */
static int wait_ms(sd_loop *l)
{
    if (!l->timers)
        return MAX_WAIT_MS;
    int64_t ms = (l->timers->due_ns - sd_mono_ns() + 999999) / 1000000;
    return ms < 0 ? 0 : ms > MAX_WAIT_MS ? MAX_WAIT_MS : (int)ms;
}

/* Runs the timers due now, soonest first (one started again from its
 * callback runs again when it is due). */
static void run_timers(sd_loop *l)
{
    int64_t now = sd_mono_ns();
    while (l->timers && l->timers->due_ns <= now) {
        sd_loop_timer *t = l->timers;
        l->timers = t->next;
        t->armed = false;
        t->next = NULL;
        t->cb(t);
    }
}

void sd_loop_run(sd_loop *l)
{
    struct epoll_event evs[MAX_EVENTS];
    while (!atomic_load(&l->stop)) {
        if (l->before_sleep)
            l->before_sleep(l->before_sleep_data);
        int n = epoll_wait(l->ep, evs, MAX_EVENTS, wait_ms(l));
        for (int i = 0; i < n; i++) {
            sd_loop_io *io = evs[i].data.ptr;
            io->cb(io, evs[i].events);
        }
        run_timers(l);
    }
}

void sd_loop_stop(sd_loop *l)
{
    atomic_store(&l->stop, true);
}
