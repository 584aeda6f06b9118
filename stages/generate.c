/* generate — a source of the integers 1, 2, ... (count of them, or without end). */
#include <stddef.h>

#include "sluice.h"

typedef struct generate {
  int64_t count; /* option: how many; 0 = without end */
  int64_t next;  /* next integer to emit */
} generate;

static const sl_option options[] = {
    {SL_OPT_INT, "count", "0", offsetof(generate, count), "how many records to emit (0: without end)", NULL, SL_OPT_PRIMARY},
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  generate *g = ctx;
  if (g->count < 0) return sl_error_set(err, SL_ECONFIG, NULL, "count must be 0 or more (got %lld)", (long long)g->count);
  g->next = 1;
  return 0;
}

static int produce(void *ctx, sl_emitter *em) {
  generate *g = ctx;
  uint32_t room = sl_emitter_room(em);
  for (uint32_t i = 0; i < room; i++) {
    if (g->count && g->next > g->count) return SL_DONE;
    sl_emit(em, SL_NO_ORIGIN, sl_int(g->next++));
  }
  return g->count && g->next > g->count ? SL_DONE : 0;
}

const sl_stage_kind sl_stage_generate = {
    .abi = SL_STAGE_ABI,
    .name = "generate",
    .doc = "emits the integers 1, 2, ... (count of them, or without end)",
    .options = options,
    .ctx_size = sizeof(generate),
    .flags = SL_STAGE_SOURCE,
    .init = init,
    .produce = produce,
};
