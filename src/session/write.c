/*
 * write.c - what each kind of write does, over a backend's row operations
 * (see write.h). The one copy of the session policy on the write side: the
 * per-user cap, rotation and reuse, renewal, the audit events' names, and
 * the effects the index and the cache follow.
 */
#include "session/write.h"
#include "session/anomaly.h"
#include "session/triage.h"
#include "util/err.h"
#include "util/grow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool sd_write_kept(int rc)
{
    return rc == 0 || rc == SD_ENOTFOUND || rc == SD_ECONFLICT || rc == SD_EINVALID ||
           rc == SD_ELIMIT || rc == SD_EREUSED || rc == SD_EMISMATCH;
}

int sd_write_effect(sd_write *w, sd_effect_kind kind, const char *id, int64_t version,
                    int64_t expiry)
{
    void *p = sd_grow(w->effects, &w->cap_effects, w->n_effects, sizeof *w->effects, 4);
    if (!p)
        return SD_ENOMEM;
    w->effects = p;
    sd_effect *e = &w->effects[w->n_effects++];
    memset(e, 0, sizeof *e);
    strncpy(e->id, id, SD_ID_LEN);
    e->kind = (unsigned char)kind;
    e->version = version;
    e->expiry = expiry;
    return 0;
}

int sd_write_ended(sd_write *w, const char *id, bool expired)
{
    w->affected++;
    w->delta--;
    /* An END records its intent first (see sd_effect_required). */
    sd_effect *last = w->n_effects ? &w->effects[w->n_effects - 1] : NULL;
    if (last && last->kind == SD_FX_END && strcmp(last->id, id) == 0) {
        last->gone = true;
        return 0;
    }
    int rc = sd_write_effect(w, SD_FX_END, id, 0, 0);
    if (rc == 0) {
        w->effects[w->n_effects - 1].expired = expired;
        w->effects[w->n_effects - 1].gone = true;
    }
    return rc;
}

void sd_write_free_effects(sd_write *w)
{
    free(w->effects);
    w->effects = NULL;
    w->n_effects = w->cap_effects = 0;
}

const char *sd_write_reads(const sd_write *w)
{
    switch (w->kind) {
    case SD_W_UPDATE:
    case SD_W_ROTATE:
    case SD_W_REUSE:
        return w->id;
    case SD_W_END: /* self-service: the owner is checked first; a precondition too */
        return w->user_id || w->precond ? w->id : NULL;
    case SD_W_SIGNAL:
        return w->signals ? w->id : NULL;
    default:
        return NULL;
    }
}

bool sd_write_rewindable(const sd_write *w)
{
    switch (w->kind) {
    case SD_W_SWEEP:
    case SD_W_PURGE:
    case SD_W_REENCRYPT:
    case SD_W_NOT_BEFORE:
    case SD_W_TRIAGE:
        return false; /* cursors, limits and values that move as they run */
    default:
        return true;
    }
}

void sd_write_rewind(sd_write *w)
{
    sd_write_free_effects(w);
    w->rc = 0;
    w->affected = w->delta = 0;
    w->detail[0] = '\0';
    w->version_found = 0;
    w->renewed = false;
    if (w->kind == SD_W_UPDATE || w->kind == SD_W_SIGNAL) { /* the session is their result */
        sd_session_clear(&w->session);
    } else if (w->kind == SD_W_ROTATE || w->kind == SD_W_REUSE) { /* the new token is input */
        unsigned char next[SD_HASH_LEN];
        memcpy(next, w->session.token_hash, sizeof next);
        sd_session_clear(&w->session);
        memcpy(w->session.token_hash, next, sizeof next);
    }
}

bool sd_write_has_row(const sd_write *w)
{
    return w->kind == SD_W_CREATE || w->kind == SD_W_UPDATE || w->kind == SD_W_ROTATE ||
           w->kind == SD_W_SIGNAL;
}

