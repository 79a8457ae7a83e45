/*
 * alloccount.c - an LD_PRELOAD shim that counts a process's heap calls, for
 * bench/alloc_per_request.py (`make alloc-count`). Not linked into sessiond.
 *
 *   cc -shared -fPIC -O2 -o build/alloccount.so bench/alloccount.c -ldl
 *   ALLOCCOUNT_FILE=/tmp/counts LD_PRELOAD=build/alloccount.so build/sessiond ...
 *
 * Counts malloc, calloc, realloc, free (of a non-NULL pointer),
 * posix_memalign, aligned_alloc and memalign, the bytes asked for and the
 * reallocs of NULL (so that new blocks minus frees shows a leak), with
 * relaxed atomic counters; then calls the next allocator (jemalloc, which
 * build/sessiond links, else the C library's) found with
 * dlsym(RTLD_NEXT).
 *
 * How the counts leave the process: the counters themselves live in the file
 * named by ALLOCCOUNT_FILE, mapped MAP_SHARED at load time. The file is
 * always current, so a reader takes a snapshot by reading it at any moment:
 * no signal handler (which would interrupt the server's epoll_wait), no
 * thread, no request file, nothing that allocates. The layout is struct
 * ac_file below: a magic, a version, then ac_nctr little-endian uint64s in
 * the order of enum ac_ctr. Without ALLOCCOUNT_FILE the shim counts into a
 * static struct nobody reads.
 *
 * dlsym can call calloc (for its error state) before the real calloc is
 * known: those early calls are served from a small static buffer, and free()
 * and realloc() recognise pointers into it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum ac_ctr {
    AC_MALLOC,
    AC_CALLOC,
    AC_REALLOC,
    AC_FREE,
    AC_MEMALIGN, /* posix_memalign, aligned_alloc, memalign */
    AC_BYTES,    /* bytes asked for by all of the above but free */
    AC_REALLOC0, /* those reallocs of NULL: new blocks, for the net count */
    AC_NCTR
};

#define AC_MAGIC 0x31434f4c4c41ULL /* "ALLOC1" */

struct ac_file {
    uint64_t magic;
    uint64_t nctr;
    _Atomic uint64_t ctr[AC_NCTR];
};

static struct ac_file ac_static;
static struct ac_file *ac = &ac_static;

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);

/* The bootstrap arena for allocations made while dlsym runs. */
static _Alignas(16) unsigned char boot[8192];
static size_t boot_used;
static int resolving;

static int in_boot(const void *p)
{
    return (const unsigned char *)p >= boot && (const unsigned char *)p < boot + sizeof boot;
}

static void *boot_alloc(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n > sizeof boot - boot_used)
        return NULL;
    void *p = boot + boot_used;
    boot_used += n;
    return p; /* static storage: already zero */
}

static void count(enum ac_ctr c, uint64_t bytes)
{
    atomic_fetch_add_explicit(&ac->ctr[c], 1, memory_order_relaxed);
    if (bytes)
        atomic_fetch_add_explicit(&ac->ctr[AC_BYTES], bytes, memory_order_relaxed);
}

static void resolve(void)
{
    if (real_malloc || resolving)
        return;
    resolving = 1;
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    real_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    real_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
    resolving = 0;
}

void *malloc(size_t n)
{
    resolve();
    if (!real_malloc)
        return boot_alloc(n);
    count(AC_MALLOC, n);
    return real_malloc(n);
}

void *calloc(size_t k, size_t n)
{
    resolve();
    if (!real_calloc) {
        if (n && k > SIZE_MAX / n)
            return NULL;
        return boot_alloc(k * n);
    }
    count(AC_CALLOC, (uint64_t)k * n);
    return real_calloc(k, n);
}

void *realloc(void *p, size_t n)
{
    resolve();
    if (!real_realloc || in_boot(p)) {
        /* Move a bootstrap block to the real heap (or to more bootstrap). */
        void *q = real_malloc ? real_malloc(n) : boot_alloc(n);
        if (q && p) {
            size_t room = (size_t)(boot + sizeof boot - (unsigned char *)p);
            memcpy(q, p, n < room ? n : room);
        }
        if (real_malloc)
            count(AC_REALLOC, n);
        return q;
    }
    count(AC_REALLOC, n);
    if (!p)
        count(AC_REALLOC0, 0);
    return real_realloc(p, n);
}

void free(void *p)
{
    if (!p || in_boot(p))
        return;
    resolve();
    count(AC_FREE, 0);
    if (real_free)
        real_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    resolve();
    if (!real_posix_memalign)
        return ENOMEM;
    count(AC_MEMALIGN, n);
    return real_posix_memalign(out, align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    resolve();
    if (!real_aligned_alloc)
        return NULL;
    count(AC_MEMALIGN, n);
    return real_aligned_alloc(align, n);
}

void *memalign(size_t align, size_t n)
{
    resolve();
    if (!real_memalign)
        return NULL;
    count(AC_MEMALIGN, n);
    return real_memalign(align, n);
}

/* Map ALLOCCOUNT_FILE and move the counters there (still one thread here). */
__attribute__((constructor)) static void ac_init(void)
{
    resolve();
    const char *path = getenv("ALLOCCOUNT_FILE");
    if (!path || !*path)
        return;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (ftruncate(fd, sizeof(struct ac_file)) != 0) {
        close(fd);
        return;
    }
    void *m = mmap(NULL, sizeof(struct ac_file), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return;
    struct ac_file *f = m;
    for (int i = 0; i < AC_NCTR; i++)
        atomic_store_explicit(&f->ctr[i], atomic_load_explicit(&ac_static.ctr[i], memory_order_relaxed),
                              memory_order_relaxed);
    f->nctr = AC_NCTR;
    f->magic = AC_MAGIC;
    ac = f;
}
