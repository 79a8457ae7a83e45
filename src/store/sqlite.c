/*
 * sqlite.c - the embedded store: SQLite in WAL mode, one read connection per
 * reading thread, and the row operations (session/write.h) and transaction
 * (store/writer.h) the shared writer runs on its connection. This file opens
 * (schema, migration, the index loaded from the table) and closes the store,
 * and runs the checkpoint thread; sqlite_sql.c has the statements,
 * sqlite_read.c the reads, sqlite_rows.c and sqlite_tx.c the writes
 * (sqlite_internal.h).
 *
 * Durability: synchronous=FULL, so a COMMIT has been fsync'd when it returns;
 * the shared writer acknowledges a write only after its batch committed (one
 * fsync for the batch), each write inside its own SAVEPOINT. A failed COMMIT
 * with an I/O error marks the store broken: no later write is acknowledged
 * (retrying an fsync can falsely report success). Each committed batch's
 * effects reach the in-memory validation index (store/index.c) before any of
 * its writes is acknowledged.
 *
 * Checkpoints run on their own thread and connection, off the commit path;
 * the writer's WAL hook wakes it when the log grows.
 *
 * Tables: sessions (active), session_history (ended: revoked or expired,
 * kept for the retention period), rotated_tokens, audit_events (every
 * lifecycle change, written in the change's own transaction). Times are ms
 * since the epoch.
 */
#include "store/backup.h"
#include "store/sqlite_internal.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define SD_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SD_SANITIZED 1
#endif
#endif
#ifndef SD_SANITIZED
#define SD_SANITIZED 0
#endif

/* 64 MiB of WAL: a page written by many commits (an index's inner pages,
 * the tables' last pages, the leaf of a session updated again) is copied
 * back once per checkpoint, so a longer interval copies less (1,000 pages
 * wrote 12.6 KB per create, 4,000 11.1 KB, creates +5 %, updates +12 %;
 * 16,000 halved the checkpointer's CPU per update; docs/performance.md). */
#define CHECKPOINT_PAGES 16000

/* The store's schema version, or -1 when db has none to read. */
static int schema_version(sqlite3 *db)
{
    sqlite3_stmt *s = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'",
                           -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* A store a newer sessiond wrote: its rows would be written the old way.
 * SD_ECONFIG with the sentence in err, else 0. */
static int newer_schema(int have, char *err, size_t errlen)
{
    if (have <= SQ_SCHEMA_VERSION)
        return 0;
    snprintf(err, errlen,
             "the store has schema version %d, newer than this sessiond knows (%d): "
             "upgrade sessiond",
             have, SQ_SCHEMA_VERSION);
    return SD_ECONFIG;
}

/* Adds a column to table unless it has it already; *added (unless NULL)
 * counts those added. */
static int add_column(sd_store *st, const char *table, const char *column, const char *type,
                      int *added, char *err, size_t errlen)
{
    char sql[160];
    sqlite3_stmt *s = NULL;
    snprintf(sql, sizeof sql, "SELECT %s FROM %s LIMIT 0", column, table);
    int rc = sqlite3_prepare_v2(st->wdb, sql, -1, &s, NULL);
    sqlite3_finalize(s);
    if (rc == SQLITE_OK)
        return 0;
    snprintf(sql, sizeof sql, "ALTER TABLE %s ADD COLUMN %s %s", table, column, type);
    if ((rc = sq__exec(st->wdb, sql, err, errlen)))
        return rc;
    if (added)
        (*added)++;
    return 0;
}

static bool index_exists(sd_store *st, const char *name)
{
    sqlite3_stmt *s = NULL;
    bool found = sqlite3_prepare_v2(
                     st->wdb, "SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = ?1", -1,
                     &s, NULL) == SQLITE_OK &&
                 sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC) == SQLITE_OK &&
                 sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    return found;
}

/* Brings a store made by an older version up to date, inside the schema
 * transaction (sq__schema has made what was missing). */
