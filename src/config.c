/*
 * config.c - the option table and the code that reads it.
 *
 * To add a setting: a field in sd_config (config.h) and one row in options[].
 * Everything else (flag, env name, config-file key, --help line, bounds
 * check) follows from the row.
 */
#include "config.h"
#include "jwt/claims.h"
#include "session/anomaly.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* OPT_LIST: repeatable; each value (several lines in one environment
 * variable) becomes a line of the field, and a source of higher precedence
 * that names the option replaces the lines of the lower ones. */
enum opt_type { OPT_STRING, OPT_INT, OPT_DURATION, OPT_FRACTION, OPT_LOGLEVEL, OPT_LIST };

typedef struct option {
    const char *name; /* flag --name, env SESSIOND_NAME, file key name */
    enum opt_type type;
    size_t offset;
    size_t size; /* for strings: buffer size */
    const char *def;
    int64_t min, max; /* for ints and durations (ms); fractions: max in hundredths (0: 1) */
    const char *help;
} option;

#define F(field) offsetof(sd_config, field), sizeof(((sd_config *)0)->field)
#define DAY      (86400LL * 1000)

static const option options[] = {
    {"config", OPT_STRING, F(config_file), "", 0, 0,
     "config file of 'name = value' lines ('#' starts a comment)"},
    {"listen", OPT_STRING, F(listen), "127.0.0.1:8080", 0, 0,
     "address to serve HTTP on, HOST:PORT ([v6]:PORT for IPv6)"},
    {"data-dir", OPT_STRING, F(data_dir), "./var", 0, 0,
     "directory of the embedded store (created if missing)"},
    {"store", OPT_STRING, F(store), "sqlite", 0, 0,
     "'sqlite': the embedded store in --data-dir; or a PostgreSQL connection string "
     "(postgres://USER@HOST:PORT/DB?..., or libpq key=value pairs; multi-host with "
     "target_session_attrs=read-write; give the password through PGPASSWORD or PGPASSFILE, "
     "not here): shared by every replica"},
    {"store-standby", OPT_STRING, F(store_standby), "", 0, 0,
     "with a PostgreSQL --store: a connection string that reaches only its synchronous standby "
     "(Patroni's GET /sync behind haproxy, deploy/haproxy/patroni.cfg), read for the cache epoch "
     "and the global not-before while the primary cannot be, so that validations the cache "
     "answers go on through a failover ('' for none)"},
    {"cache", OPT_STRING, F(cache), "", 0, 0,
     "Redis cache tier in front of a shared --store for validation: "
     "redis://[:PASSWORD@]HOST[:PORT][/DB], or "
     "redis-sentinel://[:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER-NAME[/DB] to follow the "
     "master Redis Sentinel names ('' for none); write-through, revocation-safe, served from "
     "the store while Redis is down"},
    {"cache-password", OPT_STRING, F(cache_password), "", 0, 0,
     "password of --cache (better SESSIOND_CACHE_PASSWORD or the config file than the URL); "
     "never logged"},
    {"cache-timeout", OPT_DURATION, F(cache_timeout_ms), "50ms", 1, 10000,
     "bound on every Redis connect and command; beyond it the request falls back to the store"},
    {"encryption-keys", OPT_STRING, F(encryption_keys), "", 0, 0,
     "file of '<key id> <64 hex digits>' lines: session metadata is stored encrypted "
     "(AES-256-GCM) under the last key; every listed key decrypts (rotate by appending a key, "
     "then run 'sessiond reencrypt')"},
    {"jwt-keys", OPT_STRING, F(jwt_keys), "", 0, 0,
     "file of JWT signing keys ('<key id> <base64 PKCS#8 Ed25519 or P-256 key> [next]' lines; "
     "'sessiond jwk generate' writes one): session tokens can be exchanged for short-lived "
     "signed access tokens, the public keys are served at /.well-known/jwks.json. The last "
     "line not marked 'next' signs; every line is published. SIGHUP reloads it"},
    {"jwt-issuer", OPT_STRING, F(jwt_issuer), "sessiond", 0, 0,
     "the iss claim of access tokens (a verifier checks it)"},
    {"jwt-audience", OPT_STRING, F(jwt_audience), "sessiond", 0, 0,
     "the aud claim of access tokens: one value or a comma-separated list"},
    {"jwt-lifetime", OPT_DURATION, F(jwt_lifetime_ms), "5m", 10000, 3600 * 1000,
     "longest lifetime of an access token (never past its session's expiry); a revoked "
     "session's tokens stay valid this long for a verifier that does not poll /revocations"},
    {"jwt-encrypt-key", OPT_STRING, F(jwt_encrypt_key), "", 0, 0,
     "file with the P-256 public key of the access tokens' recipient ('<key id> <base64 DER "
     "public key>' line, or PEM): every access token is then the signed JWT encrypted as a JWE "
     "(ECDH-ES+A256KW, A256GCM) that only the holder of the private key can read. SIGHUP "
     "reloads it with --jwt-keys"},
    {"jwt-claims", OPT_STRING, F(jwt_claims), "", 0, 0,
     "comma-separated session fields access tokens carry besides the standard claims "
     "(deviceId, deviceInfo, userAgent, ipAddress, geoLocation, mfa, data, createdAt, "
     "absoluteExpiry)"},
    {"jwt-reuse", OPT_FRACTION, F(jwt_reuse), "0.2", 0, 50,
     "a minted access token is handed out again, for the same version of its session and the "
     "same keys, until this fraction of its lifetime has passed (so every token handed out "
     "has at least the rest of it left); 0 signs a new token for every ask; at most 0.5"},
    {"jwt-reuse-max-mb", OPT_INT, F(jwt_reuse_max_mb), "64", 1, 65536,
     "memory bound of the tokens kept for --jwt-reuse, in MiB (about 0.5 KB a session with "
     "the default claims; the least recently handed out go first)"},
    {"api-keys", OPT_STRING, F(api_keys), "", 0, 0,
     "file of API keys ('<id> <sha256 hex> <scopes>' lines); without it sessiond only "
     "serves loopback addresses (protected mode)"},
    {"auth-cookie", OPT_STRING, F(auth_cookie), "session", 0, 0,
     "cookie that GET /auth (forward-auth) reads the session token from"},
    {"tls-cert", OPT_STRING, F(tls_cert), "", 0, 0,
     "PEM certificate chain (leaf first); with --tls-key the listener speaks TLS 1.2/1.3 only. "
     "SIGHUP reloads it"},
    {"tls-key", OPT_STRING, F(tls_key), "", 0, 0, "PEM private key of --tls-cert"},
    {"tls-client-ca", OPT_STRING, F(tls_client_ca), "", 0, 0,
     "PEM CA certificate(s) for client certificates (mTLS); a verified certificate's subject CN "
     "authenticates as the 'cert:<CN>' line of --api-keys"},
    {"tls-client-auth", OPT_STRING, F(tls_client_auth), "optional", 0, 0,
     "with --tls-client-ca: 'optional' (callers may use an API key instead) or 'require' (no "
     "handshake without a verified client certificate)"},
    {"log-level", OPT_LOGLEVEL, F(log_level), "info", 0, 0, "debug, info, warn or error"},
    {"idle-timeout", OPT_DURATION, F(idle_timeout_ms), "1h", 1000, 365 * DAY,
     "default idle timeout of a session (ttlSeconds overrides it per session)"},
    {"absolute-timeout", OPT_DURATION, F(absolute_timeout_ms), "24h", 1000, 3650 * DAY,
     "hard lifetime of a session from its creation (lifetimeSeconds at create chooses another); "
     "nothing extends it"},
    {"max-absolute-timeout", OPT_DURATION, F(max_absolute_timeout_ms), "0s", 0, 3650 * DAY,
     "longest lifetime a client may ask for with lifetimeSeconds at create (a 'remember me' "
     "session; longer asks are reduced to it); 0: --absolute-timeout, so a client can only "
     "shorten a session's lifetime"},
    {"max-idle-timeout", OPT_DURATION, F(max_idle_timeout_ms), "24h", 1000, 3650 * DAY,
     "largest idle timeout a client may ask for with ttlSeconds"},
    {"touch-fraction", OPT_FRACTION, F(touch_fraction), "0.05", 0, 0,
     "rolling expiry is written only when it moves expiry by more than this fraction of "
     "the session's idle timeout (0 writes every extension)"},
    {"sweep-interval", OPT_DURATION, F(sweep_interval_ms), "1s", 10, DAY,
     "how often expired sessions are moved to history, and old history purged"},
    {"sweep-batch", OPT_INT, F(sweep_batch), "500", 1, 100000,
     "most sessions one sweep transaction moves (keeps sweeps from stalling writes)"},
    {"history-retention", OPT_DURATION, F(history_retention_ms), "30d", 0, 3650 * DAY,
     "how long ended sessions are kept as history before they are purged"},
    {"binding-policy", OPT_STRING, F(binding_policy), "enforce", 0, 0,
     "a bound session validated from another context: 'enforce' answers invalid "
     "(reason binding_mismatch), 'flag' answers valid with bindingMismatch; both are audited"},
    {"binding-ipv4-prefix", OPT_INT, F(binding_ipv4_prefix), "32", 0, 32,
     "bits of an IPv4 address an ip binding keeps (24: the /24 network)"},
    {"binding-ipv6-prefix", OPT_INT, F(binding_ipv6_prefix), "64", 0, 128,
     "bits of an IPv6 address an ip binding keeps"},
    {"anomaly-new-device", OPT_STRING, F(anomaly_new_device), "off", 0, 0,
     "a session created with a deviceId (else userAgent) none of the user's live sessions has: "
     "'off', 'record' (audited as anomaly_detected, kept on the session), 'flag' (and listed "
     "in the validate answer's signals) or 'stepup' (and validation answers invalid, reason "
     "step_up_required, until a PUT raises mfa again)"},
    {"anomaly-new-country", OPT_STRING, F(anomaly_new_country), "off", 0, 0,
     "a geoLocation.country none of the user's live sessions (at create) or this session (at "
     "validation) was seen from: off, record, flag or stepup"},
    {"anomaly-impossible-travel", OPT_STRING, F(anomaly_impossible_travel), "off", 0, 0,
     "from the last geoLocation lat/lon the user was seen at to this one faster than "
     "--anomaly-max-speed: off, record, flag or stepup"},
    {"anomaly-session-burst", OPT_STRING, F(anomaly_session_burst), "off", 0, 0,
     "more than --anomaly-burst-count creates for one user within --anomaly-burst-window: "
     "off, record, flag or stepup"},
    {"anomaly-max-speed", OPT_INT, F(anomaly_max_speed), "1000", 1, 1000000,
     "impossible travel: km/h above which a move between two geolocations is impossible"},
    {"anomaly-min-distance", OPT_INT, F(anomaly_min_distance), "100", 0, 20000,
     "impossible travel: moves shorter than this many km never count (the accuracy of "
     "IP geolocation)"},
    {"anomaly-burst-count", OPT_INT, F(anomaly_burst_count), "10", 1, 100000,
     "session burst: creates for one user allowed within the window"},
    {"anomaly-burst-window", OPT_DURATION, F(anomaly_burst_window_ms), "5m", 1000, DAY,
     "session burst: the window"},
    {"geo-allow", OPT_STRING, F(geo_allow), "", 0, 0,
     "geofence: comma-separated ISO 3166-1 alpha-2 countries a client may create or validate "
     "a session from when it gives geoLocation.country ('' for any not denied); others get 403"},
    {"geo-deny", OPT_STRING, F(geo_deny), "", 0, 0,
     "geofence: comma-separated countries refused (403) at create and validation"},
    {"geo-groups", OPT_STRING, F(geo_groups), "", 0, 0,
     "geofence per user group: 'NAME=allow:CC,CC;NAME=deny:CC' (up to 16); a session created "
     "with geoGroup NAME follows its rule besides --geo-allow and --geo-deny"},
    {"failed-validation-rate", OPT_INT, F(failed_validation_rate), "100", 0, 1000000,
     "failed validations (unknown, expired or malformed tokens) one client address may make "
     "per second, after a burst, before it gets 429 (0: no throttling)"},
    {"failed-validation-burst", OPT_INT, F(failed_validation_burst), "1000", 1, 1000000,
     "failed validations one client address may make at once"},
    {"audit-sample-validations", OPT_FRACTION, F(audit_sample_validations), "0", 0, 0,
     "fraction of successful validations written to the audit log (they are the hot path: "
     "all are counted in /metrics, none logged by default; failures are always logged)"},
    {"audit-dir", OPT_STRING, F(audit_dir), "", 0, 0,
     "directory of the hash-chained audit log (default: DATA-DIR/audit)"},
    {"audit-retention", OPT_DURATION, F(audit_retention_ms), "30d", 3600 * 1000, 3650 * DAY,
     "rotated audit files older than this are deleted"},
    {"audit-max-bytes", OPT_INT, F(audit_max_bytes), "67108864", 4096, 1LL << 40,
     "the audit log is rotated past this size (and when the UTC day changes)"},
    {"max-body-bytes", OPT_INT, F(max_body_bytes), "65536", 1024, 16 << 20,
     "largest request body accepted (413 beyond)"},
    {"max-data-bytes", OPT_INT, F(max_data_bytes), "4096", 2, 1 << 20,
     "largest JSON encoding of a session's data object"},
    {"max-header-bytes", OPT_INT, F(max_header_bytes), "16384", 2048, 1 << 20,
     "per-connection buffer for the request line and headers (431 or 414 beyond)"},
    {"max-connections", OPT_INT, F(max_connections), "4096", 1, 1000000,
     "most client connections at once"},
    {"max-connections-per-ip", OPT_INT, F(max_connections_per_ip), "512", 0, 1000000,
     "most connections from one client address (0: no limit)"},
    {"connection-timeout", OPT_DURATION, F(connection_timeout_ms), "30s", 1000, DAY,
     "a connection idle (or trickling nothing) this long is closed"},
    {"threads", OPT_INT, F(threads), "2", 1, 256, "HTTP worker threads"},
    {"handler-threads", OPT_INT, F(handler_threads), "8", 0, 1024,
     "with the PostgreSQL store: threads that run request handlers, whose reads wait on the "
     "database and the cache while the HTTP threads go on serving (0: on the HTTP threads; "
     "the embedded store always answers on the HTTP threads)"},
    {"commit-batch", OPT_INT, F(commit_batch), "1024", 1, 100000,
     "most writes that share one transaction and one fsync (group commit)"},
    {"refresh-grace", OPT_DURATION, F(refresh_grace_ms), "10s", 0, 3600 * 1000,
     "after a token is rotated or renewed, the old one presented within this window (to refresh "
     "or to validate) is a race: refused, nothing revoked; later it is reuse: the session is "
     "revoked"},
    {"max-sessions-per-user", OPT_INT, F(max_sessions_per_user), "100", 0, 1000000,
     "active sessions one user may have (0: no limit)"},
    {"session-limit-policy", OPT_STRING, F(session_limit_policy), "evict", 0, 0,
     "at the limit: 'evict' ends the least recently seen session, 'reject' answers 429"},
    {"max-queued-writes", OPT_INT, F(max_queued_writes), "10000", 1, 10000000,
     "writes waiting for the disk beyond which new writes get 503 (load shedding)"},
    {"write-hold", OPT_DURATION, F(write_hold_ms), "0s", 0, 300000,
     "with a PostgreSQL --store: how long a write waits for a database it cannot reach (a "
     "primary's failover) before it answers 503; a write that did not reach the database runs "
     "once it is back, and is answered then ('0s': at once, 503 with Retry-After)"},
    {"shutdown-timeout", OPT_DURATION, F(shutdown_timeout_ms), "10s", 0, DAY,
     "how long SIGTERM waits for requests in flight"},
    {"webhook", OPT_LIST, F(webhook), "", 0, 0,
     "'URL SECRET-FILE [EVENT,...]' (repeatable): POST every audit event of the store (or only "
     "the events named) to URL as JSON, signed the Standard Webhooks way with the 'whsec_...' "
     "secret read from SECRET-FILE; at least once, in order, from the store (docs/webhooks.md)"},
    {"webhook-timeout", OPT_DURATION, F(webhook_timeout_ms), "10s", 100, 15000,
     "longest one webhook delivery attempt may take (connect and answer)"},
    {"webhook-max-attempts", OPT_INT, F(webhook_max_attempts), "20", 1, 1000,
     "attempts at one event before it is given up (counted as dead-lettered) and the next "
     "is delivered"},
    {"webhook-retry-initial", OPT_DURATION, F(webhook_retry_initial_ms), "1s", 1, 3600 * 1000,
     "wait after a webhook's first failed attempt; doubled after each further one"},
    {"webhook-retry-max", OPT_DURATION, F(webhook_retry_max_ms), "10m", 1, DAY,
     "longest wait between two attempts at one event"},
};
#define NOPTIONS (sizeof options / sizeof options[0])

