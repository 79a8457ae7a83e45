/*
 * cli.h - what the files of sessionctl share: the parsed command line, the
 * exit codes, the table printer and the error reporter. sessionctl uses only
 * the public API of libsessiond-client.
 */
#ifndef SESSIONCTL_CLI_H
#define SESSIONCTL_CLI_H

#include <sessiond/client.h>

#include <stddef.h>
#include <stdio.h>

/* Exit codes (documented in sessionctl(1)). */
enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,        /* any other failure */
    EXIT_USAGE = 2,       /* bad command line */
    EXIT_NOTFOUND = 3,    /* no such session (404) */
    EXIT_AUTH = 4,        /* missing/unknown API key (401) or missing scope (403) */
    EXIT_UNAVAILABLE = 5, /* cannot connect, timed out, or 503 / not ready */
    EXIT_INVALID = 6,     /* validate: the token (or id) is not valid */
};

typedef struct cli {
    sd_client *c;
    int json;                /* --json */
    const char *except;      /* revoke-user --except */
    long if_version;         /* revoke --if-version: > 0, only while at that version */
    const char *session;     /* events/validate --session */
    const char *user;        /* events --user */
    const char *file;        /* validate --token-file */
    int follow;              /* events --follow */
    int newest;              /* events --newest: the latest first */
    long interval_ms;        /* events --interval */
    int limit;               /* list/events --limit */
    int no_touch;            /* validate --no-touch */
    const char *ip;          /* validate --ip: the end client's address */
    const char *ua;          /* validate --user-agent */
    const char *issuer;      /* jwt verify --issuer */
    const char *audience;    /* jwt verify --audience */
    const char *decrypt_key; /* jwt verify --decrypt-key: PEM private key of encrypted tokens */
    const char *network;     /* revoke-matching --network CIDR */
    const char *device;      /* revoke-matching --device ID */
    int dry_run;             /* revoke-matching --dry-run: count, end nothing */
    int yes;                 /* --yes: the operator confirms a revocation of many */
    char **args;             /* positional arguments after the command */
    int nargs;
} cli;

typedef int (*cli_command_fn)(cli *);

/* Commands (commands.c, ops.c). Each returns an exit code. */
int cmd_list(cli *x);
int cmd_show(cli *x);
int cmd_revoke(cli *x);
int cmd_revoke_user(cli *x);
int cmd_bulk_revoke(cli *x);
int cmd_validate(cli *x);
int cmd_events(cli *x);
int cmd_stats(cli *x);
int cmd_jwt(cli *x);
int cmd_not_before(cli *x);
int cmd_revoke_matching(cli *x);

/* EXIT_USAGE after saying what was expected, unless x has n operands. */
int cli_need_args(cli *x, int n, const char *what);

/* A token from path (NULL: stdin, without echo on a terminal): its first
 * line, malloc'd (wipe it, then free); NULL after saying why (commands.c). */
char *cli_read_token(const char *path);
/* Prints o (stolen) as compact JSON on a line of stdout. */
struct json_t;
void cli_print_json(struct json_t *o);

/* Prints "sessionctl: what: <error>: <server detail>" and returns the exit
 * code for rc. */
int cli_fail(cli *x, const char *what, int rc);
/* Prints a usage error for the command and returns EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* An aligned table: add rows of cells, then print (table.c). */
typedef struct table table;
table *table_new(int ncols, const char *const *headers);
void table_add(table *t, const char *const *cells); /* cells are copied; NULL prints "-" */
void table_print(table *t, FILE *f);
void table_free(table *t);
/* Writes s with control bytes replaced, so server data cannot drive the
 * terminal. */
void print_safe(FILE *f, const char *s);

#endif
