/*
 * api.h - the HTTP API of sessiond: the route table and what its handlers
 * share. Handlers turn requests into calls of the session domain and the
 * store wrappers, and results into JSON; they hold no state of their own.
 */
#ifndef SD_API_H
#define SD_API_H

#include "util/brlock.h"
#include "http/server.h"
#include "jwt/claims.h"
#include "session/anomaly.h"
#include "session/session.h"
#include "store/store.h"
#include "util/jsonw.h"

#include <pthread.h>

typedef struct sd_app {
    sd_policy policy;
    sd_store_handle *store;
    const char *auth_cookie;    /* cookie GET /auth reads the token from */
    sd_brlock keys_lock;        /* guards keys (swapped on SIGHUP; read by every request) */
    struct sd_keys *keys;       /* NULL: no caller authentication (loopback only) */
    struct sd_limiter *guesses; /* failed validations per client address; NULL: off */
    double audit_sample;        /* fraction of successful validations audited */
    pthread_rwlock_t jwt_lock;  /* guards jwt_keys (swapped on SIGHUP) */
    struct sd_jwks *jwt_keys;   /* JWT signing keys; NULL: no access tokens */
    sd_jwt_options jwt;         /* the access tokens' claims and lifetime */
    /* minted tokens handed out again (--jwt-reuse; jwt/mintcache.h); NULL: every ask signs */
    struct sd_mintcache *jwt_cache;
    sd_anomaly_policy anomaly; /* anomaly signals and the geofence (api/anomaly.c) */
    bool anomaly_create;       /* create computes signals or checks the geofence */
    bool anomaly_state;        /* every validation reads the session's signals (some flag
                                  or step up): see sd_api_anomaly_wanted */
    /* --webhook deliveries (webhook/webhook.h); NULL: none */
    struct sd_webhooks *webhooks;
} sd_app;

/* The authorize hook of the HTTP layer (common.c): checks X-Api-Key (or a
 * client certificate) for the route's scope, and on POST /introspect also
 * RFC 7662 client credentials (HTTP Basic: a key's id, then the key);
 * answers 401/403 itself, and 400 to two credentials (two X-Api-Key, or
 * X-Api-Key and Authorization on /introspect). In protected mode (no keys)
 * it applies sd_api_loopback_only instead. */
int sd_api_authorize(void *app, sd_req *r, const char *scope);

/* The scope of POST /introspect ("validate"), an object of its own: the
 * authorize hook knows that route by this address (routes.c). */
extern const char sd_api_scope_introspect[];

/* Protected mode (no API keys) serves loopback addresses only, but a page in
 * a browser on the same machine can still reach it: through a DNS name it
 * rebinds to 127.0.0.1, or by sending a form or fetch from another site.
 * So a request whose Host is not a loopback name or address, or a
 * state-changing one (not GET, HEAD, OPTIONS) whose Origin is not a
 * loopback origin, is answered 403 here (returns 1); otherwise returns 0.
 * A request without Host (HTTP/1.0) or without Origin (not from a browser
 * page) passes. */
int sd_api_loopback_only(sd_req *r);

/* Whether a Host value or an Origin's authority (host, optional :port) names
 * the loopback: localhost and *.localhost (with or without a final dot),
 * 127.a.b.c in dotted decimal, [::1] or [::ffff:127.a.b.c]. n bytes of a. */
bool sd_api_loopback_authority(const char *a, size_t n);

/* True while no API keys are configured (protected mode). */
bool sd_api_protected_mode(sd_app *app);

extern const sd_route sd_api_routes[];
extern const int sd_api_nroutes;

