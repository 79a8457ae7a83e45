/* Unit tests of http/framing.c: the strict request-head check and the
 * chunked-body check, including every way the input can be cut across reads
 * (each case is fed whole, at every split point, and a byte at a time). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "http/framing.h"

#include <stdio.h>
#include <string.h>

#define S(lit) lit, sizeof(lit) - 1

/* ---- the request head ---------------------------------------------------- */

/* A well-formed head followed by other bytes: its length is found, and every
 * prefix of it is "not all here yet" without an error. */
static void head_ok(const char *head, size_t n, const char *rest)
{
    char buf[1024];
    size_t len;
    snprintf(buf, sizeof buf, "%.*s%s", (int)n, head, rest);
    const char *why = sd_http_check_head(buf, strlen(buf), &len);
    if (why)
        fail_msg("head %.*s: unexpected error '%s'", (int)n, head, why);
    assert_int_equal(len, n);
    for (size_t cut = 0; cut < n; cut++) {
        why = sd_http_check_head(head, cut, &len);
        if (why || len)
            fail_msg("prefix of %zu bytes of %.*s: error '%s', len %zu", cut, (int)n, head,
                     why ? why : "-", len);
    }
}

/* A malformed head: refused with a reason containing want, whatever follows. */
static void head_bad(const char *head, size_t n, const char *want)
{
    size_t len = 99;
    const char *why = sd_http_check_head(head, n, &len);
    if (!why)
        fail_msg("head %.*s: accepted (len %zu), want an error about '%s'", (int)n, head, len,
                 want);
    if (!strstr(why, want))
        fail_msg("head %.*s: error '%s' does not mention '%s'", (int)n, head, why, want);
    assert_int_equal(len, 0);
}

