/*
 * slab.h - memory for many small objects that are read in no particular order (the
 * session index's entries), on transparent huge pages.
 *
 * A validation reads any one entry of millions: with 4 KiB pages each
 * read also misses the TLB and walks the page tables; on 2 MiB pages the
 * same memory needs 512 times fewer TLB entries. The slab takes memory from
 * the kernel in 64 MiB regions marked MADV_HUGEPAGE (Debian's default THP
 * mode is madvise: nothing else in the process gets huge pages), carves
 * objects in size classes of 32 bytes, and keeps a free list per class;
 * memory goes back to the kernel only when the slab is freed.
 *
 * Not thread-safe: the owner serialises (the index calls it under its write
 * lock). Under ASan the slab poisons what is not allocated, so reads past
 * an object or of a released one are still reported (leaks of slab objects
 * are not: the slab frees its regions whole).
 */
#ifndef SD_SLAB_H
#define SD_SLAB_H

#include <stddef.h>

#define SD_SLAB_MAX 1024 /* larger objects come from malloc */

typedef struct sd_slab sd_slab;

sd_slab *sd_slab_new(void);
/* Frees every region (and every object in them) at once. */
void sd_slab_free(sd_slab *s);

/* n bytes, zeroed, 16-byte aligned; NULL when out of memory. */
void *sd_slab_alloc(sd_slab *s, size_t n);
/* Gives back p, allocated with size n. */
void sd_slab_release(sd_slab *s, void *p, size_t n);

/* A large zeroed array (a hash table's buckets), on small pages as the
 * kernel faults them in; free it with sd_huge_free and the same size.
 * sd_huge_advise, once the array is filled, asks for huge pages (at least
 * 2 MiB): khugepaged collapses the small ones in the background. Advising
 * before the first touch made each 2 MiB's first write wait for the kernel
 * to compact memory (Debian's `madvise` defrag mode): 14-28 ms stalls of
 * the index's writer under its lock (docs/performance.md). */
void *sd_huge_calloc(size_t n);
void sd_huge_advise(void *p, size_t n);
void sd_huge_free(void *p, size_t n);

#endif
