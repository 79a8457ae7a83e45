/*
 * fault.h - store faults for tests (issue 17): SQLite's test VFS idea at the
 * store wrappers. Compiled in only with -DSD_STORE_FAULTS (the sanitizer
 * build the suite runs); the release build reads nothing and injects nothing.
 *
 * SESSIOND_STORE_FAULTS, read once when the store opens, is a comma-separated
 * list of OP=ACTION[*COUNT]: OP a store operation as /metrics names it (get,
 * get_by_token, list_user, get_rotated, create, update, end, end_user,
 * bulk_end, touch, sweep, purge), ACTION `fail` (the store is unavailable:
 * SD_EUNAVAILABLE), `busy` (the writer's queue is full: SD_EBUSY) or
 * `stall:MS` (the operation waits MS milliseconds, then runs); COUNT, when
 * given, limits the fault to the first COUNT calls. Example:
 * `create=busy*2,get_by_token=stall:200`.
 */
#ifndef SD_STORE_FAULT_H
#define SD_STORE_FAULT_H

#include "metrics/metrics.h"

#include <stdbool.h>

/* Parses spec (NULL or "": none). 0, or SD_EINVALID with a sentence in err. */
int sd_fault_load(const char *spec, char *err, size_t errlen);
/* Before operation op: 0 (run it, after any stall) or the code to answer. */
int sd_fault_check(enum sd_store_op op);

/* The writer's gate: SESSIOND_WRITER_GATE, read with the faults, names a
 * file; while it exists the writer takes no batch, so the writes sent
 * meanwhile queue (the queue gauge says how many) and run as one batch once
 * the test removes it: what writes sharing a batch see, tested without
 * timing. The gate's path, or NULL when there is none. */
const char *sd_fault_gate(void);
bool sd_fault_gate_closed(void);

#endif
