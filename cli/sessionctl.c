/*
 * sessionctl.c - the operator's command line for sessiond: global options,
 * the API key (never from argv), the command table, exit codes. The
 * commands themselves live in commands.c and ops.c.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_URL "http://127.0.0.1:8080"

static const struct {
    const char *name;
    cli_command_fn fn;
    const char *usage;
} commands[] = {
    {"list", cmd_list, "list USER [--limit N]         a user's active sessions"},
    {"show", cmd_show, "show SESSION-ID               one session"},
    {"revoke", cmd_revoke,
     "revoke SESSION-ID [--if-version N]\n"
     "                                end one session (only while at version N)"},
    {"revoke-user", cmd_revoke_user,
     "revoke-user USER [--except SESSION-ID]\n"
     "                                end all of a user's sessions"},
    {"bulk-revoke", cmd_bulk_revoke,
     "bulk-revoke FILE|-            end the sessions listed in FILE "
     "(one id a line)"},
    {"validate", cmd_validate,
     "validate [--token-file FILE] [--no-touch] | --session ID\n"
     "                                check a token read from stdin "
     "(or FILE)"},
    {"events", cmd_events,
     "events --session ID|--user USER [--follow] [--interval DUR] "
     "[--limit N] [--newest]\n"
     "                                the audit trail (admin scope); --newest: the latest "
     "N (20) first"},
    {"stats", cmd_stats, "stats                         readiness and figures from /metrics"},
    {"not-before", cmd_not_before,
     "not-before [TIME|now --yes]   show the global not-before, or sign out every session\n"
     "                                created before TIME (RFC 3339), on every replica"},
    {"revoke-matching", cmd_revoke_matching,
     "revoke-matching --network CIDR | --device ID [--dry-run | --yes]\n"
     "                                end every session from a network or of a device "
     "(admin scope)"},
    {"jwt", cmd_jwt,
     "jwt verify --issuer ISS --audience AUD [--token-file FILE] [--decrypt-key PEM]\n"
     "                                verify an access token read from stdin "
     "(or FILE) offline; --decrypt-key: encrypted tokens (JWE)"},
};

static void usage(FILE *f)
{
    fputs("usage: sessionctl [options] COMMAND [args]\n\n"
          "Commands:\n",
          f);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %s\n", commands[i].usage);
    fputs("\nOptions:\n"
          "  --url URL            server (env SESSIOND_URL, default " DEFAULT_URL ")\n"
          "  --api-key-file FILE  read the API key from FILE (default: env SESSIOND_API_KEY)\n"
          "  --timeout DUR        per-request timeout, e.g. 500ms, 10s (default 30s)\n"
          "  --retry N            ask again up to N times (at most 10) when the server\n"
          "                       answers 503 or cannot be reached, for what changes\n"
          "                       nothing (show, list, validate, events, stats)\n"
          "  --cacert FILE        CA bundle (PEM) to verify an https server\n"
          "  --json               machine-readable output\n"
          "  -h, --help           this help;  --version  the version\n"
          "\nExit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 API key refused,\n"
          "5 server unavailable, 6 invalid or refused token. See sessionctl(1).\n",
          f);
}

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("sessionctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(sessionctl --help lists the commands)\n", stderr);
    return EXIT_USAGE;
}

int cli_fail(cli *x, const char *what, int rc)
{
    const char *detail = sd_client_last_detail(x->c);
    fputs("sessionctl: ", stderr);
    print_safe(stderr, what);
    fprintf(stderr, ": %s", sd_client_strerror(rc));
    if (detail[0]) {
        fputs(": ", stderr);
        print_safe(stderr, detail);
    }
    fputc('\n', stderr);
    switch (rc) {
    case SD_CLIENT_ENOTFOUND:
        return EXIT_NOTFOUND;
    case SD_CLIENT_EAUTH:
    case SD_CLIENT_EFORBIDDEN:
        return EXIT_AUTH;
    case SD_CLIENT_ECONNECT:
    case SD_CLIENT_ETIMEDOUT:
    case SD_CLIENT_EUNAVAILABLE:
        return EXIT_UNAVAILABLE;
    default:
        return EXIT_FAIL;
    }
}

/* "500ms", "10s", "2m" or plain seconds -> ms; -1 when malformed. */
static long parse_duration(const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return -1;
    double ms;
    if (strcmp(end, "ms") == 0)
        ms = v;
    else if (*end == '\0' || strcmp(end, "s") == 0)
        ms = v * 1000;
    else if (strcmp(end, "m") == 0)
        ms = v * 60000;
    else
        return -1;
    return ms > 86400000.0 ? -1 : (long)ms;
}

