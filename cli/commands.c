/*
 * commands.c - sessionctl's session commands: list, show, revoke,
 * revoke-user, bulk-revoke, validate. Each prints a table (or --json) and
 * returns an exit code from cli.h.
 */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define PAGE     1000 /* the server's largest page */
#define BULK_MAX 1000 /* the server's largest sessionIds array */

void cli_print_json(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s)
        puts(s);
    free(s);
    json_decref(o);
}

int cli_need_args(cli *x, int n, const char *what)
{
    if (x->nargs != n)
        return cli_usage_error("expected %s", what);
    return 0;
}

int cmd_list(cli *x)
{
    if (cli_need_args(x, 1, "one USER: sessionctl list USER"))
        return EXIT_USAGE;
    const char *user = x->args[0];
    static const char *const hdr[] = {"SESSION ID", "DEVICE",  "IP ADDRESS", "MFA",
                                      "LAST SEEN",  "EXPIRES", "VERSION"};
    table *t = table_new(7, hdr);
    json_t *arr = json_array();
    char *cursor = NULL;
    int code = EXIT_OK;
    long shown = 0;
    do {
        sd_client_session_list *l;
        int rc = sd_client_list_user(x->c, user, PAGE, cursor, &l);
        if (rc) {
            code = cli_fail(x, "list", rc);
            break;
        }
        for (size_t i = 0; i < l->count && (!x->limit || shown < x->limit); i++, shown++) {
            sd_client_session *s = l->sessions[i];
            char ver[24];
            snprintf(ver, sizeof ver, "%lld", (long long)s->version);
            const char *row[] = {s->session_id,
                                 s->device_info ? s->device_info : s->device_id,
                                 s->ip_address,
                                 s->mfa ? "yes" : "no",
                                 s->last_seen,
                                 s->expiry,
                                 ver};
            table_add(t, row);
            json_array_append_new(arr, json_loads(s->json, 0, NULL));
        }
        free(cursor);
        cursor = l->next_cursor ? strdup(l->next_cursor) : NULL;
        sd_client_session_list_free(l);
    } while (cursor && (!x->limit || shown < x->limit));
    free(cursor);
    if (code == EXIT_OK) {
        if (x->json)
            cli_print_json(json_pack("{s:s, s:O}", "userId", user, "sessions", arr));
        else if (shown == 0)
            printf("no active sessions\n");
        else
            table_print(t, stdout);
    }
    json_decref(arr);
    table_free(t);
    return code;
}

int cmd_show(cli *x)
{
    if (cli_need_args(x, 1, "one SESSION-ID: sessionctl show ID"))
        return EXIT_USAGE;
    sd_client_session *s;
    int rc = sd_client_get(x->c, x->args[0], &s);
    if (rc)
        return cli_fail(x, x->args[0], rc);
    if (x->json) {
        puts(s->json);
    } else {
        char ver[24];
        snprintf(ver, sizeof ver, "%lld", (long long)s->version);
        static const char *const hdr[] = {"FIELD", "VALUE"};
        table *t = table_new(2, hdr);
        const char *rows[][2] = {
            {"sessionId", s->session_id},
            {"userId", s->user_id},
            {"deviceId", s->device_id},
            {"deviceInfo", s->device_info},
            {"userAgent", s->user_agent},
            {"ipAddress", s->ip_address},
            {"geoLocation", s->geo_location},
            {"mfa", s->mfa ? "true" : "false"},
            {"data", s->data},
            {"createdAt", s->created_at},
            {"lastSeen", s->last_seen},
            {"expiry", s->expiry},
            {"absoluteExpiry", s->absolute_expiry},
            {"version", ver},
        };
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
            table_add(t, rows[i]);
        table_print(t, stdout);
        table_free(t);
    }
    sd_client_session_free(s);
    return EXIT_OK;
}

