/*
 * framing.h - the strict checks of request framing that http-parser leaves
 * to the server.
 *
 * Debian's http-parser 2.9.4 is built without HTTP_PARSER_STRICT. It takes a
 * bare LF for CRLF, any byte after a CR for its LF, any two bytes for the
 * CRLF after chunk data, skips everything up to a CR in a chunk extension,
 * and lets tabs and bytes >= 0x80 into the request target. A front end that
 * frames the same bytes another way could smuggle a request past it (RFC 9112
 * section 11.2). So server.c runs every request head and every chunked body
 * through these checks before the parser sees the bytes: what they accept is
 * framed by the lenient parser exactly as RFC 9112 frames it, and anything
 * else is answered 400 (413 for a chunk over the body limit) and the
 * connection closed.
 *
 * Pure functions over byte buffers: no allocation, no I/O, no globals.
 */
#ifndef SD_HTTP_FRAMING_H
#define SD_HTTP_FRAMING_H

#include <stddef.h>
#include <stdint.h>

/* Checks the first n bytes of a request head (the caller bounds n by its
 * head limit). Accepts only
 *
 *   method SP request-target SP HTTP/d.d CRLF  (method a token, target
 *                                               visible ASCII)
 *   *( field-name ":" field-value CRLF )       (name a token; value tabs,
 *                                               spaces, visible bytes)
 *   CRLF
 *
 * and no Transfer-Encoding in an HTTP/1.0 request (RFC 9112 section 6.1: its
 * framing is faulty). Returns NULL and sets *head_len to the length through
 * the empty line, or to 0 when the head has not all arrived and nothing is
 * wrong so far; or returns why the head is malformed (a static sentence for
 * a 400's detail; *head_len is then 0). */
const char *sd_http_check_head(const char *s, size_t n, size_t *head_len);

/* Where a chunked body's check stands between calls. Zero it at the start of
 * each body; its fields belong to sd_chunk_check. */
typedef struct sd_chunk_state {
    int state;
    uint64_t size; /* the chunk's size, then its bytes still to come */
    size_t line;   /* bytes of the current chunk-size line */
} sd_chunk_state;

/* Checks the next n bytes of a chunked body (RFC 9112 section 7.1: chunks,
 * the last chunk, trailer fields, the final CRLF), continuing where the last
 * call on st stopped. Sets *used to the bytes that belong to the body: all n,
 * or fewer when the body ends inside them (what follows is the next
 * request). Returns NULL, or why the framing is malformed (a static
 * sentence) with *status 400, or 413 when a chunk is larger than max_chunk;
 * *used then counts the bytes before the fault. */
const char *sd_chunk_check(sd_chunk_state *st, const char *s, size_t n, uint64_t max_chunk,
                           size_t *used, int *status);

/* True once sd_chunk_check has seen the body's final CRLF. */
int sd_chunk_done(const sd_chunk_state *st);

#endif
