/*
 * cache_through.c - the cache tier's write-through (see cache.c's header for
 * the rules): after a write committed, its effects become tombstones,
 * versioned markers and fills, sent for every write of a turn in one
 * pipelined round trip; a write whose needed invalidation failed is fenced
 * through the epoch before its completion runs.
 */
#include "store/cache_internal.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void through(sd_cache *c, struct sd_write *list, bool may_fence);

/* The write-through thread: takes every write queued since its last turn,
 * invalidates for all of them in one pipelined round trip, fences those
 * whose invalidation failed, then completes them all. So the store's writer
 * never waits on Redis. */
void *cc__through_main(void *arg)
{
    sd_cache *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->queue_head && !c->stopping)
            pthread_cond_wait(&c->cv, &c->mu);
        struct sd_write *list = c->queue_head;
        c->queue_head = c->queue_tail = NULL;
        if (!list && c->stopping)
            break;
        pthread_mutex_unlock(&c->mu);
        through(c, list, true);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- write-through ----------------------------------------------------- */

/* A write whose effects end more sessions than this is fenced instead of
 * tombstoning each (a user-wide or bulk revocation of a large account). */
#define MAX_TOMBSTONES 1024

/* One command of the write-through: a tombstone (ended) or a marker with
 * version over the session's key, or the fill of a new session (the
 * article's pre-warming: the first validation after a login is a hit). */
typedef struct inv {
    const char *id;
    bool ended;
    int64_t version;
    bool required;          /* its failure fences the write (sd_effect_required) */
    const sd_session *fill; /* a fill: never required */
} inv;

/* What a completed write needs, from its effects: up to max commands into v,
 * and *fence when it must be fenced whatever Redis says. Returns the number
 * of commands wanted (may exceed max: the caller asks again with room). */
static size_t plan(const struct sd_write *w, inv *v, size_t max, bool *fence)
{
    size_t n = 0, ends = 0;
    *fence = false;
    for (size_t i = 0; i < w->n_effects; i++)
        ends += w->effects[i].kind == SD_FX_END && !w->effects[i].expired;
    bool too_many = ends > MAX_TOMBSTONES;
    for (size_t i = 0; i < w->n_effects; i++) {
        const sd_effect *e = &w->effects[i];
        inv x = {e->id, e->kind == SD_FX_END, e->version, sd_effect_required(w, e), NULL};
        if (e->kind == SD_FX_END && (e->expired || too_many)) {
            *fence |= too_many && x.required; /* expired: every hit checks expiry */
            continue;
        }
        if (e->kind == SD_FX_PUT && w->kind == SD_W_CREATE && w->rc != 0)
            continue;
        /* The write's own row as it committed (a create, an update, a
         * rotation, a renewal): put it, over the old entry and its token
         * key in one step (fill_lua), so the next validation is a hit. For
         * an update it stays required: if Redis does not run it, the write
         * is fenced as for a failed invalidation. */
        if (e->kind == SD_FX_PUT && w->rc == 0 && sd_write_has_row(w) &&
            strcmp(e->id, w->session.id) == 0 && e->version == w->session.version)
            x.fill = &w->session;
        if (n < max)
            v[n] = x;
        n++;
    }
    return n;
}

/* Appends the n commands to one connection's output (nothing is sent
 * yet: hiredis copies the arguments, so what v points to may go once this
 * returns); sent[i] says which were. The connection, or NULL when Redis
 * cannot be used now. Fills carry the epoch read last (a stale one is
 * merely not trusted). */
static conn *append_all(sd_cache *c, const inv *v, size_t n, bool *sent)
{
    /* The epoch before the connection's check (see adopt). */
    int64_t epoch = atomic_load(&c->epoch), now = sd_now_ms();
    conn *k = n ? cc__ready_conn(c) : NULL;
    if (!k)
        return NULL;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%lld", (long long)c->tombstone_ms);
    for (size_t i = 0; i < n; i++) {
        const char *argv[10];
        size_t lens[10];
        int argc = 6;
        char key[sizeof KEY_S + 64], marker[32];
        fill_cmd f = {0};
        bool fill = v[i].fill && v[i].fill->expiry > now && cc__fill_prepare(&f, v[i].fill, epoch);
        if (v[i].fill && !fill && !v[i].required)
            continue; /* best effort: a miss fills it later */
        if (fill) {
            memcpy(argv, f.argv, sizeof f.argv);
            argc = 10;
        } else { /* an invalidation (also for a put that could not be filled) */
            snprintf(key, sizeof key, KEY_S "%.63s", v[i].id);
            if (v[i].ended)
                snprintf(marker, sizeof marker, "x");
            else
                snprintf(marker, sizeof marker, "m|%lld", (long long)v[i].version);
            const char *inv_argv[] = {"EVAL", cc__invalidate_lua, "1", key, marker, ttl};
            memcpy(argv, inv_argv, sizeof inv_argv);
        }
        for (int j = 0; j < argc; j++)
            lens[j] = strlen(argv[j]);
        int arc = redisAppendCommandArgv(k->rc, argc, argv, lens);
        free(f.v);
        if (arc != REDIS_OK) {
            cc__note_failure(c, "EVAL", "out of memory");
            cc__drop(k);
            for (size_t j = 0; j < n; j++)
                sent[j] = false;
            return NULL;
        }
        sent[i] = true;
    }
    return k;
}