static void heads_accepted(void **state)
{
    (void)state;
    head_ok(S("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "");
    head_ok(S("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "POST /next HTTP/1.1\r\n");
    head_ok(S("POST /sessions?a=%20&b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"), "hello");
    head_ok(S("GET /healthz HTTP/1.0\r\n\r\n"), "");
    /* values may hold tabs, spaces and obs-text, and be empty */
    head_ok(S("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\tb \x80\xff\r\nX-Empty:\r\n\r\n"), "");
    /* HTTP/1.1 may use Transfer-Encoding; HTTP/1.0 may use Content-Length */
    head_ok(S("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"), "0\r\n\r\n");
    head_ok(S("POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\n"), "{}");
    /* versions other than 1.x are left to the server's own answer */
    head_ok(S("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), "");
}

static void heads_refused(void **state)
{
    (void)state;
    /* line ends: a bare LF, or a CR followed by anything else */
    head_bad(S("GET / HTTP/1.1\nHost: x\r\n\r\n"), "bare LF");
    head_bad(S("GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n"), "bare LF");
    head_bad(S("GET / HTTP/1.1\r\nHost: x\r\n\n"), "bare LF");
    head_bad(S("GET / HTTP/1.1\nHost: x\n\n"), "bare LF");
    head_bad(S("GET / HTTP/1.1\rXHost: x\r\n\r\n"), "not followed by LF");
    head_bad(S("GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n"), "not followed by LF");
    head_bad(S("GET / HTTP/1.1\r\nHost: x\r\n\rX"), "not followed by LF");
    /* the request line */
    head_bad(S("GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n"), "request target");
    head_bad(S("GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n"), "request target");
    head_bad(S("GET /?q=\x80 HTTP/1.1\r\nHost: x\r\n\r\n"), "request target");
    head_bad(S("GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n"), "request target");
    head_bad(S("GET /a\0b HTTP/1.1\r\nHost: x\r\n\r\n"), "request target");
    head_bad(S("GET  / HTTP/1.1\r\nHost: x\r\n\r\n"), "request line");
    head_bad(S("GET /  HTTP/1.1\r\nHost: x\r\n\r\n"), "HTTP version");
    head_bad(S(" GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "request line");
    head_bad(S("GET /\r\nHost: x\r\n\r\n"), "request line");
    head_bad(S("GET / HTTP/1.1 \r\nHost: x\r\n\r\n"), "HTTP version");
    head_bad(S("GET / http/1.1\r\nHost: x\r\n\r\n"), "HTTP version");
    head_bad(S("GET / HTTP/11\r\nHost: x\r\n\r\n"), "HTTP version");
    head_bad(S("G@T / HTTP/1.1\r\nHost: x\r\n\r\n"), "method");
    head_bad(S("GARBAGE\r\n\r\n"), "request line");
    /* header lines */
    head_bad(S("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n  folded\r\n\r\n"), "folding");
    head_bad(S("GET / HTTP/1.1\r\nHost: x\r\nX : a\r\n\r\n"), "whitespace before a header colon");
    head_bad(S("GET / HTTP/1.1\r\nHost: x\r\nX Y: a\r\n\r\n"), "whitespace");
    head_bad(S("GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n"), "no colon");
    head_bad(S("GET / HTTP/1.1\r\nHost: x\r\n: a\r\n\r\n"), "no name");
    head_bad(S("GET / HTTP/1.1\r\nHost: x\r\nX(Y): a\r\n\r\n"), "token");
    head_bad(S("GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n"), "control character");
    head_bad(S("GET / HTTP/1.1\r\nHost: x\r\nX: a\x7f\r\n\r\n"), "control character");
    /* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing */
    head_bad(S("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), "HTTP/1.0");
    head_bad(S("POST / HTTP/1.0\r\ntransfer-encoding: gzip\r\nContent-Length: 3\r\n\r\n"),
             "HTTP/1.0");
}

static void head_errors_are_found_before_the_head_ends(void **state)
{
    (void)state;
    /* nothing more can make these right: no need to wait for the empty line */
    head_bad(S("GET /a\tb"), "request target");
    head_bad(S("GET / HTTP/1.1\nHost"), "bare LF");
    head_bad(S("GET / HTTP/1.1\r\nHost: x\r\nX: \x01"), "control character");
}

/* ---- a chunked body ------------------------------------------------------ */

#define MAX_CHUNK 65536

/* Feeds body to a fresh check in pieces of at most step bytes (0: whole), or
 * split once at split. Returns the error or NULL; *used totals the bytes
 * taken, *done whether the body ended, *status the last status. */
static const char *feed(const char *body, size_t n, size_t step, size_t split, size_t *used,
                        int *done, int *status)
{
    sd_chunk_state st = {0};
    size_t off = 0;
    const char *why = NULL;
    *status = 0;
    while (off < n && !why && !sd_chunk_done(&st)) {
        size_t take = step ? step : split ? (off < split ? split - off : n - off) : n - off;
        if (take > n - off)
            take = n - off;
        size_t u = 0;
        why = sd_chunk_check(&st, body + off, take, MAX_CHUNK, &u, status);
        assert_true(u <= take);
        if (!why && !sd_chunk_done(&st))
            assert_int_equal(u, take); /* all of it belongs to the body */
        off += u;
    }
    *used = off;
    *done = sd_chunk_done(&st);
    return why;
}

/* A well-formed body followed by rest: whatever the cuts, the check takes
 * exactly the body and ends there. */
static void chunked_ok(const char *body, size_t n, const char *rest)
{
    char buf[8192];
    size_t len = (size_t)snprintf(buf, sizeof buf, "%.*s%s", (int)n, body, rest), used;
    int done, status;
    for (size_t split = 0; split <= len; split++) {
        const char *why = feed(buf, len, 0, split, &used, &done, &status);
        if (why || !done || used != n)
            fail_msg("body %.*s split at %zu: error '%s', done %d, used %zu of %zu", (int)n, body,
                     split, why ? why : "-", done, used, n);
    }
    const char *why = feed(buf, len, 1, 0, &used, &done, &status);
    if (why || !done || used != n)
        fail_msg("body %.*s a byte at a time: error '%s', done %d, used %zu", (int)n, body,
                 why ? why : "-", done, used);
}

/* A malformed body: refused at byte `at` with `status` and a reason
 * containing want, however it is cut. */
static void chunked_bad(const char *body, size_t n, size_t at, int want_status, const char *want)
{
    size_t used;
    int done, status;
    for (size_t split = 0; split <= n; split++) {
        const char *why = feed(body, n, 0, split, &used, &done, &status);
        if (!why || !strstr(why, want) || status != want_status || used != at)
            fail_msg("body %.*s split at %zu: error '%s' (status %d) at %zu; want '%s' (%d) at "
                     "%zu",
                     (int)n, body, split, why ? why : "-", status, used, want, want_status, at);
    }
}

static void chunked_bodies_accepted(void **state)
{
    (void)state;
    chunked_ok(S("5\r\nhello\r\n0\r\n\r\n"), "");
    chunked_ok(S("5\r\nhello\r\n0\r\n\r\n"), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    chunked_ok(S("0\r\n\r\n"), "");
    chunked_ok(S("3\r\nabc\r\n00A\r\n0123456789\r\n000\r\n\r\n"), "");
    chunked_ok(S("5;name=value;q=\"a b\"\r\nhello\r\n0;last\r\n\r\n"), "");
    chunked_ok(S("5 ;a\r\nhello\r\n0\t; b\r\n\r\n"), "");
    /* chunk data is any bytes, CR and LF included */
    chunked_ok(S("4\r\n\r\n\n\r\r\n0\r\n\r\n"), "");
    chunked_ok(S("5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Empty:\r\n\r\n"), "x");
}

static void chunked_bodies_refused(void **state)
{
    (void)state;
    /* the CRLF after chunk data: exactly CRLF */
    chunked_bad(S("5\r\nhelloZZ0\r\n\r\n"), 8, 400, "longer than its size");
    chunked_bad(S("5\r\nhello\rZ0\r\n\r\n"), 9, 400, "not followed by LF");
    chunked_bad(S("5\r\nhello\n0\r\n\r\n"), 8, 400, "longer than its size");
    /* chunk-size lines */
    chunked_bad(S("5\rXhello\r\n0\r\n\r\n"), 2, 400, "not followed by LF");
    chunked_bad(S("5\nhello\r\n0\r\n\r\n"), 1, 400, "bare LF");
    chunked_bad(S("zz\r\n"), 0, 400, "hex digits");
    chunked_bad(S("-5\r\nhello\r\n0\r\n\r\n"), 0, 400, "hex digits");
    chunked_bad(S("5x\r\nhello\r\n0\r\n\r\n"), 1, 400, "not a hex digit");
    chunked_bad(S("5 x\r\nhello\r\n0\r\n\r\n"), 2, 400, "extension");
    chunked_bad(S("5 \r\nhello\r\n0\r\n\r\n"), 2, 400, "extension");
    chunked_bad(S("5;a\nhello\r\n0\r\n\r\n"), 3, 400, "bare LF");
    chunked_bad(S("5;a\x01\r\nhello\r\n0\r\n\r\n"), 3, 400, "control character");
    chunked_bad(S("5;a\x7f\r\nhello\r\n0\r\n\r\n"), 3, 400, "control character");
    /* the last chunk, trailers, the final CRLF */
    chunked_bad(S("0\n\r\n"), 1, 400, "bare LF");
    chunked_bad(S("0\r\n\n"), 3, 400, "bare LF");
    chunked_bad(S("0\r\n\rX"), 4, 400, "not followed by LF");
    chunked_bad(S("0\r\nX: 1\n\r\n"), 7, 400, "bare LF");
    chunked_bad(S("0\r\nX: 1\rX\r\n\r\n"), 8, 400, "not followed by LF");
    chunked_bad(S("0\r\nX: 1\r\n folded\r\n\r\n"), 9, 400, "folding");
    chunked_bad(S("0\r\nX : 1\r\n\r\n"), 4, 400, "field name");
    chunked_bad(S("0\r\nNoColon\r\n\r\n"), 10, 400, "field name");
    chunked_bad(S("0\r\n: 1\r\n\r\n"), 3, 400, "field name");
    chunked_bad(S("0\r\nX: \x01\r\n\r\n"), 6, 400, "control character");
    /* sizes over the body limit: 413 from the size line, before any data */
    chunked_bad(S("10001\r\n"), 4, 413, "larger than");
    chunked_bad(S("ffffffffffffffffffffff\r\n"), 4, 413, "larger than");
}

static void chunk_lines_are_bounded(void **state)
{
    (void)state;
    static char body[5000];
    memset(body, 'a', sizeof body);
    memcpy(body, "5;", 2);
    chunked_bad(body, sizeof body, 4096, 400, "longer than 4096 bytes");
    /* a line of exactly 4096 bytes (without its CRLF) passes */
    static const char tail[] = "\r\nhello\r\n0\r\n\r\n";
    char ok[4096 + sizeof tail];
    memset(ok, 'a', 4096);
    memcpy(ok, "5;", 2);
    memcpy(ok + 4096, tail, sizeof tail);
    chunked_ok(ok, sizeof ok - 1, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(heads_accepted),
        cmocka_unit_test(heads_refused),
        cmocka_unit_test(head_errors_are_found_before_the_head_ends),
        cmocka_unit_test(chunked_bodies_accepted),
        cmocka_unit_test(chunked_bodies_refused),
        cmocka_unit_test(chunk_lines_are_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
