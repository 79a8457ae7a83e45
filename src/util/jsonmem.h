/*
 * jsonmem.h - jansson's allocations through a hook that counts failures.
 * Jansson reports a failed allocation badly: its parser calls it a syntax
 * error (a client would get 400 for the server's trouble) and can return a
 * string cut short; json_object_set_new and json_array_append_new fail
 * silently (a reply or a stored value would miss a member); json_dumps has
 * been seen to return a text with parts missing. With the hook installed a
 * caller can tell, and fail whole. A leaf: only jansson is known here.
 *
 * Two views of the same events, per thread: a count (a mark taken before a
 * piece of work, compared after it) and a flag (cleared where a request's
 * work starts on a thread: the dispatch, a write's completion in store.c;
 * checked by
 * sd_reply_json).
 */
#ifndef SD_JSONMEM_H
#define SD_JSONMEM_H

#include <jansson.h>
#include <stdbool.h>

/* Installs the hook (json_set_alloc_funcs); call once at start, before any
 * JSON value exists. Without it nothing is ever counted. */
void sd_json_mem_init(void);
/* How many allocations of jansson have failed on this thread. */
unsigned long sd_json_failures(void);
/* The flag: cleared here, set by every failure on this thread. */
void sd_json_oom_clear(void);
bool sd_json_oom(void);
/* json_loadb, but NULL with *oom true when an allocation failed meanwhile
 * (whatever jansson returned); *oom false otherwise. */
json_t *sd_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *e, bool *oom);
/* json_dumps, but NULL (nothing to free) when an allocation of jansson has
 * failed on this thread since the mark `since` (sd_json_failures() taken
 * before building v: a member set without memory is missing from it). */
char *sd_json_dumps(const json_t *v, size_t flags, unsigned long since);

#endif
