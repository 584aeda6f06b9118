/* unchunk — flattens arrays back into records: each item of an array record is emitted as a
 * record of its own, in order (each carries the array's ack token). A record that is not an
 * array fails (on_error). */
#include <stddef.h>

#include "sluice.h"

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  for (uint32_t i = 0; i < in->len; i++) {
    const sl_value *a = &in->recs[i];
    if (sl_typeof(a) != SL_TARRAY) {
      sl_emit_error(em, i, "unchunk expects an array record (got %s)", sl_type_name(sl_typeof(a)));
      continue;
    }
    size_t n = sl_array_len(a);
    for (size_t k = 0; k < n; k++) {
      int rc = sl_emit(em, i, sl_value_ref(sl_array_get(a, k)));
      if (rc) return rc;
    }
  }
  return 0;
}

const sl_stage_kind sl_stage_unchunk = {
    .abi = SL_STAGE_ABI,
    .name = "unchunk",
    .doc = "flattens array records: each item becomes a record, in order",
    .ctx_size = 0,
    .flags = SL_STAGE_STATELESS,
    .process = process,
};
