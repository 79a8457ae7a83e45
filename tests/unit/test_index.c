/* Unit tests of store/index.c: lookups, replacement, and the spread of its
 * hash tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "session/token.h"
#include "store/index.h"
#include "util/err.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void session_n(sd_session *s, const char *fmt, unsigned n)
{
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, fmt, n);
    char tok[32];
    snprintf(tok, sizeof tok, "token-%u", n);
    sd_token_hash(tok, strlen(tok), s->token_hash);
    s->user_id = "user";
    s->expiry = s->absolute_expiry = 1000 + n;
    s->version = 1;
}

static void put_get_replace_remove(void **state)
{
    (void)state;
    sd_index *ix = sd_index_new();
    assert_non_null(ix);
    sd_session s, out = {.user_id = NULL};
    session_n(&s, "A%021u", 7);
    assert_int_equal(sd_index_put(ix, &s), 0);
    assert_int_equal(sd_index_get_by_id(ix, s.id, &out), 0);
    assert_string_equal(out.user_id, "user");
    free(out.user_id);

    /* The same id with a new token: the old token no longer finds it. */
    unsigned char old[SD_HASH_LEN];
    memcpy(old, s.token_hash, sizeof old);
    sd_token_hash("rotated", 7, s.token_hash);
    s.version = 2;
    assert_int_equal(sd_index_put(ix, &s), 0);
    assert_int_equal(sd_index_get_by_token(ix, old, &out), SD_ENOTFOUND);
    assert_int_equal(sd_index_get_by_token(ix, s.token_hash, &out), 0);
    assert_int_equal(out.version, 2);
    free(out.user_id);
    assert_int_equal(sd_index_count(ix), 1);

    sd_index_remove(ix, s.id);
    assert_int_equal(sd_index_get_by_id(ix, s.id, &out), SD_ENOTFOUND);
    assert_int_equal(sd_index_count(ix), 0);
    sd_index_free(ix);
}

/* Puts prepared before a commit (sd_index_prepare) land as sd_index_put
 * would: a new id is linked, the same token updates in place (the spare
 * entry freed), a new token re-links; what a failed commit left is freed
 * by sd_index_batch_clear. */
static void prepared_puts(void **state)
{
    (void)state;
    sd_index *ix = sd_index_new();
    assert_non_null(ix);
    sd_session a, b, out = {.user_id = NULL};
    session_n(&a, "A%021u", 1);
    session_n(&b, "B%021u", 2);
    sd_index_batch batch = {0}, more = {0};
    assert_int_equal(sd_index_prepare(ix, &batch, &a), 0);
    assert_int_equal(sd_index_prepare(ix, &more, &b), 0);
    sd_index_batch_append(&batch, &more);
    assert_null(more.head);
    a.version = 3; /* the same token, a later version: updated in place */
    assert_int_equal(sd_index_prepare(ix, &batch, &a), 0);

    sd_index_lock(ix);
    sd_index_put_prepared_locked(ix, &batch, &a);
    sd_index_put_prepared_locked(ix, &batch, &b);
    sd_index_put_prepared_locked(ix, &batch, &a);
    sd_index_unlock(ix);
    assert_null(batch.head);
    assert_null(batch.tail);
    assert_int_equal(sd_index_count(ix), 2);
    assert_int_equal(sd_index_get_by_token(ix, a.token_hash, &out), 0);
    assert_int_equal(out.version, 3);
    free(out.user_id);

    /* A new token for b: the old one finds nothing any more. */
    unsigned char old[SD_HASH_LEN];
    memcpy(old, b.token_hash, sizeof old);
    sd_token_hash("rotated", 7, b.token_hash);
    assert_int_equal(sd_index_prepare(ix, &batch, &b), 0);
    sd_index_lock(ix);
    sd_index_put_prepared_locked(ix, &batch, &b);
    sd_index_unlock(ix);
    assert_int_equal(sd_index_get_by_token(ix, old, &out), SD_ENOTFOUND);
    assert_int_equal(sd_index_get_by_token(ix, b.token_hash, &out), 0);
    free(out.user_id);
    assert_int_equal(sd_index_count(ix), 2);

    /* A commit that failed: its prepared entries are freed, none linked. */
    sd_session c;
    session_n(&c, "C%021u", 3);
    assert_int_equal(sd_index_prepare(ix, &batch, &c), 0);
    sd_index_batch_clear(ix, &batch);
    assert_null(batch.head);
    assert_int_equal(sd_index_get_by_id(ix, c.id, &out), SD_ENOTFOUND);
    sd_index_free(ix);
}

