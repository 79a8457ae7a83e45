/*
 * users.c - a user's sessions (one page of the list, revoke all but one) and
 * bulk revocation, in libsessiond-client.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sd_client_session_list_free(sd_client_session_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->count; i++)
        sd_client_session_free(l->sessions[i]);
    free(l->sessions);
    free(l->next_cursor);
    free(l);
}

int sd_client_list_user(sd_client *c, const char *user_id, int limit, const char *cursor,
                        sd_client_session_list **out)
{
    if (!c || !user_id || !out || limit < 0)
        return SD_CLIENT_EINVAL;
    *out = NULL;
    json_t *o = NULL;
    sd_client_session_list *l = NULL;
    int rc = SD_CLIENT_ENOMEM;
    char *path = sdc__path(c, "/users", user_id, "/sessions");
    json_t *arr;
    if (!path ||
        (rc = sdc__get_page(c, &path, limit, "cursor", cursor, NULL, "sessions", &o, &arr)))
        goto out;
    rc = SD_CLIENT_ENOMEM;
    l = calloc(1, sizeof *l);
    if (!l || !(l->sessions = calloc(json_array_size(arr) + 1, sizeof *l->sessions)))
        goto out;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if ((rc = sdc__session_from_json(v, &l->sessions[l->count])))
            goto out;
        l->count++;
    }
    l->next_cursor = sdc__strdup_or_null(o, "nextCursor");
    *out = l;
    l = NULL;
    rc = 0;
out:
    sd_client_session_list_free(l);
    json_decref(o);
    free(path);
    return rc;
}

int sd_client_revoke_user(sd_client *c, const char *user_id, const char *except_session_id,
                          int64_t *deleted)
{
    if (!c || !user_id)
        return SD_CLIENT_EINVAL;
    json_t *o = NULL;
    int rc = SD_CLIENT_ENOMEM;
    char *path = sdc__path(c, "/users", user_id, "/sessions");
    if (!path)
        goto out;
    if (except_session_id && (rc = sdc__query(c, &path, "except", except_session_id)))
        goto out;
    sdc_req r = {.method = "DELETE", .path = path};
    if ((rc = sdc__exchange_json(c, &r, &o)) == 0)
        rc = sdc__read_count(c, o, "deleted", deleted);
out:
    json_decref(o);
    free(path);
    return rc;
}

static json_t *string_array(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        if (!v[i] || json_array_append_new(a, json_string(v[i]))) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

int sd_client_bulk_delete(sd_client *c, const char *const *session_ids, size_t n_sessions,
                          const char *const *user_ids, size_t n_users, int64_t *deleted)
{
    if (!c || (n_sessions && !session_ids) || (n_users && !user_ids) || n_sessions + n_users == 0)
        return SD_CLIENT_EINVAL;
    json_t *o = json_object(), *resp = NULL;
    char *text = NULL;
    int rc = SD_CLIENT_ENOMEM;
    if (!o)
        goto out;
    if (n_sessions) {
        json_t *a = string_array(session_ids, n_sessions);
        if (!a || json_object_set_new(o, "sessionIds", a))
            goto out;
    }
    if (n_users) {
        json_t *a = string_array(user_ids, n_users);
        if (!a || json_object_set_new(o, "userIds", a))
            goto out;
    }
    if (!(text = sdc__dumps(o)))
        goto out;
    sdc_req r = {.method = "POST",
                 .path = "/sessions/bulk-delete",
                 .content_type = "application/json",
                 .body = text,
                 .body_len = strlen(text)};
    if ((rc = sdc__exchange_json(c, &r, &resp)) == 0)
        rc = sdc__read_count(c, resp, "deleted", deleted);
out:
    json_decref(o);
    json_decref(resp);
    free(text);
    return rc;
}
