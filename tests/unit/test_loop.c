/* Unit tests of http/loop.c: file events reach their callback with what
 * fired, a watch can change or stop, timers run once each in due order
 * (one started again from its callback runs again), the before-sleep hook
 * runs every turn, and a stop from a callback ends the run. Timers are
 * short (a few ms) and only their order is checked, never their timing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "http/loop.h"

#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct fixture {
    sd_loop *l;
    sd_loop_io io;
    int fd;
    int reads;
    uint32_t last;
    sd_loop_timer a, b;
    char order[8];
    int norder;
    int turns;
} fixture;

static fixture *fx; /* the callbacks' view of the running test */

static void on_readable(sd_loop_io *io, uint32_t events)
{
    uint64_t v;
    assert_ptr_equal(io, &fx->io);
    assert_int_equal(read(io->fd, &v, sizeof v), sizeof v);
    fx->reads++;
    fx->last = events;
    sd_loop_io_stop(fx->l, io);
    sd_loop_stop(fx->l);
}

static void io_events_reach_their_callback(void **state)
{
    (void)state;
    fixture f = {0};
    fx = &f;
    assert_int_equal(sd_loop_new(&f.l), 0);
    f.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(f.fd >= 0);
    assert_int_equal(sd_loop_io_start(f.l, &f.io, f.fd, 0, on_readable), 0);
    sd_loop_io_set(f.l, &f.io, EPOLLIN);
    assert_int_equal(f.io.events, EPOLLIN);
    uint64_t one = 1;
    assert_int_equal(write(f.fd, &one, sizeof one), sizeof one);
    sd_loop_run(f.l);
    assert_int_equal(f.reads, 1);
    assert_true(f.last & EPOLLIN);
    assert_int_equal(f.io.fd, -1);
    close(f.fd);
    sd_loop_free(f.l);
}

static void on_timer(sd_loop_timer *t)
{
    fx->order[fx->norder++] = t == &fx->a ? 'a' : 'b';
    if (t == &fx->a && fx->norder < 3)
        sd_loop_timer_start(fx->l, t, 1, on_timer); /* a periodic one */
    if (fx->norder == 4)
        sd_loop_stop(fx->l);
}

static void count_turn(void *data)
{
    ((fixture *)data)->turns++;
}

static void timers_run_in_due_order(void **state)
{
    (void)state;
    fixture f = {0};
    fx = &f;
    assert_int_equal(sd_loop_new(&f.l), 0);
    sd_loop_set_before_sleep(f.l, count_turn, &f);
    sd_loop_timer_start(f.l, &f.b, 40, on_timer);
    sd_loop_timer_start(f.l, &f.a, 1, on_timer);
    assert_true(f.a.armed && f.b.armed);
    sd_loop_timer_start(f.l, &f.b, 60, on_timer); /* moved, still once */
    sd_loop_run(f.l);
    f.order[f.norder] = '\0';
    assert_string_equal(f.order, "aaab");
    assert_false(f.a.armed || f.b.armed);
    assert_true(f.turns >= 2);
    sd_loop_free(f.l);
}

static void a_stopped_timer_never_runs(void **state)
{
    (void)state;
    fixture f = {0};
    fx = &f;
    assert_int_equal(sd_loop_new(&f.l), 0);
    sd_loop_timer_start(f.l, &f.a, 1, on_timer);
    sd_loop_timer_stop(f.l, &f.a);
    sd_loop_timer_stop(f.l, &f.a); /* twice is fine */
    f.norder = 3;                  /* b's run then stops the loop */
    sd_loop_timer_start(f.l, &f.b, 5, on_timer);
    sd_loop_run(f.l);
    f.order[f.norder] = '\0';
    assert_string_equal(f.order + 3, "b");
    sd_loop_free(f.l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(io_events_reach_their_callback),
        cmocka_unit_test(timers_run_in_due_order),
        cmocka_unit_test(a_stopped_timer_never_runs),
    };
    return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
