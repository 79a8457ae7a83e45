/*
 * log.h - one event a line on stderr: "<RFC 3339 time> <level> <text>".
 *
 * The text is printf-formatted, then every control byte (CR, LF, ESC, ...)
 * is written as \xNN, so nothing a client sends can forge a line or drive a
 * terminal. Callers must never pass a token or key: the logger cannot know.
 */
#ifndef SD_LOG_H
#define SD_LOG_H

enum sd_log_level { SD_LOG_DEBUG, SD_LOG_INFO, SD_LOG_WARN, SD_LOG_ERROR };

/* Sets the lowest level that is written (default SD_LOG_INFO). Thread-safe. */
void sd_log_set_level(enum sd_log_level level);
enum sd_log_level sd_log_get_level(void);

/* Parses "debug", "info", "warn" or "error"; returns -1 when unknown. */
int sd_log_level_parse(const char *s);

void sd_log(enum sd_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sd_debug(...) sd_log(SD_LOG_DEBUG, __VA_ARGS__)
#define sd_info(...)  sd_log(SD_LOG_INFO, __VA_ARGS__)
#define sd_warn(...)  sd_log(SD_LOG_WARN, __VA_ARGS__)
#define sd_error(...) sd_log(SD_LOG_ERROR, __VA_ARGS__)

#endif
