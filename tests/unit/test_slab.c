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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(objects_are_zeroed_aligned_and_distinct),
        cmocka_unit_test(large_objects_and_arrays),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
