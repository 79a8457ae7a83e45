/*
 * writer.h - the one writer every backend shares: a bounded queue of
 * sd_writes (load shedding past max_queued), a thread that takes every
 * write queued while the previous commit ran (up to commit_batch), runs
 * each inside its own savepoint through sd_write_apply (session/write.h),
 * commits once (group commit), and acknowledges the batch only after the
 * commit is durable.
 *
 * A backend provides the transaction (sd_tx_ops) and the row operations
 * (sd_rows_ops); it keeps no queue and no loop of its own. Both sets run
 * on the writer thread only.
 */
#ifndef SD_WRITER_H
#define SD_WRITER_H

#include "metrics/metrics.h"
#include "session/write.h"

#include <stdbool.h>

typedef struct sd_writer sd_writer;

typedef struct sd_tx_ops {
    /* Opens a transaction: 0, or SD_EUNAVAILABLE (the batch answers 503).
     * With pipeline, every write of the batch can run again
     * (sd_write_rewindable): the backend may check statements' results
     * late (PostgreSQL's pipeline) or run the writes without a savepoint
     * each (SQLite), and have commit answer SD_ERETRY when one failed; the writer
     * then rewinds the writes and runs the batch again, without. The
     * batch is there to read ahead: a backend may read the rows its writes
     * will select (sd_write_reads) at once, before the first savepoint. */
    int (*begin)(void *be, bool pipeline, const sd_write *batch);
    /* Around each write: a savepoint, then kept (released; `more` says
     * another write follows) or undone (rolled back to it). A failed
     * savepoint fails that write alone. */
    int (*savepoint)(void *be);
    void (*release)(void *be, bool more);
    void (*rollback_to)(void *be);
    /* After a write is applied, before it is released: allocates what
     * committed() will need for it, so that nothing can fail once the batch
     * has committed. 0, or SD_ENOMEM (that write is rolled back and refused
     * alone). NULL: nothing to do. */
    int (*prepare)(void *be, sd_write *w);
    /* COMMIT: 0 once durable, else SD_EUNAVAILABLE (the backend has rolled
     * back, dropped its connection or marked itself broken as it must), or,
     * after begin with pipeline, SD_ERETRY (rolled back; run it again), or
     * SD_ENOTSENT (the connection was lost before the COMMIT was sent:
     * nothing of the batch was committed). A failed begin is SD_ENOTSENT
     * too. */
    int (*commit)(void *be);
    /* After a successful commit, before any write of the batch is
     * acknowledged (the embedded store's index follows the effects). NULL:
     * nothing to do. */
    void (*committed)(void *be, sd_write *batch);
    /* Writes are refused (503) while this is false (a backend whose
     * database is unreachable). NULL: always accepted. A backend with it
     * has upkeep too: upkeep is what brings it back. */
    bool (*accepting)(void *be);
    /* Upkeep on the writer thread (a connection's health check and
     * reconnection), called when its deadline passed or sd_writer_poke
     * asked, and after each batch (after_batch true). Returns the ms until
     * the next call, or -1 to keep the deadline it had. NULL: none. */
    int (*upkeep)(void *be, bool after_batch);
} sd_tx_ops;

typedef struct sd_writer_options {
    int commit_batch; /* writes per transaction at most (0: 1024) */
    int max_queued;   /* writes waiting; beyond, SD_EBUSY (0: 10000) */
    int first_upkeep_ms;
    /* While the backend is not accepting (its database unreachable), a write
     * waits up to this long for it to come back before it fails with
     * SD_EUNAVAILABLE, and a batch that did not reach the database runs
     * again once it is back (0: writes fail at once). */
    int hold_ms;
} sd_writer_options;

/* Starts the writer thread. 0 or SD_ENOMEM. */
int sd_writer_start(const sd_writer_options *opt, const sd_tx_ops *tx, const sd_rows_ops *rows,
                    void *be, sd_writer **out);
/* Queues w (its done runs on the writer thread, or at once when refused:
 * SD_EBUSY past max_queued, SD_EUNAVAILABLE while stopping, or while not
 * accepting without hold_ms). */
void sd_writer_submit(sd_writer *wr, sd_write *w);
/* No write waits for the backend any longer: the held ones fail now, and
 * new ones are refused at once while it is not accepting. */
void sd_writer_drain(sd_writer *wr);
/* Asks for an upkeep call soon (from any thread); nothing for a backend
 * without upkeep. */
void sd_writer_poke(sd_writer *wr);
/* Finishes every queued write, then stops the thread and frees wr. */
void sd_writer_stop(sd_writer *wr);
/* The writer's counts, into the store's stats (active_rows is the count at
 * start, set by the backend, plus the writes' deltas). */
void sd_writer_set_active(sd_writer *wr, int64_t rows);
void sd_writer_stats(sd_writer *wr, sd_store_stats *out);

#endif
