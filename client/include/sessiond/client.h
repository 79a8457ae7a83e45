/*
 * sessiond/client.h - libsessiond-client, the C client of sessiond's HTTP API.
 *
 * One sd_client is one keep-alive connection to one server (one libcurl easy
 * handle): calls on it are sequential and reuse the connection. Use one client
 * per thread; different clients may be used from different threads at once.
 *
 * Every call returns 0 (SD_CLIENT_OK) or a negative SD_CLIENT_E* value;
 * sd_client_strerror() names it. When the server answered with an error, the
 * HTTP status and the problem's `detail` sentence stay available on the
 * client (sd_client_last_status, sd_client_last_detail) until the next call.
 *
 * Secrets: tokens travel only in `Authorization: Bearer` headers or request
 * bodies, never in URLs; the API key only in `X-Api-Key`. The client wipes its
 * copies of them when it is done with them.
 *
 * Ownership: every pointer the library returns through an `out` argument is
 * the caller's, freed with the matching *_free function (NULL is accepted).
 * Input strings are read during the call only.
 *
 * Link: pkg-config --cflags --libs sessiond-client
 */
#ifndef SESSIOND_CLIENT_H
#define SESSIOND_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SD_CLIENT_VERSION "0.1.0"

/* The error values. A problem answered by the server maps from its status. */
#define SD_CLIENT_ERRNO_MAP(X)                                                                     \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(ECONNECT, -3, "cannot connect to the server")                                                \
    X(ETIMEDOUT, -4, "timed out")                                                                  \
    X(ETLS, -5, "TLS handshake or certificate verification failed")                                \
    X(ETRANSPORT, -6, "connection failed during the exchange")                                     \
    X(EPROTO, -7, "unexpected response from the server")                                           \
    X(EBADREQ, -8, "the server refused the request as malformed (4xx)")                            \
    X(EAUTH, -9, "missing or unknown API key (401)")                                               \
    X(EFORBIDDEN, -10, "the API key lacks the scope for this call (403)")                          \
    X(ENOTFOUND, -11, "not found (404)")                                                           \
    X(ECONFLICT, -12, "conflict (409)")                                                            \
    X(EPRECONDITION, -13, "version mismatch (412)")                                                \
    X(ELIMIT, -14, "too many requests or sessions (429)")                                          \
    X(EUNAVAILABLE, -15, "server unavailable or overloaded (503)")                                 \
    X(EHTTP, -16, "unexpected HTTP status")                                                        \
    X(EJWT_MALFORMED, -17, "access token: not a well-formed signed JWT of sessiond's")             \
    X(EJWT_ALG, -18, "access token: algorithm not allowed, or not its key's")                      \
    X(EJWT_KID, -19, "access token: no published key has its kid")                                 \
    X(EJWT_SIGNATURE, -20, "access token: the signature does not verify")                          \
    X(EJWT_EXPIRED, -21, "access token: expired")                                                  \
    X(EJWT_NOT_YET_VALID, -22, "access token: not valid yet (nbf or iat in the future)")           \
    X(EJWT_AUDIENCE, -23, "access token: not for this audience")                                   \
    X(EJWT_ISSUER, -24, "access token: from another issuer")                                       \
    X(EJWT_REVOKED, -25, "access token: its session was revoked")                                  \
    X(EJWT_CLAIMS, -26, "access token: a required claim is missing or malformed")                  \
    X(EJWT_ENCRYPTION, -27, "access token: not encrypted for this verifier's key, or altered (JWE)")

enum {
    SD_CLIENT_OK = 0,
#define SD_CLIENT_ERR_ENUM(name, code, text) SD_CLIENT_##name = (code),
    SD_CLIENT_ERRNO_MAP(SD_CLIENT_ERR_ENUM)
#undef SD_CLIENT_ERR_ENUM
};

/* A static sentence naming rc (never NULL). */
const char *sd_client_strerror(int rc);

/* ------------------------------------------------------------------ */
/* The client                                                         */
/* ------------------------------------------------------------------ */

typedef struct sd_client sd_client;

