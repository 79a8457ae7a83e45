/*
 * postgres_pipe.c - how the writer's statements run on its connection.
 *
 * One at a time, each a round trip; or, for a batch whose writes can run
 * again (sd_write_rewindable), in libpq's pipeline mode: a statement whose
 * result no decision needs (a SAVEPOINT, the user's lock, an insert, an
 * event, an update under a row lock already held) is sent and its result
 * checked later, and only a read the domain needs (a select, a count, the
 * ids a revocation ended) waits, after the server has run everything sent
 * before it. A batch of creates then costs a round trip per create instead
 * of four, and one for the COMMIT; the selects of a batch's
 * read-modify-writes are read ahead, all in one round trip (below),
 * instead of one round trip each.
 *
 * What is checked later is checked before the batch is acknowledged: the
 * status of each result and, where the write counted on it, its row count.
 * A surprise (a UNIQUE clash, a row that changed, an aborted statement)
 * fails the pipelined attempt as a whole, since PostgreSQL skips the rest of
 * a pipeline after an error: the transaction is rolled back and the commit
 * answers SD_ERETRY, so that the writer runs the batch again one statement
 * at a time, where a failing write is undone alone (store/writer.c).
 */
#include "store/postgres_internal.h"
#include "util/err.h"
#include "util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Results checked later, at most this many before the writer reads them
 * (a flush request and a wait): the server's output and the socket buffers
 * stay small, whatever the batch. */
#define MAX_PENDING 256

enum { ANY_ROWS = -1, COMMIT_TAG = -2, VALUE_TRUE = -3 };

static void fail(sd_store *st, const PGresult *res, const char *what)
{
    if (PQstatus(st->wconn) != CONNECTION_OK) {
        st->lost = true;
        return;
    }
    if (PQresultStatus(res) == PGRES_PIPELINE_ABORTED)
        return; /* a statement skipped after the failure already logged */
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    sd_warn("store: postgres write failed (%s): %s", state ? state : "?",
            res ? PQresultErrorMessage(res) : what);
}

static bool ok_status(const PGresult *res)
{
    ExecStatusType s = PQresultStatus(res);
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

/* The next result of the pipeline and the NULL that ends it. NULL when
 * the connection broke (st->lost). */
static PGresult *next_result(sd_store *st)
{
    PGresult *res = PQgetResult(st->wconn);
    if (!res) { /* broken, or out of step with what was sent: start afresh */
        st->lost = true;
        return NULL;
    }
    PGresult *end = PQgetResult(st->wconn);
    if (end) { /* more than one result for one statement: not ours */
        PQclear(end);
        st->pipe_failed = true;
    }
    return res;
}

/* Reads every pending result in order and checks it against what the
 * write counted on. False once the pipeline has failed. */
static bool settle(sd_store *st)
{
    for (; st->pend_head < st->npend; st->pend_head++) {
        int64_t expect = st->pend[st->pend_head];
        PGresult *res = next_result(st);
        if (!res) {
            st->pipe_failed = true;
            st->pend_head = st->npend = 0;
            return false;
        }
        bool ok = ok_status(res);
        if (ok && expect >= 0 && strtoll(PQcmdTuples(res), NULL, 10) != expect) {
            sd_warn("store: postgres: a pipelined write changed %s rows, not %lld",
                    PQcmdTuples(res), (long long)expect);
            ok = false;
        } else if (ok && expect == COMMIT_TAG && strcmp(PQcmdStatus(res), "COMMIT") != 0) {
            ok = false; /* a COMMIT of an aborted transaction answers ROLLBACK */
        } else if (ok && expect == VALUE_TRUE &&
                   (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "t") != 0)) {
            ok = false; /* what the write counted on no longer holds: run it again */
        } else if (!ok) {
            fail(st, res, "pipelined statement");
        }
        if (!ok)
            st->pipe_failed = true;
        PQclear(res);
    }
    st->pend_head = st->npend = 0;
    return !st->pipe_failed && !st->lost;
}

static bool push(sd_store *st, int64_t expect)
{
    if (st->npend == st->cap_pend) {
        size_t cap = st->cap_pend ? st->cap_pend * 2 : 64;
        int64_t *v = realloc(st->pend, cap * sizeof *v);
        if (!v)
            return false;
        st->pend = v;
        st->cap_pend = cap;
    }
    st->pend[st->npend++] = expect;
    return true;
}

/* Sends the pipeline so far and waits for every result of it. */
static bool flush_and_settle(sd_store *st)
{
    if (PQsendFlushRequest(st->wconn) != 1 || PQflush(st->wconn) != 0) {
        st->lost = PQstatus(st->wconn) != CONNECTION_OK;
        st->pipe_failed = true;
        return false;
    }
    return settle(st);
}

