/* Unit tests of the embedded store's redo log replay (store/sqlite_redo.c):
 * which records run, in what order, and where a replay stops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "store/sqlite_internal.h"
#include "util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct logbuf {
    char p[4096];
    size_t n;
} logbuf;

static void add(logbuf *b, int64_t lsn, const char *sql)
{
    size_t n = strlen(sql);
    assert_true(b->n + SQ_REDO_HEAD + n <= sizeof b->p);
    sq__redo_head(lsn, sql, n, (unsigned char *)b->p + b->n);
    memcpy(b->p + b->n + SQ_REDO_HEAD, sql, n);
    b->n += SQ_REDO_HEAD + n;
}

static sqlite3 *fresh(int64_t applied)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    char sql[200];
    snprintf(sql, sizeof sql,
             "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
             "CREATE TABLE t(x INTEGER);"
             "INSERT INTO meta VALUES('redo_lsn', '%lld');",
             (long long)applied);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    return db;
}

static int64_t one(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static void runs_what_the_tables_lack_in_order(void **state)
{
    (void)state;
    logbuf b = {.n = 0};
    add(&b, 1, "INSERT INTO t VALUES(1);\n");
    add(&b, 2, "INSERT INTO t VALUES(2);\nINSERT INTO t VALUES(20);\n");
    add(&b, 3, "UPDATE t SET x = x * 10 WHERE x = 2;\n");
    sqlite3 *db = fresh(1); /* batch 1 is in the tables already */
    int64_t last = 0, batches = 0;
    char err[256] = "";
    assert_int_equal(sq__redo_replay(db, b.p, b.n, &last, &batches, err, sizeof err), 0);
    assert_int_equal(last, 3);
    assert_int_equal(batches, 2);
    assert_int_equal(one(db, "SELECT count(*) FROM t"), 2);
    assert_int_equal(one(db, "SELECT sum(x) FROM t"), 40);
    assert_int_equal(one(db, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'redo_lsn'"), 3);
    /* Run again: nothing is applied twice. */
    assert_int_equal(sq__redo_replay(db, b.p, b.n, &last, &batches, err, sizeof err), 0);
    assert_int_equal(batches, 0);
    assert_int_equal(one(db, "SELECT count(*) FROM t"), 2);
    sqlite3_close(db);
}

static void a_torn_or_altered_record_ends_the_replay(void **state)
{
    (void)state;
    logbuf b = {.n = 0};
    add(&b, 1, "INSERT INTO t VALUES(1);\n");
    size_t whole = b.n;
    add(&b, 2, "INSERT INTO t VALUES(2);\n");
    int64_t last, batches;
    char err[256];
    /* Torn: the second record's last byte never reached the disk. */
    sqlite3 *db = fresh(0);
    assert_int_equal(sq__redo_replay(db, b.p, b.n - 1, &last, &batches, err, sizeof err), 0);
    assert_int_equal(batches, 1);
    assert_int_equal(one(db, "SELECT count(*) FROM t"), 1);
    sqlite3_close(db);
    /* Altered: a byte of its payload differs from what its checksum covers. */
    b.p[whole + SQ_REDO_HEAD + 20] ^= 1;
    db = fresh(0);
    assert_int_equal(sq__redo_replay(db, b.p, b.n, &last, &batches, err, sizeof err), 0);
    assert_int_equal(batches, 1);
    assert_int_equal(last, 1);
    sqlite3_close(db);
}

static void a_gap_or_an_older_record_ends_the_replay(void **state)
{
    (void)state;
    int64_t last, batches;
    char err[256];
    logbuf b = {.n = 0};
    add(&b, 5, "INSERT INTO t VALUES(5);\n");
    add(&b, 7, "INSERT INTO t VALUES(7);\n"); /* 6 is missing */
    sqlite3 *db = fresh(4);
    assert_int_equal(sq__redo_replay(db, b.p, b.n, &last, &batches, err, sizeof err), 0);
    assert_int_equal(batches, 1);
    assert_int_equal(last, 5);
    sqlite3_close(db);
    /* Records written over the start of a log emptied by a COMMIT whose
     * truncation was lost: the newer ones first, then an older tail. */
    logbuf c = {.n = 0};
    add(&c, 9, "INSERT INTO t VALUES(9);\n");
    add(&c, 3, "INSERT INTO t VALUES(3);\n");
    db = fresh(8);
    assert_int_equal(sq__redo_replay(db, c.p, c.n, &last, &batches, err, sizeof err), 0);
    assert_int_equal(batches, 1);
    assert_int_equal(one(db, "SELECT sum(x) FROM t"), 9);
    sqlite3_close(db);
    /* A first record past the next batch: the tables do not hold what it
     * ran on; nothing runs. */
    db = fresh(0);
    assert_int_equal(sq__redo_replay(db, b.p, b.n, &last, &batches, err, sizeof err), 0);
    assert_int_equal(batches, 0);
    assert_int_equal(last, 0);
    sqlite3_close(db);
}

static void a_batch_that_fails_leaves_the_tables_as_they_were(void **state)
{
    (void)state;
    logbuf b = {.n = 0};
    add(&b, 1, "INSERT INTO t VALUES(1);\n");
    add(&b, 2, "INSERT INTO nosuch VALUES(2);\n");
    sqlite3 *db = fresh(0);
    int64_t last, batches;
    char err[256] = "";
    assert_int_equal(sq__redo_replay(db, b.p, b.n, &last, &batches, err, sizeof err),
                     SD_EUNAVAILABLE);
    assert_non_null(strstr(err, "batch 2"));
    assert_int_equal(one(db, "SELECT count(*) FROM t"), 0);
    assert_int_equal(one(db, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'redo_lsn'"), 0);
    sqlite3_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(runs_what_the_tables_lack_in_order),
        cmocka_unit_test(a_torn_or_altered_record_ends_the_replay),
        cmocka_unit_test(a_gap_or_an_older_record_ends_the_replay),
        cmocka_unit_test(a_batch_that_fails_leaves_the_tables_as_they_were),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
