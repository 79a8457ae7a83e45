/*
 * keyfile.h - what the key files of sessiond share (--encryption-keys,
 * --jwt-keys): the key id rule, and opening a file of secrets with a
 * warning when others may read it. A leaf: no key format is known here.
 */
#ifndef SD_KEYFILE_H
#define SD_KEYFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* A key id: 1 to max of A-Z a-z 0-9 - _ . (n bytes at s). */
bool sd_key_id_ok(const char *s, size_t n, size_t max);

/* Opens path for reading; warns (naming what, e.g. "JWT key file") when
 * its mode lets others read it. NULL with err when it cannot be opened. */
FILE *sd_key_file_open(const char *path, const char *what, char *err, size_t errlen);

#endif
