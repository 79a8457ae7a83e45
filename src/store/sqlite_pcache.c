/*
 * sqlite_pcache.c - SQLite's own page cache (pcache1), wrapped to skip the
 * truncations that cannot drop a page.
 *
 * At each commit the pager truncates its cache to the database's size
 * (xTruncate). pcache1 scans only the hash slots of the pages past that
 * size, unless the highest key it has ever held is more than a table's
 * width past it: then it scans every slot of its hash (one per cached
 * page). A B-tree rebalance that renumbers pages (balance_nonroot) passes
 * each through a temporary key, the pending-byte page (1 GiB / page size
 * + 1), and pcache1 remembers that key as its highest. Under updates,
 * which split leaves, the next commit scanned the writer's whole cache:
 * 5 % of the writer's time (docs/performance.md, 2026-12-06).
 *
 * The wrapper keeps the highest key a page of its cache holds, not
 * counting the temporary key (balance_nonroot moves the page on at once),
 * and passes a truncation on only when some page may be at or past the
 * limit. Everything else is pcache1's, unchanged.
 */
#include "store/sqlite_internal.h"

#include <stdlib.h>

typedef struct wrapped {
    sqlite3_pcache *inner;
    unsigned max_key;  /* no page of the cache has a higher key (temp_key aside) */
    unsigned temp_key; /* where balance_nonroot parks a page: the pending-byte page */
} wrapped;

static sqlite3_pcache_methods2 base;

static sqlite3_pcache *w_create(int page_size, int extra, int purgeable)
{
    wrapped *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    if (!(w->inner = base.xCreate(page_size, extra, purgeable))) {
        free(w);
        return NULL;
    }
    w->temp_key = 0x40000000u / (unsigned)page_size + 1;
    return (sqlite3_pcache *)w;
}

static void w_cachesize(sqlite3_pcache *p, int n)
{
    base.xCachesize(((wrapped *)p)->inner, n);
}

static int w_pagecount(sqlite3_pcache *p)
{
    return base.xPagecount(((wrapped *)p)->inner);
}

static sqlite3_pcache_page *w_fetch(sqlite3_pcache *p, unsigned key, int create)
{
    wrapped *w = (wrapped *)p;
    sqlite3_pcache_page *pg = base.xFetch(w->inner, key, create);
    if (pg && key > w->max_key)
        w->max_key = key;
    return pg;
}

static void w_unpin(sqlite3_pcache *p, sqlite3_pcache_page *pg, int discard)
{
    base.xUnpin(((wrapped *)p)->inner, pg, discard);
}

static void w_rekey(sqlite3_pcache *p, sqlite3_pcache_page *pg, unsigned from, unsigned to)
{
    wrapped *w = (wrapped *)p;
    base.xRekey(w->inner, pg, from, to);
    if (to > w->max_key && to != w->temp_key)
        w->max_key = to;
}

static void w_truncate(sqlite3_pcache *p, unsigned limit)
{
    wrapped *w = (wrapped *)p;
    if (limit > w->max_key)
        return; /* no page at or past the limit: nothing to drop */
    base.xTruncate(w->inner, limit);
    w->max_key = limit ? limit - 1 : 0;
}

static void w_destroy(sqlite3_pcache *p)
{
    wrapped *w = (wrapped *)p;
    base.xDestroy(w->inner);
    free(w);
}

static void w_shrink(sqlite3_pcache *p)
{
    base.xShrink(((wrapped *)p)->inner);
}

void sq__pcache_install(void)
{
    if (sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &base) != SQLITE_OK || !base.xCreate)
        return; /* SQLite already initialised, or no page cache to wrap: as it is */
    static sqlite3_pcache_methods2 mine;
    mine = (sqlite3_pcache_methods2){.iVersion = 1,
                                     .pArg = base.pArg,
                                     .xInit = base.xInit,
                                     .xShutdown = base.xShutdown,
                                     .xCreate = w_create,
                                     .xCachesize = w_cachesize,
                                     .xPagecount = w_pagecount,
                                     .xFetch = w_fetch,
                                     .xUnpin = w_unpin,
                                     .xRekey = w_rekey,
                                     .xTruncate = w_truncate,
                                     .xDestroy = w_destroy,
                                     .xShrink = w_shrink};
    sqlite3_config(SQLITE_CONFIG_PCACHE2, &mine);
}