/* Zero-initialise, then set what you need. Strings are copied by open. */
typedef struct sd_client_options {
    const char *base_url;    /* default "http://127.0.0.1:8080"; http or https */
    const char *api_key;     /* sent as X-Api-Key; NULL: none (protected mode) */
    long connect_timeout_ms; /* 0: 5000 */
    long timeout_ms;         /* whole request; 0: 30000 */
    const char *ca_file;     /* PEM CA bundle for https; NULL: the system's */
    const char *ca_path;     /* directory of hashed CA certificates */
    const char *cert_file;   /* client certificate (PEM) for mutual TLS */
    const char *key_file;    /* its private key (PEM) */
    const char *user_agent;  /* default "libsessiond-client/VERSION" */
} sd_client_options;

/* Creates a client; nothing is sent until the first call. opt may be NULL. */
int sd_client_open(const sd_client_options *opt, sd_client **out);
/* Closes the connection and frees c (NULL is fine). */
void sd_client_close(sd_client *c);

/* The HTTP status of the last exchange (0 when none reached the server). */
int sd_client_last_status(const sd_client *c);
/* The last error's detail: the server's problem `detail`, or the transport's
 * message; "" when there is none. Valid until the next call on c. */
const char *sd_client_last_detail(const sd_client *c);
/* X-Request-Id of the last response ("" when none). Valid until the next call. */
const char *sd_client_last_request_id(const sd_client *c);

/* Retries, off until this is called: a call that changes nothing (every GET,
 * the validations, introspection, access tokens) is sent again when the
 * server answers 503 or cannot be reached or the connection breaks, at most
 * max_retries times (0 turns retries off; at most 10). Before each retry
 * the client sleeps what the answer's Retry-After asks, or else a backoff
 * from 100 ms doubling, drawn at random from its upper half; never more than
 * max_wait_ms in all (0: 10000) - a Retry-After longer than what is left
 * of that ends the retries, and the call returns the 503 at once. A write
 * (create, update, delete, refresh, revoke) is never retried: after a 503
 * or a broken connection it may have been done or not; read it back.
 * SD_CLIENT_EINVAL for values out of range. */
int sd_client_set_retry(sd_client *c, int max_retries, long max_wait_ms);
/* How many retries the last call made (0 when the first answer stood). */
int sd_client_last_retries(const sd_client *c);

/* ------------------------------------------------------------------ */
/* Sessions                                                           */
/* ------------------------------------------------------------------ */

/* A session as the server shows it. Optional strings are NULL when absent. */
typedef struct sd_client_session {
    char *session_id;
    char *user_id;
    char *device_id;
    char *device_info;
    char *user_agent;
    char *ip_address;
    char *geo_location; /* JSON text (a string or an object), or NULL */
    char *data;         /* JSON text of the data object */
    int mfa;            /* 0 or 1 */
    char *created_at;   /* RFC 3339 UTC, e.g. 2026-11-28T02:33:35.123Z */
    char *last_seen;
    char *expiry;
    char *absolute_expiry;
    int64_t version;
    char *token; /* only after create, refresh, or an update that renewed it */
    char *json;  /* the whole object as compact JSON (holds the token if any) */
} sd_client_session;

/* Frees s and its strings; wipes the token first. */
void sd_client_session_free(sd_client_session *s);

/* POST /sessions. user_id is required; NULL members are left out. */
typedef struct sd_client_new_session {
    const char *user_id;
    const char *device_id;
    const char *device_info;
    const char *user_agent;
    const char *ip_address;
    const char *geo_location; /* JSON text: "\"Paris\"" or an object */
    const char *data;         /* JSON text of an object */
    int mfa;                  /* 0 or 1 */
    int64_t ttl_seconds;      /* 0: the server's --idle-timeout */
    int bind_ip;              /* 1: bind to the network of ip_address */
    int bind_user_agent;      /* 1: bind to user_agent */
} sd_client_new_session;