/* Ids that differ only in their last characters (as bulk-loaded or imported
 * ones do) must still spread over the buckets: before, only the first 16
 * characters were hashed and such ids made one chain. */
static void ids_sharing_a_long_prefix_spread(void **state)
{
    (void)state;
    enum { N = 20000 };
    sd_index *ix = sd_index_new();
    assert_non_null(ix);
    sd_session s, out = {.user_id = NULL};
    for (unsigned i = 0; i < N; i++) {
        session_n(&s, "L%021u", i);
        assert_int_equal(sd_index_put(ix, &s), 0);
    }
    assert_int_equal(sd_index_count(ix), N);
    size_t longest = sd_index_longest_chain(ix);
    /* Uniform hashing at load <= 1 gives chains of about 8-10 here. */
    assert_in_range(longest, 1, 16);
    for (unsigned i = 0; i < N; i += 997) {
        session_n(&s, "L%021u", i);
        assert_int_equal(sd_index_get_by_id(ix, s.id, &out), 0);
        assert_int_equal(out.expiry, 1000 + i);
        free(out.user_id);
    }
    sd_index_free(ix);
}

/* The start's path: tables sized once, entries added without a lookup;
 * every entry is found by id and by token, and the index still takes puts. */
static void reserve_then_add_finds_everything(void **state)
{
    (void)state;
    enum { N = 50000 };
    sd_index *ix = sd_index_new();
    assert_non_null(ix);
    sd_index_reserve(ix, N);
    sd_session s, out = {.user_id = NULL};
    for (unsigned i = 0; i < N; i++) {
        session_n(&s, "R%021u", i);
        assert_int_equal(sd_index_add(ix, &s), 0);
    }
    assert_int_equal(sd_index_count(ix), N);
    assert_in_range(sd_index_longest_chain(ix), 1, 16);
    for (unsigned i = 0; i < N; i += 101) {
        session_n(&s, "R%021u", i);
        assert_int_equal(sd_index_get_by_token(ix, s.token_hash, &out), 0);
        assert_string_equal(out.id, s.id);
        free(out.user_id);
    }
    session_n(&s, "R%021u", 7);
    s.version = 9;
    assert_int_equal(sd_index_put(ix, &s), 0); /* replaces, does not duplicate */
    assert_int_equal(sd_index_count(ix), N);
    assert_int_equal(sd_index_get_by_id(ix, s.id, &out), 0);
    assert_int_equal(out.version, 9);
    free(out.user_id);
    sd_index_free(ix);
}

/* Session n of the growth test, with its second token when it has one. */
static void grown_n(sd_session *s, unsigned n, bool retokened)
{
    session_n(s, "G%021u", n);
    if (retokened) {
        char tok[32];
        snprintf(tok, sizeof tok, "again-%u", n);
        sd_token_hash(tok, strlen(tok), s->token_hash);
    }
}

/* Session n is found by id and by its token exactly when present. */
static void check_n(sd_index *ix, unsigned n, bool present, bool retokened)
{
    sd_session s, out = {.user_id = NULL};
    grown_n(&s, n, retokened);
    assert_int_equal(sd_index_get_by_id(ix, s.id, &out), present ? 0 : SD_ENOTFOUND);
    free(out.user_id);
    out.user_id = NULL;
    assert_int_equal(sd_index_get_by_token(ix, s.token_hash, &out), present ? 0 : SD_ENOTFOUND);
    if (present)
        assert_string_equal(out.id, s.id);
    free(out.user_id);
}

/* The tables double a few buckets at a write (incremental rehashing):
 * every entry stays findable by id and by token while its bucket moves,
 * through inserts, removals and token changes that land on moved and
 * unmoved buckets alike, across several doublings. */