static void env_name(const option *o, char *out, size_t n)
{
    size_t j = (size_t)snprintf(out, n, "SESSIOND_");
    for (const char *p = o->name; *p && j + 1 < n; p++)
        out[j++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[j] = '\0';
}

static const option *find(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strlen(options[i].name) == len && strncmp(options[i].name, name, len) == 0)
            return &options[i];
    return NULL;
}

/* Parses text into the field of o; on error writes why into err. */
static int set(sd_config *cfg, const option *o, const char *text, const char *from, FILE *err)
{
    char *field = (char *)cfg + o->offset;
    switch (o->type) {
    case OPT_STRING:
        if (strlen(text) >= o->size) {
            fprintf(err, "sessiond: %s (%s): value too long\n", o->name, from);
            return SD_ECONFIG;
        }
        memcpy(field, text, strlen(text) + 1);
        return 0;
    case OPT_LIST: {
        size_t have = strlen(field), add = strlen(text);
        if (add == 0)
            return 0;
        if (have + add + 2 > o->size) {
            fprintf(err, "sessiond: %s (%s): too many values\n", o->name, from);
            return SD_ECONFIG;
        }
        if (have)
            field[have++] = '\n';
        memcpy(field + have, text, add + 1);
        return 0;
    }
    case OPT_LOGLEVEL:
        if (sd_log_level_parse(text) < 0) {
            fprintf(err, "sessiond: %s (%s): '%s' is not debug, info, warn or error\n", o->name,
                    from, text);
            return SD_ECONFIG;
        }
        snprintf(field, o->size, "%s", text);
        return 0;
    case OPT_FRACTION: {
        char *end;
        errno = 0;
        double v = strtod(text, &end), max = o->max ? (double)o->max / 100 : 1.0;
        if (errno || end == text || *end || !(v >= 0.0 && v <= max)) {
            fprintf(err, "sessiond: %s (%s): '%s' is not a number from 0 to %g\n", o->name, from,
                    text, max);
            return SD_ECONFIG;
        }
        *(double *)field = v;
        return 0;
    }
    case OPT_INT:
    case OPT_DURATION: {
        int64_t v;
        if (o->type == OPT_DURATION) {
            if (sd_duration_parse(text, &v)) {
                fprintf(
                    err,
                    "sessiond: %s (%s): '%s' is not a duration (e.g. 500ms, 30s, 5m, 1h, 30d)\n",
                    o->name, from, text);
                return SD_ECONFIG;
            }
        } else {
            char *end;
            errno = 0;
            long long ll = strtoll(text, &end, 10);
            if (errno || end == text || *end) {
                fprintf(err, "sessiond: %s (%s): '%s' is not an integer\n", o->name, from, text);
                return SD_ECONFIG;
            }
            v = ll;
        }
        if (v < o->min || v > o->max) {
            fprintf(err, "sessiond: %s (%s): '%s' is out of range\n", o->name, from, text);
            return SD_ECONFIG;
        }
        *(int64_t *)field = v;
        return 0;
    }
    }
    return SD_ECONFIG;
}

