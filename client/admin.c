/*
 * admin.c - incident response in libsessiond-client (admin scope): the
 * global not-before, and revoking the sessions of a network or a device.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* The answer's notBefore (a string, or null) into *out when out is set. */
static int take_not_before(sd_client *c, json_t *o, char **out)
{
    json_t *v = json_object_get(o, "notBefore");
    if (!v || !(json_is_string(v) || json_is_null(v))) {
        sdc__set_detail(c, "the response has no notBefore");
        return SD_CLIENT_EPROTO;
    }
    if (out && json_is_string(v) && !(*out = strdup(json_string_value(v))))
        return SD_CLIENT_ENOMEM;
    return 0;
}

int sd_client_not_before(sd_client *c, char **not_before)
{
    if (!c || !not_before)
        return SD_CLIENT_EINVAL;
    *not_before = NULL;
    json_t *o = NULL;
    sdc_req r = {.method = "GET", .path = "/admin/not-before"};
    int rc = sdc__exchange_json(c, &r, &o);
    if (rc == 0)
        rc = take_not_before(c, o, not_before);
    json_decref(o);
    return rc;
}

/* POSTs body (consumed) to path and reads the answer into *resp. */
static int post_json(sd_client *c, const char *path, json_t *body, json_t **resp)
{
    *resp = NULL;
    char *text = body ? sdc__dumps(body) : NULL;
    json_decref(body);
    if (!text)
        return SD_CLIENT_ENOMEM;
    sdc_req r = {.method = "POST",
                 .path = path,
                 .content_type = "application/json",
                 .body = text,
                 .body_len = strlen(text)};
    int rc = sdc__exchange_json(c, &r, resp);
    free(text);
    return rc;
}

int sd_client_set_not_before(sd_client *c, const char *when, char **in_force, int64_t *invalidated)
{
    if (!c || !when)
        return SD_CLIENT_EINVAL;
    if (in_force)
        *in_force = NULL;
    json_t *o;
    int rc = post_json(c, "/admin/not-before", json_pack("{s:s}", "notBefore", when), &o);
    if (rc == 0)
        rc = sdc__read_count(c, o, "sessionsInvalidated", invalidated);
    if (rc == 0 && (rc = take_not_before(c, o, in_force)) == 0 && in_force && !*in_force) {
        sdc__set_detail(c, "the response's notBefore is null");
        rc = SD_CLIENT_EPROTO;
    }
    json_decref(o);
    return rc;
}

int sd_client_revoke_matching(sd_client *c, const char *network, const char *device_id, int dry_run,
                              int64_t *count)
{
    if (!c || !network == !device_id)
        return SD_CLIENT_EINVAL;
    json_t *body = json_pack("{s:s, s:b}", network ? "network" : "deviceId",
                             network ? network : device_id, "dryRun", dry_run != 0);
    json_t *o;
    int rc = post_json(c, "/admin/revoke", body, &o);
    if (rc == 0)
        rc = sdc__read_count(c, o, dry_run ? "matching" : "revoked", count);
    json_decref(o);
    return rc;
}
