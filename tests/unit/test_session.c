/* Unit tests of session/session.c: create validation, updates, expiry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "session/session.h"
#include "util/arena.h"
#include "util/err.h"

#include <stdio.h>
#include <string.h>

static const sd_policy P = {.idle_timeout_ms = 3600 * 1000,
                            .absolute_timeout_ms = 24 * 3600 * 1000,
                            .max_idle_timeout_ms = 7200 * 1000,
                            .touch_fraction = 0.05,
                            .max_data_bytes = 64};
static const int64_t NOW = 1795833215123LL;

static int create(const char *json, sd_session *s, char *err, size_t n)
{
    json_t *body = json_loads(json, 0, NULL);
    assert_non_null(body);
    char tok[SD_TOKEN_LEN + 1];
    int rc = sd_session_from_create(body, &P, NOW, s, tok, err, n);
    if (rc == 0) {
        unsigned char h[SD_HASH_LEN];
        sd_token_hash(tok, strlen(tok), h);
        assert_memory_equal(h, s->token_hash, SD_HASH_LEN);
        if (strlen(s->user_id) >= 5) /* a short id can occur by chance */
            assert_null(strstr(tok, s->user_id));
    }
    json_decref(body);
    return rc;
}

static void create_fills_server_fields(void **state)
{
    (void)state;
    sd_session s;
    char err[256];
    assert_int_equal(
        create("{\"userId\":\"alice\",\"ipAddress\":\"2001:db8::0:1\"}", &s, err, sizeof err), 0);
    assert_string_equal(s.user_id, "alice");
    assert_true(s.created_at == NOW && s.last_seen == NOW && s.version == 1);
    assert_true(s.expiry == NOW + P.idle_timeout_ms);
    assert_true(s.absolute_expiry == NOW + P.absolute_timeout_ms);
    assert_string_equal(json_string_value(json_object_get(s.attrs, "ipAddress")), "2001:db8::1");
    assert_true(json_is_false(json_object_get(s.attrs, "mfa")));
    assert_true(sd_id_wellformed(s.id, strlen(s.id)));
    sd_session_clear(&s);
}

static void create_clamps_ttl(void **state)
{
    (void)state;
    sd_session s;
    char err[256];
    assert_int_equal(create("{\"userId\":\"a\",\"ttlSeconds\":999999999}", &s, err, sizeof err), 0);
    assert_true(s.idle_ttl == P.max_idle_timeout_ms);
    assert_true(s.expiry == NOW + P.max_idle_timeout_ms);
    sd_session_clear(&s);
}

/* lifetimeSeconds sets the absolute expiry at create, up to the policy's
 * max_absolute_timeout_ms (0 there: absolute_timeout_ms, so a client can
 * only shorten it); expiry is then the earlier of idle and absolute. */
static void create_takes_a_lifetime_up_to_the_max(void **state)
{
    (void)state;
    static const int64_t DAY = 24 * 3600 * 1000;
    sd_policy p = P;
    p.max_absolute_timeout_ms = 30 * DAY;
    char tok[SD_TOKEN_LEN + 1], err[256];
    struct {
        const sd_policy *pol;
        const char *json;
        int64_t lifetime, expiry;
    } cases[] = {
        {&P, "{\"userId\":\"a\"}", DAY, P.idle_timeout_ms},
        {&P, "{\"userId\":\"a\",\"lifetimeSeconds\":600}", 600000, 600000},
        {&P, "{\"userId\":\"a\",\"lifetimeSeconds\":604800}", DAY, P.idle_timeout_ms},
        {&p, "{\"userId\":\"a\",\"lifetimeSeconds\":604800}", 7 * DAY, P.idle_timeout_ms},
        {&p, "{\"userId\":\"a\",\"lifetimeSeconds\":99999999999}", 30 * DAY, P.idle_timeout_ms},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *body = json_loads(cases[i].json, 0, NULL);
        sd_session s;
        assert_int_equal(sd_session_from_create(body, cases[i].pol, NOW, &s, tok, err, sizeof err),
                         0);
        assert_true(s.absolute_expiry == NOW + cases[i].lifetime);
        assert_true(s.expiry == NOW + cases[i].expiry);
        sd_session_clear(&s);
        json_decref(body);
    }
    assert_true(sd_policy_max_lifetime(&P) == DAY);
    assert_true(sd_policy_max_lifetime(&p) == 30 * DAY);
    /* An authTime as old as the longest lifetime is accepted. */
    json_t *body = json_pack("{s:s, s:s}", "userId", "a", "authTime", "2026-11-01T00:00:00Z");
    sd_session s;
    assert_int_equal(sd_session_from_create(body, &P, NOW, &s, tok, err, sizeof err), SD_EINVALID);
    assert_int_equal(sd_session_from_create(body, &p, NOW, &s, tok, err, sizeof err), 0);
    sd_session_clear(&s);
    json_decref(body);
}

