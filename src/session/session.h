/*
 * session.h - the session domain: what a session is, how client input
 * becomes one, how an update applies, and the expiry policy (idle, absolute,
 * rolling). Pure functions of their inputs and a clock value: no I/O, no
 * HTTP, no store. Handlers call these; the store runs sd_patch_apply inside
 * its write transaction, so an update is a read-modify-write no one can race.
 */
#ifndef SD_SESSION_H
#define SD_SESSION_H

#include "session/precond.h"
#include "session/token.h"

#include "util/jsonw.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct sd_policy {
    int64_t idle_timeout_ms;         /* default idle timeout */
    int64_t absolute_timeout_ms;     /* lifetime from creation */
    int64_t max_absolute_timeout_ms; /* clamp for lifetimeSeconds (0: absolute_timeout_ms) */
    int64_t max_idle_timeout_ms;     /* clamp for ttlSeconds */
    double touch_fraction;           /* rolling-expiry coalescing */
    size_t max_data_bytes;           /* JSON size of `data` */
    int max_per_user;                /* active sessions a user may have; 0: no limit */
    bool evict_oldest;               /* at the limit: end the least recently seen (else refuse) */
    int64_t refresh_grace_ms;        /* a rotated token's race window (refresh and validation) */
    int bind_v4_prefix;              /* bits of an IPv4 address a binding keeps */
    int bind_v6_prefix;              /* bits of an IPv6 address a binding keeps */
    bool bind_enforce;               /* a binding mismatch fails validation (else only flagged) */
} sd_policy;

#define SD_ACR_MAX 32

/* Optional binding of a session to its client's context, chosen at
 * creation: the network of its ipAddress and/or its userAgent. Compact and
 * fixed-size, so that the validation index carries it. */
enum { SD_BIND_IP = 1, SD_BIND_UA = 2 };
typedef struct sd_binding {
    unsigned char flags;  /* SD_BIND_*; 0: not bound */
    unsigned char family; /* 4 or 6 */
    unsigned char prefix; /* bits of ip that count */
    unsigned char ip[16]; /* masked to prefix */
    unsigned char ua[16]; /* SHA-256(userAgent), first 16 bytes */
} sd_binding;

typedef struct sd_session {
    char id[SD_ID_LEN + 1];
    unsigned char token_hash[SD_HASH_LEN];
    char *user_id;      /* owned, NUL-terminated; or in user_id_buf (then not freed) */
    int64_t created_at; /* all times: ms since the epoch */
    int64_t last_seen;
    int64_t expiry; /* idle expiry; invariant: expiry <= absolute_expiry */
    int64_t absolute_expiry;
    int64_t idle_ttl; /* ms; what one unit of activity extends by */
    int64_t version;
    json_t *attrs; /* owned reference or NULL: the optional fields, mfa, amr, data */
    sd_binding binding;
    int64_t auth_time;        /* when the user authenticated (default: creation) */
    char acr[SD_ACR_MAX + 1]; /* assurance level ("aal2", ...); "" when not given */
    /* Optional, set by the caller before a read (validation, the hot path):
     * memory of the caller's, outliving the struct, where a store may put
     * user_id instead of a malloc (sd_session_set_user_id). Readers that
     * do not know it zero it with the rest. */
    char *user_id_buf;
    size_t user_id_cap;
} sd_session;

/* Sets s->user_id to a copy of n bytes of uid: in user_id_buf when it fits,
 * malloc'd otherwise. Returns 0 or SD_ENOMEM. */
int sd_session_set_user_id(sd_session *s, const char *uid, size_t n);

/* True when the client context (ip, user_agent; NULL when unknown) matches
 * what s is bound to; always true for an unbound session. */
bool sd_binding_matches(const sd_binding *b, const char *ip, const char *user_agent);

/* The create body's "bind" v ({"ip": bool, "userAgent": bool}) into out,
 * from the body's ipAddress and userAgent, masked to p's prefixes. 0, or
 * SD_EINVALID with a sentence in err. */
int sd_binding_parse(const json_t *body, const json_t *v, const sd_policy *p, sd_binding *out,
                     char *err, size_t n);

/* Frees what s owns and zeroes it. Safe on a zeroed struct. */
void sd_session_clear(sd_session *s);

/* Deep copy of src into dst (dst's old contents are not freed). */
int sd_session_copy(sd_session *dst, const sd_session *src);

/* Active: now is before both expiries. Decided here, never by a TTL. */
bool sd_session_active(const sd_session *s, int64_t now);

/* The public JSON view (never the token or its hash): its members written
 * into an open object of w, without a tree (the replies of create, update
 * and get: no allocation but the arena's); the caller opens the object and
 * may add members after. */
