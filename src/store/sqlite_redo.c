/*
 * sqlite_redo.c - the embedded store's redo log: how a batch is made
 * durable without a COMMIT of its own while more writes wait.
 *
 * Under load, a COMMIT per batch wrote every B-tree page the batch touched
 * into SQLite's WAL, and the checkpoint wrote it again: a page dirtied by
 * each of 30 batches was written 60 times (docs/performance.md). So the
 * writer keeps SQLite's transaction open across batches and makes each
 * batch durable by appending it to DIR/sessiond.redo instead: one record of
 * the statements it ran (their text with the values bound,
 * sqlite3_expanded_sql), one write(2) and one fdatasync(2), then the
 * acknowledgements. The transaction is committed (synchronous=FULL, as
 * before) by the writer's upkeep, after the acknowledgements: SQ_FLUSH_MS
 * after it began, when a reader of this process asks (sq__reads_barrier),
 * or when the log grows past MAX_BYTES; the log is then emptied. The COMMIT also stores the last
 * batch it holds in meta (redo_lsn), so a record is applied once.
 *
 * At open, records after meta's redo_lsn are run again, in order, in one
 * transaction, before the index is loaded: a kill -9 loses nothing that was
 * acknowledged. The statements are deterministic given the tables (every
 * value, time included, is bound), and the tables at redo_lsn are the ones
 * the records ran on, since every change to them goes through this writer.
 * A record is [magic, payload length, lsn, checksum (SHA-256 of lsn and
 * payload, first 8 bytes)] then the payload; a torn or foreign tail (a
 * crash inside the write, never acknowledged) ends the replay, as does a
 * gap in the lsns.
 *
 * Statements are recorded as the writer runs them (sq__wstep and the other
 * steps of sqlite_rows.c call sq__redo_note); a write rolled back to its
 * savepoint drops its own (sq__redo_mark, sq__redo_undo).
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "store/sqlite_internal.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#define REDO_MAGIC 0x53445231u /* "SDR1" */
#define HEAD_LEN   SQ_REDO_HEAD
#define MAX_BYTES  (64 << 20)
#define LOW_SPACE  (64 << 20)

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* The first 8 bytes of SHA-256(lsn, payload). SHA256_Init and the rest
 * allocate nothing (session/token.c says why they are used). */
static void checksum(uint64_t lsn, const char *payload, size_t n, unsigned char out[8])
{
    unsigned char l[8], md[SHA256_DIGEST_LENGTH];
    put64(l, lsn);
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, l, 8);
    SHA256_Update(&c, payload, n);
    SHA256_Final(md, &c);
    memcpy(out, md, 8);
}

/* ---- recording (the writer thread) ------------------------------------- */

void sq__redo_note(sd_store *st, sqlite3_stmt *s)
{
    sq_redo *r = &st->redo;
    if (!r->recording || r->failed || sqlite3_stmt_readonly(s))
        return;
    char *text = sqlite3_expanded_sql(s);
    size_t n = text ? strlen(text) : 0, need = r->len + n + 3;
    if (text && need > r->cap) {
        size_t cap = r->cap ? r->cap : 65536;
        while (cap < need)
            cap *= 2;
        char *p = realloc(r->buf, cap);
        if (p) {
            r->buf = p;
            r->cap = cap;
        }
    }
    if (!text || need > r->cap) { /* no memory: this batch commits instead */
        r->failed = true;
        sqlite3_free(text);
        return;
    }
    memcpy(r->buf + r->len, text, n);
    memcpy(r->buf + r->len + n, ";\n", 2);
    r->len += n + 2;
    r->buf[r->len] = '\0';
    sqlite3_free(text);
}

void sq__redo_mark(sd_store *st)
{
    st->redo.mark = st->redo.len;
}

void sq__redo_undo(sd_store *st)
{
    st->redo.len = st->redo.mark;
}

