/* commands.c - `sessiond audit verify` and `sessiond reencrypt` (commands.h). */
#include "commands.h"
#include "audit/audit.h"
#include "config.h"
#include "store/backup.h"
#include "store/crypt.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/log.h"

#include <semaphore.h>
#include <stdio.h>
#include <string.h>

extern char **environ;

int sd_cmd_audit(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[1], "verify") != 0) {
        fprintf(stderr, "usage: sessiond audit verify PATH...  (files in order, or the audit "
                        "directory)\n");
        return 2;
    }
    return sd_audit_verify(argc - 2, argv + 2, stdout);
}

int sd_cmd_backup(int argc, char **argv)
{
    /* sessiond backup DEST [options]: the options are the server's (for
     * --data-dir and --config). */
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: sessiond backup DEST [--data-dir DIR]  (DEST: a new directory)\n");
        return 2;
    }
    const char *dest = argv[1];
    argv[1] = argv[0];
    sd_config cfg;
    int rc = sd_config_load(&cfg, argc - 1, argv + 1, environ, stderr);
    if (rc != SD_CONFIG_RUN)
        return rc == SD_CONFIG_EXIT_OK ? 0 : 2;
    char err[1200];
    int64_t t0 = sd_mono_ns();
    if (sd_sqlite_backup(cfg.data_dir, dest, err, sizeof err)) {
        fprintf(stderr, "sessiond backup: %s\n", err);
        return 1;
    }
    printf("backed up %s to %s/sessiond.db in %.0f ms\n", cfg.data_dir, dest,
           (double)(sd_mono_ns() - t0) / 1e6);
    return 0;
}

typedef struct sync_write {
    sd_write w;
    sem_t done;
} sync_write;

static void posted(sd_write *w)
{
    sem_post(&((sync_write *)w->udata)->done);
}

/* Runs one write and waits for it. */
static int run_sync(sd_store_handle *st, sync_write *s)
{
    s->w.done = posted;
    s->w.udata = s;
    s->w.now = sd_now_ms();
    sd_store_write(st, &s->w);
    while (sem_wait(&s->done) != 0)
        ;
    return s->w.rc;
}

int sd_cmd_reencrypt(int argc, char **argv)
{
    sd_config cfg;
    int rc = sd_config_load(&cfg, argc, argv, environ, stderr);
    if (rc != SD_CONFIG_RUN)
        return rc == SD_CONFIG_EXIT_OK ? 0 : 2;
    if (!cfg.encryption_keys[0]) {
        fprintf(stderr, "sessiond reencrypt: give --encryption-keys FILE (the last key is the "
                        "one to seal under)\n");
        return 2;
    }
    char err[512];
    sd_keyring *keys = NULL;
    if (sd_keyring_load(cfg.encryption_keys, &keys, err, sizeof err)) {
        fprintf(stderr, "sessiond reencrypt: %s\n", err);
        return 2;
    }
    sd_store_options opt = {.keys = keys, .commit_batch = 1};
    sd_store_handle *st = NULL;
    if (sd_store_open(&sd_store_sqlite, cfg.data_dir, &opt, &st, err, sizeof err)) {
        fprintf(stderr, "sessiond reencrypt: %s\n", err);
        sd_keyring_free(keys);
        return 1;
    }
    static const char *const tables[] = {"active sessions", "history"};
    int status = 0;
    for (int t = 0; t < 2 && status == 0; t++) {
        long long rewritten = 0, scanned = 0;
        sync_write s = {0};
        sem_init(&s.done, 0, 0);
        for (;;) { /* a batch per transaction, so a big store never holds one long lock */
            s.w.kind = SD_W_REENCRYPT;
            s.w.table = t;
            s.w.limit = 1000;
            if (run_sync(st, &s)) {
                fprintf(stderr, "sessiond reencrypt: failed in the %s (see the log above)\n",
                        tables[t]);
                status = 1;
                break;
            }
            rewritten += s.w.affected;
            scanned += s.w.limit;
            if (s.w.limit < 1000)
                break;
        }
        sem_destroy(&s.done);
        printf("%s: %lld rows, %lld sealed under key '%s'\n", tables[t], scanned, rewritten,
               sd_keyring_current(keys));
    }
    sd_store_close(st);
    sd_keyring_free(keys);
    return status;
}