static void growth_moves_a_few_buckets_at_a_time(void **state)
{
    (void)state;
    enum { N = 40000 };
    static bool present[N], retokened[N];
    memset(present, 0, sizeof present);
    memset(retokened, 0, sizeof retokened);
    sd_index *ix = sd_index_new(); /* 1,024 buckets: doubles six times */
    assert_non_null(ix);
    sd_session s;
    size_t count = 0;
    for (unsigned i = 0; i < N; i++) {
        grown_n(&s, i, false);
        assert_int_equal(sd_index_put(ix, &s), 0);
        present[i] = true;
        count++;
        if (i % 3 == 2 && present[i / 2]) { /* an older one removed */
            grown_n(&s, i / 2, retokened[i / 2]);
            sd_index_remove(ix, s.id);
            present[i / 2] = false;
            count--;
        }
        unsigned r = i * 7 / 8;
        if (i % 5 == 4 && present[r] && !retokened[r]) { /* a new token: relinked */
            grown_n(&s, r, true);
            assert_int_equal(sd_index_put(ix, &s), 0);
            retokened[r] = true;
        }
        if (i % 1009 == 0) /* often while buckets move: all of them */
            for (unsigned k = 0; k <= i; k++)
                check_n(ix, k, present[k], retokened[k]);
    }
    assert_int_equal(sd_index_count(ix), count);
    for (unsigned k = 0; k < N; k++)
        check_n(ix, k, present[k], retokened[k]);
    assert_in_range(sd_index_longest_chain(ix), 1, 16);
    sd_index_free(ix);
}

/* Drains the sweep's candidates at now, removing each as the sweep's commit
 * does; returns how many, and whether id was among them. */
static int drain(sd_index *ix, int64_t now, const char *id, bool *seen)
{
    char ids[8][SD_ID_LEN + 1];
    int n, total = 0;
    while ((n = sd_index_expired(ix, now, ids, 8)) > 0) {
        for (int k = 0; k < n; k++) {
            if (id && strcmp(ids[k], id) == 0)
                *seen = true;
            sd_index_remove(ix, ids[k]);
        }
        total += n;
    }
    return total;
}

/* The expiry wheel: what sd_index_expired names is exactly what has
 * expired, across touches, puts that move an expiry, an expiry further out
 * than the wheel's turn, and an expiry set behind the sweep's cursor. */
static void expired_ids_come_from_the_wheel(void **state)
{
    (void)state;
    const int64_t T = 10000000; /* ms */
    sd_index *ix = sd_index_new();
    assert_non_null(ix);
    sd_session s;
    for (unsigned i = 0; i < 100; i++) {
        session_n(&s, "W%021u", i);
        s.expiry = T + (int64_t)i * 500;
        s.absolute_expiry = T + 10000000;
        assert_int_equal(sd_index_put(ix, &s), 0);
    }
    session_n(&s, "F%021u", 1001); /* past the wheel's turn of 4,096 s */
    s.expiry = s.absolute_expiry = T + 5000000;
    assert_int_equal(sd_index_put(ix, &s), 0);
    session_n(&s, "P%021u", 1002); /* already expired when indexed */
    s.expiry = s.absolute_expiry = T - 100000;
    assert_int_equal(sd_index_put(ix, &s), 0);

    bool seen = false;
    assert_int_equal(drain(ix, T - 200000, NULL, &seen), 0);
    /* W0..W20 (expiry <= T + 10 s) and P1 */
    assert_int_equal(drain(ix, T + 10000, "P000000000000000001002", &seen), 22);
    assert_true(seen);
    assert_int_equal(sd_index_count(ix), 80);

    /* W50 touched to T + 60 s: not expired at T + 30 s, unlike W21..W60. */
    sd_index_touch(ix, "W000000000000000000050", T + 60000, T + 20000);
    seen = false;
    assert_int_equal(drain(ix, T + 30000, "W000000000000000000050", &seen), 39);
    assert_false(seen);
    /* A put that moves W70's expiry later, and one behind the cursor. */
    session_n(&s, "W%021u", 70);
    s.expiry = T + 90000;
    s.absolute_expiry = T + 10000000;
    assert_int_equal(sd_index_put(ix, &s), 0);
    session_n(&s, "B%021u", 1003);
    s.expiry = T + 29500;
    s.absolute_expiry = T + 10000000;
    assert_int_equal(sd_index_put(ix, &s), 0);
    seen = false;
    assert_int_equal(drain(ix, T + 30100, "B000000000000000001003", &seen), 1);
    assert_true(seen);
    /* At T + 60 s: W50, W61..W69 and W71..W99 have gone (W70 is at 90 s). */
    seen = false;
    assert_int_equal(drain(ix, T + 60000, "W000000000000000000070", &seen), 39);
    assert_false(seen);
    sd_index_remove(ix, "W000000000000000000070");
    assert_int_equal(sd_index_count(ix), 1);
    assert_int_equal(drain(ix, T + 4999999, NULL, &seen), 0);
    seen = false;
    assert_int_equal(drain(ix, T + 5000000, "F000000000000000001001", &seen), 1);
    assert_true(seen);
    assert_int_equal(sd_index_count(ix), 0);
    sd_index_free(ix);
}