bool sd_effect_required(const sd_write *w, const sd_effect *e)
{
    if (e->kind == SD_FX_TOUCH || e->expired)
        return false;
    if (e->kind == SD_FX_PUT && w->kind == SD_W_CREATE)
        return false; /* a new id: no entry of it can be stale */
    if (w->rc == 0 || w->rc == SD_EREUSED)
        return true;
    return w->kind == SD_W_END && w->rc == SD_ENOTFOUND;
}

/* The audit event an ending writes, by its reason. */
static const char *end_event(const char *reason)
{
    if (strcmp(reason, "evicted") == 0 || strcmp(reason, "expired") == 0)
        return reason;
    return "revoked";
}

static int end_one(const sd_rows_ops *ops, void *rows, sd_write *w, const char *id,
                   const char *reason)
{
    sd_end_rows e = {.id = id, .reason = reason, .event = end_event(reason)};
    return ops->end(rows, w, &e);
}

/* The per-user cap, before a create: refuse, or end the least recently seen
 * sessions (reason "evicted"), as many as it takes to leave room for one (a
 * cap lowered since they were created can mean many). */
static int enforce_user_limit(const sd_rows_ops *ops, void *rows, sd_write *w)
{
    int max = w->policy ? w->policy->max_per_user : 0;
    if (max <= 0)
        return 0;
    const char *user = w->session.user_id;
    int64_t count = 0;
    int rc = ops->lock_user ? ops->lock_user(rows, user) : 0;
    bool below = false;
    if (rc == 0 && ops->user_below)
        rc = ops->user_below(rows, user, w->now, max, &below);
    if (rc || below || (rc = ops->count_user(rows, user, w->now, &count)))
        return rc;
    if (count < max)
        return 0;
    if (!w->policy->evict_oldest)
        return SD_ELIMIT;
    size_t want = (size_t)(count - max + 1), n = 0;
    char(*ids)[SD_ID_LEN + 1] = malloc(want * sizeof *ids);
    if (!ids)
        return SD_ENOMEM;
    /* Every id is read before the first ends: no row changes under the
     * read while it runs. */
    rc = ops->oldest_user(rows, user, w->now, want, ids, &n);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = end_one(ops, rows, w, ids[i], "evicted");
    free(ids);
    return rc;
}

/* One audit event per anomaly signal that fired (session/anomaly.h):
 * anomaly_detected, reason "<signal> <action> <brief>" (an event's reason
 * is kept to 31 bytes: "impossibleTravel stepup 20015km" fits). */
static int signal_events(const sd_rows_ops *ops, void *rows, sd_write *w, const sd_session *s)
{
    int rc = 0;
    for (int i = 0; rc == 0 && i < SD_SIG_COUNT; i++) {
        if (!(w->signals->fired & (1u << i)))
            continue;
        char reason[64];
        snprintf(reason, sizeof reason, "%s %s %s", sd_signal_name(i),
                 sd_signal_action_name(w->signals->action[i]), w->signals->brief[i]);
        rc = ops->event(rows, w, "anomaly_detected", s->id, s->user_id, reason);
    }
    return rc;
}

static int do_create(const sd_rows_ops *ops, void *rows, sd_write *w)
{
    int rc = enforce_user_limit(ops, rows, w);
    if (rc == 0 && w->signals)
        rc = sd_anomaly_apply(w->signals, w->session.attrs);
    if (rc == 0)
        rc = ops->insert(rows, w, &w->session, "created");
    if (rc == 0 && w->signals)
        rc = signal_events(ops, rows, w, &w->session);
    if (rc == 0) {
        w->delta++;
        rc = sd_write_effect(w, SD_FX_PUT, w->session.id, w->session.version, 0);
    }
    return rc;
}

/* Gives cur the token new_hash, the old one kept as retired (a later use of
 * it is reuse). With bump the version goes up too (a rotation is a change
 * of its own; a renewal rides on the update that bumps it). */
