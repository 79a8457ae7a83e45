/* fuzz_pgconn.c - the PostgreSQL connection string as sessiond handles it:
 * --store's classification (sqlite, or a postgres://, postgresql:// or
 * key=value string) and the description logged at start (host, port and
 * dbname through libpq's PQconninfoParse). Oracle besides the sanitizers:
 * a classified string is passed on whole, and the description holds host,
 * port and dbname as libpq parsed them and nothing else (never the
 * password). */
#include "store/postgres_internal.h"
#include "store/store.h"

#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The parsed value of keyword in o ("" when absent). */
static const char *value(PQconninfoOption *o, const char *keyword)
{
    for (PQconninfoOption *p = o; p && p->keyword; p++)
        if (p->val && strcmp(p->keyword, keyword) == 0)
            return p->val;
    return "";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = strndup((const char *)data, size);
    if (!s)
        return 0;
    const char *where = NULL;
    const sd_store_ops *ops = sd_store_from_setting(s, "/nonexistent", &where);
    if (ops && ops != &sd_store_sqlite && where != s)
        abort(); /* a connection string is handed to libpq as given */
    char out[512];
    pg__describe(s, out, sizeof out);
    char *perr = NULL;
    PQconninfoOption *o = PQconninfoParse(s, &perr);
    PQfreemem(perr);
    /* Exactly host, port and dbname as libpq parsed them: nothing else
     * (the password above all) can reach the line. */
    char want[512];
    const char *h = value(o, "host"), *port = value(o, "port"), *db = value(o, "dbname");
    if (o)
        snprintf(want, sizeof want, "host=%s port=%s dbname=%s", h[0] ? h : "(default)",
                 port[0] ? port : "(default)", db[0] ? db : "(default)");
    else
        snprintf(want, sizeof want, "(unparsable connection string)");
    if (strcmp(out, want) != 0)
        abort();
    if (o)
        PQconninfoFree(o);
    free(s);
    return 0;
}
