/*
 * ident.c - the identifier rule (session.h, sd_ident_check): what a
 * client-chosen identifier may hold before it can reach a header or a log
 * line.
 */
#include "session/session.h"
#include "util/utf8.h"

#include <stdbool.h>
#include <stdint.h>

static bool is_control(uint32_t c)
{
    return c < 0x20 || (c >= 0x7f && c <= 0x9f);
}

/* Unicode White_Space, plus U+FEFF: the characters JavaScript's \s and most
 * trim functions remove. */
static bool is_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000 || c == 0xfeff;
}

const char *sd_ident_check(const char *s, size_t len, size_t max)
{
    if (len == 0)
        return "must not be empty";
    if (len > max)
        return "is too long";
    const unsigned char *p = (const unsigned char *)s;
    uint32_t c = 0;
    bool all_space = true, first_space = false;
    for (size_t i = 0; i < len;) {
        size_t k = sd_utf8_next(p + i, len - i, &c);
        if (k == 0)
            return "must be valid UTF-8";
        if (is_control(c))
            return "must not contain control characters";
        if (c == 0x2028 || c == 0x2029)
            return "must not contain a line or paragraph separator";
        if (i == 0)
            first_space = is_space(c);
        all_space &= is_space(c);
        i += k;
    }
    if (all_space)
        return "must not be only whitespace";
    if (first_space)
        return "must not begin with whitespace";
    if (is_space(c)) /* the last character */
        return "must not end with whitespace";
    return NULL;
}
