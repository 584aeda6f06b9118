/* timeout — a map whose calls have a deadline: a call still waiting after `duration` is cancelled
 * and its record fails with "timeout after <d>" (then on_error). The same as map's `timeout`
 * option (vm/policy.c, vm/luafn.c), as a stage of its own (DESIGN section 6). */
#include <stddef.h>

#include "luafn.h"

static const sl_option options[] = {
    {SL_OPT_STRING, "fn", NULL, offsetof(sl_luafn_ctx, fn), "Lua function of the record r returning the new record (as map)", NULL, SL_OPT_REQUIRED | SL_OPT_LUA},
    {SL_OPT_DURATION, "duration", NULL, offsetof(sl_luafn_ctx, policy.timeout), "deadline of each call", NULL, SL_OPT_REQUIRED | SL_OPT_PRIMARY},
    SL_OPTIONS_END,
};

static int init(void *c, sl_stage *st, sl_error_t *err) {
  if (((sl_luafn_ctx *)c)->policy.timeout <= 0) return sl_error_set(err, SL_ECONFIG, NULL, "duration must be positive");
  return sl_luafn_init(c, st, sl_luafn_map_result, SL_LUAFN_CARRY_RESULT);
}

const sl_stage_kind sl_stage_timeout = {
    .abi = SL_STAGE_ABI,
    .name = "timeout",
    .doc = "a map whose calls fail with \"timeout after <d>\" when they take longer than duration",
    .options = options,
    .ctx_size = sizeof(sl_luafn_ctx),
    .flags = SL_STAGE_STATELESS,
    .init = init,
    .process = sl_luafn_process_cb,
    .event = sl_luafn_event_cb,
    .check = sl_luafn_check_cb,
    .destroy = sl_luafn_destroy_cb,
};
