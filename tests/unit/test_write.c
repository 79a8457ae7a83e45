/* Unit tests of session/write.c: what each write does, over an in-memory
 * row store (a stand-in for the backends, which the e2e suite runs for
 * real): the per-user cap and its evictions, rotation and reuse, renewal,
 * the audit events' names and the effects the index and the cache follow. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "session/triage.h"
#include "session/anomaly.h"
#include "session/write.h"
#include "util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXROWS 128
static const int64_t NOW = 1795833215123LL;
static const int64_t HOUR = 3600 * 1000;

typedef struct row {
    sd_session s;
    bool active;
} row;

typedef struct rows {
    row r[MAXROWS];
    int n;
    struct {
        unsigned char hash[SD_HASH_LEN];
        char id[SD_ID_LEN + 1];
        int64_t at;
    } retired[16];
    int n_retired;
    char events[256][40]; /* "event:id" */
    int n_events;
    char last_reason[32];
    int64_t not_before;
} rows;

static rows db;

static row *find(const char *id)
{
    for (int i = 0; i < db.n; i++)
        if (db.r[i].active && strcmp(db.r[i].s.id, id) == 0)
            return &db.r[i];
    return NULL;
}

static int f_select(void *r, const char *id, sd_session *out)
{
    (void)r;
    row *x = find(id);
    return !x ? SD_ENOTFOUND : sd_session_copy(out, &x->s);
}

static bool live_of(const row *x, const char *user, int64_t now)
{
    return x->active && strcmp(x->s.user_id, user) == 0 && x->s.expiry > now;
}

static int f_count_user(void *r, const char *user, int64_t now, int64_t *count)
{
    (void)r;
    *count = 0;
    for (int i = 0; i < db.n; i++)
        *count += live_of(&db.r[i], user, now);
    return 0;
}

static int f_oldest_user(void *r, const char *user, int64_t now, size_t limit,
                         char (*ids)[SD_ID_LEN + 1], size_t *n)
{
    (void)r;
    *n = 0;
    bool taken[MAXROWS] = {0};
    while (*n < limit) {
        int best = -1;
        for (int i = 0; i < db.n; i++)
            if (!taken[i] && live_of(&db.r[i], user, now) &&
                (best < 0 || db.r[i].s.last_seen < db.r[best].s.last_seen))
                best = i;
        if (best < 0)
            break;
        taken[best] = true;
        strcpy(ids[(*n)++], db.r[best].s.id);
    }
    return 0;
}

static int f_find_retired(void *r, const unsigned char hash[SD_HASH_LEN], const char *id,
                          bool *found, int64_t *at)
{
    (void)r;
    *found = false;
    for (int i = 0; i < db.n_retired; i++)
        if (memcmp(db.retired[i].hash, hash, SD_HASH_LEN) == 0 &&
            strcmp(db.retired[i].id, id) == 0) {
            *found = true;
            *at = db.retired[i].at;
        }
    return 0;
}

static int f_event(void *r, const sd_write *w, const char *event, const char *id, const char *user,
                   const char *reason)
{
    (void)r, (void)w, (void)user;
    snprintf(db.events[db.n_events++], sizeof db.events[0], "%s:%s", event, id ? id : "");
    snprintf(db.last_reason, sizeof db.last_reason, "%s", reason ? reason : "");
    return 0;
}

static int f_insert(void *r, const sd_write *w, const sd_session *s, const char *event)
{
    assert_true(db.n < MAXROWS);
    row *x = &db.r[db.n++];
    assert_int_equal(sd_session_copy(&x->s, s), 0);
    x->active = true;
    return f_event(r, w, event, s->id, s->user_id, NULL);
}

static int f_update(void *r, const sd_write *w, const sd_session *s, int64_t read_version,
                    const char *event, int64_t *n)
{
    row *x = find(s->id);
    *n = 0;
    if (x && x->s.version == read_version) {
        sd_session_clear(&x->s);
        assert_int_equal(sd_session_copy(&x->s, s), 0);
        *n = 1;
        if (event)
            return f_event(r, w, event, s->id, s->user_id, NULL);
    }
    return 0;
}

static int f_retire(void *r, const char *id, const unsigned char old[SD_HASH_LEN],
                    const unsigned char new_hash[SD_HASH_LEN], int64_t at, bool bump)
{
    (void)r;
    row *x = find(id);
    assert_non_null(x);
    memcpy(db.retired[db.n_retired].hash, old, SD_HASH_LEN);
    strcpy(db.retired[db.n_retired].id, id);
    db.retired[db.n_retired++].at = at;
    memcpy(x->s.token_hash, new_hash, SD_HASH_LEN);
    x->s.version += bump;
    return 0;
}

static int f_end(void *r, sd_write *w, const sd_end_rows *e)
{
    for (int i = 0; i < db.n; i++) {
        row *x = &db.r[i];
        bool match = e->user_id ? live_of(x, e->user_id, w->now) &&
                                      !(e->except_id && strcmp(x->s.id, e->except_id) == 0)
                                : x->active && x->s.expiry > w->now && strcmp(x->s.id, e->id) == 0;
        if (!match)
            continue;
        f_event(r, w, e->event, x->s.id, x->s.user_id, e->reason);
        x->active = false;
        assert_int_equal(sd_write_ended(w, x->s.id, false), 0);
    }
    return 0;
}

