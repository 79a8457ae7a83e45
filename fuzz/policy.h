/* policy.h - the session policy the fuzz harnesses run with: sessiond's
 * defaults, with ip bindings at /24 to exercise prefix masking. */
#ifndef SD_FUZZ_POLICY_H
#define SD_FUZZ_POLICY_H

#include "session/session.h"

static const sd_policy fuzz_policy = {.idle_timeout_ms = 3600000,
                                      .absolute_timeout_ms = 86400000,
                                      .max_idle_timeout_ms = 86400000,
                                      .touch_fraction = 0.05,
                                      .max_data_bytes = 4096,
                                      .max_per_user = 100,
                                      .evict_oldest = true,
                                      .refresh_grace_ms = 10000,
                                      .bind_v4_prefix = 24,
                                      .bind_v6_prefix = 64,
                                      .bind_enforce = true};

#endif
