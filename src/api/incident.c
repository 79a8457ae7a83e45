/*
 * incident.c - incident response for the security team (issue 19 item 6),
 * admin scope:
 *   GET  /admin/not-before   the global not-before in force (null: none)
 *   POST /admin/not-before   {"notBefore": "now" | RFC 3339 time}: from
 *        then on, validation on every replica refuses every session created
 *        before that time (session/write.c SD_W_NOT_BEFORE; store/notbefore.h
 *        for why every replica honours it once this answers 200).
 * The value is only raised: a session it cut off never comes back.
 */
#include "api/api.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <string.h>

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