/* A list named by a source of higher precedence drops the lower ones'. */
static void clear_list(sd_config *cfg, const option *o)
{
    if (o->type == OPT_LIST)
        ((char *)cfg + o->offset)[0] = '\0';
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static int load_file(sd_config *cfg, const char *path, FILE *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(err, "sessiond: cannot open config file %s: %s\n", path, strerror(errno));
        return SD_ECONFIG;
    }
    char line[4096], from[1100];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        snprintf(from, sizeof from, "%s:%d", path, lineno);
        if (!strchr(line, '\n') && !feof(f)) {
            fprintf(err, "sessiond: %s: line too long\n", from);
            rc = SD_ECONFIG;
            break;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = trim(line);
        if (*s == '\0')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            fprintf(err, "sessiond: %s: expected 'name = value'\n", from);
            rc = SD_ECONFIG;
            break;
        }
        *eq = '\0';
        char *name = trim(s), *value = trim(eq + 1);
        const option *o = find(name, strlen(name));
        if (!o || strcmp(o->name, "config") == 0) {
            fprintf(err, "sessiond: %s: unknown option '%s'\n", from, name);
            rc = SD_ECONFIG;
            break;
        }
        rc = set(cfg, o, value, from, err);
    }
    fclose(f);
    return rc;
}

