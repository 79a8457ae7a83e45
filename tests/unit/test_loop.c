/* Unit tests of http/loop.c: file events reach their callback with what
 * fired, a watch can change or stop, timers run once each in due order
 * (one started again from its callback runs again), the before-sleep hook
 * runs every turn, and a stop from a callback ends the run; a thousand
 * timers started, moved and stopped at random (a printed seed) run in due
 * order, each once, and none that was stopped. Timers are short (a few
 * ms) or already due, and only their order is checked, never their
 * timing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "http/loop.h"
#include "util/clock.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ---- many timers: the heap ------------------------------------------------ */

#define MANY 1000

typedef struct many {
    sd_loop *l;
    sd_loop_timer t[MANY];
    bool stopped[MANY];
    int runs[MANY];
    int64_t last_due;
    uint64_t last_seq;
    int ran, expect;
    bool in_order;
} many;

static many *mx;

static void on_many(sd_loop_timer *t)
{
    many *m = mx;
    if (t->due_ns < m->last_due || (t->due_ns == m->last_due && t->seq < m->last_seq))
        m->in_order = false;
    m->last_due = t->due_ns;
    m->last_seq = t->seq;
    m->runs[t - m->t]++;
    if (++m->ran == m->expect)
        sd_loop_stop(m->l);
}

static void many_timers_run_in_due_order_once_each(void **state)
{
    (void)state;
    unsigned seed = getenv("SEED") ? (unsigned)strtoul(getenv("SEED"), NULL, 10) : 14u;
    printf("# many timers: SEED=%u\n", seed);
    srand(seed);
    static many m;
    m = (many){.in_order = true, .last_due = INT64_MIN};
    mx = &m;
    assert_int_equal(sd_loop_new(&m.l), 0);
    /* All already due (in the past), so the first turn runs them all. */
    int64_t base = sd_mono_ns() - 1000000000;
    for (int i = 0; i < MANY; i++)
        sd_loop_timer_start_at(m.l, &m.t[i], base - (rand() % 200) * 1000, on_many);
    for (int i = 0; i < MANY; i++) {
        int k = rand() % MANY, what = rand() % 3;
        if (what == 0) {
            sd_loop_timer_stop(m.l, &m.t[k]);
            m.stopped[k] = true;
        } else if (what == 1) {
            sd_loop_timer_start_at(m.l, &m.t[k], base - (rand() % 200) * 1000, on_many);
            m.stopped[k] = false;
        }
    }
    for (int i = 0; i < MANY; i++)
        m.expect += !m.stopped[i];
    assert_true(m.expect > 0);
    sd_loop_run(m.l);
    assert_true(m.in_order);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(m.runs[i], m.stopped[i] ? 0 : 1);
        assert_false(m.t[i].armed);
    }
    sd_loop_free(m.l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(io_events_reach_their_callback),
        cmocka_unit_test(timers_run_in_due_order),
        cmocka_unit_test(a_stopped_timer_never_runs),
        cmocka_unit_test(many_timers_run_in_due_order_once_each),
    };
    return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
