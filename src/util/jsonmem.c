/*
 * jsonmem.c - jansson's allocations through a hook that counts failures
 * (see jsonmem.h). malloc here is the C library's (in the sanitizer build,
 * through util/allocfail.h's counting hook like every other call).
 */
#include "util/jsonmem.h"

#include <stdlib.h>

static _Thread_local unsigned long failures;
static _Thread_local bool failed;

static void *json_mem_malloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        failures++;
        failed = true;
    }
    return p;
}

void sd_json_mem_init(void)
{
    json_set_alloc_funcs(json_mem_malloc, free);
}

unsigned long sd_json_failures(void)
{
    return failures;
}

void sd_json_oom_clear(void)
{
    failed = false;
}

bool sd_json_oom(void)
{
    return failed;
}

json_t *sd_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *e, bool *oom)
{
    unsigned long mark = failures;
    json_t *v = json_loadb(buf, len, flags, e);
    *oom = failures != mark;
    if (v && *oom) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

char *sd_json_dumps(const json_t *v, size_t flags, unsigned long since)
{
    char *text = json_dumps(v, flags);
    if (text && failures != since) {
        free(text);
        text = NULL;
    }
    return text;
}
