/*
 * index.c - three chained hash tables (by token hash, by id, by user) over
 * one set of entries, behind a big reader lock (util/brlock.h: validations on
 * different cores share no lock word). Token hashes are SHA-256
 * output, so their first 8 bytes are already a uniform hash; ids are mixed
 * whole (hid).
 *
 * And a timing wheel of the entries by expiry, for the sweeper
 * (sd_index_expired): WHEEL_SLOTS lists of one second each, an entry in the
 * slot of its expiry's second modulo the wheel. An expiry change moves the
 * entry between two lists in O(1), where a B-tree on the table's expiry
 * cost each update a random page (schema version 6). An expiry further out
 * than the wheel's turn shares a slot with nearer ones: the sweep compares
 * each entry's expiry, and such an entry is passed over once a turn.
 *
 * The tables double when the load passes 1, and the entries move to the
 * doubled ones a few buckets at each insert and removal (incremental
 * rehashing, as Redis's dict.c does), so no write holds the lock for a
 * whole table's move: doubling 262,144 buckets at once held it 100-170 ms,
 * every validation and write waiting (docs/performance.md). While they
 * move, a key's bucket is the old table's when that bucket has not moved
 * yet, else the new table's: each key is in exactly one place.
 */
#include "store/index.h"
#include "util/brlock.h"
#include "util/err.h"
#include "util/random.h"
#include "util/slab.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* What only some sessions have, out of line to keep the common entry small. */
typedef struct extra {
    sd_binding binding;
    char acr[SD_ACR_MAX + 1];
} extra;

/* The user id lives in the entry, after the fields (one allocation, and a
 * validation's copy of it reads memory next to what the probe just
 * loaded instead of chasing a pointer to a cache miss of its own). */
typedef struct sd_index_entry {
    unsigned char token_hash[SD_HASH_LEN];
    struct sd_index_entry *next_token, *next_id;    /* next_id: a prepared batch's list too */
    struct sd_index_entry *wnext, **wpprev;         /* its wheel slot's list; wpprev NULL: none */
    struct sd_index_entry *next_user, **pprev_user; /* its user's bucket: doubly
                                                        linked, as a user may hold
                                                        very many entries */
    int64_t created_at, last_seen, expiry, absolute_expiry, idle_ttl, version, auth_time;
    extra *extra; /* NULL unless the session is bound or has an acr */
    uint32_t user_id_len;
    char id[SD_ID_LEN + 1];
    char user_id[]; /* user_id_len bytes and a NUL */
} entry;

#define WHEEL_SLOTS 4096 /* seconds: a turn of about 68 minutes */

/* The three hash tables over the entries, of n buckets each (a power of
 * two): by token hash, by id, and by a keyed hash of the user id (clients
 * choose user ids). */
enum { BY_TOKEN, BY_ID, BY_USER, NTABLES };
typedef struct tables {
    entry **by[NTABLES];
    size_t n;
} tables;

struct sd_index {
    sd_brlock lock;
    sd_slab *slab; /* the entries, on huge pages (util/slab.h) */
    tables t;      /* huge pages too once large */
    tables old;    /* while the tables double: the old ones (n 0 when
                      not), whose buckets below `moved` are in t already */
    size_t moved;
    uint64_t user_key;
    size_t count;
    entry *wheel[WHEEL_SLOTS];
    int64_t sweep_sec; /* the first second whose slot the sweep has not finished */
};

/* The wheel's slot for e: that of its expiry's second, or of the sweep's
 * cursor when that second is behind it (an expiry already passed when it
 * was set), so the next sweep finds it instead of the next turn. */
static void wheel_link(sd_index *ix, entry *e)
{
    int64_t sec = e->expiry / 1000;
    if (sec < ix->sweep_sec)
        sec = ix->sweep_sec;
    entry **head = &ix->wheel[(uint64_t)sec & (WHEEL_SLOTS - 1)];
    e->wnext = *head;
    if (*head)
        (*head)->wpprev = &e->wnext;
    *head = e;
    e->wpprev = head;
}

static void wheel_unlink(entry *e)
{
    if (!e->wpprev)
        return;
    *e->wpprev = e->wnext;
    if (e->wnext)
        e->wnext->wpprev = e->wpprev;
    e->wpprev = NULL;
}

