/*
 * events.c - the audit trail (admin scope) and the operational endpoints
 * (/healthz, /readyz, /metrics) in libsessiond-client.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void event_clear(sd_client_event *e)
{
    free(e->time);
    free(e->event);
    free(e->session_id);
    free(e->user_id);
    free(e->actor);
    free(e->client_address);
    free(e->reason);
    free(e->json);
}

void sd_client_event_list_free(sd_client_event_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->count; i++)
        event_clear(&l->events[i]);
    free(l->events);
    free(l->next);
    free(l);
}

static int event_from_json(json_t *o, sd_client_event *e)
{
    if (!json_is_object(o) || !json_is_integer(json_object_get(o, "seq")) ||
        !json_is_string(json_object_get(o, "event")))
        return SD_CLIENT_EPROTO;
    e->seq = json_integer_value(json_object_get(o, "seq"));
    e->time = sdc__strdup_or_null(o, "time");
    e->event = sdc__strdup_or_null(o, "event");
    e->session_id = sdc__strdup_or_null(o, "sessionId");
    e->user_id = sdc__strdup_or_null(o, "userId");
    e->actor = sdc__strdup_or_null(o, "actor");
    e->client_address = sdc__strdup_or_null(o, "clientAddress");
    e->reason = sdc__strdup_or_null(o, "reason");
    e->json = sdc__dumps(o);
    return e->event && e->json ? 0 : SD_CLIENT_ENOMEM;
}

/* One page of prefix/key/events: oldest first after the cursor, or (newest)
 * newest first before it (order=desc). */
static int list_events(sd_client *c, const char *prefix, const char *key, int limit,
                       const char *cursor, bool newest, sd_client_event_list **out)
{
    if (!c || !key || !out || limit < 0)
        return SD_CLIENT_EINVAL;
    *out = NULL;
    json_t *o = NULL;
    sd_client_event_list *l = NULL;
    int rc = SD_CLIENT_ENOMEM;
    char *path = sdc__path(c, prefix, key, "/events");
    json_t *arr;
    if (!path || (newest && (rc = sdc__query(c, &path, "order", "desc"))) ||
        (rc = sdc__get_page(c, &path, limit, newest ? "before" : "after", cursor, NULL, "events",
                            &o, &arr)))
        goto out;
    rc = SD_CLIENT_ENOMEM;
    l = calloc(1, sizeof *l);
    if (!l || !(l->events = calloc(json_array_size(arr) + 1, sizeof *l->events)))
        goto out;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        rc = event_from_json(v, &l->events[l->count]);
        l->count++; /* a half-filled entry is freed with the list */
        if (rc) {
            if (rc == SD_CLIENT_EPROTO)
                sdc__set_detail(c, "event %zu is malformed", i);
            goto out;
        }
    }
    l->next = sdc__strdup_or_null(o, "next");
    *out = l;
    l = NULL;
    rc = 0;
out:
    sd_client_event_list_free(l);
    json_decref(o);
    free(path);
    return rc;
}

int sd_client_session_events(sd_client *c, const char *session_id, int limit, const char *after,
                             sd_client_event_list **out)
{
    return list_events(c, "/sessions", session_id, limit, after, false, out);
}

int sd_client_user_events(sd_client *c, const char *user_id, int limit, const char *after,
                          sd_client_event_list **out)
{
    return list_events(c, "/users", user_id, limit, after, false, out);
}

int sd_client_session_events_newest(sd_client *c, const char *session_id, int limit,
                                    const char *before, sd_client_event_list **out)
{
    return list_events(c, "/sessions", session_id, limit, before, true, out);
}

int sd_client_user_events_newest(sd_client *c, const char *user_id, int limit, const char *before,
                                 sd_client_event_list **out)
{
    return list_events(c, "/users", user_id, limit, before, true, out);
}

int sd_client_health(sd_client *c)
{
    if (!c)
        return SD_CLIENT_EINVAL;
    sdc_req r = {.method = "GET", .path = "/healthz"};
    return sdc__exchange(c, &r);
}

int sd_client_ready(sd_client *c)
{
    if (!c)
        return SD_CLIENT_EINVAL;
    sdc_req r = {.method = "GET", .path = "/readyz"};
    return sdc__exchange(c, &r);
}

int sd_client_metrics(sd_client *c, char **text)
{
    if (!c || !text)
        return SD_CLIENT_EINVAL;
    *text = NULL;
    sdc_req r = {.method = "GET", .path = "/metrics"};
    int rc = sdc__exchange(c, &r);
    if (rc)
        return rc;
    *text = malloc(c->body_len + 1);
    if (!*text)
        return SD_CLIENT_ENOMEM;
    memcpy(*text, c->body ? c->body : "", c->body_len);
    (*text)[c->body_len] = '\0';
    return 0;
}
