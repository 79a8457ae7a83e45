/* Unit tests of store/index.c: lookups, replacement, and the spread of its
 * hash tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "session/token.h"
#include "store/index.h"
#include "util/err.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(put_get_replace_remove),
        cmocka_unit_test(prepared_puts),
        cmocka_unit_test(ids_sharing_a_long_prefix_spread),
        cmocka_unit_test(reserve_then_add_finds_everything),
    };
    return cmocka_run_group_tests_name("index", tests, NULL, NULL);
}