/* Sets e's expiry, moving it to its new slot. */
static void set_expiry(sd_index *ix, entry *e, int64_t expiry)
{
    bool moved = !e->wpprev || expiry / 1000 != e->expiry / 1000;
    e->expiry = expiry;
    if (moved) {
        wheel_unlink(e);
        wheel_link(ix, e);
    }
}

static uint64_t h64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static size_t entry_size(size_t user_id_len)
{
    return sizeof(entry) + user_id_len + 1;
}

static void entry_free(sd_index *ix, entry *e)
{
    free(e->extra);
    sd_slab_release(ix->slab, e, entry_size(e->user_id_len));
}

static void tables_free(tables *t)
{
    for (int k = 0; k < NTABLES; k++)
        sd_huge_free(t->by[k], t->n * sizeof *t->by[k]);
    *t = (tables){0};
}

/* Zeroed tables of n buckets, on small pages until filled (util/slab.h). */
static bool tables_new(tables *t, size_t n)
{
    t->n = n;
    bool ok = true;
    for (int k = 0; k < NTABLES; k++)
        ok = (t->by[k] = sd_huge_calloc(n * sizeof *t->by[k])) != NULL && ok;
    if (!ok)
        tables_free(t);
    return ok;
}

sd_index *sd_index_new(void)
{
    /* aligned: each reader slot of the lock on a cache line of its own */
    size_t size = (sizeof(sd_index) + 63) & ~(size_t)63;
    sd_index *ix = aligned_alloc(64, size);
    if (!ix)
        return NULL;
    memset(ix, 0, size);
    bool made = tables_new(&ix->t, 1024);
    ix->slab = sd_slab_new();
    sd_brlock_init(&ix->lock);
    if (!made || sd_random(&ix->user_key, sizeof ix->user_key) != 0 || !ix->slab) {
        sd_index_free(ix);
        return NULL;
    }
    return ix;
}

static void free_chain(sd_index *ix, entry *e)
{
    for (entry *next; e; e = next) {
        next = e->next_id;
        entry_free(ix, e);
    }
}

void sd_index_free(sd_index *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; ix->t.by[BY_ID] && i < ix->t.n; i++)
        free_chain(ix, ix->t.by[BY_ID][i]);
    for (size_t i = ix->moved; i < ix->old.n; i++)
        free_chain(ix, ix->old.by[BY_ID][i]);
    sd_slab_free(ix->slab);
    tables_free(&ix->t);
    tables_free(&ix->old);
    sd_brlock_destroy(&ix->lock);
    free(ix);
}

void sd_index_lock(sd_index *ix)
{
    sd_brlock_wrlock(&ix->lock);
}

void sd_index_unlock(sd_index *ix)
{
    sd_brlock_wrunlock(&ix->lock);
}

/* The bucket of hash h in table k: the old table's while that bucket has
 * not moved yet, else the new one's. */
static entry **bucket(const sd_index *ix, int k, uint64_t h)
{
    const tables *t = ix->old.n && (h & (ix->old.n - 1)) >= ix->moved ? &ix->old : &ix->t;
    return &t->by[k][h & (t->n - 1)];
}

static entry **id_bucket(const sd_index *ix, const char *id)
{
    return bucket(ix, BY_ID, sd_id_hash(id));
}

static entry **token_bucket(const sd_index *ix, const unsigned char *hash)
{
    return bucket(ix, BY_TOKEN, h64(hash));
}

