/*
 * arena.h - a bump allocator whose memory is reset, not freed, between uses
 * (in the spirit of h2o's h2o_mem_pool_t): the HTTP layer gives each request
 * one, so header names and values, the target, decoded captures and query
 * values, small bodies and the rendered reply cost no malloc once a
 * connection is warm.
 *
 * The first chunk is the owner's (embedded in the request, say): it is kept
 * across resets. What does not fit in it goes into chunks malloc'd on
 * demand, which sd_arena_reset frees. Nothing is freed one allocation at a
 * time. Not thread-safe: one thread at a time, as a request is.
 */
#ifndef SD_ARENA_H
#define SD_ARENA_H

#include <stddef.h>

/* Chunks beyond the first: at least this size (bigger for a bigger ask). */
#define SD_ARENA_CHUNK 4096

typedef struct sd_arena_chunk sd_arena_chunk;

typedef struct sd_arena {
    char *first; /* the owner's chunk (borrowed) */
    size_t first_size;
    char *cur; /* the chunk being filled: first, or the newest extra chunk's data */
    size_t used, size;
    char *last;            /* the last allocation, which sd_arena_grow may extend in place */
    sd_arena_chunk *extra; /* malloc'd chunks, newest first */
} sd_arena;

/* Starts an empty arena on the owner's first chunk (size bytes, any
 * alignment; NULL and 0 are fine). */
void sd_arena_init(sd_arena *a, void *first, size_t size);

/* n bytes aligned for any type, valid until the next reset; NULL when out of
 * memory. */
void *sd_arena_alloc(sd_arena *a, size_t n);

/* Resizes p (the arena's, from sd_arena_alloc or sd_arena_grow; NULL: a new
 * block) from old_n to new_n >= old_n bytes, keeping its content: in place
 * when p is the last allocation and the chunk has room, otherwise a copy (the
 * old block is reclaimed at reset). NULL when out of memory (p untouched). */
void *sd_arena_grow(sd_arena *a, void *p, size_t old_n, size_t new_n);

/* A NUL-terminated copy of n bytes of s; NULL when out of memory. */
char *sd_arena_strndup(sd_arena *a, const char *s, size_t n);

/* Forgets every allocation: the first chunk is kept, extra chunks freed. */
void sd_arena_reset(sd_arena *a);

#endif
