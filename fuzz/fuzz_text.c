/* fuzz_text.c - the small parsers of client text: token and id shapes,
 * RFC 3339 times, durations, IP addresses against a binding, If-Match and
 * If-None-Match (each header alone and both at once), and the
 * token bucket keyed by whatever the client address is; and the text the
 * store reads from elsewhere: a Redis cache entry (whoever can write to that
 * Redis controls it; a decoded entry must encode back to the same bytes)
 * and the --cache URL. */
#include "session/precond.h"
#include "session/session.h"
#include "store/cache_entry.h"
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
    sd_precond pre;
    char perr[128];
    const char *half = s + n / 2; /* the second half as If-None-Match too */
    if (sd_precond_parse(s, NULL, &pre, perr, sizeof perr) == 0)
        sd_precond_eval(&pre, 3);
    if (sd_precond_parse(NULL, s, &pre, perr, sizeof perr) == 0)
        sd_precond_eval(&pre, 3);
    if (sd_precond_parse(s, half, &pre, perr, sizeof perr) == 0)
        sd_precond_eval(&pre, 1);
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
    sd_session e;
    int64_t epoch;
    if (sd_cache_entry_decode((const char *)data, size, &epoch, &e)) {
        size_t len = 0;
        char *back = sd_cache_entry_encode(&e, epoch, &len);
        /* Numbers may be written differently ("+1", "01"); what decodes from
         * the re-encoding must be the same session. */
        sd_session e2;
        int64_t epoch2;
        if (back && (!sd_cache_entry_decode(back, len, &epoch2, &e2) || epoch2 != epoch ||
                     e2.version != e.version || e2.expiry != e.expiry ||
                     strcmp(e2.user_id, e.user_id) != 0 || strcmp(e2.id, e.id) != 0 ||
                     memcmp(e2.token_hash, e.token_hash, SD_HASH_LEN) != 0))
            abort();
        if (back)
            sd_session_clear(&e2);
        free(back);
        sd_session_clear(&e);
    }
    sd_cache_url u;
    char err[256];
    sd_cache_url_parse(s, &u, err, sizeof err);
    free(s);
    return 0;
}
