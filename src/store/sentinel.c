/*
 * sentinel.c - reaching the Redis node of the cache tier (see sentinel.h):
 * a fixed address, or the master Redis Sentinel names. Following the
 * Sentinel client guidelines: the Sentinels are asked in turn, the first
 * that answers is asked first next time, and the node it names must say
 * ROLE master before anything is sent to it. The lineage (INFO run_id and
 * master_replid) is what cache.c compares across connections.
 */
#include "store/sentinel.h"
#include "util/err.h"
#include "util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* AUTH and SELECT on a new connection. 0, or -1 with *what and err. */
static int login(redisContext *rc, const sd_cache_url *u, const char **what, char *err,
                 size_t errlen)
{
    redisReply *r = NULL;
    if (u->password[0]) {
        *what = "AUTH";
        r = redisCommand(rc, "AUTH %s", u->password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "%s", r ? "refused" : rc->errstr);
            freeReplyObject(r);
            return -1;
        }
        freeReplyObject(r);
    }
    if (u->db) {
        *what = "SELECT";
        r = redisCommand(rc, "SELECT %d", u->db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "%s", r ? r->str : rc->errstr);
            freeReplyObject(r);
            return -1;
        }
        freeReplyObject(r);
    }
    return 0;
}

static redisContext *dial(const char *host, int port, struct timeval tv, char *err, size_t errlen)
{
    redisContext *rc = redisConnectWithTimeout(host, port, tv);
    if (!rc || rc->err) {
        snprintf(err, errlen, "%s:%d: %s", host, port, rc ? rc->errstr : "out of memory");
        redisFree(rc);
        return NULL;
    }
    redisSetTimeout(rc, tv);
    redisEnableKeepAlive(rc);
    return rc;
}

int sd_sentinel_ask(const sd_cache_url *u, struct timeval tv, _Atomic int *first, char *host,
                    size_t hostlen, int *port, char *err, size_t errlen)
{
    int n = u->n_sentinels, start = atomic_load(first);
    snprintf(err, errlen, "no Sentinel");
    for (int i = 0; i < n; i++) {
        int at = (start + i) % n;
        const sd_cache_hostport *s = &u->sentinels[at];
        redisContext *rc = dial(s->host, s->port, tv, err, errlen);
        if (!rc)
            continue;
        redisReply *r = redisCommand(rc, "SENTINEL get-master-addr-by-name %s", u->master_name);
        bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                  r->element[0]->type == REDIS_REPLY_STRING &&
                  r->element[1]->type == REDIS_REPLY_STRING;
        if (ok) {
            char *e;
            long p = strtol(r->element[1]->str, &e, 10);
            ok = *e == '\0' && p > 0 && p <= 65535 && r->element[0]->len < hostlen;
            if (ok) {
                snprintf(host, hostlen, "%s", r->element[0]->str);
                *port = (int)p;
            }
        }
        if (!ok)
            snprintf(err, errlen, "Sentinel %s:%d: %s", s->host, s->port,
                     !r                             ? rc->errstr
                     : r->type == REDIS_REPLY_ERROR ? r->str
                     : r->type == REDIS_REPLY_NIL   ? "no such master name"
                                                    : "unexpected reply");
        freeReplyObject(r);
        redisFree(rc);
        if (ok) {
            atomic_store(first, at);
            return 0;
        }
    }
    return SD_EUNAVAILABLE;
}

/* The value of "name:" in an INFO reply, into out. */
static void info_field(const char *info, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    out[0] = '\0';
    for (const char *p = info; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, name, nl) == 0 && p[nl] == ':') {
            size_t v = strcspn(p + nl + 1, "\r\n");
            snprintf(out, outlen, "%.*s", (int)v, p + nl + 1);
            return;
        }
}

/* ROLE says master, and the lineage from INFO. 0, or -1 with *what, err. */
static int check_master(redisContext *rc, sd_redis_node *node, const char **what, char *err,
                        size_t errlen)
{
    *what = "ROLE";
    redisReply *r = redisCommand(rc, "ROLE");
    bool master = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                  r->element[0]->type == REDIS_REPLY_STRING &&
                  strcmp(r->element[0]->str, "master") == 0;
    if (!master)
        snprintf(err, errlen, "%s:%d is not a master (%s)", node->host, node->port,
                 !r                             ? rc->errstr
                 : r->type == REDIS_REPLY_ERROR ? r->str
                 : r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                         r->element[0]->type == REDIS_REPLY_STRING
                     ? r->element[0]->str
                     : "unexpected reply");
    freeReplyObject(r);
    if (!master)
        return -1;
    *what = "INFO";
    r = redisCommand(rc, "INFO server replication");
    if (!r || r->type != REDIS_REPLY_STRING) {
        snprintf(err, errlen, "%s", !r ? rc->errstr : r->type == REDIS_REPLY_ERROR ? r->str : "?");
        freeReplyObject(r);
        return -1;
    }
    char run[48], repl[48];
    info_field(r->str, "run_id", run, sizeof run);
    info_field(r->str, "master_replid", repl, sizeof repl);
    freeReplyObject(r);
    if (!run[0] || !repl[0]) {
        snprintf(err, errlen, "%s:%d: INFO has no run_id or master_replid", node->host, node->port);
        return -1;
    }
    snprintf(node->lineage, sizeof node->lineage, "%s:%s", run, repl);
    return 0;
}

