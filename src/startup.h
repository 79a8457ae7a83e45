/*
 * startup.h - what a start loads from its configuration before anything
 * runs: the API keys (and protected mode's rule without them), the
 * encryption keyring, the JWT signing keys, the TLS context and the
 * webhooks. Each is checked as it loads, and a failure names what failed, so
 * the server and `sessiond check` (commands.c) load them the same way.
 */
#ifndef SD_STARTUP_H
#define SD_STARTUP_H

#include "api/keys.h"
#include "config.h"
#include "http/tls.h"
#include "jwt/jwk.h"
#include "store/crypt.h"
#include "store/store.h"
#include "webhook/webhook.h"

#include <stdbool.h>

/* What sd_startup_load loaded; NULL members: not configured. Owned by the
 * caller (sd_startup_free, or taken over member by member). */
typedef struct sd_loaded {
    sd_keys *keys;
    sd_keyring *ring;
    sd_jwks *jwt_keys;
    sd_tls *tls;
    sd_webhooks *webhooks;
} sd_loaded;

/* Loads everything cfg names, logging what it loaded (info) and what failed
 * (error). Returns 0, or 2 (the exit status) with nothing left loaded. */
int sd_startup_load(const sd_config *cfg, sd_loaded *out);
/* Frees what l holds and clears it. */
void sd_startup_free(sd_loaded *l);

/* The single loads, also for SIGHUP's reload: the API key file named in cfg
 * (none: *out NULL), and the JWT signing keys with their encryption key.
 * 0 or an error (logged). */
int sd_startup_load_keys(const sd_config *cfg, sd_keys **out);
int sd_startup_load_jwt_keys(const sd_config *cfg, sd_jwks **out);

/* The store cfg names (*at: where), checked against the options that go
 * with one kind only; NULL after logging why when it cannot be used. */
const sd_store_ops *sd_startup_store(const sd_config *cfg, const char **at);

/* The TLS settings of cfg in *o; NULL when cfg names no certificate. */
const sd_tls_options *sd_startup_tls_options(const sd_config *cfg, sd_tls_options *o);

/* True when the listen address can only be reached from this machine. */
bool sd_startup_loopback_only(const char *listen);

#endif
