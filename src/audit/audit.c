/*
 * audit.c - the audit log's writer thread: merges the emitted events and the
 * store's events table into one hash-chained file, rotates and prunes it.
 * See audit.h for the format and record.c for the bytes of a record.
 *
 * Durability: each batch is written with one write(2) and fdatasync'd before
 * the store cursor moves past it, so a store event is logged at least once
 * (exactly once unless the process dies between the write and the sync of
 * the same batch). A torn last line (a crash mid-write) is cut off at the
 * next start, which keeps the chain intact.
 */
#include "audit/audit.h"
#include "util/jsonmem.h"
#include "audit/record.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define QUEUE_CAP  8192 /* emitted events waiting for the thread */
#define BATCH      256  /* store events read per query */
#define POLL_MS    200
#define DAY_MS     (24LL * 3600 * 1000)
#define TAIL_BYTES (1 << 20)

typedef struct audit {
    sd_audit_options opt;
    char dir[1024], path[1100];
    int fd;
    int64_t size, day; /* the file's size and UTC day (days since the epoch) */
    uint64_t seq;      /* of the last record written */
    char prev[SD_AUDIT_HASH_HEX + 1];
    int64_t cursor; /* last store event logged */
    int64_t last_prune;

    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    sd_event *q; /* ring of QUEUE_CAP */
    size_t qhead, qlen;
} audit;

static audit *_Atomic g; /* set while the log is open */
static _Atomic uint64_t n_dropped, n_written;

uint64_t sd_audit_dropped(void)
{
    return atomic_load(&n_dropped);
}

uint64_t sd_audit_written(void)
{
    return atomic_load(&n_written);
}