int cmd_revoke(cli *x)
{
    if (cli_need_args(x, 1, "one SESSION-ID: sessionctl revoke ID"))
        return EXIT_USAGE;
    int rc = x->if_version > 0 ? sd_client_delete_if(x->c, x->args[0], x->if_version)
                               : sd_client_delete(x->c, x->args[0]);
    if (rc)
        return cli_fail(x, x->args[0], rc);
    if (x->json)
        cli_print_json(json_pack("{s:s, s:b}", "sessionId", x->args[0], "revoked", 1));
    else {
        fputs("revoked ", stdout);
        print_safe(stdout, x->args[0]);
        fputc('\n', stdout);
    }
    return EXIT_OK;
}

int cmd_revoke_user(cli *x)
{
    if (cli_need_args(x, 1, "one USER: sessionctl revoke-user USER [--except ID]"))
        return EXIT_USAGE;
    int64_t n = 0;
    int rc = sd_client_revoke_user(x->c, x->args[0], x->except, &n);
    if (rc)
        return cli_fail(x, x->args[0], rc);
    if (x->json) {
        cli_print_json(json_pack("{s:s, s:I}", "userId", x->args[0], "deleted", (json_int_t)n));
    } else {
        printf("revoked %lld session%s of user ", (long long)n, n == 1 ? "" : "s");
        print_safe(stdout, x->args[0]);
        if (x->except) {
            fputs(" (kept ", stdout);
            print_safe(stdout, x->except);
            fputc(')', stdout);
        }
        fputc('\n', stdout);
    }
    return EXIT_OK;
}

/* A session id: 22 base64url characters. */
static int id_shape(const char *s)
{
    size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
    return n == 22 && s[n] == '\0';
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Reads every id first and refuses the whole file when a line is malformed
 * (nothing is revoked then); blank lines and lines starting with # are
 * skipped, duplicates counted once. Sends the ids in batches of 1000.
 */
int cmd_bulk_revoke(cli *x)
{
    if (cli_need_args(x, 1, "one FILE (or - for stdin): sessionctl bulk-revoke FILE"))
        return EXIT_USAGE;
    const char *path = x->args[0];
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f) {
        fprintf(stderr, "sessionctl: %s: %s\n", path, strerror(errno));
        return EXIT_FAIL;
    }
    char **ids = NULL, *line = NULL;
    size_t n = 0, cap = 0, lcap = 0, lineno = 0, bad = 0;
    ssize_t len;
    int code = EXIT_OK;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ' ||
                           line[len - 1] == '\t'))
            line[--len] = '\0';
        if (*s == '\0' || *s == '#')
            continue;
        if (!id_shape(s)) {
            if (bad++ < 10)
                fprintf(stderr, "sessionctl: %s:%zu: not a session id\n", path, lineno);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            char **v = realloc(ids, cap * sizeof *ids);
            if (!v) {
                code = EXIT_FAIL;
                break;
            }
            ids = v;
        }
        if (!(ids[n] = strdup(s))) {
            code = EXIT_FAIL;
            break;
        }
        n++;
    }
    free(line);
    if (f != stdin)
        fclose(f);
    if (code == EXIT_OK && bad) {
        fprintf(stderr, "sessionctl: %zu malformed line%s in %s: nothing revoked\n", bad,
                bad == 1 ? "" : "s", path);
        code = EXIT_FAIL;
    }
    size_t unique = 0;
    int64_t revoked = 0;
    if (code == EXIT_OK && n) {
        qsort(ids, n, sizeof *ids, cmp_str);
        for (size_t i = 0; i < n; i++)
            if (i == 0 || strcmp(ids[i], ids[unique - 1]) != 0)
                ids[unique++] = ids[i];
            else
                free(ids[i]);
        for (size_t off = 0; off < unique && code == EXIT_OK; off += BULK_MAX) {
            size_t k = unique - off < BULK_MAX ? unique - off : BULK_MAX;
            int64_t d = 0;
            int rc = sd_client_bulk_delete(x->c, (const char *const *)ids + off, k, NULL, 0, &d);
            if (rc) {
                code = cli_fail(x, "bulk-revoke", rc);
                fprintf(stderr, "sessionctl: %lld sessions were revoked before the failure\n",
                        (long long)revoked);
            }
            revoked += d;
        }
    } else {
        for (size_t i = 0; i < n; i++)
            free(ids[i]);
        unique = 0;
    }
    if (code == EXIT_OK) {
        if (x->json)
            cli_print_json(json_pack("{s:I, s:I, s:I, s:I}", "ids", (json_int_t)n, "unique",
                                     (json_int_t)unique, "revoked", (json_int_t)revoked,
                                     "notActive", (json_int_t)(unique - (size_t)revoked)));
        else
            printf("%zu ids (%zu unique): %lld revoked, %lld not active (unknown or already "
                   "ended)\n",
                   n, unique, (long long)revoked, (long long)(unique - (size_t)revoked));
    }
    for (size_t i = 0; i < unique; i++)
        free(ids[i]);
    free(ids);
    return code;
}

