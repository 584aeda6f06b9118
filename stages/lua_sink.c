/*
 * lua_sink.c — a sink that calls a Lua function per record, or per batch with `batch: true`
 * (the function then gets an array of records). The call may wait (sluice.sleep, async I/O);
 * the batch is parked meanwhile and order is kept. An error fails the record (on_error); in
 * batch mode, every record of the batch.
 */
#include <stddef.h>

#include "alloc.h"
#include "luafn.h"

typedef struct ctx {
  char *fn;     /* option */
  bool batch;   /* option */
  sl_luafn f;
} ctx;

static const sl_option options[] = {
    {SL_OPT_STRING, "fn", NULL, offsetof(ctx, fn), "Lua function called with each record (or each batch: an array)", NULL, SL_OPT_REQUIRED | SL_OPT_PRIMARY | SL_OPT_LUA},
    {SL_OPT_BOOL, "batch", "false", offsetof(ctx, batch), "call the function once per batch with an array of records", NULL, 0},
    SL_OPTIONS_END,
};

static int result(void *c, sl_lua_call *call, sl_batch *in, uint32_t i, sl_emitter *em) { return 0; }

/* Batch mode: the call of record 0 gets the whole batch; the others are skipped. */
static int batch_args(void *c, lua_State *co, sl_batch *in, uint32_t i, sl_emitter *em) {
  if (i > 0) return -1;
  sl_value a = sl_array(in->len);
  for (uint32_t k = 0; k < in->len; k++) sl_array_push(&a, sl_value_ref(&in->recs[k]));
  sl_lua_push(co, &a);
  sl_value_free(a);
  return 1;
}

static int init(void *c, sl_stage *st, sl_error_t *err) {
  ctx *x = c;
  x->f = (sl_luafn){.fn = x->fn, .st = st, .result = result, .args = x->batch ? batch_args : NULL, .ctx = x,
                   .whole_batch = x->batch};
  return 0;
}

static int process(void *c, sl_batch *in, sl_emitter *em) { return sl_luafn_process(&((ctx *)c)->f, in, em); }
static int event(void *c, uint64_t token, sl_emitter *em) { return sl_luafn_event(&((ctx *)c)->f, token, em); }
static int check(void *c, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  return sl_lua_check_fn(p, ((ctx *)c)->fn, where, stage, err);
}

const sl_stage_kind sl_stage_lua_sink = {
    .abi = SL_STAGE_ABI,
    .name = "lua_sink",
    .doc = "a sink: calls a Lua function with each record, or each batch",
    .options = options,
    .ctx_size = sizeof(ctx),
    .flags = SL_STAGE_SINK,
    .init = init,
    .process = process,
    .event = event,
    .check = check,
};
