/* buffer_unordered.c — calls a Lua function on up to concurrency records at once, results as they finish (vm/luafan.c has the semantics). */
#include <stddef.h>

#include "luafn.h"

static const sl_option options[] = {
    {SL_OPT_INT, "concurrency", NULL, offsetof(sl_luafan_ctx, concurrency), "calls in flight at most", NULL, SL_OPT_REQUIRED},
    {SL_OPT_STRING, "fn", NULL, offsetof(sl_luafan_ctx, fn), "Lua function of the record r returning the output record (nil drops it); it may wait (sluice.sleep)", NULL, SL_OPT_REQUIRED | SL_OPT_PRIMARY | SL_OPT_LUA},
    SL_POLICY_OPTIONS(sl_luafan_ctx),
    SL_OPTIONS_END,
};

static int init(void *c, sl_stage *st, sl_error_t *err) { return sl_luafan_init(c, st, false); }

const sl_stage_kind sl_stage_buffer_unordered = {
    .abi = SL_STAGE_ABI,
    .name = "buffer_unordered",
    .doc = "calls a Lua function on up to concurrency records at once, results as they finish",
    .options = options,
    .ctx_size = sizeof(sl_luafan_ctx),
    .flags = SL_STAGE_UNORDERED,
    .init = init,
    .process = sl_luafan_process,
    .flush = sl_luafan_flush,
    .destroy = sl_luafan_destroy,
    .event = sl_luafan_event,
    .check = sl_luafan_check,
};