static int has_row(const sd_index_user_row *v, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].id, id) == 0)
            return 1;
    return 0;
}

/* A user's entries, through growth of the tables and removals; other
 * users' (one of them sharing a prefix) never among them. */
static void a_users_entries(void **state)
{
    (void)state;
    sd_index *ix = sd_index_new();
    assert_non_null(ix);
    sd_session s;
    char users[3][16] = {"alice", "bob", "alice2"};
    for (unsigned i = 0; i < 3000; i++) { /* the tables grow past 1,024 buckets */
        session_n(&s, "U%021u", i);
        s.user_id = users[i % 3];
        assert_int_equal(sd_index_put(ix, &s), 0);
    }
    sd_index_user_row v[1000];
    assert_int_equal(sd_index_user(ix, "alice", v, 1000), 1000);
    assert_int_equal(sd_index_user(ix, "bob", v, 10), 1000); /* more than cap: the count */
    assert_int_equal(sd_index_user(ix, "carol", v, 1000), 0);
    for (unsigned i = 0; i < 3000; i += 2) {
        char id[SD_ID_LEN + 1];
        snprintf(id, sizeof id, "U%021u", i);
        sd_index_remove(ix, id);
    }
    size_t n = sd_index_user(ix, "alice2", v, 1000);
    assert_int_equal(n, 500);
    for (unsigned i = 0; i < 3000; i++) {
        char id[SD_ID_LEN + 1];
        snprintf(id, sizeof id, "U%021u", i);
        assert_int_equal(has_row(v, n, id), i % 3 == 2 && i % 2 == 1);
    }
    /* Unlinked from anywhere in its user's chain (head, middle, tail),
     * with other inserts between. */
    for (unsigned i = 1; i < 3000; i += 2) {
        char id[SD_ID_LEN + 1];
        snprintf(id, sizeof id, "U%021u", i);
        sd_index_remove(ix, id);
        session_n(&s, "V%021u", i);
        s.user_id = users[i % 3];
        assert_int_equal(sd_index_put(ix, &s), 0);
    }
    assert_int_equal(sd_index_user(ix, "alice2", v, 1000), 500);
    for (unsigned i = 1; i < 3000; i += 2) {
        char id[SD_ID_LEN + 1];
        snprintf(id, sizeof id, "V%021u", i);
        sd_index_remove(ix, id);
    }
    for (int u = 0; u < 3; u++)
        assert_int_equal(sd_index_user(ix, users[u], v, 1000), 0);
    sd_index_free(ix);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(put_get_replace_remove),
        cmocka_unit_test(prepared_puts),
        cmocka_unit_test(ids_sharing_a_long_prefix_spread),
        cmocka_unit_test(reserve_then_add_finds_everything),
        cmocka_unit_test(growth_moves_a_few_buckets_at_a_time),
        cmocka_unit_test(expired_ids_come_from_the_wheel),
        cmocka_unit_test(a_users_entries),
    };
    return cmocka_run_group_tests_name("index", tests, NULL, NULL);
}
