/*
 * index.h - the in-memory index of active sessions that the embedded store
 * keeps in front of SQLite, so that validation (the hot path) is a hash
 * lookup instead of a B-tree walk.
 *
 * It holds what validation needs (id, token hash, user, expiries, idle
 * timeout, lastSeen, version), not the optional fields, and what the
 * sweeper needs: the entries by expiry (sd_index_expired), and a user's
 * entries (sd_index_user) for what the table has no index for. It is exact: the
 * store's writer applies every committed change to it before any write of the
 * batch is acknowledged, and it is loaded from the table at start. It only
 * makes sense where one process owns the store (the embedded mode).
 *
 * Thread-safety: any number of readers, one writer (a writer-preferring
 * read-write lock).
 */
#ifndef SD_INDEX_H
#define SD_INDEX_H

#include "session/session.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sd_index sd_index;
typedef struct sd_index_entry sd_index_entry;

sd_index *sd_index_new(void);
void sd_index_free(sd_index *ix);

/* Inserts s, or replaces the entry with the same id. Copies what it keeps.
 * Returns 0 or SD_ENOMEM. */
int sd_index_put(sd_index *ix, const sd_session *s);

/* For loading a store's rows at start: sd_index_reserve sizes the tables
 * for about n entries at once (instead of doubling them as they fill), and
 * sd_index_add inserts s without looking for its id first, so the caller
 * must know the id is not in the index (ids are unique in the table). */
void sd_index_reserve(sd_index *ix, size_t n);
int sd_index_add(sd_index *ix, const sd_session *s);

/* Removes the entry of id, if any. */
void sd_index_remove(sd_index *ix, const char *id);

/* Raises the expiry of id to min(expiry, absolute) and lastSeen to now,
 * as the TOUCH write does in the table. */
void sd_index_touch(sd_index *ix, const char *id, int64_t expiry, int64_t now);

/* Lookups fill out without attrs (out->attrs NULL). The user id goes into
 * out->user_id_buf when it fits there, malloc'd otherwise: out must arrive
 * zeroed or with only those two fields set (as the store wrappers pass it).
 * Return 0 or SD_ENOTFOUND (or SD_ENOMEM). */
int sd_index_get_by_token(sd_index *ix, const unsigned char hash[SD_HASH_LEN], sd_session *out);
int sd_index_get_by_id(sd_index *ix, const char *id, sd_session *out);

size_t sd_index_count(sd_index *ix);

/* The sweep's candidates: copies into ids the ids of up to max entries
 * whose expiry is at or before now, and returns how many. It walks the
 * expiry wheel's slots from where the last call stopped to now's second,
 * so each call costs the slots passed and the entries in them, not the
 * index. An entry stays a candidate until it is removed: the sweep's
 * caller removes those it moved, and the next call finds the rest. Only
 * on the thread that changes the index (the store's writer): it takes no
 * lock and moves the wheel's cursor. */
int sd_index_expired(sd_index *ix, int64_t now, char (*ids)[SD_ID_LEN + 1], int max);

/* A user's entries (expired ones too, until the sweep removes them): up to
 * cap of them into out, in no order; returns how many there are (past cap:
 * ask again with room for all). sd_index_user takes the read lock; the
 * _locked variant is for the thread that changes the index (the writer),
 * or under sd_index_lock. */
typedef struct sd_index_user_row {
    char id[SD_ID_LEN + 1];
    int64_t last_seen, expiry;
} sd_index_user_row;
size_t sd_index_user(sd_index *ix, const char *user, sd_index_user_row *out, size_t cap);
size_t sd_index_user_locked(sd_index *ix, const char *user, sd_index_user_row *out, size_t cap);

/* The longest chain of either table (a full scan: for tests). */
size_t sd_index_longest_chain(sd_index *ix);

/* Exclusive access for applying a batch of changes at once: between
 * sd_index_lock and sd_index_unlock use the *_locked variants. */
void sd_index_lock(sd_index *ix);
void sd_index_unlock(sd_index *ix);
int sd_index_put_locked(sd_index *ix, const sd_session *s);
void sd_index_remove_locked(sd_index *ix, const char *id);
void sd_index_touch_locked(sd_index *ix, const char *id, int64_t expiry, int64_t now);

/* A put that cannot fail once the store has committed: sd_index_prepare
 * builds s's entry before the COMMIT (SD_ENOMEM: the write is refused), and
 * after it sd_index_put_prepared_locked does what sd_index_put_locked does
 * with the batch's first entry (which must be s's), allocating nothing.
 * sd_index_batch_clear frees what a failed commit left. Entries are used in
 * the order they were prepared. Prepared without the lock: on the thread
 * that applies the puts (the writer's), the only one that changes the index
 * and its (not thread-safe) slab once the store is open. */
typedef struct sd_index_batch {
    sd_index_entry *head, *tail;
} sd_index_batch;
int sd_index_prepare(sd_index *ix, sd_index_batch *b, const sd_session *s);
void sd_index_put_prepared_locked(sd_index *ix, sd_index_batch *b, const sd_session *s);
void sd_index_batch_clear(sd_index *ix, sd_index_batch *b);
/* Moves the entries of from to the end of b. */
void sd_index_batch_append(sd_index_batch *b, sd_index_batch *from);

#endif