/* Creates a session; *out holds the token (shown this once). */
int sd_client_create(sd_client *c, const sd_client_new_session *req, sd_client_session **out);
/* The same, with the session's own absolute lifetime (lifetimeSeconds, > 0):
 * a "remember me" session of 30 days, a kiosk's of 10 minutes. The server
 * reduces it to its --max-absolute-timeout. */
int sd_client_create_with_lifetime(sd_client *c, const sd_client_new_session *req,
                                   int64_t lifetime_seconds, sd_client_session **out);

/* GET /sessions/{id}. SD_CLIENT_ENOTFOUND when not active. */
int sd_client_get(sd_client *c, const char *session_id, sd_client_session **out);

enum { SD_CLIENT_MFA_KEEP = 0, SD_CLIENT_MFA_FALSE = 1, SD_CLIENT_MFA_TRUE = 2 };

/* PUT /sessions/{id}: a partial update; zero members are left unchanged. */
typedef struct sd_client_update {
    int64_t if_match;         /* > 0: sent as If-Match: "N" (412 on a race) */
    int64_t version;          /* > 0: the body's `version` expectation */
    const char *expiry;       /* RFC 3339 */
    int64_t ttl_seconds;      /* > 0 */
    const char *last_seen;    /* RFC 3339 */
    const char *geo_location; /* JSON text; "null" removes it */
    const char *device_info;  /* new text */
    int remove_device_info;   /* 1: send deviceInfo: null */
    int mfa;                  /* SD_CLIENT_MFA_* */
    const char *data;         /* JSON text of an RFC 7396 merge patch */
} sd_client_update;

/* Updates a session; *out (optional, may be NULL) gets the result, with a new
 * token when mfa went from false to true. SD_CLIENT_EPRECONDITION on a race. */
int sd_client_update_session(sd_client *c, const char *session_id, const sd_client_update *u,
                             sd_client_session **out);

/* DELETE /sessions/{id}: revoke. SD_CLIENT_ENOTFOUND when not active. */
int sd_client_delete(sd_client *c, const char *session_id);
/* The same only while the session is at version (> 0; sent as If-Match:
 * "N"): SD_CLIENT_EPRECONDITION, and nothing ends, when it has changed since. */
int sd_client_delete_if(sd_client *c, const char *session_id, int64_t version);

/* POST /sessions/{id}/refresh with the current token: *out has the new one. */
int sd_client_refresh(sd_client *c, const char *session_id, const char *token,
                      sd_client_session **out);

/* ------------------------------------------------------------------ */
/* Validation                                                         */
/* ------------------------------------------------------------------ */

typedef struct sd_client_validation {
    int valid;             /* 1 valid, 0 not (unknown, malformed, ended, expired) */
    char expiry[32];       /* "" when not valid */
    char session_id[32];   /* by token only */
    char user_id[257 * 4]; /* by token only */
    char reason[32];       /* not valid: "binding_mismatch" or "step_up_required" when that
                              is why, else "" */
    int binding_mismatch;  /* valid, but from another context (--binding-policy flag) */
} sd_client_validation;

/* POST /sessions/validate with Authorization: Bearer. touch = 0 asks the
 * server not to extend the session (?touch=false). An invalid token is not an
 * error: 0 with out->valid = 0. */
int sd_client_validate_token(sd_client *c, const char *token, int touch, sd_client_validation *out);
/* The same with the end client's context (either may be NULL), which a
 * session created with bind_ip / bind_user_agent needs to validate. */
int sd_client_validate_token_ctx(sd_client *c, const char *token, int touch, const char *ip_address,
                                 const char *user_agent, sd_client_validation *out);
/* GET /sessions/{id}/validate: never extends the session. */
int sd_client_validate_id(sd_client *c, const char *session_id, sd_client_validation *out);

typedef struct sd_client_introspection {
    int active;
    char sub[257 * 4]; /* the userId */
    char sid[32];      /* the sessionId */
    int64_t exp, iat;  /* seconds since the epoch */
} sd_client_introspection;

/* POST /introspect (RFC 7662, the token in a form body). */
int sd_client_introspect(sd_client *c, const char *token, sd_client_introspection *out);

