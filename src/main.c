/*
 * main.c - start-up, signals and wiring; nothing else.
 *
 * Order of start: config, store, audit log, sweeper, webhooks, HTTP. Order of stop
 * (SIGTERM or SIGINT): stop accepting and answer new requests 503, wait for
 * requests in flight (their writes finish) up to --shutdown-timeout, stop
 * HTTP (waiting for handlers still running; if one still runs after that,
 * exit 1 at once without closing what it uses), stop the webhooks, the sweeper, close the
 * audit log (after logging what was committed), close the store (which
 * commits what is queued and checkpoints), free the HTTP server. SIGHUP reloads the
 * settings that can change at run time (the log level, API keys, the TLS
 * certificate).
 */
#include "api/api.h"
#include "api/keys.h"
#include "audit/audit.h"
#include "commands.h"
#include "config.h"
#include "startup.h"
#include "http/tls.h"
#include "jwt/jwe.h"
#include "jwt/jwk.h"
#include "jwt/mintcache.h"
#include "store/crypt.h"
#include "metrics/metrics.h"
#include "session/sweeper.h"
#include "util/allocfail.h"
#include "util/crypto_init.h"
#include "util/jsonmem.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/limiter.h"
#include "util/log.h"
#include "webhook/webhook.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

/* SIGHUP: the JWT signing keys from their file; on any error (or when the
 * option was removed) the current ones stay. */
static void reload_jwt_keys(sd_app *app, const sd_config *fresh)
{
    sd_jwks *nk = NULL;
    if (!fresh->jwt_keys[0]) {
        sd_warn("SIGHUP: access tokens are not turned off without a restart; keeping the JWT "
                "keys");
        return;
    }
    if (sd_startup_load_jwt_keys(fresh, &nk)) {
        sd_error("SIGHUP: keeping the current JWT keys");
        return;
    }
    pthread_rwlock_wrlock(&app->jwt_lock);
    sd_jwks *old = app->jwt_keys;
    app->jwt_keys = nk;
    if (app->jwt_cache) /* no token signed with the old keys is handed out again */
        sd_mintcache_clear(app->jwt_cache);
    pthread_rwlock_unlock(&app->jwt_lock);
    sd_jwks_free(old);
    sd_info("SIGHUP: JWT keys reloaded: %d published, signing with '%s' (%s)%s", sd_jwks_count(nk),
            sd_jwks_current_kid(nk), sd_jwks_current_alg(nk),
            sd_jwks_recipient(nk) ? ", encrypted (JWE)" : "");
}

/* SIGHUP: a new TLS context from the files; on any error the old one stays.
 * Live connections keep the context they started with. */
static void reload_tls(sd_tls *tls, const sd_config *fresh)
{
    sd_tls_options o;
    char err[512];
    if (!sd_startup_tls_options(fresh, &o))
        sd_warn("SIGHUP: TLS is not turned off without a restart; keeping the current certificate");
    else if (sd_tls_reload(tls, &o, err, sizeof err))
        sd_error("SIGHUP: %s; keeping the current TLS certificate", err);
    else
        sd_info("SIGHUP: TLS certificate reloaded from %s", fresh->tls_cert);
}

