/*
 * json.c - turning the server's JSON into the public structs of
 * libsessiond-client (jansson stays out of the public header).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

char *sdc__dumps(json_t *o)
{
    return json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY);
}

char *sdc__strdup_or_null(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

int sdc__read_count(sd_client *c, json_t *o, const char *key, int64_t *out)
{
    json_t *d = json_object_get(o, key);
    if (!json_is_integer(d)) {
        sdc__set_detail(c, "the response has no %s count", key);
        return SD_CLIENT_EPROTO;
    }
    if (out)
        *out = json_integer_value(d);
    return 0;
}

int sdc__copy_str(json_t *o, const char *key, char *dst, size_t cap)
{
    json_t *v = json_object_get(o, key);
    dst[0] = '\0';
    if (!json_is_string(v))
        return -1;
    size_t n = json_string_length(v);
    if (n >= cap)
        return -1;
    memcpy(dst, json_string_value(v), n + 1);
    return 0;
}

void sd_client_session_free(sd_client_session *s)
{
    if (!s)
        return;
    free(s->session_id);
    free(s->user_id);
    free(s->device_id);
    free(s->device_info);
    free(s->user_agent);
    free(s->ip_address);
    free(s->geo_location);
    free(s->data);
    free(s->created_at);
    free(s->last_seen);
    free(s->expiry);
    free(s->absolute_expiry);
    sdc__free_secret(s->token);
    sdc__free_secret(s->json);
    free(s);
}

int sdc__session_from_json(json_t *o, sd_client_session **out)
{
    *out = NULL;
    if (!json_is_object(o) || !json_is_string(json_object_get(o, "sessionId")) ||
        !json_is_string(json_object_get(o, "userId")) ||
        !json_is_integer(json_object_get(o, "version")))
        return SD_CLIENT_EPROTO;
    sd_client_session *s = calloc(1, sizeof *s);
    if (!s)
        return SD_CLIENT_ENOMEM;
    s->session_id = sdc__strdup_or_null(o, "sessionId");
    s->user_id = sdc__strdup_or_null(o, "userId");
    s->device_id = sdc__strdup_or_null(o, "deviceId");
    s->device_info = sdc__strdup_or_null(o, "deviceInfo");
    s->user_agent = sdc__strdup_or_null(o, "userAgent");
    s->ip_address = sdc__strdup_or_null(o, "ipAddress");
    s->created_at = sdc__strdup_or_null(o, "createdAt");
    s->last_seen = sdc__strdup_or_null(o, "lastSeen");
    s->expiry = sdc__strdup_or_null(o, "expiry");
    s->absolute_expiry = sdc__strdup_or_null(o, "absoluteExpiry");
    s->token = sdc__strdup_or_null(o, "token");
    s->mfa = json_is_true(json_object_get(o, "mfa"));
    s->version = json_integer_value(json_object_get(o, "version"));
    json_t *geo = json_object_get(o, "geoLocation");
    if (geo && !json_is_null(geo))
        s->geo_location = sdc__dumps(geo);
    json_t *data = json_object_get(o, "data");
    s->data = data ? sdc__dumps(data) : strdup("{}");
    s->json = sdc__dumps(o);
    if (!s->session_id || !s->user_id || !s->data || !s->json ||
        (geo && !json_is_null(geo) && !s->geo_location)) {
        sd_client_session_free(s);
        return SD_CLIENT_ENOMEM;
    }
    *out = s;
    return 0;
}
