/*
 * allocfail.h - allocation-failure injection for tests (issue 17), as
 * SQLite does it: one counting hook through which every heap allocation of
 * sessiond's own code and of its libraries goes, and which makes the Nth
 * one fail. Compiled in only with -DSD_ALLOC_FAULTS (the sanitizer build the
 * suite runs); elsewhere the functions below are empty inlines.
 *
 * Routed through the hook: sessiond's own malloc, calloc, realloc, strdup,
 * strndup and getline (the sanitizer build links with -Wl,--wrap=...),
 * jansson (whose hook, util/jsonmem.h, calls malloc), SQLite
 * (SQLITE_CONFIG_MALLOC) and OpenSSL (CRYPTO_set_mem_functions). Not routed: libc's own allocations
 * (stdio, pthread_create, getaddrinfo), libpq and hiredis 0.14 (neither has a hook).
 *
 * SESSIOND_ALLOC_FAULTS, read once by sd_allocfail_init(), is a
 * comma-separated list of:
 *   at=N     fail the Nth allocation counted from sd_allocfail_begin()
 *            (main calls it once OpenSSL is set up: util/crypto_init.h);
 *   at=N+    that one and every one after it;
 *   control=PATH
 *            on SIGUSR2 the server re-reads PATH (`N`, `N+` or `off`),
 *            restarts the count there and arms it; it first writes
 *            `allocations A failed F` about the phase that just ended to
 *            PATH.ack (written whole: a temporary file renamed).
 *   trace    print the stack of every allocation made to fail (to stderr).
 * Every allocation is counted, armed or not, so `off` measures a path.
 * Once main returns (exit handlers) nothing fails any more.
 */
#ifndef SD_ALLOCFAIL_H
#define SD_ALLOCFAIL_H

#include <signal.h>
#include <stddef.h>

#ifdef SD_ALLOC_FAULTS
/* Installs the hook into the libraries and reads SESSIOND_ALLOC_FAULTS;
 * call first in main, before anything allocates. 0, or -1 with a sentence
 * in err (a malformed setting, or a library that allocated already). */
int sd_allocfail_init(char *err, size_t errlen);
/* Starts counting for at=N (allocations before it are not counted). */
void sd_allocfail_begin(void);
/* Adds SIGUSR2 to set when a control file is configured. */
void sd_allocfail_signals(sigset_t *set);
/* The main thread's answer to SIGUSR2 (see control= above). */
void sd_allocfail_control(void);
#else
static inline int sd_allocfail_init(char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    return 0;
}
static inline void sd_allocfail_begin(void) {}
static inline void sd_allocfail_signals(sigset_t *set)
{
    (void)set;
}
static inline void sd_allocfail_control(void) {}
#endif

#endif
