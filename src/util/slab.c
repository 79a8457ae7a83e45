/* slab.c - size-classed objects on huge pages (see slab.h). */
#include "util/slab.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#define SLAB_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLAB_SANITIZED 1
#endif
#endif
#ifndef SLAB_SANITIZED
#define SLAB_SANITIZED 0
#endif

/* Under ASan the slab tells it what is allocated (as custom allocators
 * must): a read past an object or of a released one is still reported. */
/* LeakSanitizer does not look inside memory mapped by hand, so a heap
 * pointer kept only in a slab object (an index entry's `extra`) or in a
 * mapped array was reported as leaked while live (fuzz_http's leak check
 * after a create with a binding): the mappings are registered as roots. */
#if SLAB_SANITIZED
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#define ROOT(p, n)     __lsan_register_root_region((p), (n))
#define UNROOT(p, n)   __lsan_unregister_root_region((p), (n))
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#define ROOT(p, n)     ((void)(p), (void)(n))
#define UNROOT(p, n)   ((void)(p), (void)(n))
#endif

#define GRAIN   32
#define CLASSES (SD_SLAB_MAX / GRAIN)
#define REGION  ((size_t)64 << 20)
#define HUGE    ((size_t)2 << 20)

typedef struct region {
    struct region *next;
    char *base;
} region;

struct sd_slab {
    void *free[CLASSES]; /* a singly linked list through the objects */
    char *cur, *end;     /* the bump area of the newest region */
    region *regions;
};

sd_slab *sd_slab_new(void)
{
    return calloc(1, sizeof(sd_slab));
}

void sd_slab_free(sd_slab *s)
{
    if (!s)
        return;
    for (region *r = s->regions, *next; r; r = next) {
        next = r->next;
        UNPOISON(r->base, REGION);
        UNROOT(r->base, REGION);
        munmap(r->base, REGION);
        free(r);
    }
    free(s);
}

static int grow(sd_slab *s)
{
    region *r = malloc(sizeof *r);
    char *base = r ? mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                   : MAP_FAILED;
    if (base == MAP_FAILED) {
        free(r);
        return -1;
    }
    madvise(base, REGION, MADV_HUGEPAGE); /* a hint: without THP, 4 KiB pages */
    POISON(base, REGION);
    ROOT(base, REGION);
    r->base = base;
    r->next = s->regions;
    s->regions = r;
    s->cur = base;
    s->end = base + REGION;
    return 0;
}

void *sd_slab_alloc(sd_slab *s, size_t n)
{
    if (n > SD_SLAB_MAX)
        return calloc(1, n);
    size_t c = (n + GRAIN - 1) / GRAIN - (n > 0);
    size_t size = (c + 1) * GRAIN;
    void *p = s->free[c];
    if (p) {
        UNPOISON(p, size);
        memcpy(&s->free[c], p, sizeof(void *));
        memset(p, 0, size);
        POISON((char *)p + n, size - n);
        return p;
    }
    if ((size_t)(s->end - s->cur) < size && grow(s))
        return NULL;
    p = s->cur; /* fresh anonymous memory is zero already */
    s->cur += size;
    UNPOISON(p, n);
    return p;
}

void sd_slab_release(sd_slab *s, void *p, size_t n)
{
    if (!p)
        return;
    if (n > SD_SLAB_MAX) {
        free(p);
        return;
    }
    size_t c = (n + GRAIN - 1) / GRAIN - (n > 0);
    size_t size = (c + 1) * GRAIN;
    UNPOISON(p, sizeof(void *));
    memcpy(p, &s->free[c], sizeof(void *));
    POISON(p, size); /* the link is read back unpoisoned, by the slab only */
    s->free[c] = p;
}

void *sd_huge_calloc(size_t n)
{
    if (n < HUGE)
        return calloc(1, n);
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    ROOT(p, n);
    return p;
}

void sd_huge_advise(void *p, size_t n)
{
    if (p && n >= HUGE)
        madvise(p, n, MADV_HUGEPAGE);
}

void sd_huge_free(void *p, size_t n)
{
    if (!p)
        return;
    if (n < HUGE) {
        free(p);
    } else {
        UNROOT(p, n);
        munmap(p, n);
    }
}
