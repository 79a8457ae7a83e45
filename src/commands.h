/*
 * commands.h - the subcommands of the sessiond binary besides serving:
 *
 *   sessiond audit verify PATH...   check the audit log's hash chain
 *   sessiond backup DEST [OPTIONS]  copy the live store (a consistent
 *                                   snapshot) into DEST/sessiond.db
 *   sessiond reencrypt [OPTIONS]    seal every stored session's metadata
 *                                   under the newest encryption key (offline:
 *                                   the data directory's lock keeps a running
 *                                   server out)
 *   sessiond jwk generate [OPTIONS] a new JWT signing key, as a --jwt-keys line
 *   sessiond check [OPTIONS]        load the configuration and its files as a
 *                                   start would, then exit (startup.c)
 *   sessiond help [COMMAND]         the commands, or one command's usage
 *
 * One table (commands.c) holds each command's name, usage line and summary:
 * `sessiond help`, `sessiond --help`, `sessiond COMMAND --help` and the
 * dispatch in main.c all read it. Each command returns the process's exit
 * status.
 */
#ifndef SD_COMMANDS_H
#define SD_COMMANDS_H

#include <stdio.h>

typedef struct sd_command {
    const char *name;
    const char *usage;                 /* arguments after the name, e.g. "verify PATH..." */
    const char *summary;               /* one line */
    const char *detail;                /* the rest of its --help (may be NULL) */
    int (*run)(int argc, char **argv); /* argv[0] is the command's name */
} sd_command;

/* The command named name, or NULL. The table is static. */
const sd_command *sd_cmd_find(const char *name);

/* Writes the "commands:" section of --help: one line a command. */
void sd_cmd_list(FILE *out);

/* True when argv (a command's own, argv[0] its name) asks for its help. */
int sd_cmd_wants_help(int argc, char **argv);

/* Writes one command's --help. */
void sd_cmd_usage(const sd_command *c, FILE *out);

#endif
