/*
 * anomaly.c - anomaly signals and the geofence (issue 19 items 3 and 4) on
 * the create and validate routes: the reads they need (the user's live
 * sessions at create; the session's attrs at validation), the refusals
 * (403 geofence, invalid step_up_required) and the SD_W_SIGNAL write of
 * what a validation saw. What the signals are is decided in
 * session/anomaly.c, what recording them means in session/write.c.
 *
 * Nothing here runs on a validation that carries no geoLocation while no
 * signal flags or steps up (app->anomaly_state): validate.c calls in only
 * then, so the plain hot path keeps its cost.
 */
#include "api/api.h"
#include "audit/audit.h"
#include "metrics/metrics.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sessions of the user read at create to compare with: the most recently
 * seen first (the per-user cap is 100 by default). */
#define CREATE_SCAN 256

void sd_api_anomaly_init(sd_app *app)
{
    app->anomaly_create =
        sd_anomaly_enabled(&app->anomaly) || sd_geofence_active(&app->anomaly.geofence);
    app->anomaly_state = sd_anomaly_needs_state(&app->anomaly);
}

/* A geofence refusal's audit event, written through the store (SD_W_REFUSAL)
 * so that it is durable like the other events and the webhooks deliver it. */
typedef struct refusal_write {
    sd_write w;
    char user_id[257];
    char reason[32];
} refusal_write;

static void refusal_done(sd_write *w)
{
    refusal_write *rw = (refusal_write *)w;
    if (w->rc) { /* the audit log has it at least */
        sd_error("geofence_refused of user %s not stored: %s", rw->user_id, sd_strerror(w->rc));
        sd_audit_emit("geofence_refused", w->id, rw->user_id, w->actor, w->address, rw->reason);
    }
    free(rw);
}

/* The geofence's refusal: logged, audited (geofence_refused, with the
 * country and the rule: neither is a secret; not awaited) and answered 403
 * by the caller. */
static void refuse(sd_app *app, sd_req *r, const char *session_id, const char *user_id,
                   const char *country, const char *why)
{
    char reason[32]; /* an event's reason is kept to 31 bytes */
    snprintf(reason, sizeof reason, "country=%s %s", country, why);
    sd_warn("geofence_refused session=%s address=%s %s", session_id ? session_id : "-",
            sd_req_peer(r), reason);
    refusal_write *rw = calloc(1, sizeof *rw);
    if (!rw) {
        sd_audit_emit("geofence_refused", session_id, user_id, sd_req_actor(r), sd_req_peer(r),
                      reason);
        return;
    }
    rw->w.kind = SD_W_REFUSAL;
    rw->w.now = sd_now_ms();
    rw->w.policy = &app->policy;
    snprintf(rw->w.id, sizeof rw->w.id, "%s", session_id ? session_id : "");
    snprintf(rw->user_id, sizeof rw->user_id, "%s", user_id ? user_id : "");
    snprintf(rw->reason, sizeof rw->reason, "%s", reason);
    rw->w.user_id = rw->user_id;
    rw->w.reason = rw->reason;
    snprintf(rw->w.actor, sizeof rw->w.actor, "%s", sd_req_actor(r));
    snprintf(rw->w.address, sizeof rw->w.address, "%s", sd_req_peer(r));
    rw->w.done = refusal_done;
    sd_store_write(app->store, &rw->w);
}

static const char *attr_string(const json_t *attrs, const char *key)
{
    return attrs ? json_string_value(json_object_get(attrs, key)) : NULL;
}

int sd_api_anomaly_create(sd_app *app, sd_req *r, sd_api_write *c)
{
    if (!app->anomaly_create && !json_object_get(c->body, "geoGroup"))
        return 0;
    sd_session *s = &c->w.session;
    const char *group = attr_string(s->attrs, "geoGroup");
    if (group && !sd_geofence_has_group(&app->anomaly.geofence, group)) {
        sd_reply_problem(r, 400, "field 'geoGroup' names no group of --geo-groups");
        return -1;
    }
    sd_geo here;
    char err[160];
    if (sd_geo_parse(json_object_get(s->attrs, "geoLocation"), &here, err, sizeof err)) {
        sd_reply_problem(r, 400, "%s", err); /* checked by the domain already */
        return -1;
    }
    const char *why = sd_geofence_check(&app->anomaly.geofence, group, here.country);
    if (why) {
        refuse(app, r, NULL, s->user_id, here.country, why);
        sd_reply_problem(r, 403,
                         "sessions cannot be created from country %s: the geofence refuses it "
                         "(%s)",
                         here.country, why);
        return -1;
    }
    if (!sd_anomaly_enabled(&app->anomaly))
        return 0;
    sd_session *v = NULL;
    size_t n = 0;
    int rc = sd_store_list_user(app->store, s->user_id, c->w.now, NULL, CREATE_SCAN, &v, &n);
    sd_signals *sig = rc ? NULL : malloc(sizeof *sig);
    if (!sig) {
        sd_sessions_free(v, n);
        sd_api_fail(r, rc ? rc : SD_ENOMEM, NULL);
        return -1;
    }
    sd_anomaly_on_create(&app->anomaly, s, &here, v, n, c->w.now, sig);
    sd_sessions_free(v, n);
    c->extra = sig;
    c->w.signals = sig;
    return 0;
}

