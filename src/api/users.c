/*
 * users.c - GET and DELETE /users/{userId}/sessions: a user's active
 * sessions (device management), and "log out everywhere (except here)".
 */
#include "api/api.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_LIMIT 50
#define MAX_LIMIT     1000

/* Cursor text: "<lastSeen ms>.<sessionId>". */
static int parse_cursor(const char *s, sd_cursor *c)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '.' || !sd_id_wellformed(end + 1, strlen(end + 1)))
        return -1;
    c->last_seen = v;
    memcpy(c->id, end + 1, SD_ID_LEN + 1);
    return 0;
}

int sd_api_user_page(sd_req *r, sd_app *app, const char *user, sd_session **v, size_t *n,
                     size_t *shown, json_t **next)
{
    int limit;
    if (sd_api_query_limit(r, DEFAULT_LIMIT, MAX_LIMIT, &limit))
        return -1;
    const char *q;
    sd_cursor cursor, *after = NULL;
    int has = sd_req_query(r, "cursor", &q);
    if (has) {
        if (has < 0 || parse_cursor(q, &cursor)) {
            sd_reply_problem(r, 400, "query 'cursor' is not a cursor this server issued");
            return -1;
        }
        after = &cursor;
    }
    int rc = sd_store_list_user(app->store, user, sd_now_ms(), after, limit + 1, v, n);
    if (rc) {
        sd_api_fail(r, rc, NULL);
        return -1;
    }
    *shown = *n > (size_t)limit ? (size_t)limit : *n;
    *next = json_null();
    if (*n > (size_t)limit) {
        char text[64];
        const sd_session *last = &(*v)[*shown - 1];
        snprintf(text, sizeof text, "%lld.%s", (long long)last->last_seen, last->id);
        *next = json_string(text);
    }
    /* Sessions the global not-before cut off are no longer listed: moved
     * past the page (still within *n for sd_sessions_free), order kept. */
    int64_t nb = 0;
    if ((rc = sd_store_not_before(app->store, &nb))) {
        json_decref(*next);
        sd_sessions_free(*v, *n);
        sd_api_fail(r, rc, NULL);
        return -1;
    }
    size_t kept = 0;
    for (size_t i = 0; i < *shown; i++) {
        if ((*v)[i].created_at < nb)
            continue;
        sd_session t = (*v)[kept];
        (*v)[kept++] = (*v)[i];
        (*v)[i] = t;
    }
    *shown = kept;
    return 0;
}

void sd_api_user_list(sd_req *r, void *app_)
{
    sd_app *app = app_;
    const char *user = sd_api_path_user(r);
    if (!user)
        return;
    sd_session *v;
    size_t n, shown;
    json_t *next;
    if (sd_api_user_page(r, app, user, &v, &n, &shown, &next))
        return;
    /* Written once, as a session's own reply is (sd_session_jw): a jansson
     * tree per session, parsed from that text, cost a list of ten a third
     * of its speed (docs/performance.md, 2026-12-06). */
    sd_jw w;
    sd_jw_init(&w, sd_req_arena(r), 512 * (shown + 1));
    sd_jw_object(&w);
    sd_jw_key(&w, "userId");
    sd_jw_str(&w, user);
    sd_jw_key(&w, "sessions");
    sd_jw_array(&w);
    for (size_t i = 0; i < shown; i++) {
        sd_jw_object(&w);
        sd_session_jw(&w, &v[i]);
        sd_jw_end(&w);
    }
    sd_jw_end(&w);
    sd_sessions_free(v, n);
    sd_jw_key(&w, "nextCursor");
    sd_jw_json(&w, next);
    json_decref(next);
    sd_jw_end(&w);
    sd_api_reply_jw(r, 200, &w, NULL);
}

static void revoke_done(sd_write *w)
{
    sd_api_write *c = w->udata;
    if (w->rc) {
        sd_api_fail(c->req, w->rc, w->detail);
    } else {
        char q[SD_LOG_QUOTED(SD_MAX_USER_ID)];
        sd_info("user_sessions_revoked user=%s except=%s count=%lld",
                sd_log_quote(w->user_id, q, sizeof q), w->except_id ? w->except_id : "-",
                (long long)w->affected);
        sd_reply_json(c->req, 200, json_pack("{s:I}", "deleted", (json_int_t)w->affected), NULL);
    }
    sd_api_write_free(c);
}

void sd_api_user_revoke(sd_req *r, void *app_)
{
    sd_app *app = app_;
    const char *user = sd_api_path_user(r);
    if (!user)
        return;
    const char *except = NULL;
    int has = sd_req_query(r, "except", &except);
    if (has < 0 || (has > 0 && !sd_id_wellformed(except, strlen(except)))) {
        sd_reply_problem(r, 400, "query 'except' must be a sessionId");
        return;
    }
    sd_api_write *c = sd_api_write_new(r, app, SD_W_END_USER, revoke_done);
    if (!c)
        return;
    c->w.user_id = user; /* the capture lives until the request completes */
    c->w.except_id = has > 0 ? except : NULL;
    c->w.reason = "user_revoked";
    sd_store_write(app->store, &c->w);
}
