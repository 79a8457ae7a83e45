/*
 * startup.c - what a start loads from its configuration (startup.h).
 */
#include "startup.h"
#include "jwt/jwe.h"
#include "util/log.h"

#include <string.h>

bool sd_startup_loopback_only(const char *listen)
{
    return strncmp(listen, "127.", 4) == 0 || strncmp(listen, "localhost:", 10) == 0 ||
           strncmp(listen, "[::1]:", 6) == 0;
}

int sd_startup_load_keys(const sd_config *cfg, sd_keys **out)
{
    *out = NULL;
    if (!cfg->api_keys[0])
        return 0;
    char err[512];
    int rc = sd_keys_load(cfg->api_keys, out, err, sizeof err);
    if (rc)
        sd_error("%s", err);
    return rc;
}

int sd_startup_load_jwt_keys(const sd_config *cfg, sd_jwks **out)
{
    *out = NULL;
    if (!cfg->jwt_keys[0])
        return 0;
    char err[512];
    int rc = sd_jwks_load(cfg->jwt_keys, out, err, sizeof err);
    sd_jwe_key *enc = NULL;
    if (rc == 0 && cfg->jwt_encrypt_key[0] &&
        (rc = sd_jwe_key_load(cfg->jwt_encrypt_key, &enc, err, sizeof err)) != 0) {
        sd_jwks_free(*out);
        *out = NULL;
    }
    if (rc)
        sd_error("%s", err);
    else if (enc)
        sd_jwks_set_recipient(*out, enc);
    return rc;
}

const sd_store_ops *sd_startup_store(const sd_config *cfg, const char **at)
{
    const sd_store_ops *ops = sd_store_from_setting(cfg->store, cfg->data_dir, at);
    if (!ops) {
        sd_error("--store: expected 'sqlite' or a PostgreSQL connection string "
                 "(postgres://..., postgresql://... or key=value pairs)");
        return NULL;
    }
    if ((cfg->store_standby[0] || cfg->write_hold_ms) && !(ops->caps & SD_STORE_SHARED)) {
        sd_error("%s goes with a PostgreSQL --store (the embedded store %s)",
                 cfg->store_standby[0] ? "--store-standby" : "--write-hold",
                 cfg->store_standby[0] ? "has no standby" : "is always reachable");
        return NULL;
    }
    char err[300];
    if (cfg->cache[0] && sd_store_cache_check(ops, cfg->cache, err, sizeof err)) {
        sd_error("%s", err); /* known before the store opens */
        return NULL;
    }
    return ops;
}

/* Protected mode (as Redis does it): without API keys, only loopback. */
static int load_callers(const sd_config *cfg, sd_loaded *l)
{
    if (sd_startup_load_keys(cfg, &l->keys))
        return -1;
    if (!l->keys && !sd_startup_loopback_only(cfg->listen)) {
        sd_error("refusing to listen on %s without API keys: anyone who can reach it could "
                 "create, read and revoke sessions. Give --api-keys FILE, or listen on a "
                 "loopback address.",
                 cfg->listen);
        return -1;
    }
    if (!l->keys)
        sd_info("protected mode: no API keys configured; serving loopback only, callers are "
                "not authenticated");
    else
        sd_info("%d API keys loaded from %s", sd_keys_count(l->keys), cfg->api_keys);
    return 0;
}

static int load_keyring(const sd_config *cfg, sd_loaded *l)
{
    char err[512];
    if (cfg->encryption_keys[0] &&
        sd_keyring_load(cfg->encryption_keys, &l->ring, err, sizeof err) != 0) {
        sd_error("%s", err);
        return -1;
    }
    if (l->ring)
        sd_info("session metadata is encrypted at rest under key '%s'",
                sd_keyring_current(l->ring));
    else
        sd_info("no --encryption-keys: session metadata (ipAddress, userAgent, deviceInfo, "
                "geoLocation, data) is stored in the clear");
    return 0;
}

static int load_jwt(const sd_config *cfg, sd_loaded *l)
{
    if (sd_startup_load_jwt_keys(cfg, &l->jwt_keys))
        return -1;
    if (l->jwt_keys)
        sd_info("access tokens: %d JWT keys published, signing with '%s' (%s), lifetime %llds, "
                "reused for %.0f%% of it (at most %lld MiB)%s",
                sd_jwks_count(l->jwt_keys), sd_jwks_current_kid(l->jwt_keys),
                sd_jwks_current_alg(l->jwt_keys), (long long)(cfg->jwt_lifetime_ms / 1000),
                cfg->jwt_reuse * 100, (long long)cfg->jwt_reuse_max_mb,
                sd_jwks_recipient(l->jwt_keys) ? ", encrypted (JWE " SD_JWE_ALG ", " SD_JWE_ENC ")"
                                               : "");
    return 0;
}

const sd_tls_options *sd_startup_tls_options(const sd_config *cfg, sd_tls_options *o)
{
    *o = (sd_tls_options){.cert_file = cfg->tls_cert,
                          .key_file = cfg->tls_key,
                          .client_ca_file = cfg->tls_client_ca,
                          .client_auth_required = strcmp(cfg->tls_client_auth, "require") == 0};
    return cfg->tls_cert[0] ? o : NULL;
}

static int load_tls(const sd_config *cfg, sd_loaded *l)
{
    sd_tls_options o;
    if (!sd_startup_tls_options(cfg, &o))
        return 0;
    char err[512];
    if (sd_tls_create(&o, &l->tls, err, sizeof err)) {
        sd_error("%s", err);
        return -1;
    }
    sd_info("TLS 1.2/1.3 with %s; client certificates %s", cfg->tls_cert,
            !cfg->tls_client_ca[0]   ? "not requested"
            : o.client_auth_required ? "required"
                                     : "optional");
    return 0;
}

/* The webhooks' settings and secrets. */
static int load_webhooks(const sd_config *cfg, sd_loaded *l)
{
    sd_webhook_options o = {.timeout_ms = cfg->webhook_timeout_ms,
                            .retry_initial_ms = cfg->webhook_retry_initial_ms,
                            .retry_max_ms = cfg->webhook_retry_max_ms,
                            .max_attempts = (int)cfg->webhook_max_attempts};
    char err[512];
    if (sd_webhooks_parse(cfg->webhook, &o, &l->webhooks, err, sizeof err)) {
        sd_error("%s", err);
        return -1;
    }
    return 0;
}

int sd_startup_load(const sd_config *cfg, sd_loaded *out)
{
    *out = (sd_loaded){0};
    if (load_callers(cfg, out) || load_keyring(cfg, out) || load_jwt(cfg, out) ||
        load_tls(cfg, out) || load_webhooks(cfg, out)) {
        sd_startup_free(out);
        return 2;
    }
    return 0;
}

void sd_startup_free(sd_loaded *l)
{
    sd_webhooks_stop(l->webhooks); /* never started here: frees it */
    sd_tls_free(l->tls);
    sd_jwks_free(l->jwt_keys);
    sd_keyring_free(l->ring);
    sd_keys_free(l->keys);
    *l = (sd_loaded){0};
}
