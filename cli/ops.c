/*
 * ops.c - sessionctl's operator views: `events` (the audit trail, with
 * --follow polling) and `stats` (readiness and figures from /metrics).
 */
#include "cli.h"

#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EVENT_PAGE 100

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void print_event(const sd_client_event *e, int json)
{
    if (json) {
        puts(e->json);
    } else {
        char seq[24];
        snprintf(seq, sizeof seq, "%lld", (long long)e->seq);
        const char *cells[] = {seq,        e->time,  e->event,          e->session_id,
                               e->user_id, e->actor, e->client_address, e->reason};
        static const int w[] = {6, 24, 20, 22, 16, 10, 15, 0};
        for (int i = 0; i < 8; i++) {
            const char *s = cells[i] ? cells[i] : "-";
            print_safe(stdout, s);
            if (i < 7)
                printf("%*s", (int)(w[i] > (int)strlen(s) ? w[i] - (int)strlen(s) : 0) + 2, "");
        }
        putchar('\n');
    }
}

/* --newest: the newest --limit events (20 when not given), newest first,
 * paged with `before`. */
static int events_newest(cli *x)
{
    long want = x->limit ? x->limit : 20, shown = 0;
    char *before = NULL;
    int code = EXIT_OK;
    while (shown < want) {
        sd_client_event_list *l;
        int page = want - shown < EVENT_PAGE ? (int)(want - shown) : EVENT_PAGE;
        int rc = x->session ? sd_client_session_events_newest(x->c, x->session, page, before, &l)
                            : sd_client_user_events_newest(x->c, x->user, page, before, &l);
        if (rc) {
            code = cli_fail(x, x->session ? x->session : x->user, rc);
            break;
        }
        for (size_t i = 0; i < l->count && shown < want; i++, shown++)
            print_event(&l->events[i], x->json);
        free(before);
        before = l->next ? strdup(l->next) : NULL;
        sd_client_event_list_free(l);
        if (!before)
            break;
    }
    free(before);
    return code;
}

/*
 * Pages through the events from the first; with --follow, polls for more.
 * The cursor is opaque: a page without `next` is fetched again (with the
 * `after` that produced it) on the next poll, and events already printed
 * (seq <= the last one shown) are skipped; once a page has `next`, the
 * following pages start from it.
 */
int cmd_events(cli *x)
{
    if (x->nargs)
        return cli_usage_error("events takes no argument: --session ID or --user USER");
    if (!x->session == !x->user)
        return cli_usage_error("events needs exactly one of --session ID and --user USER");
    if (x->follow && x->limit)
        return cli_usage_error("--limit and --follow do not go together");
    if (x->follow && x->newest)
        return cli_usage_error("--newest and --follow do not go together");
    if (x->follow) {
        struct sigaction sa = {.sa_handler = on_signal};
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        setvbuf(stdout, NULL, _IOLBF, 0);
    }
    if (!x->json)
        printf("%-6s  %-24s  %-20s  %-22s  %-16s  %-10s  %-15s  %s\n", "SEQ", "TIME", "EVENT",
               "SESSION ID", "USER", "ACTOR", "ADDRESS", "REASON");
    if (x->newest)
        return events_newest(x);
    char *after = NULL;
    int64_t last = -1;
    long shown = 0;
    int code = EXIT_OK;
    while (!stop) {
        sd_client_event_list *l;
        int rc = x->session ? sd_client_session_events(x->c, x->session, EVENT_PAGE, after, &l)
                            : sd_client_user_events(x->c, x->user, EVENT_PAGE, after, &l);
        if (rc) {
            code = cli_fail(x, x->session ? x->session : x->user, rc);
            break;
        }
        for (size_t i = 0; i < l->count && (!x->limit || shown < x->limit); i++) {
            if (l->events[i].seq <= last)
                continue;
            print_event(&l->events[i], x->json);
            last = l->events[i].seq;
            shown++;
        }
        int more = l->next != NULL;
        if (more) {
            free(after);
            after = strdup(l->next);
        }
        sd_client_event_list_free(l);
        if (x->limit && shown >= x->limit)
            break;
        if (more)
            continue;
        if (!x->follow)
            break;
        struct timespec ts = {x->interval_ms / 1000, (x->interval_ms % 1000) * 1000000L};
        while (!stop && nanosleep(&ts, &ts) != 0)
            ;
    }
    free(after);
    return code;
}