static long parse_count(const char *s, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno || end == s || *end || v < 1 || v > max ? -1 : v;
}

/* The first line of path, without its line break; NULL on failure. */
static char *read_key_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "sessionctl: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    fclose(f);
    if (n <= 0) {
        fprintf(stderr, "sessionctl: %s: empty API key file\n", path);
        free(line);
        return NULL;
    }
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
        line[--n] = '\0';
    return line;
}

enum {
    OPT_URL = 256,
    OPT_KEYFILE,
    OPT_TIMEOUT,
    OPT_CACERT,
    OPT_JSON,
    OPT_EXCEPT,
    OPT_SESSION,
    OPT_USER,
    OPT_FOLLOW,
    OPT_INTERVAL,
    OPT_LIMIT,
    OPT_TOKEN_FILE,
    OPT_NO_TOUCH,
    OPT_IP,
    OPT_UA,
    OPT_ISSUER,
    OPT_AUDIENCE,
    OPT_DECRYPT_KEY,
    OPT_IF_VERSION,
    OPT_NEWEST,
    OPT_RETRY,
    OPT_NETWORK,
    OPT_DEVICE,
    OPT_DRY_RUN,
    OPT_YES,
    OPT_VERSION,
};

static const struct option longopts[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"api-key-file", required_argument, NULL, OPT_KEYFILE},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"cacert", required_argument, NULL, OPT_CACERT},
    {"json", no_argument, NULL, OPT_JSON},
    {"except", required_argument, NULL, OPT_EXCEPT},
    {"session", required_argument, NULL, OPT_SESSION},
    {"user", required_argument, NULL, OPT_USER},
    {"follow", no_argument, NULL, OPT_FOLLOW},
    {"interval", required_argument, NULL, OPT_INTERVAL},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
    {"no-touch", no_argument, NULL, OPT_NO_TOUCH},
    {"ip", required_argument, NULL, OPT_IP},
    {"user-agent", required_argument, NULL, OPT_UA},
    {"issuer", required_argument, NULL, OPT_ISSUER},
    {"audience", required_argument, NULL, OPT_AUDIENCE},
    {"decrypt-key", required_argument, NULL, OPT_DECRYPT_KEY},
    {"if-version", required_argument, NULL, OPT_IF_VERSION},
    {"newest", no_argument, NULL, OPT_NEWEST},
    {"retry", required_argument, NULL, OPT_RETRY},
    {"network", required_argument, NULL, OPT_NETWORK},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"yes", no_argument, NULL, OPT_YES},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

