/*
 * config.h - every setting of sessiond, from one table (config.c).
 *
 * The table feeds the command-line flags, the SESSIOND_<NAME> environment
 * variables, the config file and --help. Precedence, lowest to highest:
 * built-in default < config file (--config FILE or SESSIOND_CONFIG) <
 * environment < command-line flag.
 */
#ifndef SD_CONFIG_H
#define SD_CONFIG_H

#include <stdint.h>
#include <stdio.h>

typedef struct sd_config {
    char listen[256];
    char data_dir[1024];
    char store[2048];
    char store_standby[2048];
    char cache[1024];
    char cache_password[256];
    int64_t cache_timeout_ms;
    char config_file[1024];
    char log_level[16];
    char auth_cookie[128];
    char api_keys[1024];
    char tls_cert[1024];
    char tls_key[1024];
    char tls_client_ca[1024];
    char tls_client_auth[16];
    char encryption_keys[1024];
    char jwt_keys[1024];
    char jwt_issuer[256];
    char jwt_audience[512];
    char jwt_claims[256];
    char jwt_encrypt_key[1024];
    int64_t jwt_lifetime_ms;
    double jwt_reuse;         /* fraction of a token's lifetime it is handed out again */
    int64_t jwt_reuse_max_mb; /* memory bound of those tokens */
    int64_t idle_timeout_ms;
    int64_t absolute_timeout_ms;
    int64_t max_absolute_timeout_ms;
    int64_t max_idle_timeout_ms;
    double touch_fraction;
    int64_t sweep_interval_ms;
    int64_t sweep_batch;
    int64_t history_retention_ms;
    char binding_policy[16];
    int64_t binding_ipv4_prefix;
    int64_t binding_ipv6_prefix;
    char anomaly_new_device[16];
    char anomaly_new_country[16];
    char anomaly_impossible_travel[16];
    char anomaly_session_burst[16];
    int64_t anomaly_max_speed;
    int64_t anomaly_min_distance;
    int64_t anomaly_burst_count;
    int64_t anomaly_burst_window_ms;
    char geo_allow[1024];
    char geo_deny[1024];
    char geo_groups[2048];
    int64_t failed_validation_rate;
    int64_t failed_validation_burst;
    double audit_sample_validations;
    char audit_dir[1024];
    int64_t audit_retention_ms;
    int64_t audit_max_bytes;
    int64_t max_body_bytes;
    int64_t max_data_bytes;
    int64_t max_header_bytes;
    int64_t max_connections;
    int64_t max_connections_per_ip;
    int64_t connection_timeout_ms;
    int64_t threads;
    int64_t handler_threads;
    int64_t commit_batch;
    int64_t max_queued_writes;
    int64_t write_hold_ms;
    int64_t max_sessions_per_user;
    int64_t refresh_grace_ms;
    char session_limit_policy[16];
    int64_t shutdown_timeout_ms;
    char webhook[8192]; /* one 'URL SECRET-FILE [EVENTS]' a line (repeatable) */
    int64_t webhook_timeout_ms;
    int64_t webhook_max_attempts;
    int64_t webhook_retry_initial_ms;
    int64_t webhook_retry_max_ms;
} sd_config;

/* Result of sd_config_load: go on, or exit now with the given status
 * (after --help, --version or an error that was already printed). */
enum { SD_CONFIG_RUN = 0, SD_CONFIG_EXIT_OK = 1, SD_CONFIG_EXIT_ERR = 2 };

/* Fills cfg from defaults, the config file, the environment (envp, may be
 * NULL for none) and argv, in that order of precedence. Messages go to err. */
int sd_config_load(sd_config *cfg, int argc, char **argv, char **envp, FILE *err);

/* Writes --help text: every option with its env name, default and help. */
void sd_config_usage(FILE *out);

#endif
