/* take — passes the first `count` records, then stops its input (upstream is cancelled). */
#include <stddef.h>

#include "sluice.h"

typedef struct take {
  int64_t count; /* option */
  int64_t seen;  /* records passed so far */
} take;

static const sl_option options[] = {
    {SL_OPT_INT, "count", NULL, offsetof(take, count), "how many records to pass", NULL, SL_OPT_PRIMARY | SL_OPT_REQUIRED},
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  take *t = ctx;
  if (t->count < 0) return sl_error_set(err, SL_ECONFIG, NULL, "count must be 0 or more (got %lld)", (long long)t->count);
  return 0;
}

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  take *t = ctx;
  for (uint32_t i = 0; i < in->len && t->seen < t->count; i++, t->seen++) sl_emit(em, i, sl_batch_take(in, i));
  return t->seen >= t->count ? SL_DONE : 0;
}

const sl_stage_kind sl_stage_take = {
    .abi = SL_STAGE_ABI,
    .name = "take",
    .doc = "passes the first count records, then stops reading (upstream stops too)",
    .options = options,
    .ctx_size = sizeof(take),
    .init = init,
    .process = process,
};
