/*
 * triage.h - which sessions an incident-response revocation ends (issue 19
 * item 6): those whose stored client address lies in a network (CIDR), or
 * whose deviceId is a given one. Pure functions over a session's attrs;
 * session/write.c applies them to every active row in bounded batches
 * (SD_W_TRIAGE), because the attrs may be sealed at rest and only C can
 * read them.
 */
#ifndef SD_TRIAGE_H
#define SD_TRIAGE_H

#include "session/session.h"

#include <stdbool.h>

typedef struct sd_triage {
    int family;            /* AF_INET or AF_INET6: a network; 0: a deviceId */
    unsigned char net[16]; /* the network's address (host bits zero) */
    int prefix;            /* its prefix length in bits */
    const char *device_id; /* borrowed; when family is 0 */
} sd_triage;

/* Parses "a.b.c.d/n" or "x:y::/n" (a bare address: one host) into t.
 * SD_EINVALID with a sentence in err for anything else, a prefix out of
 * range, or host bits set (a typo must not revoke another network). */
int sd_triage_network(const char *text, sd_triage *t, char *err, size_t errlen);

/* Whether session s (its attrs: "ipAddress", "deviceId") matches t. */
bool sd_triage_match(const sd_triage *t, const sd_session *s);

#endif
