/*
 * jsonw.h - a small JSON writer for the replies of the hot routes: text
 * appended into a buffer that grows in an arena (util/arena.h: the
 * request's, so no malloc once a connection is warm), no tree, no printf.
 * Jansson stays for parsing and for the cold routes; sd_jw_json writes one
 * of its values into the text.
 *
 * Strings are always written as valid JSON in valid UTF-8, whatever bytes
 * they are given:
 *   - '"' and '\' are escaped; every C0 control (0x00-0x1f) and DEL (0x7f)
 *     too: \b \t \n \f \r in their short forms, the others as \u00XX;
 *   - U+2028 and U+2029 as \u2028 and \u2029 (valid in JSON, but not in
 *     JavaScript source before ES2019, and line breaks to some log readers);
 *   - every byte that does not begin a valid UTF-8 sequence (a stray
 *     continuation byte, a truncated or overlong sequence, a surrogate,
 *     past U+10FFFF: util/utf8.h's strict decoder) is replaced by U+FFFD,
 *     written \ufffd: one per byte. Invalid UTF-8 is never emitted raw,
 *     and a string is never refused (the reply stays whole); the writer
 *     counts the replacements so that a caller that must not alter a value
 *     (an identifier) can refuse it instead.
 * Valid characters other than those are copied as they are.
 *
 * Errors: out of memory sets failed; sd_jw_done then returns NULL. Nothing
 * checks that the calls nest properly: the caller writes what it means.
 */
#ifndef SD_JSONW_H
#define SD_JSONW_H

#include "util/arena.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SD_JW_DEPTH 16

typedef struct sd_jw {
    sd_arena *a;
    char *buf; /* in a; the text so far */
    size_t len, cap;
    bool failed;     /* out of memory, or nesting deeper than SD_JW_DEPTH */
    size_t replaced; /* invalid bytes written as U+FFFD so far */
    int depth;
    uint32_t in_array; /* bit per level: an array (values need commas) */
    uint32_t started;  /* bit per level: something was written at that level */
} sd_jw;

/* Starts an empty text in arena a, with room for about hint bytes. */
void sd_jw_init(sd_jw *w, sd_arena *a, size_t hint);

void sd_jw_object(sd_jw *w); /* { */
void sd_jw_array(sd_jw *w);  /* [ */
void sd_jw_end(sd_jw *w);    /* } or ], whichever is open */

/* A member's name (with the comma before it when needed); then one value. */
void sd_jw_key(sd_jw *w, const char *key);

/* String values: n bytes of s, escaped as the file comment says; the
 * returned count is the invalid bytes replaced in this string. */
size_t sd_jw_strn(sd_jw *w, const char *s, size_t n);
size_t sd_jw_str(sd_jw *w, const char *s);
void sd_jw_int(sd_jw *w, int64_t v);
void sd_jw_bool(sd_jw *w, bool v);
void sd_jw_null(sd_jw *w);
/* A value written as given: n bytes of JSON the caller vouches for (a
 * number it formatted, say). */
void sd_jw_raw(sd_jw *w, const char *text, size_t n);

/* An RFC 3339 time (util/clock.h's sd_time_format) as a string value. */
void sd_jw_time(sd_jw *w, int64_t ms);

/* A jansson value (json_t) of any depth: a string through the escaping
 * above, any other value as jansson writes it compactly (its strings are
 * already valid UTF-8). Out of memory sets failed. */
struct json_t;
void sd_jw_json(sd_jw *w, const struct json_t *v);

/* The text (NUL-terminated, in the arena) and its length; NULL when out of
 * memory. */
const char *sd_jw_done(sd_jw *w, size_t *len);

/* Writes n bytes of s JSON-escaped (no quotes) into out, which holds at
 * least 6 * n bytes. Returns the length written; *replaced (may be NULL)
 * gets the invalid bytes written as \ufffd. What sd_jw_strn uses. */
size_t sd_json_escape(const char *s, size_t n, char *out, size_t *replaced);

#endif