void sd_session_jw(sd_jw *w, const sd_session *s);
/* s's userId as a JSON string value. Stored ids are valid UTF-8 (every
 * create checks it); one that is not is written with U+FFFD for each bad
 * byte, as the writer does, and logged (the reply no longer names exactly
 * the stored id). */
void sd_session_jw_user_id(sd_jw *w, const sd_session *s);

/* The same view as a jansson tree (sd_session_jw's text parsed: written
 * once), for the cold routes that pick from it. New reference; NULL when
 * out of memory. */
json_t *sd_session_to_json(const sd_session *s);

/* The identifier rule, for every client-chosen identifier that can reach an
 * HTTP header or a log line (userId, deviceId, acr, each amr entry): 1 to
 * max bytes of valid UTF-8 (no overlong forms, no surrogates); no control
 * character (C0 U+0000-U+001F, DEL U+007F, C1 U+0080-U+009F) and no line
 * or paragraph separator (U+2028, U+2029) anywhere; no whitespace at either
 * end, so none is empty or only whitespace. Whitespace is Unicode's
 * White_Space plus U+FEFF (what JavaScript's \s matches). Inner spaces are
 * allowed. HTTP parsers strip spaces around a header's value, so an id with
 * spaces at an end would reach an application behind a gateway as another
 * user's id; control characters and separators would split or alter
 * headers and log lines.
 * Returns NULL when the len bytes at s follow the rule, else what they
 * break, as a phrase for a 400's detail ("must not ..."). Static string. */
const char *sd_ident_check(const char *s, size_t len, size_t max);

/* The rule above in one sentence, for details and documentation. */
#define SD_IDENT_RULE                                                                              \
    "1 to %zu bytes of UTF-8 without control characters (U+0000-U+001F, U+007F-U+009F), "          \
    "U+2028 or U+2029, and without whitespace at either end"

/* The longest lifetime a session of policy p may have: the larger of
 * absolute_timeout_ms and max_absolute_timeout_ms. */
int64_t sd_policy_max_lifetime(const sd_policy *p);

/* Builds a new session from a create body. Mints the id and the token
 * (written to token_out, for the create response only). Returns 0,
 * SD_EINVALID with a sentence for the client in err, or SD_ERANDOM. */
int sd_session_from_create(const json_t *body, const sd_policy *p, int64_t now, sd_session *out,
                           char token_out[SD_TOKEN_LEN + 1], char *err, size_t errlen);

/* A parsed, validated PUT body. Borrowing: body must outlive the patch. */
typedef struct sd_patch {
    const json_t *body;
    bool has_expiry, has_ttl, has_last_seen, has_version;
    int64_t expiry, ttl_ms, last_seen, version;
    const sd_precond *pre; /* If-Match, If-None-Match; NULL: none. Borrowed */
} sd_patch;

/* Validates a PUT body. Returns 0 or SD_EINVALID with err. */
int sd_patch_parse(const json_t *body, const sd_policy *p, sd_patch *out, char *err, size_t errlen);

/* Applies patch to s at time now: checks the expected version and the
 * preconditions (SD_ECONFLICT), clamps expiry to absoluteExpiry, merges data
 * (RFC 7396), bumps version. Returns 0, SD_ENOTFOUND (s no longer active),
 * SD_ECONFLICT or SD_EINVALID, each of the last two with err. On error s is unchanged. */
int sd_patch_apply(const sd_patch *patch, const sd_policy *p, sd_session *s, int64_t now, char *err,
                   size_t errlen);

/* Rolling expiry. Sets *new_expiry to the expiry that activity at now earns
 * (never past absoluteExpiry, never earlier than the current one) and returns
 * true when the move is large enough to be worth a write (touch_fraction). */
bool sd_session_touch(const sd_session *s, const sd_policy *p, int64_t now, int64_t *new_expiry);

/* Token rotation (refresh-token rotation with reuse detection, RFC 9700).
 * Given what the presented token is to the session, decides:
 * ROTATE - it is the current token: issue a new one;
 * RACE - it was rotated away less than grace ago (two requests of one
 *        client raced): refuse, revoke nothing;
 * REUSE - it was rotated away longer ago: treat as theft, end the session;
 * MISMATCH - it was never this session's token. */
/* True when the update from `before` to `after` raised the session's
 * privilege (mfa false -> true): the token must be renewed (session
 * fixation defence, OWASP; security checklist item 13). */
bool sd_privilege_raised(const sd_session *before, const sd_session *after);

enum sd_rotation { SD_ROTATE, SD_ROTATE_RACE, SD_ROTATE_REUSE, SD_ROTATE_MISMATCH };
enum sd_rotation sd_rotation_decide(bool is_current, bool was_rotated, int64_t rotated_at,
                                    int64_t now, int64_t grace_ms);

#endif
