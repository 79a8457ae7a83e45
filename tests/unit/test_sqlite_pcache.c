/* Unit tests of store/sqlite_pcache.c: SQLite on the wrapped page cache
 * keeps every row through splits (pages renumbered through the temporary
 * key), shrinking (truncations that must drop pages) and a small cache
 * (pages evicted and fetched again). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "store/sqlite_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, err ? err : "?");
}

static int64_t one(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static void ok_integrity(sqlite3 *db)
{
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "ok");
    sqlite3_finalize(s);
}

/* Rows that grow in place split full leaves, in WAL mode as the store
 * runs it, committed in batches; then half deleted and the file shrunk
 * (VACUUM truncates), then grown again, through a cache of 64 pages and
 * one of 4,000. A second connection reads every row after each step. */
static void rows_survive_splits_and_shrinks(void **state)
{
    (void)state;
    char dir[] = "/tmp/sd-pcache-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/t.db", dir);
    for (int pass = 0; pass < 2; pass++) {
        sqlite3 *db, *rd;
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_open(path, &rd), SQLITE_OK);
        exec(db, pass ? "PRAGMA cache_size=4000" : "PRAGMA cache_size=64");
        exec(db, "PRAGMA journal_mode=WAL; DROP TABLE IF EXISTS t;"
                 "CREATE TABLE t(id TEXT UNIQUE, v TEXT)");
        exec(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) "
                 "INSERT INTO t SELECT printf('%08d', i), printf('%.40c', 'a') FROM n");
        for (int round = 0; round < 20; round++) {
            char sql[256];
            snprintf(sql, sizeof sql,
                     "BEGIN; UPDATE t SET v = v || printf('%%.%dc', 'b') "
                     "WHERE (rowid * 7919 + %d) %% 23 = 0; COMMIT",
                     1 + round % 5, round);
            exec(db, sql);
        }
        assert_int_equal(one(rd, "SELECT count(*) FROM t"), 20000);
        exec(db, "DELETE FROM t WHERE rowid % 2 = 0");
        exec(db, "PRAGMA wal_checkpoint(TRUNCATE); VACUUM");
        assert_int_equal(one(rd, "SELECT count(*) FROM t"), 10000);
        exec(db, "UPDATE t SET v = v || v WHERE rowid % 3 = 0");
        assert_int_equal(one(rd, "SELECT count(*) FROM t WHERE length(v) >= 80"),
                         one(rd, "SELECT count(*) FROM t WHERE rowid % 3 = 0"));
        ok_integrity(db);
        ok_integrity(rd);
        sqlite3_close(rd);
        sqlite3_close(db);
    }
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    assert_int_equal(system(rm), 0);
}

static sqlite3_pcache_methods2 before, after;

static void wrapper_installed(void **state)
{
    (void)state;
    assert_non_null(before.xCreate);
    assert_non_null(after.xTruncate);
    assert_ptr_not_equal(before.xCreate, after.xCreate);
    assert_ptr_not_equal(before.xTruncate, after.xTruncate);
}

int main(void)
{
    /* Before SQLite is initialised, as the store does. */
    sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &before);
    sq__pcache_install();
    sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &after);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(wrapper_installed),
        cmocka_unit_test(rows_survive_splits_and_shrinks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