static int f_touch(void *r, const sd_write *w, int64_t *n)
{
    (void)r;
    row *x = find(w->id);
    *n = x && x->s.version == w->touch_version && x->s.expiry > w->now;
    if (*n)
        x->s.expiry = w->touch_expiry;
    return 0;
}

static int f_sweep(void *r, sd_write *w)
{
    for (int i = 0; i < db.n && w->affected < w->limit; i++)
        if (db.r[i].active && db.r[i].s.expiry <= w->now) {
            f_event(r, w, "expired", db.r[i].s.id, db.r[i].s.user_id, "expired");
            db.r[i].active = false;
            assert_int_equal(sd_write_ended(w, db.r[i].s.id, true), 0);
        }
    return 0;
}

static int f_purge(void *r, int64_t before, int limit, int64_t *n)
{
    (void)r, (void)before, (void)limit;
    *n = 0;
    return 0;
}

static int f_reencrypt(void *r, sd_write *w)
{
    (void)r, (void)w;
    return SD_EINVALID;
}

static int f_raise_not_before(void *r, int64_t *value)
{
    (void)r;
    if (*value > db.not_before)
        db.not_before = *value;
    *value = db.not_before;
    return 0;
}

static int f_count_before(void *r, int64_t before, int64_t now, int64_t *n)
{
    (void)r;
    *n = 0;
    for (int i = 0; i < db.n; i++)
        *n += db.r[i].active && db.r[i].s.expiry > now && db.r[i].s.created_at < before;
    return 0;
}

/* Rows in insertion order; the row number (1-based) is the cursor. */
static int f_scan(void *r, int64_t cursor, int limit, int64_t now, sd_session **out, size_t *n,
                  int64_t *last)
{
    (void)r;
    *out = calloc((size_t)limit, sizeof **out);
    *n = 0;
    for (int i = (int)cursor; i < db.n && *n < (size_t)limit; i++) {
        *last = i + 1;
        if (db.r[i].active && db.r[i].s.expiry > now)
            assert_int_equal(sd_session_copy(&(*out)[(*n)++], &db.r[i].s), 0);
    }
    return 0;
}

static const sd_rows_ops ops = {
    .select = f_select,
    .count_user = f_count_user,
    .oldest_user = f_oldest_user,
    .find_retired = f_find_retired,
    .insert = f_insert,
    .update = f_update,
    .retire = f_retire,
    .event = f_event,
    .end = f_end,
    .touch = f_touch,
    .sweep = f_sweep,
    .purge = f_purge,
    .reencrypt = f_reencrypt,
    .raise_not_before = f_raise_not_before,
    .count_before = f_count_before,
    .scan = f_scan,
};

static int setup(void **state)
{
    (void)state;
    memset(&db, 0, sizeof db);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < db.n; i++)
        sd_session_clear(&db.r[i].s);
    return 0;
}

static void hash_of(int k, unsigned char h[SD_HASH_LEN])
{
    memset(h, 0, SD_HASH_LEN);
    memcpy(h, &k, sizeof k);
}

/* A create of session number k for user, seen last at last_seen, over the
 * row operations o. */
static int create_over(const sd_rows_ops *o, const char *user, int k, int64_t last_seen,
                       const sd_policy *p, sd_write *w)
{
    memset(w, 0, sizeof *w);
    w->kind = SD_W_CREATE;
    w->now = NOW;
    w->policy = p;
    snprintf(w->session.id, sizeof w->session.id, "s%04d", k);
    hash_of(k, w->session.token_hash);
    w->session.user_id = strdup(user);
    w->session.created_at = w->session.last_seen = last_seen;
    w->session.expiry = NOW + HOUR;
    w->session.absolute_expiry = NOW + 24 * HOUR;
    w->session.version = 1;
    w->session.attrs = json_object();
    return sd_write_apply(o, NULL, w);
}

static int create(const char *user, int k, int64_t last_seen, const sd_policy *p, sd_write *w)
{
    return create_over(&ops, user, k, last_seen, p, w);
}

static void done(sd_write *w)
{
    sd_session_clear(&w->session);
    sd_write_free_effects(w);
}

static int count_effects(const sd_write *w, sd_effect_kind kind)
{
    int n = 0;
    for (size_t i = 0; i < w->n_effects; i++)
        n += w->effects[i].kind == kind;
    return n;
}

static int count_events(const char *prefix)
{
    int n = 0;
    for (int i = 0; i < db.n_events; i++)
        n += strncmp(db.events[i], prefix, strlen(prefix)) == 0;
    return n;
}

static void create_records_a_put_and_its_event(void **state)
{
    (void)state;
    sd_write w;
    assert_int_equal(create("ann", 1, NOW, NULL, &w), 0);
    assert_int_equal(w.n_effects, 1);
    assert_int_equal(w.effects[0].kind, SD_FX_PUT);
    assert_string_equal(w.effects[0].id, "s0001");
    assert_int_equal(w.delta, 1);
    assert_int_equal(count_events("created:s0001"), 1);
    done(&w);
}

/* A cap lowered far below what a user has (issue 13: eviction stopped after
 * 16 and inserted anyway): one create ends every session over the cap,
 * least recently seen first, and each ending is an effect. */
