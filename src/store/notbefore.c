/*
 * notbefore.c - the global not-before in memory (see notbefore.h): an
 * atomic value with the monotonic time its read started, a keeper thread
 * on shared stores that reads it and completes setters after the fence
 * wait. Only durations on this host's monotonic clock are compared.
 */
#include "store/notbefore.h"
#include "session/write.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#define POLL_MS  50
#define FRESH_MS 250
#define FENCE_MS (FRESH_MS + 50)
#define MS       1000000LL

struct sd_nb {
    int (*read)(void *ctx, int64_t *value);
    void *ctx;
    bool shared;
    _Atomic int64_t value;   /* raised only, as in the database */
    _Atomic int64_t read_ns; /* when the freshest read's query started (0: never) */

    pthread_t keeper;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;                /* under mu */
    bool quiet, reading;          /* under mu: no more reads; a read in progress */
    struct sd_write *held, *tail; /* under mu: setters waiting for the fence */
};

static void raise_to(_Atomic int64_t *a, int64_t v)
{
    int64_t cur = atomic_load(a);
    while (v > cur && !atomic_compare_exchange_weak(a, &cur, v))
        ;
}

/* One read whose query started at t0; both atomics only go up. */
static int refresh(sd_nb *nb)
{
    int64_t t0 = sd_mono_ns(), v = 0;
    int rc = nb->read(nb->ctx, &v);
    if (rc == 0) {
        raise_to(&nb->value, v);
        raise_to(&nb->read_ns, t0);
    }
    return rc;
}

int sd_nb_get(sd_nb *nb, int64_t *value)
{
    if (nb->shared && sd_mono_ns() - atomic_load(&nb->read_ns) >= (int64_t)FRESH_MS * MS) {
        int rc = refresh(nb); /* the keeper lags: read it here */
        if (rc)
            return rc == SD_ENOMEM ? rc : SD_EUNAVAILABLE;
    }
    *value = atomic_load(&nb->value);
    return 0;
}

/* Completes the held setters whose fence wait is over; under mu. Returns
 * the monotonic time of the next one (0: none). */
static int64_t release_due(sd_nb *nb)
{
    int64_t now = sd_mono_ns();
    while (nb->held && nb->held->t_submit_ns <= now) {
        struct sd_write *w = nb->held;
        nb->held = w->next;
        if (!nb->held)
            nb->tail = NULL;
        w->next = NULL;
        pthread_mutex_unlock(&nb->mu);
        w->done(w);
        pthread_mutex_lock(&nb->mu);
    }
    return nb->held ? nb->held->t_submit_ns : 0;
}

static void *keeper_main(void *arg)
{
    sd_nb *nb = arg;
    int64_t next_read = 0;
    pthread_mutex_lock(&nb->mu);
    while (!nb->stopping) {
        int64_t now = sd_mono_ns();
        if (now >= next_read && !nb->quiet) {
            nb->reading = true;
            pthread_mutex_unlock(&nb->mu);
            refresh(nb); /* a failure leaves the value stale: validations read it */
            pthread_mutex_lock(&nb->mu);
            nb->reading = false;
            pthread_cond_broadcast(&nb->cv);
            next_read = now + (int64_t)POLL_MS * MS;
        }
        int64_t due = release_due(nb), until = next_read;
        if (due && due < until)
            until = due;
        struct timespec ts = sd_mono_ts(until);
        if (!nb->stopping)
            pthread_cond_timedwait(&nb->cv, &nb->mu, &ts);
    }
    /* Stopping: the held setters still wait out their fence. */
    for (int64_t due; (due = release_due(nb));) {
        struct timespec ts = sd_mono_ts(due);
        pthread_cond_timedwait(&nb->cv, &nb->mu, &ts);
    }
    pthread_mutex_unlock(&nb->mu);
    return NULL;
}

void sd_nb_after_write(sd_nb *nb, struct sd_write *w)
{
    if (w->rc != 0 || !nb) {
        w->done(w);
        return;
    }
    raise_to(&nb->value, w->before);
    if (!nb->shared) {
        w->done(w);
        return;
    }
    /* Held until FENCE_MS after now (the commit has returned): t_submit_ns
     * is the wrapper's, done with once the write completed. */
    w->t_submit_ns = sd_mono_ns() + (int64_t)FENCE_MS * MS;
    w->next = NULL;
    pthread_mutex_lock(&nb->mu);
    if (nb->stopping) { /* at shutdown: no fence, no acknowledgement */
        pthread_mutex_unlock(&nb->mu);
        w->rc = SD_EUNAVAILABLE;
        w->done(w);
        return;
    }
    if (nb->tail)
        nb->tail->next = w;
    else
        nb->held = w;
    nb->tail = w;
    pthread_cond_signal(&nb->cv);
    pthread_mutex_unlock(&nb->mu);
}

int sd_nb_open(int (*read)(void *ctx, int64_t *value), void *ctx, bool shared, sd_nb **out)
{
    sd_nb *nb = calloc(1, sizeof *nb);
    if (!nb)
        return SD_ENOMEM;
    nb->read = read;
    nb->ctx = ctx;
    nb->shared = shared;
    pthread_mutex_init(&nb->mu, NULL);
    sd_cond_init_mono(&nb->cv);
    int rc = refresh(nb);
    if (rc && !shared) {
        sd_nb_close(nb);
        return rc;
    }
    if (rc)
        sd_warn("store: cannot read the global not-before yet (%s): validations read it until "
                "it is known",
                sd_strerror(rc));
    if (shared) {
        if (pthread_create(&nb->keeper, NULL, keeper_main, nb)) {
            sd_nb_close(nb);
            return SD_ENOMEM;
        }
        pthread_setname_np(nb->keeper, "sd-not-before");
        nb->started = true;
    }
    if (atomic_load(&nb->value))
        sd_info("store: global not-before in force: %lld", (long long)atomic_load(&nb->value));
    *out = nb;
    return 0;
}

void sd_nb_quiesce(sd_nb *nb)
{
    if (!nb || !nb->started)
        return;
    pthread_mutex_lock(&nb->mu);
    nb->quiet = true;
    while (nb->reading)
        pthread_cond_wait(&nb->cv, &nb->mu);
    pthread_mutex_unlock(&nb->mu);
}

void sd_nb_close(sd_nb *nb)
{
    if (!nb)
        return;
    if (nb->started) {
        pthread_mutex_lock(&nb->mu);
        nb->stopping = true;
        pthread_cond_broadcast(&nb->cv);
        pthread_mutex_unlock(&nb->mu);
        pthread_join(nb->keeper, NULL);
    }
    pthread_mutex_destroy(&nb->mu);
    pthread_cond_destroy(&nb->cv);
    free(nb);
}