static int retire(const sd_rows_ops *ops, void *rows, sd_session *cur,
                  const unsigned char new_hash[SD_HASH_LEN], int64_t now, bool bump)
{
    int rc = ops->retire(rows, cur->id, cur->token_hash, new_hash, now, bump);
    if (rc)
        return rc;
    memcpy(cur->token_hash, new_hash, SD_HASH_LEN);
    if (bump)
        cur->version++;
    return 0;
}

/* Token rotation: the domain decides (sd_rotation_decide) on the row read
 * in the transaction; a reuse ends the session in this same transaction. A
 * REUSE write (a retired token presented for validation) takes the same
 * decision and never rotates. */
static int do_rotate(const sd_rows_ops *ops, void *rows, sd_write *w)
{
    sd_session cur;
    int rc = ops->select(rows, w->id, &cur);
    if (rc)
        return rc;
    if (!sd_session_active(&cur, w->now) || cur.created_at < w->not_before) {
        sd_session_clear(&cur);
        return SD_ENOTFOUND;
    }
    bool is_current = sd_hash_equal(cur.token_hash, w->presented_hash);
    bool was_rotated = false;
    int64_t rotated_at = 0;
    if (!is_current &&
        (rc = ops->find_retired(rows, w->presented_hash, w->id, &was_rotated, &rotated_at))) {
        sd_session_clear(&cur);
        return rc;
    }
    int64_t grace = w->policy ? w->policy->refresh_grace_ms : 0;
    switch (sd_rotation_decide(is_current, was_rotated, rotated_at, w->now, grace)) {
    case SD_ROTATE_MISMATCH:
        rc = SD_EMISMATCH;
        break;
    case SD_ROTATE_RACE:
        rc = SD_ECONFLICT;
        break;
    case SD_ROTATE_REUSE:
        rc = ops->event(rows, w, "token_reuse_detected", cur.id, cur.user_id, NULL);
        if (rc == 0)
            rc = end_one(ops, rows, w, w->id, "token_reuse");
        if (rc == 0)
            rc = SD_EREUSED;
        break;
    case SD_ROTATE:
        if (w->kind == SD_W_REUSE) { /* the current token: nothing to end */
            rc = SD_ECONFLICT;
            break;
        }
        rc = retire(ops, rows, &cur, w->session.token_hash, w->now, true);
        if (rc == 0)
            rc = ops->event(rows, w, "refreshed", cur.id, cur.user_id, NULL);
        if (rc == 0)
            rc = sd_write_effect(w, SD_FX_PUT, cur.id, cur.version, 0);
        if (rc == 0) {
            w->session = cur; /* the session with its new token hash and version */
            return 0;
        }
        break;
    }
    sd_session_clear(&cur);
    return rc;
}

/* Read-modify-write: the domain's sd_patch_apply (version check, clamps,
 * merge) on the row read in the transaction. A raised privilege renews the
 * token when the caller made that possible. */
static int do_update(const sd_rows_ops *ops, void *rows, sd_write *w)
{
    sd_session cur;
    int rc = ops->select(rows, w->id, &cur);
    if (rc)
        return rc;
    if (cur.created_at < w->not_before) { /* ended by the global not-before */
        sd_session_clear(&cur);
        return SD_ENOTFOUND;
    }
    int64_t read_version = cur.version;
    sd_session before = cur;
    before.attrs = json_incref(cur.attrs); /* sd_patch_apply replaces cur.attrs */
    rc = sd_patch_apply(w->patch, w->policy, &cur, w->now, w->detail, sizeof w->detail);
    if (rc == SD_ECONFLICT)
        w->version_found = cur.version; /* unchanged on error */
    bool raised = rc == 0 && sd_privilege_raised(&before, &cur);
    json_decref(before.attrs);
    if (rc == 0 && raised && w->renew_possible) {
        rc = retire(ops, rows, &cur, w->renew_hash, w->now, false);
        w->renewed = rc == 0;
        if (w->renewed) /* the step-up the anomaly signals asked for is done */
            sd_anomaly_clear(cur.attrs);
    }
    int64_t n = 0;
    if (rc == 0 && (rc = ops->update(rows, w, &cur, read_version, "updated", &n)) == 0 && n == 0)
        rc = SD_ECONFLICT; /* changed since the read: cannot happen to the only writer of it */
    if (rc == 0 && w->renewed)
        rc = ops->event(rows, w, "renewed", cur.id, cur.user_id, "privilege_raised");
    if (rc == 0)
        rc = sd_write_effect(w, SD_FX_PUT, cur.id, cur.version, 0);
    if (rc) {
        sd_session_clear(&cur);
        return rc;
    }
    w->session = cur;
    return 0;
}