/* The sum of the samples of metric `name` whose labels contain `label`
 * (NULL: all); NAN when there is none. */
static double metric(const char *text, const char *name, const char *label)
{
    double sum = NAN;
    size_t nl = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (*p == '#' || strncmp(p, name, nl) != 0 || (p[nl] != ' ' && p[nl] != '{'))
            continue;
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char line[1024];
        if (len >= sizeof line)
            continue;
        memcpy(line, p, len);
        line[len] = '\0';
        char *labels_end = p[nl] == '{' ? strrchr(line, '}') : NULL;
        if (label && (!labels_end ||
                      !memmem(line + nl, (size_t)(labels_end - line - nl), label, strlen(label))))
            continue;
        char *v = strrchr(line, ' ');
        if (!v)
            continue;
        double d = strtod(v + 1, NULL);
        sum = isnan(sum) ? d : sum + d;
    }
    return sum;
}

static void fmt_num(char *buf, size_t cap, double v)
{
    if (isnan(v))
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%.0f", v);
}

static json_t *num_json(double v)
{
    return isnan(v) ? json_null() : json_integer((json_int_t)v);
}

int cmd_stats(cli *x)
{
    if (x->nargs)
        return cli_usage_error("stats takes no argument");
    int ready_rc = sd_client_ready(x->c);
    if (ready_rc && ready_rc != SD_CLIENT_EUNAVAILABLE)
        return cli_fail(x, "readyz", ready_rc);
    char why[256];
    snprintf(why, sizeof why, "%s", sd_client_last_detail(x->c));
    char *text;
    int rc = sd_client_metrics(x->c, &text);
    if (rc)
        return cli_fail(x, "metrics", rc);
    struct {
        const char *key, *label, *name, *filter;
    } rows[] = {
        {"sessionsActive", "active sessions", "sessiond_sessions_active", NULL},
        {"requests", "requests", "sessiond_http_requests_total", NULL},
        {"requests2xx", "  2xx", "sessiond_http_requests_total", "status=\"2"},
        {"requests4xx", "  4xx", "sessiond_http_requests_total", "status=\"4"},
        {"requests5xx", "  5xx", "sessiond_http_requests_total", "status=\"5"},
        {"validationsValid", "validations valid", "sessiond_validations_total", "result=\"valid\""},
        {"validationsInvalid", "validations invalid", "sessiond_validations_total",
         "result=\"invalid\""},
        {"sessionsExpired", "sessions expired", "sessiond_sessions_expired_total", NULL},
        {"storeCommits", "store commits", "sessiond_store_commits_total", NULL},
        {"storeWrites", "store writes", "sessiond_store_writes_total", NULL},
        {"storeBroken", "store broken", "sessiond_store_broken", NULL},
        {"auditRecords", "audit records", "sessiond_audit_records_total", NULL},
        {"auditDropped", "audit dropped", "sessiond_audit_dropped_total", NULL},
    };
    size_t n = sizeof rows / sizeof rows[0];
    if (x->json) {
        json_t *o = json_pack("{s:b}", "ready", ready_rc == 0);
        for (size_t i = 0; i < n; i++)
            json_object_set_new(o, rows[i].key,
                                num_json(metric(text, rows[i].name, rows[i].filter)));
        char *s = json_dumps(o, JSON_COMPACT);
        if (s)
            puts(s);
        free(s);
        json_decref(o);
    } else {
        static const char *const hdr[] = {"FIGURE", "VALUE"};
        table *t = table_new(2, hdr);
        const char *ready[] = {"ready", ready_rc == 0 ? "yes" : "no"};
        table_add(t, ready);
        for (size_t i = 0; i < n; i++) {
            char v[32];
            fmt_num(v, sizeof v, metric(text, rows[i].name, rows[i].filter));
            const char *row[] = {rows[i].label, v};
            table_add(t, row);
        }
        table_print(t, stdout);
        table_free(t);
    }
    sd_client_free(text);
    if (ready_rc)
        fprintf(stderr, "sessionctl: the server is not ready: %s\n", why);
    return ready_rc ? EXIT_UNAVAILABLE : EXIT_OK;
}