/* Reads a token: the first line of path, or of stdin (without echo when
 * stdin is a terminal). Returns NULL on failure. */
char *cli_read_token(const char *path)
{
    FILE *f = path ? fopen(path, "r") : stdin;
    if (!f) {
        fprintf(stderr, "sessionctl: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    struct termios old, quiet;
    int tty = !path && isatty(fileno(f)) && tcgetattr(fileno(f), &old) == 0;
    if (tty) {
        fputs("token: ", stderr);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(fileno(f), TCSAFLUSH, &quiet);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    if (tty) {
        tcsetattr(fileno(f), TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (path)
        fclose(f);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
        line[--n] = '\0';
    if (n <= 0) {
        fprintf(stderr, "sessionctl: no token on %s\n", path ? path : "stdin");
        if (line)
            explicit_bzero(line, cap);
        free(line);
        return NULL;
    }
    return line;
}

int cmd_validate(cli *x)
{
    if (x->nargs)
        return cli_usage_error("validate takes no argument: the token is read from stdin or "
                               "--token-file, never from the command line");
    if (x->session && (x->file || x->no_touch || x->ip || x->ua))
        return cli_usage_error("--session validates an id: no --token-file, --no-touch, --ip "
                               "or --user-agent");
    sd_client_validation v;
    int rc;
    if (x->session) {
        rc = sd_client_validate_id(x->c, x->session, &v);
    } else {
        char *token = cli_read_token(x->file);
        if (!token)
            return EXIT_FAIL;
        rc = sd_client_validate_token_ctx(x->c, token, !x->no_touch, x->ip, x->ua, &v);
        explicit_bzero(token, strlen(token));
        free(token);
    }
    if (rc)
        return cli_fail(x, "validate", rc);
    if (x->session && v.valid)
        snprintf(v.session_id, sizeof v.session_id, "%s", x->session);
    if (x->json) {
        json_t *o = json_pack("{s:b}", "isValid", v.valid);
        json_object_set_new(o, "expiry", v.valid ? json_string(v.expiry) : json_null());
        if (v.session_id[0])
            json_object_set_new(o, "sessionId", json_string(v.session_id));
        if (v.user_id[0])
            json_object_set_new(o, "userId", json_string(v.user_id));
        if (v.reason[0])
            json_object_set_new(o, "reason", json_string(v.reason));
        if (v.binding_mismatch)
            json_object_set_new(o, "bindingMismatch", json_true());
        cli_print_json(o);
    } else if (v.valid) {
        static const char *const hdr[] = {"VALID", "SESSION ID", "USER", "EXPIRES"};
        table *t = table_new(4, hdr);
        const char *row[] = {"yes", v.session_id, v.user_id[0] ? v.user_id : NULL, v.expiry};
        table_add(t, row);
        table_print(t, stdout);
        table_free(t);
        if (v.binding_mismatch)
            puts("warning: validated from another client context (binding mismatch)");
    } else if (v.reason[0]) {
        fputs("invalid: ", stdout);
        print_safe(stdout, v.reason);
        fputc('\n', stdout);
    } else {
        puts("invalid (unknown, malformed, revoked or expired)");
    }
    return v.valid ? EXIT_OK : EXIT_INVALID;
}