/* Sends what append_all buffered and reads every reply: ok[i] says which
 * commands Redis ran. */
static void read_all(sd_cache *c, conn *k, size_t n, const bool *sent, bool *ok)
{
    bool any = false;
    for (size_t i = 0; k && i < n; i++) {
        void *r = NULL;
        if (!sent[i])
            continue;
        if (redisGetReply(k->rc, &r) != REDIS_OK) {
            cc__note_failure(c, "EVAL", k->rc->errstr);
            cc__drop(k);
            break;
        }
        redisReply *rr = r;
        if (rr->type == REDIS_REPLY_ERROR) {
            cc__error_reply(c, k, "EVAL", rr);
            if (!k->rc) {
                freeReplyObject(rr);
                break;
            }
        } else
            ok[i] = any = true;
        freeReplyObject(rr);
    }
    if (any)
        cc__note_success(c);
}

/* Bumps the epoch for writes that need a fence and waits until no replica
 * trusts the old one. 0 or the bump's error. */
static int fence(sd_cache *c)
{
    int64_t t0 = sd_mono_ns(), e = 0;
    int rc = c->epoch_fn(c->epoch_ctx, true, &e);
    if (rc) {
        sd_error("cache: cannot bump the cache epoch in the store (%s): the writes it fences "
                 "answer 503",
                 sd_strerror(rc));
        return rc;
    }
    cc__set_epoch(c, e, t0);
    atomic_fetch_add(&c->fences, 1);
    struct timespec ts = {0, FENCE_WAIT_MS * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
    return 0;
}

/* Write-through for a list of completed writes, then their completions.
 * Without may_fence (at shutdown) a write that needs a fence answers 503. */
static void through(sd_cache *c, struct sd_write *list, bool may_fence)
{
    size_t total = 0, nw = 0;
    bool f;
    for (struct sd_write *w = list; w; w = w->next, nw++)
        total += plan(w, NULL, 0, &f);
    inv *v = calloc(total ? total : 1, sizeof *v);
    bool *ok = calloc(total ? total : 1, sizeof *ok);
    bool *sent = calloc(total ? total : 1, sizeof *sent);
    conn *k = NULL;
    if (v && ok && sent) {
        size_t at = 0;
        for (struct sd_write *w = list; w; w = w->next)
            at += plan(w, v + at, total - at, &f);
        k = append_all(c, v, total, sent);
    }
    /* The writes whose commands are all best effort (a create's fill, a
     * touch's marker) are acknowledged now, before Redis answers: their
     * acknowledgement never waits on Redis. The others wait for the replies,
     * and for a fence when they always need one or when an invalidation
     * they need failed. */
    struct sd_write *wait = NULL, **tail = &wait;
    size_t *first = calloc(nw ? nw : 1, sizeof *first), nwait = 0, at = 0;
    for (struct sd_write *w = list, *next; w; w = next) {
        next = w->next;
        size_t n = plan(w, NULL, 0, &f);
        bool required = f || !v || !ok || !sent || !first;
        for (size_t i = 0; !required && i < n; i++)
            required = v[at + i].required;
        if (!required) {
            w->next = NULL;
            w->done(w);
        } else {
            if (first)
                first[nwait] = at;
            nwait++;
            *tail = w;
            tail = &w->next;
        }
        at += n;
    }
    *tail = NULL;
    if (v && ok && sent)
        read_all(c, k, total, sent, ok);
    bool need_fence = false, *fenced = calloc(nwait ? nwait : 1, sizeof *fenced);
    size_t j = 0;
    for (struct sd_write *w = wait; w; w = w->next, j++) {
        size_t n = plan(w, NULL, 0, &f);
        bool must = f;
        if (v && ok && sent && first)
            for (size_t i = 0; i < n; i++)
                must |= !ok[first[j] + i] && v[first[j] + i].required;
        else /* out of memory: nothing was sent */
            for (size_t i = 0; i < w->n_effects; i++)
                must |= sd_effect_required(w, &w->effects[i]);
        if (fenced)
            fenced[j] = must;
        need_fence |= must;
    }
    int rc = !need_fence ? 0 : may_fence && fenced ? fence(c) : SD_EUNAVAILABLE;
    j = 0;
    while (wait) {
        struct sd_write *next = wait->next;
        wait->next = NULL;
        if (rc && (!fenced || fenced[j]))
            wait->rc = SD_EUNAVAILABLE;
        wait->done(wait);
        wait = next;
        j++;
    }
    free(v);
    free(ok);
    free(sent);
    free(first);
    free(fenced);
}

void sd_cache_after_write(sd_cache *c, struct sd_write *w)
{
    bool f;
    if (plan(w, NULL, 0, &f) == 0 && !f) {
        w->done(w);
        return;
    }
    w->next = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->closed) { /* the thread is gone: on this thread, and no fence any more */
        pthread_mutex_unlock(&c->mu);
        through(c, w, false);
        return;
    }
    if (c->queue_tail)
        c->queue_tail->next = w;
    else
        c->queue_head = w;
    c->queue_tail = w;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}
