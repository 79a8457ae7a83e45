/*
 * webhook.h - event webhooks (issue 19): every audit event the store
 * commits, POSTed to each --webhook URL as JSON signed the Standard
 * Webhooks way (webhook/message.h), at least once and in the store's
 * order, with retries and exponential backoff.
 *
 * The outbox is the audit trail itself: audit events are written in the
 * same transaction as the change they describe, so an event exists exactly
 * when its change does, and nothing is added to a write. Each webhook has a
 * thread ("sd-webhook") that reads the store's feed (sd_store_feed) after
 * its cursor, delivers event by event, and saves the cursor
 * (sd_store_outbox_cursor) as it goes; after a crash it resumes from the
 * last saved cursor, so an event may arrive twice (same webhook-id), never
 * not at all. On a shared store the cursor carries a lease: one replica
 * delivers, another takes over when its lease runs out.
 *
 * An event whose every attempt failed (--webhook-max-attempts) is given up:
 * counted as dead-lettered in /metrics, logged, and the next one delivered.
 */
#ifndef SD_WEBHOOK_H
#define SD_WEBHOOK_H

#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sd_webhooks sd_webhooks; /* opaque */

typedef struct sd_webhook_options {
    int64_t timeout_ms;       /* one attempt, connect and answer */
    int64_t retry_initial_ms; /* the wait after the first failure, doubled after each */
    int64_t retry_max_ms;     /* the longest wait */
    int max_attempts;         /* then the event is dead-lettered */
} sd_webhook_options;

/* Reads the --webhook lines (one 'URL SECRET-FILE [EVENT,...]' each; ""
 * for none: *out NULL) and each secret file. On error a sentence in err
 * that names neither a secret nor a URL's query or credentials, and
 * SD_ECONFIG. *out is freed by sd_webhooks_stop. */
int sd_webhooks_parse(const char *lines, const sd_webhook_options *opt, sd_webhooks **out,
                      char *err, size_t errlen);

/* Starts one delivery thread per webhook over store (borrowed: it must
 * stay open until sd_webhooks_stop returns). NULL w: nothing. */
int sd_webhooks_start(sd_webhooks *w, sd_store_handle *store, char *err, size_t errlen);

/* Stops the threads (an attempt in flight is cut short and delivered again
 * at the next start), saves each cursor, gives up the leases, frees w. */
void sd_webhooks_stop(sd_webhooks *w);

/* The webhooks' series of /metrics in Prometheus text, appended to *buf
 * (malloc'd, *len bytes; grown with realloc). 0 or SD_ENOMEM. NULL w: the
 * series' headers only. */
int sd_webhooks_metrics(const sd_webhooks *w, char **buf, size_t *len);

#endif
