/* failsync.c - an LD_PRELOAD shim for the fsync-failure test: while the
 * file named by SD_FAIL_SYNC_FILE exists, fsync() and fdatasync() fail with
 * EIO (what a dying disk, or a full thin-provisioned volume, reports). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int failing(void)
{
    const char *flag = getenv("SD_FAIL_SYNC_FILE");
    return flag && access(flag, F_OK) == 0;
}

int fsync(int fd)
{
    static int (*real)(int);
    if (failing()) {
        errno = EIO;
        return -1;
    }
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (failing()) {
        errno = EIO;
        return -1;
    }
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
