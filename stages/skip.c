/* skip — drops the first `count` records and passes the rest. */
#include <stddef.h>

#include "sluice.h"

typedef struct skip {
  int64_t count; /* option */
  int64_t seen;  /* records dropped so far */
} skip;

static const sl_option options[] = {
    {SL_OPT_INT, "count", NULL, offsetof(skip, count), "how many records to drop first", NULL, SL_OPT_PRIMARY | SL_OPT_REQUIRED},
    SL_OPTIONS_END,
};

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  skip *s = ctx;
  for (uint32_t i = 0; i < in->len; i++) {
    if (s->seen < s->count) s->seen++;
    else sl_emit(em, i, sl_batch_take(in, i));
  }
  return 0;
}

const sl_stage_kind sl_stage_skip = {
    .abi = SL_STAGE_ABI,
    .name = "skip",
    .doc = "drops the first count records and passes the rest",
    .options = options,
    .ctx_size = sizeof(skip),
    .process = process,
};
