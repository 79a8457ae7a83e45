/* Unit tests of http/server.c's start and stop, on a real server in this
 * process: a start that fails after its loops are allocated leaves the
 * process's descriptors alone, and the stop waits for a handler still
 * running - until its deadline, and says when one outlives it. Nothing
 * here waits on a clock to decide an outcome: handlers are held and let go
 * with semaphores. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "http/server.h"
#include "util/clock.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static sem_t entered, release;
static atomic_bool finished;

/* Held until the test lets it go; replies, then marks itself finished. */
static void blocking_handler(sd_req *r, void *app)
{
    (void)app;
    sem_post(&entered);
    sem_wait(&release);
    sd_reply(r, 200, "text/plain", strdup("ok"), 2, NULL);
    atomic_store(&finished, true);
}

static const sd_route routes[] = {
    {"GET", "/block", blocking_handler, 0, NULL, 0}, /* not on_loop: runs in the pool */
};

static sd_http_options options(const char *listen, int threads, int handler_threads)
{
    return (sd_http_options){.listen = listen,
                             .threads = threads,
                             .max_connections = 16,
                             .max_connections_per_ip = 0,
                             .connection_timeout_s = 30,
                             .max_header_bytes = 16384,
                             .max_body_bytes = 65536,
                             .handler_threads = handler_threads};
}

static int connect_to(const char *address)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    a.sin_port = htons((uint16_t)atoi(strrchr(address, ':') + 1));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Starts a server with a pool of one, and one request held in its handler. */
static sd_http *start_with_a_held_handler(int *client)
{
    char err[256];
    sd_http *h = NULL;
    sd_http_options o = options("127.0.0.1:0", 1, 1);
    sem_init(&entered, 0, 0);
    sem_init(&release, 0, 0);
    atomic_store(&finished, false);
    if (sd_http_start(&o, routes, 1, NULL, &h, err, sizeof err))
        fail_msg("start: %s", err);
    *client = connect_to(sd_http_address(h));
    static const char req[] = "GET /block HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(send(*client, req, sizeof req - 1, MSG_NOSIGNAL), (ssize_t)(sizeof req - 1));
    sem_wait(&entered);
    return h;
}

static void failed_start_leaves_descriptor_0_alone(void **state)
{
    (void)state;
    /* A port held without SO_REUSEPORT: the first loop cannot listen on it,
     * so the start fails with the other loops never reached. */
    int busy = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof a;
    assert_int_equal(bind(busy, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(busy, 1), 0);
    assert_int_equal(getsockname(busy, (struct sockaddr *)&a, &sl), 0);
    char listen_at[64];
    snprintf(listen_at, sizeof listen_at, "127.0.0.1:%d", ntohs(a.sin_port));

    /* Descriptor 0 is a pipe of ours for the test (the original is kept). */
    int saved = fcntl(0, F_DUPFD_CLOEXEC, 3), p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(dup2(p[0], 0), 0);

    char err[256] = "";
    sd_http *h = NULL;
    sd_http_options o = options(listen_at, 4, 0);
    int rc = sd_http_start(&o, routes, 1, NULL, &h, err, sizeof err);
    int fd0_open = fcntl(0, F_GETFD) != -1;
    char byte = 0;
    ssize_t w = write(p[1], "x", 1), r = fd0_open ? read(0, &byte, 1) : -1;

    if (saved >= 0) {
        dup2(saved, 0);
        close(saved);
    } else {
        close(0);
    }
    close(p[0]);
    close(p[1]);
    close(busy);
    assert_int_not_equal(rc, 0);
    assert_null(h);
    assert_non_null(strstr(err, "cannot listen"));
    assert_true(fd0_open); /* the unreached loops' descriptors were 0, and closed */
    assert_int_equal(w, 1);
    assert_int_equal(r, 1);
    assert_int_equal(byte, 'x');
}

static void stop_waits_for_a_running_handler_until_the_deadline(void **state)
{
    (void)state;
    int client;
    sd_http *h = start_with_a_held_handler(&client);
    sd_http_drain(h);
    int64_t deadline = sd_mono_ns() + 3000000000LL;
    /* The handler is never let go meanwhile: the stop waits for it until the
     * deadline, then says one is still running (and frees nothing). */
    assert_int_equal(sd_http_stop(h, deadline), 1);
    assert_true(sd_mono_ns() >= deadline);
    assert_false(atomic_load(&finished));

    /* Let go, it replies into the stopped server; stopped again, the stop
     * returns only once it has finished. */
    sem_post(&release);
    assert_int_equal(sd_http_stop(h, sd_mono_ns() + 60000000000LL), 0);
    assert_true(atomic_load(&finished));
    sd_http_free(h); /* its request, connection and reply: the leak check sees them freed */

    /* The late reply was dropped: the client sees the close, no answer. */
    char buf[64];
    assert_true(recv(client, buf, sizeof buf, 0) <= 0);
    close(client);
}

struct stopper {
    sd_http *h;
    int rc;
    bool finished_at_return;
};

static void *stop_thread(void *arg)
{
    struct stopper *s = arg;
    s->rc = sd_http_stop(s->h, sd_mono_ns() + 60000000000LL);
    s->finished_at_return = atomic_load(&finished);
    return NULL;
}

static void stop_returns_after_the_handler_finished(void **state)
{
    (void)state;
    int client;
    struct stopper s = {.rc = -1};
    s.h = start_with_a_held_handler(&client);
    sd_http_drain(s.h);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, stop_thread, &s), 0);
    sem_post(&release); /* before or after the stop began: either way it must wait */
    pthread_join(t, NULL);
    assert_int_equal(s.rc, 0);
    assert_true(s.finished_at_return);
    sd_http_free(s.h);
    close(client);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(failed_start_leaves_descriptor_0_alone),
        cmocka_unit_test(stop_waits_for_a_running_handler_until_the_deadline),
        cmocka_unit_test(stop_returns_after_the_handler_finished),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