static int do_end(const sd_rows_ops *ops, void *rows, sd_write *w)
{
    int rc;
    if (w->user_id || w->precond) {
        /* Self-service: only a session of this user. Another user's is
         * "not found" and leaves no effect (its cache entry stays). A
         * precondition is evaluated on an active session only: an ended or
         * expired one is not found, whatever was asked of it. */
        sd_session cur;
        rc = ops->select(rows, w->id, &cur);
        if (rc == 0) { /* not found: ended below as not found, the cache ends the id */
            if (w->user_id && strcmp(cur.user_id, w->user_id) != 0)
                rc = SD_ENOTFOUND;
            else if (sd_session_active(&cur, w->now) &&
                     (rc = sd_precond_check(w->precond, cur.version, w->detail, sizeof w->detail)))
                w->version_found = cur.version; /* nothing ended: no effect */
            sd_session_clear(&cur);
            if (rc)
                return rc;
        } else if (rc != SD_ENOTFOUND) {
            return rc;
        }
    }
    /* The intent first: the cache ends the id even when it is not found
     * here (sd_effect_required). */
    rc = sd_write_effect(w, SD_FX_END, w->id, 0, 0);
    if (rc == 0)
        rc = end_one(ops, rows, w, w->id, w->reason);
    if (rc == 0 && w->affected == 0)
        rc = SD_ENOTFOUND;
    return rc;
}

static int end_user(const sd_rows_ops *ops, void *rows, sd_write *w, const char *user,
                    const char *except)
{
    sd_end_rows e = {
        .user_id = user, .except_id = except, .reason = w->reason, .event = end_event(w->reason)};
    return ops->end(rows, w, &e);
}

/* The global not-before: raised (never lowered: a session it cut off never
 * comes back), then audited with the number of active sessions it
 * invalidates. The rows stay until the sweeper or a revocation moves them:
 * validation compares each session's creation time with the value in force,
 * in memory, so there is nothing to end here and no cache entry to touch. */
static int do_not_before(const sd_rows_ops *ops, void *rows, sd_write *w)
{
    int64_t value = w->before, n = 0;
    int rc = ops->raise_not_before(rows, &value);
    if (rc == 0)
        rc = ops->count_before(rows, value, w->now, &n);
    if (rc)
        return rc;
    w->before = value;
    w->affected = n;
    char reason[32];
    snprintf(reason, sizeof reason, "sessions=%lld", (long long)n);
    return ops->event(rows, w, "not_before_set", NULL, NULL, reason);
}

/* One batch of an incident-response revocation: the match is made here in
 * C (attrs may be sealed at rest), each match ended on its own so the
 * effects name every one (the cache tombstones them); a session the global
 * not-before cut off is no match (it can no longer validate, and counting
 * it would inflate the count). A dry run (the console's preview) counts
 * the same matches and changes nothing. */
static int do_triage(const sd_rows_ops *ops, void *rows, sd_write *w)
{
    sd_session *v = NULL;
    size_t n = 0;
    int64_t last = w->cursor;
    int rc = w->limit > 0 && w->triage ? ops->scan(rows, w->cursor, w->limit, w->now, &v, &n, &last)
                                       : SD_EINVALID;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (v[i].created_at < w->not_before) /* cut off already: nothing to end */
            continue;
        if (!sd_triage_match(w->triage, &v[i]))
            continue;
        if (w->dry_run)
            w->affected++;
        else
            rc = end_one(ops, rows, w, v[i].id, "incident_revoked");
    }
    for (size_t i = 0; i < n; i++)
        sd_session_clear(&v[i]);
    free(v);
    if (rc)
        return rc;
    bool done = n < (size_t)w->limit;
    w->cursor = last;
    w->limit = (int)n;
    if (!done || w->dry_run)
        return 0;
    char reason[32];
    snprintf(reason, sizeof reason, "sessions=%lld", (long long)(w->total + w->affected));
    return ops->event(rows, w, "incident_revoked", NULL, NULL, reason);
}

