/*
 * grow.h - room for one more item at the end of a growing array.
 */
#ifndef SD_GROW_H
#define SD_GROW_H

#include <stdlib.h>

/* The array (of items of size bytes, n of them used, *cap allocated) with
 * room for one more: itself, or a larger copy (doubling, first when
 * empty), with *cap updated; NULL when out of memory, the array left as
 * it was. */
static inline void *sd_grow(void *items, size_t *cap, size_t n, size_t size, size_t first)
{
    if (n < *cap)
        return items;
    size_t c = *cap ? *cap * 2 : first;
    void *p = realloc(items, c * size);
    if (p)
        *cap = c;
    return p;
}

#endif
