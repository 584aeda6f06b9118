/* alloc.c — allocation wrappers with an out-of-memory hook and fault injection (alloc.h). */
#include "alloc.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void default_oom(size_t n) {
  fprintf(stderr, "sluice: out of memory allocating %zu bytes\n", n);
  abort();
}

static _Atomic(sl__oom_hook) oom_hook = default_oom;
static atomic_long fail_countdown = -1; /* < 0: off */

void sl__set_oom_hook(sl__oom_hook hook) { atomic_store(&oom_hook, hook ? hook : default_oom); }
void sl__alloc_fail_after(long n) { atomic_store(&fail_countdown, n); }

static int injected_failure(void) {
  long c = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
  if (c < 0) return 0;
  return atomic_fetch_sub(&fail_countdown, 1) == 0;
}

static void *check(void *p, size_t n) {
  if (!p && n) atomic_load(&oom_hook)(n);
  return p;
}

void *sl__xmalloc(size_t n) { return check(malloc(n ? n : 1), n); }
void *sl__xcalloc(size_t count, size_t n) { return check(calloc(count ? count : 1, n ? n : 1), count * n); }
void *sl__xrealloc(void *p, size_t n) { return check(realloc(p, n ? n : 1), n); }
char *sl__xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  return memcpy(sl__xmalloc(n), s, n);
}
void *sl__trymalloc(size_t n) { return injected_failure() ? NULL : malloc(n ? n : 1); }
void *sl__tryrealloc(void *p, size_t n) { return injected_failure() ? NULL : realloc(p, n ? n : 1); }
void sl__free(void *p) { free(p); }

void *sl__mem_alloc(const sl__mem *m, size_t n) { return check(m->fn(m->ud, NULL, 0, n ? n : 1), n); }
void *sl__mem_calloc(const sl__mem *m, size_t n) { return memset(sl__mem_alloc(m, n), 0, n); }
void *sl__mem_realloc(const sl__mem *m, void *p, size_t osize, size_t nsize) {
  return check(m->fn(m->ud, p, osize, nsize ? nsize : 1), nsize);
}
void sl__mem_free(const sl__mem *m, void *p, size_t osize) {
  if (p) m->fn(m->ud, p, osize, 0);
}

void sl_tune_malloc(void) {
#ifdef __GLIBC__
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  mallopt(M_TOP_PAD, 16 << 20);
#endif
}
