/*
 * jsonmem.c - jansson's allocations through a hook that remembers a failure
 * (see jsonmem.h). malloc here is the C library's (in the sanitizer build,
 * through util/allocfail.h's counting hook like every other call).
 */
#include "util/jsonmem.h"

#include <jansson.h>
#include <stdlib.h>

static _Thread_local bool failed;

static void *json_mem_malloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        failed = true;
    return p;
}

void sd_json_mem_init(void)
{
    json_set_alloc_funcs(json_mem_malloc, free);
}

void sd_json_oom_clear(void)
{
    failed = false;
}

bool sd_json_oom(void)
{
    return failed;
}

char *sd_json_dumps(const json_t *v, size_t flags)
{
    char *text = json_dumps(v, flags);
    if (text && failed) {
        free(text);
        return NULL;
    }
    return text;
}

json_t *sd_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *e)
{
    failed = false;
    json_t *v = json_loadb(buf, len, flags, e);
    if (v && failed) {
        json_decref(v);
        return NULL;
    }
    return v;
}