int main(int argc, char **argv)
{
    char err[512] = "";
    if (sd_allocfail_init(err, sizeof err)) { /* the sanitizer build's test hook */
        fprintf(stderr, "sessiond: %s\n", err);
        return 2;
    }
    sd_json_mem_init();
    if (sd_crypto_init()) {
        fprintf(stderr, "sessiond: cannot set up OpenSSL (out of memory, or its configuration)\n");
        return 1;
    }
    sd_allocfail_begin(); /* the sweep counts from here */
    if (argc >= 2 && argv[1][0] != '-') {
        const sd_command *c = sd_cmd_find(argv[1]);
        if (!c) {
            fprintf(stderr,
                    "sessiond: no command '%s' (sessiond help lists the commands, "
                    "sessiond --help the options)\n",
                    argv[1]);
            return 2;
        }
        if (sd_cmd_wants_help(argc - 1, argv + 1)) {
            sd_cmd_usage(c, stdout);
            return 0;
        }
        return c->run(argc - 1, argv + 1);
    }
    sd_config cfg;
    int rc = sd_config_load(&cfg, argc, argv, environ, stderr);
    if (rc == SD_CONFIG_EXIT_OK) {
        if (sd_cmd_wants_help(argc, argv)) /* --help: the options, then the commands */
            sd_cmd_list(stdout);
        return 0;
    }
    if (rc != SD_CONFIG_RUN)
        return 2;
    sd_log_set_level((enum sd_log_level)sd_log_level_parse(cfg.log_level));

    /* Every thread inherits this mask; only sigwait() below sees the signals. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sd_allocfail_signals(&sigs);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    static const char *route_methods[SD_METRICS_MAX_ROUTES], *route_names[SD_METRICS_MAX_ROUTES];
    for (int i = 0; i < sd_api_nroutes && i < SD_METRICS_MAX_ROUTES; i++) {
        route_methods[i] = sd_api_routes[i].method;
        route_names[i] = sd_api_routes[i].pattern;
    }
    sd_metrics_init(route_methods, route_names, sd_api_nroutes);

    sd_loaded loaded;
    if (sd_startup_load(&cfg, &loaded))
        return 2;
    sd_app app = {
        .keys = loaded.keys,
        .auth_cookie = cfg.auth_cookie,
        .audit_sample = cfg.audit_sample_validations,
        .jwt_keys = loaded.jwt_keys,
        .webhooks = loaded.webhooks,
        .jwt = {.issuer = cfg.jwt_issuer,
                .audience = cfg.jwt_audience,
                .lifetime_ms = cfg.jwt_lifetime_ms,
                .claims = cfg.jwt_claims},
        .policy = {.idle_timeout_ms = cfg.idle_timeout_ms,
                   .absolute_timeout_ms = cfg.absolute_timeout_ms,
                   .max_absolute_timeout_ms = cfg.max_absolute_timeout_ms,
                   .max_idle_timeout_ms = cfg.max_idle_timeout_ms,
                   .touch_fraction = cfg.touch_fraction,
                   .max_data_bytes = (size_t)cfg.max_data_bytes,
                   .max_per_user = (int)cfg.max_sessions_per_user,
                   .refresh_grace_ms = cfg.refresh_grace_ms,
                   .evict_oldest = strcmp(cfg.session_limit_policy, "evict") == 0,
                   .bind_v4_prefix = (int)cfg.binding_ipv4_prefix,
                   .bind_v6_prefix = (int)cfg.binding_ipv6_prefix,
                   .bind_enforce = strcmp(cfg.binding_policy, "flag") != 0},
    };
    app.anomaly = (sd_anomaly_policy){
        .action = {(unsigned char)sd_signal_action_parse(cfg.anomaly_new_device),
                   (unsigned char)sd_signal_action_parse(cfg.anomaly_new_country),
                   (unsigned char)sd_signal_action_parse(cfg.anomaly_impossible_travel),
                   (unsigned char)sd_signal_action_parse(cfg.anomaly_session_burst)},
        .max_speed_kmh = (double)cfg.anomaly_max_speed,
        .min_distance_km = (double)cfg.anomaly_min_distance,
        .burst_count = (int)cfg.anomaly_burst_count,
        .burst_window_ms = cfg.anomaly_burst_window_ms};
    /* checked by sd_config_load */
    sd_geofence_parse(cfg.geo_allow, cfg.geo_deny, cfg.geo_groups, &app.anomaly.geofence, err,
                      sizeof err);
    sd_api_anomaly_init(&app);
    sd_store_options sopt = {.keys = loaded.ring,
                             .commit_batch = (int)cfg.commit_batch,
                             .max_queued = (int)cfg.max_queued_writes,
                             .standby = cfg.store_standby,
                             .hold_ms = (int)cfg.write_hold_ms};
    const char *store_at = NULL;
    const sd_store_ops *store_ops = sd_startup_store(&cfg, &store_at);
    /* From here on every failure stops what has started, in reverse order,
     * at `stop` below (each stop is a no-op for what never started). */
    int status = 1;
    sd_sweeper *sweeper = NULL;
    sd_http *http = NULL;
    sd_brlock_init(&app.keys_lock);
    pthread_rwlock_init(&app.jwt_lock, NULL);
    if (!store_ops) {
        status = 2;
        goto stop;
    }
    /* A shared store tells replicas apart by an id kept in the data dir. */
    char origin[17] = "";
    if (store_ops->caps & SD_STORE_SHARED) {
        if (mkdir(cfg.data_dir, 0700) != 0 && errno != EEXIST)
            rc = -errno;
        else
            rc = sd_store_replica_id(cfg.data_dir, origin);
        if (rc) {
            sd_error("cannot keep this replica's id in %s: %s", cfg.data_dir, sd_strerror(rc));
            goto stop;
        }
        sopt.origin = origin;
    }
    if ((rc = sd_store_open(store_ops, store_at, &sopt, &app.store, err, sizeof err))) {
        sd_error("cannot open the store: %s", err);
        goto stop;
    }
    if (cfg.cache[0] && (rc = sd_store_attach_cache(
                             app.store, cfg.cache, cfg.cache_password, (int)cfg.cache_timeout_ms,
                             sd_policy_max_lifetime(&app.policy) + 60000, err, sizeof err))) {
        sd_error("cannot start the cache: %s", err);
        goto stop;
    }
    explicit_bzero(cfg.cache_password, sizeof cfg.cache_password);
    char audit_dir[1100];
    snprintf(audit_dir, sizeof audit_dir, "%s", cfg.audit_dir);
    if (!audit_dir[0])
        snprintf(audit_dir, sizeof audit_dir, "%s/audit", cfg.data_dir);
    sd_audit_options aopt = {.dir = audit_dir,
                             .retention_ms = cfg.audit_retention_ms,
                             .max_bytes = cfg.audit_max_bytes,
                             .store = app.store};
    if ((rc = sd_audit_open(&aopt, err, sizeof err))) {
        sd_error("cannot open the audit log: %s", err);
        goto stop;
    }
    if ((rc = sd_sweeper_start(app.store, cfg.sweep_interval_ms, (int)cfg.sweep_batch,
                               cfg.history_retention_ms, &sweeper))) {
        sd_error("cannot start the sweeper: %s", sd_strerror(rc));
        goto stop;
    }
    if ((rc = sd_webhooks_start(loaded.webhooks, app.store, err, sizeof err))) {
        sd_error("%s", err);
        goto stop;
    }
    sd_http_options hopt = {
        .listen = cfg.listen,
        .threads = (int)cfg.threads,
        .max_connections = (int)cfg.max_connections,
        .max_connections_per_ip = (int)cfg.max_connections_per_ip,
        .connection_timeout_s = (int)((cfg.connection_timeout_ms + 999) / 1000),
        .max_header_bytes = (size_t)cfg.max_header_bytes,
        .max_body_bytes = (size_t)cfg.max_body_bytes,
        .authorize = sd_api_authorize,
        .tls = loaded.tls,
        /* the embedded store answers from memory: no pool to hop through */
        .handler_threads = store_ops->caps & SD_STORE_MEMORY_READS ? 0 : (int)cfg.handler_threads,
    };
    /* 16384 buckets (about 1 MB) whatever the number of client addresses. */
    if (cfg.failed_validation_rate > 0)
        app.guesses = sd_limiter_new(16384, (double)cfg.failed_validation_rate,
                                     (double)cfg.failed_validation_burst);
    if (cfg.failed_validation_rate > 0 && !app.guesses) {
        snprintf(err, sizeof err, "out of memory for the failed-validation limiter");
        rc = SD_ENOMEM;
    } else if (app.jwt_keys && cfg.jwt_reuse > 0 &&
               (rc = sd_mintcache_new((size_t)cfg.jwt_reuse_max_mb << 20, cfg.jwt_reuse,
                                      &app.jwt_cache))) {
        snprintf(err, sizeof err, "out of memory for the access tokens' cache (--jwt-reuse)");
    } else {
        rc = sd_http_start(&hopt, sd_api_routes, sd_api_nroutes, &app, &http, err, sizeof err);
    }
    if (rc) {
        sd_error("%s", err);
        goto stop;
    }
    /* Never the connection string: it may hold a password (postgres.c logs
     * its host and dbname). */
    sd_info("sessiond " SD_VERSION " listening on %s, store %s%s%s (idle %llds, absolute "
            "%llds)",
            sd_http_address(http), store_ops->name, store_ops->caps & SD_STORE_LOCAL ? " in " : "",
            store_ops->caps & SD_STORE_LOCAL ? cfg.data_dir : "",
            (long long)(cfg.idle_timeout_ms / 1000), (long long)(cfg.absolute_timeout_ms / 1000));

    for (;;) {
        int sig = 0;
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGUSR2) { /* only with SESSIOND_ALLOC_FAULTS=control=... */
            sd_allocfail_control();
            continue;
        }
        if (sig == SIGHUP) {
            /* Reload what can change at run time: the log level, from the
             * same sources in the same precedence. */
            sd_config fresh;
            sd_keys *nk = NULL;
            if (sd_config_load(&fresh, argc, argv, environ, stderr) == SD_CONFIG_RUN &&
                sd_startup_load_keys(&fresh, &nk) == 0 &&
                (nk || sd_startup_loopback_only(cfg.listen))) {
                sd_log_set_level((enum sd_log_level)sd_log_level_parse(fresh.log_level));
                if (loaded.tls)
                    reload_tls(loaded.tls, &fresh);
                if (app.jwt_keys)
                    reload_jwt_keys(&app, &fresh);
                sd_brlock_wrlock(&app.keys_lock);
                sd_keys *old = app.keys;
                app.keys = nk;
                sd_brlock_wrunlock(&app.keys_lock);
                sd_keys_free(old);
                sd_info("SIGHUP: reloaded; log-level %s, %d API keys", fresh.log_level,
                        sd_keys_count(nk));
            } else {
                sd_keys_free(nk);
                sd_warn("SIGHUP: the configuration has errors; nothing reloaded");
            }
            continue;
        }
        sd_info("signal %d: stopping (waiting up to %lldms for requests in flight)", sig,
                (long long)cfg.shutdown_timeout_ms);
        break;
    }
    sd_http_drain(http);
    sd_store_drain(app.store); /* writes held for an unreachable database answer 503 now */
    int64_t deadline = sd_mono_ns() + cfg.shutdown_timeout_ms * 1000000;
    while (sd_http_inflight(http) > 0 && sd_mono_ns() < deadline)
        usleep(5000);
    if (sd_http_inflight(http) > 0)
        sd_warn("%d requests still in flight at the shutdown deadline", sd_http_inflight(http));
    int busy = sd_http_stop(http, deadline);
    if (busy > 0) {
        /* A handler that never came back (a database that stopped
         * answering) still uses the store, the keys, the limiter and the
         * audit log: closing them under it, or running the exit handlers
         * (OpenSSL's among them), could crash it. What was acknowledged is
         * durable; leave the rest to the end of the process. */
        sd_error("%d request handler%s still running after --shutdown-timeout; exiting without "
                 "closing the store, the audit log or the keys they use",
                 busy, busy == 1 ? "" : "s");
        _exit(1);
    }
    status = 0;
stop:
    sd_tls_free(loaded.tls);
    sd_webhooks_stop(loaded.webhooks); /* saves each cursor, gives up the leases */
    sd_sweeper_stop(sweeper);
    sd_audit_close();          /* logs what the last writes committed */
    sd_store_close(app.store); /* a write that completes now replies into the stopped server */
    sd_http_free(http);
    sd_keyring_free(loaded.ring);
    sd_keys_free(app.keys);
    sd_jwks_free(app.jwt_keys);
    sd_mintcache_free(app.jwt_cache);
    sd_limiter_free(app.guesses);
    sd_brlock_destroy(&app.keys_lock);
    pthread_rwlock_destroy(&app.jwt_lock);
    if (status == 0)
        sd_info("stopped");
    return status;
}
