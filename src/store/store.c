/*
 * store.c - the backend registry and the thin wrappers every caller goes
 * through: the one place for store metrics and, in the test build, for
 * store faults (store/fault.h).
 */
#include "store/store.h"
#include "store/cache.h"
#include "store/cache_entry.h"
#include "store/fault.h"
#include "store/notbefore.h"
#include "metrics/metrics.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/jsonmem.h"
#include "util/file.h"
#include "util/log.h"
#include "util/random.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef SD_STORE_FAULTS
#define FAULT(op) sd_fault_check(op)
#else
#define FAULT(op) 0
#endif

struct sd_store_handle {
    const sd_store_ops *ops;
    sd_store *st;
    sd_cache *cache; /* NULL without --cache */
    sd_nb *nb;       /* the global not-before; NULL when the backend has none */
};

static const sd_store_ops *const backends[] = {&sd_store_sqlite, &sd_store_postgres};

const sd_store_ops *sd_store_find(const char *name)
{
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
        if (strcmp(backends[i]->name, name) == 0)
            return backends[i];
    return NULL;
}

const sd_store_ops *sd_store_from_setting(const char *setting, const char *data_dir,
                                          const char **location)
{
    if (setting[0] == '\0' || strcmp(setting, "sqlite") == 0) {
        *location = data_dir;
        return &sd_store_sqlite;
    }
    if (strncmp(setting, "postgres://", 11) == 0 || strncmp(setting, "postgresql://", 13) == 0 ||
        strchr(setting, '=')) {
        *location = setting;
        return &sd_store_postgres;
    }
    return NULL;
}

static int not_before_of(void *ctx, int64_t *value)
{
    sd_store_handle *h = ctx;
    return h->ops->not_before(h->st, value);
}

int sd_store_open(const sd_store_ops *ops, const char *location, const sd_store_options *opt,
                  sd_store_handle **out, char *err, size_t errlen)
{
#ifdef SD_STORE_FAULTS
    const char *faults = getenv("SESSIOND_STORE_FAULTS");
    if (sd_fault_load(faults, err, errlen))
        return SD_ECONFIG;
    if (faults && *faults)
        sd_warn("store: injecting faults (SESSIOND_STORE_FAULTS): %s", faults);
    if (sd_fault_gate())
        sd_warn("store: the writer takes no batch while %s exists (SESSIOND_WRITER_GATE)",
                sd_fault_gate());
#endif
    sd_store_handle *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return SD_ENOMEM;
    }
    h->ops = ops;
    err[0] = '\0';
    int rc = ops->open(location, opt, &h->st, err, errlen);
    if (rc) {
        if (!err[0]) /* a backend that ran out of memory before it could say where */
            snprintf(err, errlen, "%s", sd_strerror(rc));
        free(h);
        return rc;
    }
    if (ops->not_before &&
        (rc = sd_nb_open(not_before_of, h, (ops->caps & SD_STORE_SHARED) != 0, &h->nb))) {
        snprintf(err, errlen, "cannot read the global not-before: %s", sd_strerror(rc));
        ops->close(h->st);
        free(h);
        return rc;
    }
    *out = h;
    return 0;
}

void sd_store_drain(sd_store_handle *h)
{
    if (h && h->ops->drain)
        h->ops->drain(h->st);
}

void sd_store_close(sd_store_handle *h)
{
    if (!h)
        return;
    sd_cache_shutdown(h->cache); /* fences what waits, while the store is open */
    sd_nb_quiesce(h->nb);        /* its keeper reads the store no more */
    h->ops->close(h->st);        /* its last not-before setters wait out their fence */
    sd_nb_close(h->nb);
    sd_cache_close(h->cache);
    free(h);
}

/* The reads of validation are timed one in READ_SAMPLE a thread: two clock
 * reads around an index probe of ~0.3 us were 1 % of a validation's CPU.
 * A sample counts READ_SAMPLE times in the histogram, so its count still
 * follows the reads (to within READ_SAMPLE a thread). */
#define READ_SAMPLE 16u
static _Thread_local unsigned read_tick;

/* The clock for a sampled read, else 0 (not timed). */
static int64_t read_start(void)
{
    return read_tick++ % READ_SAMPLE == 0 ? sd_mono_ns() : 0;
}

static void read_done(enum sd_store_op op, int64_t t0)
{
    if (t0)
        sd_metrics_store_op_n(op, sd_mono_ns() - t0, READ_SAMPLE);
}

