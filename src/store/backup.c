/*
 * backup.c - online backup of the embedded store: `sessiond backup DEST`
 * while the server runs.
 *
 * A separate read connection runs VACUUM INTO: one read transaction, so the
 * copy is a consistent snapshot of everything committed when it began (WAL
 * readers never block the writer, nor it them). The copy is written under a
 * temporary name, fsync'd, then renamed into place, so DEST never holds a
 * half-written database. Restore: stop sessiond, put the copy in an empty
 * data directory as sessiond.db, start.
 */
#include "store/backup.h"
#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int sync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int sd_sqlite_backup(const char *data_dir, const char *dest_dir, char *err, size_t errlen)
{
    char src[1100], tmp[1100], dst[1100];
    snprintf(src, sizeof src, "%s/sessiond.db", data_dir);
    snprintf(tmp, sizeof tmp, "%s/sessiond.db.partial", dest_dir);
    snprintf(dst, sizeof dst, "%s/sessiond.db", dest_dir);
    if (access(src, R_OK) != 0) {
        snprintf(err, errlen, "no store at %s: %s", src, strerror(errno));
        return SD_ECONFIG;
    }
    if (mkdir(dest_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", dest_dir, strerror(errno));
        return SD_ECONFIG;
    }
    if (access(dst, F_OK) == 0) {
        snprintf(err, errlen, "%s already exists: back up into a new directory", dst);
        return SD_ECONFIG;
    }
    unlink(tmp);
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(src, &db, SQLITE_OPEN_READWRITE, NULL);
    sqlite3_stmt *q = NULL;
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(db, 10000);
        rc = sqlite3_prepare_v2(db, "VACUUM INTO ?1", -1, &q, NULL);
    }
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(q, 1, tmp, -1, SQLITE_STATIC);
        rc = sqlite3_step(q) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
    }
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "backup of %s failed: %s", src,
                 db ? sqlite3_errmsg(db) : "no memory");
    sqlite3_finalize(q);
    sqlite3_close(db);
    if (rc != SQLITE_OK) {
        unlink(tmp);
        return SD_EUNAVAILABLE;
    }
    if (sync_path(tmp, O_RDONLY) != 0 || rename(tmp, dst) != 0 ||
        sync_path(dest_dir, O_RDONLY | O_DIRECTORY) != 0) {
        snprintf(err, errlen, "cannot make %s durable: %s", dst, strerror(errno));
        unlink(tmp);
        return SD_EUNAVAILABLE;
    }
    return 0;
}
