/*
 * notbefore.h - the global not-before in memory (issue 19, incident
 * response): validation refuses every session created before it, with one
 * atomic load on the hot path.
 *
 * The value lives in the database (set by an SD_W_NOT_BEFORE write, raised
 * only). A replica learns it in two ways: its own setter's commit (at once,
 * before the setter's completion), and, on a shared store, a keeper thread
 * that reads it every POLL_MS. A value counts only while the query that
 * read it started less than FRESH_MS ago; past that, a validation reads it
 * itself. A setter on a shared store is completed only FENCE_MS
 * (> FRESH_MS) after its commit returned. So once the setter's 200 is sent,
 * every replica compares against a value read by a query that started
 * after the commit: docs/architecture.md, "The global not-before".
 */
#ifndef SD_NOTBEFORE_H
#define SD_NOTBEFORE_H

#include <stdbool.h>
#include <stdint.h>

struct sd_write;
typedef struct sd_nb sd_nb;

/* read(ctx, &value): the value in the database, on the caller's thread.
 * shared: other processes may raise it (starts the keeper thread). A first
 * read that fails is not an error (the store may be down at start).
 * 0, SD_ENOMEM, or the first read's error when not shared. */
int sd_nb_open(int (*read)(void *ctx, int64_t *value), void *ctx, bool shared, sd_nb **out);
/* Stops the keeper's reads (before the store closes); it still completes
 * the setters it holds, and those the store's close completes. */
void sd_nb_quiesce(sd_nb *nb);
/* Stops the keeper after completing the writes it holds. */
void sd_nb_close(sd_nb *nb);

/* The value in force for a validation starting now (see above). */
int sd_nb_get(sd_nb *nb, int64_t *value);

/* A completed SD_W_NOT_BEFORE write of this replica: its value is learnt
 * at once; on a shared store w->done runs after the fence wait (on the
 * keeper thread), else at once. */
void sd_nb_after_write(sd_nb *nb, struct sd_write *w);

#endif