int sd_store_get(sd_store_handle *h, const char *id, bool want_attrs, sd_session *out,
                 char *uid_buf, size_t uid_cap)
{
    int64_t t0 = read_start();
    *out = (sd_session){.user_id_buf = uid_buf, .user_id_cap = uid_cap};
    int rc = FAULT(SD_OP_GET);
    if (rc)
        return rc;
    rc = h->ops->get(h->st, id, want_attrs, out);
    read_done(SD_OP_GET, t0);
    return rc;
}

int sd_store_get_by_token(sd_store_handle *h, const unsigned char hash[SD_HASH_LEN],
                          bool want_attrs, sd_session *out, char *uid_buf, size_t uid_cap)
{
    int64_t t0 = read_start(), fill_epoch = -1;
    *out = (sd_session){.user_id_buf = uid_buf, .user_id_cap = uid_cap};
    int frc = FAULT(SD_OP_GET_BY_TOKEN);
    if (frc)
        return frc;
    /* The hot path (validation, without attrs) reads the cache first. */
    if (h->cache && !want_attrs && sd_cache_get(h->cache, hash, out, &fill_epoch) == 0) {
        read_done(SD_OP_GET_BY_TOKEN, t0);
        return 0;
    }
    int rc = h->ops->get_by_token(h->st, hash, want_attrs, out);
    if (rc == 0 && fill_epoch >= 0)
        sd_cache_fill(h->cache, out, fill_epoch);
    read_done(SD_OP_GET_BY_TOKEN, t0);
    return rc;
}

int sd_store_get_rotated(sd_store_handle *h, const unsigned char hash[SD_HASH_LEN],
                         char session_id[SD_ID_LEN + 1], int64_t *rotated_at)
{
    int64_t t0 = sd_mono_ns();
    int rc = FAULT(SD_OP_GET_ROTATED);
    if (rc)
        return rc;
    rc = h->ops->get_rotated(h->st, hash, session_id, rotated_at);
    sd_metrics_store_op(SD_OP_GET_ROTATED, sd_mono_ns() - t0);
    return rc;
}

int sd_store_list_user(sd_store_handle *h, const char *user_id, int64_t now, const sd_cursor *after,
                       int limit, sd_session **out, size_t *n)
{
    int64_t t0 = sd_mono_ns();
    int rc = FAULT(SD_OP_LIST_USER);
    if (rc)
        return rc;
    rc = h->ops->list_user(h->st, user_id, now, after, limit, out, n);
    sd_metrics_store_op(SD_OP_LIST_USER, sd_mono_ns() - t0);
    return rc;
}

int sd_store_events(sd_store_handle *h, sd_event_scope scope, const char *key, int64_t after,
                    int64_t before, int limit, sd_event **out, size_t *n)
{
    return h->ops->events(h->st, scope, key, after, before, limit, out, n);
}

int sd_store_ended(sd_store_handle *h, const sd_feed_cursor *after, int64_t since_time, int limit,
                   sd_event **out, size_t *n)
{
    return h->ops->ended(h->st, after, since_time, limit, out, n);
}

int sd_store_feed(sd_store_handle *h, const sd_feed_cursor *after, int limit, sd_event **out,
                  size_t *n)
{
    return h->ops->feed(h->st, after, limit, out, n);
}

int sd_store_outbox_cursor(sd_store_handle *h, const char *name, int64_t lease_ms,
                           const sd_feed_cursor *save, sd_feed_cursor *cursor)
{
    return h->ops->outbox_cursor(h->st, name, lease_ms, save, cursor);
}

static const enum sd_store_op write_op[] = {
    [SD_W_CREATE] = SD_OP_CREATE,     [SD_W_UPDATE] = SD_OP_UPDATE,
    [SD_W_END] = SD_OP_END,           [SD_W_END_USER] = SD_OP_END_USER,
    [SD_W_BULK_END] = SD_OP_BULK_END, [SD_W_TOUCH] = SD_OP_TOUCH,
    [SD_W_SWEEP] = SD_OP_SWEEP,       [SD_W_PURGE] = SD_OP_PURGE,
    [SD_W_ROTATE] = SD_OP_UPDATE,     [SD_W_REENCRYPT] = SD_OP_UPDATE,
    [SD_W_REUSE] = SD_OP_END,         [SD_W_NOT_BEFORE] = SD_OP_BULK_END,
    [SD_W_TRIAGE] = SD_OP_BULK_END,   [SD_W_SIGNAL] = SD_OP_UPDATE,
    [SD_W_REFUSAL] = SD_OP_UPDATE, /* an event, no row: timed with the small writes */
};

