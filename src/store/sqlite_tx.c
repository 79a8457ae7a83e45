/*
 * sqlite_tx.c - the embedded store's transaction (store/writer.h,
 * sd_tx_ops) the shared writer runs a batch in on the writer's connection:
 * begin, a savepoint a write (or none for a batch that can run again whole),
 * commit (an I/O error marks the store broken), and the in-memory index
 * kept in step with each committed batch's effects.
 */
#include "store/sqlite_internal.h"
#include "util/err.h"
#include "util/log.h"

#define WOK(rc) ((rc) == SQLITE_DONE)

static bool fatal_code(int rc)
{
    int primary = rc & 0xff;
    return primary == SQLITE_IOERR || primary == SQLITE_CORRUPT || primary == SQLITE_FULL ||
           primary == SQLITE_NOTADB || primary == SQLITE_CANTOPEN;
}

/* ---- the transaction (store/writer.h) ---------------------------------- */

/* A batch whose writes can all run again (pipeline) runs without a
 * savepoint a write: a savepoint copies each page a write dirties into the
 * statement journal first, and SAVEPOINT and RELEASE are two statements
 * more a write. A write that fails there (an I/O error, out of memory: a
 * refusal the domain decides is kept, not undone) fails the attempt as a
 * whole: the commit rolls the batch back and answers SD_ERETRY, and the
 * writer runs it again with a savepoint a write, where the failing write
 * is undone alone. */
static int tx_begin(void *be, bool pipeline, const sd_write *batch)
{
    (void)batch; /* one process, rows in its page cache: nothing to read ahead */
    sd_store *st = be;
    if (atomic_load(&st->broken) || !WOK(sq__wstep(st, W_BEGIN)))
        return SD_EUNAVAILABLE;
    st->changes_at_begin = sqlite3_total_changes(st->wdb);
    sd_index_batch_clear(st->index, &st->prepared);
    st->whole = pipeline;
    st->whole_failed = false;
    sq__ov_clear(st);
    return 0;
}

static int tx_savepoint(void *be)
{
    sd_store *st = be;
    sq__ov_mark(st);
    return st->whole || WOK(sq__wstep(st, W_SAVEPOINT)) ? 0 : SD_EUNAVAILABLE;
}

static void tx_release(void *be, bool more)
{
    (void)more;
    sd_store *st = be;
    if (!st->whole)
        sq__wstep(st, W_RELEASE);
}

static void tx_rollback_to(void *be)
{
    sd_store *st = be;
    if (st->whole) {
        st->whole_failed = true; /* one write cannot be undone alone: all are, at the commit */
        return;
    }
    sq__wstep(st, W_ROLLBACK_TO);
    sq__wstep(st, W_RELEASE);
    sq__ov_undo(st);
}

/* A COMMIT that fails with an I/O error marks the store broken: retrying
 * an fsync can falsely report success. Readiness comes back with the first
 * commit that really wrote. */
static int tx_commit(void *be)
{
    sd_store *st = be;
    sq__ov_clear(st); /* the index follows the committed batch (tx_committed) */
    if (st->whole_failed) {
        sd_index_batch_clear(st->index, &st->prepared);
        if (!WOK(sq__wstep(st, W_ROLLBACK)) && !sqlite3_get_autocommit(st->wdb))
            return SD_EUNAVAILABLE;
        sd_debug("store: a batch runs again, a savepoint a write");
        return SD_ERETRY;
    }
    if (WOK(sq__wstep(st, W_COMMIT))) {
        if (sqlite3_total_changes(st->wdb) != st->changes_at_begin)
            atomic_store(&st->write_failing, false);
        return 0;
    }
    sd_index_batch_clear(st->index, &st->prepared);
    int ext = sqlite3_extended_errcode(st->wdb);
    sd_error("store: commit failed: %s (%d)", sqlite3_errmsg(st->wdb), ext);
    if (!sqlite3_get_autocommit(st->wdb))
        sq__wstep(st, W_ROLLBACK);
    if (fatal_code(ext) && (ext & 0xff) != SQLITE_FULL) {
        atomic_store(&st->broken, true);
        sd_error("store: marked broken after an I/O error; no further write will be "
                 "acknowledged until restart");
    }
    atomic_store(&st->write_failing, true);
    return SD_EUNAVAILABLE;
}

/* The index entries the write's puts will need after the COMMIT, built now
 * (tx_committed links them without allocating): an acknowledged write is
 * never missing from the index for want of memory. */
static int tx_prepare(void *be, sd_write *w)
{
    sd_store *st = be;
    sd_index_batch mine = {0};
    for (size_t i = 0; i < w->n_effects; i++)
        if ((sd_effect_kind)w->effects[i].kind == SD_FX_PUT &&
            sd_index_prepare(st->index, &mine, &w->session)) {
            sd_index_batch_clear(st->index, &mine);
            return SD_ENOMEM;
        }
    sd_index_batch_append(&st->prepared, &mine);
    return 0;
}

/* After a successful COMMIT, and before any write of the batch is
 * acknowledged: bring the in-memory index to the committed state, by the
 * effects of the writes that were kept. */
static void tx_committed(void *be, sd_write *batch)
{
    sd_store *st = be;
    sd_index_lock(st->index);
    for (sd_write *w = batch; w; w = w->next) {
        if (!sd_write_kept(w->rc))
            continue;
        for (size_t i = 0; i < w->n_effects; i++) {
            const sd_effect *e = &w->effects[i];
            switch ((sd_effect_kind)e->kind) {
            case SD_FX_PUT:
                sd_index_put_prepared_locked(st->index, &st->prepared, &w->session);
                break;
            case SD_FX_TOUCH:
                sd_index_touch_locked(st->index, e->id, e->expiry, w->now);
                break;
            case SD_FX_END: /* an intent alone (not found) ends no row: an expired
                               one stays indexed, where the sweep finds it */
                if (e->gone)
                    sd_index_remove_locked(st->index, e->id);
                break;
            }
        }
    }
    sd_index_unlock(st->index);
}

const sd_tx_ops sq__tx = {
    .begin = tx_begin,
    .savepoint = tx_savepoint,
    .release = tx_release,
    .rollback_to = tx_rollback_to,
    .prepare = tx_prepare,
    .commit = tx_commit,
    .committed = tx_committed,
};
