/*
 * claims.h - what a sessiond JWT access token says (issue 18), built from a
 * session: pure functions of the session, the options and a clock value,
 * plus the one call that signs them (jwk.h).
 *
 * Claims: iss, sub (the userId), aud, iat, nbf (= iat), exp, jti (128
 * random bits), sid (the sessionId), auth_time, acr and amr when the
 * session has them, and the session fields --jwt-claims names (top-level
 * fields of the session's public JSON, e.g. deviceId, mfa, data), under
 * their own names. Never the session token or its hash: they are not in the
 * session's public JSON, and the reserved names cannot be chosen.
 *
 * Lifetime: exp = min(now + lifetime, the session's idle expiry, its
 * absolute expiry), in whole seconds rounded down, so a token never
 * outlives its session as it stood when the token was minted.
 */
#ifndef SD_JWT_CLAIMS_H
#define SD_JWT_CLAIMS_H

#include "jwt/jwk.h"
#include "session/session.h"

#include "util/jsonw.h"

#include <stdint.h>

typedef struct sd_jwt_options {
    const char *issuer;   /* iss */
    const char *audience; /* aud: one value, or a comma-separated list (an array) */
    int64_t lifetime_ms;  /* the longest a token lives */
    const char *claims;   /* comma-separated session fields to copy; "" for none */
} sd_jwt_options;

/* Checks a --jwt-claims list: names of the session's public fields, none of
 * them a registered or reserved claim. Returns 0 or SD_EINVALID with err. */
int sd_jwt_claims_check(const char *list, char *err, size_t errlen);

/* The claims of a token for session s at now (ms), with jti, written as a
 * JSON object by w (util/jsonw.h: into its arena, no tree); *expires_in:
 * seconds from iat to exp. Returns 0, SD_ENOTFOUND when the session ends
 * within the second (no token would live a second; nothing written),
 * SD_EINVALID when the user id is not valid UTF-8 (sub would not be it),
 * or SD_ENOMEM. Only --jwt-claims fields cost heap calls (the session's
 * public view is built for them). */
int sd_jwt_claims(const sd_session *s, const sd_jwt_options *o, int64_t now, const char *jti,
                  sd_jw *w, int64_t *expires_in);

/* Mints a token for s with k's current key: a fresh jti from the kernel,
 * the claims above, signed (jwk.h), and encrypted when k has a recipient
 * (jwe.h). *jwt is text in arena a (the request's). Returns 0,
 * SD_ENOTFOUND or SD_EINVALID (as above), SD_ERANDOM or SD_ENOMEM. */
int sd_jwt_mint(const sd_jwks *k, const sd_jwt_options *o, const sd_session *s, int64_t now,
                sd_arena *a, const char **jwt, int64_t *expires_in);

#endif
