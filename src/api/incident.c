/*
 * incident.c - incident response for the security team (issue 19 item 6),
 * admin scope:
 *   GET  /admin/not-before   the global not-before in force (null: none)
 *   POST /admin/not-before   {"notBefore": "now" | RFC 3339 time}: from
 *        then on, validation on every replica refuses every session created
 *        before that time (session/write.c SD_W_NOT_BEFORE; store/notbefore.h
 *        for why every replica honours it once this answers 200).
 * The value is only raised: a session it cut off never comes back.
 *   POST /admin/revoke       {"network": CIDR} or {"deviceId": id}: ends
 *        every active session whose stored ipAddress lies in the network,
 *        or whose deviceId is that one; answers the count. The match runs
 *        in C over the active rows in batches of TRIAGE_BATCH, one write
 *        each (SD_W_TRIAGE), so no transaction holds the writer long.
 *        With "dryRun": true the same batches count the matches and end
 *        nothing ({"matching": n}, not audited): the console's preview.
 */
#include "api/api.h"
#include "session/triage.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <stdlib.h>
#include <string.h>

#define TRIAGE_BATCH 500

static json_t *time_or_null(int64_t ms)
{
    char text[SD_TIME_TEXT_LEN + 1];
    return ms > 0 ? json_string(sd_time_format(ms, text)) : json_null();
}

void sd_api_not_before_get(sd_req *r, void *app_)
{
    sd_app *app = app_;
    int64_t nb = 0;
    int rc = sd_store_not_before(app->store, &nb);
    if (rc) {
        sd_api_fail(r, rc, NULL);
        return;
    }
    sd_reply_json(r, 200, json_pack("{s:o}", "notBefore", time_or_null(nb)), NULL);
}

static void set_done(sd_write *w)
{
    sd_api_write *c = w->udata;
    if (w->rc) {
        sd_api_fail(c->req, w->rc, w->detail);
    } else {
        char text[SD_TIME_TEXT_LEN + 1];
        sd_warn("not_before_set not_before=%s sessions=%lld actor=%s",
                sd_time_format(w->before, text), (long long)w->affected, w->actor);
        sd_reply_json(c->req, 200,
                      json_pack("{s:o,s:I}", "notBefore", time_or_null(w->before),
                                "sessionsInvalidated", (json_int_t)w->affected),
                      NULL);
    }
    sd_api_write_free(c);
}

void sd_api_not_before_set(sd_req *r, void *app_)
{
    sd_app *app = app_;
    json_t *body = sd_api_body(r);
    if (!body)
        return;
    static const char *const fields[] = {"notBefore", NULL};
    if (sd_api_known_fields(r, body, fields, "notBefore")) {
        json_decref(body);
        return;
    }
    const char *text = json_string_value(json_object_get(body, "notBefore"));
    int64_t now = sd_now_ms(), at = now;
    if (!text || (strcmp(text, "now") && (sd_time_parse(text, &at) || at <= 0))) {
        sd_reply_problem(r, 400, "field 'notBefore' must be \"now\" or an RFC 3339 date-time");
        json_decref(body);
        return;
    }
    if (at > now) {
        /* It would refuse the sessions created until then too. */
        sd_reply_problem(r, 400, "field 'notBefore' must not be in the future");
        json_decref(body);
        return;
    }
    sd_api_write *c = sd_api_write_new(r, app, SD_W_NOT_BEFORE, set_done);
    if (!c) {
        json_decref(body);
        return;
    }
    c->body = body;
    c->w.now = now;
    c->w.before = at;
    sd_store_write(app->store, &c->w);
}

/* One batch done: the next one, or the answer. Runs on a store thread;
 * queueing the next write from here is what the sweeper's batches do too. */
static void triage_done(sd_write *w)
{
    sd_api_write *c = w->udata;
    const sd_triage *t = w->triage;
    if (w->rc) {
        sd_api_fail(c->req, w->rc, w->detail);
        sd_api_write_free(c);
        return;
    }
    w->total += w->affected;
    if (w->limit == TRIAGE_BATCH) { /* more rows to read */
        w->now = sd_now_ms();
        sd_store_write(c->app->store, w);
        return;
    }
    if (w->dry_run) {
        sd_reply_json(c->req, 200, json_pack("{s:I}", "matching", (json_int_t)w->total), NULL);
        sd_api_write_free(c);
        return;
    }
    sd_warn("incident_revoked %s=%s sessions=%lld actor=%s", t->family ? "network" : "deviceId",
            t->family ? json_string_value(json_object_get(c->body, "network")) : "(given)",
            (long long)w->total, w->actor);
    sd_reply_json(c->req, 200, json_pack("{s:I}", "revoked", (json_int_t)w->total), NULL);
    sd_api_write_free(c);
}

void sd_api_triage_revoke(sd_req *r, void *app_)
{
    sd_app *app = app_;
    json_t *body = sd_api_body(r);
    if (!body)
        return;
    static const char *const fields[] = {"network", "deviceId", "dryRun", NULL};
    if (sd_api_known_fields(r, body, fields, "network or deviceId, and dryRun")) {
        json_decref(body);
        return;
    }
    json_t *net = json_object_get(body, "network"), *dev = json_object_get(body, "deviceId");
    json_t *dry = json_object_get(body, "dryRun");
    if (dry && !json_is_boolean(dry)) {
        sd_reply_problem(r, 400, "field 'dryRun' must be true or false");
        json_decref(body);
        return;
    }
    sd_triage t;
    char err[160];
    if (!net == !dev) {
        sd_reply_problem(r, 400, "give exactly one of 'network' and 'deviceId'");
        json_decref(body);
        return;
    }
    if (net &&
        (!json_is_string(net) || sd_triage_network(json_string_value(net), &t, err, sizeof err))) {
        sd_reply_problem(r, 400, "%s",
                         json_is_string(net) ? err : "field 'network' must be a string");
        json_decref(body);
        return;
    }
    if (dev) {
        const char *d = json_string_value(dev);
        if (!d || !sd_api_user_id_ok(d)) {
            sd_reply_problem(r, 400, "field 'deviceId' must be a string of 1 to 256 bytes");
            json_decref(body);
            return;
        }
        memset(&t, 0, sizeof t);
        t.device_id = d; /* borrowed from the body, kept alive by the write */
    }
    sd_api_write *c = sd_api_write_new(r, app, SD_W_TRIAGE, triage_done);
    if (!c) {
        json_decref(body);
        return;
    }
    c->body = body;
    sd_triage *kept = malloc(sizeof *kept);
    if (!kept) {
        sd_api_fail(r, SD_ENOMEM, NULL);
        sd_api_write_free(c);
        return;
    }
    *kept = t;
    c->extra = kept;
    c->w.triage = kept;
    c->w.limit = TRIAGE_BATCH;
    c->w.dry_run = json_is_true(dry);
    sd_store_write(app->store, &c->w);
}
