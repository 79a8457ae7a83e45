/*
 * me.c - the self-service calls of libsessiond-client: a user's own
 * sessions, listed and signed out with the user's session token (never the
 * API key, which the server ignores on these routes).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static void device_clear(sd_client_device *d)
{
    free(d->session_id);
    free(d->device_id);
    free(d->device_info);
    free(d->user_agent);
    free(d->ip_address);
    free(d->geo_location);
    free(d->auth_time);
    free(d->created_at);
    free(d->last_seen);
    free(d->expiry);
}

void sd_client_device_list_free(sd_client_device_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->count; i++)
        device_clear(&l->devices[i]);
    free(l->devices);
    free(l->user_id);
    free(l->current_session_id);
    free(l->next_cursor);
    free(l);
}

static int device_from_json(json_t *o, sd_client_device *d)
{
    if (!json_is_object(o) || !json_is_string(json_object_get(o, "sessionId")))
        return SD_CLIENT_EPROTO;
    d->session_id = sdc__strdup_or_null(o, "sessionId");
    d->current = json_is_true(json_object_get(o, "current"));
    d->device_id = sdc__strdup_or_null(o, "deviceId");
    d->device_info = sdc__strdup_or_null(o, "deviceInfo");
    d->user_agent = sdc__strdup_or_null(o, "userAgent");
    d->ip_address = sdc__strdup_or_null(o, "ipAddress");
    d->mfa = json_is_true(json_object_get(o, "mfa"));
    d->auth_time = sdc__strdup_or_null(o, "authTime");
    d->created_at = sdc__strdup_or_null(o, "createdAt");
    d->last_seen = sdc__strdup_or_null(o, "lastSeen");
    d->expiry = sdc__strdup_or_null(o, "expiry");
    d->version = json_integer_value(json_object_get(o, "version"));
    json_t *geo = json_object_get(o, "geoLocation");
    if (geo && !json_is_null(geo) && !(d->geo_location = sdc__dumps(geo)))
        return SD_CLIENT_ENOMEM;
    return d->session_id ? 0 : SD_CLIENT_ENOMEM;
}

int sd_client_my_sessions(sd_client *c, const char *token, int limit, const char *cursor,
                          sd_client_device_list **out)
{
    if (!c || !token || !out || limit < 0)
        return SD_CLIENT_EINVAL;
    *out = NULL;
    json_t *o = NULL;
    sd_client_device_list *l = NULL;
    int rc = SD_CLIENT_ENOMEM;
    char *path = strdup("/me/sessions");
    json_t *arr;
    if (!path ||
        (rc = sdc__get_page(c, &path, limit, "cursor", cursor, token, "sessions", &o, &arr)))
        goto out;
    rc = SD_CLIENT_ENOMEM;
    l = calloc(1, sizeof *l);
    if (!l || !(l->devices = calloc(json_array_size(arr) + 1, sizeof *l->devices)))
        goto out;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        rc = device_from_json(v, &l->devices[l->count]);
        l->count++; /* freed with the list even when half filled */
        if (rc)
            goto out;
    }
    l->user_id = sdc__strdup_or_null(o, "userId");
    l->current_session_id = sdc__strdup_or_null(o, "currentSessionId");
    l->next_cursor = sdc__strdup_or_null(o, "nextCursor");
    if (!l->user_id || !l->current_session_id) {
        sdc__set_detail(c, "the response has no userId or currentSessionId");
        rc = SD_CLIENT_EPROTO;
        goto out;
    }
    *out = l;
    l = NULL;
    rc = 0;
out:
    sd_client_device_list_free(l);
    json_decref(o);
    free(path);
    return rc;
}

int sd_client_revoke_my_session(sd_client *c, const char *token, const char *session_id,
                                int64_t if_version)
{
    if (!c || !token || !session_id)
        return SD_CLIENT_EINVAL;
    char *path = sdc__path(c, "/me/sessions", session_id, "");
    if (!path)
        return SD_CLIENT_ENOMEM;
    char etag[32];
    sdc_req r = {.method = "DELETE",
                 .path = path,
                 .bearer = token,
                 .if_match = sdc__if_match(if_version, etag)};
    int rc = sdc__exchange(c, &r);
    free(path);
    return rc;
}

int sd_client_revoke_my_other_sessions(sd_client *c, const char *token, int64_t *deleted)
{
    if (!c || !token)
        return SD_CLIENT_EINVAL;
    json_t *o = NULL;
    sdc_req r = {.method = "DELETE", .path = "/me/sessions", .bearer = token};
    int rc = sdc__exchange_json(c, &r, &o);
    if (rc == 0)
        rc = sdc__read_count(c, o, "deleted", deleted);
    json_decref(o);
    return rc;
}