/* POST /sessions/token: a short-lived JWT access token for the session of
 * token (validated as a validation is: throttled, rolling expiry, reuse
 * detection). *access_token is the JWT (or, with --jwt-encrypt-key, the
 * JWE), a credential: wipe and free it with sd_client_free_secret;
 * *expires_in (optional) its lifetime in seconds. SD_CLIENT_EAUTH when the
 * session token is not valid (401), SD_CLIENT_ENOTFOUND when the server
 * mints no access tokens (started without --jwt-keys). */
int sd_client_access_token(sd_client *c, const char *token, char **access_token,
                           int64_t *expires_in);

/* ------------------------------------------------------------------ */
/* Self-service: a user's own sessions, by the user's session token   */
/* ------------------------------------------------------------------ */

/* A session as its user sees it: where and when, never its data or token. */
typedef struct sd_client_device {
    char *session_id;
    int current; /* 1 for the session of the token that asked ("this device") */
    char *device_id, *device_info, *user_agent, *ip_address; /* NULL when absent */
    char *geo_location;                                      /* JSON text, or NULL */
    int mfa;
    char *auth_time; /* RFC 3339, or NULL */
    char *created_at, *last_seen, *expiry;
    int64_t version; /* for sd_client_revoke_my_session's if_version */
} sd_client_device;

typedef struct sd_client_device_list {
    char *user_id;            /* the token's user */
    char *current_session_id; /* the token's session */
    sd_client_device *devices;
    size_t count;      /* lastSeen descending */
    char *next_cursor; /* pass as cursor for the next page; NULL on the last */
} sd_client_device_list;

void sd_client_device_list_free(sd_client_device_list *l);

/* GET /me/sessions with token: one page (limit 0: the server's default;
 * cursor NULL: the first). SD_CLIENT_EAUTH when the token is not valid. */
int sd_client_my_sessions(sd_client *c, const char *token, int limit, const char *cursor,
                          sd_client_device_list **out);
/* DELETE /me/sessions/{id}: signs out one of the token's user's sessions
 * (this one included). if_version > 0: only while it is at that version
 * (the listing's), else SD_CLIENT_EPRECONDITION. Another user's session is
 * SD_CLIENT_ENOTFOUND, as an unknown one. */
int sd_client_revoke_my_session(sd_client *c, const char *token, const char *session_id,
                                int64_t if_version);
/* DELETE /me/sessions: signs out every other session of the token's user;
 * *deleted (optional) counts them. */
int sd_client_revoke_my_other_sessions(sd_client *c, const char *token, int64_t *deleted);

/* ------------------------------------------------------------------ */
/* Incident response (admin scope)                                    */
/* ------------------------------------------------------------------ */

/* GET /admin/not-before: the time in force (RFC 3339) in *not_before,
 * freed with sd_client_free, or NULL when none was ever set. */
int sd_client_not_before(sd_client *c, char **not_before);
/* POST /admin/not-before: every session created before `when` (RFC 3339,
 * or "now": the server's clock) stops validating on every replica. The
 * value is only raised. *in_force (optional, sd_client_free) is the value
 * now in force; *invalidated (optional) the active sessions it cut off. */
int sd_client_set_not_before(sd_client *c, const char *when, char **in_force, int64_t *invalidated);
/* POST /admin/revoke: ends every active session from the network (CIDR,
 * e.g. "203.0.113.0/24") or of the device id; exactly one of the two.
 * dry_run 1: counts the matching sessions and ends none. *count (optional):
 * the sessions ended, or with dry_run those that match. */
int sd_client_revoke_matching(sd_client *c, const char *network, const char *device_id, int dry_run,
                              int64_t *count);

/* ------------------------------------------------------------------ */
/* Access tokens (JWT): offline verification                          */
/* ------------------------------------------------------------------ */