void sq__redo_batch(sd_store *st)
{
    st->redo.len = st->redo.mark = 0;
    st->redo.failed = false;
    st->redo.recording = st->redo.fd >= 0;
}

sq_durable sq__redo_defer(sd_store *st)
{
    sq_redo *r = &st->redo;
    r->recording = false;
    if (r->len == 0 && !r->failed)
        return SQ_NOTHING;
    return r->fd >= 0 && !r->failed && !r->low_space && r->file_bytes < MAX_BYTES ? SQ_LOG
                                                                                  : SQ_COMMIT;
}

/* Whether the data directory's file system has less than LOW_SPACE free
 * (looked at every SQ_FLUSH_MS at most). */
static void look_at_space(sd_store *st, int64_t now)
{
    sq_redo *r = &st->redo;
    if (now - r->space_at < SQ_FLUSH_MS)
        return;
    r->space_at = now;
    struct statvfs vs;
    if (statvfs(st->dir, &vs) != 0)
        return;
    bool low = (uint64_t)vs.f_bavail * vs.f_frsize < LOW_SPACE;
    if (low != r->low_space)
        sd_warn(low ? "store: less than %d MiB free in the data directory: each batch commits on "
                      "its own, the redo log is not used"
                    : "store: %d MiB free again in the data directory: the redo log is used",
                LOW_SPACE >> 20);
    r->low_space = low;
}

/* After a COMMIT with logged batches in it failed without breaking the
 * store (a full disk), the tables lack acknowledged batches: they are run
 * again from the log, as at open. 0 once the tables hold every batch. */
static int catch_up(sd_store *st)
{
    sq_redo *r = &st->redo;
    char path[1200], err[256] = "";
    snprintf(path, sizeof path, "%s/sessiond.redo", st->dir);
    char *log = NULL;
    size_t n = 0;
    int64_t last = 0, batches = 0;
    int rc = sq__redo_read(path, &log, &n);
    if (rc == 0)
        rc = sq__redo_replay(st->wdb, log ? log : "", n, &last, &batches, err, sizeof err);
    free(log);
    if (rc)
        return rc;
    if (last != r->lsn) {
        sd_error("store: the redo log ends at batch %lld, %lld were acknowledged", (long long)last,
                 (long long)r->lsn);
        atomic_store(&st->broken, true);
        return SD_EUNAVAILABLE;
    }
    sd_info("store: the tables caught up with the redo log (%lld batches)", (long long)batches);
    r->behind = false;
    sq__redo_committed(st, true); /* empties the log */
    return 0;
}

int sq__redo_ready(sd_store *st)
{
    if (!st->redo.behind)
        return 0;
    return catch_up(st) ? SD_EUNAVAILABLE : 0;
}

int sq__redo_upkeep(sd_store *st)
{
    sq_redo *r = &st->redo;
    int64_t now = sd_mono_ms();
    look_at_space(st, now);
    if (r->behind)
        return sq__redo_ready(st) ? 100 : 1000;
    if (!r->txn_open)
        return 1000;
    int64_t age = now - r->txn_start_ms;
    if (atomic_load(&r->wanted) || age >= SQ_FLUSH_MS || r->file_bytes >= MAX_BYTES) {
        sq__commit_tables(st);
        return 1000;
    }
    return (int)(SQ_FLUSH_MS - age);
}

void sq__redo_head(int64_t lsn, const char *payload, size_t n, unsigned char head[SQ_REDO_HEAD])
{
    put32(head, REDO_MAGIC);
    put32(head + 4, (uint32_t)n);
    put64(head + 8, (uint64_t)lsn);
    checksum((uint64_t)lsn, payload, n, head + 16);
}

