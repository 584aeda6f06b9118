/* retry — a map that tries a failed call again, with backoff: the options of map's `retry` map
 * taken flat (`- retry: { fn: call, attempts: 3, backoff: exponential }`), plus a per-try
 * `timeout`. The calls go through the same driver as map's option (vm/luafn.c, vm/policy.c). */
#include <stddef.h>

#include "luafn.h"

static const sl_option options[] = {
    {SL_OPT_STRING, "fn", NULL, offsetof(sl_luafn_policy_ctx, x.fn), "Lua function of the record r returning the new record (as map)", NULL, SL_OPT_REQUIRED | SL_OPT_PRIMARY | SL_OPT_LUA},
    SL_RETRY_OPTION_LIST(offsetof(sl_luafn_policy_ctx, retry)),
    {SL_OPT_DURATION, "timeout", NULL, offsetof(sl_luafn_policy_ctx, x.policy.timeout), "deadline of each try (a try that times out is retried)", NULL, 0},
    SL_OPTIONS_END,
};

const sl_stage_kind sl_stage_retry = {
    .abi = SL_STAGE_ABI,
    .name = "retry",
    .doc = "a map that retries a failed call with backoff (attempts, backoff, initial, ...); the record fails after the last try",
    .options = options,
    .ctx_size = sizeof(sl_luafn_policy_ctx),
    .flags = SL_STAGE_STATELESS,
    .init = sl_luafn_policy_init_cb,
    .process = sl_luafn_process_cb,
    .event = sl_luafn_event_cb,
    .check = sl_luafn_policy_check_cb,
    .destroy = sl_luafn_destroy_cb,
};
