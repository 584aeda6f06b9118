/* merge — passes on the records of all its inputs: each input's records in their order, the
 * inputs interleaved as they arrive. Input edges are taken round-robin, one batch at a time, so
 * a busy input cannot starve a slower one (any stage with several inputs merges the same way;
 * this kind names the merge point). */
#include "sluice.h"

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  for (uint32_t i = 0; i < in->len; i++) {
    int rc = sl_emit(em, i, sl_batch_take(in, i));
    if (rc) return rc;
  }
  return 0;
}

const sl_stage_kind sl_stage_merge = {
    .abi = SL_STAGE_ABI,
    .name = "merge",
    .doc = "passes on the records of all its inputs, taking them in turn (no input starves another)",
    .ctx_size = 0,
    .flags = SL_STAGE_STATELESS,
    .process = process,
};