static void a_cap_lowered_by_more_than_16_is_enforced(void **state)
{
    (void)state;
    sd_write w;
    for (int k = 0; k < 40; k++) {
        assert_int_equal(create("bob", k, NOW - 1000 + k, NULL, &w), 0);
        done(&w);
    }
    sd_policy p = {.max_per_user = 5, .evict_oldest = true};
    assert_int_equal(create("bob", 100, NOW, &p, &w), 0);
    assert_int_equal(w.affected, 36);
    assert_int_equal(w.delta, 1 - 36);
    assert_int_equal(count_effects(&w, SD_FX_END), 36);
    assert_int_equal(count_effects(&w, SD_FX_PUT), 1);
    assert_string_equal(w.effects[0].id, "s0000"); /* the least recently seen first */
    assert_string_equal(w.effects[35].id, "s0035");
    for (size_t i = 0; i < w.n_effects; i++)
        assert_true(sd_effect_required(&w, &w.effects[i]) == (w.effects[i].kind == SD_FX_END));
    int64_t live = 0;
    f_count_user(NULL, "bob", NOW, &live);
    assert_int_equal(live, 5);
    assert_int_equal(count_events("evicted:"), 36);
    done(&w);
}

static void the_cap_can_refuse_instead(void **state)
{
    (void)state;
    sd_write w;
    sd_policy p = {.max_per_user = 1, .evict_oldest = false};
    assert_int_equal(create("cy", 1, NOW, &p, &w), 0);
    done(&w);
    assert_int_equal(create("cy", 2, NOW, &p, &w), SD_ELIMIT);
    assert_true(sd_write_kept(w.rc));
    assert_int_equal(w.n_effects, 0);
    done(&w);
}

/* A backend that can say "below the cap" without a count (PostgreSQL's
 * pipeline answers it at once and checks it later): below, the count is
 * never read; at the cap, the domain counts and evicts as without it. */
static int counts;

static int f_counting(void *r, const char *user, int64_t now, int64_t *count)
{
    counts++;
    return f_count_user(r, user, now, count);
}

static int f_user_below(void *r, const char *user, int64_t now, int64_t max, bool *below)
{
    int64_t n = 0;
    f_count_user(r, user, now, &n);
    *below = n < max;
    return 0;
}

static void a_cap_check_below_the_cap_skips_the_count(void **state)
{
    (void)state;
    sd_rows_ops o = ops;
    o.count_user = f_counting;
    o.user_below = f_user_below;
    sd_policy p = {.max_per_user = 2, .evict_oldest = true};
    counts = 0;
    for (int k = 0; k < 3; k++) {
        sd_write w;
        assert_int_equal(create_over(&o, "dee", k, NOW - 10 + k, &p, &w), 0);
        assert_int_equal(counts, k < 2 ? 0 : 1); /* counted only at the cap */
        assert_int_equal(w.affected, k < 2 ? 0 : 1);
        done(&w);
    }
    assert_int_equal(count_events("evicted:s0000"), 1);
}

/* An END wants its tombstone even when the session is not found (the retry
 * of an END whose outcome was unknown), and records one effect, not two. */
static void end_records_its_intent(void **state)
{
    (void)state;
    sd_write w;
    assert_int_equal(create("dee", 1, NOW, NULL, &w), 0);
    done(&w);
    sd_write e = {.kind = SD_W_END, .now = NOW, .reason = "revoked"};
    strcpy(e.id, "s0001");
    assert_int_equal(sd_write_apply(&ops, NULL, &e), 0);
    assert_int_equal(e.n_effects, 1);
    assert_int_equal(e.affected, 1);
    assert_true(sd_effect_required(&e, &e.effects[0]));
    assert_true(e.effects[0].gone); /* the row left: the index drops it */
    assert_int_equal(count_events("revoked:s0001"), 1);
    sd_write_free_effects(&e);
    assert_int_equal(sd_write_apply(&ops, NULL, &e), SD_ENOTFOUND);
    assert_int_equal(e.n_effects, 1);
    assert_int_equal(e.effects[0].kind, SD_FX_END);
    assert_true(sd_effect_required(&e, &e.effects[0]));
    assert_false(e.effects[0].gone); /* an intent alone: a row (an expired one) stays indexed */
    e.rc = SD_EUNAVAILABLE;          /* after a failed write: best effort only */
    assert_false(sd_effect_required(&e, &e.effects[0]));
    sd_write_free_effects(&e);
}

/* An END with preconditions (DELETE with If-Match or If-None-Match) is
 * decided on the row it would end, inside the write: a failed one ends
 * nothing, leaves no effect and no event, and says the version it found;
 * an ended session is not found whatever was asked of it. */
