/*
 * cache_entry.h - the Redis cache tier's text formats: a session's entry
 * (what sessiond:t:<token hash> holds) and the --cache URL. Split from
 * cache.c so that both can be fuzzed and tested without a Redis.
 */
#ifndef SD_CACHE_ENTRY_H
#define SD_CACHE_ENTRY_H

#include "session/session.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "e|version|epoch|id|hash|created|last_seen|expiry|absolute|idle|auth_time|
 * binding|acr length|user length|" then acr and user id: s's fields without
 * attrs (never the token), under a cache epoch. malloc'd (*len bytes); NULL
 * when out of memory. */
char *sd_cache_entry_encode(const sd_session *s, int64_t epoch, size_t *len);
/* Parses an entry of len bytes into out (owned by the caller on true: its
 * user id is malloc'd) and its epoch. false: not an entry. */
bool sd_cache_entry_decode(const char *v, size_t len, int64_t *epoch, sd_session *out);

#define SD_CACHE_MAX_SENTINELS 8

typedef struct sd_cache_hostport {
    char host[256];
    int port;
} sd_cache_hostport;

/* redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], or
 * redis-sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER[/DB]
 * (Sentinels default to port 26379; n_sentinels > 0 says which form, and
 * then host and port are unused: the master is found through Sentinel),
 * parsed. The password is the data nodes', never the Sentinels'. */
typedef struct sd_cache_url {
    char host[256];
    int port, db;
    char password[256]; /* never logged */
    int n_sentinels;
    sd_cache_hostport sentinels[SD_CACHE_MAX_SENTINELS];
    char master_name[128]; /* [A-Za-z0-9._-]+ */
} sd_cache_url;

/* 0, or SD_EINVALID with a sentence for the operator in err (which never
 * holds the password). */
int sd_cache_url_parse(const char *url, sd_cache_url *out, char *err, size_t errlen);

#endif
