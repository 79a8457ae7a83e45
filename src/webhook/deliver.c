/*
 * deliver.c - the webhooks' threads (one per webhook, named sd-webhook):
 * the lease, the feed, each event's attempts with exponential backoff, the
 * cursor saved as events are delivered; start and stop.
 *
 * Order: events go out one at a time in the feed's order, each only after
 * the one before was acknowledged (or given up), so a receiver sees every
 * session's events in the order they were committed. At least once: the
 * cursor moves past an event only after its 2xx, and is saved at the end of
 * each batch and at every lease renewal; a crash resends what was delivered
 * after the last save, with the same webhook-id.
 */
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/random.h"
#include "webhook/internal.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH    64    /* events read per feed query */
#define POLL_MS  250   /* the feed's poll when caught up */
#define LEASE_MS 30000 /* a replica's hold on a webhook's cursor */
#define RENEW_MS 10000 /* renewed this often (and at each save) */
#define CLAIM_MS 2000  /* a replica without the lease asks again this often */

typedef struct worker {
    sd__hook *h;
    sd_webhooks *w;
    CURL *curl;
    sd_feed_cursor cur; /* past the last event delivered or given up */
    bool leader, dirty; /* dirty: cur not yet saved */
    int64_t renewed;    /* monotonic ms of the last take or save */
    int last_rc;        /* of the last take or save: logged when it changes */
} worker;

static bool stopping(const sd_webhooks *w)
{
    return atomic_load(&w->stopping);
}

/* Waits up to ms, or until the stop. */
static void nap(sd_webhooks *w, int64_t ms)
{
    struct timespec ts;
    sd_mono_deadline(&ts, ms);
    pthread_mutex_lock(&w->mu);
    if (!stopping(w))
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    pthread_mutex_unlock(&w->mu);
}

/* Takes or renews the lease, saving cur when we hold it. */
static void claim(worker *k, int64_t lease_ms)
{
    sd_feed_cursor got;
    int rc =
        sd_store_outbox_cursor(k->w->store, k->h->name, lease_ms, k->leader ? &k->cur : NULL, &got);
    if (rc == 0) {
        if (!k->leader)
            sd_info("webhook %s (%s): delivering events after %" PRId64, k->h->name, k->h->shown,
                    got.seq);
        k->cur = got;
        k->leader = true;
        k->dirty = false;
        k->renewed = sd_mono_ms();
    } else if (rc == SD_EBUSY) {
        if (k->leader)
            sd_warn("webhook %s: another replica took over its cursor's lease", k->h->name);
        k->leader = false;
    } else {
        /* Once per outage, not every attempt. Delivery stops until the
         * cursor can be read again (from the last one saved: at least once). */
        if (rc != k->last_rc)
            sd_warn("webhook %s: cannot %s its cursor: %s; delivery waits for the store",
                    k->h->name, k->leader ? "save" : "read", sd_strerror(rc));
        k->leader = false;
    }
    if (rc == 0 && k->last_rc != 0 && k->last_rc != SD_EBUSY)
        sd_info("webhook %s: its cursor can be read again", k->h->name);
    k->last_rc = rc;
    atomic_store(&k->h->leader, k->leader);
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* Aborts a transfer when the server stops. */
static int progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    return stopping(arg) ? 1 : 0;
}

