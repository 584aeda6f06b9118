/* inspect.c — calls a Lua function with each record for its side effects and passes the record on */
#include <stddef.h>

#include "luafn.h"

static const sl_option options[] = {
    {SL_OPT_STRING, "fn", NULL, offsetof(sl_luafn_ctx, fn), "Lua function of the record r (its result is ignored)", NULL, SL_OPT_REQUIRED | SL_OPT_PRIMARY | SL_OPT_LUA},
    SL_LUAFN_POLICY_OPTIONS,
    SL_OPTIONS_END,
};

static int result(void *c, sl_lua_call *call, sl_batch *in, uint32_t i, sl_emitter *em) {
  return sl_luafn_pass(&((sl_luafn_ctx *)c)->f, in, i, em);
}

static int init(void *c, sl_stage *st, sl_error_t *err) { return sl_luafn_init(c, st, result, SL_LUAFN_CARRY_PASS); }

const sl_stage_kind sl_stage_inspect = {
    .abi = SL_STAGE_ABI,
    .name = "inspect",
    .doc = "calls a Lua function with each record for its side effects and passes the record on",
    .options = options,
    .ctx_size = sizeof(sl_luafn_ctx),
    .flags = SL_STAGE_STATELESS,
    .init = init,
    .process = sl_luafn_process_cb,
    .event = sl_luafn_event_cb,
    .check = sl_luafn_check_cb,
    .destroy = sl_luafn_destroy_cb,
};
