/* ack.c — end-to-end acknowledgement tokens (see ack.h). */
#include "ack.h"

#include "alloc.h"

sl_ack *sl_ack_ref(sl_ack *a) {
  if (a) atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
  return a;
}

sl_ack *sl_batch_hold(const sl_batch *b, uint32_t i) {
  return b->acks ? sl_ack_ref(b->acks[i]) : NULL;
}

sl_ack *sl_ack_join(sl_ack **parts, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (parts[i]) k++;
  if (k == 0) return NULL;
  if (k == 1)
    for (size_t i = 0; i < n; i++)
      if (parts[i]) return parts[i];
  const sl__mem *mem = NULL;
  for (size_t i = 0; i < n && !mem; i++)
    if (parts[i]) mem = parts[i]->mem;
  sl_ack *a = sl__mem_calloc(mem, sizeof *a);
  a->mem = mem;
  atomic_init(&a->refs, 1);
  a->parts = sl__mem_alloc(mem, k * sizeof *a->parts);
  for (size_t i = 0; i < n; i++)
    if (parts[i]) a->parts[a->nparts++] = parts[i];
  return a;
}

void sl__ack_free(sl_ack *a) {
  if (a->parts) sl__mem_free(a->mem, a->parts, a->nparts * sizeof *a->parts);
  sl__mem_free(a->mem, a, sizeof *a);
}

/* A completed join releases its parts (recursion depth = join nesting, e.g. chunks of chunks). */
void sl_ack_release(sl_ack *a, bool dropped) {
  if (!a) return;
  if (dropped) atomic_store_explicit(&a->dropped, true, memory_order_relaxed);
  if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) != 1) return;
  if (a->src) {
    sl__stage_ack_done(a->src, a);
    return;
  }
  bool d = atomic_load_explicit(&a->dropped, memory_order_relaxed);
  for (uint32_t i = 0; i < a->nparts; i++) sl_ack_release(a->parts[i], d);
  sl__ack_free(a);
}
