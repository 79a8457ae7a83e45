/*
 * writer.c - the shared writer (see writer.h): queue, load shedding,
 * batching, a savepoint per write, group commit, acknowledgement after the
 * commit is durable, and the counts /metrics shows.
 */
#include "store/writer.h"
#include "store/fault.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

struct sd_writer {
    const sd_tx_ops *tx;
    const sd_rows_ops *rows;
    void *be;
    int commit_batch, max_queued;
    int64_t hold_ns; /* sd_writer_options.hold_ms */

    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* work queued, upkeep asked for, or stopping (monotonic clock) */
    sd_write *head, *tail;
    int queued;
    bool stopping, draining, upkeep_wanted;
    int64_t upkeep_at_ns; /* writer-private: when upkeep is due (sd_mono_ns) */

    _Atomic int64_t active_rows, swept_total, sweeps_total, commits_total, writes_total,
        retries_total, held_total, hold_expired_total;
};

static void complete(sd_write *list)
{
    while (list) {
        sd_write *next = list->next;
        list->next = NULL;
        list->done(list);
        list = next;
    }
}

static void fail_all(sd_write *batch)
{
    for (sd_write *w = batch; w; w = w->next)
        w->rc = SD_EUNAVAILABLE;
    complete(batch);
}

/* What a batch's writes did, for the counts. */
typedef struct tally {
    int64_t delta, swept, sweeps, writes;
} tally;

/* One transaction for the batch; each write inside its own savepoint, so
 * that a failed one is undone alone. 0 once committed, else the commit's
 * failure (SD_ERETRY: run it again without pipelining). */
static int run_batch(sd_writer *wr, sd_write *batch, bool pipeline, tally *t)
{
    const sd_tx_ops *tx = wr->tx;
    if (tx->begin(wr->be, pipeline, batch))
        return SD_ENOTSENT;
    *t = (tally){0};
    for (sd_write *w = batch; w; w = w->next) {
        t->writes++;
        if (tx->savepoint(wr->be)) {
            w->rc = SD_EUNAVAILABLE;
            continue;
        }
        int prc = 0;
        if (sd_write_kept(sd_write_apply(wr->rows, wr->be, w)) &&
            (!tx->prepare || (prc = tx->prepare(wr->be, w)) == 0)) {
            t->delta += w->delta;
            if (w->kind == SD_W_SWEEP) {
                t->swept += w->affected;
                t->sweeps++;
            }
            tx->release(wr->be, w->next != NULL);
        } else {
            tx->rollback_to(wr->be);
            w->rc = prc ? prc : SD_EUNAVAILABLE;
        }
    }
    return tx->commit(wr->be);
}

/* Puts a batch that did not reach the database back at the head of the
 * queue, its writes as they were submitted. Takes mu. */
static void hold_again(sd_writer *wr, sd_write *batch)
{
    sd_write *last = batch;
    int n = 1;
    sd_write_rewind(batch);
    for (; last->next; last = last->next, n++)
        sd_write_rewind(last->next);
    pthread_mutex_lock(&wr->mu);
    if (wr->draining || wr->stopping) {
        pthread_mutex_unlock(&wr->mu);
        fail_all(batch);
        return;
    }
    atomic_fetch_add(&wr->held_total, n);
    last->next = wr->head;
    wr->head = batch;
    if (!wr->tail)
        wr->tail = last;
    wr->queued += n;
    pthread_mutex_unlock(&wr->mu);
}

/* Acknowledged only after COMMIT. A batch whose writes can all run again
 * may be pipelined by the backend (writer.h), and with hold_ms held again
 * when it did not reach the database. */
static void commit_batch(sd_writer *wr, sd_write *batch)
{
    bool pipeline = true;
    for (sd_write *w = batch; w && pipeline; w = w->next)
        pipeline = sd_write_rewindable(w);
    tally t;
    int rc = run_batch(wr, batch, pipeline, &t);
    if (rc == SD_ERETRY && pipeline) {
        for (sd_write *w = batch; w; w = w->next)
            sd_write_rewind(w);
        atomic_fetch_add(&wr->retries_total, 1);
        rc = run_batch(wr, batch, false, &t);
    }
    if (rc == SD_ENOTSENT && pipeline && wr->hold_ns) {
        hold_again(wr, batch);
        return;
    }
    if (rc) {
        fail_all(batch);
        return;
    }
    if (wr->tx->committed)
        wr->tx->committed(wr->be, batch);
    atomic_fetch_add(&wr->active_rows, t.delta);
    atomic_fetch_add(&wr->commits_total, 1);
    atomic_fetch_add(&wr->writes_total, t.writes);
    atomic_fetch_add(&wr->swept_total, t.swept);
    atomic_fetch_add(&wr->sweeps_total, t.sweeps);
    complete(batch);
}

