/*
 * internal.h - what the webhook module's files share and nothing else
 * includes: a webhook and the set of them. parse.c reads the configuration
 * and renders the metrics; deliver.c runs the threads.
 */
#ifndef SD_WEBHOOK_INTERNAL_H
#define SD_WEBHOOK_INTERNAL_H

#include "webhook/message.h"
#include "webhook/webhook.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define SD_WH_NAME_MAX 24 /* "wh-" and 16 hex digits of the URL's SHA-256 */

typedef struct sd__hook {
    struct sd_webhooks *set;
    char url[2048];            /* may hold credentials or a query: never logged */
    char shown[512];           /* scheme://host[:port]/..., for logs */
    char name[SD_WH_NAME_MAX]; /* its cursor's name and its metrics label */
    char events[512];          /* ",name,name," or "" for every event */
    unsigned char key[SD_WEBHOOK_KEY_MAX];
    size_t key_len;
    pthread_t thread;
    bool started;
    _Atomic uint64_t delivered, failed, dead, filtered;
    _Atomic int64_t pending_since; /* time (ms) of the event being delivered; 0: caught up */
    _Atomic int leader;            /* this replica holds the cursor's lease */
} sd__hook;

struct sd_webhooks {
    sd_webhook_options opt;
    sd__hook *v;
    size_t n;
    sd_store_handle *store;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* stopping, on the monotonic clock */
    _Atomic bool stopping;
};

/* deliver.c: the thread of one webhook. */
void *sd__hook_main(void *arg);

#endif
