/*
 * sqlite_outbox.c - the embedded store's outbox cursors (sd_store_ops
 * outbox_cursor): one small file per consumer in the data directory,
 * DIR/outbox-<name>.cursor, holding the last seq it consumed.
 *
 * Why a file and not a row: the database has one writer, and a cursor
 * written from another connection would take SQLite's write lock (and an
 * fsync) from under it; the write path stays as fast as without webhooks.
 * The lease is moot: the data directory's LOCK already makes this process
 * the only consumer.
 */
#include "store/sqlite_internal.h"
#include "util/err.h"
#include "util/file.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int write_cursor(sd_store *st, const char *file, int64_t seq)
{
    char text[32];
    int n = snprintf(text, sizeof text, "%" PRId64 "\n", seq);
    int rc = sd_file_replace(st->dir, file, text, (size_t)n);
    return rc ? SD_EUNAVAILABLE : 0;
}

int sq_outbox_cursor(sd_store *st, const char *name, int64_t lease_ms, const sd_feed_cursor *save,
                     sd_feed_cursor *cursor)
{
    (void)lease_ms;
    char file[128], path[1200];
    snprintf(file, sizeof file, "outbox-%s.cursor", name);
    snprintf(path, sizeof path, "%s/%s", st->dir, file);
    *cursor = (sd_feed_cursor){0};
    if (save) {
        int rc = write_cursor(st, file, save->seq);
        if (rc == 0)
            cursor->seq = save->seq;
        return rc;
    }
    FILE *f = fopen(path, "r");
    if (f) {
        int64_t seq;
        int ok = fscanf(f, "%" SCNd64, &seq) == 1 && seq >= 0;
        fclose(f);
        if (!ok)
            return SD_EUNAVAILABLE;
        cursor->seq = seq;
        return 0;
    }
    if (errno != ENOENT)
        return SD_EUNAVAILABLE;
    /* A new consumer starts at the end: what is committed from now on. */
    int64_t end;
    int rc = sq__feed_end(st, &end);
    if (rc == 0 && (rc = write_cursor(st, file, end)) == 0)
        cursor->seq = end;
    return rc;
}
