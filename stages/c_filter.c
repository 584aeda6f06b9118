/* c_filter — keeps the records for which a C function (set through the C API) returns 1. */
#include <stddef.h>

#include "sluice.h"

typedef struct c_filter {
  sl_record_fn fn; /* option (C API only) */
  void *ud;        /* option (C API only) */
} c_filter;

static const sl_option options[] = {
    {SL_OPT_PTR, "fn", NULL, offsetof(c_filter, fn), "the C predicate (sl_pipeline_add_fn)", NULL, 0},
    {SL_OPT_PTR, "ud", NULL, offsetof(c_filter, ud), "its user data", NULL, 0},
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  c_filter *f = ctx;
  return f->fn ? 0 : sl_error_set(err, SL_ECONFIG, NULL, "c_filter needs a function: add it with sl_pipeline_add_fn");
}

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  c_filter *f = ctx;
  char msg[256];
  for (uint32_t i = 0; i < in->len; i++) {
    msg[0] = 0;
    int keep = f->fn(f->ud, &in->recs[i], msg, sizeof msg);
    if (keep < 0) sl_emit_error(em, i, "%s", msg[0] ? msg : "c_filter function failed");
    else if (keep) sl_emit(em, i, sl_batch_take(in, i));
  }
  return 0;
}

const sl_stage_kind sl_stage_c_filter = {
    .abi = SL_STAGE_ABI,
    .name = "c_filter",
    .doc = "keeps the records for which a C predicate returns 1 (embedding API: sl_pipeline_add_fn)",
    .options = options,
    .ctx_size = sizeof(c_filter),
    .flags = SL_STAGE_STATELESS,
    .init = init,
    .process = process,
};
