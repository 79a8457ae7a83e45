/*
 * jsonmem.h - jansson's allocations through a hook that remembers a failure.
 * Jansson's parser reports a failed allocation as a syntax error ("invalid
 * token"), which would answer a client 400 for the server's own trouble;
 * with this hook installed a caller can tell the two apart and answer 503.
 * A leaf: only jansson is known here.
 */
#ifndef SD_JSONMEM_H
#define SD_JSONMEM_H

#include <jansson.h>
#include <stdbool.h>

/* Installs the hook (json_set_alloc_funcs); call once at start, before any
 * JSON value exists. Without it sd_json_oom() is always false. */
void sd_json_mem_init(void);
/* Forgets an earlier failure on this thread; call before the jansson calls
 * to be judged. */
void sd_json_oom_clear(void);
/* True when an allocation of jansson failed on this thread since the last
 * sd_json_oom_clear(). */
bool sd_json_oom(void);

/* json_loadb, but NULL when an allocation of jansson failed meanwhile
 * (then sd_json_oom() is true): jansson 2.14 can return a value with a
 * string cut short, or call a failed allocation a syntax error. Clears the
 * flag first. */
json_t *sd_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *e);
/* json_dumps, but NULL (nothing to free) when an allocation of jansson
 * failed on this thread since the last sd_json_oom_clear(): a member the
 * caller set may then be missing, and jansson 2.14 has been seen to return
 * a text with parts missing (not valid JSON) under a failed allocation.
 * Callers clear before building what they dump, or just before this. */
char *sd_json_dumps(const json_t *v, size_t flags);

#endif
