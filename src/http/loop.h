/*
 * loop.h - a small event loop: file events and timers on one thread, in the
 * spirit of Redis's ae.h. The poller is epoll (Linux); event masks are
 * epoll's EPOLL* bits, level-triggered.
 *
 * It knows nothing of HTTP: the HTTP layer runs one loop per --threads,
 * each with its listener, its wake-up eventfd and its connections, and
 * other sockets (a PostgreSQL or Redis connection) could join a loop the
 * same way. A loop and everything registered on it belong to the thread
 * that runs it; only sd_loop_stop may be called from another thread.
 *
 * Registrations are structs the caller embeds in its own objects (as
 * libuv's uv__io_t): the loop keeps pointers to them and never frees
 * them. A callback may stop or free its own io or timer, and register
 * others. Thousands of timers are fine (a connection's timeout is one).
 */
#ifndef SD_HTTP_LOOP_H
#define SD_HTTP_LOOP_H

#include <stdbool.h>
#include <stdint.h>

typedef struct sd_loop sd_loop;
typedef struct sd_loop_io sd_loop_io;
typedef struct sd_loop_timer sd_loop_timer;

/* A file event: called on the loop's thread with the events that fired. */
typedef void (*sd_loop_io_cb)(sd_loop_io *io, uint32_t events);
/* A timer: called once on the loop's thread when due (start it again from
 * the callback for a periodic one). */
typedef void (*sd_loop_timer_cb)(sd_loop_timer *t);
/* Called on the loop's thread before every wait for events. */
typedef void (*sd_loop_hook)(void *data);

struct sd_loop_io {
    sd_loop_io_cb cb;
    int fd;          /* -1 when not registered */
    uint32_t events; /* what the loop watches now */
};

/* A timer: the loop's fields are its node in the loop's heap (a binary
 * tree linked through the timers themselves, so starting and stopping
 * allocate nothing and cost O(log n) in the timers armed). */
struct sd_loop_timer {
    sd_loop_timer_cb cb;
    int64_t due_ns; /* sd_mono_ns clock */
    uint64_t seq;   /* start order: timers due at the same time run in it */
    bool armed;
    sd_loop_timer *parent, *left, *right;
};

/* Creates a loop (nothing registered). Returns 0 or a negative SD_E* code
 * (errno passed through). The caller frees it with sd_loop_free. */
int sd_loop_new(sd_loop **out);
/* Frees the loop; what is still registered is forgotten, not freed. */
void sd_loop_free(sd_loop *l);

/* Sets the hook called before every wait (NULL: none). */
void sd_loop_set_before_sleep(sd_loop *l, sd_loop_hook fn, void *data);

/* Watches fd for events (EPOLLIN, EPOLLOUT, EPOLLRDHUP, ...; 0 registers
 * it without watching). Returns 0 or a negative errno. */
int sd_loop_io_start(sd_loop *l, sd_loop_io *io, int fd, uint32_t events, sd_loop_io_cb cb);
/* Watches other events; no system call when they are unchanged. */
void sd_loop_io_set(sd_loop *l, sd_loop_io *io, uint32_t events);
/* Stops watching (before the caller closes the descriptor). */
void sd_loop_io_stop(sd_loop *l, sd_loop_io *io);

/* The loop's time on the sd_mono_ns clock: read once when a wait for
 * events returns (and by sd_loop_update_time), so the callbacks of one
 * turn share one clock read instead of each making its own, as libuv's
 * uv_now. Timeouts and deadlines use it; a duration that must be exact
 * (a request's latency) reads the clock. */
int64_t sd_loop_now_ns(const sd_loop *l);
/* Reads the clock into the loop's time and returns it. */
int64_t sd_loop_update_time(sd_loop *l);

/* Calls cb once, after_ms from the loop's time. Starting an armed timer
 * moves it. */
void sd_loop_timer_start(sd_loop *l, sd_loop_timer *t, int64_t after_ms, sd_loop_timer_cb cb);
/* The same at due_ns on the sd_mono_ns clock (in the past: the next turn). */
void sd_loop_timer_start_at(sd_loop *l, sd_loop_timer *t, int64_t due_ns, sd_loop_timer_cb cb);
void sd_loop_timer_stop(sd_loop *l, sd_loop_timer *t);

/* Runs the loop on the calling thread until sd_loop_stop. It waits for
 * events at most 250 ms at a time, so a stop is seen within that even
 * without a wake-up (writing to a watched eventfd wakes it at once). */
void sd_loop_run(sd_loop *l);
/* Asks the loop to return from sd_loop_run after the current turn; any
 * thread. */
void sd_loop_stop(sd_loop *l);

#endif
