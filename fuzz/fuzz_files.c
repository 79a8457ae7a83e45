/* fuzz_files.c - what sessiond reads from files an operator (or an
 * attacker with write access) controls, and sealed values from the store:
 * the first byte picks the config file, an audit log for `audit verify`,
 * the API key file, the encryption key file, or a sealed attrs value. */
#include "api/keys.h"
#include "audit/audit.h"
#include "config.h"
#include "store/crypt.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char path[64];
static sd_keyring *ring;
static FILE *devnull;

static void init(void)
{
    umask(077);
    snprintf(path, sizeof path, "/tmp/sessiond-fuzz-%d", (int)getpid());
    devnull = fopen("/dev/null", "w");
    char keys[80];
    snprintf(keys, sizeof keys, "%s.keys", path);
    FILE *f = fopen(keys, "w");
    fputs("k1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
          "k2 1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100\n",
          f);
    fclose(f);
    char err[256];
    sd_keyring_load(keys, &ring, err, sizeof err);
    unlink(keys);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!devnull)
        init();
    if (size < 1)
        return 0;
    const char *body = (const char *)data + 1;
    size_t n = size - 1;
    if (data[0] % 5 == 4) { /* a sealed value, as read from the attrs column */
        size_t len;
        char *plain = sd_open(ring, "AAAAAAAAAAAAAAAAAAAAAA", body, n, &len);
        free(plain);
        return 0;
    }
    FILE *f = fopen(path, "w");
    if (!f)
        return 0;
    fwrite(body, 1, n, f);
    fclose(f);
    char err[512];
    switch (data[0] % 5) {
    case 0: {
        sd_config cfg;
        char *argv[] = {"sessiond", "--config", path, NULL};
        char *envp[] = {NULL};
        sd_config_load(&cfg, 3, argv, envp, devnull);
        break;
    }
    case 1: {
        char *paths[] = {path};
        sd_audit_verify(1, paths, devnull);
        break;
    }
    case 2: {
        sd_keys *k = NULL;
        if (sd_keys_load(path, &k, err, sizeof err) == 0)
            sd_keys_free(k);
        break;
    }
    case 3: {
        sd_keyring *k = NULL;
        if (sd_keyring_load(path, &k, err, sizeof err) == 0)
            sd_keyring_free(k);
        break;
    }
    }
    unlink(path);
    return 0;
}
