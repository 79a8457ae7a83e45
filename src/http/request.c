/*
 * request.c - the request object: created when a request's first bytes
 * arrive (with its id, "<prefix>-<n>", the prefix random per server),
 * filled by parse.c, freed with everything it holds once it is answered;
 * and the sd_req_* accessors handlers read it through (server.h). Header
 * names and values, the target and the body are malloc'd per request
 * (issue 14 item 2 puts them in an arena).
 */
#include "http/internal.h"
#include "util/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- lifetime ----------------------------------------------------------- */

void sd__req_free(sd_req *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    for (int i = 0; i < r->nqueries; i++)
        free(r->queries[i]);
    sd_match_free(&r->match);
    free(r->url);
    free(r->body);
    free(r->out);
    free(r);
}

sd_req *sd__req_new(sd__conn *c)
{
    sd_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    sd_http *h = c->lp->h;
    r->c = c;
    r->lp = c->lp;
    r->t0 = sd_mono_ns();
    r->match.route = -1;
    r->keep_alive = true;
    snprintf(r->id, sizeof r->id, "%s-%llu", h->id_prefix,
             (unsigned long long)atomic_fetch_add(&h->next_id, 1));
    return r;
}

/* ---- accessors (server.h) ----------------------------------------------- */

const char *sd_req_method(const sd_req *r)
{
    return r->method;
}

const char *sd_req_header(const sd_req *r, const char *name)
{
    for (int i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

int sd__req_header_count(const sd_req *r, const char *name)
{
    int n = 0;
    for (int i = 0; i < r->nheaders; i++)
        n += strcasecmp(r->headers[i].name, name) == 0;
    return n;
}

int sd_req_header_count(const sd_req *r, const char *name)
{
    return sd__req_header_count(r, name);
}

const char *sd_req_capture(const sd_req *r, int i)
{
    return i >= 0 && i < r->match.ncaptures ? r->match.captures[i] : NULL;
}

int sd_req_query(sd_req *r, const char *name, const char **value)
{
    size_t nlen = strlen(name);
    for (const char *p = r->query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        if (klen == nlen && memcmp(p, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : p + len;
            size_t vlen = (size_t)(p + len - v);
            char *dec;
            if (r->nqueries == (int)(sizeof r->queries / sizeof r->queries[0]) ||
                sd_pct_decode(v, vlen, &dec) != 0)
                return -1;
            r->queries[r->nqueries++] = dec;
            *value = dec;
            return 1;
        }
        p = amp ? amp + 1 : p + len;
    }
    return 0;
}

const char *sd_req_body(const sd_req *r, size_t *len)
{
    *len = r->body_len;
    return r->body ? r->body : "";
}

int sd_req_has_body(const sd_req *r)
{
    return r->has_body;
}

const char *sd_req_client_cert(const sd_req *r)
{
    return r->c->peer_cn;
}

const char *sd_req_id(const sd_req *r)
{
    return r->id;
}

const char *sd_req_peer(const sd_req *r)
{
    return r->c->ip;
}

void sd_req_set_actor(sd_req *r, const char *actor)
{
    snprintf(r->actor, sizeof r->actor, "%s", actor ? actor : "");
}

const char *sd_req_actor(const sd_req *r)
{
    return r->actor;
}
