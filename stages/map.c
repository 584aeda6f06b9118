/* map.c — replaces each record with what a Lua function returns */
#include <stddef.h>

#include "luafn.h"

static const sl_option options[] = {
    {SL_OPT_STRING, "fn", NULL, offsetof(sl_luafn_ctx, fn), "Lua function of the record r returning the new record", NULL, SL_OPT_REQUIRED | SL_OPT_PRIMARY | SL_OPT_LUA},
    SL_LUAFN_POLICY_OPTIONS,
    SL_OPTIONS_END,
};

/* The result replaces the record; nil is an error (filter_map drops records). */
static int init(void *c, sl_stage *st, sl_error_t *err) { return sl_luafn_init(c, st, sl_luafn_map_result, SL_LUAFN_CARRY_RESULT); }

const sl_stage_kind sl_stage_map = {
    .abi = SL_STAGE_ABI,
    .name = "map",
    .doc = "replaces each record with what a Lua function returns",
    .options = options,
    .ctx_size = sizeof(sl_luafn_ctx),
    .flags = SL_STAGE_STATELESS,
    .init = init,
    .process = sl_luafn_process_cb,
    .event = sl_luafn_event_cb,
    .check = sl_luafn_check_cb,
    .destroy = sl_luafn_destroy_cb,
};