/* ---- handlers (one file per resource) ----------------------------------- */
void sd_api_session_create(sd_req *r, void *app); /* sessions.c */
void sd_api_session_get(sd_req *r, void *app);
void sd_api_session_update(sd_req *r, void *app);
void sd_api_session_delete(sd_req *r, void *app);
void sd_api_session_refresh(sd_req *r, void *app);
void sd_api_validate_id(sd_req *r, void *app); /* validate.c */
void sd_api_validate_token(sd_req *r, void *app);
void sd_api_user_list(sd_req *r, void *app); /* users.c */
void sd_api_user_revoke(sd_req *r, void *app);
void sd_api_me_list(sd_req *r, void *app); /* me.c */
void sd_api_me_revoke(sd_req *r, void *app);
void sd_api_me_revoke_others(sd_req *r, void *app);
void sd_api_session_events(sd_req *r, void *app); /* events.c */
void sd_api_user_events(sd_req *r, void *app);
void sd_api_bulk_delete(sd_req *r, void *app);    /* admin.c */
void sd_api_not_before_get(sd_req *r, void *app); /* incident.c */
void sd_api_not_before_set(sd_req *r, void *app);
void sd_api_triage_revoke(sd_req *r, void *app);
void sd_api_forward_auth(sd_req *r, void *app); /* auth.c */
void sd_api_introspect(sd_req *r, void *app);
void sd_api_jwks(sd_req *r, void *app); /* tokens.c */
void sd_api_session_token(sd_req *r, void *app);
void sd_api_revocations(sd_req *r, void *app);
void sd_api_healthz(sd_req *r, void *app); /* health.c */
void sd_api_readyz(sd_req *r, void *app);
void sd_api_metrics(sd_req *r, void *app);
void sd_api_console_redirect(sd_req *r, void *app); /* console.c */
void sd_api_console_index(sd_req *r, void *app);
void sd_api_console_asset(sd_req *r, void *app);
void sd_api_account_redirect(sd_req *r, void *app); /* console.c: the self-service page */
void sd_api_account_index(sd_req *r, void *app);
void sd_api_account_asset(sd_req *r, void *app);

/* The validation core (validate.c), shared by /sessions/validate, /auth and
 * /introspect: shape check, hash, index lookup, expiry, rolling touch, and
 * reuse detection (a token rotated away past --refresh-grace revokes its
 * session; the answer is invalid and does not wait for that write).
 * Returns 1 (valid: c->s filled, owned by the caller; c->expiry the enforced
 * expiry), 0 (invalid for any reason; audited as validation_failed with
 * r's client), or a negative store error. The caller wipes the token. */
#define SD_MAX_USER_ID 256

typedef struct sd_check {
    bool touch;             /* rolling expiry */
    const char *ip;         /* the client's context, for bound sessions; NULL: unknown */
    const char *user_agent; /* (a bound session fails closed without it) */
    bool to_header;         /* the user id goes into a header (GET /auth): a session
                               whose id breaks the identifier rule (stored before
                               it) is invalid, never forwarded altered */
    bool has_geo;           /* geo: where the client is now (the validate body's
                               geoLocation), for the geofence and the anomaly signals */
    sd_geo geo;
    /* out */
    sd_session s;                         /* valid: the session, owned by the caller */
    int64_t expiry;                       /* valid: the enforced expiry */
    bool binding_mismatch;                /* the context does not match the session's binding
                                             (invalid with --binding-policy enforce, else valid) */
    bool unforwardable;                   /* to_header and the user id breaks the rule: invalid */
    unsigned signals;                     /* valid: the session's flagged anomaly signals
                                             (1 << sd_signal) */
    const char *refused;                  /* invalid: "step_up_required" or "geofence" (the
                                             country has a rule against it); else NULL */
    char user_id_buf[SD_MAX_USER_ID + 1]; /* where s.user_id is read to (no malloc) */
} sd_check;

int sd_api_check_token(sd_app *app, sd_req *r, const char *token, size_t len, sd_check *c);

/* ---- anomaly signals and the geofence (anomaly.c) ------------------------ */

/* Sets app->anomaly_create and app->anomaly_state from app->anomaly. */
void sd_api_anomaly_init(sd_app *app);

/* At create, after the domain built c->w.session: the geofence (403 and
 * geofence_refused when the body's country is refused), the geoGroup (400
 * when no --geo-groups rule has it), and the anomaly signals against the
 * user's live sessions, which c->w.signals then carries to the write (in
 * c->extra). Returns 0 to go on, or -1 after answering. */
struct sd_api_write;
int sd_api_anomaly_create(sd_app *app, sd_req *r, struct sd_api_write *c);

/* Whether session s has a step-up pending (validation by id, when
 * app->anomaly_state): 1, 0, or a store error. One read of its attrs. */
int sd_api_anomaly_step_up(sd_app *app, const sd_session *s);

/* Logs each signal the write w recorded (on session_id), with its detail
 * (distance, speed ...): the completion of a create or an SD_W_SIGNAL. */
void sd_api_anomaly_log(const sd_write *w, const char *session_id);