static void copy(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

void sd_audit_emit(const char *event, const char *session_id, const char *user_id,
                   const char *actor, const char *address, const char *reason)
{
    audit *a = g;
    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    if (a->qlen == QUEUE_CAP || a->stopping) {
        pthread_mutex_unlock(&a->mu);
        atomic_fetch_add(&n_dropped, 1);
        return;
    }
    sd_event *e = &a->q[(a->qhead + a->qlen++) % QUEUE_CAP];
    memset(e, 0, sizeof *e);
    e->time = sd_now_ms();
    copy(e->event, sizeof e->event, event);
    copy(e->session_id, sizeof e->session_id, session_id);
    copy(e->user_id, sizeof e->user_id, user_id);
    copy(e->actor, sizeof e->actor, actor);
    copy(e->address, sizeof e->address, address);
    copy(e->reason, sizeof e->reason, reason);
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

/* ---- resuming the chain ------------------------------------------------ */

/* Reads the record state from complete lines of buf: the last seq and hash,
 * and the last storeSeq seen. */
static bool scan_lines(const char *buf, size_t n, uint64_t *seq, char *prev, int64_t *cursor,
                       bool *found_cursor)
{
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(buf + i, '\n', n - i);
        if (!nl)
            break;
        size_t len = (size_t)(nl - (buf + i));
        bool oom;
        json_t *o = sd_json_loadb(buf + i, len, 0, NULL, &oom);
        if (oom)
            return false; /* not a torn record: memory ran out reading it */
        if (o) {
            json_t *s = json_object_get(o, "seq"), *h = json_object_get(o, "hash"),
                   *c = json_object_get(o, "storeSeq");
            if (json_is_integer(s) && json_is_string(h) &&
                strlen(json_string_value(h)) == SD_AUDIT_HASH_HEX) {
                *seq = (uint64_t)json_integer_value(s);
                memcpy(prev, json_string_value(h), SD_AUDIT_HASH_HEX + 1);
            }
            if (json_is_integer(c)) {
                *cursor = json_integer_value(c);
                *found_cursor = true;
            }
            json_decref(o);
        }
        i += len + 1;
    }
    return true;
}

/* Resumes from an existing file: cuts a torn last line (when fix), then
 * reads the state from its last MB, or the whole file when the store
 * cursor is not in that window. Returns -1 on a read error. */
static int resume_from(const char *path, bool fix, uint64_t *seq, char *prev, int64_t *cursor,
                       bool *found_cursor)
{
    int fd = open(path, (fix ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    struct stat sb;
    if (fstat(fd, &sb)) {
        close(fd);
        return -1;
    }
    off_t size = sb.st_size;
    for (off_t from = size > TAIL_BYTES ? size - TAIL_BYTES : 0;; from = 0) {
        size_t n = (size_t)(size - from);
        char *buf = malloc(n + 1);
        if (!buf || pread(fd, buf, n, from) != (ssize_t)n) {
            free(buf);
            close(fd);
            return -1;
        }
        size_t start = 0;
        if (from > 0) { /* skip the partial line the window begins in */
            const char *nl = memchr(buf, '\n', n);
            start = nl ? (size_t)(nl - buf) + 1 : n;
        }
        size_t end = n;
        while (end > start && buf[end - 1] != '\n')
            end--;
        if (fix && end < n && from == (size > TAIL_BYTES ? size - TAIL_BYTES : 0)) {
            sd_warn("audit: %s ends in an incomplete record (a crash mid-write); cut off %zu "
                    "bytes",
                    path, n - end);
            if (ftruncate(fd, from + (off_t)end)) {
                free(buf);
                close(fd);
                return -1;
            }
        }
        bool ok = scan_lines(buf + start, end - start, seq, prev, cursor, found_cursor);
        free(buf);
        if (!ok) {
            close(fd);
            errno = ENOMEM;
            return -1;
        }
        if (*found_cursor || from == 0)
            break;
    }
    close(fd);
    return 0;
}

/* ---- writing ----------------------------------------------------------- */

static int open_current(audit *a)
{
    a->fd = open(a->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (a->fd < 0)
        return -1;
    struct stat sb;
    if (fstat(a->fd, &sb))
        return -1;
    a->size = sb.st_size;
    int64_t today = sd_now_ms() / DAY_MS;
    a->day = a->size > 0 ? (int64_t)sb.st_mtime / (24 * 3600) : today;
    return 0;
}

static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Renames audit.log to audit-<time>-<last seq>.log and starts a new one. */
static void rotate(audit *a)
{
    char stamp[32], dst[1200];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    /* The last seq makes the name unique and keeps names in chain order. */
    snprintf(dst, sizeof dst, "%s/audit-%s-%016llu.log", a->dir, stamp, (unsigned long long)a->seq);
    fdatasync(a->fd);
    close(a->fd);
    a->fd = -1;
    if (rename(a->path, dst))
        sd_error("audit: cannot rotate %s: %s", a->path, strerror(errno));
    if (open_current(a))
        sd_error("audit: cannot open %s: %s", a->path, strerror(errno));
    sync_dir(a->dir);
}

/* Deletes rotated files last written before the retention. */
static void prune(audit *a)
{
    char **names;
    int n = sd_audit_rotated_files(a->dir, &names);
    time_t limit = (time_t)((sd_now_ms() - a->opt.retention_ms) / 1000);
    for (int i = 0; i < n; i++) {
        char p[1200];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", a->dir, names[i]);
        if (stat(p, &sb) == 0 && sb.st_mtime < limit) {
            if (unlink(p) == 0)
                sd_info("audit: deleted %s (older than the retention)", names[i]);
        }
    }
    sd_audit_free_names(names, n);
    a->last_prune = sd_now_ms();
}

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static bool buf_add(buf *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64 * 1024;
        while (cap < b->len + n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return false;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return true;
}

/* Appends the records of events v[0..n) (store events when from_store) to
 * b, advancing seq and prev. */
static bool render_all(audit *a, buf *b, const sd_event *v, size_t n, bool from_store)
{
    for (size_t i = 0; i < n; i++) {
        size_t len;
        char hash[SD_AUDIT_HASH_HEX + 1];
        char *line =
            sd_audit_render(&v[i], a->seq + 1, from_store ? v[i].seq : 0, a->prev, hash, &len);
        if (!line || !buf_add(b, line, len)) {
            free(line);
            return false;
        }
        free(line);
        a->seq++;
        memcpy(a->prev, hash, sizeof a->prev);
        if (from_store)
            a->cursor = v[i].seq;
    }
    return true;
}

/* Writes one batch: emitted events q[0..nq) and whatever the store has
 * after the cursor. On a failed write the chain state is rolled back (the
 * store's events are read again next time; emitted ones are dropped). */
static void write_batch(audit *a, const sd_event *q, size_t nq)
{
    uint64_t seq0 = a->seq;
    int64_t cursor0 = a->cursor;
    char prev0[SD_AUDIT_HASH_HEX + 1];
    memcpy(prev0, a->prev, sizeof prev0);
    buf b = {0};
    bool ok = render_all(a, &b, q, nq, false);
    for (int round = 0; ok && round < 64; round++) {
        sd_event *v;
        size_t n;
        if (sd_store_events(a->opt.store, SD_EVENTS_ALL, NULL, a->cursor, 0, BATCH, &v, &n))
            break; /* store unavailable: next time */
        ok = render_all(a, &b, v, n, true);
        free(v);
        if (n < BATCH)
            break;
    }
    if (ok && b.len == 0) {
        free(b.p);
        return;
    }
    if (ok && (a->size >= a->opt.max_bytes || sd_now_ms() / DAY_MS != a->day) && a->size > 0)
        rotate(a);
    ssize_t w = ok && a->fd >= 0 ? write(a->fd, b.p, b.len) : -1;
    if (w == (ssize_t)b.len && fdatasync(a->fd) == 0) {
        a->size += (int64_t)b.len;
        atomic_fetch_add(&n_written, a->seq - seq0);
    } else {
        static int64_t last_complaint;
        if (sd_now_ms() - last_complaint > 60000) {
            sd_error("audit: cannot write %s: %s", a->path, ok ? strerror(errno) : "no memory");
            last_complaint = sd_now_ms();
        }
        if (w > 0 && ftruncate(a->fd, a->size))
            sd_error("audit: cannot cut a partial write: %s", strerror(errno));
        atomic_fetch_add(&n_dropped, nq);
        a->seq = seq0;
        a->cursor = cursor0;
        memcpy(a->prev, prev0, sizeof prev0);
    }
    free(b.p);
}

static void *audit_main(void *arg)
{
    audit *a = arg;
    /* Out of memory for the batch: drain one event at a time rather than
     * never (a stop waits for an empty queue). */
    sd_event one;
    size_t cap = QUEUE_CAP;
    sd_event *local = malloc(QUEUE_CAP * sizeof *local);
    if (!local) {
        local = &one;
        cap = 1;
    }
    pthread_mutex_lock(&a->mu);
    for (;;) {
        if (!a->stopping && a->qlen == 0) {
            struct timespec ts;
            sd_mono_deadline(&ts, POLL_MS);
            pthread_cond_timedwait(&a->cv, &a->mu, &ts);
        }
        size_t n = 0;
        while (n < cap && a->qlen > 0) {
            local[n++] = a->q[a->qhead];
            a->qhead = (a->qhead + 1) % QUEUE_CAP;
            a->qlen--;
        }
        bool stop = a->stopping;
        pthread_mutex_unlock(&a->mu);
        write_batch(a, local, n);
        if (sd_now_ms() - a->last_prune > 3600 * 1000)
            prune(a);
        pthread_mutex_lock(&a->mu);
        if (stop && a->qlen == 0)
            break;
    }
    pthread_mutex_unlock(&a->mu);
    if (local != &one)
        free(local);
    return NULL;
}

/* ---- open and close ---------------------------------------------------- */

int sd_audit_open(const sd_audit_options *opt, char *err, size_t errlen)
{
    audit *a = calloc(1, sizeof *a);
    if (!a || !(a->q = malloc(QUEUE_CAP * sizeof *a->q))) {
        free(a);
        snprintf(err, errlen, "out of memory for the audit log");
        return SD_ENOMEM;
    }
    a->opt = *opt;
    a->fd = -1;
    copy(a->dir, sizeof a->dir, opt->dir);
    snprintf(a->path, sizeof a->path, "%s/audit.log", a->dir);
    memset(a->prev, '0', SD_AUDIT_HASH_HEX);
    if (mkdir(a->dir, 0700) && errno != EEXIST) {
        snprintf(err, errlen, "cannot create the audit directory %s: %s", a->dir, strerror(errno));
        goto fail;
    }
    /* The chain goes on from the newest record: audit.log's, else the
     * newest rotated file's. */
    bool found_cursor = false;
    if (resume_from(a->path, true, &a->seq, a->prev, &a->cursor, &found_cursor)) {
        snprintf(err, errlen, "cannot read %s: %s", a->path, strerror(errno));
        goto fail;
    }
    char **names;
    int n = sd_audit_rotated_files(a->dir, &names);
    for (int i = n - 1; i >= 0 && (a->seq == 0 || !found_cursor); i--) {
        char p[1200];
        uint64_t seq = 0;
        char prev[SD_AUDIT_HASH_HEX + 1];
        memcpy(prev, a->prev, sizeof prev);
        snprintf(p, sizeof p, "%s/%s", a->dir, names[i]);
        bool had = a->seq != 0;
        resume_from(p, false, had ? &seq : &a->seq, had ? prev : a->prev, &a->cursor,
                    &found_cursor);
    }
    sd_audit_free_names(names, n);
    if (open_current(a)) {
        snprintf(err, errlen, "cannot open %s: %s", a->path, strerror(errno));
        goto fail;
    }
    prune(a);
    pthread_mutex_init(&a->mu, NULL);
    sd_cond_init_mono(&a->cv);
    if (pthread_create(&a->thread, NULL, audit_main, a)) {
        snprintf(err, errlen, "cannot start the audit thread");
        pthread_mutex_destroy(&a->mu);
        pthread_cond_destroy(&a->cv);
        goto fail;
    }
    pthread_setname_np(a->thread, "sd-audit");
    sd_info("audit: logging to %s (record %llu, store events after %lld)", a->path,
            (unsigned long long)a->seq, (long long)a->cursor);
    g = a;
    return 0;
fail:
    if (a->fd >= 0)
        close(a->fd);
    free(a->q);
    free(a);
    return SD_EUNAVAILABLE;
}

void sd_audit_close(void)
{
    audit *a = g;
    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    a->stopping = true;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    g = NULL;
    if (a->fd >= 0) {
        fdatasync(a->fd);
        close(a->fd);
    }
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a->q);
    free(a);
}
