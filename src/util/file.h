/*
 * file.h - a small file replaced whole and durably: the replica id and the
 * embedded store's outbox cursors. A leaf: any layer may use it.
 */
#ifndef SD_FILE_H
#define SD_FILE_H

#include <stddef.h>

/* Replaces dir/name with the n bytes of data: written under a temporary
 * name, fsync'd, renamed over, and the directory fsync'd, so a crash at any
 * point leaves the old content or the whole new one, never a torn one.
 * Returns 0 or a negative errno. */
int sd_file_replace(const char *dir, const char *name, const void *data, size_t n);

#endif