/* At validation of a valid session c->s, when c->has_geo or
 * app->anomaly_state (else it is never called: the plain path costs
 * nothing): reads the session's attrs once, applies the geofence, the
 * pending step-up and the signals of this validation (recorded by an
 * SD_W_SIGNAL write that is not awaited). Returns 1 (still valid;
 * c->signals set), 0 (invalid, c->refused says why; audited) or a store
 * error. */
int sd_api_anomaly_check(sd_app *app, sd_req *r, sd_check *c, int64_t now);

/* Whether the global not-before (POST /admin/not-before) has cut session s
 * off: 1 (created before it: invalid everywhere), 0, or a store error
 * (SD_EUNAVAILABLE: it cannot be known now; fail closed). O(1). */
int sd_api_cut_off(sd_app *app, const sd_session *s);

/* Guessing defence (validate.c): 0 when r's client may present a token now,
 * SD_ETHROTTLED while its failures have emptied its bucket. */
int sd_api_guess_wait(sd_app *app, sd_req *r);
/* Counts a failed presentation of a token by the client at address; the
 * moment its bucket empties is logged and audited (client_throttled). */
void sd_api_guess_failed(sd_app *app, const char *address, const char *actor);

/* Mints an access token for s (tokens.c) under the JWT keys' read lock.
 * Returns 0 (*jwt in arena a: the request's), SD_ENOTFOUND when the
 * session ends within the second, SD_ECONFIG without --jwt-keys, or
 * SD_EINVALID / SD_ERANDOM / SD_ENOMEM (jwt/claims.h). */
int sd_api_mint(sd_app *app, const sd_session *s, int64_t now, sd_arena *a, const char **jwt,
                int64_t *expires_in);
/* True when --jwt-keys is configured (tokens.c). */
bool sd_api_jwt_enabled(sd_app *app);
/* An access token for the session c found valid (sd_api_check_token
 * returned 1). With app->jwt_cache, the token minted for the same version
 * of the session under the same keys, while most of its lifetime remains
 * and its exp is within c's expiry bound (*expires_in: the seconds it has
 * left); otherwise mints one: reads the session's optional fields (amr,
 * --jwt-claims) once, with c->expiry (the rolling touch) as its expiry,
 * and remembers the token. Returns what sd_api_mint does (SD_ENOTFOUND
 * also when the session ended meanwhile). *jwt in arena a. */
int sd_api_mint_checked(sd_app *app, const sd_check *c, int64_t now, sd_arena *a, const char **jwt,
                        int64_t *expires_in);
/* Appends the access-token cache's series (sessiond_jwt_reuse_*) to the
 * metrics text *buf (malloc'd, *len bytes); nothing without the cache.
 * 0 or SD_ENOMEM (*buf still the caller's). */
int sd_api_jwt_metrics(sd_app *app, char **buf, size_t *len);
/* The query ?accessToken=true|false of validate and refresh: 0 with *want
 * set, or answers 400 (a bad value, or true without --jwt-keys) and
 * returns -1. */
int sd_api_want_access_token(sd_req *r, sd_app *app, bool *want);

/* ---- shared by the handlers (common.c) ---------------------------------- */

/* Parses the request body as JSON. On failure answers 400 and returns NULL.
 * New reference. */
json_t *sd_api_body(sd_req *r);

/* Answers 400 (naming `expected`) and returns -1 when the object body has a
 * member not in names (NULL-terminated); else 0. */
int sd_api_known_fields(sd_req *r, json_t *body, const char *const *names, const char *expected);

/* Answers a failed domain or store result: SD_ENOTFOUND 404, SD_ECONFLICT
 * 412, SD_EINVALID 400 with detail, anything else 503. */
void sd_api_fail(sd_req *r, int rc, const char *detail);

/* ---- conditional requests on a session (precond.c) ---------------------- */

/* Reads If-Match and If-None-Match into out: 0, or answers 400 and returns
 * -1 (session/precond.h says when). */
int sd_api_preconds(sd_req *r, sd_precond *out);
/* A read's preconditions against the session's version: 0 to go on, or
 * answers (412, or 304 Not Modified when If-None-Match names it: GET and
 * HEAD only call this) and returns -1. */
int sd_api_precond_answer(sd_req *r, const sd_precond *p, int64_t version);
/* Answers 412 with the session's ETag and detail. */
void sd_api_precondition_failed(sd_req *r, int64_t version, const char *detail);
/* Answers a failed write as sd_api_fail does; a failed precondition's 412
 * carries the session's ETag (w->version_found). */
void sd_api_fail_write(sd_req *r, const sd_write *w);

