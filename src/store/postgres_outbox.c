/*
 * postgres_outbox.c - the webhook outbox on PostgreSQL (sd_store_ops feed
 * and outbox_cursor), on the calling thread's read connection, never the
 * writer's: delivering events adds nothing to a write's transaction.
 *
 * The feed is every replica's audit events in (xid, seq) order, listing only
 * those older than every transaction still running (pg_snapshot_xmin), as
 * the revocation feed does (postgres_read.c, R_ENDED): a cursor past them
 * skips nothing that commits later. Its index is migration 6's.
 *
 * The cursor of each consumer is a row of sessiond_outbox with a lease
 * (owner, lease_until on the database's clock, so replicas' clocks are never
 * compared): a replica takes the row when it is free, its own, or its lease
 * ran out, and renews it with each save. So with N replicas one delivers in
 * the normal case; when it dies another takes over after the lease, from
 * the last saved cursor (at least once: what the dead one delivered after
 * its last save is delivered again).
 */
#include "store/postgres_internal.h"
#include "util/err.h"

#include <stdio.h>
#include <string.h>

#define NOW_MS "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
#define TX     "COALESCE(xid, '0'::xid8)"
#define XMIN   "pg_snapshot_xmin(pg_current_snapshot())"

const char pg__sql_feed[] =
    "SELECT seq, at, event, session_id, user_id, actor, address, reason, " TX "::text "
    "FROM audit_events WHERE (" TX ", seq) > ($1::text::xid8, $2::bigint) AND " TX " < " XMIN
    " ORDER BY " TX ", seq LIMIT $3";

/* A new consumer starts at the feed's end (nothing when the row exists). */
const char pg__sql_outbox_init[] =
    "WITH t AS (SELECT " TX " AS x, seq FROM audit_events WHERE " TX " < " XMIN " ORDER BY " TX
    " DESC, seq DESC LIMIT 1) "
    "INSERT INTO sessiond_outbox(name, tx, seq) SELECT $1, "
    "COALESCE((SELECT x FROM t), '0'::xid8), COALESCE((SELECT seq FROM t), 0) "
    "ON CONFLICT (name) DO NOTHING RETURNING name";

/* $4, $5: the cursor to save, or NULL. */
const char pg__sql_outbox_take[] =
    "UPDATE sessiond_outbox SET owner = $2, lease_until = " NOW_MS " + $3::bigint, "
    "tx = COALESCE($4::text::xid8, tx), seq = COALESCE($5::bigint, seq) "
    "WHERE name = $1 AND (owner IS NULL OR owner = $2 OR lease_until < " NOW_MS ") "
    "RETURNING tx::text, seq";

int pg__feed(sd_store *st, const sd_feed_cursor *after, int limit, sd_event **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    params p = {0};
    pg__p_int(&p, after->tx);
    pg__p_int(&p, after->seq);
    pg__p_int(&p, limit > 0 ? limit : 0);
    int rc;
    PGresult *res = pg__rquery(st, R_FEED, &p, &rc);
    if (!res)
        return rc;
    return pg__read_events(res, true, out, n);
}

/* One take: 0 with *cursor, SD_ENOTFOUND when no row was taken. */
static int take(sd_store *st, const char *name, int64_t lease_ms, const sd_feed_cursor *save,
                sd_feed_cursor *cursor)
{
    params p = {0};
    pg__p_text(&p, name);
    pg__p_text(&p, st->origin);
    pg__p_int(&p, lease_ms);
    if (save) {
        pg__p_int(&p, save->tx);
        pg__p_int(&p, save->seq);
    } else {
        pg__p_text(&p, NULL);
        pg__p_text(&p, NULL);
    }
    int rc;
    PGresult *res = pg__rquery(st, R_OUTBOX_TAKE, &p, &rc);
    if (!res)
        return rc;
    rc = PQntuples(res) == 1 ? 0 : SD_ENOTFOUND;
    if (rc == 0) {
        cursor->tx = pg__col_int(res, 0, 0);
        cursor->seq = pg__col_int(res, 0, 1);
    }
    PQclear(res);
    return rc;
}

int pg__outbox_cursor(sd_store *st, const char *name, int64_t lease_ms, const sd_feed_cursor *save,
                      sd_feed_cursor *cursor)
{
    *cursor = (sd_feed_cursor){0};
    int rc = take(st, name, lease_ms, save, cursor);
    if (rc != SD_ENOTFOUND)
        return rc;
    /* No row yet, or another replica's lease. */
    params p = {0};
    pg__p_text(&p, name);
    PGresult *res = pg__rquery(st, R_OUTBOX_INIT, &p, &rc);
    if (!res)
        return rc;
    PQclear(res);
    rc = take(st, name, lease_ms, save, cursor);
    return rc == SD_ENOTFOUND ? SD_EBUSY : rc;
}
