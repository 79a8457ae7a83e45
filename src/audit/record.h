/*
 * record.h - one audit record as text, shared by the writer (audit.c) and
 * the verifier (verify.c) so that both agree byte for byte.
 *
 * A line is the compact JSON of the record without "hash" (its last member
 * is "prev"), with `,"hash":"<64 hex>"}` in place of the closing brace;
 * hash = SHA-256 of that compact JSON.
 */
#ifndef SD_AUDIT_RECORD_H
#define SD_AUDIT_RECORD_H

#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

#define SD_AUDIT_HASH_HEX 64
/* `,"hash":"` + 64 hex + `"}` */
#define SD_AUDIT_SUFFIX_LEN (9 + SD_AUDIT_HASH_HEX + 2)

/* Renders event e as record number seq chained to prev (hex, NUL
 * terminated). store_seq > 0 marks an event of the store's table. Returns a
 * malloc'd line ending in '\n' (length in *len) and writes its hash (hex)
 * into hash_out; NULL when out of memory. */
char *sd_audit_render(const sd_event *e, uint64_t seq, int64_t store_seq, const char *prev,
                      char hash_out[SD_AUDIT_HASH_HEX + 1], size_t *len);

/* SHA-256 of n bytes as 64 hex digits plus NUL. */
void sd_audit_hash(const char *p, size_t n, char out[SD_AUDIT_HASH_HEX + 1]);

/* The rotated files (audit-*.log) of dir, oldest first (their names sort
 * by time). Returns the count; free with sd_audit_free_names. */
int sd_audit_rotated_files(const char *dir, char ***names);
void sd_audit_free_names(char **names, int n);

#endif