static int migrate(sd_store *st, char *err, size_t errlen)
{
    static const char *const tables[] = {"sessions", "session_history"};
    int changed = 0, rc;
    if ((rc = newer_schema(schema_version(st->wdb), err, errlen)))
        return rc;
    for (size_t t = 0; t < 2; t++)
        for (size_t c = 0; c < sq__n_v2_columns; c++)
            if ((rc = add_column(st, tables[t], sq__v2_columns[c][0], sq__v2_columns[c][1],
                                 &changed, err, errlen)))
                return rc;
    if (changed) {
        sd_info("store: upgraded the schema to version 2 (bindings, authentication context)");
        if ((rc = sq__exec(st->wdb, "UPDATE meta SET value = '2' WHERE key = 'schema_version'", err,
                           errlen)))
            return rc;
    }
    if (schema_version(st->wdb) < 3) {
        int64_t t0 = sd_mono_ms();
        if ((rc = sq__exec(st->wdb, sq__v3_rebuild, err, errlen)) ||
            (rc = sq__exec(st->wdb, sq__schema, err, errlen)) ||
            (rc = sq__exec(st->wdb, "UPDATE meta SET value = '3' WHERE key = 'schema_version'", err,
                           errlen)))
            return rc;
        sd_info("store: upgraded the schema to version 3 (no index on token hashes; the active "
                "table rebuilt in %lld ms)",
                (long long)(sd_mono_ms() - t0));
    }
    /* Upgrades that only drop an index: sq__schema made what replaces it. */
    static const struct {
        int version;
        const char *index, *what;
    } drops[] = {
        {4, "events_by_user", "no index of every event by user"},
        {5, "sessions_by_user", "sessions indexed by user alone"},
        {6, "sessions_by_expiry", "expiries tracked by the in-memory index"},
        {7, "sessions_of_user", "a user's sessions from the in-memory index"},
    };
    for (size_t i = 0; i < sizeof drops / sizeof drops[0]; i++) {
        if (schema_version(st->wdb) >= drops[i].version)
            continue;
        char sql[160];
        snprintf(sql, sizeof sql,
                 "DROP INDEX IF EXISTS %s; UPDATE meta SET value = '%d' WHERE key = "
                 "'schema_version'",
                 drops[i].index, drops[i].version);
        if ((rc = sq__exec(st->wdb, sql, err, errlen)))
            return rc;
        sd_info("store: upgraded the schema to version %d (%s)", drops[i].version, drops[i].what);
    }
    /* An older sessiond that opened the store since made the index again
     * (its schema has it) and wrote events unchained: chain them all again. */
    bool upgrade = schema_version(st->wdb) < 8;
    bool unchained = !upgrade && index_exists(st, "events_by_session");
    if (upgrade || unchained) {
        int64_t t0 = sd_mono_ms();
        for (size_t c = 0; c < sq__n_v8_columns; c++)
            if ((rc = add_column(st, sq__v8_columns[c][0], sq__v8_columns[c][1], "INTEGER", NULL,
                                 err, errlen)))
                return rc;
        if ((rc = sq__exec(st->wdb, sq__v8_chain, err, errlen)))
            return rc;
        sd_info("store: %s (a session's audit events chained, not indexed by session; %lld ms)",
                unchained ? "chained the audit events again after an older sessiond wrote some"
                          : "upgraded the schema to version 8",
                (long long)(sd_mono_ms() - t0));
    }
    return 0;
}

/* Fills the index from the active table (at open, before any thread runs). */
static int load_index(sd_store *st, char *err, size_t errlen)
{
    st->index = sd_index_new();
    if (!st->index) {
        snprintf(err, errlen, "out of memory for the session index");
        return SD_ENOMEM;
    }
    /* Size the tables once (count(*) reads the smallest index: a fraction
     * of the table scan below, which is then spared ten or more rehashes). */
    sqlite3_stmt *m = NULL;
    if (sqlite3_prepare_v2(st->wdb, "SELECT count(*) FROM sessions", -1, &m, NULL) == SQLITE_OK &&
        sqlite3_step(m) == SQLITE_ROW && sqlite3_column_int64(m, 0) > 0)
        sd_index_reserve(st->index, (size_t)sqlite3_column_int64(m, 0));
    sqlite3_finalize(m);
    sqlite3_stmt *s = st->w[W_LOAD];
    int rc;
    int64_t n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        sd_session sess;
        if (sq__row_to_session(st, s, false, &sess) || sd_index_add(st->index, &sess)) {
            sd_session_clear(&sess);
            rc = SQLITE_NOMEM;
            break;
        }
        sd_session_clear(&sess);
        n++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "cannot load the session index: %s", sqlite3_errmsg(st->wdb));
        return SD_EUNAVAILABLE;
    }
    st->rows_at_open = n;
    sd_info("store: %lld sessions in the active table, indexed in memory", (long long)n);
    return 0;
}

