/* clockshift.c - an LD_PRELOAD shim that moves sessiond's wall clock, so
 * that tests of timeouts advance time instead of sleeping through it (and
 * cannot fail because a slow machine took longer than a margin).
 *
 * CLOCK_REALTIME (and time(), gettimeofday()) read as the real time plus the
 * milliseconds held in the file named by SD_CLOCK_SHIFT_FILE: 8 bytes, a
 * little-endian int64, rewritten in place by the test (tests/e2e/conftest.py,
 * ShiftedClock). The file is mapped once and read on every call. The
 * monotonic clock is left alone: timers, request timeouts and the sweeper's
 * interval run at real speed. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static _Atomic(const volatile int64_t *) shift_map;

static int64_t shift_ms(void)
{
    const volatile int64_t *m = atomic_load(&shift_map);
    if (!m) {
        const char *path = getenv("SD_CLOCK_SHIFT_FILE");
        int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
        if (fd < 0)
            return 0;
        void *p = mmap(NULL, sizeof(int64_t), PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED)
            return 0;
        const volatile int64_t *expected = NULL;
        if (!atomic_compare_exchange_strong(&shift_map, &expected, (const volatile int64_t *)p))
            munmap(p, sizeof(int64_t)); /* another thread mapped it first */
        m = atomic_load(&shift_map);
    }
    return *m;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    if (!real_clock_gettime)
        real_clock_gettime = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real_clock_gettime(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        int64_t shift = shift_ms(); /* read once: the test may rewrite it meanwhile */
        int64_t ns = (int64_t)ts->tv_nsec + shift % 1000 * 1000000;
        ts->tv_sec += shift / 1000 + ns / 1000000000;
        ts->tv_nsec = ns % 1000000000;
    }
    return rc;
}

time_t time(time_t *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out)
        *out = ts.tv_sec;
    return ts.tv_sec;
}

int gettimeofday(struct timeval *tv, void *tz)
{
    (void)tz;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (!tv)
        return 0;
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}