static bool usable(const sd_store *st)
{
    return !st->lost && !(st->piped && st->pipe_failed);
}

/* ---- the writer's statements ------------------------------------------- */

PGresult *pg__wexec(sd_store *st, int which, const params *p)
{
    if (!usable(st))
        return NULL;
    char name[16];
    snprintf(name, sizeof name, "w%d", which);
    PGresult *res;
    if (!st->piped) {
        res = PQexecPrepared(st->wconn, name, p->n, p->v, p->len, p->fmt, 0);
    } else {
        if (PQsendQueryPrepared(st->wconn, name, p->n, p->v, p->len, p->fmt, 0) != 1) {
            st->pipe_failed = true;
            return NULL;
        }
        if (!flush_and_settle(st)) { /* its own result is still to be read */
            if (!st->lost && !push(st, ANY_ROWS))
                st->lost = true;
            return NULL;
        }
        if (!(res = next_result(st))) {
            st->pipe_failed = true;
            return NULL;
        }
    }
    if (ok_status(res))
        return res;
    fail(st, res, name);
    if (st->piped)
        st->pipe_failed = true;
    PQclear(res);
    return NULL;
}

int pg__wrun(sd_store *st, int which, const params *p, int64_t *n)
{
    PGresult *res = pg__wexec(st, which, p);
    if (!res)
        return SD_EUNAVAILABLE;
    if (n)
        *n = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return 0;
}

int pg__wput(sd_store *st, int which, const params *p, int64_t expect, int64_t *n)
{
    if (!st->piped)
        return pg__wrun(st, which, p, n);
    char name[16];
    snprintf(name, sizeof name, "w%d", which);
    if (!usable(st) || PQsendQueryPrepared(st->wconn, name, p->n, p->v, p->len, p->fmt, 0) != 1 ||
        !push(st, expect)) {
        st->pipe_failed = true;
        return SD_EUNAVAILABLE;
    }
    if (n)
        *n = expect; /* checked before the batch is acknowledged */
    if (st->npend >= MAX_PENDING && !flush_and_settle(st))
        return SD_EUNAVAILABLE;
    return 0;
}

int pg__wtrue(sd_store *st, int which, const params *p, bool *v)
{
    if (st->piped) {
        *v = true;
        return pg__wput(st, which, p, VALUE_TRUE, NULL);
    }
    PGresult *res = pg__wexec(st, which, p);
    if (!res)
        return SD_EUNAVAILABLE;
    *v = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return 0;
}

bool pg__wcmd(sd_store *st, const char *sql)
{
    if (!usable(st))
        return false;
    if (!st->piped) {
        bool ok = pg__exec_ok(st->wconn, sql);
        if (!ok && PQstatus(st->wconn) != CONNECTION_OK)
            st->lost = true;
        return ok;
    }
    if (PQsendQueryParams(st->wconn, sql, 0, NULL, NULL, NULL, NULL, 0) != 1 ||
        !push(st, ANY_ROWS)) {
        st->pipe_failed = true;
        return false;
    }
    return true;
}

/* ---- rows read ahead ---------------------------------------------------- */

/* Statement `which` once for each of n ids (its one parameter), all in
 * one round trip; out[i] gets each result, NULL where it failed (logged;
 * the pipeline has failed then, st->pipe_failed). Pipelined only. */
static void wexec_ids(sd_store *st, int which, const char (*ids)[SD_ID_LEN + 1], size_t n,
                      PGresult **out)
{
    memset(out, 0, n * sizeof *out);
    if (!st->piped || !usable(st))
        return;
    char name[16];
    snprintf(name, sizeof name, "w%d", which);
    size_t sent = 0;
    for (; sent < n; sent++) {
        params p = {0};
        pg__p_text(&p, ids[sent]);
        if (PQsendQueryPrepared(st->wconn, name, p.n, p.v, p.len, p.fmt, 0) != 1)
            break;
    }
    if (sent < n)
        st->pipe_failed = true;
    if (PQsendFlushRequest(st->wconn) != 1 || PQflush(st->wconn) != 0) {
        st->lost = true; /* their results cannot be read: start afresh */
        return;
    }
    settle(st); /* what was sent before them first, then theirs, in order */
    if (st->lost)
        return;
    for (size_t i = 0; i < sent; i++) {
        PGresult *res = next_result(st);
        if (!res) {
            st->pipe_failed = true;
            return;
        }
        if (ok_status(res)) {
            out[i] = res;
            continue;
        }
        fail(st, res, name);
        st->pipe_failed = true;
        PQclear(res);
    }
}