/* Which command-specific options each command takes. */
static int option_allowed(const char *cmd, int opt)
{
    switch (opt) {
    case OPT_EXCEPT:
        return strcmp(cmd, "revoke-user") == 0;
    case OPT_IF_VERSION:
        return strcmp(cmd, "revoke") == 0;
    case OPT_SESSION:
        return strcmp(cmd, "events") == 0 || strcmp(cmd, "validate") == 0;
    case OPT_USER:
    case OPT_FOLLOW:
    case OPT_INTERVAL:
    case OPT_NEWEST:
        return strcmp(cmd, "events") == 0;
    case OPT_LIMIT:
        return strcmp(cmd, "events") == 0 || strcmp(cmd, "list") == 0;
    case OPT_TOKEN_FILE:
        return strcmp(cmd, "validate") == 0 || strcmp(cmd, "jwt") == 0;
    case OPT_ISSUER:
    case OPT_AUDIENCE:
    case OPT_DECRYPT_KEY:
        return strcmp(cmd, "jwt") == 0;
    case OPT_NO_TOUCH:
    case OPT_IP:
    case OPT_UA:
        return strcmp(cmd, "validate") == 0;
    case OPT_NETWORK:
    case OPT_DEVICE:
    case OPT_DRY_RUN:
        return strcmp(cmd, "revoke-matching") == 0;
    case OPT_YES:
        return strcmp(cmd, "revoke-matching") == 0 || strcmp(cmd, "not-before") == 0;
    default:
        return 1;
    }
}

/* True when arg is a long option that takes its value from the next
 * argument ("--except ID"). */
static bool takes_argument(const char *arg)
{
    if (strncmp(arg, "--", 2) != 0 || strchr(arg, '='))
        return false;
    for (const struct option *o = longopts; o->name; o++)
        if (strcmp(arg + 2, o->name) == 0)
            return o->has_arg == required_argument;
    return false;
}

/* A session id is 22 base64url characters and may begin with '-' (or
 * "--"): getopt would take it for an option. Such arguments, unless they
 * name a known option, are moved after a "--" so that they stay operands
 * (their order among themselves is kept). So are 43-character ones, the
 * shape of a session token: a token pasted on the command line then meets
 * the command's own refusal (read from stdin, never argv), not a puzzling
 * "invalid option". Returns the new argc. */
static int protect_ids(int argc, char **argv, char **out)
{
    int n = 0, nids = 0;
    char *ids[64];
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool id_shaped = i > 0 && a[0] == '-' && (strlen(a) == 22 || strlen(a) == 43) && nids < 64;
        for (const char *p = a; id_shaped && *p; p++)
            id_shaped = isalnum((unsigned char)*p) || *p == '-' || *p == '_';
        for (const struct option *o = longopts; id_shaped && o->name; o++)
            if (strncmp(a, "--", 2) == 0 && strcmp(a + 2, o->name) == 0)
                id_shaped = false;
        if (strcmp(a, "--") == 0) { /* the user ended the options already */
            while (i < argc)
                out[n++] = argv[i++];
            break;
        }
        if (id_shaped && !(i > 0 && takes_argument(argv[i - 1])))
            ids[nids++] = argv[i];
        else
            out[n++] = argv[i];
    }
    if (nids) {
        bool has_dd = false;
        for (int i = 0; i < n; i++)
            has_dd = has_dd || strcmp(out[i], "--") == 0;
        if (!has_dd)
            out[n++] = "--";
        for (int i = 0; i < nids; i++)
            out[n++] = ids[i];
    }
    out[n] = NULL;
    return n;
}

