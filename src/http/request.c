/*
 * request.c - the request object: created when a request's first bytes
 * arrive (with its id, "<prefix>-<n>", the prefix random per server),
 * filled by parse.c, released with everything it holds once it is
 * answered; and the sd_req_* accessors handlers read it through
 * (server.h). Header names and values, the target, the body, the decoded
 * captures and query values and the rendered reply live in the request's
 * arena (util/arena.h), reset when the request is released; the struct
 * with its arena's first chunk then waits in its loop's cache for the next
 * request, so a warm loop parses and answers a usual request without a
 * malloc (issue 14 item 2; `make alloc-count` measures it).
 */
#include "http/internal.h"
#include "util/clock.h"
#include "util/err.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- lifetime ----------------------------------------------------------- */

void sd__req_free(sd_req *r)
{
    if (!r)
        return;
    sd_match_free(&r->match);
    sd_arena_reset(&r->arena);
    sd__thread *lp = r->lp;
    if (lp->nfree_reqs < SD__REQ_CACHE) {
        r->next_work = lp->free_reqs;
        lp->free_reqs = r;
        lp->nfree_reqs++;
        return;
    }
    free(r);
}

void sd__req_cache_free(sd__thread *lp)
{
    for (sd_req *r = lp->free_reqs, *next; r; r = next) {
        next = r->next_work;
        free(r);
    }
    lp->free_reqs = NULL;
    lp->nfree_reqs = 0;
}

/* The id "<prefix>-<n>" without printf (the hot path). */
static void format_id(char *out, size_t cap, const char *prefix, uint64_t n)
{
    char digits[20];
    size_t nd = 0, o = 0;
    do {
        digits[nd++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    for (; *prefix && o + 1 + nd + 1 < cap; prefix++)
        out[o++] = *prefix;
    out[o++] = '-';
    while (nd)
        out[o++] = digits[--nd];
    out[o] = '\0';
}

void sd__req_mint_id(sd_http *h, char *out, size_t cap)
{
    format_id(out, cap, h->id_prefix, atomic_fetch_add(&h->next_id, 1));
}

sd_req *sd__req_new(sd__conn *c)
{
    sd__thread *lp = c->lp;
    sd_req *r = lp->free_reqs;
    if (r) {
        lp->free_reqs = r->next_work;
        lp->nfree_reqs--;
        memset(r, 0, offsetof(sd_req, headers)); /* the arena is reset already */
    } else {
        if (!(r = malloc(sizeof *r)))
            return NULL;
        memset(r, 0, offsetof(sd_req, headers));
        sd_arena_init(&r->arena, r->arena_mem, sizeof r->arena_mem);
    }
    sd_http *h = lp->h;
    r->c = c;
    r->lp = lp;
    r->t0 = sd_loop_now_ns(lp->loop); /* when this turn's reads began */
    r->match.route = -1;
    r->keep_alive = true;
    sd__req_mint_id(h, r->id, sizeof r->id);
    return r;
}

/* ---- accessors (server.h) ----------------------------------------------- */

const char *sd_req_method(const sd_req *r)
{
    return r->method;
}

const char *sd_req_header(const sd_req *r, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < r->nheaders; i++)
        if (r->headers[i].name_len == n && strncasecmp(r->headers[i].name, name, n) == 0)
            return r->headers[i].value;
    return NULL;
}

int sd__req_header_count(const sd_req *r, const char *name)
{
    size_t len = strlen(name);
    int n = 0;
    for (int i = 0; i < r->nheaders; i++)
        n += r->headers[i].name_len == len && strncasecmp(r->headers[i].name, name, len) == 0;
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
            char *dec = sd_arena_alloc(&r->arena, vlen + 1);
            if (!dec || sd_pct_decode_into(v, vlen, dec) < 0)
                return -1;
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
    size_t n = actor ? strnlen(actor, sizeof r->actor - 1) : 0;
    memcpy(r->actor, actor ? actor : "", n);
    r->actor[n] = '\0';
}

void *sd_req_alloc(sd_req *r, size_t n)
{
    return sd_arena_alloc(&r->arena, n);
}

sd_arena *sd_req_arena(sd_req *r)
{
    return &r->arena;
}

/* A header value: visible ASCII and spaces only, so a handler's mistake
 * can never split the response. */
static bool header_value_ok(const char *v)
{
    if (!*v)
        return false;
    for (; *v; v++)
        if ((unsigned char)*v < 0x20 || (unsigned char)*v > 0x7e)
            return false;
    return true;
}

void sd_req_set_cache_control(sd_req *r, const char *value)
{
    sd_assert(!value || header_value_ok(value));
    r->cache_control = value;
}

const char *sd_req_actor(const sd_req *r)
{
    return r->actor;
}
