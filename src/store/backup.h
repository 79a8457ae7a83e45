/* backup.h - online backup of the embedded store (see backup.c). */
#ifndef SD_STORE_BACKUP_H
#define SD_STORE_BACKUP_H

#include <stddef.h>

/* Copies the store of data_dir, live, into dest_dir/sessiond.db (dest_dir
 * is created; an existing copy there is refused). On failure writes a
 * sentence into err. */
int sd_sqlite_backup(const char *data_dir, const char *dest_dir, char *err, size_t errlen);

#endif
