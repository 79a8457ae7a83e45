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
 *
 * Each returns the process exit status.
 */
#ifndef SD_COMMANDS_H
#define SD_COMMANDS_H

int sd_cmd_audit(int argc, char **argv);
int sd_cmd_reencrypt(int argc, char **argv);
int sd_cmd_backup(int argc, char **argv);

#endif