/* After each commit, on the writer thread. Past CHECKPOINT_PAGES the
 * checkpoint thread copies frames back to the database in the background.
 * Under constant writes it can never finish (the writer keeps appending), and
 * the WAL is only reused once a checkpoint is complete when a write begins,
 * so past twice that (128 MiB) the writer copies the (few) remaining frames
 * itself: the WAL then restarts from its beginning instead of growing. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    sd_store *st = arg;
    if (pages >= 2 * CHECKPOINT_PAGES) {
        int log = 0, done = 0;
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        return SQLITE_OK;
    }
    if (pages >= CHECKPOINT_PAGES) {
        pthread_mutex_lock(&st->mu);
        st->ckpt_wanted = true;
        pthread_cond_signal(&st->ckpt_cv);
        pthread_mutex_unlock(&st->mu);
    }
    return SQLITE_OK;
}

static void *checkpointer_main(void *arg)
{
    sd_store *st = arg;
    sqlite3 *db = st->ckpt_db; /* opened by sq_open: a failure there fails the start */
    pthread_mutex_lock(&st->mu);
    while (!st->stopping) {
        while (!st->ckpt_wanted && !st->stopping)
            pthread_cond_wait(&st->ckpt_cv, &st->mu);
        if (st->stopping)
            break;
        st->ckpt_wanted = false;
        pthread_mutex_unlock(&st->mu);
        int log = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            sd_warn("store: checkpoint: %s", sqlite3_errmsg(db));
        pthread_mutex_lock(&st->mu);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

static void sq_write(sd_store *st, sd_write *w)
{
    sd_writer_submit(st->writer, w);
}

/* ---- open and close ---------------------------------------------------- */

/* The store closes on the way out of the process, which hands every page
 * back to the kernel at once: freeing 10M index entries one by one took 12 s
 * of a shutdown. Sanitizer builds (the tests, the fuzzers) free them, so that
 * their leak checks still see everything else. */
static void drop_index(sd_index *ix)
{
#if SD_SANITIZED
    sd_index_free(ix);
#else
    (void)ix;
#endif
}

static void free_store(sd_store *st)
{
    sqlite3_close(st->ckpt_db);
    sd_index_batch_clear(st->index, &st->prepared);
    sq__ov_free(st);
    for (int i = 0; i < W_NSTMT; i++)
        sqlite3_finalize(st->w[i]);
    for (reader *r = st->readers, *next; r; r = next) {
        next = r->next;
        for (int i = 0; i < R_NSTMT; i++)
            sqlite3_finalize(r->stmt[i]);
        sqlite3_close(r->db);
        free(r);
    }
    if (st->wdb)
        sqlite3_close(st->wdb);
    if (st->lock_fd >= 0)
        close(st->lock_fd);
    drop_index(st->index);
    pthread_mutex_destroy(&st->mu);
    pthread_mutex_destroy(&st->readers_mu);
    pthread_cond_destroy(&st->ckpt_cv);
    free(st);
}

static int make_dir(const char *dir, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode)) {
            snprintf(err, errlen, "data directory %s is not a directory", dir);
            return SD_ECONFIG;
        }
        return 0;
    }
    if (mkdir(dir, 0700) != 0) {
        snprintf(err, errlen, "cannot create data directory %s: %s", dir, strerror(errno));
        return SD_ECONFIG;
    }
    return 0;
}

/* No memory statistics: they take a global mutex on every allocation of
 * every connection (3.6 % of the writer's time in a create run,
 * docs/performance.md); the page cache wrapped (sqlite_pcache.c).
 * sqlite3_config is not thread-safe and works only before SQLite is
 * initialised (the first open): once per process, first. */
static void sqlite_config_once(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    sq__pcache_install();
}

/* sessiond check --connect: what a start would find in dir, changing
 * nothing: no directory, file or lock is made, and the database (when there
 * is one) is opened read-only beside a running server. */
