/*
 * loop.c - the event loop of loop.h: one epoll instance, the timers in a
 * binary min-heap, a before-sleep hook.
 *
 * A turn: the hook, one epoll_wait (up to 128 events, no longer than the
 * next timer or MAX_WAIT_MS), each event's callback in the order epoll
 * gave them, then the timers that are due. The heap is linked through the
 * timers (as libuv's heap-inl.h): each node has its parent and two
 * children, the tree is complete, and the path to position n (1-based,
 * level order) is the bits of n below its highest, 0 left and 1 right. So
 * starting or stopping a timer is O(log n) and allocates nothing, which
 * matters when every connection has one (conn.c: its request, idle or
 * handshake timeout).
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
    sd_loop_timer *heap; /* armed timers: the soonest at the root */
    size_t ntimers;
    uint64_t seq;   /* timers started so far */
    int64_t now_ns; /* the loop's time (sd_loop_now_ns) */
    sd_loop_hook before_sleep;
    void *before_sleep_data;
};

int sd_loop_new(sd_loop **out)
{
    sd_loop *l = calloc(1, sizeof *l);
    if (!l)
        return SD_ENOMEM;
    l->now_ns = sd_mono_ns();
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

/* ---- timers: the heap ---------------------------------------------------- */

/* Whether a runs before b: sooner, or as soon and started first. */
static bool runs_before(const sd_loop_timer *a, const sd_loop_timer *b)
{
    return a->due_ns < b->due_ns || (a->due_ns == b->due_ns && a->seq < b->seq);
}

/* Swaps child c with its parent p in the tree. */
static void swap_with_parent(sd_loop *l, sd_loop_timer *p, sd_loop_timer *c)
{
    sd_loop_timer *gp = p->parent, *cl = c->left, *cr = c->right;
    if (p->left == c) {
        c->left = p;
        c->right = p->right;
        if (c->right)
            c->right->parent = c;
    } else {
        c->right = p;
        c->left = p->left;
        if (c->left)
            c->left->parent = c;
    }
    p->left = cl;
    p->right = cr;
    if (cl)
        cl->parent = p;
    if (cr)
        cr->parent = p;
    p->parent = c;
    c->parent = gp;
    if (!gp)
        l->heap = c;
    else if (gp->left == p)
        gp->left = c;
    else
        gp->right = c;
}

/* The link that holds (or will hold) the node at 1-based position n. */
static sd_loop_timer **slot_of(sd_loop *l, size_t n, sd_loop_timer **parent)
{
    sd_loop_timer **slot = &l->heap;
    *parent = NULL;
    for (int bit = 62 - __builtin_clzll((unsigned long long)n); bit >= 0; bit--) {
        *parent = *slot;
        slot = (n >> bit) & 1 ? &(*parent)->right : &(*parent)->left;
    }
    return slot;
}

static void heap_insert(sd_loop *l, sd_loop_timer *t)
{
    sd_loop_timer *parent;
    sd_loop_timer **slot = slot_of(l, l->ntimers + 1, &parent);
    t->left = t->right = NULL;
    t->parent = parent;
    *slot = t;
    l->ntimers++;
    while (t->parent && runs_before(t, t->parent))
        swap_with_parent(l, t->parent, t);
}

/* Takes t out: the last node takes its place, then moves down or up. */
static void heap_remove(sd_loop *l, sd_loop_timer *t)
{
    sd_loop_timer *parent;
    sd_loop_timer **slot = slot_of(l, l->ntimers, &parent);
    sd_loop_timer *last = *slot;
    *slot = NULL;
    l->ntimers--;
    if (last != t) {
        last->left = t->left;
        last->right = t->right;
        last->parent = t->parent;
        if (last->left)
            last->left->parent = last;
        if (last->right)
            last->right->parent = last;
        if (!t->parent)
            l->heap = last;
        else if (t->parent->left == t)
            t->parent->left = last;
        else
            t->parent->right = last;
        for (;;) {
            sd_loop_timer *first = last;
            if (last->left && runs_before(last->left, first))
                first = last->left;
            if (last->right && runs_before(last->right, first))
                first = last->right;
            if (first == last)
                break;
            swap_with_parent(l, last, first);
        }
        while (last->parent && runs_before(last, last->parent))
            swap_with_parent(l, last->parent, last);
    }
    t->parent = t->left = t->right = NULL;
    t->armed = false;
}

void sd_loop_timer_stop(sd_loop *l, sd_loop_timer *t)
{
    if (t->armed)
        heap_remove(l, t);
}

void sd_loop_timer_start_at(sd_loop *l, sd_loop_timer *t, int64_t due_ns, sd_loop_timer_cb cb)
{
    sd_loop_timer_stop(l, t);
    t->cb = cb;
    t->due_ns = due_ns;
    t->seq = l->seq++;
    t->armed = true;
    heap_insert(l, t);
}

void sd_loop_timer_start(sd_loop *l, sd_loop_timer *t, int64_t after_ms, sd_loop_timer_cb cb)
{
    sd_loop_timer_start_at(l, t, l->now_ns + after_ms * 1000000, cb);
}

int64_t sd_loop_now_ns(const sd_loop *l)
{
    return l->now_ns;
}

int64_t sd_loop_update_time(sd_loop *l)
{
    return l->now_ns = sd_mono_ns();
}

/* How long the next wait may last: until the soonest timer, at most
 * MAX_WAIT_MS. From the time run_timers read just before (what before_sleep
 * took since can only make the wait end late by as much: timers here are
 * timeouts of seconds, and one clock read a turn is spared). */
static int wait_ms(sd_loop *l)
{
    if (!l->heap)
        return MAX_WAIT_MS;
    int64_t ms = (l->heap->due_ns - l->now_ns + 999999) / 1000000;
    return ms < 0 ? 0 : ms > MAX_WAIT_MS ? MAX_WAIT_MS : (int)ms;
}

/* Runs the timers due now, soonest first (one started again from its
 * callback runs again when it is due, not in this turn unless due_ns is
 * already past). */
static void run_timers(sd_loop *l)
{
    int64_t now = sd_loop_update_time(l);
    while (l->heap && l->heap->due_ns <= now) {
        sd_loop_timer *t = l->heap;
        heap_remove(l, t);
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
        sd_loop_update_time(l);
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