static void an_end_with_a_precondition_ends_only_when_it_holds(void **state)
{
    (void)state;
    sd_write w;
    assert_int_equal(create("hal", 1, NOW, NULL, &w), 0);
    done(&w);
    sd_precond stale, current, none_current;
    char err[128];
    assert_int_equal(sd_precond_parse("\"2\"", NULL, &stale, err, sizeof err), 0);
    assert_int_equal(sd_precond_parse("\"1\"", NULL, &current, err, sizeof err), 0);
    assert_int_equal(sd_precond_parse(NULL, "W/\"1\"", &none_current, err, sizeof err), 0);
    const sd_precond *failing[] = {&stale, &none_current};
    for (size_t i = 0; i < 2; i++) {
        sd_write e = {.kind = SD_W_END, .now = NOW, .reason = "revoked", .precond = failing[i]};
        strcpy(e.id, "s0001");
        assert_string_equal(sd_write_reads(&e), "s0001");
        assert_int_equal(sd_write_apply(&ops, NULL, &e), SD_ECONFLICT);
        assert_int_equal(e.version_found, 1);
        assert_non_null(strstr(e.detail, "\"1\""));
        assert_int_equal(e.n_effects, 0);
        assert_int_equal(e.affected, 0);
        assert_non_null(find("s0001"));
        sd_write_rewind(&e);
        assert_int_equal(e.version_found, 0);
    }
    assert_int_equal(count_events("revoked:s0001"), 0);
    sd_write e = {.kind = SD_W_END, .now = NOW, .reason = "revoked", .precond = &current};
    strcpy(e.id, "s0001");
    assert_int_equal(sd_write_apply(&ops, NULL, &e), 0);
    assert_int_equal(e.affected, 1);
    assert_int_equal(count_effects(&e, SD_FX_END), 1);
    assert_int_equal(count_events("revoked:s0001"), 1);
    sd_write_free_effects(&e);
    e.precond = &stale; /* gone: not found, and the cache still drops it */
    assert_int_equal(sd_write_apply(&ops, NULL, &e), SD_ENOTFOUND);
    assert_int_equal(e.version_found, 0);
    assert_int_equal(e.n_effects, 1);
    assert_true(sd_effect_required(&e, &e.effects[0]));
    sd_write_free_effects(&e);
}

/* An UPDATE's preconditions travel in its patch; a failed one says the
 * version it found, as an END's does. */
static void an_update_with_a_failed_precondition_says_the_version(void **state)
{
    (void)state;
    sd_write w;
    assert_int_equal(create("ida", 1, NOW, NULL, &w), 0);
    done(&w);
    json_t *body = json_pack("{s:{s:i}}", "data", "k", 1);
    sd_policy p = {.idle_timeout_ms = HOUR,
                   .absolute_timeout_ms = 24 * HOUR,
                   .max_idle_timeout_ms = 2 * HOUR,
                   .max_data_bytes = 1024};
    sd_patch patch;
    sd_precond pre;
    char err[256];
    assert_int_equal(sd_patch_parse(body, &p, &patch, err, sizeof err), 0);
    assert_int_equal(sd_precond_parse(NULL, "*", &pre, err, sizeof err), 0);
    patch.pre = &pre;
    sd_write u = {.kind = SD_W_UPDATE, .now = NOW, .patch = &patch, .policy = &p};
    strcpy(u.id, "s0001");
    assert_int_equal(sd_write_apply(&ops, NULL, &u), SD_ECONFLICT);
    assert_int_equal(u.version_found, 1);
    assert_non_null(strstr(u.detail, "If-None-Match"));
    assert_int_equal(count_events("updated:s0001"), 0);
    sd_write_rewind(&u);
    assert_int_equal(sd_precond_parse("\"1\"", "\"7\"", &pre, err, sizeof err), 0);
    assert_int_equal(sd_write_apply(&ops, NULL, &u), 0);
    assert_int_equal(u.version_found, 0);
    assert_int_equal(u.session.version, 2);
    assert_int_equal(count_events("updated:s0001"), 1);
    done(&u);
    json_decref(body);
}

/* Self-service: an END with an owner ends only that user's session;
 * another user's is not found and leaves no effect (no tombstone for a
 * session that lives on). */
static void an_end_with_an_owner_spares_other_users(void **state)
{
    (void)state;
    sd_write w;
    assert_int_equal(create("fay", 1, NOW, NULL, &w), 0);
    done(&w);
    sd_write e = {.kind = SD_W_END, .now = NOW, .reason = "revoked", .user_id = "gus"};
    strcpy(e.id, "s0001");
    assert_int_equal(sd_write_apply(&ops, NULL, &e), SD_ENOTFOUND);
    assert_int_equal(e.n_effects, 0);
    assert_int_equal(e.affected, 0);
    assert_int_equal(count_events("revoked:s0001"), 0);
    e.user_id = "fay";
    assert_int_equal(sd_write_apply(&ops, NULL, &e), 0);
    assert_int_equal(e.affected, 1);
    assert_int_equal(count_effects(&e, SD_FX_END), 1);
    assert_int_equal(count_events("revoked:s0001"), 1);
    sd_write_free_effects(&e);
}

static void a_user_wide_revocation_reports_every_ended_session(void **state)
{
    (void)state;
    sd_write w;
    for (int k = 1; k <= 3; k++) {
        assert_int_equal(create("eve", k, NOW, NULL, &w), 0);
        done(&w);
    }
    sd_write e = {.kind = SD_W_END_USER,
                  .now = NOW,
                  .reason = "revoked",
                  .user_id = "eve",
                  .except_id = "s0002"};
    assert_int_equal(sd_write_apply(&ops, NULL, &e), 0);
    assert_int_equal(e.affected, 2);
    assert_int_equal(count_effects(&e, SD_FX_END), 2);
    assert_non_null(find("s0002"));
    sd_write_free_effects(&e);
}

