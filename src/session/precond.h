/*
 * precond.h - a request's preconditions on one session (RFC 9110 section
 * 13): If-Match and If-None-Match, parsed from their header text and
 * evaluated against the session's version, which its ETag names ("N").
 * Pure functions: no I/O. A read evaluates them on the row it read; a write
 * inside its transaction, on the row it changes (session/write.c,
 * sd_patch_apply), so no other write can come between the check and the
 * change.
 */
#ifndef SD_PRECOND_H
#define SD_PRECOND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SD_PRECOND_TAGS 8 /* entity-tags kept of each header */

typedef struct sd_precond {
    /* If-Match: the versions any of which must be current (-1: a tag that
     * never matches). 0 tags: no If-Match, or '*' (any current version). */
    int64_t if_match[SD_PRECOND_TAGS];
    int n_if_match;
    /* If-None-Match: versions none of which may be current (compared
     * weakly: W/"3" names version 3); any: '*', whatever the version. */
    int64_t if_none_match[SD_PRECOND_TAGS];
    int n_if_none_match;
    bool if_none_match_any;
} sd_precond;

typedef enum sd_precond_result {
    SD_PRECOND_HOLDS,  /* go on */
    SD_PRECOND_FAILED, /* If-Match names no current version: 412 */
    SD_PRECOND_NONE,   /* If-None-Match names it: 304 for GET and HEAD, 412 otherwise */
} sd_precond_result;

/* Parses the two headers' values (NULL: absent; an empty value counts as
 * absent). If-Match compares strongly, so a weak tag there never matches;
 * only its first SD_PRECOND_TAGS elements are looked at (a version past
 * them can only fail the condition). If-None-Match compares weakly and a
 * tag past the limit could be the current version: more than
 * SD_PRECOND_TAGS elements is SD_EINVALID with a sentence for the client in
 * err. Returns 0 or SD_EINVALID. */
int sd_precond_parse(const char *if_match, const char *if_none_match, sd_precond *out, char *err,
                     size_t errlen);

/* Whether p asks anything at all. */
bool sd_precond_any(const sd_precond *p);

/* Evaluates p against a session at version (RFC 9110 section 13.2.2:
 * If-Match first, then If-None-Match). */
sd_precond_result sd_precond_eval(const sd_precond *p, int64_t version);

/* The sentence for a client whose precondition r (not HOLDS) failed
 * against a session at version, into buf. */
void sd_precond_detail(sd_precond_result r, int64_t version, char *buf, size_t n);

/* A write's check (NULL p: none): 0 when p holds for a session at version,
 * else SD_ECONFLICT with the sentence in err (a write has no 304). */
int sd_precond_check(const sd_precond *p, int64_t version, char *err, size_t n);

#endif