/* The last step before the caller's completion: the effects (read by the
 * write-through) are freed, so that done never has to. */
static void release_done(sd_write *w)
{
    sd_write_free_effects(w);
    w->done = w->wrapped_done;
    /* On the writer's or the write-through's thread: a jansson failure of
     * earlier work there says nothing about the reply done builds. */
    sd_json_oom_clear();
    w->done(w);
}

static void timed_done(sd_write *w)
{
    sd_metrics_store_op(write_op[w->kind], sd_mono_ns() - w->t_submit_ns);
    w->done = release_done;
    if (w->kind == SD_W_NOT_BEFORE) /* no effects: nothing for the cache */
        sd_nb_after_write(w->handle->nb, w);
    else if (w->cache)
        sd_cache_after_write(w->cache, w); /* write-through; calls done */
    else
        w->done(w);
}

void sd_store_write(sd_store_handle *h, sd_write *w)
{
    w->t_submit_ns = sd_mono_ns();
    w->wrapped_done = w->done;
    w->done = timed_done;
    w->cache = h->cache;
    w->handle = h;
    w->effects = NULL;
    w->n_effects = w->cap_effects = 0;
    int rc = FAULT(write_op[w->kind]);
    if (rc) { /* as the writer answers a write it refuses */
        w->rc = rc;
        w->done(w);
        return;
    }
    h->ops->write(h->st, w);
}

int sd_store_not_before(sd_store_handle *h, int64_t *value)
{
    *value = 0;
    return h->nb ? sd_nb_get(h->nb, value) : 0;
}

int sd_store_ready(sd_store_handle *h)
{
    return h->ops->ready(h->st);
}

void sd_store_get_stats(sd_store_handle *h, sd_store_stats *out)
{
    memset(out, 0, sizeof *out);
    h->ops->stats(h->st, out);
    if (h->cache) {
        sd_cache_stats cs;
        sd_cache_get_stats(h->cache, &cs);
        out->cache = true;
        out->cache_degraded = cs.degraded;
        out->cache_hits = cs.hits;
        out->cache_misses = cs.misses;
        out->cache_errors = cs.errors;
        out->cache_fences = cs.fences;
        out->cache_master_changes = cs.master_changes;
    }
}

static int epoch_of(void *ctx, bool bump, int64_t *epoch)
{
    sd_store_handle *h = ctx;
    return h->ops->cache_epoch(h->st, bump, epoch);
}

int sd_store_cache_check(const sd_store_ops *ops, const char *url, char *err, size_t errlen)
{
    if (!ops->cache_epoch) {
        snprintf(err, errlen, "--cache needs a shared store (--store postgres://...)");
        return SD_EINVALID;
    }
    sd_cache_url u;
    int rc = sd_cache_url_parse(url, &u, err, errlen);
    explicit_bzero(&u, sizeof u); /* it holds the password */
    return rc;
}

int sd_store_attach_cache(sd_store_handle *h, const char *url, const char *password, int timeout_ms,
                          int64_t tombstone_ms, char *err, size_t errlen)
{
    int rc = sd_store_cache_check(h->ops, url, err, errlen);
    if (rc)
        return rc;
    sd_cache_options opt = {.url = url,
                            .password = password,
                            .timeout_ms = timeout_ms,
                            .tombstone_ms = tombstone_ms,
                            .epoch = epoch_of,
                            .epoch_ctx = h};
    return sd_cache_open(&opt, &h->cache, err, errlen);
}

void sd_sessions_free(sd_session *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sd_session_clear(&v[i]);
    free(v);
}

int sd_store_replica_id(const char *data_dir, char out[17])
{
    char path[1100];
    snprintf(path, sizeof path, "%s/replica-id", data_dir);
    FILE *f = fopen(path, "r");
    if (f) {
        int ok = fscanf(f, "%16[0-9a-f]", out) == 1 && strlen(out) == 16;
        fclose(f);
        if (ok)
            return 0;
    }
    unsigned char raw[8];
    if (sd_random(raw, sizeof raw))
        return SD_ERANDOM;
    sd_hex(raw, sizeof raw, out);
    /* A crash leaves the old id or the whole new one, never a torn one. */
    return sd_file_replace(data_dir, "replica-id", out, 16);
}