static void upkeep(sd_writer *wr, bool after_batch)
{
    int ms = wr->tx->upkeep(wr->be, after_batch);
    if (ms >= 0)
        wr->upkeep_at_ns = sd_mono_ns() + (int64_t)ms * 1000000;
}

/* The backend cannot take writes: the queued ones wait for it, each until
 * its hold ends (then 503), while upkeep reconnects on its schedule. Under
 * mu; returns with it held, after one step. */
static void hold(sd_writer *wr)
{
    int64_t now = sd_mono_ns();
    sd_write *expired = NULL, **tail = &expired;
    int n = 0;
    while (wr->head && (wr->stopping || wr->draining || wr->head->hold_until_ns <= now)) {
        sd_write *w = wr->head; /* in deadline order: submitted in order, held alike */
        wr->head = w->next;
        w->next = NULL;
        *tail = w;
        tail = &w->next;
        n++;
    }
    if (!wr->head)
        wr->tail = NULL;
    wr->queued -= n;
    bool due = wr->upkeep_wanted || wr->upkeep_at_ns <= now;
    if (expired || due) {
        wr->upkeep_wanted = false;
        pthread_mutex_unlock(&wr->mu);
        atomic_fetch_add(&wr->hold_expired_total, n);
        fail_all(expired);
        if (due)
            upkeep(wr, false);
        pthread_mutex_lock(&wr->mu);
        return;
    }
    int64_t until_ns = wr->head->hold_until_ns;
    if (wr->upkeep_at_ns < until_ns)
        until_ns = wr->upkeep_at_ns;
    struct timespec until = sd_mono_ts(until_ns);
    pthread_cond_timedwait(&wr->cv, &wr->mu, &until);
}

static void *writer_main(void *arg)
{
    sd_writer *wr = arg;
    pthread_mutex_lock(&wr->mu);
    for (;;) {
        while (!wr->head && !wr->stopping && !wr->upkeep_wanted) {
            if (!wr->tx->upkeep)
                pthread_cond_wait(&wr->cv, &wr->mu);
            else {
                struct timespec until = sd_mono_ts(wr->upkeep_at_ns);
                if (pthread_cond_timedwait(&wr->cv, &wr->mu, &until) != 0)
                    break;
            }
        }
        if (!wr->head && wr->stopping)
            break;
        if (!wr->head) { /* upkeep is due or asked for */
            wr->upkeep_wanted = false;
            pthread_mutex_unlock(&wr->mu);
            upkeep(wr, false);
            pthread_mutex_lock(&wr->mu);
            continue;
        }
        if (wr->hold_ns && wr->tx->accepting && !wr->tx->accepting(wr->be)) {
            hold(wr);
            continue;
        }
#ifdef SD_STORE_FAULTS
        if (sd_fault_gate_closed() && !wr->stopping) { /* tests: store/fault.h */
            pthread_mutex_unlock(&wr->mu);
            nanosleep(&(struct timespec){0, 1000000}, NULL);
            pthread_mutex_lock(&wr->mu);
            continue;
        }
#endif
        sd_write *batch = wr->head, *last = batch;
        int n = 1;
        while (last->next && n < wr->commit_batch) {
            last = last->next;
            n++;
        }
        wr->head = last->next;
        if (!wr->head)
            wr->tail = NULL;
        last->next = NULL;
        wr->queued -= n;
        pthread_mutex_unlock(&wr->mu);
        commit_batch(wr, batch);
        if (wr->tx->upkeep)
            upkeep(wr, true);
        pthread_mutex_lock(&wr->mu);
    }
    pthread_mutex_unlock(&wr->mu);
    return NULL;
}

