/* Unit tests of util/arena.c: allocations in the owner's chunk and in extra
 * chunks, growth in place and by copy, reset (ASan reports a chunk it
 * forgot to free). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "util/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <string.h>

static void allocations_are_aligned_and_apart(void **state)
{
    (void)state;
    alignas(max_align_t) char mem[256];
    sd_arena a;
    sd_arena_init(&a, mem, sizeof mem);
    char *p = sd_arena_alloc(&a, 3), *q = sd_arena_alloc(&a, 5);
    assert_true(p >= mem && q + 5 <= mem + sizeof mem); /* both in the first chunk */
    assert_true(q >= p + 3);
    assert_int_equal((uintptr_t)q % alignof(max_align_t), 0);
    char *big = sd_arena_alloc(&a, 3 * SD_ARENA_CHUNK); /* its own chunk */
    assert_non_null(big);
    memset(big, 1, 3 * SD_ARENA_CHUNK);
    char *after = sd_arena_alloc(&a, 8);
    assert_non_null(after);
    sd_arena_reset(&a);
    assert_ptr_equal(sd_arena_alloc(&a, 1), mem); /* the first chunk again */
    sd_arena_reset(&a);
}

static void grow_extends_the_last_allocation_in_place(void **state)
{
    (void)state;
    alignas(max_align_t) char mem[256];
    sd_arena a;
    sd_arena_init(&a, mem, sizeof mem);
    char *p = sd_arena_grow(&a, NULL, 0, 4);
    memcpy(p, "abc", 4);
    assert_ptr_equal(sd_arena_grow(&a, p, 4, 100), p);
    assert_string_equal(p, "abc");
    char *other = sd_arena_alloc(&a, 8);
    assert_non_null(other);
    char *moved = sd_arena_grow(&a, p, 100, 120); /* no longer the last: copied */
    assert_ptr_not_equal(moved, p);
    assert_string_equal(moved, "abc");
    char *far = sd_arena_grow(&a, moved, 120, 10000); /* past the first chunk */
    assert_non_null(far);
    assert_string_equal(far, "abc");
    sd_arena_reset(&a);
}

static void strndup_terminates(void **state)
{
    (void)state;
    sd_arena a;
    sd_arena_init(&a, NULL, 0);
    char *s = sd_arena_strndup(&a, "hello world", 5);
    assert_string_equal(s, "hello");
    sd_arena_reset(&a);
    sd_arena_reset(&a); /* twice is fine */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(allocations_are_aligned_and_apart),
        cmocka_unit_test(grow_extends_the_last_allocation_in_place),
        cmocka_unit_test(strndup_terminates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
