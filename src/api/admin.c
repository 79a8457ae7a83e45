/*
 * admin.c - POST /sessions/bulk-delete: revoke many sessions and/or every
 * session of many users in one durable transaction.
 */
#include "api/api.h"
#include "util/err.h"
#include "util/log.h"

#include <stdlib.h>
#include <string.h>

#define MAX_BULK 1000

static void bulk_done(sd_write *w)
{
    sd_api_write *c = w->udata;
    if (w->rc) {
        sd_api_fail(c->req, w->rc, w->detail);
    } else {
        sd_info("bulk_revoke sessions=%zu users=%zu count=%lld", w->n_ids, w->n_users,
                (long long)w->affected);
        sd_reply_json(c->req, 200, json_pack("{s:I}", "deleted", (json_int_t)w->affected), NULL);
    }
    sd_api_write_free(c);
}

/* Reads array field key into out[from..]; checks each entry. Returns the
 * count, or -1 after answering 400. */
static int read_list(sd_req *r, json_t *body, const char *key, bool ids, const char **out)
{
    json_t *a = json_object_get(body, key);
    if (!a)
        return 0;
    if (!json_is_array(a) || json_array_size(a) > MAX_BULK) {
        sd_reply_problem(r, 400, "field '%s' must be an array of at most %d strings", key,
                         MAX_BULK);
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        const char *s = json_string_value(v);
        if (!s || (ids ? !sd_id_wellformed(s, strlen(s)) : !sd_api_user_id_ok(s))) {
            sd_reply_problem(r, 400, "field '%s'[%zu] is not a valid %s", key, i,
                             ids ? "sessionId" : "userId");
            return -1;
        }
        out[i] = s;
    }
    return (int)json_array_size(a);
}

void sd_api_bulk_delete(sd_req *r, void *app_)
{
    sd_app *app = app_;
    json_t *body = sd_api_body(r);
    if (!body)
        return;
    static const char *const fields[] = {"sessionIds", "userIds", NULL};
    if (sd_api_known_fields(r, body, fields, "sessionIds and/or userIds")) {
        json_decref(body);
        return;
    }
    sd_api_write *c = sd_api_write_new(r, app, SD_W_BULK_END, bulk_done);
    if (!c) {
        json_decref(body);
        return;
    }
    c->body = body;
    c->list = calloc(2 * MAX_BULK + 1, sizeof *c->list);
    if (!c->list) {
        sd_api_fail(r, SD_ENOMEM, NULL);
        sd_api_write_free(c);
        return;
    }
    int n_ids = read_list(r, body, "sessionIds", true, c->list);
    int n_users = n_ids < 0 ? -1 : read_list(r, body, "userIds", false, c->list + MAX_BULK);
    if (n_ids < 0 || n_users < 0) {
        sd_api_write_free(c);
        return;
    }
    if (n_ids + n_users == 0) {
        sd_reply_problem(r, 400, "give a non-empty 'sessionIds' and/or 'userIds' array");
        sd_api_write_free(c);
        return;
    }
    c->w.ids = c->list;
    c->w.n_ids = (size_t)n_ids;
    c->w.users = c->list + MAX_BULK;
    c->w.n_users = (size_t)n_users;
    c->w.reason = "bulk_revoked";
    sd_store_write(app->store, &c->w);
}
