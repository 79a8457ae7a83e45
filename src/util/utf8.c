/* utf8.c - the strict decoder of utf8.h (RFC 3629). */
#include "util/utf8.h"

size_t sd_utf8_next(const unsigned char *p, size_t n, uint32_t *c)
{
    static const uint32_t lead_mask[] = {0, 0x7f, 0x1f, 0x0f, 0x07};
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    size_t len = p[0] < 0x80             ? 1
                 : (p[0] & 0xe0) == 0xc0 ? 2
                 : (p[0] & 0xf0) == 0xe0 ? 3
                 : (p[0] & 0xf8) == 0xf0 ? 4
                                         : 0;
    if (len == 0 || len > n)
        return 0;
    uint32_t v = p[0] & lead_mask[len];
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (p[i] & 0x3f);
    }
    if (v < min[len] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *c = v;
    return len;
}

bool sd_utf8_valid(const char *s, size_t n)
{
    uint32_t c;
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = sd_utf8_next((const unsigned char *)s + i, n - i, &c)))
            return false;
    return true;
}
