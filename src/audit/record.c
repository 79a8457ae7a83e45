/* record.c - the audit log on disk: records (rendering, hashing) and file
 * names (see record.h). */
#include "audit/record.h"
#include "util/jsonmem.h"
#include "util/clock.h"
#include "util/random.h"

#include <dirent.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

void sd_audit_hash(const char *p, size_t n, char out[SD_AUDIT_HASH_HEX + 1])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)p, n, md);
    sd_hex(md, sizeof md, out);
}

/* A string member, or null when empty (or not valid UTF-8: ids from a
 * path are not checked for it, and a record must stay valid JSON). */
static json_t *opt_string(const char *s)
{
    json_t *v = s && s[0] ? json_string(s) : NULL;
    return v ? v : json_null();
}

char *sd_audit_render(const sd_event *e, uint64_t seq, int64_t store_seq, const char *prev,
                      char hash_out[SD_AUDIT_HASH_HEX + 1], size_t *len)
{
    char t[SD_TIME_TEXT_LEN + 1];
    unsigned long mark = sd_json_failures(); /* a record missing prev would break the chain */
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "seq", json_integer((json_int_t)seq));
    json_object_set_new(o, "time", json_string(sd_time_format(e->time, t)));
    json_object_set_new(o, "event", opt_string(e->event));
    json_object_set_new(o, "sessionId", opt_string(e->session_id));
    json_object_set_new(o, "userId", opt_string(e->user_id));
    json_object_set_new(o, "actor", opt_string(e->actor));
    json_object_set_new(o, "clientAddress", opt_string(e->address));
    json_object_set_new(o, "reason", opt_string(e->reason));
    if (store_seq > 0)
        json_object_set_new(o, "storeSeq", json_integer(store_seq));
    json_object_set_new(o, "prev", json_string(prev));
    char *body = sd_json_dumps(o, JSON_COMPACT, mark);
    json_decref(o);
    if (!body)
        return NULL;
    size_t n = strlen(body);
    sd_audit_hash(body, n, hash_out);
    char *line = malloc(n + SD_AUDIT_SUFFIX_LEN + 1);
    if (line) {
        memcpy(line, body, n - 1); /* without the closing brace */
        memcpy(line + n - 1, ",\"hash\":\"", 9);
        memcpy(line + n + 8, hash_out, SD_AUDIT_HASH_HEX);
        memcpy(line + n + 8 + SD_AUDIT_HASH_HEX, "\"}\n", 3);
        *len = n - 1 + SD_AUDIT_SUFFIX_LEN + 1;
    }
    free(body);
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
