/* Unit tests of api/keys.c: hashed keys, cert:<CN> identities and client
 * credentials (id and key), scopes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "api/keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[64];

static void write_file(const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(path, sizeof path, "/tmp/sessiond-test-keys-%d", (int)getpid());
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return 0;
}

/* sha256("secret") */
#define SECRET_HASH "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"

static void keys_and_certificates(void **state)
{
    (void)state;
    write_file("# comment\napp " SECRET_HASH " sessions\ngw cert:gateway.internal validate\n");
    sd_keys *k = NULL;
    char err[256];
    assert_int_equal(sd_keys_load(path, &k, err, sizeof err), 0);
    assert_int_equal(sd_keys_count(k), 2);
    const char *id;
    assert_int_equal(sd_keys_check(k, "secret", "sessions", &id), SD_KEY_OK);
    assert_string_equal(id, "app");
    assert_int_equal(sd_keys_check(k, "secret", "validate", &id), SD_KEY_FORBIDDEN);
    /* A cert line is not a key, whatever is presented. */
    assert_int_equal(sd_keys_check(k, "gateway.internal", "validate", &id), SD_KEY_UNKNOWN);
    assert_int_equal(sd_keys_check_cert(k, "gateway.internal", "validate", &id), SD_KEY_OK);
    assert_string_equal(id, "gw");
    assert_int_equal(sd_keys_check_cert(k, "gateway.internal", "admin", &id), SD_KEY_FORBIDDEN);
    assert_int_equal(sd_keys_check_cert(k, "gateway", "validate", &id), SD_KEY_UNKNOWN);
    assert_int_equal(sd_keys_check_cert(k, NULL, "validate", &id), SD_KEY_MISSING);
    /* A key's hash is not a certificate name. */
    assert_int_equal(sd_keys_check_cert(k, SECRET_HASH, "sessions", &id), SD_KEY_UNKNOWN);
    sd_keys_free(k);
}

/* RFC 7662 client credentials: the key of the line whose id is given. */
static void client_credentials(void **state)
{
    (void)state;
    /* The same key under two ids (a rotation overlap), a cert line named
     * like a key id, and an id with two keys. */
    write_file("old " SECRET_HASH " validate\nnew " SECRET_HASH " validate,sessions\n"
               "certid cert:secret validate\n"
               "twice 0000000000000000000000000000000000000000000000000000000000000000 admin\n"
               "twice " SECRET_HASH " admin\n");
    sd_keys *k = NULL;
    char err[256];
    assert_int_equal(sd_keys_load(path, &k, err, sizeof err), 0);
    const char *id;
    assert_int_equal(sd_keys_check_client(k, "old", "secret", "validate", &id), SD_KEY_OK);
    assert_string_equal(id, "old");
    assert_int_equal(sd_keys_check_client(k, "new", "secret", "sessions", &id), SD_KEY_OK);
    assert_string_equal(id, "new");
    /* The scope is the named line's, not another line's with the same key. */
    assert_int_equal(sd_keys_check_client(k, "old", "secret", "sessions", &id), SD_KEY_FORBIDDEN);
    assert_string_equal(id, "old");
    assert_int_equal(sd_keys_check_client(k, "twice", "secret", "admin", &id), SD_KEY_OK);
    /* A right key under an unknown or wrong id, a wrong key, a cert line. */
    assert_int_equal(sd_keys_check_client(k, "nobody", "secret", "validate", &id), SD_KEY_UNKNOWN);
    assert_null(id);
    assert_int_equal(sd_keys_check_client(k, "old", "secreT", "validate", &id), SD_KEY_UNKNOWN);
    assert_int_equal(sd_keys_check_client(k, "certid", "secret", "validate", &id), SD_KEY_UNKNOWN);
    /* Presented but empty: unknown, not missing. */
    assert_int_equal(sd_keys_check_client(k, "old", "", "validate", &id), SD_KEY_UNKNOWN);
    assert_int_equal(sd_keys_check_client(k, "", "secret", "validate", &id), SD_KEY_UNKNOWN);
    assert_int_equal(sd_keys_check_client(k, NULL, NULL, "validate", &id), SD_KEY_UNKNOWN);
    sd_keys_free(k);
}

static void bad_lines(void **state)
{
    (void)state;
    const char *cases[] = {"gw cert: validate\n", "gw cert:x\n", "gw cert:x nosuchscope\n",
                           "app 2bb8 sessions\n"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(cases[i]);
        sd_keys *k = NULL;
        char err[256] = "";
        assert_int_not_equal(sd_keys_load(path, &k, err, sizeof err), 0);
        assert_null(k);
        assert_true(strstr(err, path) != NULL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keys_and_certificates),
        cmocka_unit_test(client_credentials),
        cmocka_unit_test(bad_lines),
    };
    return cmocka_run_group_tests_name("keys", tests, setup, teardown);
}
