/* fuzz_bodies.c - the JSON bodies of POST /sessions and PUT /sessions/{id}:
 * parsed as the API parses them (jansson, duplicate keys rejected), then
 * through the domain: create validation and the JSON view, patch parsing
 * and application to a live session. The first byte picks the target. */
#include "policy.h"
#include "session/session.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    json_t *body = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, NULL);
    if (!body)
        return 0;
    const int64_t now = 1795833215123LL;
    char err[256], token[SD_TOKEN_LEN + 1];
    sd_session s;
    if (data[0] & 1) {
        if (sd_session_from_create(body, &fuzz_policy, now, &s, token, err, sizeof err) == 0) {
            json_decref(sd_session_to_json(&s));
            sd_binding_matches(&s.binding, "203.0.113.7", "ua");
            sd_session_clear(&s);
        }
    } else {
        json_t *create = json_pack("{s:s, s:s, s:s, s:{s:b}}", "userId", "u", "ipAddress",
                                   "203.0.113.7", "userAgent", "ua", "data", "x", 1);
        sd_patch patch;
        if (create &&
            sd_session_from_create(create, &fuzz_policy, now, &s, token, err, sizeof err) == 0) {
            if (sd_patch_parse(body, &fuzz_policy, &patch, err, sizeof err) == 0) {
                sd_session before;
                if (sd_session_copy(&before, &s) == 0) {
                    if (sd_patch_apply(&patch, &fuzz_policy, &s, now + 1000, err, sizeof err) == 0)
                        sd_privilege_raised(&before, &s);
                    sd_session_clear(&before);
                }
            }
            int64_t next;
            sd_session_touch(&s, &fuzz_policy, now + 5000, &next);
            sd_session_clear(&s);
        }
        json_decref(create);
    }
    json_decref(body);
    return 0;
}