/* What a validation saw (anomaly signals, a move): recorded on the session
 * as an update of its attrs, which the index and the cache follow (PUT). */
static int do_signal(const sd_rows_ops *ops, void *rows, sd_write *w)
{
    sd_session cur;
    int rc = w->signals ? ops->select(rows, w->id, &cur) : SD_EINVALID;
    if (rc)
        return rc;
    int64_t read_version = cur.version, n = 0;
    if (!sd_session_active(&cur, w->now) || cur.created_at < w->not_before)
        rc = SD_ENOTFOUND;
    if (rc == 0 && !cur.attrs && !(cur.attrs = json_object()))
        rc = SD_ENOMEM;
    if (rc == 0)
        rc = sd_anomaly_apply(w->signals, cur.attrs);
    if (rc == 0) {
        cur.version++;
        rc = ops->update(rows, w, &cur, read_version, NULL, &n);
    }
    if (rc == 0 && n == 0)
        rc = SD_ECONFLICT;
    if (rc == 0)
        rc = signal_events(ops, rows, w, &cur);
    if (rc == 0)
        rc = sd_write_effect(w, SD_FX_PUT, cur.id, cur.version, 0);
    if (rc) {
        sd_session_clear(&cur);
        return rc;
    }
    w->session = cur; /* the PUT's state, for the validation index */
    return 0;
}

int sd_write_apply(const sd_rows_ops *ops, void *rows, sd_write *w)
{
    int rc = 0;
    int64_t n = 0;
    w->affected = 0;
    w->delta = 0;
    switch (w->kind) {
    case SD_W_CREATE:
        rc = do_create(ops, rows, w);
        break;
    case SD_W_UPDATE:
        rc = do_update(ops, rows, w);
        break;
    case SD_W_ROTATE:
    case SD_W_REUSE:
        rc = do_rotate(ops, rows, w);
        break;
    case SD_W_END:
        rc = do_end(ops, rows, w);
        break;
    case SD_W_END_USER:
        rc = end_user(ops, rows, w, w->user_id, w->except_id);
        break;
    case SD_W_BULK_END:
        for (size_t i = 0; rc == 0 && i < w->n_ids; i++)
            rc = end_one(ops, rows, w, w->ids[i], w->reason);
        for (size_t i = 0; rc == 0 && i < w->n_users; i++)
            rc = end_user(ops, rows, w, w->users[i], NULL);
        break;
    case SD_W_TOUCH:
        rc = ops->touch(rows, w, &n);
        w->affected = n;
        if (rc == 0 && n > 0)
            rc = sd_write_effect(w, SD_FX_TOUCH, w->id, w->touch_version, w->touch_expiry);
        break;
    case SD_W_SWEEP:
        rc = ops->sweep(rows, w);
        break;
    case SD_W_PURGE:
        rc = ops->purge(rows, w->before, w->limit, &n);
        w->affected = n;
        break;
    case SD_W_REENCRYPT:
        rc = ops->reencrypt(rows, w);
        break;
    case SD_W_NOT_BEFORE:
        rc = do_not_before(ops, rows, w);
        break;
    case SD_W_TRIAGE:
        rc = do_triage(ops, rows, w);
        break;
    case SD_W_SIGNAL:
        rc = do_signal(ops, rows, w);
        break;
    case SD_W_REFUSAL:
        rc =
            ops->event(rows, w, "geofence_refused", w->id[0] ? w->id : NULL, w->user_id, w->reason);
        break;
    }
    w->rc = rc;
    return rc;
}