static sd_write rotation(sd_write_kind kind, int presented, int64_t now)
{
    sd_write w = {.kind = kind, .now = now};
    static const sd_policy p = {.refresh_grace_ms = 1000};
    w.policy = &p;
    strcpy(w.id, "s0001");
    hash_of(presented, w.presented_hash);
    hash_of(1000 + presented, w.session.token_hash); /* the token to switch to */
    sd_write_apply(&ops, NULL, &w);
    return w;
}

static void rotation_race_and_reuse(void **state)
{
    (void)state;
    sd_write w;
    assert_int_equal(create("fay", 1, NOW, NULL, &w), 0);
    done(&w);
    sd_write r = rotation(SD_W_ROTATE, 1, NOW);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.session.version, 2);
    assert_int_equal(count_effects(&r, SD_FX_PUT), 1);
    assert_int_equal(r.effects[0].version, 2);
    assert_int_equal(count_events("refreshed:s0001"), 1);
    done(&r);
    /* The old token again within the grace: a race, nothing changes. */
    r = rotation(SD_W_ROTATE, 1, NOW + 500);
    assert_int_equal(r.rc, SD_ECONFLICT);
    assert_int_equal(r.n_effects, 0);
    done(&r);
    /* A token never this session's. */
    r = rotation(SD_W_REUSE, 7, NOW + 500);
    assert_int_equal(r.rc, SD_EMISMATCH);
    done(&r);
    /* The current one on a REUSE write: nothing to end. */
    r = rotation(SD_W_REUSE, 1001, NOW + 500);
    assert_int_equal(r.rc, SD_ECONFLICT);
    assert_int_equal(r.n_effects, 0);
    done(&r);
    /* The old token past the grace: theft; the session ends. */
    r = rotation(SD_W_REUSE, 1, NOW + 5000);
    assert_int_equal(r.rc, SD_EREUSED);
    assert_int_equal(r.delta, -1);
    assert_int_equal(count_effects(&r, SD_FX_END), 1);
    assert_true(sd_effect_required(&r, &r.effects[0]));
    assert_int_equal(count_events("token_reuse_detected:s0001"), 1);
    assert_int_equal(count_events("revoked:s0001"), 1);
    assert_null(find("s0001"));
    done(&r);
}

/* A write whose batch was rolled back runs again from its inputs: its
 * outputs and effects are dropped, its inputs kept (a rotation's new token
 * hash); the upkeep writes whose cursors move cannot be rewound. */
static void a_rewound_write_keeps_its_inputs_only(void **state)
{
    (void)state;
    sd_write w;
    assert_int_equal(create("eve", 1, NOW, NULL, &w), 0);
    done(&w);
    sd_write r = rotation(SD_W_ROTATE, 1, NOW);
    assert_int_equal(r.rc, 0);
    assert_true(sd_write_rewindable(&r));
    sd_write_rewind(&r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.n_effects, 0);
    assert_null(r.effects);
    assert_int_equal(r.session.version, 0);
    assert_null(r.session.user_id);
    unsigned char next[SD_HASH_LEN];
    hash_of(1001, next);
    assert_memory_equal(r.session.token_hash, next, SD_HASH_LEN);
    done(&r);
    sd_write sweep = {.kind = SD_W_SWEEP}, triage = {.kind = SD_W_TRIAGE};
    assert_false(sd_write_rewindable(&sweep));
    assert_false(sd_write_rewindable(&triage));
}

/* The row a write reads first, for a backend that reads a batch's rows
 * ahead: exactly the writes whose plan begins with the rows' select. */
static void the_row_a_write_reads_first(void **state)
{
    (void)state;
    static const sd_write_kind reads[] = {SD_W_UPDATE, SD_W_ROTATE, SD_W_REUSE};
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
        sd_write w = {.kind = reads[i]};
        strcpy(w.id, "s0001");
        assert_string_equal(sd_write_reads(&w), "s0001");
    }
    sd_write end = {.kind = SD_W_END}, create = {.kind = SD_W_CREATE}, touch = {.kind = SD_W_TOUCH};
    strcpy(end.id, "s0001");
    strcpy(touch.id, "s0001");
    assert_null(sd_write_reads(&end)); /* an administrator's END reads nothing first */
    end.user_id = "fay";
    assert_string_equal(sd_write_reads(&end), "s0001"); /* self-service: the owner checked */
    assert_null(sd_write_reads(&create));
    assert_null(sd_write_reads(&touch));
}

static void an_update_that_raises_privilege_renews_the_token(void **state)
{
    (void)state;
    sd_write w;
    assert_int_equal(create("gus", 1, NOW, NULL, &w), 0);
    done(&w);
    json_t *body = json_pack("{s:b}", "mfa", 1);
    sd_policy p = {.idle_timeout_ms = HOUR,
                   .absolute_timeout_ms = 24 * HOUR,
                   .max_idle_timeout_ms = 2 * HOUR,
                   .max_data_bytes = 1024};
    sd_patch patch;
    char err[256];
    assert_int_equal(sd_patch_parse(body, &p, &patch, err, sizeof err), 0);
    sd_write u = {
        .kind = SD_W_UPDATE, .now = NOW, .patch = &patch, .policy = &p, .renew_possible = true};
    strcpy(u.id, "s0001");
    hash_of(77, u.renew_hash);
    assert_int_equal(sd_write_apply(&ops, NULL, &u), 0);
    assert_true(u.renewed);
    assert_memory_equal(u.session.token_hash, u.renew_hash, SD_HASH_LEN);
    assert_int_equal(db.n_retired, 1);
    assert_int_equal(count_events("updated:s0001"), 1);
    assert_int_equal(count_events("renewed:s0001"), 1);
    assert_int_equal(count_effects(&u, SD_FX_PUT), 1);
    assert_int_equal(u.effects[0].version, u.session.version);
    done(&u);
    json_decref(body);
}