static entry **find_id(sd_index *ix, const char *id)
{
    entry **pp = id_bucket(ix, id);
    while (*pp && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->next_id;
    return pp;
}

/* User ids come from clients: the hash is keyed, so that no one can make
 * them share a bucket by choice. */
static uint64_t user_hash(const sd_index *ix, const char *u, size_t n)
{
    return sd_hash64(u, n, ix->user_key);
}

static entry **user_bucket(const sd_index *ix, const char *u, size_t n)
{
    return bucket(ix, BY_USER, user_hash(ix, u, n));
}

static entry **find_token(sd_index *ix, const unsigned char *hash)
{
    entry **pp = token_bucket(ix, hash);
    while (*pp && memcmp((*pp)->token_hash, hash, SD_HASH_LEN) != 0)
        pp = &(*pp)->next_token;
    return pp;
}

/* Puts e first in the user bucket *pp. */
static void user_link(entry **pp, entry *e)
{
    e->next_user = *pp;
    if (*pp)
        (*pp)->pprev_user = &e->next_user;
    *pp = e;
    e->pprev_user = pp;
}

/* Moves up to n of the old tables' buckets into the new ones; the old
 * tables go once all have moved. */
static void move_buckets(sd_index *ix, size_t n)
{
    tables *t = &ix->t;
    for (; ix->old.n && n > 0; n--) {
        size_t i = ix->moved++;
        for (entry *e = ix->old.by[BY_ID][i], *next; e; e = next) {
            next = e->next_id;
            entry **pp = &t->by[BY_ID][sd_id_hash(e->id) & (t->n - 1)];
            e->next_id = *pp;
            *pp = e;
        }
        for (entry *e = ix->old.by[BY_TOKEN][i], *next; e; e = next) {
            next = e->next_token;
            entry **pp = &t->by[BY_TOKEN][h64(e->token_hash) & (t->n - 1)];
            e->next_token = *pp;
            *pp = e;
        }
        for (entry *e = ix->old.by[BY_USER][i], *next; e; e = next) {
            next = e->next_user;
            user_link(&t->by[BY_USER][user_hash(ix, e->user_id, e->user_id_len) & (t->n - 1)], e);
        }
        if (ix->moved == ix->old.n) {
            for (int k = 0; k < NTABLES; k++)
                sd_huge_advise(t->by[k], t->n * sizeof *t->by[k]);
            tables_free(&ix->old);
            ix->moved = 0;
        }
    }
}

/* Buckets moved at each insert and removal: a doubling started at a load of
 * 1 has moved everything before the load reaches 1 again (after as many
 * inserts as there were buckets), with room to spare. */
#define MOVE_STEP 4

/* Starts doubling the tables (the entries move at the next writes,
 * move_buckets); one still moving finishes first. Failure is harmless: the
 * chains just grow longer. */
static void grow(sd_index *ix)
{
    move_buckets(ix, SIZE_MAX);
    tables t;
    if (!tables_new(&t, ix->t.n * 2))
        return;
    ix->old = ix->t;
    ix->t = t;
    ix->moved = 0;
}

void sd_index_remove_locked(sd_index *ix, const char *id)
{
    entry **pp = find_id(ix, id), *e = *pp;
    if (!e)
        return;
    *pp = e->next_id;
    entry **tp = find_token(ix, e->token_hash);
    sd_assert(*tp == e);
    *tp = e->next_token;
    *e->pprev_user = e->next_user;
    if (e->next_user)
        e->next_user->pprev_user = e->pprev_user;
    wheel_unlink(e);
    ix->count--;
    entry_free(ix, e);
    move_buckets(ix, MOVE_STEP);
}

/* A new, unlinked entry for s: NULL when out of memory. */
static entry *build(sd_index *ix, const sd_session *s)
{
    size_t n = strlen(s->user_id);
    entry *e = sd_slab_alloc(ix->slab, entry_size(n));
    bool need = s->binding.flags || s->acr[0];
    extra *x = e && need ? malloc(sizeof *x) : NULL;
    if (!e || (need && !x)) {
        sd_slab_release(ix->slab, e, entry_size(n));
        return NULL;
    }
    if (x) {
        x->binding = s->binding;
        memcpy(x->acr, s->acr, sizeof x->acr);
    }
    memcpy(e->user_id, s->user_id, n + 1);
    e->user_id_len = (uint32_t)n;
    e->extra = x;
    e->wpprev = NULL;
    e->auth_time = s->auth_time;
    memcpy(e->id, s->id, sizeof e->id);
    memcpy(e->token_hash, s->token_hash, SD_HASH_LEN);
    return e;
}

/* Links e (whose id is not in the index); nothing here can fail it (a
 * failed growth leaves longer chains). */
static void link_entry(sd_index *ix, entry *e)
{
    if (ix->count >= ix->t.n)
        grow(ix);
    else
        move_buckets(ix, MOVE_STEP);
    entry **pp = id_bucket(ix, e->id);
    e->next_id = *pp;
    *pp = e;
    pp = token_bucket(ix, e->token_hash);
    e->next_token = *pp;
    *pp = e;
    user_link(user_bucket(ix, e->user_id, e->user_id_len), e);
    ix->count++;
}

/* Links a new entry for s (whose id is not in the index). */
static entry *insert_new(sd_index *ix, const sd_session *s)
{
    entry *e = build(ix, s);
    if (e)
        link_entry(ix, e);
    return e;
}

static void set_fields(sd_index *ix, entry *e, const sd_session *s)
{
    e->created_at = s->created_at;
    e->last_seen = s->last_seen;
    set_expiry(ix, e, s->expiry);
    e->absolute_expiry = s->absolute_expiry;
    e->idle_ttl = s->idle_ttl;
    e->version = s->version;
}

int sd_index_put_locked(sd_index *ix, const sd_session *s)
{
    entry *e = *find_id(ix, s->id);
    if (e && memcmp(e->token_hash, s->token_hash, SD_HASH_LEN) != 0) {
        sd_index_remove_locked(ix, s->id); /* a new token: re-link by hash */
        e = NULL;
    }
    if (!e && !(e = insert_new(ix, s)))
        return SD_ENOMEM;
    set_fields(ix, e, s);
    return 0;
}

int sd_index_prepare(sd_index *ix, sd_index_batch *b, const sd_session *s)
{
    entry *e = build(ix, s);
    if (!e)
        return SD_ENOMEM;
    e->next_id = NULL;
    if (b->tail)
        b->tail->next_id = e;
    else
        b->head = e;
    b->tail = e;
    return 0;
}

void sd_index_put_prepared_locked(sd_index *ix, sd_index_batch *b, const sd_session *s)
{
    entry *p = b->head;
    sd_assert(p && strcmp(p->id, s->id) == 0);
    b->head = p->next_id;
    if (!b->head)
        b->tail = NULL;
    entry *e = *find_id(ix, s->id);
    if (e && memcmp(e->token_hash, s->token_hash, SD_HASH_LEN) != 0) {
        sd_index_remove_locked(ix, s->id); /* a new token: re-link by hash */
        e = NULL;
    }
    if (e) {
        entry_free(ix, p);
    } else {
        link_entry(ix, p);
        e = p;
    }
    set_fields(ix, e, s);
}

void sd_index_batch_clear(sd_index *ix, sd_index_batch *b)
{
    for (entry *e = b->head, *next; e; e = next) {
        next = e->next_id;
        entry_free(ix, e);
    }
    b->head = b->tail = NULL;
}

void sd_index_batch_append(sd_index_batch *b, sd_index_batch *from)
{
    if (!from->head)
        return;
    if (b->tail)
        b->tail->next_id = from->head;
    else
        b->head = from->head;
    b->tail = from->tail;
    from->head = from->tail = NULL;
}

int sd_index_add(sd_index *ix, const sd_session *s)
{
    sd_index_lock(ix);
    entry *e = insert_new(ix, s);
    if (e)
        set_fields(ix, e, s);
    sd_index_unlock(ix);
    return e ? 0 : SD_ENOMEM;
}

void sd_index_reserve(sd_index *ix, size_t n)
{
    sd_index_lock(ix);
    while (ix->t.n < n) {
        size_t before = ix->t.n;
        grow(ix);
        move_buckets(ix, SIZE_MAX); /* before any reader: no one waits */
        if (ix->t.n == before)
            break; /* out of memory: the tables grow as entries come */
    }
    sd_index_unlock(ix);
}

void sd_index_touch_locked(sd_index *ix, const char *id, int64_t expiry, int64_t now)
{
    entry *e = *find_id(ix, id);
    if (!e || e->expiry <= now)
        return;
    if (expiry > e->absolute_expiry)
        expiry = e->absolute_expiry;
    if (expiry > e->expiry)
        set_expiry(ix, e, expiry);
    if (now > e->last_seen)
        e->last_seen = now;
}

int sd_index_put(sd_index *ix, const sd_session *s)
{
    sd_index_lock(ix);
    int rc = sd_index_put_locked(ix, s);
    sd_index_unlock(ix);
    return rc;
}

void sd_index_remove(sd_index *ix, const char *id)
{
    sd_index_lock(ix);
    sd_index_remove_locked(ix, id);
    sd_index_unlock(ix);
}

void sd_index_touch(sd_index *ix, const char *id, int64_t expiry, int64_t now)
{
    sd_index_lock(ix);
    sd_index_touch_locked(ix, id, expiry, now);
    sd_index_unlock(ix);
}

/* The entry into out; the user id into the caller's out->user_id_buf when
 * it gave one and it fits (validation: no malloc). */
static int fill(const entry *e, sd_session *out)
{
    char *buf = out->user_id_buf;
    size_t cap = out->user_id_cap;
    memset(out, 0, sizeof *out);
    out->user_id_buf = buf;
    out->user_id_cap = cap;
    memcpy(out->id, e->id, sizeof out->id);
    memcpy(out->token_hash, e->token_hash, SD_HASH_LEN);
    int rc = sd_session_set_user_id(out, e->user_id, e->user_id_len);
    out->created_at = e->created_at;
    out->last_seen = e->last_seen;
    out->expiry = e->expiry;
    out->absolute_expiry = e->absolute_expiry;
    out->idle_ttl = e->idle_ttl;
    out->version = e->version;
    out->auth_time = e->auth_time;
    if (e->extra) {
        out->binding = e->extra->binding;
        memcpy(out->acr, e->extra->acr, sizeof out->acr);
    }
    return rc;
}

int sd_index_get_by_token(sd_index *ix, const unsigned char hash[SD_HASH_LEN], sd_session *out)
{
    int slot = sd_brlock_rdlock(&ix->lock);
    entry *e = *find_token(ix, hash);
    int rc = e ? fill(e, out) : SD_ENOTFOUND;
    sd_brlock_rdunlock(&ix->lock, slot);
    return rc;
}

int sd_index_get_by_id(sd_index *ix, const char *id, sd_session *out)
{
    int slot = sd_brlock_rdlock(&ix->lock);
    entry *e = *find_id(ix, id);
    int rc = e ? fill(e, out) : SD_ENOTFOUND;
    sd_brlock_rdunlock(&ix->lock, slot);
    return rc;
}

size_t sd_index_count(sd_index *ix)
{
    int slot = sd_brlock_rdlock(&ix->lock);
    size_t n = ix->count;
    sd_brlock_rdunlock(&ix->lock, slot);
    return n;
}

/* The longest chain by id or by token in buckets [from, to) of t (a
 * user's entries share their bucket by design). */
static size_t longest_in(const tables *t, size_t from, size_t to)
{
    size_t longest = 0;
    for (size_t i = from; i < to; i++) {
        size_t a = 0, b = 0;
        for (const entry *e = t->by[BY_ID][i]; e; e = e->next_id)
            a++;
        for (const entry *e = t->by[BY_TOKEN][i]; e; e = e->next_token)
            b++;
        longest = a > longest ? a : longest;
        longest = b > longest ? b : longest;
    }
    return longest;
}

size_t sd_index_longest_chain(sd_index *ix)
{
    int slot = sd_brlock_rdlock(&ix->lock);
    size_t longest = longest_in(&ix->t, 0, ix->t.n);
    if (ix->old.n) {
        size_t old = longest_in(&ix->old, ix->moved, ix->old.n);
        longest = old > longest ? old : longest;
    }
    sd_brlock_rdunlock(&ix->lock, slot);
    return longest;
}

int sd_index_expired(sd_index *ix, int64_t now, char (*ids)[SD_ID_LEN + 1], int max)
{
    int64_t last = now / 1000; /* this second's slot: walked, not passed */
    if (ix->sweep_sec < last - (WHEEL_SLOTS - 1))
        ix->sweep_sec = last - (WHEEL_SLOTS - 1); /* each slot once, the first time all */
    int n = 0;
    for (;;) {
        for (entry *e = ix->wheel[(uint64_t)ix->sweep_sec & (WHEEL_SLOTS - 1)]; e && n < max;
             e = e->wnext) {
            if (e->expiry <= now)
                memcpy(ids[n++], e->id, sizeof ids[0]);
        }
        if (n >= max || ix->sweep_sec >= last)
            return n; /* a full slot stays the cursor's: what this sweep moves leaves it */
        ix->sweep_sec++;
    }
}

size_t sd_index_user_locked(sd_index *ix, const char *user, sd_index_user_row *out, size_t cap)
{
    size_t len = strlen(user), n = 0;
    for (entry *e = *user_bucket(ix, user, len); e; e = e->next_user) {
        if (e->user_id_len != len || memcmp(e->user_id, user, len) != 0)
            continue;
        if (n < cap) {
            memcpy(out[n].id, e->id, sizeof out[n].id);
            out[n].last_seen = e->last_seen;
            out[n].expiry = e->expiry;
        }
        n++;
    }
    return n;
}

size_t sd_index_user(sd_index *ix, const char *user, sd_index_user_row *out, size_t cap)
{
    int slot = sd_brlock_rdlock(&ix->lock);
    size_t n = sd_index_user_locked(ix, user, out, cap);
    sd_brlock_rdunlock(&ix->lock, slot);
    return n;
}
