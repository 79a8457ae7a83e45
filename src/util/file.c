/*
 * file.c - durable whole-file replacement (see file.h).
 */
#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int sd_file_replace(const char *dir, const char *name, const void *data, size_t n)
{
    char path[1200], tmp[1220];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    ssize_t w = write(fd, data, n);
    int rc = w == (ssize_t)n ? 0 : w < 0 ? -errno : -EIO;
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc) {
        unlink(tmp);
        return rc;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { /* the rename itself durable */
        if (fsync(dfd) != 0)
            rc = -errno;
        close(dfd);
    }
    return rc;
}
