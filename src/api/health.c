/* health.c - GET /healthz (liveness), /readyz (the store takes requests),
 * /metrics (Prometheus text). */
#include "api/api.h"
#include "metrics/metrics.h"
#include "util/err.h"

#include <stdlib.h>

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
    sd_store_stats st;
    sd_store_get_stats(app->store, &st);
    size_t len;
    char *text = sd_metrics_render(&st, sd_store_ready(app->store) == 0, &len);
    if (!text) {
        sd_api_fail(r, SD_ENOMEM, NULL);
        return;
    }
    sd_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
}