/* Anomaly signals (session/anomaly.h): a SIGNAL write records them on the
 * session (a PUT the index and the cache follow) with one anomaly_detected
 * event each; a step-up takes mfa back, and the mfa renewal clears it. */
static void signals_are_recorded_and_a_renewal_clears_the_step_up(void **state)
{
    (void)state;
    sd_write w;
    assert_int_equal(create("ida", 1, NOW, NULL, &w), 0);
    done(&w);
    sd_signals sig = {
        .fired = (1u << SD_SIG_NEW_COUNTRY) | (1u << SD_SIG_IMPOSSIBLE_TRAVEL),
        .action =
            {[SD_SIG_NEW_COUNTRY] = SD_ACT_RECORD, [SD_SIG_IMPOSSIBLE_TRAVEL] = SD_ACT_STEPUP},
        .brief = {[SD_SIG_NEW_COUNTRY] = "JP", [SD_SIG_IMPOSSIBLE_TRAVEL] = "9712km"},
        .step_up = true,
        .here = {.has_point = true, .lat = 35.7, .lon = 139.7, .country = "JP"},
        .at = NOW};
    sd_write g = {.kind = SD_W_SIGNAL, .now = NOW, .signals = &sig};
    strcpy(g.id, "s0001");
    assert_int_equal(sd_write_apply(&ops, NULL, &g), 0);
    assert_int_equal(count_events("anomaly_detected:s0001"), 2);
    assert_string_equal(db.last_reason, "impossibleTravel stepup 9712km");
    assert_int_equal(count_effects(&g, SD_FX_PUT), 1);
    assert_int_equal(g.session.version, 2);
    const row *x = find("s0001");
    assert_int_equal(x->s.version, 2);
    assert_true(json_is_true(json_object_get(x->s.attrs, "stepUp")));
    assert_true(json_is_false(json_object_get(x->s.attrs, "mfa")));
    assert_int_equal(json_array_size(json_object_get(x->s.attrs, "signals")), 2);
    done(&g);
    /* An ended session records nothing. */
    sd_write gone = {.kind = SD_W_SIGNAL, .now = NOW, .signals = &sig};
    strcpy(gone.id, "s0404");
    assert_int_equal(sd_write_apply(&ops, NULL, &gone), SD_ENOTFOUND);
    assert_int_equal(gone.n_effects, 0);
    done(&gone);
    /* PUT {"mfa": true}: raised (the step-up set it false), renewed, cleared. */
    json_t *body = json_pack("{s:b}", "mfa", 1);
    sd_policy p = {.idle_timeout_ms = HOUR,
                   .absolute_timeout_ms = 24 * HOUR,
                   .max_idle_timeout_ms = 2 * HOUR,
                   .max_data_bytes = 1024};
    sd_patch patch;
    char err[256];
    assert_int_equal(sd_patch_parse(body, &p, &patch, err, sizeof err), 0);
    sd_write u = {
        .kind = SD_W_UPDATE, .now = NOW, .patch = &patch, .policy = &p, .renew_possible = true};
    strcpy(u.id, "s0001");
    hash_of(78, u.renew_hash);
    assert_int_equal(sd_write_apply(&ops, NULL, &u), 0);
    assert_true(u.renewed);
    x = find("s0001");
    assert_null(json_object_get(x->s.attrs, "stepUp"));
    assert_null(json_object_get(x->s.attrs, "signals"));
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(x->s.attrs, "countries"), 0)), "JP");
    done(&u);
    json_decref(body);
}

static void touches_and_sweeps_are_never_fenced(void **state)
{
    (void)state;
    sd_write w;
    assert_int_equal(create("hal", 1, NOW, NULL, &w), 0);
    done(&w);
    sd_write t = {
        .kind = SD_W_TOUCH, .now = NOW, .touch_expiry = NOW + 2 * HOUR, .touch_version = 1};
    strcpy(t.id, "s0001");
    assert_int_equal(sd_write_apply(&ops, NULL, &t), 0);
    assert_int_equal(t.n_effects, 1);
    assert_int_equal(t.effects[0].kind, SD_FX_TOUCH);
    assert_int_equal(t.effects[0].expiry, NOW + 2 * HOUR);
    assert_false(sd_effect_required(&t, &t.effects[0]));
    sd_write_free_effects(&t);
    t.touch_version = 9; /* a PUT since the read wins: no change, no effect */
    assert_int_equal(sd_write_apply(&ops, NULL, &t), 0);
    assert_int_equal(t.n_effects, 0);
    sd_write s = {.kind = SD_W_SWEEP, .now = NOW + 3 * HOUR, .limit = 10};
    assert_int_equal(sd_write_apply(&ops, NULL, &s), 0);
    assert_int_equal(s.affected, 1);
    assert_true(s.effects[0].expired);
    assert_false(sd_effect_required(&s, &s.effects[0]));
    sd_write_free_effects(&s);
}