static void create_rejects_bad_input(void **state)
{
    (void)state;
    struct {
        const char *json, *field;
    } bad[] = {
        {"{}", "userId"},
        {"{\"userId\":\"\"}", "userId"},
        {"{\"userId\":5}", "userId"},
        {"{\"userId\":\"a\\nb\"}", "userId"},
        {"{\"userId\":\"a\",\"ipAddress\":\"1.2.3\"}", "ipAddress"},
        {"{\"userId\":\"a\",\"token\":\"x\"}", "token"},
        {"{\"userId\":\"a\",\"sessionId\":\"x\"}", "sessionId"},
        {"{\"userId\":\"a\",\"expiry\":\"x\"}", "expiry"},
        {"{\"userId\":\"a\",\"nope\":1}", "nope"},
        {"{\"userId\":\"a\",\"mfa\":\"yes\"}", "mfa"},
        {"{\"userId\":\"a\",\"data\":[1]}", "data"},
        {"{\"userId\":\"a\",\"data\":{\"k\":\"0123456789012345678901234567890123456789012345678901"
         "234567890123456789\"}}",
         "data"},
        {"{\"userId\":\"a\",\"ttlSeconds\":0}", "ttlSeconds"},
        {"{\"userId\":\"a\",\"ttlSeconds\":1.5}", "ttlSeconds"},
        {"{\"userId\":\"a\",\"lifetimeSeconds\":0}", "lifetimeSeconds"},
        {"{\"userId\":\"a\",\"lifetimeSeconds\":\"1d\"}", "lifetimeSeconds"},
        {"{\"userId\":\"a\",\"geoLocation\":7}", "geoLocation"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sd_session s;
        char err[256] = "";
        assert_int_equal(create(bad[i].json, &s, err, sizeof err), SD_EINVALID);
        if (!strstr(err, bad[i].field))
            fail_msg("%s: detail '%s' does not name '%s'", bad[i].json, err, bad[i].field);
    }
}

/* The identifier rule (userId, deviceId, acr, amr entries): what it refuses,
 * with the reason, and what it keeps. */
static void identifier_rule(void **state)
{
    (void)state;
    struct {
        const char *s, *why; /* why: a word of the reason; NULL: accepted */
    } cases[] = {
        {"alice", NULL},
        {"Jean  Dupont", NULL},
        {"x except=- count=999", NULL},
        {"\xc3\xa9lise", NULL},              /* élise */
        {"\xe6\x97\xa5 \xe6\x9c\xac", NULL}, /* 日 本 */
        {"\xf0\x9f\x98\x80", NULL},          /* U+1F600, four bytes */
        {"a\xc2\xa0"
         "b",
         NULL}, /* an inner no-break space */
        {"", "empty"},
        {" admin", "begin"},
        {"admin ", "end"},
        {" ", "only whitespace"},
        {"   ", "only whitespace"},
        {"\xc2\xa0"
         "admin",
         "begin"},                    /* U+00A0 */
        {"admin\xe3\x80\x80", "end"}, /* U+3000 */
        {"admin\xef\xbb\xbf", "end"}, /* U+FEFF */
        {"\xe1\x9a\x80"
         "x",
         "begin"}, /* U+1680 */
        {"\ta", "control"},
        {"a\x1b[2J", "control"},
        {"a\x7f", "control"},
        {"a\xc2\x80", "control"}, /* U+0080 */
        {"a\xc2\x85"
         "b",
         "control"},              /* NEL */
        {"a\xc2\x9b", "control"}, /* CSI */
        {"a\xc2\x9f", "control"}, /* U+009F */
        {"a\xe2\x80\xa8"
         "b",
         "separator"}, /* U+2028 */
        {"a\xe2\x80\xa9"
         "b",
         "separator"},                  /* U+2029 */
        {"a\x80", "UTF-8"},             /* stray continuation */
        {"a\xc0\xa0", "UTF-8"},         /* overlong space */
        {"a\xe0\x80\xaf", "UTF-8"},     /* overlong '/' */
        {"a\xed\xa0\x80", "UTF-8"},     /* a surrogate */
        {"a\xf4\x90\x80\x80", "UTF-8"}, /* past U+10FFFF */
        {"a\xe2\x80", "UTF-8"},         /* truncated */
        {"a\xff", "UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = sd_ident_check(cases[i].s, strlen(cases[i].s), 256);
        if (!cases[i].why && why)
            fail_msg("case %zu refused: %s", i, why);
        if (cases[i].why && (!why || !strstr(why, cases[i].why)))
            fail_msg("case %zu: want a reason with '%s', got %s", i, cases[i].why,
                     why ? why : "accepted");
    }
    /* The bound is in bytes. */
    assert_null(sd_ident_check("abcd", 4, 4));
    assert_non_null(strstr(sd_ident_check("abcde", 5, 4), "too long"));
    /* A NUL inside the given length is a control character. */
    assert_non_null(strstr(sd_ident_check("a\0b", 3, 256), "control"));
}

static void create_applies_the_identifier_rule(void **state)
{
    (void)state;
    const char *bad[] = {"{\"userId\":\" admin\"}",
                         "{\"userId\":\"admin\\u00a0\"}",
                         "{\"userId\":\"a\\u0085b\"}",
                         "{\"userId\":\"u\",\"deviceId\":\"d \"}",
                         "{\"userId\":\"u\",\"acr\":\"aal2\\u2028\"}",
                         "{\"userId\":\"u\",\"amr\":[\"pwd\",\"  \"]}"};
    const char *field[] = {"'userId'", "'userId'", "'userId'", "'deviceId'", "'acr'", "'amr[1]'"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sd_session s;
        char err[256] = "";
        assert_int_equal(create(bad[i], &s, err, sizeof err), SD_EINVALID);
        if (!strstr(err, field[i]) || !strstr(err, "whitespace at either end"))
            fail_msg("%s: detail '%s' names neither %s nor the rule", bad[i], err, field[i]);
    }
    sd_session s;
    char err[256];
    assert_int_equal(
        create("{\"userId\":\"x except=- count=999\",\"deviceId\":\"Pixel 8\",\"acr\":\"a b\","
               "\"amr\":[\"pwd\"]}",
               &s, err, sizeof err),
        0);
    assert_string_equal(s.user_id, "x except=- count=999");
    assert_string_equal(s.acr, "a b");
    sd_session_clear(&s);
}

static sd_session fresh(void)
{
    sd_session s;
    char err[256];
    assert_int_equal(create("{\"userId\":\"u\",\"data\":{\"a\":1,\"b\":2}}", &s, err, sizeof err),
                     0);
    return s;
}

static int patch(sd_session *s, const char *json, int64_t now, char *err, size_t n)
{
    json_t *body = json_loads(json, 0, NULL);
    assert_non_null(body);
    sd_patch p;
    int rc = sd_patch_parse(body, &P, &p, err, n);
    if (rc == 0)
        rc = sd_patch_apply(&p, &P, s, now, err, n);
    json_decref(body);
    return rc;
}

static void update_merges_and_bumps_version(void **state)
{
    (void)state;
    sd_session s = fresh();
    char err[256];
    assert_int_equal(
        patch(&s, "{\"data\":{\"a\":null,\"c\":3},\"mfa\":true}", NOW + 1, err, sizeof err), 0);
    json_t *data = json_object_get(s.attrs, "data");
    assert_null(json_object_get(data, "a"));
    assert_int_equal(json_integer_value(json_object_get(data, "b")), 2);
    assert_int_equal(json_integer_value(json_object_get(data, "c")), 3);
    assert_true(json_is_true(json_object_get(s.attrs, "mfa")));
    assert_true(s.version == 2);
    sd_session_clear(&s);
}

/* v as compact JSON with sorted keys is `want`. */
static void assert_json_text(const json_t *v, const char *want)
{
    char *got = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

/* The merge changes copies of what it changes: the tree read from the row
 * (which the write may still hold) is left as it was, nested objects too,
 * and a merge that fails leaves the session as it was. */
static void update_leaves_the_read_tree_as_it_was(void **state)
{
    (void)state;
    sd_session s;
    char err[256];
    assert_int_equal(
        create("{\"userId\":\"u\",\"data\":{\"a\":{\"x\":1},\"b\":2}}", &s, err, sizeof err), 0);
    json_t *old = json_incref(s.attrs);
    assert_int_equal(
        patch(&s, "{\"data\":{\"a\":{\"y\":2},\"b\":null},\"mfa\":true}", NOW + 1, err, sizeof err),
        0);
    assert_json_text(old, "{\"data\":{\"a\":{\"x\":1},\"b\":2},\"mfa\":false}");
    assert_json_text(s.attrs, "{\"data\":{\"a\":{\"x\":1,\"y\":2}},\"mfa\":true}");
    json_decref(old);
    /* Past max_data_bytes (64): refused, nothing of it applied. */
    old = json_incref(s.attrs);
    assert_int_equal(patch(&s,
                           "{\"data\":{\"a\":{\"z\":\"0123456789012345678901234567890123456789"
                           "0123456789\"}},\"mfa\":false}",
                           NOW + 2, err, sizeof err),
                     SD_EINVALID);
    assert_ptr_equal(s.attrs, old);
    assert_json_text(s.attrs, "{\"data\":{\"a\":{\"x\":1,\"y\":2}},\"mfa\":true}");
    json_decref(old);
    assert_true(s.version == 2);
    sd_session_clear(&s);
}

static void update_checks_version_and_clamps(void **state)
{
    (void)state;
    sd_session s = fresh();
    char err[256];
    assert_int_equal(patch(&s, "{\"version\":7,\"mfa\":true}", NOW, err, sizeof err), SD_ECONFLICT);
    assert_true(s.version == 1);
    assert_int_equal(
        patch(&s, "{\"version\":1,\"expiry\":\"2099-01-01T00:00:00Z\"}", NOW, err, sizeof err), 0);
    assert_true(s.expiry == s.absolute_expiry);
    assert_int_equal(patch(&s, "{\"expiry\":\"2000-01-01T00:00:00Z\"}", NOW, err, sizeof err),
                     SD_EINVALID);
    assert_int_equal(patch(&s, "{\"ttlSeconds\":60}", NOW, err, sizeof err), 0);
    assert_true(s.expiry == NOW + 60000 && s.idle_ttl == 60000);
    /* After expiry the session cannot be updated back to life. */
    assert_int_equal(patch(&s, "{\"ttlSeconds\":60}", NOW + 60000, err, sizeof err), SD_ENOTFOUND);
    sd_session_clear(&s);
}

static void update_rejects_bad_bodies(void **state)
{
    (void)state;
    const char *bad[] = {"{}",
                         "{\"version\":1}",
                         "{\"userId\":\"x\"}",
                         "{\"ipAddress\":\"1.1.1.1\"}",
                         "{\"expiry\":\"2099-01-01T00:00:00Z\",\"ttlSeconds\":5}",
                         "{\"lastSeen\":\"yesterday\"}",
                         "{\"bogus\":1}",
                         "{\"absoluteExpiry\":\"2099-01-01T00:00:00Z\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sd_session s = fresh();
        char err[256] = "";
        if (patch(&s, bad[i], NOW, err, sizeof err) != SD_EINVALID)
            fail_msg("accepted %s", bad[i]);
        sd_session_clear(&s);
    }
}

static void data_limit_applies_after_merge(void **state)
{
    (void)state;
    sd_session s = fresh();
    char err[256];
    assert_int_equal(
        patch(&s, "{\"data\":{\"x\":\"01234567890123456789012345678901234567890123456789\"}}", NOW,
              err, sizeof err),
        SD_EINVALID);
    assert_true(s.version == 1);
    assert_non_null(json_object_get(json_object_get(s.attrs, "data"), "a"));
    sd_session_clear(&s);
}

static void touch_is_coalesced_and_capped(void **state)
{
    (void)state;
    sd_session s = fresh();
    int64_t e;
    /* A second after creation: the move is below 5% of an hour, no write. */
    assert_false(sd_session_touch(&s, &P, NOW + 1000, &e));
    assert_true(e == NOW + 1000 + P.idle_timeout_ms);
    /* Ten minutes later: worth a write. */
    assert_true(sd_session_touch(&s, &P, NOW + 600000, &e));
    assert_true(e == NOW + 600000 + P.idle_timeout_ms);
    /* Near the absolute limit, never past it. */
    s.expiry = s.absolute_expiry - 1000;
    sd_session_touch(&s, &P, s.absolute_expiry - 500, &e);
    assert_true(e == s.absolute_expiry);
    /* Never shortens an expiry a PUT set further out. */
    s.expiry = NOW + 2 * P.idle_timeout_ms;
    assert_false(sd_session_touch(&s, &P, NOW + 1, &e));
    assert_true(e == s.expiry);
    sd_session_clear(&s);
}

static void active_respects_both_limits(void **state)
{
    (void)state;
    sd_session s = fresh();
    assert_true(sd_session_active(&s, s.expiry - 1));
    assert_false(sd_session_active(&s, s.expiry));
    s.expiry = s.absolute_expiry + 1000; /* even a broken invariant stays capped */
    assert_false(sd_session_active(&s, s.absolute_expiry));
    sd_session_clear(&s);
}

static void json_view_has_no_secret(void **state)
{
    (void)state;
    sd_session s = fresh();
    json_t *o = sd_session_to_json(&s);
    assert_null(json_object_get(o, "token"));
    assert_null(json_object_get(o, "tokenHash"));
    assert_string_equal(json_string_value(json_object_get(o, "sessionId")), s.id);
    assert_string_equal(json_string_value(json_object_get(o, "createdAt")),
                        "2026-11-28T02:33:35.123Z");
    json_decref(o);
    sd_session_clear(&s);
}

/* The public view's members, in order, for a bare session and for one
 * with every optional member; values from the attrs come back equal
 * (through sd_session_jw's escaping and a parse: a line separator in a
 * string, a control character, nesting in data). */
static void json_view_members_in_order(void **state)
{
    (void)state;
    const char *const creates[] = {
        "{\"userId\":\"u\"}",
        "{\"userId\":\"\u00e9l\u00e8ve\",\"deviceId\":\"d1\",\"deviceInfo\":\"Caf\u00e9 \\\"x\\\" "
        "\u2028\","
        "\"userAgent\":\"UA/"
        "1\",\"ipAddress\":\"192.0.2.7\",\"geoLocation\":{\"lat\":52.1,\"lon\":4.3,"
        "\"country\":\"NL\"},\"data\":{\"k\":[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]],"
        "\"s\":\"\\u0001\"},\"mfa\":true}",
    };
    const char *const members[][21] = {
        {"sessionId", "userId", "mfa", "data", "authTime", "createdAt", "lastSeen", "expiry",
         "absoluteExpiry", "version", NULL},
        {"sessionId",
         "userId",
         "deviceId",
         "deviceInfo",
         "userAgent",
         "ipAddress",
         "geoLocation",
         "signals",
         "mfa",
         "stepUpRequired",
         "data",
         "bind",
         "acr",
         "amr",
         "authTime",
         "createdAt",
         "lastSeen",
         "expiry",
         "absoluteExpiry",
         "version",
         NULL},
    };
    for (size_t i = 0; i < sizeof creates / sizeof creates[0]; i++) {
        sd_session s;
        char err[256] = "";
        assert_int_equal(create(creates[i], &s, err, sizeof err), 0);
        if (i == 1) { /* what other writes add */
            json_object_set_new(s.attrs, "stepUp", json_true());
            json_object_set_new(s.attrs, "amr", json_pack("[s,s]", "pwd", "otp"));
            json_object_set_new(s.attrs, "signals", json_pack("[s]", "new_country"));
            s.binding.flags = SD_BIND_IP | SD_BIND_UA;
            snprintf(s.acr, sizeof s.acr, "%s", "urn:x:2fa");
            s.auth_time = NOW - 5000;
        }
        json_t *o = sd_session_to_json(&s);
        assert_non_null(o);
        size_t k = 0;
        const char *key;
        json_t *v;
        json_object_foreach(o, key, v)
        {
            assert_non_null(members[i][k]);
            assert_string_equal(key, members[i][k]);
            k++;
        }
        assert_null(members[i][k]);
        static const char *const from_attrs[] = {"deviceId",  "deviceInfo",  "userAgent",
                                                 "ipAddress", "geoLocation", "signals",
                                                 "data",      "amr"};
        for (size_t j = 0; j < sizeof from_attrs / sizeof from_attrs[0]; j++) {
            json_t *want = json_object_get(s.attrs, from_attrs[j]);
            if (want || i == 1)
                assert_true(json_equal(json_object_get(o, from_attrs[j]), want));
        }
        assert_true(json_is_true(json_object_get(o, "mfa")) == (i == 1));
        json_decref(o);
        sd_session_clear(&s);
    }
}

static void rotation_decisions(void **state)
{
    (void)state;
    assert_int_equal(sd_rotation_decide(true, false, 0, 1000, 500), SD_ROTATE);
    assert_int_equal(sd_rotation_decide(false, false, 0, 1000, 500), SD_ROTATE_MISMATCH);
    assert_int_equal(sd_rotation_decide(false, true, 600, 1000, 500), SD_ROTATE_RACE);
    assert_int_equal(sd_rotation_decide(false, true, 500, 1000, 500), SD_ROTATE_RACE);
    assert_int_equal(sd_rotation_decide(false, true, 499, 1000, 500), SD_ROTATE_REUSE);
    assert_int_equal(sd_rotation_decide(false, true, 999, 1000, 0), SD_ROTATE_REUSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(create_fills_server_fields),
        cmocka_unit_test(create_clamps_ttl),
        cmocka_unit_test(create_takes_a_lifetime_up_to_the_max),
        cmocka_unit_test(create_rejects_bad_input),
        cmocka_unit_test(identifier_rule),
        cmocka_unit_test(create_applies_the_identifier_rule),
        cmocka_unit_test(update_merges_and_bumps_version),
        cmocka_unit_test(update_leaves_the_read_tree_as_it_was),
        cmocka_unit_test(update_checks_version_and_clamps),
        cmocka_unit_test(update_rejects_bad_bodies),
        cmocka_unit_test(data_limit_applies_after_merge),
        cmocka_unit_test(touch_is_coalesced_and_capped),
        cmocka_unit_test(active_respects_both_limits),
        cmocka_unit_test(json_view_has_no_secret),
        cmocka_unit_test(json_view_members_in_order),
        cmocka_unit_test(rotation_decisions),
    };
    return cmocka_run_group_tests_name("session", tests, NULL, NULL);
}