redisContext *sd_redis_connect(const sd_cache_url *u, struct timeval tv, _Atomic int *first,
                               sd_redis_node *node, const char **what, char *err, size_t errlen)
{
    memset(node, 0, sizeof *node);
    if (u->n_sentinels) {
        *what = "SENTINEL";
        if (sd_sentinel_ask(u, tv, first, node->host, sizeof node->host, &node->port, err, errlen))
            return NULL;
    } else {
        snprintf(node->host, sizeof node->host, "%s", u->host);
        node->port = u->port;
    }
    *what = "connect";
    redisContext *rc = dial(node->host, node->port, tv, err, errlen);
    if (!rc)
        return NULL;
    if (login(rc, u, what, err, errlen) ||
        (u->n_sentinels && check_master(rc, node, what, err, errlen))) {
        redisFree(rc);
        return NULL;
    }
    return rc;
}

int sd_redis_probe(const char *url, const char *password, int timeout_ms, char *out, size_t outlen)
{
    sd_cache_url u;
    char err[300];
    int rc = sd_cache_url_parse(url, &u, err, sizeof err);
    if (rc) {
        snprintf(out, outlen, "%s", err);
        explicit_bzero(&u, sizeof u);
        return rc;
    }
    if (password && password[0])
        snprintf(u.password, sizeof u.password, "%s", password);
    int ms = timeout_ms > 0 ? timeout_ms : 50;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    _Atomic int first = 0;
    sd_redis_node node;
    const char *what = "connect";
    redisContext *c = sd_redis_connect(&u, tv, &first, &node, &what, err, sizeof err);
    rc = c ? 0 : SD_EUNAVAILABLE;
    if (c) { /* logged in (or not asked to): a command answers */
        what = "PING";
        redisReply *r = redisCommand(c, "PING");
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, sizeof err, "%s", r ? r->str : c->errstr);
            rc = SD_EUNAVAILABLE;
        }
        freeReplyObject(r);
    }
    /* With Sentinel the node was checked to be the master; without, ask. */
    if (!rc && !u.n_sentinels && check_master(c, &node, &what, err, sizeof err))
        rc = SD_ECONFIG;
    if (rc)
        snprintf(out, outlen, "the Redis cache (%s): %s: %s",
                 u.n_sentinels ? u.master_name : u.host, what, err);
    else
        snprintf(out, outlen, "cache redis %s:%d/%d: a master%s", node.host, node.port, u.db,
                 u.n_sentinels ? ", as the Sentinels name it" : "");
    redisFree(c);
    explicit_bzero(&u, sizeof u);
    return rc;
}

/* ---- the master in use ------------------------------------------------- */

void sd_master_watch_init(sd_master_watch *w)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
}

void sd_master_watch_destroy(sd_master_watch *w)
{
    pthread_mutex_destroy(&w->mu);
}

int sd_master_adopt(sd_master_watch *w, const sd_redis_node *node, const char *name,
                    int (*bump)(void *ctx, int64_t *epoch), void *ctx, uint64_t *seq)
{
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    if (strcmp(node->lineage, w->lineage) != 0) {
        /* Raised before the bump: a thread that sees the new epoch sees
         * its connection to the old master is stale. */
        atomic_fetch_add(&w->seq, 1);
        int64_t e = 0;
        if ((rc = bump(ctx, &e)) == 0) {
            snprintf(w->lineage, sizeof w->lineage, "%s", node->lineage);
            w->master = *node;
            atomic_fetch_add(&w->adopted, 1);
            sd_info("cache: redis master %s is %s:%d (new to this replica): cache epoch bumped "
                    "to %lld, no entry written before it is trusted",
                    name, node->host, node->port, (long long)e);
        }
    }
    *seq = atomic_load(&w->seq);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

bool sd_master_moved(sd_master_watch *w, const sd_cache_url *u, struct timeval tv)
{
    char host[256], why[300];
    int port = 0;
    if (sd_sentinel_ask(u, tv, &w->first, host, sizeof host, &port, why, sizeof why))
        return false; /* the connections' own errors tell whether the master is gone */
    pthread_mutex_lock(&w->mu);
    bool moved = w->lineage[0] && (strcmp(host, w->master.host) != 0 || port != w->master.port);
    pthread_mutex_unlock(&w->mu);
    if (moved) {
        sd_info("cache: Sentinel names %s:%d as master %s: reconnecting", host, port,
                u->master_name);
        atomic_fetch_add(&w->seq, 1);
    }
    return moved;
}