/* One attempt: POSTs the signed body. 0 on a 2xx; else why in why. */
static int attempt(worker *k, const char *id, const char *body, size_t len, char *why,
                   size_t whylen)
{
    sd__hook *h = k->h;
    int64_t ts = sd_now_ms() / 1000;
    char sig[SD_WEBHOOK_SIG_MAX], hid[64], hts[64], hsig[160];
    if (sd_webhook_sign(h->key, h->key_len, id, ts, body, len, sig)) {
        snprintf(why, whylen, "cannot compute the signature");
        return SD_ENOMEM;
    }
    snprintf(hid, sizeof hid, "webhook-id: %s", id);
    snprintf(hts, sizeof hts, "webhook-timestamp: %" PRId64, ts);
    snprintf(hsig, sizeof hsig, "webhook-signature: %s", sig);
    struct curl_slist *hd = NULL, *l;
    const char *lines[] = {"Content-Type: application/json", "Expect:", hid, hts, hsig};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        if (!(l = curl_slist_append(hd, lines[i]))) {
            curl_slist_free_all(hd);
            snprintf(why, whylen, "out of memory");
            return SD_ENOMEM;
        }
        hd = l;
    }
    CURL *c = k->curl;
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hd);
    if (cc != CURLE_OK) {
        snprintf(why, whylen, "%s", curl_easy_strerror(cc));
        return SD_EUNAVAILABLE;
    }
    if (status < 200 || status > 299) {
        snprintf(why, whylen, "HTTP %ld", status);
        return SD_EUNAVAILABLE;
    }
    return 0;
}

/* The wait before attempt n+1 (n >= 1 failed): initial * 2^(n-1), at most
 * the maximum, less up to a tenth at random so that replicas and webhooks
 * that failed together do not retry together. */
static int64_t backoff(const sd_webhook_options *o, int n)
{
    int64_t ms = o->retry_initial_ms;
    for (int i = 1; i < n && ms < o->retry_max_ms; i++)
        ms *= 2;
    if (ms > o->retry_max_ms)
        ms = o->retry_max_ms;
    uint32_t r = 0;
    if (ms >= 10 && sd_random(&r, sizeof r) == 0)
        ms -= (int64_t)(r % (uint32_t)(ms / 10 + 1));
    return ms;
}

/* Delivers e until acknowledged or given up. false when the delivery
 * stopped short (the server stops, or the lease was lost): e is not done. */
static bool deliver(worker *k, const sd_event *e)
{
    sd__hook *h = k->h;
    sd_webhooks *w = k->w;
    char id[SD_WEBHOOK_ID_MAX], why[256];
    sd_webhook_event_id(e, id);
    size_t len;
    char *body = sd_webhook_body(e, &len);
    if (!body) {
        sd_error("webhook %s: out of memory for event %s", h->name, id);
        return false;
    }
    atomic_store(&h->pending_since, e->time > 0 ? e->time : sd_now_ms());
    bool done = false;
    for (int n = 1; !done && !stopping(w) && k->leader; n++) {
        if (attempt(k, id, body, len, why, sizeof why) == 0) {
            atomic_fetch_add(&h->delivered, 1);
            done = true;
            break;
        }
        if (stopping(w))
            break; /* an aborted attempt is not a failure */
        atomic_fetch_add(&h->failed, 1);
        if (n >= w->opt.max_attempts) {
            atomic_fetch_add(&h->dead, 1);
            sd_error("webhook %s (%s): gave up event %s (%s) after %d attempts, the last: %s",
                     h->name, h->shown, id, e->event, n, why);
            done = true;
            break;
        }
        int64_t wait = backoff(&w->opt, n), until = sd_mono_ms() + wait;
        sd_warn("webhook %s (%s): event %s attempt %d failed: %s; next in %" PRId64 " ms", h->name,
                h->shown, id, n, why, wait);
        /* Waits in slices, renewing the lease (and saving what is done). */
        for (int64_t now; !stopping(w) && k->leader && (now = sd_mono_ms()) < until;) {
            if (now - k->renewed >= RENEW_MS)
                claim(k, LEASE_MS);
            int64_t left = until - now;
            nap(w, left < RENEW_MS ? left : RENEW_MS);
        }
    }
    free(body);
    return done;
}

/* One turn: the next batch of the feed, delivered. Returns false when
 * there was nothing to do (the caller waits). */
