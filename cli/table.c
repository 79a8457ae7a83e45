/*
 * table.c - sessionctl's human output: aligned columns, two spaces apart,
 * every cell cleaned of control bytes (a userAgent could hold escape
 * sequences) and measured in characters, not bytes.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

struct table {
    int ncols;
    size_t nrows, cap;
    char **cells; /* row-major, (nrows + 1) * ncols: row 0 is the header */
};

static char *clean(const char *s)
{
    char *d = strdup(s ? s : "-");
    if (!d) {
        fputs("sessionctl: out of memory\n", stderr);
        exit(EXIT_FAIL);
    }
    for (unsigned char *p = (unsigned char *)d; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            *p = '?';
    return d;
}

void print_safe(FILE *f, const char *s)
{
    char *d = clean(s);
    fputs(d, f);
    free(d);
}

/* Characters, counting each UTF-8 sequence once. */
static size_t width(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

table *table_new(int ncols, const char *const *headers)
{
    table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ncols = ncols;
    table_add(t, headers);
    return t;
}

void table_add(table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->cells = realloc(t->cells, t->cap * (size_t)t->ncols * sizeof *t->cells);
        if (!t->cells) {
            fputs("sessionctl: out of memory\n", stderr);
            exit(EXIT_FAIL);
        }
    }
    for (int i = 0; i < t->ncols; i++)
        t->cells[t->nrows * (size_t)t->ncols + (size_t)i] = clean(cells[i]);
    t->nrows++;
}

void table_print(table *t, FILE *f)
{
    size_t *w = calloc((size_t)t->ncols, sizeof *w);
    if (!w)
        return;
    for (size_t r = 0; r < t->nrows; r++)
        for (int i = 0; i < t->ncols; i++) {
            size_t n = width(t->cells[r * (size_t)t->ncols + (size_t)i]);
            if (n > w[i])
                w[i] = n;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (int i = 0; i < t->ncols; i++) {
            const char *cell = t->cells[r * (size_t)t->ncols + (size_t)i];
            fputs(cell, f);
            if (i + 1 < t->ncols)
                fprintf(f, "%*s", (int)(w[i] - width(cell) + 2), "");
        }
        fputc('\n', f);
    }
    free(w);
}

void table_free(table *t)
{
    if (!t)
        return;
    for (size_t k = 0; k < t->nrows * (size_t)t->ncols; k++)
        free(t->cells[k]);
    free(t->cells);
    free(t);
}
