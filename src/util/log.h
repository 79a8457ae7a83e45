/*
 * log.h - one event a line on stderr: "<RFC 3339 time> <level> <text>".
 *
 * The text is printf-formatted, then every control byte (CR, LF, ESC, ...)
 * and every byte that is not part of valid UTF-8 is written as \xNN, and the
 * C1 controls and line/paragraph separators (U+0080-U+009F, U+2028,
 * U+2029) as \uNNNN, so nothing a client sends can forge a line or drive a
 * terminal. Events are "name key=value ...": a value a client chose must
 * go through sd_log_quote, so that it cannot forge another key=value.
 * Callers must never pass a token or key: the logger cannot know.
 */
#ifndef SD_LOG_H
#define SD_LOG_H

#include <stddef.h>

enum sd_log_level { SD_LOG_DEBUG, SD_LOG_INFO, SD_LOG_WARN, SD_LOG_ERROR };

/* Sets the lowest level that is written (default SD_LOG_INFO). Thread-safe. */
void sd_log_set_level(enum sd_log_level level);
enum sd_log_level sd_log_get_level(void);

/* Parses "debug", "info", "warn" or "error"; returns -1 when unknown. */
int sd_log_level_parse(const char *s);

void sd_log(enum sd_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A log field's value (logfmt): v itself when it is a non-empty run of
 * visible ASCII (no space) other than '"', '=' and '\\'; otherwise v in quotes
 * with '"' and '\\' escaped by a backslash, so that a value with spaces or
 * '=' stays one field. Returns v, or buf (n >= 3 bytes; SD_LOG_QUOTED(len)
 * for a value of len bytes) holding the quoted form, cut short if buf is
 * smaller (the closing quote is always there). NULL gives "-". */
const char *sd_log_quote(const char *v, char *buf, size_t n);
#define SD_LOG_QUOTED(len) (2 * (len) + 3)

#define sd_debug(...) sd_log(SD_LOG_DEBUG, __VA_ARGS__)
#define sd_info(...)  sd_log(SD_LOG_INFO, __VA_ARGS__)
#define sd_warn(...)  sd_log(SD_LOG_WARN, __VA_ARGS__)
#define sd_error(...) sd_log(SD_LOG_ERROR, __VA_ARGS__)

#endif
