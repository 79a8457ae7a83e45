/* log.c - the stderr logger of log.h. One write(2) a line keeps lines whole
 * when several threads log at once. */
#include "util/log.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/utf8.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static _Atomic int min_level = SD_LOG_INFO;
static const char *const names[] = {"debug", "info", "warn", "error"};

void sd_log_set_level(enum sd_log_level level)
{
    atomic_store(&min_level, (int)level);
}

enum sd_log_level sd_log_get_level(void)
{
    return (enum sd_log_level)atomic_load(&min_level);
}

int sd_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

const char *sd_log_quote(const char *v, char *buf, size_t n)
{
    if (!v)
        return "-";
    bool plain = *v != '\0';
    for (const unsigned char *p = (const unsigned char *)v; *p && plain; p++)
        plain = *p > 0x20 && *p < 0x7f && *p != '"' && *p != '=' && *p != '\\';
    if (plain)
        return v;
    sd_assert(n >= 3); /* two quotes and the NUL */
    size_t o = 0;
    buf[o++] = '"';
    for (const char *p = v; *p; p++) {
        bool esc = *p == '"' || *p == '\\';
        if (o + (esc ? 2 : 1) + 1 >= n) /* room for it, the quote and the NUL */
            break;
        if (esc)
            buf[o++] = '\\';
        buf[o++] = *p;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

void sd_log(enum sd_log_level level, const char *fmt, ...)
{
    if ((int)level < atomic_load(&min_level))
        return;
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);

    char line[4 * sizeof text + 64];
    char ts[SD_TIME_TEXT_LEN + 1];
    size_t n = (size_t)snprintf(line, sizeof line, "%s %s ", sd_time_format(sd_now_ms(), ts),
                                names[level]);
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)text, *end = p + strlen(text);
    while (p < end && n < sizeof line - 8) {
        uint32_t c;
        size_t k = sd_utf8_next(p, (size_t)(end - p), &c);
        if (k == 0 || c < 0x20 || c == 0x7f) { /* one byte as \xNN */
            line[n++] = '\\';
            line[n++] = 'x';
            line[n++] = hex[*p >> 4];
            line[n++] = hex[*p & 15];
            p++;
        } else if ((c >= 0x80 && c <= 0x9f) || c == 0x2028 || c == 0x2029) {
            n += (size_t)snprintf(line + n, sizeof line - n, "\\u%04x", (unsigned)c);
            p += k;
        } else {
            memcpy(line + n, p, k);
            n += k;
            p += k;
        }
    }
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}
