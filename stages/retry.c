/* retry — a map that tries a failed call again, with backoff: the options of map's `retry` map
 * taken flat (`- retry: { fn: call, attempts: 3, backoff: exponential }`), plus a per-try
 * `timeout`. The calls go through the same driver as map's option (vm/luafn.c, vm/policy.c). */
#include <stddef.h>

#include "luafn.h"

typedef struct ctx {
  sl_luafn_ctx x; /* first: the luafn callbacks take the context as an sl_luafn_ctx */
  sl_retry retry; /* options */
} ctx;

static const sl_option options[] = {
    {SL_OPT_STRING, "fn", NULL, offsetof(ctx, x.fn), "Lua function of the record r returning the new record (as map)", NULL, SL_OPT_REQUIRED | SL_OPT_PRIMARY | SL_OPT_LUA},
    SL_RETRY_OPTION_LIST(offsetof(ctx, retry)),
    {SL_OPT_DURATION, "timeout", NULL, offsetof(ctx, x.policy.timeout), "deadline of each try (a try that times out is retried)", NULL, 0},
    SL_OPTIONS_END,
};

static int init(void *c, sl_stage *st, sl_error_t *err) {
  ctx *k = c;
  k->x.policy.retry_set = &k->retry;
  return sl_luafn_init(c, st, sl_luafn_map_result, SL_LUAFN_CARRY_RESULT);
}

static int check(void *c, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  ctx *k = c;
  k->x.policy.retry_set = &k->retry;
  return sl_luafn_check_cb(c, p, stage, where, err);
}

const sl_stage_kind sl_stage_retry = {
    .abi = SL_STAGE_ABI,
    .name = "retry",
    .doc = "a map that retries a failed call with backoff (attempts, backoff, initial, ...); the record fails after the last try",
    .options = options,
    .ctx_size = sizeof(ctx),
    .flags = SL_STAGE_STATELESS,
    .init = init,
    .process = sl_luafn_process_cb,
    .event = sl_luafn_event_cb,
    .check = check,
    .destroy = sl_luafn_destroy_cb,
};
