/*
 * hash.h - a 64-bit hash of a short byte string for hash tables: all of it
 * mixed, 8 bytes at a time, then finalised (splitmix64's finaliser). Keys
 * that share a long prefix do not share a bucket. With a secret seed, for
 * keys that clients choose (user ids), no one can pick keys that collide
 * without knowing it. Not a MAC and not for anything but bucket choice.
 */
#ifndef SD_UTIL_HASH_H
#define SD_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t sd_hash64(const void *p, size_t n, uint64_t seed)
{
    const char *s = p;
    uint64_t x = seed ^ n;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t w = 0;
        memcpy(&w, s + i, n - i < 8 ? n - i : 8);
        x = (x ^ w) * 0x9e3779b97f4a7c15ULL;
        x ^= x >> 32;
    }
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ULL;
    return x ^ (x >> 29);
}

#endif
