/*
 * brlock.h - a reader-writer lock whose readers share no cache line: the
 * "big reader" lock (Linux's brlock, Redis's per-thread idea). Each reader
 * thread takes a mutex of its own slot, so readers on different cores never
 * write the same memory; a writer takes every slot. For data read on every
 * request and written rarely (the session index): a pthread rwlock's
 * shared counter moves between the cores on every read.
 *
 * Threads get a slot on first use, round robin over SD_BRLOCK_SLOTS; more
 * threads than slots share them (still correct, only no longer free of
 * sharing). A reader must not take the lock again while holding it.
 */
#ifndef SD_BRLOCK_H
#define SD_BRLOCK_H

#include <pthread.h>

#define SD_BRLOCK_SLOTS 16

typedef struct sd_brlock {
    struct {
        _Alignas(64) pthread_mutex_t mu; /* a cache line each */
    } slot[SD_BRLOCK_SLOTS];
} sd_brlock;

void sd_brlock_init(sd_brlock *l);
void sd_brlock_destroy(sd_brlock *l);

/* Returns the slot to hand back to sd_brlock_rdunlock. */
int sd_brlock_rdlock(sd_brlock *l);
void sd_brlock_rdunlock(sd_brlock *l, int slot);

/* Every slot, in order (so two writers cannot deadlock). */
void sd_brlock_wrlock(sd_brlock *l);
void sd_brlock_wrunlock(sd_brlock *l);

#endif
