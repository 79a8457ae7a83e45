/*
 * audit.h - the tamper-evident audit log: JSON lines, each chained to the
 * one before by a SHA-256 hash.
 *
 * Two sources feed it, merged by one thread:
 *  - the store's audit_events table (every lifecycle change, written in the
 *    change's own transaction), read after a cursor that the log itself
 *    remembers (the storeSeq of its last such line), so that after a crash
 *    the events committed but not yet logged are logged at the next start;
 *  - sd_audit_emit() from any thread, for what never reaches the store
 *    (callers failing authentication, failed validations, admin reads), kept
 *    in a bounded queue: when it is full the event is dropped and counted.
 *
 * A record: {"seq","time","event","sessionId","userId","actor",
 * "clientAddress","reason"[,"storeSeq"],"prev","hash"} where hash is the
 * SHA-256 (hex) of the record's compact JSON without its "hash" member, and
 * prev is the hash of the record before (64 zeros for the very first).
 * Never a token, never a key.
 *
 * Files: DIR/audit.log, renamed to DIR/audit-YYYYMMDDTHHMMSSZ-<seq>.log when it
 * passes max_bytes or the UTC day changes; renamed files older than the
 * retention are deleted. The chain runs across files.
 */
#ifndef SD_AUDIT_H
#define SD_AUDIT_H

#include "store/store.h"

#include <stdint.h>
#include <stdio.h>

typedef struct sd_audit_options {
    const char *dir;
    int64_t retention_ms;
    int64_t max_bytes;      /* rotate past this size */
    sd_store_handle *store; /* the events table is read through it */
} sd_audit_options;

/* Opens (creating the directory), resumes the chain from the last record,
 * and starts the thread. On failure writes a sentence into err. */
int sd_audit_open(const sd_audit_options *opt, char *err, size_t errlen);

/* Logs what is still queued and what the store committed, then stops. */
void sd_audit_close(void);

/* Queues one event; a no-op when the log is not open. Thread-safe, never
 * blocks on I/O. NULL or "" for fields that do not apply. */
void sd_audit_emit(const char *event, const char *session_id, const char *user_id,
                   const char *actor, const char *address, const char *reason);

/* Events dropped because the queue was full; records written. */
uint64_t sd_audit_dropped(void);
uint64_t sd_audit_written(void);

/* `sessiond audit verify PATH...`: checks the chain through the files in
 * the order given (a directory stands for its audit files, oldest first).
 * Reports to out; returns 0 when intact, 1 at the first broken link, 2 when
 * a file cannot be read. */
int sd_audit_verify(int npaths, char **paths, FILE *out);

#endif