int sq__redo_append(sd_store *st)
{
    sq_redo *r = &st->redo;
    uint64_t lsn = (uint64_t)r->lsn + 1;
    unsigned char head[HEAD_LEN];
    sq__redo_head((int64_t)lsn, r->buf, r->len, head);
    struct iovec v[2] = {{head, HEAD_LEN}, {r->buf, r->len}};
    ssize_t want = HEAD_LEN + (ssize_t)r->len, got = writev(r->fd, v, 2);
    int err = got == want ? (fdatasync(r->fd) ? errno : 0) : got < 0 ? errno : ENOSPC;
    if (err) {
        sd_error("store: cannot write the redo log: %s", strerror(err));
        /* Cut what was written of the record: a later one must follow a
         * whole record (a failed one is never acknowledged). */
        if (got > 0 && ftruncate(r->fd, r->file_bytes) != 0)
            sd_error("store: cannot cut the redo log: %s", strerror(errno));
        return err == ENOSPC || err == EDQUOT ? SD_ELIMIT : SD_EUNAVAILABLE;
    }
    r->file_bytes += want;
    r->lsn = (int64_t)lsn;
    atomic_fetch_add(&r->batches, 1);
    atomic_store(&r->logged, r->lsn);
    return 0;
}

void sq__redo_committed(sd_store *st, bool ok)
{
    sq_redo *r = &st->redo;
    if (ok && r->file_bytes > 0) {
        /* Not synced: a log that comes back whole after a power cut holds
         * only batches meta's redo_lsn already covers. */
        if (ftruncate(r->fd, 0) != 0)
            sd_warn("store: cannot empty the redo log: %s", strerror(errno));
        r->file_bytes = 0;
    }
    if (ok)
        atomic_fetch_add(&r->commits, 1);
    pthread_mutex_lock(&r->mu);
    if (ok)
        atomic_store(&r->committed, r->lsn);
    atomic_store(&r->wanted, false);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* ---- readers ----------------------------------------------------------- */

int sq__reads_barrier(sd_store *st)
{
    sq_redo *r = &st->redo;
    int64_t want = atomic_load(&r->logged);
    if (atomic_load(&r->committed) >= want || !st->writer) /* closing: committed */
        return 0;
    if (sd_writer_on_thread(st->writer)) /* a completion reads: between batches */
        return r->txn_open ? sq__commit_tables(st) : 0;
    pthread_mutex_lock(&r->mu);
    /* Behind (sq__redo_ready): the writer's upkeep runs the log again every
     * 100 ms; on a disk that stays full, readers give up sooner. */
    int64_t give_up = sd_mono_ms() + (r->behind ? 2000 : 10000);
    while (atomic_load(&r->committed) < want && !atomic_load(&st->broken) &&
           sd_mono_ms() < give_up) {
        atomic_store(&r->wanted, true);
        sd_writer_poke(st->writer);
        struct timespec ts;
        sd_mono_deadline(&ts, 100);
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    bool ok = atomic_load(&r->committed) >= want;
    pthread_mutex_unlock(&r->mu);
    return ok ? 0 : SD_EUNAVAILABLE;
}

/* ---- open: replay ------------------------------------------------------ */

static int meta_lsn(sqlite3 *db, int64_t *lsn)
{
    sqlite3_stmt *s = NULL;
    *lsn = 0;
    int rc = sqlite3_prepare_v2(
        db, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'redo_lsn'", -1, &s, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW)
        *lsn = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : SD_EUNAVAILABLE;
}

int sq__redo_replay(sqlite3 *db, const char *log, size_t n, int64_t *last, int64_t *batches,
                    char *err, size_t errlen)
{
    int64_t applied, prev = -1;
    *batches = 0;
    if (meta_lsn(db, &applied)) {
        snprintf(err, errlen, "cannot read the redo position: %s", sqlite3_errmsg(db));
        return SD_EUNAVAILABLE;
    }
    *last = applied;
    char *e = NULL;
    bool open = false;
    int rc = 0;
    for (size_t at = 0; at + HEAD_LEN <= n;) {
        const unsigned char *h = (const unsigned char *)log + at;
        uint32_t len = get32(h + 4);
        uint64_t lsn = get64(h + 8);
        unsigned char sum[8];
        if (get32(h) != REDO_MAGIC || len > n - at - HEAD_LEN || (int64_t)lsn <= prev)
            break; /* a torn tail: never acknowledged */
        checksum(lsn, log + at + HEAD_LEN, len, sum);
        if (memcmp(sum, h + 16, 8) != 0)
            break;
        prev = (int64_t)lsn;
        const char *payload = log + at + HEAD_LEN;
        at += HEAD_LEN + len;
        if ((int64_t)lsn <= applied)
            continue;
        if ((int64_t)lsn != *last + 1) {
            sd_warn("store: the redo log skips from batch %lld to %lld; replay stops there",
                    (long long)*last, (long long)lsn);
            break;
        }
        char *text = malloc((size_t)len + 1);
        if (!text) {
            rc = SD_ENOMEM;
            break;
        }
        memcpy(text, payload, len);
        text[len] = '\0';
        if (!open && sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &e) == SQLITE_OK)
            open = true;
        int src = open ? sqlite3_exec(db, text, NULL, NULL, &e) : SQLITE_ERROR;
        free(text);
        if (src != SQLITE_OK) {
            snprintf(err, errlen, "cannot replay batch %lld of the redo log: %s", (long long)lsn,
                     e ? e : sqlite3_errmsg(db));
            rc = SD_EUNAVAILABLE;
            break;
        }
        *last = (int64_t)lsn;
        ++*batches;
    }
    sqlite3_free(e);
    e = NULL;
    if (open && rc == 0) {
        char sql[128];
        snprintf(sql, sizeof sql,
                 "INSERT INTO meta(key, value) VALUES('redo_lsn', '%lld') "
                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value;COMMIT",
                 (long long)*last);
        if (sqlite3_exec(db, sql, NULL, NULL, &e) != SQLITE_OK) {
            snprintf(err, errlen, "cannot commit the redo log's batches: %s",
                     e ? e : sqlite3_errmsg(db));
            rc = SD_EUNAVAILABLE;
        }
        sqlite3_free(e);
    }
    if (rc && open)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int sq__redo_read(const char *path, char **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : SD_EUNAVAILABLE;
    struct stat sb;
    int rc = fstat(fd, &sb) == 0 ? 0 : SD_EUNAVAILABLE;
    char *p = rc == 0 && sb.st_size > 0 ? malloc((size_t)sb.st_size) : NULL;
    size_t got = 0;
    while (p && got < (size_t)sb.st_size) {
        ssize_t k = read(fd, p + got, (size_t)sb.st_size - got);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    if (rc == 0 && sb.st_size > 0 && !p)
        rc = SD_ENOMEM;
    *out = p;
    *n = got;
    return rc;
}

int sq__redo_open(sd_store *st, char *err, size_t errlen)
{
    sq_redo *r = &st->redo;
    char path[1200];
    snprintf(path, sizeof path, "%s/sessiond.redo", st->dir);
    char *log = NULL;
    size_t n = 0;
    int64_t last = 0, batches = 0;
    int rc = sq__redo_read(path, &log, &n);
    if (rc) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return rc;
    }
    int64_t t0 = sd_mono_ms();
    rc = sq__redo_replay(st->wdb, log ? log : "", n, &last, &batches, err, errlen);
    free(log);
    if (rc)
        return rc;
    if (batches)
        sd_info("store: replayed %lld batches from the redo log in %lld ms", (long long)batches,
                (long long)(sd_mono_ms() - t0));
    r->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (r->fd < 0 || ftruncate(r->fd, 0) != 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return SD_ECONFIG;
    }
    r->lsn = last;
    atomic_store(&r->logged, last);
    atomic_store(&r->committed, last);
    return 0;
}

void sq__redo_close(sd_store *st)
{
    sq_redo *r = &st->redo;
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    free(r->buf);
    r->buf = NULL;
}
