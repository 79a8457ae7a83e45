/*
 * clock.h - wall-clock time in milliseconds and its RFC 3339 text form.
 *
 * sessiond keeps every timestamp as int64 milliseconds since the Unix epoch
 * (UTC). The text form on the wire is "2026-11-28T02:33:35.123Z".
 */
#ifndef SD_CLOCK_H
#define SD_CLOCK_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SD_TIME_TEXT_LEN 24 /* "YYYY-MM-DDTHH:MM:SS.mmmZ" without the NUL */

/* Current wall-clock time, ms since the epoch. */
int64_t sd_now_ms(void);

/* Monotonic time in nanoseconds, for measuring durations. */
int64_t sd_mono_ns(void);

/* Monotonic time in milliseconds: for timeouts and deadlines, which a step
 * of the wall clock must neither fire nor hold off. */
int64_t sd_mono_ms(void);

/* Initialises cv to time its waits on the monotonic clock, so that a step of
 * the wall clock (NTP, an operator) neither stalls nor hurries a periodic
 * thread. Returns pthread_cond_init's result. */
int sd_cond_init_mono(pthread_cond_t *cv);

/* *ts = the monotonic clock now plus ms: an absolute deadline for
 * pthread_cond_timedwait on a condition made by sd_cond_init_mono. */
void sd_mono_deadline(struct timespec *ts, int64_t ms);

/* The monotonic instant ns (on sd_mono_ns's scale) as a timespec: an
 * absolute deadline for pthread_cond_timedwait, as sd_mono_deadline. */
struct timespec sd_mono_ts(int64_t ns);

/* Writes ms as RFC 3339 UTC with milliseconds into out (at least
 * SD_TIME_TEXT_LEN + 1 bytes). Returns out. */
char *sd_time_format(int64_t ms, char *out);

/* Parses an RFC 3339 date-time ("Z" or "+hh:mm" offset, optional fraction of
 * any length, truncated to ms). Returns 0 and sets *ms, or SD_EINVALID. */
int sd_time_parse(const char *s, int64_t *ms);

/* Parses a duration: "500ms", "2s", "5m", "1h", "30d" or a bare integer of
 * seconds. Returns 0 and sets *ms, or SD_EINVALID. */
int sd_duration_parse(const char *s, int64_t *ms);

#endif
