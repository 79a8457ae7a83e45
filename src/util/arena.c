/* arena.c - the bump allocator of arena.h. */
#include "util/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN alignof(max_align_t)

struct sd_arena_chunk {
    sd_arena_chunk *next;
    size_t size;
    alignas(max_align_t) char data[];
};

static size_t round_up(size_t n)
{
    return (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
}

void sd_arena_init(sd_arena *a, void *first, size_t size)
{
    size_t pad = first ? (size_t)(-(uintptr_t)first & (ALIGN - 1)) : 0;
    *a = (sd_arena){.first = first,
                    .first_size = size,
                    .cur = pad < size ? (char *)first + pad : NULL,
                    .size = pad < size ? size - pad : 0};
}

void *sd_arena_alloc(sd_arena *a, size_t n)
{
    if (n > SIZE_MAX / 2)
        return NULL;
    size_t need = round_up(n ? n : 1);
    if (a->size - a->used < need) {
        size_t size = need > SD_ARENA_CHUNK ? need : SD_ARENA_CHUNK;
        sd_arena_chunk *c = malloc(sizeof *c + size);
        if (!c)
            return NULL;
        c->size = size;
        c->next = a->extra;
        a->extra = c;
        a->cur = c->data;
        a->used = 0;
        a->size = size;
    }
    char *p = a->cur + a->used;
    a->used += need;
    a->last = p;
    return p;
}

void *sd_arena_grow(sd_arena *a, void *p, size_t old_n, size_t new_n)
{
    if (p && p == a->last && new_n <= SIZE_MAX / 2) {
        size_t start = (size_t)((char *)p - a->cur);
        size_t need = round_up(new_n ? new_n : 1);
        if (a->size - start >= need) {
            a->used = start + need;
            return p;
        }
    }
    char *q = sd_arena_alloc(a, new_n);
    if (q && p && old_n)
        memcpy(q, p, old_n);
    return q;
}

char *sd_arena_strndup(sd_arena *a, const char *s, size_t n)
{
    char *p = sd_arena_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

void sd_arena_reset(sd_arena *a)
{
    for (sd_arena_chunk *c = a->extra, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    sd_arena_init(a, a->first, a->first_size);
}
