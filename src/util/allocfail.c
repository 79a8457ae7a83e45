/*
 * allocfail.c - allocation-failure injection for tests (see allocfail.h).
 * Only in the sanitizer build (-DSD_ALLOC_FAULTS), which links with
 * -Wl,--wrap=malloc,... so that sessiond's own calls land in the __wrap_
 * functions below; __real_malloc is then the C library's (ASan's) malloc.
 */
#include "util/allocfail.h"

#ifdef SD_ALLOC_FAULTS

#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <sanitizer/common_interface_defs.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
ssize_t __real_getline(char **line, size_t *cap, FILE *f);

static _Atomic unsigned long count;   /* allocations since start or the last SIGUSR2 */
static _Atomic unsigned long failed;  /* of which were made to fail */
static _Atomic unsigned long fail_at; /* the one to fail; 0: none */
static _Atomic bool persist;          /* and every one after it */
static char control[4096];            /* the control file; "" without */
static bool trace;                    /* print the stack of each failure */
static unsigned long start_at;        /* at=N, armed by sd_allocfail_begin() */
static bool start_all;

/* Counts one allocation; true when it is the one to fail. */
static bool should_fail(void)
{
    unsigned long n = atomic_fetch_add(&count, 1) + 1;
    unsigned long at = atomic_load(&fail_at);
    if (at == 0 || n < at || (n > at && !atomic_load(&persist)))
        return false;
    atomic_fetch_add(&failed, 1);
    errno = ENOMEM; /* as malloc sets it */
    if (trace) {
        sd_warn("alloc faults: failing allocation %lu", n);
        __sanitizer_print_stack_trace();
    }
    return true;
}

/* ---- sessiond's own calls (-Wl,--wrap) --------------------------------- */

void *__wrap_malloc(size_t n)
{
    return should_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    if (p && n == 0)
        return __real_realloc(p, 0); /* a free */
    return should_fail() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return should_fail() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
    return should_fail() ? NULL : __real_strndup(s, n);
}

/* getline allocates when it has no buffer yet (every caller starts so). */
ssize_t __wrap_getline(char **line, size_t *cap, FILE *f)
{
    if (!*line && should_fail()) {
        errno = ENOMEM;
        return -1;
    }
    return __real_getline(line, cap, f);
}

/* ---- the libraries' hooks ---------------------------------------------- */

static void *lib_malloc(size_t n)
{
    return should_fail() ? NULL : __real_malloc(n);
}

static void *lib_realloc(void *p, size_t n)
{
    if (p && n == 0) {
        free(p);
        return NULL;
    }
    return should_fail() ? NULL : __real_realloc(p, n);
}

static void *sq_malloc(int n)
{
    return lib_malloc((size_t)n);
}

static void *sq_realloc(void *p, int n)
{
    return lib_realloc(p, (size_t)n);
}

static int sq_size(void *p)
{
    return p ? (int)malloc_usable_size(p) : 0;
}

static int sq_roundup(int n)
{
    return (n + 7) & ~7;
}

static int sq_init(void *arg)
{
    (void)arg;
    return SQLITE_OK;
}

static void sq_shutdown(void *arg)
{
    (void)arg;
}

static void *ossl_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return lib_malloc(n);
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return lib_realloc(p, n);
}

static void ossl_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    free(p);
}

/* ---- the setting ------------------------------------------------------- */

/* Parses `N`, `N+` or `off` at s; 0, or -1 when it is none of them. */
static int parse_at(const char *s, unsigned long *at, bool *all)
{
    *at = 0;
    *all = false;
    if (strcmp(s, "off") == 0)
        return 0;
    char *end;
    errno = 0;
    unsigned long n = strtoul(s, &end, 10);
    if (end == s || errno || n == 0 || *s == '-' || *s == '+')
        return -1;
    if (*end == '+') {
        *all = true;
        end++;
    }
    if (*end)
        return -1;
    *at = n;
    return 0;
}

static void arm(unsigned long at, bool all)
{
    atomic_store(&fail_at, 0);
    atomic_store(&count, 0);
    atomic_store(&failed, 0);
    atomic_store(&persist, all);
    atomic_store(&fail_at, at);
}

int sd_allocfail_init(char *err, size_t errlen)
{
    const char *spec = getenv("SESSIOND_ALLOC_FAULTS");
    if (!spec || !*spec)
        return 0;
    static const sqlite3_mem_methods sq = {sq_malloc,  free,    sq_realloc,  sq_size,
                                           sq_roundup, sq_init, sq_shutdown, NULL};
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &sq) != SQLITE_OK) {
        snprintf(err, errlen, "alloc faults: SQLite was initialized before the hook");
        return -1;
    }
    if (!CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free)) {
        snprintf(err, errlen, "alloc faults: OpenSSL allocated before the hook");
        return -1;
    }

    char item[4200];
    unsigned long at = 0;
    bool all = false;
    const char *p = spec;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n >= sizeof item) {
            snprintf(err, errlen, "alloc faults: an item of SESSIOND_ALLOC_FAULTS is too long");
            return -1;
        }
        memcpy(item, p, n);
        item[n] = '\0';
        p += n + (p[n] == ',');
        if (strncmp(item, "at=", 3) == 0 && parse_at(item + 3, &at, &all) == 0 && at > 0)
            continue;
        if (strcmp(item, "trace") == 0) {
            trace = true;
            continue;
        }
        if (strncmp(item, "control=", 8) == 0 && item[8] && n - 8 < sizeof control - 8) {
            memcpy(control, item + 8, n - 8 + 1);
            continue;
        }
        snprintf(err, errlen,
                 "alloc faults: expected at=N, at=N+, control=PATH or trace, not '%.200s'", item);
        return -1;
    }
    sd_warn("injecting allocation failures (SESSIOND_ALLOC_FAULTS): %s", spec);
    start_at = at;
    start_all = all;
    return 0;
}

/* At exit nothing fails any more: OpenSSL's own clean-up (its atexit
 * handler, registered earlier, so run after this one) allocates to free
 * its tables, and would leave them all behind otherwise. */
static void disarm_at_exit(void)
{
    atomic_store(&fail_at, 0);
}

void sd_allocfail_begin(void)
{
    atexit(disarm_at_exit);
    arm(start_at, start_all);
}

void sd_allocfail_signals(sigset_t *set)
{
    if (control[0])
        sigaddset(set, SIGUSR2);
}

void sd_allocfail_control(void)
{
    atomic_store(&fail_at, 0);
    unsigned long was = atomic_load(&count), was_failed = atomic_load(&failed);
    char buf[64] = "", ack[sizeof control + 8], tmp[sizeof control + 16];
    int fd = open(control, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    buf[n > 0 ? n : 0] = '\0';
    buf[strcspn(buf, " \r\n")] = '\0';
    unsigned long at;
    bool all;
    if (parse_at(buf, &at, &all) != 0) {
        sd_error("alloc faults: %s should hold N, N+ or off; disarmed", control);
        at = 0;
        all = false;
    }
    snprintf(ack, sizeof ack, "%s.ack", control);
    snprintf(tmp, sizeof tmp, "%s.ack.tmp", control);
    char line[96];
    int len = snprintf(line, sizeof line, "allocations %lu failed %lu\n", was, was_failed);
    arm(at, all); /* before the ack: once it is there, the new setting holds */
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write(fd, line, (size_t)len) == len;
    if (fd >= 0 && close(fd) != 0)
        ok = false;
    if (!ok || rename(tmp, ack) != 0)
        sd_error("alloc faults: cannot write %s: %s", ack, strerror(errno));
}

#endif
