/* sweeper.c - the expiry sweeper of sweeper.h. */
#include "session/sweeper.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sd_sweeper {
    sd_store_handle *store;
    int64_t interval_ms, retention_ms;
    int batch;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping, write_done;
    bool failing; /* the last sweep failed: said once, not every interval */
    sd_write w;
};

static void write_done(sd_write *w)
{
    sd_sweeper *s = w->udata;
    pthread_mutex_lock(&s->mu);
    s->write_done = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Runs one batch and waits for it. Returns rows affected, or -1. */
static int64_t run(sd_sweeper *s, sd_write_kind kind, int64_t now)
{
    memset(&s->w, 0, sizeof s->w);
    s->w.kind = kind;
    s->w.now = now;
    s->w.limit = s->batch;
    s->w.before = now - s->retention_ms;
    s->w.done = write_done;
    s->w.udata = s;
    s->write_done = false;
    sd_store_write(s->store, &s->w);
    pthread_mutex_lock(&s->mu);
    while (!s->write_done)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    return s->w.rc ? -1 : s->w.affected;
}

static bool stopping(sd_sweeper *s)
{
    pthread_mutex_lock(&s->mu);
    bool v = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return v;
}

static void *sweeper_main(void *arg)
{
    sd_sweeper *s = arg;
    for (;;) {
        struct timespec until;
        sd_mono_deadline(&until, s->interval_ms);
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && pthread_cond_timedwait(&s->cv, &s->mu, &until) == 0)
            ;
        bool stop = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;

        int64_t n, total = 0;
        while ((n = run(s, SD_W_SWEEP, sd_now_ms())) > 0 && (total += n) && n == s->batch &&
               !stopping(s))
            ;
        if (total > 0)
            sd_info("session_expired count=%lld (moved to history)", (long long)total);
        if (n < 0 && !s->failing)
            sd_warn("sweeper: sweep failed (store unavailable?); retrying every interval, quietly");
        else if (n >= 0 && s->failing)
            sd_info("sweeper: sweeping again");
        s->failing = n < 0;
        total = 0;
        while ((n = run(s, SD_W_PURGE, sd_now_ms())) > 0 && (total += n) && n == s->batch &&
               !stopping(s))
            ;
        if (total > 0)
            sd_info("history_purged count=%lld", (long long)total);
    }
    return NULL;
}

int sd_sweeper_start(sd_store_handle *store, int64_t interval_ms, int batch, int64_t retention_ms,
                     sd_sweeper **out)
{
    sd_sweeper *s = calloc(1, sizeof *s);
    if (!s)
        return SD_ENOMEM;
    s->store = store;
    s->interval_ms = interval_ms;
    s->batch = batch;
    s->retention_ms = retention_ms;
    pthread_mutex_init(&s->mu, NULL);
    sd_cond_init_mono(&s->cv);
    if (pthread_create(&s->thread, NULL, sweeper_main, s)) {
        free(s);
        return SD_ENOMEM;
    }
    pthread_setname_np(s->thread, "sd-sweeper");
    *out = s;
    return 0;
}

void sd_sweeper_stop(sd_sweeper *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
