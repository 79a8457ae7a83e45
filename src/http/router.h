/*
 * router.h - matches a method and a raw (still percent-encoded) path against
 * a table of routes. Pure: no I/O, no allocation beyond the captures.
 *
 * A pattern is a path whose segments are literals or "{name}" captures, e.g.
 * "/users/{userId}/sessions". Captures are percent-decoded; a capture that
 * decodes to an empty string or holds %00 or a bad escape makes the path
 * invalid. Routes are tried in table order, so literals go first
 * ("/sessions/validate" before "/sessions/{id}"). When the first pattern that
 * matches the path has no route for the method, the answer is 405 with the
 * methods of that pattern in allow.
 */
#ifndef SD_ROUTER_H
#define SD_ROUTER_H

#include "util/arena.h"

#include <stddef.h>

#define SD_MAX_CAPTURES 2

typedef struct sd_req sd_req;
typedef void (*sd_handler_fn)(sd_req *req, void *app);

/* What a route reads: nothing, a JSON body (required or optional), or a
 * form-encoded body (RFC 7662 introspection). */
enum { SD_ROUTE_NO_BODY = 0, SD_ROUTE_BODY = 1, SD_ROUTE_BODY_OPTIONAL = 2, SD_ROUTE_FORM = 3 };

typedef struct sd_route {
    const char *method;
    const char *pattern;
    sd_handler_fn fn;
    int body;          /* SD_ROUTE_* */
    const char *scope; /* the caller permission it needs (see authorize), or NULL: public */
    int on_loop;       /* 1: answers from memory; runs on the loop thread even with a
                          handler pool (liveness answers while the pool waits) */
} sd_route;

enum sd_match_result { SD_MATCH_OK, SD_MATCH_NOT_FOUND, SD_MATCH_METHOD, SD_MATCH_BAD_PATH };

typedef struct sd_match {
    int route;                       /* index into the table when OK or METHOD */
    char *captures[SD_MAX_CAPTURES]; /* malloc'd (free with sd_match_free) or the arena's */
    int ncaptures;
    sd_arena *arena; /* where the captures live; NULL: malloc'd */
    char allow[96];  /* for SD_MATCH_METHOD, e.g. "GET, PUT, DELETE" */
} sd_match;

enum sd_match_result sd_route_match(const sd_route *routes, int n, const char *method,
                                    const char *path, sd_match *m);
/* The same with the captures decoded into arena a (valid until its reset;
 * sd_match_free then frees nothing). */
enum sd_match_result sd_route_match_in(const sd_route *routes, int n, const char *method,
                                       const char *path, sd_match *m, sd_arena *a);
void sd_match_free(sd_match *m);

/* Percent-decodes n bytes of in into a malloc'd string (*out). Returns 0, or
 * -1 on a bad escape or an encoded NUL (*out untouched). */
int sd_pct_decode(const char *in, size_t n, char **out);
/* The same into out, which holds n + 1 bytes (NUL-terminated). Returns the
 * decoded length, or -1 (out's content then undefined). */
long sd_pct_decode_into(const char *in, size_t n, char *out);

#endif
