/*
 * err.h - the one error convention of sessiond.
 *
 * 0 is success. Project errors are negative numbers from the X-macro list
 * below (far from errno values, so system errors may pass through as -errno).
 * sd_strerror() names any of them. Human detail for a client travels in an
 * explicit buffer argument, never in a global.
 */
#ifndef SD_ERR_H
#define SD_ERR_H

#define SD_ERRNO_MAP(X)                                                                            \
    X(NOTFOUND, -1001, "not found")                                                                \
    X(CONFLICT, -1002, "version mismatch")                                                         \
    X(INVALID, -1003, "invalid input")                                                             \
    X(UNAVAILABLE, -1004, "store unavailable")                                                     \
    X(NOMEM, -1005, "out of memory")                                                               \
    X(RANDOM, -1006, "random source failed")                                                       \
    X(CONFIG, -1007, "invalid configuration")                                                      \
    X(BUSY, -1008, "overloaded")                                                                   \
    X(LIMIT, -1009, "limit reached")                                                               \
    X(REUSED, -1010, "rotated token reused")                                                       \
    X(MISMATCH, -1011, "token does not match")                                                     \
    X(THROTTLED, -1012, "too many failed attempts")                                                \
    X(RETRY, -1013, "run the batch again")                                                         \
    X(NOTSENT, -1014, "the store was not reached")

enum {
#define SD_ERR_ENUM(name, code, text) SD_E##name = (code),
    SD_ERRNO_MAP(SD_ERR_ENUM)
#undef SD_ERR_ENUM
};

/* Returns a static string naming rc (never NULL). */
const char *sd_strerror(int rc);

/* Always-on invariant check: prints file and line, then aborts. */
#define sd_assert(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            sd__panic(__FILE__, __LINE__, #cond);                                                  \
    } while (0)

_Noreturn void sd__panic(const char *file, int line, const char *what);

#endif
