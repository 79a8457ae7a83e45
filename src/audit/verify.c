/*
 * verify.c - `sessiond audit verify PATH...`: walks the hash chain of the
 * audit log and reports the first broken link.
 *
 * Each record must (1) end in the `,"hash":"<hex>"}` suffix, (2) hash, with
 * the suffix replaced by `}`, to that hex, (3) name in "prev" the hash of the
 * record before it and (4) carry the next seq. The very first record is
 * trusted as the anchor (older files may have been pruned by retention).
 */
#include "audit/audit.h"
#include "util/jsonmem.h"
#include "audit/record.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct chain {
    bool started;
    uint64_t seq, first_seq;
    char prev[SD_AUDIT_HASH_HEX + 1];
    uint64_t records;
} chain;

static bool is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* Checks one line (without its '\n'). Returns NULL or what is wrong. */
static const char *check_line(chain *c, char *line, size_t len)
{
    static const char pre[] = ",\"hash\":\"";
    if (len < SD_AUDIT_SUFFIX_LEN + 2 || line[0] != '{' ||
        memcmp(line + len - SD_AUDIT_SUFFIX_LEN, pre, sizeof pre - 1) != 0 ||
        memcmp(line + len - 2, "\"}", 2) != 0 ||
        !is_hex(line + len - SD_AUDIT_HASH_HEX - 2, SD_AUDIT_HASH_HEX))
        return "not an audit record (no trailing hash)";
    char hash[SD_AUDIT_HASH_HEX + 1];
    memcpy(hash, line + len - SD_AUDIT_HASH_HEX - 2, SD_AUDIT_HASH_HEX);
    hash[SD_AUDIT_HASH_HEX] = '\0';
    size_t body_len = len - SD_AUDIT_SUFFIX_LEN + 1;
    line[body_len - 1] = '}'; /* the record as it was hashed */
    char want[SD_AUDIT_HASH_HEX + 1];
    sd_audit_hash(line, body_len, want);
    if (strcmp(want, hash) != 0)
        return "the record was altered (its hash does not match its content)";
    bool oom;
    json_t *o = sd_json_loadb(line, body_len, 0, NULL, &oom);
    if (oom)
        return "out of memory reading the record (not a fault of the log)";
    json_t *seq = json_object_get(o, "seq"), *prev = json_object_get(o, "prev");
    const char *why = NULL;
    if (!json_is_integer(seq) || json_integer_value(seq) < 1 || !json_is_string(prev) ||
        strlen(json_string_value(prev)) != SD_AUDIT_HASH_HEX)
        why = "the record lacks seq or prev";
    else if (c->started && strcmp(json_string_value(prev), c->prev) != 0)
        why = "broken link: prev is not the hash of the record before (a record was removed, "
              "inserted or reordered)";
    else if (c->started && (uint64_t)json_integer_value(seq) != c->seq + 1)
        why = "broken link: seq does not follow the record before";
    if (!why) {
        if (!c->started)
            c->first_seq = (uint64_t)json_integer_value(seq);
        c->started = true;
        c->seq = (uint64_t)json_integer_value(seq);
        memcpy(c->prev, hash, sizeof c->prev);
        c->records++;
    }
    json_decref(o);
    return why;
}

/* Returns 0, 1 (broken) or 2 (unreadable). */
static int verify_file(chain *c, const char *path, FILE *out)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(out, "%s: cannot read: %s\n", path, strerror(errno));
        return 2;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    unsigned long lineno = 0;
    int rc = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        bool complete = line[n - 1] == '\n';
        if (complete)
            line[--n] = '\0';
        const char *why = complete ? check_line(c, line, (size_t)n)
                                   : "incomplete last record (cut off mid-write)";
        if (why) {
            fprintf(out, "%s:%lu: %s\n", path, lineno, why);
            rc = 1;
            break;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

/* The audit files of a directory, oldest first: audit-*.log by name, then
 * audit.log. */
static int verify_dir(chain *c, const char *dir, FILE *out, int *nfiles)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(out, "%s: cannot read: %s\n", dir, strerror(errno));
        return 2;
    }
    closedir(d);
    char **names;
    int n = sd_audit_rotated_files(dir, &names);
    int rc = 0;
    for (int i = 0; i <= n && rc == 0; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, i < n ? names[i] : "audit.log");
        struct stat sb;
        if (i == n && stat(p, &sb) != 0)
            break;
        rc = verify_file(c, p, out);
        (*nfiles)++;
    }
    sd_audit_free_names(names, n);
    return rc;
}

int sd_audit_verify(int npaths, char **paths, FILE *out)
{
    chain c = {0};
    int rc = 0, nfiles = 0;
    for (int i = 0; i < npaths && rc == 0; i++) {
        struct stat sb;
        if (stat(paths[i], &sb) == 0 && S_ISDIR(sb.st_mode))
            rc = verify_dir(&c, paths[i], out, &nfiles);
        else {
            rc = verify_file(&c, paths[i], out);
            nfiles++;
        }
    }
    if (rc == 0)
        fprintf(out, "ok: %llu records in %d files, chain intact (seq %llu..%llu)\n",
                (unsigned long long)c.records, nfiles, (unsigned long long)c.first_seq,
                (unsigned long long)c.seq);
    return rc;
}
