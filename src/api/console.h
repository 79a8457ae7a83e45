/*
 * console.h - the static assets of the web pages sessiond serves: the
 * operator console (console/ in the source tree) and the self-service page
 * (account/), compiled into the binary at build time by
 * scripts/embed-console.sh (build/gen/console_assets.c). The bytes live for
 * the whole process.
 */
#ifndef SD_CONSOLE_H
#define SD_CONSOLE_H

#include <stddef.h>

typedef struct sd_console_asset {
    const char *name; /* directory and file name, e.g. "console/app.js" */
    const unsigned char *data;
    size_t len;
} sd_console_asset;

extern const sd_console_asset sd_console_assets[];
extern const int sd_console_nassets;

/* The asset name of page dir ("console", "account"), or NULL. */
const sd_console_asset *sd_console_find(const char *dir, const char *name);

/* The Content-Type for a file name, by its extension; NULL for an extension
 * the console does not serve. */
const char *sd_console_type(const char *name);

#endif