/* A pipelined batch of read-modify-writes would wait a round trip for each
 * write's select before it can send the write. The rows they will select
 * (sd_write_reads) are read first instead, in one round trip before the
 * first savepoint, under their row locks (taken in id order, the same on
 * every replica), and each first select takes its result; a write that
 * changes a row before its select came drops it (pg__ahead_drop), and one
 * that changes rows it does not name drops them all. */

static int id_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

void pg__ahead_clear(sd_store *st)
{
    for (size_t i = 0; i < st->nahead; i++)
        PQclear(st->ahead_res[i]);
    st->nahead = 0;
}

static PGresult **ahead_find(sd_store *st, const char *id)
{
    const char(*hit)[SD_ID_LEN + 1] =
        st->nahead ? bsearch(id, st->ahead_id, st->nahead, sizeof *st->ahead_id, id_cmp) : NULL;
    return hit ? &st->ahead_res[hit - st->ahead_id] : NULL;
}

PGresult *pg__ahead_take(sd_store *st, const char *id)
{
    PGresult **r = ahead_find(st, id), *res = r ? *r : NULL;
    if (res) {
        *r = NULL; /* the first select's alone */
        atomic_fetch_add(&st->ahead_used, 1);
    }
    return res;
}

void pg__ahead_drop(sd_store *st, const char *id)
{
    PGresult **r = ahead_find(st, id);
    if (r) {
        PQclear(*r);
        *r = NULL;
    }
}

void pg__read_ahead(sd_store *st, const sd_write *batch)
{
    size_t n = 0;
    for (const sd_write *w = batch; w; w = w->next)
        n += sd_write_reads(w) != NULL;
    if (n < 2) /* one read costs the round trip it would anyway */
        return;
    if (n > st->cap_ahead) {
        void *ids = realloc(st->ahead_id, n * sizeof *st->ahead_id);
        if (ids)
            st->ahead_id = ids;
        void *res = ids ? realloc(st->ahead_res, n * sizeof *st->ahead_res) : NULL;
        if (!res)
            return; /* out of memory: each select reads its row */
        st->ahead_res = res;
        st->cap_ahead = n;
    }
    n = 0;
    for (const sd_write *w = batch; w; w = w->next) {
        const char *id = sd_write_reads(w);
        if (id)
            snprintf(st->ahead_id[n++], sizeof *st->ahead_id, "%s", id);
    }
    qsort(st->ahead_id, n, sizeof *st->ahead_id, id_cmp);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || strcmp(st->ahead_id[k - 1], st->ahead_id[i]) != 0)
            memmove(st->ahead_id[k++], st->ahead_id[i], sizeof *st->ahead_id);
    wexec_ids(st, W_SELECT_LOCK, st->ahead_id, k, st->ahead_res);
    st->nahead = k;
}

/* ---- the pipelined transaction ----------------------------------------- */

bool pg__pipe_enter(sd_store *st)
{
    st->pipe_failed = false;
    st->pend_head = st->npend = 0;
    st->piped = PQenterPipelineMode(st->wconn) == 1;
    return st->piped;
}

/* Reads up to the synchronisation point and leaves pipeline mode; any
 * surprise drops the connection (st->lost) rather than guess. */
static void leave(sd_store *st)
{
    settle(st);
    if (!st->lost) {
        PGresult *res = PQgetResult(st->wconn);
        if (!res) /* a NULL may sit between a statement's result and the sync's */
            res = PQgetResult(st->wconn);
        if (PQresultStatus(res) != PGRES_PIPELINE_SYNC || PQexitPipelineMode(st->wconn) != 1)
            st->lost = true;
        PQclear(res);
    }
    st->piped = false;
}

/* Everything sent before the COMMIT is checked first (a row count the
 * domain counted on is no server error: the COMMIT would go through), then
 * the COMMIT and the synchronisation point. */
int pg__pipe_commit(sd_store *st)
{
    bool checked = usable(st) && flush_and_settle(st);
    if (checked && (PQsendQueryParams(st->wconn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) != 1 ||
                    !push(st, COMMIT_TAG)))
        st->pipe_failed = true;
    if (!st->lost && PQpipelineSync(st->wconn) != 1)
        st->lost = true;
    leave(st);
    if (st->lost) /* the caller drops the connection; never acknowledged, and when the
                     COMMIT was never sent, nothing was committed */
        return checked ? SD_EUNAVAILABLE : SD_ENOTSENT;
    if (!st->pipe_failed)
        return 0;
    if (!pg__exec_ok(st->wconn, "ROLLBACK") && PQstatus(st->wconn) != CONNECTION_OK) {
        st->lost = true;
        return SD_EUNAVAILABLE;
    }
    /* A failed COMMIT is not the pipeline's doing: running the batch again
     * would meet it again. */
    return checked ? SD_EUNAVAILABLE : SD_ERETRY;
}
