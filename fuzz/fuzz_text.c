/* fuzz_text.c - the small parsers of client text: token and id shapes,
 * RFC 3339 times, durations, IP addresses against a binding, and the
 * token bucket keyed by whatever the client address is. */
#include "session/session.h"
#include "session/token.h"
#include "util/clock.h"
#include "util/limiter.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = strndup((const char *)data, size);
    if (!s)
        return 0;
    size_t n = strlen(s);
    sd_token_wellformed(s, n);
    sd_id_wellformed(s, n);
    unsigned char h[SD_HASH_LEN];
    sd_token_hash(s, n, h);
    int64_t ms;
    char buf[SD_TIME_TEXT_LEN + 1];
    if (sd_time_parse(s, &ms) == 0)
        sd_time_format(ms, buf);
    sd_duration_parse(s, &ms);
    sd_binding b = {.flags = SD_BIND_IP | SD_BIND_UA, .family = 4, .prefix = 24};
    sd_binding_matches(&b, s, s);
    b.family = 6;
    b.prefix = 61;
    sd_binding_matches(&b, s, NULL);
    static sd_limiter *l;
    if (!l)
        l = sd_limiter_new(64, 1.0, 2.0);
    sd_limiter_charge(l, s, 1000);
    sd_limiter_wait(l, s, 1000);
    free(s);
    return 0;
}