int main(int argc, char **argv)
{
    static char **args; /* lives as long as the process: argv does */
    args = calloc((size_t)argc + 2, sizeof *args);
    if (!args)
        return 1;
    argc = protect_ids(argc, argv, args);
    argv = args;
    cli x = {.interval_ms = 2000};
    sd_client_options o = {0};
    const char *key_file = NULL;
    long retries = 0;
    int seen[OPT_VERSION + 1] = {0};
    int opt;

    o.base_url = getenv("SESSIOND_URL");
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (opt >= OPT_URL && opt <= OPT_VERSION)
            seen[opt] = 1;
        switch (opt) {
        case OPT_URL:
            o.base_url = optarg;
            break;
        case OPT_KEYFILE:
            key_file = optarg;
            break;
        case OPT_TIMEOUT:
            o.timeout_ms = parse_duration(optarg);
            if (o.timeout_ms <= 0)
                return cli_usage_error("--timeout: '%s' is not a duration (500ms, 10s, 1m)",
                                       optarg);
            o.connect_timeout_ms = o.timeout_ms < 5000 ? o.timeout_ms : 5000;
            break;
        case OPT_NETWORK:
            x.network = optarg;
            break;
        case OPT_DEVICE:
            x.device = optarg;
            break;
        case OPT_DRY_RUN:
            x.dry_run = 1;
            break;
        case OPT_YES:
            x.yes = 1;
            break;
        case OPT_RETRY:
            if ((retries = parse_count(optarg, 10)) < 0)
                return cli_usage_error("--retry: '%s' is not a count from 1 to 10", optarg);
            break;
        case OPT_CACERT:
            o.ca_file = optarg;
            break;
        case OPT_JSON:
            x.json = 1;
            break;
        case OPT_EXCEPT:
            x.except = optarg;
            break;
        case OPT_SESSION:
            x.session = optarg;
            break;
        case OPT_USER:
            x.user = optarg;
            break;
        case OPT_FOLLOW:
            x.follow = 1;
            break;
        case OPT_NEWEST:
            x.newest = 1;
            break;
        case OPT_INTERVAL:
            x.interval_ms = parse_duration(optarg);
            if (x.interval_ms < 100)
                return cli_usage_error("--interval: '%s' is not a duration of at least 100ms",
                                       optarg);
            break;
        case OPT_LIMIT:
            if ((x.limit = (int)parse_count(optarg, 1000000)) < 0)
                return cli_usage_error("--limit: '%s' is not a count of at least 1", optarg);
            break;
        case OPT_TOKEN_FILE:
            x.file = optarg;
            break;
        case OPT_NO_TOUCH:
            x.no_touch = 1;
            break;
        case OPT_IP:
            x.ip = optarg;
            break;
        case OPT_UA:
            x.ua = optarg;
            break;
        case OPT_ISSUER:
            x.issuer = optarg;
            break;
        case OPT_AUDIENCE:
            x.audience = optarg;
            break;
        case OPT_DECRYPT_KEY:
            x.decrypt_key = optarg;
            break;
        case OPT_IF_VERSION:
            if ((x.if_version = parse_count(optarg, LONG_MAX)) < 0)
                return cli_usage_error("--if-version: '%s' is not a version (1, 2, ...)", optarg);
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        case OPT_VERSION:
            printf("sessionctl %s (libsessiond-client %s)\n", SD_VERSION, SD_CLIENT_VERSION);
            return EXIT_OK;
        default:
            return cli_usage_error("unknown option");
        }
    }
    if (optind >= argc)
        return cli_usage_error("no command given");
    const char *name = argv[optind];
    cli_command_fn fn = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            fn = commands[i].fn;
    if (!fn)
        return cli_usage_error("unknown command '%s'", name);
    for (int i = OPT_URL; i <= OPT_VERSION; i++)
        if (seen[i] && !option_allowed(name, i)) {
            for (const struct option *lo = longopts; lo->name; lo++)
                if (lo->val == i)
                    return cli_usage_error("%s does not take --%s", name, lo->name);
        }
    x.args = argv + optind + 1;
    x.nargs = argc - optind - 1;

    char *key = NULL;
    if (key_file) {
        if (!(key = read_key_file(key_file)))
            return EXIT_FAIL;
    } else if (getenv("SESSIOND_API_KEY") && *getenv("SESSIOND_API_KEY")) {
        key = strdup(getenv("SESSIOND_API_KEY"));
    }
    o.api_key = key;
    o.user_agent = "sessionctl/" SD_VERSION;
    int rc = sd_client_open(&o, &x.c);
    if (key) {
        explicit_bzero(key, strlen(key));
        free(key);
    }
    if (rc) {
        fprintf(stderr, "sessionctl: %s (check --url: http://HOST:PORT or https://...)\n",
                sd_client_strerror(rc));
        return EXIT_USAGE;
    }
    if (retries)
        sd_client_set_retry(x.c, (int)retries, 0);
    int code = fn(&x);
    sd_client_close(x.c);
    return code;
}
