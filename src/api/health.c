/* health.c - GET /healthz (liveness), /readyz (the store takes requests),
 * /metrics (Prometheus text). */
#include "api/api.h"
#include "audit/audit.h"
#include "metrics/metrics.h"
#include "util/err.h"
#include "webhook/webhook.h"

#include <stdlib.h>
#include <string.h>

void sd_api_healthz(sd_req *r, void *app)
{
    (void)app;
    sd_reply_json(r, 200, json_pack("{s:s}", "status", "ok"), NULL);
}

void sd_api_readyz(sd_req *r, void *app_)
{
    sd_app *app = app_;
    if (sd_store_ready(app->store) != 0) {
        sd_reply_problem(r, 503, "the store cannot take requests");
        return;
    }
    sd_reply_json(r, 200, json_pack("{s:s}", "status", "ready"), NULL);
}

void sd_api_metrics(sd_req *r, void *app_)
{
    sd_app *app = app_;
    /* Public, but not to a page that rebound its name to this loopback port. */
    if (sd_api_protected_mode(app) && sd_api_loopback_only(r))
        return;
    sd_store_stats st;
    sd_store_get_stats(app->store, &st);
    size_t len;
    char *text = sd_metrics_render(&st, sd_store_ready(app->store) == 0, &len);
    char audit[512];
    int n =
        snprintf(audit, sizeof audit,
                 "# HELP sessiond_audit_records_total Records written to the audit log.\n"
                 "# TYPE sessiond_audit_records_total counter\n"
                 "sessiond_audit_records_total %llu\n"
                 "# HELP sessiond_audit_dropped_total Audit events lost (queue full or "
                 "write failed).\n"
                 "# TYPE sessiond_audit_dropped_total counter\n"
                 "sessiond_audit_dropped_total %llu\n",
                 (unsigned long long)sd_audit_written(), (unsigned long long)sd_audit_dropped());
    char *all = text ? realloc(text, len + (size_t)n + 1) : NULL;
    if (!all) {
        free(text);
        sd_api_fail(r, SD_ENOMEM, NULL);
        return;
    }
    text = all;
    memcpy(text + len, audit, (size_t)n + 1);
    len += (size_t)n;
    if (sd_webhooks_metrics(app->webhooks, &text, &len) || sd_api_jwt_metrics(app, &text, &len)) {
        free(text);
        sd_api_fail(r, SD_ENOMEM, NULL);
        return;
    }
    sd_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
}
