/*
 * parse.c - the --webhook settings read and checked at start (a bad URL, a
 * missing or malformed secret is a start-up error naming the setting), and
 * the webhooks' series of /metrics.
 */
#include "session/token.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/keyfile.h"
#include "util/log.h"
#include "util/random.h"
#include "webhook/internal.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HOOKS 32

/* Checks the URL with libcurl's parser: http or https, a host. Fills
 * h->shown with the scheme, host and port only: userinfo, a query, and
 * even the path (some services put the secret there) stay out of logs. */
static int check_url(sd__hook *h, int nth, char *err, size_t errlen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    int rc = SD_ECONFIG;
    if (!u || curl_url_set(u, CURLUPART_URL, h->url, 0) != CURLUE_OK)
        snprintf(err, errlen, "--webhook #%d: the URL is not a URL (http://... or https://...)",
                 nth);
    else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
             (strcmp(scheme, "http") && strcmp(scheme, "https")))
        snprintf(err, errlen, "--webhook #%d: the URL's scheme must be http or https", nth);
    else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0])
        snprintf(err, errlen, "--webhook #%d: the URL has no host", nth);
    else {
        curl_url_get(u, CURLUPART_PORT, &port, 0);
        snprintf(h->shown, sizeof h->shown, "%s://%s%s%s/...", scheme, host, port ? ":" : "",
                 port ? port : "");
        rc = 0;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

/* Reads the secret ("whsec_...", the file's first line) into h->key. */
static int read_secret(sd__hook *h, const char *path, int nth, char *err, size_t errlen)
{
    char why[1300];
    FILE *f = sd_key_file_open(path, "webhook secret file", why, sizeof why);
    if (!f) {
        snprintf(err, errlen, "--webhook #%d: %s", nth, why);
        return SD_ECONFIG;
    }
    char line[256] = "";
    bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    int rc = got ? sd_webhook_secret_decode(line, h->key, &h->key_len) : SD_EINVALID;
    OPENSSL_cleanse(line, sizeof line);
    if (rc) {
        snprintf(err, errlen,
                 "--webhook #%d: the secret file %s must hold one line 'whsec_' followed by the "
                 "base64 of 16 to 64 random bytes",
                 nth, path);
        return SD_ECONFIG;
    }
    return 0;
}

/* The event filter: comma-separated names of [a-z_]. */
static int read_events(sd__hook *h, const char *list, int nth, char *err, size_t errlen)
{
    size_t n = strlen(list);
    if (n + 3 > sizeof h->events) {
        snprintf(err, errlen, "--webhook #%d: the event list is too long", nth);
        return SD_ECONFIG;
    }
    for (size_t i = 0; i < n; i++) {
        char c = list[i];
        bool edge = i == 0 || i == n - 1 || list[i + 1] == ',';
        if (!((c >= 'a' && c <= 'z') || c == '_' || (c == ',' && !edge))) {
            snprintf(err, errlen,
                     "--webhook #%d: the event list must be audit event names separated by "
                     "commas (e.g. created,revoked,token_reuse_detected)",
                     nth);
            return SD_ECONFIG;
        }
    }
    snprintf(h->events, sizeof h->events, ",%s,", list);
    return 0;
}

/* One 'URL SECRET-FILE [EVENTS]' line into h. */
static int parse_line(sd__hook *h, char *line, int nth, char *err, size_t errlen)
{
    char *save = NULL, *url = strtok_r(line, " \t", &save), *file = strtok_r(NULL, " \t", &save),
         *events = strtok_r(NULL, " \t", &save), *extra = strtok_r(NULL, " \t", &save);
    if (!url || !file || extra) {
        snprintf(err, errlen,
                 "--webhook #%d: expected 'URL SECRET-FILE [EVENT,...]' (the secret is read from "
                 "a file, never given on the command line)",
                 nth);
        return SD_ECONFIG;
    }
    if (strlen(url) >= sizeof h->url) {
        snprintf(err, errlen, "--webhook #%d: the URL is too long", nth);
        return SD_ECONFIG;
    }
    snprintf(h->url, sizeof h->url, "%s", url);
    int rc = check_url(h, nth, err, errlen);
    if (rc == 0)
        rc = read_secret(h, file, nth, err, errlen);
    if (rc == 0 && events)
        rc = read_events(h, events, nth, err, errlen);
    if (rc)
        return rc;
    unsigned char digest[SD_HASH_LEN];
    char hex[17];
    sd_token_hash(h->url, strlen(h->url), digest); /* SHA-256 */
    sd_hex(digest, 8, hex);
    memcpy(h->name, "wh-", 3);
    memcpy(h->name + 3, hex, sizeof hex);
    return 0;
}

int sd_webhooks_parse(const char *lines, const sd_webhook_options *opt, sd_webhooks **out,
                      char *err, size_t errlen)
{
    *out = NULL;
    if (!lines[0])
        return 0;
    sd_webhooks *w = calloc(1, sizeof *w);
    char *copy = strdup(lines);
    if (w)
        w->v = calloc(MAX_HOOKS, sizeof *w->v);
    if (!w || !w->v || !copy) {
        snprintf(err, errlen, "out of memory for the webhooks");
        free(copy);
        if (w)
            free(w->v);
        free(w);
        return SD_ENOMEM;
    }
    w->opt = *opt;
    int rc = 0;
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line && rc == 0;
         line = strtok_r(NULL, "\n", &save)) {
        if (!line[strspn(line, " \t")])
            continue;
        if (w->n == MAX_HOOKS) {
            snprintf(err, errlen, "--webhook: at most %d webhooks", MAX_HOOKS);
            rc = SD_ECONFIG;
            break;
        }
        sd__hook *h = &w->v[w->n];
        h->set = w;
        rc = parse_line(h, line, (int)w->n + 1, err, errlen);
        for (size_t i = 0; rc == 0 && i < w->n; i++)
            if (strcmp(w->v[i].name, h->name) == 0) {
                snprintf(err, errlen, "--webhook #%zu: the same URL as #%zu", w->n + 1, i + 1);
                rc = SD_ECONFIG;
            }
        w->n++;
    }
    free(copy);
    if (rc || w->n == 0) {
        sd_webhooks_stop(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* ---- /metrics ---------------------------------------------------------- */

static int add(char **buf, size_t *len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int add(char **buf, size_t *len, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line)
        return SD_ENOMEM;
    char *p = realloc(*buf, *len + (size_t)n + 1);
    if (!p)
        return SD_ENOMEM;
    memcpy(p + *len, line, (size_t)n + 1);
    *buf = p;
    *len += (size_t)n;
    return 0;
}

enum series_kind { S_DELIVERED, S_FAILED, S_DEAD, S_SKIPPED, S_LEADER, S_LAG, S_COUNT };

static const struct {
    const char *name, *type, *help;
} series_of[S_COUNT] = {
    [S_DELIVERED] = {"sessiond_webhook_delivered_total", "counter",
                     "Events a webhook's receiver acknowledged (2xx)."},
    [S_FAILED] = {"sessiond_webhook_failed_total", "counter",
                  "Delivery attempts that failed (no answer, or not 2xx); each is retried."},
    [S_DEAD] = {"sessiond_webhook_dead_letter_total", "counter",
                "Events given up after --webhook-max-attempts failed attempts."},
    [S_SKIPPED] = {"sessiond_webhook_skipped_total", "counter",
                   "Events the webhook's event list leaves out."},
    [S_LEADER] = {"sessiond_webhook_leader", "gauge",
                  "1 while this replica holds the webhook's lease and delivers."},
    [S_LAG] = {"sessiond_webhook_lag_seconds", "gauge",
               "Age of the event being delivered (0: caught up)."},
};

/* One series: its header, then a sample per webhook. */
static int series(const sd_webhooks *w, char **buf, size_t *len, enum series_kind k)
{
    const char *name = series_of[k].name;
    int rc = add(buf, len, "# HELP %s %s\n# TYPE %s %s\n", name, series_of[k].help, name,
                 series_of[k].type);
    int64_t now = sd_now_ms();
    for (size_t i = 0; rc == 0 && w && i < w->n; i++) {
        const sd__hook *h = &w->v[i];
        if (k == S_LAG) {
            int64_t since = atomic_load(&h->pending_since);
            double lag = since > 0 && now > since ? (double)(now - since) / 1000.0 : 0.0;
            rc = add(buf, len, "%s{webhook=\"%s\"} %.3f\n", name, h->name, lag);
            continue;
        }
        uint64_t v = k == S_DELIVERED ? atomic_load(&h->delivered)
                     : k == S_FAILED  ? atomic_load(&h->failed)
                     : k == S_DEAD    ? atomic_load(&h->dead)
                     : k == S_SKIPPED ? atomic_load(&h->filtered)
                                      : (uint64_t)atomic_load(&h->leader);
        rc = add(buf, len, "%s{webhook=\"%s\"} %llu\n", name, h->name, (unsigned long long)v);
    }
    return rc;
}

int sd_webhooks_metrics(const sd_webhooks *w, char **buf, size_t *len)
{
    int rc = 0;
    for (int k = 0; rc == 0 && k < S_COUNT; k++)
        rc = series(w, buf, len, (enum series_kind)k);
    return rc;
}
