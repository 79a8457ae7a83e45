/*
 * sqlite_users.c - a user's sessions on the embedded store, from the
 * in-memory index: the table has no index on user_id (each create landed at
 * a random page of one, most of the bytes a create wrote; schema version 7).
 *
 * Readers ask the index, which holds what is committed. The writer asks in
 * the middle of a batch, whose own writes the index has not seen yet (it
 * follows commits), so the writer's view is the index's with the batch's
 * changes laid over it: the sessions it inserted, those it ended, the
 * lastSeen its updates moved (a rolling touch's, moved by less than a
 * batch's time, is left out: it only orders the cap's oldest). A write's part of that overlay goes
 * with its savepoint when that is rolled back, and all of it with the batch. The statements that
 * take the ids check user, expiry and id again in SQL.
 */
#include "store/sqlite_internal.h"
#include "util/err.h"
#include "util/grow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OV_INSERT, OV_END, OV_SEEN };

struct sq_overlay_item {
    unsigned char kind;
    bool owned; /* user is a copy (an end's, read from the row) */
    char id[SD_ID_LEN + 1];
    const char *user;  /* the session's user: borrowed from the batch's write, or owned */
    int64_t last_seen; /* OV_INSERT, OV_SEEN */
    int64_t expiry;    /* OV_INSERT */
};

/* Ids are base64url: nothing to escape. */
char *sq__ids_json(const char *first, size_t stride, size_t n, size_t *len)
{
    char *json = malloc(n * (SD_ID_LEN + 3) + 3);
    if (!json)
        return NULL;
    size_t k = 0;
    json[k++] = '[';
    for (size_t i = 0; i < n; i++) {
        const char *id = first + i * stride;
        size_t idlen = strnlen(id, SD_ID_LEN);
        if (i)
            json[k++] = ',';
        json[k++] = '"';
        memcpy(json + k, id, idlen);
        k += idlen;
        json[k++] = '"';
    }
    json[k++] = ']';
    json[k] = '\0';
    *len = k;
    return json;
}

/* Every entry of user in the index (into a malloc'd *out). */
static int index_rows(sd_store *st, const char *user, bool locked, sd_index_user_row **out,
                      size_t *n)
{
    size_t cap = 16;
    for (;;) {
        sd_index_user_row *v = malloc(cap * sizeof *v);
        if (!v)
            return SD_ENOMEM;
        size_t k = locked ? sd_index_user_locked(st->index, user, v, cap)
                          : sd_index_user(st->index, user, v, cap);
        if (k <= cap) {
            *out = v;
            *n = k;
            return 0;
        }
        free(v);
        cap = k + 16; /* the user's sessions grew meanwhile: ask again */
    }
}

char *sq__user_ids_json(sd_store *st, const char *user, size_t *len)
{
    sd_index_user_row *v = NULL;
    size_t n = 0;
    if (index_rows(st, user, false, &v, &n))
        return NULL;
    char *json = sq__ids_json(v[0].id, sizeof v[0], n, len);
    free(v);
    return json;
}

/* ---- the writer's overlay ----------------------------------------------- */

static struct sq_overlay_item *push(sd_store *st, int kind, const char *id)
{
    sq_overlay *o = &st->overlay;
    void *p = sd_grow(o->items, &o->cap, o->n, sizeof *o->items, 64);
    if (!p)
        return NULL;
    o->items = p;
    struct sq_overlay_item *it = &o->items[o->n];
    memset(it, 0, sizeof *it);
    it->kind = (unsigned char)kind;
    snprintf(it->id, sizeof it->id, "%s", id);
    return it;
}

int sq__ov_insert(sd_store *st, const sd_session *s)
{
    struct sq_overlay_item *it = push(st, OV_INSERT, s->id);
    if (!it)
        return SD_ENOMEM;
    it->user = s->user_id; /* the write's, which outlives the batch's overlay */
    it->last_seen = s->last_seen;
    it->expiry = s->expiry;
    st->overlay.n++;
    return 0;
}

int sq__ov_end(sd_store *st, const char *id, const char *user)
{
    struct sq_overlay_item *it = push(st, OV_END, id);
    char *copy = it ? strdup(user) : NULL;
    if (!copy)
        return SD_ENOMEM;
    it->user = copy;
    it->owned = true;
    st->overlay.n++;
    return 0;
}

int sq__ov_seen(sd_store *st, const sd_session *s)
{
    struct sq_overlay_item *it = push(st, OV_SEEN, s->id);
    if (!it)
        return SD_ENOMEM;
    it->user = s->user_id;
    it->last_seen = s->last_seen;
    st->overlay.n++;
    return 0;
}

void sq__ov_mark(sd_store *st)
{
    st->overlay.mark = st->overlay.n;
}

static void truncate_to(sq_overlay *o, size_t n)
{
    while (o->n > n) {
        struct sq_overlay_item *it = &o->items[--o->n];
        if (it->owned)
            free((char *)it->user);
    }
}

void sq__ov_undo(sd_store *st)
{
    truncate_to(&st->overlay, st->overlay.mark);
}

void sq__ov_clear(sd_store *st)
{
    truncate_to(&st->overlay, 0);
    st->overlay.mark = 0;
}

void sq__ov_free(sd_store *st)
{
    sq__ov_clear(st);
    free(st->overlay.items);
    st->overlay.items = NULL;
    st->overlay.cap = 0;
}

static long find(const sd_index_user_row *v, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].id, id) == 0)
            return (long)i;
    return -1;
}

int sq__user_live(sd_store *st, const char *user, int64_t now, sd_index_user_row **out, size_t *n)
{
    sd_index_user_row *v = NULL;
    size_t k = 0, cap;
    int rc = index_rows(st, user, true, &v, &k);
    if (rc)
        return rc;
    cap = k;
    const sq_overlay *o = &st->overlay;
    for (size_t i = 0; i < o->n; i++) {
        const struct sq_overlay_item *it = &o->items[i];
        if (strcmp(it->user, user) != 0)
            continue; /* another user's: most of a batch */
        long at = it->kind == OV_INSERT ? -1 : find(v, k, it->id);
        if (it->kind == OV_INSERT) {
            void *p = sd_grow(v, &cap, k, sizeof *v, 16);
            if (!p) {
                free(v);
                return SD_ENOMEM;
            }
            v = p;
            snprintf(v[k].id, sizeof v[k].id, "%s", it->id);
            v[k].last_seen = it->last_seen;
            v[k].expiry = it->expiry;
            k++;
        } else if (it->kind == OV_END && at >= 0) {
            v[at] = v[--k];
        } else if (it->kind == OV_SEEN && at >= 0 && it->last_seen > v[at].last_seen) {
            v[at].last_seen = it->last_seen;
        }
    }
    size_t live = 0;
    for (size_t i = 0; i < k; i++)
        if (v[i].expiry > now)
            v[live++] = v[i];
    *out = v;
    *n = live;
    return 0;
}