static int sq_probe(const char *dir, char *out, size_t outlen)
{
    char path[1100], lock[1100], parent[1100];
    struct stat sb;
    snprintf(path, sizeof path, "%s/sessiond.db", dir);
    snprintf(lock, sizeof lock, "%s/LOCK", dir);
    if (stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        snprintf(out, outlen, "data directory %s is not a directory", dir);
        return SD_ECONFIG;
    }
    if (stat(path, &sb) != 0) {
        int e = errno;
        /* A start makes the directory (one level) and the store in it. */
        snprintf(parent, sizeof parent, "%s", dir);
        char *slash = strrchr(parent, '/');
        if (slash)
            *(slash == parent ? slash + 1 : slash) = '\0';
        const char *writable = stat(dir, &sb) == 0 ? dir : slash ? parent : ".";
        if (e != ENOENT || access(writable, W_OK | X_OK) != 0) {
            snprintf(out, outlen, "a start could not make the store in %s: %s", dir,
                     strerror(e != ENOENT ? e : errno));
            return SD_ECONFIG;
        }
        snprintf(out, outlen,
                 "store sqlite: no store in %s yet; a start makes one (schema version %d)", dir,
                 SQ_SCHEMA_VERSION);
        return 0;
    }
    /* Read-only is not enough: SQLite makes the -wal and -shm files of a
     * database in WAL mode when they are missing (owned by whoever runs the
     * check, which the server's user may then not open). A server runs or
     * crashed: they are there. Else (stopped, checkpointed) the file alone is
     * the store: opened immutable, which makes nothing. */
    char wal[1110], shm[1110], uri[3400];
    snprintf(wal, sizeof wal, "%s-wal", path);
    snprintf(shm, sizeof shm, "%s-shm", path);
    bool immutable = stat(wal, &sb) != 0 || stat(shm, &sb) != 0;
    size_t u = (size_t)snprintf(uri, sizeof uri, "file:");
    for (const char *p = path; *p && u + 4 < sizeof uri; p++)
        u += (size_t)(strchr("?#%", *p) ? snprintf(uri + u, 4, "%%%02X", (unsigned char)*p)
                                        : snprintf(uri + u, 2, "%c", *p));
    snprintf(uri + u, sizeof uri - u, "%s", immutable ? "?immutable=1" : "");
    sqlite3 *db = NULL;
    char err[300];
    int have = -1;
    if (sq__open_db(uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, &db, err, sizeof err) == 0 &&
        (have = schema_version(db)) < 0)
        snprintf(err, sizeof err, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
    if (have < 0) {
        snprintf(out, outlen, "%s is not a store sessiond can read: %s", path, err);
        return SD_ECONFIG;
    }
    if (newer_schema(have, out, outlen))
        return SD_ECONFIG;
    /* A running server holds the lock: said, not an error (check runs
     * before a restart or a SIGHUP). */
    int fd = open(lock, O_RDONLY | O_CLOEXEC);
    bool in_use = fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    if (fd >= 0)
        close(fd);
    char upgrade[64] = "";
    if (have < SQ_SCHEMA_VERSION)
        snprintf(upgrade, sizeof upgrade, " (a start migrates it, version %d)", SQ_SCHEMA_VERSION);
    snprintf(out, outlen, "store sqlite in %s: schema version %d%s%s", dir, have, upgrade,
             in_use ? "; in use by a running sessiond" : "");
    return 0;
}

static int sq_open(const char *dir, const sd_store_options *opt, sd_store **out, char *err,
                   size_t errlen)
{
    static pthread_once_t configured = PTHREAD_ONCE_INIT;
    pthread_once(&configured, sqlite_config_once);
    int rc = make_dir(dir, err, errlen);
    if (rc)
        return rc;
    sd_store *st = calloc(1, sizeof *st);
    if (!st)
        return SD_ENOMEM;
    st->lock_fd = -1;
    st->keys = opt ? opt->keys : NULL;
    st->generation = atomic_fetch_add(&sq__generations, 1) + 1;
    pthread_mutex_init(&st->mu, NULL);
    pthread_mutex_init(&st->readers_mu, NULL);
    pthread_cond_init(&st->ckpt_cv, NULL);

    char lock[1100];
    snprintf(lock, sizeof lock, "%s/LOCK", dir);
    snprintf(st->dir, sizeof st->dir, "%s", dir);
    snprintf(st->path, sizeof st->path, "%s/sessiond.db", dir);
    st->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (st->lock_fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s (is the data directory writable?)", lock,
                 strerror(errno));
        rc = SD_ECONFIG;
        goto fail;
    }
    if (flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, errlen, "data directory %s is in use by another sessiond", dir);
        rc = SD_ECONFIG;
        goto fail;
    }
    if ((rc = sq__open_db(st->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &st->wdb, err,
                          errlen)))
        goto fail;
    if ((rc = sq__exec(st->wdb,
                       "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                       "PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-65536; "
                       "PRAGMA temp_store=MEMORY;",
                       err, errlen)) ||
        (rc = sq__exec(st->wdb, "BEGIN IMMEDIATE", err, errlen)) ||
        (rc = sq__exec(st->wdb, sq__schema, err, errlen)) || (rc = migrate(st, err, errlen)) ||
        (rc = sq__exec(st->wdb, "COMMIT", err, errlen)))
        goto fail;
    for (int i = 0; i < W_NSTMT; i++) {
        if (sqlite3_prepare_v3(st->wdb, sq__wsql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->w[i],
                               NULL)) {
            snprintf(err, errlen, "prepare: %s", sqlite3_errmsg(st->wdb));
            rc = SD_EUNAVAILABLE;
            goto fail;
        }
    }
    if ((rc = load_index(st, err, errlen)))
        goto fail;
    sqlite3_wal_hook(st->wdb, wal_hook, st);

    if ((rc = sq__open_db(st->path, SQLITE_OPEN_READWRITE, &st->ckpt_db, err, errlen)) ||
        (rc = sq__exec(st->ckpt_db, "PRAGMA journal_mode=WAL", err, errlen))) /* opens the WAL */
        goto fail;
    /* Always accepting (its disk is local): nothing to hold. */
    sd_writer_options wo = {.commit_batch = opt ? opt->commit_batch : 0,
                            .max_queued = opt ? opt->max_queued : 0};
    if (sd_writer_start(&wo, &sq__tx, &sq__rows, st, &st->writer)) {
        snprintf(err, errlen, "cannot start the writer thread");
        rc = SD_ENOMEM;
        goto fail;
    }
    sd_writer_set_active(st->writer, st->rows_at_open);
    if (pthread_create(&st->checkpointer, NULL, checkpointer_main, st)) {
        sd_writer_stop(st->writer);
        st->writer = NULL;
        snprintf(err, errlen, "cannot start the checkpoint thread");
        rc = SD_ENOMEM;
        goto fail;
    }
    pthread_setname_np(st->checkpointer, "sd-checkpoint");
    *out = st;
    return 0;
