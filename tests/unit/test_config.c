/* Unit tests of config.c: precedence flag > env > file > default, checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[64];

static int setup(void **state)
{
    (void)state;
    snprintf(path, sizeof path, "/tmp/sessiond-test-config-%d", (int)getpid());
    FILE *f = fopen(path, "w");
    fputs("# comment\nlisten = 127.0.0.1:1111\nidle-timeout = 5m  # trailing\n"
          "data-dir=/from/file\n",
          f);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return 0;
}

static int load(sd_config *c, char **argv, char **envp)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    FILE *devnull = fopen("/dev/null", "w");
    int rc = sd_config_load(c, argc, argv, envp, devnull);
    fclose(devnull);
    return rc;
}

static void defaults(void **state)
{
    (void)state;
    sd_config c;
    char *argv[] = {"sessiond", NULL};
    assert_int_equal(load(&c, argv, NULL), SD_CONFIG_RUN);
    assert_string_equal(c.listen, "127.0.0.1:8080");
    assert_string_equal(c.data_dir, "./var");
    assert_true(c.idle_timeout_ms == 3600000 && c.absolute_timeout_ms == 86400000);
    assert_true(c.history_retention_ms == 30LL * 86400000);
}

static void precedence(void **state)
{
    (void)state;
    sd_config c;
    char cfg[128];
    snprintf(cfg, sizeof cfg, "--config=%s", path);
    char *argv[] = {"sessiond", cfg, "--listen", "127.0.0.1:3333", NULL};
    char *envp[] = {"SESSIOND_LISTEN=127.0.0.1:2222", "SESSIOND_DATA_DIR=/from/env", NULL};
    assert_int_equal(load(&c, argv, envp), SD_CONFIG_RUN);
    assert_string_equal(c.listen, "127.0.0.1:3333"); /* flag */
    assert_string_equal(c.data_dir, "/from/env");    /* env over file */
    assert_true(c.idle_timeout_ms == 300000);        /* file over default */
    char *envp2[] = {"SESSIOND_CONFIG=/nonexistent/file", NULL};
    char *argv2[] = {"sessiond", NULL};
    assert_int_equal(load(&c, argv2, envp2), SD_CONFIG_EXIT_ERR);
}

static void rejects_bad_values(void **state)
{
    (void)state;
    sd_config c;
    char *cases[][4] = {
        {"sessiond", "--idle-timeout", "soon", NULL}, {"sessiond", "--threads", "0", NULL},
        {"sessiond", "--touch-fraction", "2", NULL},  {"sessiond", "--nope", "1", NULL},
        {"sessiond", "--listen", NULL, NULL},         {"sessiond", "stray", NULL, NULL},
        {"sessiond", "--log-level", "loud", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(load(&c, cases[i], NULL), SD_CONFIG_EXIT_ERR);
    char *argv[] = {"sessiond", "--idle-timeout", "2d", "--max-idle-timeout", "1d", NULL};
    assert_int_equal(load(&c, argv, NULL), SD_CONFIG_EXIT_ERR);
    /* The lifetime a client may ask for is never below the default one;
     * unset (0), it is the default one. */
    char *longer[] = {"sessiond", "--absolute-timeout", "2d", "--max-absolute-timeout", "1d", NULL};
    assert_int_equal(load(&c, longer, NULL), SD_CONFIG_EXIT_ERR);
    char *unset[] = {"sessiond", "--absolute-timeout", "31d", NULL};
    assert_int_equal(load(&c, unset, NULL), SD_CONFIG_RUN);
    assert_true(c.max_absolute_timeout_ms == 0);
    char *set[] = {"sessiond", "--absolute-timeout", "1d", "--max-absolute-timeout", "30d", NULL};
    assert_int_equal(load(&c, set, NULL), SD_CONFIG_RUN);
    assert_true(c.max_absolute_timeout_ms == 30LL * 86400 * 1000);
}

static void tls_options_go_together(void **state)
{
    (void)state;
    sd_config c;
    char *ok[] = {"sessiond", "--tls-cert", "c.pem", "--tls-key", "k.pem", NULL};
    assert_int_equal(load(&c, ok, NULL), SD_CONFIG_RUN);
    assert_string_equal(c.tls_client_auth, "optional");
    char *envp[] = {"SESSIOND_TLS_CERT=c.pem", "SESSIOND_TLS_KEY=k.pem",
                    "SESSIOND_TLS_CLIENT_CA=ca.pem", "SESSIOND_TLS_CLIENT_AUTH=require", NULL};
    char *argv[] = {"sessiond", NULL};
    assert_int_equal(load(&c, argv, envp), SD_CONFIG_RUN);
    assert_string_equal(c.tls_client_ca, "ca.pem");
    assert_string_equal(c.tls_client_auth, "require");
    char *bad[][4] = {
        {"sessiond", "--tls-cert", "c.pem", NULL},
        {"sessiond", "--tls-key", "k.pem", NULL},
        {"sessiond", "--tls-client-ca", "ca.pem", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(load(&c, bad[i], NULL), SD_CONFIG_EXIT_ERR);
    char *auth[] = {"sessiond", "--tls-cert",        "c.pem",     "--tls-key",
                    "k.pem",    "--tls-client-auth", "sometimes", NULL};
    assert_int_equal(load(&c, auth, NULL), SD_CONFIG_EXIT_ERR);
}

/* A repeatable option: every flag adds a line; a source of higher
 * precedence replaces the lines of a lower one. */
static void lists_repeat_and_replace_lower_sources(void **state)
{
    (void)state;
    sd_config c;
    char *two[] = {"sessiond", "--webhook", "http://a/ s1", "--webhook=http://b/ s2", NULL};
    assert_int_equal(load(&c, two, NULL), SD_CONFIG_RUN);
    assert_string_equal(c.webhook, "http://a/ s1\nhttp://b/ s2");
    char *envp[] = {"SESSIOND_WEBHOOK=http://e/ s3\nhttp://f/ s4", NULL};
    char *none[] = {"sessiond", NULL};
    assert_int_equal(load(&c, none, envp), SD_CONFIG_RUN);
    assert_string_equal(c.webhook, "http://e/ s3\nhttp://f/ s4");
    char *one[] = {"sessiond", "--webhook", "http://a/ s1", NULL};
    assert_int_equal(load(&c, one, envp), SD_CONFIG_RUN);
    assert_string_equal(c.webhook, "http://a/ s1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(precedence),
        cmocka_unit_test(rejects_bad_values),
        cmocka_unit_test(tls_options_go_together),
        cmocka_unit_test(lists_repeat_and_replace_lower_sources),
    };
    return cmocka_run_group_tests_name("config", tests, setup, teardown);
}
