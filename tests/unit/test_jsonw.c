/* Unit tests of util/jsonw.c: the JSON writer of the hot replies. Every
 * control character, quotes and backslash, U+2028/U+2029, invalid UTF-8 in
 * a user id (each bad byte becomes \ufffd, never raw), and the output read
 * back by jansson, which refuses invalid JSON and invalid UTF-8. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "util/arena.h"
#include "util/jsonw.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* {"userId":<n bytes of id>} written into a small arena (so it grows). */
static const char *user_reply(sd_arena *a, const char *id, size_t n, size_t *len, size_t *bad)
{
    sd_jw w;
    sd_jw_init(&w, a, 0);
    sd_jw_object(&w);
    sd_jw_key(&w, "userId");
    *bad = sd_jw_strn(&w, id, n);
    sd_jw_end(&w);
    return sd_jw_done(&w, len);
}

/* The reply parsed back: its userId's bytes must be want (wlen bytes). */
static void reads_back(const char *text, size_t len, const char *want, size_t wlen)
{
    json_error_t e;
    json_t *o = json_loadb(text, len, JSON_ALLOW_NUL, &e);
    if (!o)
        fail_msg("jansson refuses %s: %s", text, e.text);
    json_t *v = json_object_get(o, "userId");
    assert_non_null(v);
    assert_int_equal(json_string_length(v), wlen);
    assert_memory_equal(json_string_value(v), want, wlen);
    json_decref(o);
}

static void every_control_character_is_escaped(void **state)
{
    (void)state;
    char mem[64];
    sd_arena a;
    sd_arena_init(&a, mem, sizeof mem);
    static const char *const shortform[32] = {
        ['\b'] = "\\b", ['\t'] = "\\t", ['\n'] = "\\n", ['\f'] = "\\f", ['\r'] = "\\r"};
    int codes[33];
    for (int c = 0; c < 32; c++)
        codes[c] = c;
    codes[32] = 0x7f;
    for (int i = 0; i < 33; i++) {
        int c = codes[i];
        char id[3] = {'a', (char)c, 'b'}, want[64];
        if (c < 32 && shortform[c])
            snprintf(want, sizeof want, "{\"userId\":\"a%sb\"}", shortform[c]);
        else
            snprintf(want, sizeof want, "{\"userId\":\"a\\u%04xb\"}", (unsigned)c);
        size_t len, bad;
        const char *text = user_reply(&a, id, sizeof id, &len, &bad);
        assert_non_null(text);
        assert_int_equal(bad, 0);
        assert_string_equal(text, want);
        for (size_t k = 0; k < len; k++) /* nothing below 0x20, no DEL, in the text */
            assert_true((unsigned char)text[k] >= 0x20 && text[k] != 0x7f);
        reads_back(text, len, id, sizeof id);
        sd_arena_reset(&a);
    }
}

