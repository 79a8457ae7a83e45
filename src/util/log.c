/* log.c - the stderr logger of log.h. One write(2) a line keeps lines whole
 * when several threads log at once. */
#include "util/log.h"
#include "util/clock.h"

#include <stdarg.h>
#include <stdatomic.h>
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
    for (const unsigned char *p = (const unsigned char *)text; *p && n < sizeof line - 6; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            line[n++] = '\\';
            line[n++] = 'x';
            line[n++] = hex[*p >> 4];
            line[n++] = hex[*p & 15];
        } else {
            line[n++] = (char)*p;
        }
    }
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}
