/* record.c - the audit log on disk: records (rendering, hashing) and file
 * names (see record.h). */
/* SHA256_Init/Update/Final, as session/token.c: the one-shot SHA256()
 * goes through EVP_Q_digest, which fetches the algorithm and allocates a
 * context on every call (a tenth of the audit thread's time, 2026-12-06). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "audit/record.h"
#include "util/arena.h"
#include "util/clock.h"
#include "util/jsonw.h"
#include "util/random.h"
#include "util/utf8.h"

#include <dirent.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

void sd_audit_hash(const char *p, size_t n, char out[SD_AUDIT_HASH_HEX + 1])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, p, n);
    SHA256_Final(md, &ctx);
    sd_hex(md, sizeof md, out);
}

/* A string member, or null when empty (or not valid UTF-8: ids from a
 * path are not checked for it, and a record names what was asked, never a
 * replacement of it). */
static void opt_string(sd_jw *w, const char *key, const char *s)
{
    sd_jw_key(w, key);
    if (s && s[0] && sd_utf8_valid(s, strlen(s)))
        sd_jw_str(w, s);
    else
        sd_jw_null(w);
}

/* Written with the JSON writer, not built as a jansson tree and dumped:
 * the tree was half the audit thread's time, which every write pays on a
 * machine's shared cores (docs/performance.md, 2026-12-06). */
char *sd_audit_render(const sd_event *e, uint64_t seq, int64_t store_seq, const char *prev,
                      char hash_out[SD_AUDIT_HASH_HEX + 1], size_t *len)
{
    char mem[1024];
    sd_arena a;
    sd_arena_init(&a, mem, sizeof mem);
    sd_jw w;
    sd_jw_init(&w, &a, 512);
    sd_jw_object(&w);
    sd_jw_key(&w, "seq");
    sd_jw_int(&w, (int64_t)seq);
    sd_jw_key(&w, "time");
    sd_jw_time(&w, e->time);
    opt_string(&w, "event", e->event);
    opt_string(&w, "sessionId", e->session_id);
    opt_string(&w, "userId", e->user_id);
    opt_string(&w, "actor", e->actor);
    opt_string(&w, "clientAddress", e->address);
    opt_string(&w, "reason", e->reason);
    if (store_seq > 0) {
        sd_jw_key(&w, "storeSeq");
        sd_jw_int(&w, store_seq);
    }
    sd_jw_key(&w, "prev");
    sd_jw_str(&w, prev);
    sd_jw_end(&w);
    size_t n = 0;
    const char *body = sd_jw_done(&w, &n);
    char *line = body ? malloc(n + SD_AUDIT_SUFFIX_LEN + 1) : NULL;
    if (line) {
        sd_audit_hash(body, n, hash_out);
        memcpy(line, body, n - 1); /* without the closing brace */
        memcpy(line + n - 1, ",\"hash\":\"", 9);
        memcpy(line + n + 8, hash_out, SD_AUDIT_HASH_HEX);
        memcpy(line + n + 8 + SD_AUDIT_HASH_HEX, "\"}\n", 3);
        *len = n - 1 + SD_AUDIT_SUFFIX_LEN + 1;
    }
    sd_arena_reset(&a);
    return line;
}

/* The rotated files of dir, sorted oldest first (their names sort by time).
 * Returns the count; *names is malloc'd (free each and the array). */
int sd_audit_rotated_files(const char *dir, char ***names)
{
    *names = NULL;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (strncmp(de->d_name, "audit-", 6) != 0 || len < 10 ||
            strcmp(de->d_name + len - 4, ".log") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            void *p = realloc(*names, (size_t)cap * sizeof **names);
            if (!p)
                break;
            *names = p;
        }
        if (!((*names)[n] = strdup(de->d_name)))
            break;
        n++;
    }
    closedir(d);
    for (int i = 1; i < n; i++) /* insertion sort: a handful of files */
        for (int j = i; j > 0 && strcmp((*names)[j - 1], (*names)[j]) > 0; j--) {
            char *t = (*names)[j];
            (*names)[j] = (*names)[j - 1];
            (*names)[j - 1] = t;
        }
    return n;
}

void sd_audit_free_names(char **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}