/* A session's ETag for its version: "N", strong. */
#define SD_API_ETAG_LEN 24
void sd_api_etag(int64_t version, char out[SD_API_ETAG_LEN]);

/* Answers 200/201 with the session's JSON (plus token when given) and its
 * ETag; extra headers may add Location. */
void sd_api_reply_session(sd_req *r, int status, const sd_session *s, const char *token,
                          const char *location);
/* The same with the members of extra (stolen; may be NULL) added. */
void sd_api_reply_session_with(sd_req *r, int status, const sd_session *s, const char *token,
                               const char *location, json_t *extra);

/* The token of an `Authorization: Bearer <token>` header (surrounding
 * spaces skipped), or NULL when there is no such header or it is empty.
 * *other is set when an Authorization header of another scheme is present. */
const char *sd_api_bearer(const sd_req *r, bool *other);

/* The session token of a request: `Authorization: Bearer`, else the
 * --auth-cookie cookie (auth.c). Returns it (borrowed from the request;
 * *len bytes, not NUL-terminated when from the cookie) or NULL when there is
 * neither; *from_cookie says where it came from. */
const char *sd_api_request_token(sd_req *r, sd_app *app, size_t *len, bool *from_cookie);

/* One page of user's active sessions (but those the global not-before cut
 * off: a page may hold fewer than the limit), lastSeen descending, as the query's
 * 'limit' and 'cursor' ask (users.c). Returns 0 with *v (*n sessions,
 * sd_sessions_free), *shown of them for this page and *next (a new
 * reference: the next page's cursor, or JSON null); or -1 after answering. */
int sd_api_user_page(sd_req *r, sd_app *app, const char *user, sd_session **v, size_t *n,
                     size_t *shown, json_t **next);

/* Checks a userId that names existing sessions (a path's, a bulk
 * revocation's): 1..256 bytes of UTF-8 without C0 controls or DEL, the rule
 * creates followed before the identifier rule (sd_ident_check), so sessions
 * stored before it can still be listed and revoked. The id is compared
 * byte for byte with the stored ones, never trimmed or folded. */
int sd_api_user_id_ok(const char *user_id);

/* The userId of the path's first capture, or NULL after answering 400. */
const char *sd_api_path_user(sd_req *r);

/* Query 'limit' (dflt when absent, 1..max). Returns 0, or answers 400 and
 * returns -1. */
int sd_api_query_limit(sd_req *r, int dflt, int max, int *limit);

/* Replies written with util/jsonw.h in the request's arena (the hot
 * routes): answers status with the text and headers, or 503 when the
 * writer ran out of memory. */
void sd_api_reply_jw(sd_req *r, int status, sd_jw *w, const char *const *headers);

/* n bytes of application/x-www-form-urlencoded text decoded ('+' a space,
 * %XX a byte), malloc'd (the caller frees; the undecoded copy is wiped, as
 * it may hold a secret); NULL on a bad escape, %00 or no memory. */
char *sd_api_form_decode(const char *s, size_t n);
/* The same into out (n + 1 bytes, NUL-terminated; out may be s itself: it
 * decodes in place). Returns the decoded length, or -1. */
long sd_api_form_decode_into(const char *s, size_t n, char *out);

/* A write in flight, with what its completion needs to answer. */
typedef struct sd_api_write {
    sd_write w; /* w.udata points back here */
    sd_req *req;
    sd_app *app;
    json_t *body; /* owned: keeps borrowed strings of the write alive */
    sd_patch patch;
    sd_precond pre; /* UPDATE (through patch.pre), END: the request's preconditions */
    char token[SD_TOKEN_LEN + 1];
    const char **list;        /* owned array for bulk writes */
    bool want_jwt;            /* refresh: an access token is asked for too */
    void *extra;              /* owned (malloc'd): what a handler keeps for the write */
    void (*done)(sd_write *); /* the handler's completion, run on its loop thread */
} sd_api_write;

/* Allocates a write of kind whose completion calls done on the request's
 * loop thread, not the store's (an UPDATE or a
 * ROTATE with the global not-before in force); answers 503 and returns NULL
 * when out of memory or when the not-before cannot be known. */
sd_api_write *sd_api_write_new(sd_req *r, sd_app *app, sd_write_kind kind,
                               void (*done)(sd_write *));
/* Frees it (wiping the token). */
void sd_api_write_free(sd_api_write *c);

#endif