static sd_write not_before(int64_t before)
{
    sd_write w = {.kind = SD_W_NOT_BEFORE, .now = NOW, .before = before};
    sd_write_apply(&ops, NULL, &w);
    return w;
}

static void the_not_before_is_raised_only_and_audited_with_its_count(void **state)
{
    (void)state;
    sd_write w;
    for (int k = 1; k <= 3; k++) { /* created 2 h, 1 h and 0 h ago */
        assert_int_equal(create("ivy", k, NOW - (3 - k) * HOUR, NULL, &w), 0);
        done(&w);
    }
    sd_write n = not_before(NOW - HOUR / 2);
    assert_int_equal(n.rc, 0);
    assert_int_equal(n.before, NOW - HOUR / 2);
    assert_int_equal(n.affected, 2);
    assert_int_equal(n.n_effects, 0); /* nothing ended: validation compares */
    assert_int_equal(count_events("not_before_set:"), 1);
    assert_string_equal(db.last_reason, "sessions=2");
    assert_non_null(find("s0001"));
    /* An earlier time leaves the later one in force. */
    n = not_before(NOW - 3 * HOUR);
    assert_int_equal(n.rc, 0);
    assert_int_equal(n.before, NOW - HOUR / 2);
    assert_int_equal(n.affected, 2);
    assert_int_equal(count_events("not_before_set:"), 2);
}

static void a_session_cut_off_by_the_not_before_is_not_found_for_writes(void **state)
{
    (void)state;
    sd_write w;
    assert_int_equal(create("jon", 1, NOW - HOUR, NULL, &w), 0);
    done(&w);
    sd_write r = {.kind = SD_W_ROTATE, .now = NOW, .not_before = NOW - HOUR + 1};
    strcpy(r.id, "s0001");
    hash_of(1, r.presented_hash);
    hash_of(1001, r.session.token_hash);
    assert_int_equal(sd_write_apply(&ops, NULL, &r), SD_ENOTFOUND);
    assert_int_equal(r.n_effects, 0);
    assert_int_equal(db.n_retired, 0);
    r.not_before = NOW - HOUR; /* created at the not-before: not before it */
    assert_int_equal(sd_write_apply(&ops, NULL, &r), 0);
    done(&r);
    sd_policy p = {.idle_timeout_ms = HOUR,
                   .absolute_timeout_ms = 24 * HOUR,
                   .max_idle_timeout_ms = 2 * HOUR,
                   .max_data_bytes = 1024};
    json_t *body = json_pack("{s:i}", "ttlSeconds", 60);
    sd_patch patch;
    char err[256];
    assert_int_equal(sd_patch_parse(body, &p, &patch, err, sizeof err), 0);
    sd_write u = {
        .kind = SD_W_UPDATE, .now = NOW, .patch = &patch, .policy = &p, .not_before = NOW};
    strcpy(u.id, "s0001");
    assert_int_equal(sd_write_apply(&ops, NULL, &u), SD_ENOTFOUND);
    assert_int_equal(u.n_effects, 0);
    json_decref(body);
}

/* Five sessions s0001..s0005: 1, 3 and 5 in 203.0.113.0/24. */
static void seed_triage_rows(void)
{
    sd_write w;
    for (int k = 1; k <= 5; k++) {
        assert_int_equal(create("kim", k, NOW, NULL, &w), 0);
        json_object_set_new(db.r[db.n - 1].s.attrs, "ipAddress",
                            json_string(k % 2 ? "203.0.113.9" : "198.51.100.9"));
        done(&w);
    }
}

/* The console's preview: the same batches, the same match, nothing ended,
 * no effect for the cache and no event. */
static void a_triage_dry_run_counts_the_matches_and_changes_nothing(void **state)
{
    (void)state;
    seed_triage_rows();
    int events = db.n_events;
    sd_triage t;
    assert_int_equal(sd_triage_network("203.0.113.0/24", &t, NULL, 0), 0);
    sd_write b = {.kind = SD_W_TRIAGE, .now = NOW, .triage = &t, .dry_run = true};
    int64_t total = 0, batches = 0;
    do {
        b.limit = 2;
        assert_int_equal(sd_write_apply(&ops, NULL, &b), 0);
        assert_int_equal(b.n_effects, 0);
        b.total = total += b.affected;
        batches++;
    } while (b.limit == 2);
    assert_int_equal(total, 3);
    assert_int_equal(batches, 3);
    static const char *const ids[] = {"s0001", "s0002", "s0003", "s0004", "s0005"};
    for (size_t k = 0; k < 5; k++)
        assert_non_null(find(ids[k]));
    assert_int_equal(db.n_events, events);
}

/* All the batches of a triage at once; returns the total it counted or ended. */
static int64_t triage_all(sd_write *b)
{
    int64_t total = 0;
    b->cursor = 0;
    do {
        b->limit = 500;
        assert_int_equal(sd_write_apply(&ops, NULL, b), 0);
        sd_write_free_effects(b);
        b->total = total += b->affected;
    } while (b->limit == 500);
    return total;
}