/* ---- validation ---------------------------------------------------------- */

typedef struct signal_write {
    sd_write w;
    sd_signals sig;
} signal_write;

void sd_api_anomaly_log(const sd_write *w, const char *session_id)
{
    for (int i = 0; w->rc == 0 && w->signals && i < SD_SIG_COUNT; i++)
        if (w->signals->fired & (1u << i))
            sd_warn("anomaly_detected session=%s signal=%s action=%s %s", session_id,
                    sd_signal_name(i), sd_signal_action_name(w->signals->action[i]),
                    w->signals->detail[i]);
}

static void signal_done(sd_write *w)
{
    signal_write *sw = (signal_write *)w;
    sd_api_anomaly_log(w, w->id);
    if (w->rc && w->rc != SD_ENOTFOUND)
        sd_error("anomaly signals of session %s not recorded: %s (the next validation from "
                 "there tries again)",
                 w->id, sd_strerror(w->rc));
    sd_session_clear(&w->session);
    free(sw);
}

/* Queues the SD_W_SIGNAL write of what this validation saw (not awaited:
 * the answer already reflects it). */
static void record(sd_app *app, sd_req *r, const sd_session *s, const sd_signals *sig)
{
    int64_t nb = 0;
    signal_write *sw = sd_store_not_before(app->store, &nb) ? NULL : calloc(1, sizeof *sw);
    if (!sw) {
        sd_error("anomaly signals of session %s not recorded: out of memory or store unavailable",
                 s->id);
        return;
    }
    sw->sig = *sig;
    sw->w.kind = SD_W_SIGNAL;
    sw->w.now = sig->at;
    sw->w.not_before = nb;
    sw->w.policy = &app->policy;
    sw->w.signals = &sw->sig;
    memcpy(sw->w.id, s->id, sizeof sw->w.id);
    snprintf(sw->w.actor, sizeof sw->w.actor, "%s", sd_req_actor(r));
    snprintf(sw->w.address, sizeof sw->w.address, "%s", sd_req_peer(r));
    sw->w.done = signal_done;
    sd_store_write(app->store, &sw->w);
}

static int refused(sd_req *r, sd_check *c, const char *why)
{
    c->refused = why;
    sd_metrics_validation(0);
    sd_audit_emit("validation_failed", c->s.id, c->s.user_id, sd_req_actor(r), sd_req_peer(r), why);
    return 0;
}

int sd_api_anomaly_step_up(sd_app *app, const sd_session *s)
{
    sd_session full;
    int rc = sd_store_get(app->store, s->id, true, &full, NULL, 0);
    if (rc == SD_ENOTFOUND)
        return 0; /* ended since: the caller's answer stands */
    if (rc)
        return rc;
    bool step_up;
    sd_anomaly_state(&app->anomaly, full.attrs, &step_up);
    sd_session_clear(&full);
    return step_up;
}

int sd_api_anomaly_check(sd_app *app, sd_req *r, sd_check *c, int64_t now)
{
    if (!app->anomaly_create && !app->anomaly_state)
        return 1; /* a geoLocation, and nothing configured to judge it by */
    sd_session full;
    int rc = sd_store_get(app->store, c->s.id, true, &full, NULL, 0);
    if (rc == SD_ENOTFOUND) /* ended since the lookup */
        return refused(r, c, "unknown_session");
    if (rc)
        return rc;
    const char *why = c->has_geo
                          ? sd_geofence_check(&app->anomaly.geofence,
                                              attr_string(full.attrs, "geoGroup"), c->geo.country)
                          : NULL;
    if (why) {
        refuse(app, r, full.id, full.user_id, c->geo.country, why);
        sd_session_clear(&full);
        c->refused = "geofence";
        sd_metrics_validation(0);
        return 0;
    }
    bool step_up;
    unsigned flagged = sd_anomaly_state(&app->anomaly, full.attrs, &step_up);
    if (c->has_geo && sd_anomaly_enabled(&app->anomaly)) {
        sd_signals sig;
        sd_anomaly_on_validate(&app->anomaly, &full, &c->geo, now, &sig);
        if (sig.remember)
            record(app, r, &full, &sig);
        step_up |= sig.step_up;
        for (int i = 0; i < SD_SIG_COUNT; i++)
            if ((sig.fired & (1u << i)) && sig.action[i] == SD_ACT_FLAG)
                flagged |= 1u << i;
    }
    sd_session_clear(&full);
    if (step_up)
        return refused(r, c, "step_up_required");
    c->signals = flagged;
    return 1;
}
