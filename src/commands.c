/* commands.c - the subcommands of the binary and their one table (commands.h). */
#include "commands.h"
#include "audit/audit.h"
#include "config.h"
#include "jwt/jwk.h"
#include "startup.h"
#include "store/crypt.h"
#include "store/sentinel.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/log.h"

#include <openssl/crypto.h>
#include <semaphore.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

extern char **environ;

static int cmd_audit(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[1], "verify") != 0) {
        fprintf(stderr, "usage: sessiond audit verify PATH...  (files in order, or the audit "
                        "directory)\n");
        return 2;
    }
    return sd_audit_verify(argc - 2, argv + 2, stdout);
}

static int cmd_backup(int argc, char **argv)
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
    const char *at = NULL;
    const sd_store_ops *ops = sd_store_from_setting(cfg.store, cfg.data_dir, &at);
    if (!ops || !ops->backup) {
        fprintf(stderr, "sessiond backup: copies the embedded store only; back up PostgreSQL with "
                        "its own tools (pg_dump, or a base backup with WAL archiving)\n");
        return 2;
    }
    char err[1200];
    int64_t t0 = sd_mono_ns();
    if (ops->backup(at, dest, err, sizeof err)) {
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

static int cmd_reencrypt(int argc, char **argv)
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
    const char *at = NULL;
    const sd_store_ops *ops = sd_store_from_setting(cfg.store, cfg.data_dir, &at);
    if (!ops) {
        fprintf(stderr, "sessiond reencrypt: --store: expected 'sqlite' or a PostgreSQL "
                        "connection string\n");
        sd_keyring_free(keys);
        return 2;
    }
    if (sd_store_open(ops, at, &opt, &st, err, sizeof err)) {
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

static int cmd_jwk(int argc, char **argv)
{
    const char *alg = "EdDSA", *kid = NULL;
    bool next = false;
    int i = 2;
    if (argc < 2 || strcmp(argv[1], "generate") != 0)
        goto usage;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--next") == 0)
            next = true;
        else if (strcmp(argv[i], "--alg") == 0 && i + 1 < argc)
            alg = argv[++i];
        else if (strcmp(argv[i], "--kid") == 0 && i + 1 < argc)
            kid = argv[++i];
        else
            goto usage;
    }
    char err[256];
    char *line = sd_jwk_generate_line(alg, kid, next, err, sizeof err);
    if (!line) {
        fprintf(stderr, "sessiond jwk generate: %s\n", err);
        return 2;
    }
    fputs(line, stdout);
    OPENSSL_cleanse(line, strlen(line));
    free(line);
    return fflush(stdout) == 0 ? 0 : 1;
usage:
    fprintf(stderr, "usage: sessiond jwk generate [--alg EdDSA|ES256] [--kid ID] [--next]\n");
    return 2;
}

/* --connect: reaches the store and the cache as a start would, changing
 * nothing (their probes). Each says one line; 0 when all could be used. */
/* A probe's line: on stdout when rc is 0, else on stderr as a failure. */
static int say(int rc, const char *line)
{
    fprintf(rc ? stderr : stdout, "%s%s\n", rc ? "sessiond check: " : "", line);
    return rc;
}

static int check_connect(const sd_config *cfg, const sd_store_ops *ops, const char *at)
{
    char line[600];
    int rc = say(ops->probe(at, line, sizeof line), line);
    if (cfg->cache[0]) {
        int crc = sd_redis_probe(cfg->cache, cfg->cache_password, (int)cfg->cache_timeout_ms, line,
                                 sizeof line);
        if (say(crc, line) && !rc)
            rc = crc;
    }
    return rc;
}

/* sessiond check [--connect] [options]: the configuration and every file it
 * names, loaded as a start loads them (startup.c), without serving. */
static int cmd_check(int argc, char **argv)
{
    bool connect = false;
    int n = 1;
    for (int i = 1; i < argc; i++) /* ours, not the server's: taken out first */
        if (strcmp(argv[i], "--connect") == 0)
            connect = true;
        else
            argv[n++] = argv[i];
    argc = n;
    sd_config cfg;
    int rc = sd_config_load(&cfg, argc, argv, environ, stderr);
    if (rc != SD_CONFIG_RUN)
        return rc == SD_CONFIG_EXIT_OK ? 0 : 2;
    sd_log_set_level((enum sd_log_level)sd_log_level_parse(cfg.log_level));
    const char *at = NULL;
    const sd_store_ops *ops = sd_startup_store(&cfg, &at);
    sd_loaded l;
    if (!ops || sd_startup_load(&cfg, &l)) {
        fprintf(stderr, "sessiond check: the configuration has errors (above); a start with it "
                        "would fail\n");
        return 2;
    }
    /* Never the connection string: it may hold a password. */
    printf("configuration ok: listen %s, store %s%s%s%s, API keys %s, TLS %s, JWT access tokens "
           "%s, encryption at rest %s, webhooks %s\n",
           cfg.listen, ops->name, ops->caps & SD_STORE_LOCAL ? " in " : "",
           ops->caps & SD_STORE_LOCAL ? cfg.data_dir : "",
           cfg.cache[0] ? " with the Redis cache" : "", l.keys ? "on" : "off (protected mode)",
           l.tls ? "on" : "off", l.jwt_keys ? "on" : "off", l.ring ? "on" : "off",
           l.webhooks ? "on" : "off");
    sd_startup_free(&l);
    bool unreachable = connect && check_connect(&cfg, ops, at);
    explicit_bzero(cfg.cache_password, sizeof cfg.cache_password);
    if (unreachable) {
        fprintf(stderr,
                "sessiond check: a start with this configuration would not serve (above)\n");
        return 2;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

static int cmd_help(int argc, char **argv);

static const sd_command commands[] = {
    {"audit", "verify PATH...",
     "check the audit log's hash chain (files in order, or the directory)",
     "Reports the first altered, removed, inserted or reordered record; exit 0 when the\n"
     "chain is whole, 1 when it is not.",
     cmd_audit},
    {"backup", "DEST [--data-dir DIR | --config FILE]",
     "copy the live embedded store, a consistent snapshot, into the new directory DEST",
     "Runs beside a serving sessiond. The server's options say where the store is;\n"
     "PostgreSQL is backed up with its own tools.",
     cmd_backup},
    {"reencrypt", "--encryption-keys FILE [--data-dir DIR | --store URL]",
     "seal every stored session's metadata under the newest encryption key (offline)",
     "Takes the server's options. The data directory's lock keeps a running server out\n"
     "of the embedded store; stop it first.",
     cmd_reencrypt},
    {"jwk", "generate [--alg EdDSA|ES256] [--kid ID] [--next]",
     "write a new JWT signing key as a --jwt-keys line on stdout",
     "EdDSA (Ed25519, the default) or ES256 (P-256). The key id defaults to the algorithm,\n"
     "the date and random digits. --next marks the key published but not signing yet\n"
     "(rotation: docs/tokens.md). Append it to the key file (chmod 600) and send SIGHUP.",
     cmd_jwk},
    {"check", "[--connect] [OPTIONS]",
     "load the configuration and every file it names as a start would, then exit",
     "Takes the server's options (flags, environment, --config FILE). Exit 0 with a\n"
     "summary when a start would load them all (the store is not opened), 2 naming\n"
     "what fails: run it before a restart or a SIGHUP. --connect also reaches the store\n"
     "and the Redis cache, changing nothing: the schema version against this binary's,\n"
     "a PostgreSQL standby or a Redis replica where a primary is needed, a role that\n"
     "cannot create the schema.",
     cmd_check},
    {"help", "[COMMAND]", "list the commands, or print one command's usage", NULL, cmd_help},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

const sd_command *sd_cmd_find(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

void sd_cmd_list(FILE *out)
{
    fprintf(out, "\ncommands (sessiond COMMAND --help for each):\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  sessiond %-10s %s\n", commands[i].name, commands[i].summary);
}

int sd_cmd_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    return 0;
}

void sd_cmd_usage(const sd_command *c, FILE *out)
{
    fprintf(out, "usage: sessiond %s %s\n\n%s.\n", c->name, c->usage, c->summary);
    if (c->detail)
        fprintf(out, "%s\n", c->detail);
}

static int cmd_help(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stdout, "usage: sessiond [OPTIONS]      serve (sessiond --help lists the options)\n"
                        "       sessiond COMMAND [ARGS]\n");
        sd_cmd_list(stdout);
        return 0;
    }
    const sd_command *c = sd_cmd_find(argv[1]);
    if (!c) {
        fprintf(stderr, "sessiond help: no command '%s' (sessiond help lists them)\n", argv[1]);
        return 2;
    }
    sd_cmd_usage(c, stdout);
    return 0;
}