static bool turn(worker *k)
{
    sd__hook *h = k->h;
    sd_event *v = NULL;
    size_t n = 0;
    if (sd_store_feed(k->w->store, &k->cur, BATCH, &v, &n) != 0)
        return false; /* the store is down: the lag grows, the next turn tries again */
    if (n == 0) {
        free(v);
        atomic_store(&h->pending_since, 0);
        return false;
    }
    for (size_t i = 0; i < n && k->leader && !stopping(k->w); i++) {
        char key[40];
        snprintf(key, sizeof key, ",%s,", v[i].event);
        if (h->events[0] && !strstr(h->events, key))
            atomic_fetch_add(&h->filtered, 1);
        else if (!deliver(k, &v[i]))
            break;
        k->cur = (sd_feed_cursor){.tx = v[i].tx, .seq = v[i].seq};
        k->dirty = true;
    }
    free(v);
    if (k->dirty && k->leader)
        claim(k, LEASE_MS); /* saves */
    return true;
}

static CURL *new_curl(worker *k)
{
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    curl_easy_setopt(c, CURLOPT_URL, k->h->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)k->w->opt.timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)k->w->opt.timeout_ms);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "sessiond/" SD_VERSION);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, k->w);
    return c;
}

void *sd__hook_main(void *arg)
{
    worker k = {.h = arg, .w = ((sd__hook *)arg)->set};
    if (!(k.curl = new_curl(&k))) {
        sd_error("webhook %s: cannot make a libcurl handle; nothing is delivered", k.h->name);
        return NULL;
    }
    while (!stopping(k.w)) {
        if (!k.leader || sd_mono_ms() - k.renewed >= RENEW_MS)
            claim(&k, LEASE_MS);
        if (!k.leader)
            nap(k.w, CLAIM_MS);
        else if (!turn(&k))
            nap(k.w, POLL_MS);
    }
    if (k.leader)
        claim(&k, 0); /* saves, and lets another replica take over at once */
    atomic_store(&k.h->leader, 0);
    curl_easy_cleanup(k.curl);
    return NULL;
}

/* ---- start and stop ---------------------------------------------------- */

int sd_webhooks_start(sd_webhooks *w, sd_store_handle *store, char *err, size_t errlen)
{
    if (!w)
        return 0;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "cannot initialise libcurl for the webhooks");
        return SD_ENOMEM;
    }
    w->store = store;
    pthread_mutex_init(&w->mu, NULL);
    sd_cond_init_mono(&w->cv);
    for (size_t i = 0; i < w->n; i++) {
        sd__hook *h = &w->v[i];
        /* A new webhook's cursor starts at the feed's end: made here, before
         * the server takes requests, so it delivers every event committed
         * after its first start (its thread takes the lease again). */
        sd_feed_cursor c;
        int rc = sd_store_outbox_cursor(store, h->name, LEASE_MS, NULL, &c);
        if (rc && rc != SD_EBUSY)
            sd_warn("webhook %s: cannot read its cursor yet (%s); its thread tries again", h->name,
                    sd_strerror(rc));
        if (pthread_create(&h->thread, NULL, sd__hook_main, h)) {
            snprintf(err, errlen, "cannot start a webhook thread");
            return SD_ENOMEM; /* sd_webhooks_stop joins the ones started */
        }
        h->started = true;
        pthread_setname_np(h->thread, "sd-webhook");
        sd_info("webhook %s: %s, events: %s", h->name, h->shown, h->events[0] ? h->events : "all");
    }
    return 0;
}

void sd_webhooks_stop(sd_webhooks *w)
{
    if (!w)
        return;
    bool any = false;
    for (size_t i = 0; i < w->n; i++)
        any |= w->v[i].started;
    if (any) {
        pthread_mutex_lock(&w->mu);
        atomic_store(&w->stopping, true);
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        for (size_t i = 0; i < w->n; i++)
            if (w->v[i].started)
                pthread_join(w->v[i].thread, NULL);
    }
    if (w->store) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        curl_global_cleanup();
    }
    OPENSSL_cleanse(w->v, w->n * sizeof *w->v);
    free(w->v);
    free(w);
}