/*
 * A verifier checks sessiond's access tokens without asking sessiond about
 * each: EdDSA or ES256 signatures (nothing else: no "none", no HS*) with
 * the keys of GET /.well-known/jwks.json, picked by kid from that set only;
 * typ "at+jwt"; iss, aud, exp, nbf and iat with a bounded clock skew; and
 * the sid against the revocation feed (GET /revocations, scope validate).
 *
 * Network traffic happens inside sd_client_jwt_verify and sd_client_jwt_poll
 * only, on the borrowed client c (which must outlive the verifier; the
 * threading rules of c apply to the verifier too): the key set is fetched
 * at the first verification, again when older than jwks_max_age_s, and at
 * once (at most every 10 s) for a kid it does not hold; the feed is polled
 * by a verification that finds the last poll poll_interval_ms old or older.
 * A fetch or poll that fails makes that verification fail with the
 * transport's error (fail closed), never accept.
 */
typedef struct sd_client_jwt_verifier sd_client_jwt_verifier;

typedef struct sd_client_jwt_options {
    const char *issuer;    /* required: the token's iss (sessiond's --jwt-issuer) */
    const char *audience;  /* required: aud must be it, or a list holding it */
    int max_clock_skew_s;  /* allowed on exp, nbf, iat; 0: 30; at most 300 */
    int jwks_max_age_s;    /* refetch the key set after this; 0: 300 */
    long poll_interval_ms; /* 0: 5000; -1: only sd_client_jwt_poll polls */
    /* Encrypted tokens (sessiond's --jwt-encrypt-key): a PEM file with the
     * recipient's P-256 private key, read once by sd_client_jwt_verifier_new.
     * With it, only JWE tokens (ECDH-ES+A256KW, A256GCM) are accepted and
     * the signed JWT inside is verified as above; a token that is merely
     * signed is refused (SD_CLIENT_EJWT_ENCRYPTION). NULL: signed tokens. */
    const char *decrypt_key_file;
    /* A JWK Set (JSON text) to trust instead of fetching the server's: the
     * keys are parsed once, never refetched. NULL: fetch as above. With it
     * and poll_interval_ms -1, c may be NULL (no network at all: the feed
     * is then not read, and revocation reaches the verifier only at exp). */
    const char *jwks_json;
} sd_client_jwt_options;

/* What a verified token says. Strings are "" when the claim is absent. */
typedef struct sd_client_jwt_claims {
    char sub[257 * 4]; /* the userId */
    char sid[32];      /* the sessionId */
    char jti[64];
    char acr[64];
    char kid[128];
    char alg[8];
    int64_t iat, nbf, exp, auth_time; /* seconds since the epoch; 0 when absent */
} sd_client_jwt_claims;

/* Creates a verifier over c (borrowed). Nothing is fetched yet. */
int sd_client_jwt_verifier_new(sd_client *c, const sd_client_jwt_options *opt,
                               sd_client_jwt_verifier **out);
void sd_client_jwt_verifier_free(sd_client_jwt_verifier *v);

/* Verifies token (read during the call only; never logged nor kept). 0 and
 * *out (optional) filled when valid; else an SD_CLIENT_EJWT_* value saying
 * why it is refused, or a transport error from a due fetch or poll. */
int sd_client_jwt_verify(sd_client_jwt_verifier *v, const char *token, sd_client_jwt_claims *out);

/* The verifier keeps the tokens it verified, by the SHA-256 of the whole
 * token (never the token itself) with the claims they carried, so that the
 * same token verified again costs a hash instead of a signature check (and
 * a JWE's decryption). Every call still checks exp, nbf and iat against
 * the clock and the sid against the revocation feed, and polls and
 * fetches on the schedule above; a fetch of the key set empties the cache,
 * so a token of a retired key is refused as soon as the set no longer has
 * it. A new verifier keeps up to 1024 tokens (about 1.4 MB, allocated at
 * the first verification); entries 0 turns this off, at most 1048576.
 * Emptied by the call. 0 or SD_CLIENT_EINVAL. */
int sd_client_jwt_cache(sd_client_jwt_verifier *v, size_t entries);
/* How many verifications that cache answered, and how many it did not. */
void sd_client_jwt_cache_counts(const sd_client_jwt_verifier *v, int64_t *hits, int64_t *misses);

