/*
 * alloc.h — allocation wrappers (sl__ prefix: internal, not static).
 *
 * sl__xmalloc and friends are for small, fixed-size objects: on failure they call the abort
 * hook (which by default prints and aborts), so callers need no NULL checks. Sizes that come
 * from data (chunks, decompression, a record's string) use the sl__try* variants, which return
 * NULL so the caller can report SL_ENOMEM.
 *
 * Fault injection for tests: sl__alloc_fail_after(n) makes the n-th following try-allocation
 * (process-wide, counted atomically) fail; n < 0 turns it off.
 */
#ifndef SL_ALLOC_H
#define SL_ALLOC_H

#include <stddef.h>

#include "sluice.h"

void *sl__xmalloc(size_t n);
void *sl__xcalloc(size_t count, size_t n);
void *sl__xrealloc(void *p, size_t n);
char *sl__xstrdup(const char *s);
void *sl__trymalloc(size_t n);
void *sl__tryrealloc(void *p, size_t n);
void sl__free(void *p);

/* Called when an x-allocation fails; must not return. */
typedef void (*sl__oom_hook)(size_t n);
void sl__set_oom_hook(sl__oom_hook hook);
void sl__alloc_fail_after(long n);

/* An engine's allocator (sl_engine_config.alloc). Engine objects made at run time — batches,
 * acks, queues, instances and their contexts — come from it; failure goes to the OOM hook like
 * sl__xmalloc. Frees pass the size, as a Lua-style allocator expects. */
typedef struct sl__mem {
  sl_alloc_fn fn;
  void *ud;
} sl__mem;
void *sl__mem_alloc(const sl__mem *m, size_t n);
void *sl__mem_calloc(const sl__mem *m, size_t n);
void *sl__mem_realloc(const sl__mem *m, void *p, size_t osize, size_t nsize);
void sl__mem_free(const sl__mem *m, void *p, size_t osize);

#endif
