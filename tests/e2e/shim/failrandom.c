/* failrandom.c - an LD_PRELOAD shim for the fail-closed test: while the file
 * named by SD_FAIL_RANDOM_FILE exists, getrandom() fails with EIO. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

ssize_t getrandom(void *buf, size_t n, unsigned int flags)
{
    static ssize_t (*real)(void *, size_t, unsigned int);
    const char *flag = getenv("SD_FAIL_RANDOM_FILE");
    if (flag && access(flag, F_OK) == 0) {
        errno = EIO;
        return -1;
    }
    if (!real)
        real = (ssize_t (*)(void *, size_t, unsigned int))dlsym(RTLD_NEXT, "getrandom");
    return real(buf, n, flags);
}