fail:
    free_store(st);
    return rc;
}

static void sq_close(sd_store *st)
{
    sd_writer_stop(st->writer); /* finishes every queued write */
    st->writer = NULL;
    pthread_mutex_lock(&st->mu);
    st->stopping = true;
    pthread_cond_broadcast(&st->ckpt_cv);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->checkpointer, NULL);
    char err[256];
    if (!atomic_load(&st->broken) &&
        sq__exec(st->wdb, "PRAGMA wal_checkpoint(TRUNCATE)", err, sizeof err))
        sd_warn("store: final checkpoint: %s", err);
    free_store(st);
}

const sd_store_ops sd_store_sqlite = {
    .name = "sqlite",
    .caps = SD_STORE_LOCAL | SD_STORE_MEMORY_READS,
    .open = sq_open,
    .probe = sq_probe,
    .close = sq_close,
    .get = sq_get,
    .get_by_token = sq_get_by_token,
    .get_rotated = sq_get_rotated,
    .list_user = sq_list_user,
    .write = sq_write,
    .ready = sq_ready,
    .stats = sq_stats,
    .events = sq_events,
    .backup = sd_sqlite_backup,
    .not_before = sq_not_before,
    .ended = sq_ended,
    .feed = sq_feed,
    .outbox_cursor = sq_outbox_cursor,
};
