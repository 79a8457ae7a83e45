/*
 * events.c - GET /sessions/{sessionId}/events and GET /users/{userId}/events
 * (admin scope): a session's or a user's audit events from the store,
 * ended sessions included within the retention, oldest first (?after=) or
 * with ?order=desc newest first (?before=), paginated by an opaque cursor
 * (the last event's seq). Each read is itself audited.
 */
#include "api/api.h"
#include "audit/audit.h"
#include "util/clock.h"
#include "util/err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_LIMIT 100
#define MAX_LIMIT     1000

static json_t *opt_string(const char *s)
{
    return s[0] ? json_string(s) : json_null();
}

static json_t *event_json(const sd_event *e)
{
    char t[SD_TIME_TEXT_LEN + 1];
    json_t *o = json_pack("{s:I, s:s, s:s}", "seq", (json_int_t)e->seq, "time",
                          sd_time_format(e->time, t), "event", e->event);
    if (!o)
        return NULL;
    json_object_set_new(o, "sessionId", opt_string(e->session_id));
    json_object_set_new(o, "userId", opt_string(e->user_id));
    json_object_set_new(o, "actor", opt_string(e->actor));
    json_object_set_new(o, "clientAddress", opt_string(e->address));
    json_object_set_new(o, "reason", opt_string(e->reason));
    return o;
}

/* Reads the cursor query name into *v (0 when absent); answers 400 and
 * returns -1 when malformed. */
static int cursor_arg(sd_req *r, const char *name, int64_t *v)
{
    const char *q;
    *v = 0;
    int has = sd_req_query(r, name, &q);
    if (has) {
        char *end;
        errno = 0;
        long long x = has > 0 ? strtoll(q, &end, 10) : 0;
        if (has < 0 || errno || end == q || *end || x < 0) {
            sd_reply_problem(r, 400, "query '%s' is not a cursor this server issued", name);
            return -1;
        }
        *v = x;
    }
    return 0;
}

/* ?order=asc (the default: oldest first, after the cursor 'after') or desc
 * (newest first, before the cursor 'before'); a cursor is 0 when absent.
 * Answers 400 and returns -1 on an unknown order or the other order's
 * cursor. */
static int order_args(sd_req *r, bool *desc_out, int64_t *after, int64_t *before)
{
    const char *q;
    int has = sd_req_query(r, "order", &q);
    bool desc = has > 0 && strcmp(q, "desc") == 0;
    if (has && !(has > 0 && (desc || strcmp(q, "asc") == 0))) {
        sd_reply_problem(r, 400, "query 'order' must be 'asc' (oldest first) or 'desc'");
        return -1;
    }
    if (cursor_arg(r, "after", after) || cursor_arg(r, "before", before))
        return -1;
    if (desc ? *after != 0 : *before != 0) {
        sd_reply_problem(r, 400, "query '%s' pages order=%s; give '%s' with this order",
                         desc ? "after" : "before", desc ? "asc" : "desc",
                         desc ? "before" : "after");
        return -1;
    }
    *desc_out = desc;
    return 0;
}

static void list_events(sd_req *r, sd_app *app, sd_event_scope scope, const char *key)
{
    int limit;
    int64_t after, before;
    bool desc;
    if (sd_api_query_limit(r, DEFAULT_LIMIT, MAX_LIMIT, &limit) ||
        order_args(r, &desc, &after, &before))
        return;
    sd_event *v;
    size_t n;
    /* Newest first from the newest: before every seq. */
    int64_t below = desc ? (before ? before : INT64_MAX) : 0;
    int rc = sd_store_events(app->store, scope, key, after, below, limit + 1, &v, &n);
    if (rc) {
        sd_api_fail(r, rc, NULL);
        return;
    }
    bool is_session = scope == SD_EVENTS_SESSION;
    sd_audit_emit("admin_read", is_session ? key : NULL, is_session ? NULL : key, sd_req_actor(r),
                  sd_req_peer(r), is_session ? "session_events" : "user_events");
    if (is_session && n == 0 && after == 0 && before == 0) {
        free(v);
        sd_reply_problem(r, 404,
                         "no events for this session: it never existed or its history "
                         "is past the retention");
        return;
    }
    json_t *arr = json_array();
    size_t shown = n > (size_t)limit ? (size_t)limit : n;
    for (size_t i = 0; i < shown; i++)
        json_array_append_new(arr, event_json(&v[i]));
    json_t *body = json_pack("{s:o}", "events", arr);
    if (n > (size_t)limit) {
        char next[32];
        snprintf(next, sizeof next, "%lld", (long long)v[shown - 1].seq);
        json_object_set_new(body, "next", json_string(next));
    }
    free(v);
    sd_reply_json(r, 200, body, NULL);
}

void sd_api_session_events(sd_req *r, void *app)
{
    const char *id = sd_req_capture(r, 0);
    if (!id || !sd_id_wellformed(id, strlen(id))) {
        sd_reply_problem(r, 404,
                         "no events for this session: the sessionId is not one this "
                         "server issues");
        return;
    }
    list_events(r, app, SD_EVENTS_SESSION, id);
}

void sd_api_user_events(sd_req *r, void *app)
{
    const char *user = sd_api_path_user(r);
    if (user)
        list_events(r, app, SD_EVENTS_USER, user);
}
