/*
 * framing.c - the strict request-framing checks behind framing.h: the
 * request head (request line and header lines) and a chunked body, byte by
 * byte, so that only messages the lenient http-parser frames exactly as
 * RFC 9112 does ever reach it.
 *
 * Every line ends in CRLF. A bare LF, or a CR followed by anything but LF,
 * is refused where http-parser would take it for a line end (or swallow the
 * byte after the CR), because a front end that reads the line differently
 * sees a different request.
 */
#include "http/framing.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#define CHUNK_LINE_MAX 4096 /* a chunk-size line with its extensions */

static const char REQUEST_LINE[] =
    "the request line must be the method, one space, the target, one space and the "
    "HTTP version (GET /healthz HTTP/1.1)";
static const char HEAD_BARE_LF[] =
    "a line of the request head ends in a bare LF; lines end in CRLF";
static const char HEAD_BARE_CR[] =
    "a CR in the request head is not followed by LF; lines end in CRLF";
static const char BODY_BARE_LF[] =
    "a line of the chunked body ends in a bare LF; chunk-size lines, the CRLF after chunk data, "
    "trailer lines and the final empty line end in CRLF";
static const char BODY_BARE_CR[] =
    "a CR in the chunked body's framing is not followed by LF; its lines end in CRLF";

/* tchar, RFC 9110 section 5.6.2 */
static bool is_tchar(unsigned char ch)
{
    if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
        return true;
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* A byte of a field value or a chunk extension: HTAB, SP, VCHAR, obs-text. */
static bool is_field_byte(unsigned char ch)
{
    return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

static int hex_value(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* ---- the request head ---------------------------------------------------- */

/* The CRLF expected at u[i]. Returns NULL with *next past it, NULL with
 * *next 0 when it has not all arrived, or what is wrong. */
static const char *head_crlf(const unsigned char *u, size_t n, size_t i, size_t *next,
                             const char *other)
{
    *next = 0;
    if (i == n)
        return NULL;
    if (u[i] == '\n')
        return HEAD_BARE_LF;
    if (u[i] != '\r')
        return other;
    if (i + 1 == n)
        return NULL;
    if (u[i + 1] != '\n')
        return HEAD_BARE_CR;
    *next = i + 2;
    return NULL;
}

const char *sd_http_check_head(const char *s, size_t n, size_t *head_len)
{
    const unsigned char *u = (const unsigned char *)s;
    const char *why;
    size_t i = 0, next;
    *head_len = 0;

    /* method SP */
    while (i < n && is_tchar(u[i]))
        i++;
    if (i == n)
        return NULL;
    if (u[i] != ' ' || i == 0)
        return i > 0 && u[i] != '\r' && u[i] != '\n'
                   ? "the method holds a character that is not allowed in a token"
                   : REQUEST_LINE;
    /* request-target SP: visible ASCII only (a tab, a control byte or a
     * byte >= 0x80 must be percent-encoded) */
    size_t target = ++i;
    while (i < n && u[i] > 0x20 && u[i] < 0x7f)
        i++;
    if (i == n)
        return NULL;
    if (u[i] != ' ' || i == target)
        return u[i] == ' ' || u[i] == '\r' || u[i] == '\n'
                   ? REQUEST_LINE
                   : "the request target holds a byte that is not allowed (a control "
                     "character, a tab, a space or a byte >= 0x80); percent-encode it";
    /* HTTP-version = "HTTP/" DIGIT "." DIGIT */
    static const char version[] = "HTTP/d.d";
    static const char bad_version[] =
        "the request line must end in an HTTP version such as HTTP/1.1";
    for (size_t k = 0; k < sizeof version - 1; k++) {
        if (++i == n)
            return NULL;
        bool ok =
            version[k] == 'd' ? u[i] >= '0' && u[i] <= '9' : u[i] == (unsigned char)version[k];
        if (!ok)
            return bad_version;
    }
    bool http10 = u[i - 2] == '1' && u[i] == '0';
    if ((why = head_crlf(u, n, i + 1, &next, bad_version)) || !next)
        return why;
    i = next;

    /* *( field-name ":" field-value CRLF ) CRLF */
    bool transfer_encoding = false;
    for (;;) {
        if (i == n)
            return NULL;
        if (u[i] == '\r' || u[i] == '\n') { /* the empty line, or a bad line end */
            if ((why = head_crlf(u, n, i, &next, NULL)) || !next)
                return why;
            i = next;
            break;
        }
        if (u[i] == ' ' || u[i] == '\t')
            return "obsolete line folding is not accepted";
        size_t name = i;
        while (i < n && is_tchar(u[i]))
            i++;
        if (i == n)
            return NULL;
        if (u[i] != ':') {
            if (u[i] == '\r' || u[i] == '\n')
                return "a header line has no colon";
            if (u[i] != ' ' && u[i] != '\t')
                return "a header name holds a character that is not allowed in a token";
            while (i < n && (u[i] == ' ' || u[i] == '\t'))
                i++;
            if (i == n)
                return NULL;
            return u[i] == ':' ? "whitespace before a header colon"
                               : "a header name holds whitespace";
        }
        if (i == name)
            return "a header line has no name before its colon";
        if (i - name == 17 && strncasecmp(s + name, "Transfer-Encoding", 17) == 0)
            transfer_encoding = true;
        for (i++; i < n && u[i] != '\r' && u[i] != '\n'; i++)
            if (!is_field_byte(u[i]))
                return "a header holds a control character";
        if ((why = head_crlf(u, n, i, &next, NULL)) || !next)
            return why;
        i = next;
    }
    if (http10 && transfer_encoding)
        return "an HTTP/1.0 request cannot use Transfer-Encoding: its framing is faulty "
               "(RFC 9112 section 6.1); send Content-Length, or use HTTP/1.1";
    *head_len = i;
    return NULL;
}

/* ---- a chunked body ------------------------------------------------------ */

enum {
    CK_SIZE_START, /* zero: a new body starts here */
    CK_SIZE,
    CK_EXT_BWS, /* whitespace after the size: only ';' may follow */
    CK_EXT,
    CK_SIZE_LF,
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TRAILER_START,
    CK_TRAILER_NAME,
    CK_TRAILER_VALUE,
    CK_TRAILER_LF,
    CK_END_LF,
    CK_DONE,
};

/* One byte of framing. Returns NULL, or what is wrong (*status 413 for a
 * chunk over max_chunk). */
static const char *chunk_byte(sd_chunk_state *st, unsigned char ch, uint64_t max_chunk, int *status)
{
    if ((st->state == CK_SIZE || st->state == CK_EXT_BWS || st->state == CK_EXT) && ch != '\r' &&
        ++st->line > CHUNK_LINE_MAX)
        return "a chunk-size line with its extensions is longer than 4096 bytes";
    switch (st->state) {
    case CK_SIZE_START:
        if (hex_value(ch) < 0)
            return "a chunk must begin with its size in hex digits";
        st->size = (uint64_t)hex_value(ch);
        st->line = 1;
        st->state = CK_SIZE;
        return NULL;
    case CK_SIZE:
        if (hex_value(ch) >= 0) {
            if (st->size > (UINT64_MAX - 15) / 16 ||
                st->size * 16 + (uint64_t)hex_value(ch) > max_chunk) {
                *status = 413;
                return "a chunk is larger than the server accepts for a whole body";
            }
            st->size = st->size * 16 + (uint64_t)hex_value(ch);
        } else if (ch == ';') {
            st->state = CK_EXT;
        } else if (ch == ' ' || ch == '\t') {
            st->state = CK_EXT_BWS;
        } else if (ch == '\r') {
            st->state = CK_SIZE_LF;
        } else {
            return ch == '\n' ? BODY_BARE_LF
                              : "a chunk size holds a character that is not a hex digit";
        }
        return NULL;
    case CK_EXT_BWS:
        if (ch == ';')
            st->state = CK_EXT;
        else if (ch != ' ' && ch != '\t')
            return "only a chunk extension (';' and a name) may follow a chunk size";
        return NULL;
    case CK_EXT:
        if (ch == '\r')
            st->state = CK_SIZE_LF;
        else if (!is_field_byte(ch))
            return ch == '\n' ? BODY_BARE_LF : "a chunk extension holds a control character";
        return NULL;
    case CK_SIZE_LF:
        if (ch != '\n')
            return BODY_BARE_CR;
        st->state = st->size ? CK_DATA : CK_TRAILER_START;
        return NULL;
    case CK_DATA_CR:
        if (ch != '\r')
            return "chunk data must be followed by CRLF: the chunk is longer than its size "
                   "says";
        st->state = CK_DATA_LF;
        return NULL;
    case CK_DATA_LF:
        if (ch != '\n')
            return BODY_BARE_CR;
        st->state = CK_SIZE_START;
        return NULL;
    case CK_TRAILER_START:
        if (ch == '\r')
            st->state = CK_END_LF;
        else if (is_tchar(ch))
            st->state = CK_TRAILER_NAME;
        else
            return ch == '\n'                ? BODY_BARE_LF
                   : ch == ' ' || ch == '\t' ? "obsolete line folding is not accepted in a trailer"
                                             : "a trailer line must begin with a field name";
        return NULL;
    case CK_TRAILER_NAME:
        if (ch == ':')
            st->state = CK_TRAILER_VALUE;
        else if (!is_tchar(ch))
            return ch == '\n'
                       ? BODY_BARE_LF
                       : "a trailer line must be a field name (a token), a colon and a value";
        return NULL;
    case CK_TRAILER_VALUE:
        if (ch == '\r')
            st->state = CK_TRAILER_LF;
        else if (!is_field_byte(ch))
            return ch == '\n' ? BODY_BARE_LF : "a trailer field holds a control character";
        return NULL;
    case CK_TRAILER_LF:
        if (ch != '\n')
            return BODY_BARE_CR;
        st->state = CK_TRAILER_START;
        return NULL;
    case CK_END_LF:
        if (ch != '\n')
            return BODY_BARE_CR;
        st->state = CK_DONE;
        return NULL;
    default:
        return "bytes after the end of the chunked body"; /* the caller stops at CK_DONE */
    }
}

const char *sd_chunk_check(sd_chunk_state *st, const char *s, size_t n, uint64_t max_chunk,
                           size_t *used, int *status)
{
    const char *why = NULL;
    size_t i = 0;
    *status = 400;
    while (i < n && st->state != CK_DONE && !why) {
        if (st->state == CK_DATA) { /* the data itself: any bytes, counted */
            size_t take = n - i < st->size ? n - i : (size_t)st->size;
            i += take;
            st->size -= take;
            if (st->size == 0)
                st->state = CK_DATA_CR;
            continue;
        }
        if (!(why = chunk_byte(st, (unsigned char)s[i], max_chunk, status)))
            i++;
    }
    *used = i;
    return why;
}

int sd_chunk_done(const sd_chunk_state *st)
{
    return st->state == CK_DONE;
}
