/* brlock.c - the big reader lock (see brlock.h). */
#include "util/brlock.h"

#include <stdatomic.h>

static _Atomic unsigned next_slot;
static _Thread_local int my_slot = -1;

void sd_brlock_init(sd_brlock *l)
{
    for (int i = 0; i < SD_BRLOCK_SLOTS; i++)
        pthread_mutex_init(&l->slot[i].mu, NULL);
}

void sd_brlock_destroy(sd_brlock *l)
{
    for (int i = 0; i < SD_BRLOCK_SLOTS; i++)
        pthread_mutex_destroy(&l->slot[i].mu);
}

int sd_brlock_rdlock(sd_brlock *l)
{
    if (my_slot < 0)
        my_slot = (int)(atomic_fetch_add(&next_slot, 1) % SD_BRLOCK_SLOTS);
    pthread_mutex_lock(&l->slot[my_slot].mu);
    return my_slot;
}

void sd_brlock_rdunlock(sd_brlock *l, int slot)
{
    pthread_mutex_unlock(&l->slot[slot].mu);
}

void sd_brlock_wrlock(sd_brlock *l)
{
    for (int i = 0; i < SD_BRLOCK_SLOTS; i++)
        pthread_mutex_lock(&l->slot[i].mu);
}

void sd_brlock_wrunlock(sd_brlock *l)
{
    for (int i = SD_BRLOCK_SLOTS - 1; i >= 0; i--)
        pthread_mutex_unlock(&l->slot[i].mu);
}
