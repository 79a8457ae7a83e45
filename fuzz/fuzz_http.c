/* fuzz_http.c - whole requests, bytes as a client sends them, to the real
 * HTTP server (epoll loops, http-parser, raw-head checks, router, every
 * handler) in this process, with a real embedded store in a temporary
 * directory. Each input is one connection: sent, half-closed, read to the
 * end. The oracle, besides the sanitizers: no status 5xx other than 501,
 * 503 and 505 ("nothing a client sends may return a 5xx other than 503";
 * 501 and 505 are HTTP-level answers to unsupported framing/versions). */
#include "api/api.h"
#include "http/server.h"
#include "policy.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static sd_app app;
static sd_http *http;
static struct sockaddr_in addr;

static void stop(void)
{
    if (sd_http_stop(http, 0))
        return; /* a handler still running: leave everything to the exit */
    sd_store_close(app.store);
    sd_http_free(http);
}

static void init(void)
{
    char dir[] = "/dev/shm/sessiond-fuzz-XXXXXX", err[256];
    OPENSSL_init_crypto(0, NULL); /* before atexit(stop): its exit handler then runs last */
    if (!mkdtemp(dir))
        abort();
    app.policy = fuzz_policy;
    app.auth_cookie = "session";
    sd_brlock_init(&app.keys_lock);
    sd_store_options so = {.commit_batch = 64, .max_queued = 1000};
    if (sd_store_open(&sd_store_sqlite, dir, &so, &app.store, err, sizeof err)) {
        fprintf(stderr, "store: %s\n", err);
        abort();
    }
    sd_http_options ho = {.listen = "127.0.0.1:0",
                          .threads = 1,
                          .max_connections = 64,
                          .max_connections_per_ip = 0,
                          .connection_timeout_s = 2,
                          .max_header_bytes = 16384,
                          .max_body_bytes = 65536,
                          .authorize = sd_api_authorize};
    if (sd_http_start(&ho, sd_api_routes, sd_api_nroutes, &app, &http, err, sizeof err)) {
        fprintf(stderr, "http: %s\n", err);
        abort();
    }
    const char *a = sd_http_address(http);

    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(strrchr(a, ':') + 1));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    atexit(stop);
}

/* Every status line in the reply: abort on a 5xx other than 501/503/505.
 * A status line starts the output or a line; "HTTP/1.1 5.." elsewhere is a
 * client's bytes quoted in a header or a (JSON, so one-line) body. */
static void check(const char *out, size_t n)
{
    for (const char *p = out; (p = memmem(p, (size_t)(out + n - p), "HTTP/1.1 ", 9)); p += 9) {
        if (out + n - p < 12)
            break;
        if (p != out && p[-1] != '\n')
            continue;
        if (p[9] == '5' && !(p[10] == '0' && (p[11] == '1' || p[11] == '3' || p[11] == '5'))) {
            fprintf(stderr, "server answered %.3s\n", p + 9);
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!http)
        init();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr)) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    size_t off = 0;
    while (off < size) {
        ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    shutdown(fd, SHUT_WR);
    static char out[1 << 20];
    size_t n = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (n < sizeof out && poll(&p, 1, 3000) > 0) {
        ssize_t r = recv(fd, out + n, sizeof out - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    check(out, n);
    return 0;
}
