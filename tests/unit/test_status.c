/* Unit tests of http/status.c: every status code docs/openapi.yaml lists
 * among the responses of an operation has its RFC phrase in the server's
 * table (the status line and the problem title use it), and the table's
 * phrases are the RFCs' words. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "http/status.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* RFC 9110 section 15 (and RFC 6585 for 428, 429, 431, 511), written out
 * here independently of src/http/status.c. */
static const struct {
    int status;
    const char *phrase;
} rfc[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {305, "Use Proxy"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
    {511, "Network Authentication Required"},
};
#define NRFC (sizeof rfc / sizeof rfc[0])

static const char *rfc_phrase(int status)
{
    for (size_t i = 0; i < NRFC; i++)
        if (rfc[i].status == status)
            return rfc[i].phrase;
    return NULL;
}

/* docs/openapi.yaml, found from this file's path (make compiles it as
 * tests/unit/test_status.c from the repository root). */
static FILE *open_spec(char *path, size_t len)
{
    const char *at = strstr(__FILE__, "tests/unit/");
    snprintf(path, len, "%.*sdocs/openapi.yaml", at ? (int)(at - __FILE__) : 0, __FILE__);
    return fopen(path, "r");
}

static size_t indent_of(const char *line)
{
    size_t n = 0;
    while (line[n] == ' ')
        n++;
    return n;
}

/* The status codes that are keys directly under a "responses:" mapping of
 * the spec (quoted or not); ranges such as 4XX are skipped. Returns how many
 * it wrote to codes. */
static int spec_statuses(FILE *f, int *codes, int max)
{
    char line[1024];
    int n = 0;
    long responses = -1; /* indent of the "responses:" line we are under */
    long child = -1;     /* indent of its keys */
    while (fgets(line, sizeof line, f)) {
        size_t ind = indent_of(line);
        const char *t = line + ind;
        if (*t == '\n' || *t == '#' || *t == '\0')
            continue;
        if (responses >= 0 && (long)ind <= responses)
            responses = child = -1;
        if (strncmp(t, "responses:", 10) == 0 && (t[10] == '\n' || t[10] == ' ')) {
            responses = (long)ind;
            continue;
        }
        if (responses < 0)
            continue;
        if (child < 0)
            child = (long)ind;
        if ((long)ind != child)
            continue;
        const char *k = t + (*t == '\'' || *t == '"');
        if (isdigit((unsigned char)k[0]) && isdigit((unsigned char)k[1]) &&
            isdigit((unsigned char)k[2]) && (k[3] == ':' || k[3] == '\'' || k[3] == '"')) {
            int code = atoi(k);
            bool seen = false;
            for (int i = 0; i < n; i++)
                seen |= codes[i] == code;
            if (!seen && n < max)
                codes[n++] = code;
        }
    }
    return n;
}

static void every_status_in_the_openapi_file_has_its_phrase(void **state)
{
    (void)state;
    char path[4096];
    FILE *f = open_spec(path, sizeof path);
    if (!f)
        fail_msg("cannot open %s (run from the repository root, as make unit does)", path);
    int codes[64];
    int n = spec_statuses(f, codes, 64);
    fclose(f);
    if (n < 10)
        fail_msg("only %d status codes found under 'responses:' in %s: the scan is broken", n,
                 path);
    for (int i = 0; i < n; i++) {
        const char *want = rfc_phrase(codes[i]);
        if (!want)
            fail_msg("%s lists status %d, which this test's RFC table lacks: add its RFC 9110 "
                     "phrase here and in src/http/status.c",
                     path, codes[i]);
        const char *got = sd_http_reason(codes[i]);
        if (!got || strcmp(got, want) != 0)
            fail_msg("status %d (listed in %s): the server's phrase is '%s', want '%s'", codes[i],
                     path, got ? got : "(none)", want);
        print_message("%d %s\n", codes[i], got);
    }
}

static void phrases_are_the_rfc_words(void **state)
{
    (void)state;
    for (size_t i = 0; i < NRFC; i++) {
        const char *got = sd_http_reason(rfc[i].status);
        if (!got || strcmp(got, rfc[i].phrase) != 0)
            fail_msg("status %d: '%s', want '%s'", rfc[i].status, got ? got : "(none)",
                     rfc[i].phrase);
    }
}

static void unregistered_codes_get_their_class(void **state)
{
    (void)state;
    assert_null(sd_http_reason(418));
    assert_null(sd_http_reason(599));
    assert_string_equal(sd_http_reason_or_class(418), "Client Error");
    assert_string_equal(sd_http_reason_or_class(599), "Server Error");
    assert_string_equal(sd_http_reason_or_class(409), "Conflict");
    assert_string_equal(sd_http_reason_or_class(42), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_status_in_the_openapi_file_has_its_phrase),
        cmocka_unit_test(phrases_are_the_rfc_words),
        cmocka_unit_test(unregistered_codes_get_their_class),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
