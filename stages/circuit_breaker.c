/* circuit_breaker — a map behind a circuit breaker: the options of map's `circuit_breaker` map
 * taken flat (`- circuit_breaker: { fn: call, failure_rate: 50, open_for: 30s }`), plus a
 * per-call `timeout`. While open, records fail at once with "circuit open" (then on_error). The
 * breaker is the stage's, shared by its instances (vm/policy.c). */
#include <stddef.h>

#include "luafn.h"

static const sl_option options[] = {
    {SL_OPT_STRING, "fn", NULL, offsetof(sl_luafn_policy_ctx, x.fn), "Lua function of the record r returning the new record (as map)", NULL, SL_OPT_REQUIRED | SL_OPT_PRIMARY | SL_OPT_LUA},
    SL_BREAKER_OPTION_LIST(offsetof(sl_luafn_policy_ctx, breaker)),
    {SL_OPT_DURATION, "timeout", NULL, offsetof(sl_luafn_policy_ctx, x.policy.timeout), "deadline of each call (a timeout counts as a failure)", NULL, 0},
    SL_OPTIONS_END,
};

const sl_stage_kind sl_stage_circuit_breaker = {
    .abi = SL_STAGE_ABI,
    .name = "circuit_breaker",
    .doc = "a map behind a circuit breaker: while open (too many failures), records fail at once with \"circuit open\"",
    .options = options,
    .ctx_size = sizeof(sl_luafn_policy_ctx),
    .flags = SL_STAGE_STATELESS,
    .init = sl_luafn_policy_init_cb,
    .process = sl_luafn_process_cb,
    .event = sl_luafn_event_cb,
    .check = sl_luafn_policy_check_cb,
    .destroy = sl_luafn_destroy_cb,
};