static void quotes_backslash_and_line_separators(void **state)
{
    (void)state;
    char mem[64];
    sd_arena a;
    sd_arena_init(&a, mem, sizeof mem);
    struct {
        const char *in, *out;
    } cases[] = {
        {"say \"hi\"", "{\"userId\":\"say \\\"hi\\\"\"}"},
        {"back\\slash", "{\"userId\":\"back\\\\slash\"}"},
        {"\"\\", "{\"userId\":\"\\\"\\\\\"}"},
        {"a/b", "{\"userId\":\"a/b\"}"},
        {"x\xe2\x80\xa8y", "{\"userId\":\"x\\u2028y\"}"},          /* U+2028 LINE SEPARATOR */
        {"x\xe2\x80\xa9y", "{\"userId\":\"x\\u2029y\"}"},          /* U+2029 PARAGRAPH SEPARATOR */
        {"\xc3\xa9lise \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80", /* é, 日本, 😀: kept raw */
         "{\"userId\":\"\xc3\xa9lise \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\"}"},
        {"\xc2\x85", "{\"userId\":\"\xc2\x85\"}"}, /* a C1 control: valid JSON as it is */
        {"", "{\"userId\":\"\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len, bad;
        const char *text = user_reply(&a, cases[i].in, strlen(cases[i].in), &len, &bad);
        assert_int_equal(bad, 0);
        assert_string_equal(text, cases[i].out);
        reads_back(text, len, cases[i].in, strlen(cases[i].in));
        sd_arena_reset(&a);
    }
}

static void invalid_utf8_becomes_replacement_characters(void **state)
{
    (void)state;
    char mem[64];
    sd_arena a;
    sd_arena_init(&a, mem, sizeof mem);
    struct {
        const char *in, *escaped; /* escaped: the string's text between the quotes */
        size_t bad;
    } cases[] = {
        {"a\x80z", "a\\ufffdz", 1},                   /* a stray continuation byte */
        {"a\xbfz", "a\\ufffdz", 1},                   /* another */
        {"a\xc3", "a\\ufffd", 1},                     /* truncated at the end */
        {"a\xc3z", "a\\ufffdz", 1},                   /* truncated before ASCII */
        {"\xe2\x82", "\\ufffd\\ufffd", 2},            /* a truncated three-byte sequence */
        {"\xc0\xaf", "\\ufffd\\ufffd", 2},            /* overlong '/' */
        {"\xe0\x80\xaf", "\\ufffd\\ufffd\\ufffd", 3}, /* overlong, three bytes */
        {"\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd", 3}, /* a UTF-16 surrogate, U+D800 */
        {"\xf4\x90\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd", 4}, /* past U+10FFFF */
        {"\xfe\xff", "\\ufffd\\ufffd", 2},
        {"\xf8\x88\x80\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd", 5},
        {"ok\xc3\xa9\xc3", "ok\xc3\xa9\\ufffd", 1}, /* a valid é kept, the rest replaced */
        {"\"\xff\n", "\\\"\\ufffd\\n", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len, bad;
        const char *text = user_reply(&a, cases[i].in, strlen(cases[i].in), &len, &bad);
        char want[128];
        snprintf(want, sizeof want, "{\"userId\":\"%s\"}", cases[i].escaped);
        assert_string_equal(text, want);
        assert_int_equal(bad, cases[i].bad);
        for (size_t k = 0; k < len; k++) /* the escapes are ASCII; only valid é is not */
            assert_true((unsigned char)text[k] < 0x80 || strstr(cases[i].in, "\xc3\xa9"));
        json_t *o = json_loadb(text, len, 0, NULL); /* jansson refuses invalid UTF-8 */
        assert_non_null(o);
        json_decref(o);
        sd_arena_reset(&a);
    }
}

static void writes_objects_arrays_and_scalars(void **state)
{
    (void)state;
    sd_arena a;
    sd_arena_init(&a, NULL, 0); /* every byte in malloc'd chunks, freed by the reset */
    sd_jw w;
    sd_jw_init(&w, &a, 16);
    sd_jw_object(&w);
    sd_jw_key(&w, "isValid");
    sd_jw_bool(&w, true);
    sd_jw_key(&w, "expiry");
    sd_jw_null(&w);
    sd_jw_key(&w, "n");
    sd_jw_array(&w);
    sd_jw_int(&w, 0);
    sd_jw_int(&w, -42);
    sd_jw_int(&w, INT64_MAX);
    sd_jw_int(&w, INT64_MIN);
    sd_jw_object(&w);
    sd_jw_end(&w);
    sd_jw_array(&w);
    sd_jw_end(&w);
    sd_jw_end(&w);
    sd_jw_key(&w, "off");
    sd_jw_bool(&w, false);
    sd_jw_end(&w);
    size_t len;
    const char *text = sd_jw_done(&w, &len);
    assert_string_equal(text, "{\"isValid\":true,\"expiry\":null,\"n\":[0,-42,9223372036854775807,"
                              "-9223372036854775808,{},[]],\"off\":false}");
    assert_int_equal(len, strlen(text));
    sd_arena_reset(&a);
}

static void long_strings_grow_the_buffer(void **state)
{
    (void)state;
    char mem[128];
    sd_arena a;
    sd_arena_init(&a, mem, sizeof mem);
    char id[5000];
    size_t want = strlen("{\"userId\":\"\"}"), nbad = 0;
    for (size_t i = 0; i < sizeof id; i++) {
        id[i] = (char)(i % 3 == 0 ? 0x01 : i % 3 == 1 ? 'x' : 0xff);
        want += i % 3 == 1 ? 1 : 6;
        nbad += i % 3 == 2;
    }
    size_t len, bad;
    const char *text = user_reply(&a, id, sizeof id, &len, &bad);
    assert_non_null(text);
    assert_int_equal(bad, nbad);
    assert_int_equal(len, want);
    json_t *o = json_loadb(text, len, 0, NULL);
    assert_non_null(o);
    json_decref(o);
    sd_arena_reset(&a);
}

static void too_deep_fails_whole(void **state)
{
    (void)state;
    sd_arena a;
    sd_arena_init(&a, NULL, 0);
    sd_jw w;
    sd_jw_init(&w, &a, 0);
    for (int i = 0; i <= SD_JW_DEPTH; i++)
        sd_jw_array(&w);
    size_t len;
    assert_null(sd_jw_done(&w, &len));
    sd_arena_reset(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_control_character_is_escaped),
        cmocka_unit_test(quotes_backslash_and_line_separators),
        cmocka_unit_test(invalid_utf8_becomes_replacement_characters),
        cmocka_unit_test(writes_objects_arrays_and_scalars),
        cmocka_unit_test(long_strings_grow_the_buffer),
        cmocka_unit_test(too_deep_fails_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
