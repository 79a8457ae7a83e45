/* Unit tests of audit/record.c: a record's bytes, members and hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "audit/record.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char PREV[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

static sd_event event(void)
{
    sd_event e = {.seq = 41, .time = 1795833215123LL};
    snprintf(e.event, sizeof e.event, "revoked");
    snprintf(e.session_id, sizeof e.session_id, "P895lyUhE4Q_EJrtcFZTBU");
    snprintf(e.user_id, sizeof e.user_id, "al\"ice\n\xc3\xa9");
    snprintf(e.address, sizeof e.address, "203.0.113.9");
    return e;
}

/* The line (len bytes, not NUL-terminated) is the body with "hash" added last; the hash is of the
 * body (the suffix replaced by "}"), as `sessiond audit verify` checks it. */
static json_t *render(const sd_event *e, int64_t store_seq, char hash[SD_AUDIT_HASH_HEX + 1])
{
    size_t len = 0;
    char *line = sd_audit_render(e, 7, store_seq, PREV, hash, &len);
    assert_non_null(line);
    assert_true(len > SD_AUDIT_SUFFIX_LEN + 2);
    assert_int_equal(line[len - 1], '\n');
    char suffix[SD_AUDIT_SUFFIX_LEN + 2];
    snprintf(suffix, sizeof suffix, ",\"hash\":\"%s\"}\n", hash);
    assert_memory_equal(line + len - SD_AUDIT_SUFFIX_LEN - 1, suffix, SD_AUDIT_SUFFIX_LEN + 1);
    size_t body = len - SD_AUDIT_SUFFIX_LEN;
    char *copy = strndup(line, body);
    copy[body - 1] = '}';
    char again[SD_AUDIT_HASH_HEX + 1];
    sd_audit_hash(copy, body, again);
    assert_string_equal(again, hash);
    free(copy);
    json_error_t err;
    json_t *o = json_loadb(line, len, 0, &err);
    free(line);
    assert_non_null(o);
    return o;
}

static void members_and_hash(void **state)
{
    (void)state;
    sd_event e = event();
    char hash[SD_AUDIT_HASH_HEX + 1];
    json_t *o = render(&e, 41, hash);
    assert_int_equal(json_integer_value(json_object_get(o, "seq")), 7);
    assert_string_equal(json_string_value(json_object_get(o, "time")), "2026-11-28T02:33:35.123Z");
    assert_string_equal(json_string_value(json_object_get(o, "event")), "revoked");
    assert_string_equal(json_string_value(json_object_get(o, "sessionId")), e.session_id);
    assert_string_equal(json_string_value(json_object_get(o, "userId")), e.user_id);
    assert_true(json_is_null(json_object_get(o, "actor"))); /* empty */
    assert_string_equal(json_string_value(json_object_get(o, "clientAddress")), "203.0.113.9");
    assert_true(json_is_null(json_object_get(o, "reason")));
    assert_int_equal(json_integer_value(json_object_get(o, "storeSeq")), 41);
    assert_string_equal(json_string_value(json_object_get(o, "prev")), PREV);
    assert_string_equal(json_string_value(json_object_get(o, "hash")), hash);
    assert_int_equal(json_object_size(o), 11);
    json_decref(o);
}

/* An emitted event (no store seq) has no storeSeq; a field that is not
 * valid UTF-8 is null, never a replacement of what was asked. */
static void emitted_and_not_utf8(void **state)
{
    (void)state;
    sd_event e = event();
    snprintf(e.user_id, sizeof e.user_id, "bad\xff");
    snprintf(e.actor, sizeof e.actor, "\xc3(");
    char hash[SD_AUDIT_HASH_HEX + 1];
    json_t *o = render(&e, 0, hash);
    assert_null(json_object_get(o, "storeSeq"));
    assert_true(json_is_null(json_object_get(o, "userId")));
    assert_true(json_is_null(json_object_get(o, "actor")));
    assert_int_equal(json_object_size(o), 10);
    json_decref(o);
}

/* Two records that differ in one byte of one member differ in hash. */
static void hash_covers_every_member(void **state)
{
    (void)state;
    sd_event a = event(), b = event();
    b.address[0] = '1';
    char ha[SD_AUDIT_HASH_HEX + 1], hb[SD_AUDIT_HASH_HEX + 1];
    json_decref(render(&a, 41, ha));
    json_decref(render(&b, 41, hb));
    assert_string_not_equal(ha, hb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(members_and_hash),
        cmocka_unit_test(emitted_and_not_utf8),
        cmocka_unit_test(hash_covers_every_member),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
