/* jsonw.c - the JSON writer of jsonw.h. */
#include "util/jsonw.h"
#include "util/clock.h"
#include "util/utf8.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ---- escaping ------------------------------------------------------------ */

size_t sd_json_escape(const char *s, size_t n, char *out, size_t *replaced)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    size_t o = 0, bad = 0;
    while (p < end) {
        unsigned char c = *p;
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') { /* the usual case */
            out[o++] = (char)c;
            p++;
            continue;
        }
        if (c < 0x80) {
            const char *esc = c == '"'    ? "\\\""
                              : c == '\\' ? "\\\\"
                              : c == '\b' ? "\\b"
                              : c == '\t' ? "\\t"
                              : c == '\n' ? "\\n"
                              : c == '\f' ? "\\f"
                              : c == '\r' ? "\\r"
                                          : NULL;
            if (esc) {
                out[o++] = esc[0];
                out[o++] = esc[1];
            } else { /* the other C0 controls and DEL */
                memcpy(out + o, "\\u00", 4);
                out[o + 4] = hex[c >> 4];
                out[o + 5] = hex[c & 15];
                o += 6;
            }
            p++;
            continue;
        }
        uint32_t cp;
        size_t k = sd_utf8_next(p, (size_t)(end - p), &cp);
        if (k == 0) {
            memcpy(out + o, "\\ufffd", 6);
            o += 6;
            bad++;
            p++;
        } else if (cp == 0x2028 || cp == 0x2029) {
            memcpy(out + o, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
            o += 6;
            p += k;
        } else {
            memcpy(out + o, p, k);
            o += k;
            p += k;
        }
    }
    if (replaced)
        *replaced = bad;
    return o;
}

/* ---- the writer ------------------------------------------------------------ */

/* Room for n more bytes (and a NUL); false after failing. */
static bool reserve(sd_jw *w, size_t n)
{
    if (w->failed)
        return false;
    if (n > SIZE_MAX / 4 - w->len) {
        w->failed = true;
        return false;
    }
    if (w->len + n + 1 <= w->cap)
        return true;
    size_t cap = w->cap ? w->cap * 2 : 256;
    while (cap < w->len + n + 1)
        cap *= 2;
    char *b = sd_arena_grow(w->a, w->buf, w->len, cap);
    if (!b) {
        w->failed = true;
        return false;
    }
    w->buf = b;
    w->cap = cap;
    return true;
}

static void put(sd_jw *w, const char *s, size_t n)
{
    if (reserve(w, n)) {
        memcpy(w->buf + w->len, s, n);
        w->len += n;
    }
}

/* Before a value: a comma when it follows another inside an array. Inside an
 * object sd_jw_key writes the comma. */
static void before_value(sd_jw *w)
{
    if (w->depth == 0)
        return;
    uint32_t bit = 1u << (w->depth - 1);
    if (!(w->in_array & bit))
        return;
    if (w->started & bit)
        put(w, ",", 1);
    w->started |= bit;
}

void sd_jw_init(sd_jw *w, sd_arena *a, size_t hint)
{
    *w = (sd_jw){.a = a};
    reserve(w, hint);
}

static void open_level(sd_jw *w, char c, bool array)
{
    before_value(w);
    if (w->depth == SD_JW_DEPTH) {
        w->failed = true;
        return;
    }
    put(w, &c, 1);
    uint32_t bit = 1u << w->depth++;
    w->started &= ~bit;
    w->in_array = array ? w->in_array | bit : w->in_array & ~bit;
}

void sd_jw_object(sd_jw *w)
{
    open_level(w, '{', false);
}

void sd_jw_array(sd_jw *w)
{
    open_level(w, '[', true);
}

void sd_jw_end(sd_jw *w)
{
    if (w->depth == 0) {
        w->failed = true;
        return;
    }
    uint32_t bit = 1u << --w->depth;
    put(w, w->in_array & bit ? "]" : "}", 1);
}

void sd_jw_key(sd_jw *w, const char *key)
{
    if (w->depth > 0) {
        uint32_t bit = 1u << (w->depth - 1);
        if (w->started & bit)
            put(w, ",", 1);
        w->started |= bit;
    }
    size_t n = strlen(key);
    if (!reserve(w, 6 * n + 3))
        return;
    w->buf[w->len++] = '"';
    size_t bad;
    w->len += sd_json_escape(key, n, w->buf + w->len, &bad);
    w->replaced += bad;
    w->buf[w->len++] = '"';
    w->buf[w->len++] = ':';
}

size_t sd_jw_strn(sd_jw *w, const char *s, size_t n)
{
    before_value(w);
    if (n > SIZE_MAX / 8 || !reserve(w, 6 * n + 2))
        return 0;
    size_t bad;
    w->buf[w->len++] = '"';
    w->len += sd_json_escape(s, n, w->buf + w->len, &bad);
    w->buf[w->len++] = '"';
    w->replaced += bad;
    return bad;
}

size_t sd_jw_str(sd_jw *w, const char *s)
{
    return sd_jw_strn(w, s, strlen(s));
}

void sd_jw_int(sd_jw *w, int64_t v)
{
    before_value(w);
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[sizeof tmp - 1 - n++] = '-';
    put(w, tmp + sizeof tmp - n, n);
}

void sd_jw_bool(sd_jw *w, bool v)
{
    before_value(w);
    put(w, v ? "true" : "false", v ? 4 : 5);
}

void sd_jw_null(sd_jw *w)
{
    before_value(w);
    put(w, "null", 4);
}

void sd_jw_raw(sd_jw *w, const char *text, size_t n)
{
    before_value(w);
    put(w, text, n);
}

const char *sd_jw_done(sd_jw *w, size_t *len)
{
    if (!reserve(w, 0))
        return NULL;
    w->buf[w->len] = '\0';
    *len = w->len;
    return w->buf;
}

void sd_jw_time(sd_jw *w, int64_t ms)
{
    char t[SD_TIME_TEXT_LEN + 1];
    sd_jw_strn(w, sd_time_format(ms, t), SD_TIME_TEXT_LEN);
}

void sd_jw_json(sd_jw *w, const json_t *v)
{
    if (json_is_string(v)) {
        sd_jw_strn(w, json_string_value(v), json_string_length(v));
        return;
    }
    char small[512];
    size_t n = json_dumpb(v, small, sizeof small, JSON_COMPACT | JSON_ENCODE_ANY);
    char *buf = n > sizeof small ? malloc(n) : small;
    if (n == 0 || !buf ||
        (buf != small && json_dumpb(v, buf, n, JSON_COMPACT | JSON_ENCODE_ANY) != n))
        w->failed = true;
    else
        sd_jw_raw(w, buf, n);
    if (buf != small)
        free(buf);
}