/* A session the global not-before cut off cannot validate: triage neither
 * counts nor ends it (the count is of sessions that could still be used). */
static void triage_passes_over_sessions_the_not_before_cut_off(void **state)
{
    (void)state;
    seed_triage_rows();
    find("s0001")->s.created_at = NOW - HOUR; /* in the network, cut off */
    sd_triage t;
    assert_int_equal(sd_triage_network("203.0.113.0/24", &t, NULL, 0), 0);
    sd_write b = {.kind = SD_W_TRIAGE, .now = NOW, .triage = &t, .not_before = NOW - 1};
    b.dry_run = true;
    assert_int_equal(triage_all(&b), 2);
    b.dry_run = false;
    b.total = 0;
    assert_int_equal(triage_all(&b), 2);
    assert_non_null(find("s0001"));
    assert_null(find("s0003"));
    assert_null(find("s0005"));
    assert_string_equal(db.last_reason, "sessions=2");
}

static void triage_ends_the_matches_in_batches_and_audits_the_total(void **state)
{
    (void)state;
    seed_triage_rows();
    sd_triage t;
    assert_int_equal(sd_triage_network("203.0.113.0/24", &t, NULL, 0), 0);
    sd_write b = {.kind = SD_W_TRIAGE, .now = NOW, .triage = &t, .limit = 2};
    int64_t total = 0, batches = 0;
    do {
        b.limit = 2;
        assert_int_equal(sd_write_apply(&ops, NULL, &b), 0);
        assert_int_equal(count_effects(&b, SD_FX_END), b.affected); /* the cache tombstones each */
        for (size_t i = 0; i < b.n_effects; i++)
            assert_true(sd_effect_required(&b, &b.effects[i]));
        sd_write_free_effects(&b);
        b.total = total += b.affected;
        batches++;
    } while (b.limit == 2);
    assert_int_equal(total, 3);
    assert_int_equal(batches, 3);
    assert_null(find("s0001"));
    assert_non_null(find("s0002"));
    assert_null(find("s0005"));
    assert_int_equal(count_events("revoked:s0003"), 1);
    assert_int_equal(count_events("incident_revoked:"), 1); /* once, by the last batch */
    assert_string_equal(db.last_reason, "sessions=3");
}

/* A geofence refusal is an event and nothing else: no row, no effect. */
static void a_refusal_is_audited_and_changes_nothing(void **state)
{
    (void)state;
    sd_write w;
    assert_int_equal(create("uma", 1, NOW, NULL, &w), 0);
    done(&w);
    int rows_before = db.n;
    sd_write r = {
        .kind = SD_W_REFUSAL, .now = NOW, .user_id = "uma", .reason = "country=FR denied"};
    snprintf(r.id, sizeof r.id, "s0001");
    assert_int_equal(sd_write_apply(&ops, NULL, &r), 0);
    assert_int_equal(r.n_effects, 0);
    assert_int_equal(count_events("geofence_refused:s0001"), 1);
    assert_string_equal(db.last_reason, "country=FR denied");
    sd_write c = {
        .kind = SD_W_REFUSAL, .now = NOW, .user_id = "uma", .reason = "country=FR denied"};
    assert_int_equal(sd_write_apply(&ops, NULL, &c), 0); /* a refused create: no session */
    assert_int_equal(count_events("geofence_refused:"), 2);
    assert_int_equal(db.n, rows_before);
    assert_non_null(find("s0001"));
    sd_write_free_effects(&r);
    sd_write_free_effects(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(create_records_a_put_and_its_event, setup, teardown),
        cmocka_unit_test_setup_teardown(a_cap_lowered_by_more_than_16_is_enforced, setup, teardown),
        cmocka_unit_test_setup_teardown(the_cap_can_refuse_instead, setup, teardown),
        cmocka_unit_test_setup_teardown(a_cap_check_below_the_cap_skips_the_count, setup, teardown),
        cmocka_unit_test_setup_teardown(a_rewound_write_keeps_its_inputs_only, setup, teardown),
        cmocka_unit_test_setup_teardown(end_records_its_intent, setup, teardown),
        cmocka_unit_test_setup_teardown(an_end_with_an_owner_spares_other_users, setup, teardown),
        cmocka_unit_test_setup_teardown(an_end_with_a_precondition_ends_only_when_it_holds, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(an_update_with_a_failed_precondition_says_the_version,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_user_wide_revocation_reports_every_ended_session, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(rotation_race_and_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(an_update_that_raises_privilege_renews_the_token, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(signals_are_recorded_and_a_renewal_clears_the_step_up,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(touches_and_sweeps_are_never_fenced, setup, teardown),
        cmocka_unit_test_setup_teardown(the_not_before_is_raised_only_and_audited_with_its_count,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_session_cut_off_by_the_not_before_is_not_found_for_writes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_triage_dry_run_counts_the_matches_and_changes_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(triage_passes_over_sessions_the_not_before_cut_off, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(triage_ends_the_matches_in_batches_and_audits_the_total,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_refusal_is_audited_and_changes_nothing, setup, teardown),
        cmocka_unit_test(the_row_a_write_reads_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
