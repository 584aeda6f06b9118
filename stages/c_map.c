/* c_map — applies a C function (sl_record_fn, set through the C API) to every record. */
#include <stddef.h>

#include "sluice.h"

typedef struct c_map {
  sl_record_fn fn; /* option (C API only) */
  void *ud;        /* option (C API only) */
} c_map;

static const sl_option options[] = {
    {SL_OPT_PTR, "fn", NULL, offsetof(c_map, fn), "the C function (sl_pipeline_add_fn)", NULL, 0},
    {SL_OPT_PTR, "ud", NULL, offsetof(c_map, ud), "its user data", NULL, 0},
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  c_map *m = ctx;
  return m->fn ? 0 : sl_error_set(err, SL_ECONFIG, NULL, "c_map needs a function: add it with sl_pipeline_add_fn");
}

/* On failure the record, as the function left it, goes back to the batch for the dead letter. */
static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  c_map *m = ctx;
  char msg[256];
  for (uint32_t i = 0; i < in->len; i++) {
    sl_value v = sl_batch_take(in, i);
    msg[0] = 0;
    if (m->fn(m->ud, &v, msg, sizeof msg) < 0) {
      in->recs[i] = v;
      sl_emit_error(em, i, "%s", msg[0] ? msg : "c_map function failed");
    } else {
      sl_emit(em, i, v);
    }
  }
  return 0;
}

const sl_stage_kind sl_stage_c_map = {
    .abi = SL_STAGE_ABI,
    .name = "c_map",
    .doc = "applies a C function to every record (embedding API: sl_pipeline_add_fn)",
    .options = options,
    .ctx_size = sizeof(c_map),
    .flags = SL_STAGE_STATELESS,
    .init = init,
    .process = process,
};