/* Polls the revocation feed now (every page). 0 or a transport error. */
int sd_client_jwt_poll(sd_client_jwt_verifier *v);
/* How many polls have completed (a test or a health check can wait on it),
 * and how many revoked sessions the verifier knows. */
int64_t sd_client_jwt_polls(const sd_client_jwt_verifier *v);
size_t sd_client_jwt_revoked_count(const sd_client_jwt_verifier *v);

/* ------------------------------------------------------------------ */
/* Users and bulk revocation                                          */
/* ------------------------------------------------------------------ */

typedef struct sd_client_session_list {
    sd_client_session **sessions; /* count entries, newest activity first */
    size_t count;
    char *next_cursor; /* pass as cursor for the next page; NULL on the last */
} sd_client_session_list;

void sd_client_session_list_free(sd_client_session_list *l);

/* GET /users/{user}/sessions: one page. limit 0: the server's default (50);
 * cursor NULL: the first page. */
int sd_client_list_user(sd_client *c, const char *user_id, int limit, const char *cursor,
                        sd_client_session_list **out);

/* DELETE /users/{user}/sessions[?except=ID]; *deleted (optional) counts them. */
int sd_client_revoke_user(sd_client *c, const char *user_id, const char *except_session_id,
                          int64_t *deleted);

/* POST /sessions/bulk-delete: up to 1000 ids in each array (either may be
 * empty, not both). Unknown or ended ids are skipped by the server. */
int sd_client_bulk_delete(sd_client *c, const char *const *session_ids, size_t n_sessions,
                          const char *const *user_ids, size_t n_users, int64_t *deleted);

/* ------------------------------------------------------------------ */
/* Audit events (admin scope)                                         */
/* ------------------------------------------------------------------ */

typedef struct sd_client_event {
    int64_t seq; /* increasing, never reused */
    char *time;
    char *event; /* created, updated, refreshed, renewed, revoked, ... */
    char *session_id;
    char *user_id;
    char *actor;          /* API key id, or NULL */
    char *client_address; /* or NULL */
    char *reason;         /* or NULL */
    char *json;           /* the event as compact JSON */
} sd_client_event;

typedef struct sd_client_event_list {
    sd_client_event *events; /* count entries, oldest first (newest first from *_newest) */
    size_t count;
    char *next; /* pass as `after` (as `before` to *_newest) for the next page; NULL when no
                   more yet */
} sd_client_event_list;

void sd_client_event_list_free(sd_client_event_list *l);

/* GET /sessions/{id}/events and GET /users/{user}/events: one page.
 * limit 0: the server's default (100); after NULL: from the first event. */
int sd_client_session_events(sd_client *c, const char *session_id, int limit, const char *after,
                             sd_client_event_list **out);
int sd_client_user_events(sd_client *c, const char *user_id, int limit, const char *after,
                          sd_client_event_list **out);
/* The same newest first (order=desc): before NULL, from the newest event;
 * else the `next` of the page before. */
int sd_client_session_events_newest(sd_client *c, const char *session_id, int limit,
                                    const char *before, sd_client_event_list **out);
int sd_client_user_events_newest(sd_client *c, const char *user_id, int limit, const char *before,
                                 sd_client_event_list **out);

/* ------------------------------------------------------------------ */
/* Operations                                                         */
/* ------------------------------------------------------------------ */

/* GET /healthz and GET /readyz: 0 when ok/ready, SD_CLIENT_EUNAVAILABLE not. */
int sd_client_health(sd_client *c);
int sd_client_ready(sd_client *c);

/* GET /metrics: the Prometheus text in *text (NUL-terminated), freed with
 * sd_client_free(). */
int sd_client_metrics(sd_client *c, char **text);

/* Frees memory the library returned as a plain pointer. */
void sd_client_free(void *p);
/* Wipes a NUL-terminated secret the library returned (an access token),
 * then frees it. */
void sd_client_free_secret(char *s);

#ifdef __cplusplus
}
#endif

#endif
