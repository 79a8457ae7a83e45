/* Unit tests of webhook/message.c (the Standard Webhooks signature against
 * the convention's published example, secrets, the body) and of the
 * --webhook settings' checks in webhook/parse.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "util/err.h"
#include "webhook/message.h"
#include "webhook/webhook.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char good[64], bad[64];

static int setup(void **state)
{
    (void)state;
    snprintf(good, sizeof good, "/tmp/sessiond-test-whsec-%d", (int)getpid());
    snprintf(bad, sizeof bad, "/tmp/sessiond-test-whbad-%d", (int)getpid());
    FILE *f = fopen(good, "w");
    fputs("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", f);
    fclose(f);
    chmod(good, 0600);
    f = fopen(bad, "w");
    fputs("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", f);
    fclose(f);
    chmod(bad, 0600);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(good);
    unlink(bad);
    return 0;
}

/* The example of the Standard Webhooks libraries' own tests. */
static void signs_as_the_convention_publishes(void **state)
{
    (void)state;
    unsigned char key[SD_WEBHOOK_KEY_MAX];
    size_t n = 0;
    assert_int_equal(sd_webhook_secret_decode("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", key, &n),
                     0);
    assert_int_equal(n, 24);
    const char *body = "{\"test\": 2432232314}";
    char sig[SD_WEBHOOK_SIG_MAX];
    assert_int_equal(sd_webhook_sign(key, n, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
                                     strlen(body), sig),
                     0);
    assert_string_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

static void refuses_what_is_not_a_secret(void **state)
{
    (void)state;
    unsigned char key[SD_WEBHOOK_KEY_MAX];
    size_t n;
    const char *no[] = {
        "",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",         /* no prefix */
        "whsec_",                                   /* nothing */
        "whsec_c2hvcnQ=",                           /* 5 bytes */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",    /* not a multiple of 4 */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa-w",   /* base64url, not base64 */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa=w",   /* padding inside */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", /* a newline */
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_int_equal(sd_webhook_secret_decode(no[i], key, &n), SD_EINVALID);
}

static void the_body_carries_the_event(void **state)
{
    (void)state;
    sd_event e = {.seq = 42,
                  .time = 1796431282401LL,
                  .event = "revoked",
                  .session_id = "P82dV2W8ccInNEJtpvLWzm",
                  .user_id = "alice\n\"x\"",
                  .reason = "logout"};
    size_t len;
    char *body = sd_webhook_body(&e, &len);
    assert_non_null(body);
    assert_int_equal(len, strlen(body));
    json_t *o = json_loads(body, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "type")), "revoked");
    json_t *d = json_object_get(o, "data");
    assert_int_equal(json_integer_value(json_object_get(d, "seq")), 42);
    assert_string_equal(json_string_value(json_object_get(d, "userId")), "alice\n\"x\"");
    assert_string_equal(json_string_value(json_object_get(d, "reason")), "logout");
    assert_null(json_object_get(d, "actor")); /* empty: left out */
    json_decref(o);
    free(body);
    char id[SD_WEBHOOK_ID_MAX];
    sd_webhook_event_id(&e, id);
    assert_string_equal(id, "evt_42");
}

static int parse(const char *lines, char *err, size_t n)
{
    sd_webhook_options o = {1000, 1000, 60000, 3};
    sd_webhooks *w = NULL;
    err[0] = '\0';
    int rc = sd_webhooks_parse(lines, &o, &w, err, n);
    sd_webhooks_stop(w);
    return rc;
}

static void settings_are_checked_at_start(void **state)
{
    (void)state;
    char line[512], err[512];
    snprintf(line, sizeof line, "http://127.0.0.1:9/hook %s", good);
    assert_int_equal(parse(line, err, sizeof err), 0);
    snprintf(line, sizeof line, "https://hooks.example/in?key=hidden %s created,revoked", good);
    assert_int_equal(parse(line, err, sizeof err), 0);
    assert_int_equal(parse("", err, sizeof err), 0);

    const char *fails[][2] = {
        {"http://127.0.0.1:9/hook", "SECRET-FILE"},   /* no secret file */
        {"ftp://127.0.0.1/hook %s", "http or https"}, /* scheme */
        {"not a url %s", "expected"},                 /* three words, no URL */
        {"://nothing %s", "not a URL"},               /* no URL */
        {"http://127.0.0.1:9/hook /nonexistent/secret", "cannot open"},
        {"http://127.0.0.1:9/hook %s Created", "event list"}, /* not a name */
        {"http://127.0.0.1:9/hook %s created,,revoked", "event list"},
        {"http://127.0.0.1:9/hook %s created extra", "expected"},
    };
    for (size_t i = 0; i < sizeof fails / sizeof fails[0]; i++) {
        snprintf(line, sizeof line, fails[i][0], good);
        assert_int_equal(parse(line, err, sizeof err), SD_ECONFIG);
        if (!strstr(err, fails[i][1]))
            fail_msg("'%s': '%s' does not say '%s'", line, err, fails[i][1]);
        assert_null(strstr(err, "MfKQ9r8G")); /* never the secret */
    }
    snprintf(line, sizeof line, "http://127.0.0.1:9/hook %s", bad);
    assert_int_equal(parse(line, err, sizeof err), SD_ECONFIG);
    assert_non_null(strstr(err, "whsec_"));
    assert_null(strstr(err, "MfKQ9r8G"));
    snprintf(line, sizeof line,
             "http://u:pw@127.0.0.1:9/a?token=t1 %s\nhttp://u:pw@127.0.0.1:9/a?token=t1 %s", good,
             good);
    assert_int_equal(parse(line, err, sizeof err), SD_ECONFIG);
    assert_non_null(strstr(err, "same URL"));
    assert_null(strstr(err, "pw"));
    assert_null(strstr(err, "t1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(signs_as_the_convention_publishes),
        cmocka_unit_test(refuses_what_is_not_a_secret),
        cmocka_unit_test(the_body_carries_the_event),
        cmocka_unit_test(settings_are_checked_at_start),
    };
    return cmocka_run_group_tests_name("webhook", tests, setup, teardown);
}