void sd_writer_submit(sd_writer *wr, sd_write *w)
{
    w->next = NULL;
    pthread_mutex_lock(&wr->mu);
    /* Shed load early rather than queue without bound. */
    int rc = wr->stopping                   ? SD_EUNAVAILABLE
             : wr->queued >= wr->max_queued ? SD_EBUSY
             : (!wr->hold_ns || wr->draining) && wr->tx->accepting && !wr->tx->accepting(wr->be)
                 ? SD_EUNAVAILABLE
                 : 0;
    if (rc) {
        pthread_mutex_unlock(&wr->mu);
        w->rc = rc;
        w->done(w);
        return;
    }
    wr->queued++;
    w->hold_until_ns = sd_mono_ns() + wr->hold_ns;
    if (wr->hold_ns && wr->tx->accepting && !wr->tx->accepting(wr->be))
        atomic_fetch_add(&wr->held_total, 1);
    if (wr->tail)
        wr->tail->next = w;
    else
        wr->head = w;
    wr->tail = w;
    pthread_cond_signal(&wr->cv);
    pthread_mutex_unlock(&wr->mu);
}

void sd_writer_drain(sd_writer *wr)
{
    pthread_mutex_lock(&wr->mu);
    wr->draining = true;
    pthread_cond_signal(&wr->cv);
    pthread_mutex_unlock(&wr->mu);
}

void sd_writer_poke(sd_writer *wr)
{
    if (!wr->tx->upkeep) /* nothing to run early (the embedded store) */
        return;
    pthread_mutex_lock(&wr->mu);
    wr->upkeep_wanted = true;
    pthread_cond_signal(&wr->cv);
    pthread_mutex_unlock(&wr->mu);
}

int sd_writer_start(const sd_writer_options *opt, const sd_tx_ops *tx, const sd_rows_ops *rows,
                    void *be, sd_writer **out)
{
    /* A backend that can stop accepting has upkeep to bring it back (hold
     * waits on it). */
    sd_assert(!tx->accepting || tx->upkeep);
    sd_writer *wr = calloc(1, sizeof *wr);
    if (!wr)
        return SD_ENOMEM;
    wr->tx = tx;
    wr->rows = rows;
    wr->be = be;
    wr->commit_batch = opt && opt->commit_batch > 0 ? opt->commit_batch : 1024;
    wr->max_queued = opt && opt->max_queued > 0 ? opt->max_queued : 10000;
    wr->hold_ns = opt && opt->hold_ms > 0 ? (int64_t)opt->hold_ms * 1000000 : 0;
    wr->upkeep_at_ns = sd_mono_ns() + (int64_t)(opt ? opt->first_upkeep_ms : 0) * 1000000;
    pthread_mutex_init(&wr->mu, NULL);
    sd_cond_init_mono(&wr->cv);
    if (pthread_create(&wr->thread, NULL, writer_main, wr)) {
        pthread_mutex_destroy(&wr->mu);
        pthread_cond_destroy(&wr->cv);
        free(wr);
        return SD_ENOMEM;
    }
    pthread_setname_np(wr->thread, "sd-writer");
    *out = wr;
    return 0;
}

void sd_writer_stop(sd_writer *wr)
{
    if (!wr)
        return;
    pthread_mutex_lock(&wr->mu);
    wr->stopping = true;
    pthread_cond_broadcast(&wr->cv);
    pthread_mutex_unlock(&wr->mu);
    pthread_join(wr->thread, NULL);
    pthread_mutex_destroy(&wr->mu);
    pthread_cond_destroy(&wr->cv);
    free(wr);
}

void sd_writer_set_active(sd_writer *wr, int64_t rows)
{
    atomic_store(&wr->active_rows, rows);
}

void sd_writer_stats(sd_writer *wr, sd_store_stats *out)
{
    out->active_rows = atomic_load(&wr->active_rows);
    out->swept_total = atomic_load(&wr->swept_total);
    out->sweeps_total = atomic_load(&wr->sweeps_total);
    out->commits_total = atomic_load(&wr->commits_total);
    out->writes_total = atomic_load(&wr->writes_total);
    out->batch_retries_total = atomic_load(&wr->retries_total);
    out->writes_held_total = atomic_load(&wr->held_total);
    out->write_holds_expired_total = atomic_load(&wr->hold_expired_total);
    pthread_mutex_lock(&wr->mu);
    out->writes_queued = wr->queued;
    pthread_mutex_unlock(&wr->mu);
}
