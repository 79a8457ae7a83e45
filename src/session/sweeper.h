/*
 * sweeper.h - the background thread that ends expired sessions (moving them
 * to history with reason "expired") and purges history past its retention,
 * in bounded batches through the store's writer, so a sweep never holds the
 * writer for long. Validity never depends on it: an expired session is
 * invalid the moment it expires, swept or not.
 */
#ifndef SD_SWEEPER_H
#define SD_SWEEPER_H

#include "store/store.h"

typedef struct sd_sweeper sd_sweeper;

int sd_sweeper_start(sd_store_handle *store, int64_t interval_ms, int batch, int64_t retention_ms,
                     sd_sweeper **out);
/* Stops the thread (waits for the batch in flight) and frees it. */
void sd_sweeper_stop(sd_sweeper *s);

#endif
