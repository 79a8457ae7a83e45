/* err.c - names for the error codes of err.h, and the panic path. */
#include "util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *sd_strerror(int rc)
{
    switch (rc) {
    case 0:
        return "ok";
#define SD_ERR_CASE(name, code, text)                                                              \
    case code:                                                                                     \
        return text;
        SD_ERRNO_MAP(SD_ERR_CASE)
#undef SD_ERR_CASE
    default:
        return rc < 0 && rc > -4096 ? strerror(-rc) : "unknown error";
    }
}

void sd__panic(const char *file, int line, const char *what)
{
    fprintf(stderr, "PANIC %s:%d: assertion failed: %s\n", file, line, what);
    fflush(stderr);
    abort();
}