void sd_config_usage(FILE *out)
{
    fprintf(out, "usage: sessiond [--option value | --option=value]...\n\n"
                 "A session management service. Every option can also be set by the\n"
                 "environment variable shown, or as 'name = value' in the config file.\n"
                 "Precedence: flag > environment > config file > default.\n\n");
    for (size_t i = 0; i < NOPTIONS; i++) {
        const option *o = &options[i];
        char env[64];
        env_name(o, env, sizeof env);
        fprintf(out, "  --%-24s %s\n  %-26s env %s, default '%s'\n", o->name, o->help, "", env,
                o->def);
    }
    fprintf(out, "  --%-24s %s\n  --%-24s %s\n", "help", "print this and exit", "version",
            "print the version and exit");
}

int sd_config_load(sd_config *cfg, int argc, char **argv, char **envp, FILE *err)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NOPTIONS; i++)
        if (set(cfg, &options[i], options[i].def, "default", err))
            return SD_CONFIG_EXIT_ERR;

    /* Pass 1: flags into a list of (option, value), so the config file named
     * by a flag can be read before the flags are applied. */
    const option *fopt[256];
    const char *fval[256];
    int nflags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            sd_config_usage(stdout);
            return SD_CONFIG_EXIT_OK;
        }
        if (strcmp(a, "--version") == 0) {
            printf("sessiond " SD_VERSION "\n");
            return SD_CONFIG_EXIT_OK;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(err, "sessiond: unexpected argument '%s' (try --help)\n", a);
            return SD_CONFIG_EXIT_ERR;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        const option *o = find(name, eq ? (size_t)(eq - name) : strlen(name));
        if (!o) {
            fprintf(err, "sessiond: unknown option '%s' (try --help)\n", a);
            return SD_CONFIG_EXIT_ERR;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(err, "sessiond: option --%s needs a value\n", o->name);
                return SD_CONFIG_EXIT_ERR;
            }
            val = argv[++i];
        }
        if (nflags == 256) {
            fprintf(err, "sessiond: too many arguments\n");
            return SD_CONFIG_EXIT_ERR;
        }
        fopt[nflags] = o;
        fval[nflags++] = val;
    }

    /* The config file: a flag names it, else the environment. */
    const char *file = NULL;
    char env[64];
    for (int i = 0; i < nflags; i++)
        if (strcmp(fopt[i]->name, "config") == 0)
            file = fval[i];
    if (!file && envp)
        for (char **e = envp; *e; e++)
            if (strncmp(*e, "SESSIOND_CONFIG=", 16) == 0)
                file = *e + 16;
    if (file && *file) {
        if (set(cfg, find("config", 6), file, "--config", err) || load_file(cfg, file, err))
            return SD_CONFIG_EXIT_ERR;
    }

    if (envp) {
        for (size_t i = 0; i < NOPTIONS; i++) {
            env_name(&options[i], env, sizeof env);
            size_t n = strlen(env);
            for (char **e = envp; *e; e++)
                if (strncmp(*e, env, n) == 0 && (*e)[n] == '=' &&
                    (clear_list(cfg, &options[i]), set(cfg, &options[i], *e + n + 1, env, err)))
                    return SD_CONFIG_EXIT_ERR;
        }
    }
    for (int i = 0; i < nflags; i++)
        clear_list(cfg, fopt[i]);
    for (int i = 0; i < nflags; i++) {
        char from[80];
        snprintf(from, sizeof from, "--%s", fopt[i]->name);
        if (set(cfg, fopt[i], fval[i], from, err))
            return SD_CONFIG_EXIT_ERR;
    }
    if (strcmp(cfg->session_limit_policy, "evict") && strcmp(cfg->session_limit_policy, "reject")) {
        fprintf(err, "sessiond: session-limit-policy must be evict or reject\n");
        return SD_CONFIG_EXIT_ERR;
    }
    if (!cfg->tls_cert[0] != !cfg->tls_key[0] || (cfg->tls_client_ca[0] && !cfg->tls_cert[0])) {
        fprintf(err, "sessiond: tls-cert and tls-key go together, and tls-client-ca needs them\n");
        return SD_CONFIG_EXIT_ERR;
    }
    if (strcmp(cfg->tls_client_auth, "optional") && strcmp(cfg->tls_client_auth, "require")) {
        fprintf(err, "sessiond: tls-client-auth must be optional or require\n");
        return SD_CONFIG_EXIT_ERR;
    }
    if (strcmp(cfg->binding_policy, "enforce") && strcmp(cfg->binding_policy, "flag")) {
        fprintf(err, "sessiond: binding-policy must be enforce or flag\n");
        return SD_CONFIG_EXIT_ERR;
    }
    const char *actions[] = {cfg->anomaly_new_device, cfg->anomaly_new_country,
                             cfg->anomaly_impossible_travel, cfg->anomaly_session_burst};
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
        if (sd_signal_action_parse(actions[i]) < 0) {
            fprintf(err,
                    "sessiond: anomaly-* actions must be off, record, flag or stepup, not "
                    "'%s'\n",
                    actions[i]);
            return SD_CONFIG_EXIT_ERR;
        }
    char why[300];
    sd_geofence fence;
    if (sd_geofence_parse(cfg->geo_allow, cfg->geo_deny, cfg->geo_groups, &fence, why,
                          sizeof why)) {
        fprintf(err, "sessiond: %s\n", why);
        return SD_CONFIG_EXIT_ERR;
    }
    if (sd_jwt_claims_check(cfg->jwt_claims, why, sizeof why)) {
        fprintf(err, "sessiond: %s\n", why);
        return SD_CONFIG_EXIT_ERR;
    }
    if (cfg->jwt_encrypt_key[0] && !cfg->jwt_keys[0]) {
        fprintf(err, "sessiond: jwt-encrypt-key needs jwt-keys (it encrypts the signed tokens)\n");
        return SD_CONFIG_EXIT_ERR;
    }
    /* The revocation feed lists ended sessions from the audit events, kept
     * as long as history: at least as long as a token can live. */
    if (cfg->jwt_keys[0] && cfg->history_retention_ms < cfg->jwt_lifetime_ms) {
        fprintf(err, "sessiond: history-retention must be at least jwt-lifetime (the revocation "
                     "feed must cover every live access token)\n");
        return SD_CONFIG_EXIT_ERR;
    }
    if (cfg->idle_timeout_ms > cfg->max_idle_timeout_ms) {
        fprintf(err, "sessiond: idle-timeout must not exceed max-idle-timeout\n");
        return SD_CONFIG_EXIT_ERR;
    }
    if (cfg->max_absolute_timeout_ms && cfg->absolute_timeout_ms > cfg->max_absolute_timeout_ms) {
        fprintf(err, "sessiond: absolute-timeout must not exceed max-absolute-timeout\n");
        return SD_CONFIG_EXIT_ERR;
    }
    return SD_CONFIG_RUN;
}
