/* circuit_breaker — a map behind a circuit breaker: the options of map's `circuit_breaker` map
 * taken flat (`- circuit_breaker: { fn: call, failure_rate: 50, open_for: 30s }`), plus a
 * per-call `timeout`. While open, records fail at once with "circuit open" (then on_error). The
 * breaker is the stage's, shared by its instances (vm/policy.c). */
#include <stddef.h>

#include "luafn.h"

typedef struct ctx {
  sl_luafn_ctx x;          /* first: the luafn callbacks take the context as an sl_luafn_ctx */
  sl_breaker_opts breaker; /* options */
} ctx;

static const sl_option options[] = {
    {SL_OPT_STRING, "fn", NULL, offsetof(ctx, x.fn), "Lua function of the record r returning the new record (as map)", NULL, SL_OPT_REQUIRED | SL_OPT_PRIMARY | SL_OPT_LUA},
    SL_BREAKER_OPTION_LIST(offsetof(ctx, breaker)),
    {SL_OPT_DURATION, "timeout", NULL, offsetof(ctx, x.policy.timeout), "deadline of each call (a timeout counts as a failure)", NULL, 0},
    SL_OPTIONS_END,
};

static int init(void *c, sl_stage *st, sl_error_t *err) {
  ctx *k = c;
  k->x.policy.breaker_set = &k->breaker;
  return sl_luafn_init(c, st, sl_luafn_map_result, SL_LUAFN_CARRY_RESULT);
}

static int check(void *c, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  ctx *k = c;
  k->x.policy.breaker_set = &k->breaker;
  return sl_luafn_check_cb(c, p, stage, where, err);
}

const sl_stage_kind sl_stage_circuit_breaker = {
    .abi = SL_STAGE_ABI,
    .name = "circuit_breaker",
    .doc = "a map behind a circuit breaker: while open (too many failures), records fail at once with \"circuit open\"",
    .options = options,
    .ctx_size = sizeof(ctx),
    .flags = SL_STAGE_STATELESS,
    .init = init,
    .process = sl_luafn_process_cb,
    .event = sl_luafn_event_cb,
    .check = check,
    .destroy = sl_luafn_destroy_cb,
};
