/*
 * limiter.h - token buckets keyed by a short string (a client address), in a
 * fixed amount of memory whatever the number of keys.
 *
 * Each key has a bucket of `burst` tokens refilled at `rate` per second. A
 * charge takes one token; a key whose bucket is empty is blocked until one
 * has refilled. The table is set-associative (a few ways per set): a new key
 * takes the way of its set whose bucket is fullest, so the keys that
 * matter - those being throttled - are the last to be forgotten, and an
 * attacker spraying addresses can only push out idle ones. Thread-safe:
 * a charge takes its set's lock; a wait takes none unless a key of its set
 * may be blocked now (one atomic load otherwise), so the check every
 * validation makes costs no lock for a client that is not throttled.
 */
#ifndef SD_LIMITER_H
#define SD_LIMITER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct sd_limiter sd_limiter;

/* slots: total buckets (rounded up to whole sets). NULL when out of memory. */
sd_limiter *sd_limiter_new(int slots, double rate, double burst);
void sd_limiter_free(sd_limiter *l);

/* 0 when key may go on now, else the ms until its next token. No lock
 * when no key of key's set is blocked at now_ms. */
int64_t sd_limiter_wait(sd_limiter *l, const char *key, int64_t now_ms);

/* Takes a token from key's bucket (a failure). Returns true when this
 * charge emptied it (the key is now blocked: a moment worth recording). */
bool sd_limiter_charge(sd_limiter *l, const char *key, int64_t now_ms);

#endif
