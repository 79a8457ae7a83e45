/* Unit tests of util/slab.c: objects in size classes on huge-page regions,
 * released objects reused zeroed, large objects from malloc, and large
 * zeroed arrays (under ASan, a read of a released object would abort). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "util/slab.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static bool all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static void objects_are_zeroed_aligned_and_distinct(void **state)
{
    (void)state;
    sd_slab *s = sd_slab_new();
    assert_non_null(s);
    enum { N = 20000 };
    static unsigned char *p[N];
    for (int i = 0; i < N; i++) {
        size_t n = 1 + (size_t)(i % 400);
        p[i] = sd_slab_alloc(s, n);
        assert_non_null(p[i]);
        assert_int_equal((uintptr_t)p[i] % 16, 0);
        assert_true(all_zero(p[i], n));
        memset(p[i], (i % 255) + 1, n); /* overlapping objects would clobber each other */
    }
    for (int i = 0; i < N; i++) {
        size_t n = 1 + (size_t)(i % 400);
        for (size_t k = 0; k < n; k++)
            assert_int_equal(p[i][k], (i % 255) + 1);
    }
    /* released objects come back zeroed, in their class */
    for (int i = 0; i < N; i += 2)
        sd_slab_release(s, p[i], 1 + (size_t)(i % 400));
    for (int i = 0; i < N; i += 2) {
        size_t n = 1 + (size_t)(i % 400);
        p[i] = sd_slab_alloc(s, n);
        assert_non_null(p[i]);
        assert_true(all_zero(p[i], n));
    }
    for (int i = 1; i < N; i += 2) /* the others were not touched */
        assert_int_equal(p[i][0], (i % 255) + 1);
    sd_slab_free(s);
}

static void large_objects_and_arrays(void **state)
{
    (void)state;
    sd_slab *s = sd_slab_new();
    unsigned char *big = sd_slab_alloc(s, SD_SLAB_MAX + 1);
    assert_non_null(big);
    assert_true(all_zero(big, SD_SLAB_MAX + 1));
    sd_slab_release(s, big, SD_SLAB_MAX + 1);
    sd_slab_free(s);
    size_t sizes[] = {4096, (size_t)4 << 20};
    for (size_t i = 0; i < 2; i++) {
        unsigned char *a = sd_huge_calloc(sizes[i]);
        assert_non_null(a);
        assert_true(all_zero(a, sizes[i]));
        a[sizes[i] - 1] = 1;
        sd_huge_free(a, sizes[i]);
    }
}

#if defined(__SANITIZE_ADDRESS__)
#define TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_SANITIZED 1
#endif
#endif

#ifdef TEST_SANITIZED
#include <sanitizer/lsan_interface.h>
#include <stdlib.h>

/* Out of line, so that the only copy of the block's address is *slot. */
static __attribute__((noinline)) void keep_block_in(void **slot)
{
    *slot = malloc(64);
    assert_non_null(*slot);
}

/* A heap block whose only pointer lives in a slab object (an index entry's
 * `extra`) or in a mapped array is live, not a leak: LeakSanitizer must see
 * the mappings (fuzz_http stopped on this false leak). */
static void heap_blocks_held_in_the_slab_are_not_leaks(void **state)
{
    (void)state;
    sd_slab *s = sd_slab_new();
    enum { N = 64, ARRAY = 4 << 20 };
    void **o[N];
    for (int i = 0; i < N; i++) {
        o[i] = sd_slab_alloc(s, sizeof(void *));
        assert_non_null(o[i]);
        keep_block_in(o[i]);
    }
    void **a = sd_huge_calloc(ARRAY); /* mapped, not malloc'd */
    assert_non_null(a);
    for (int i = 0; i < N; i++)
        keep_block_in(&a[i * 1000]);
    assert_int_equal(__lsan_do_recoverable_leak_check(), 0);
    for (int i = 0; i < N; i++) {
        free(*o[i]);
        free(a[i * 1000]);
        sd_slab_release(s, o[i], sizeof(void *));
    }
    sd_huge_free(a, ARRAY);
    sd_slab_free(s);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(objects_are_zeroed_aligned_and_distinct),
        cmocka_unit_test(large_objects_and_arrays),
#ifdef TEST_SANITIZED
        cmocka_unit_test(heap_blocks_held_in_the_slab_are_not_leaks),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
