/* take_while.c — passes records while a Lua predicate is true, then ends the stream */
#include <stddef.h>

#include "luafn.h"

static const sl_option options[] = {
    {SL_OPT_STRING, "fn", NULL, offsetof(sl_luafn_ctx, fn), "Lua predicate of the record r", NULL, SL_OPT_REQUIRED | SL_OPT_PRIMARY | SL_OPT_LUA},
    SL_LUAFN_POLICY_OPTIONS,
    SL_OPTIONS_END,
};

/* The first false ends the stream: upstream is cancelled. */
static int decide(void *c, bool yes, sl_batch *in, uint32_t i, sl_emitter *em) {
  return yes ? sl_luafn_pass(&((sl_luafn_ctx *)c)->f, in, i, em) : SL_DONE;
}

static int init(void *c, sl_stage *st, sl_error_t *err) { return sl_luafn_init_predicate(c, st, decide); }

const sl_stage_kind sl_stage_take_while = {
    .abi = SL_STAGE_ABI,
    .name = "take_while",
    .doc = "passes records while a Lua predicate is true, then ends the stream",
    .options = options,
    .ctx_size = sizeof(sl_luafn_ctx),
    .flags = 0,
    .init = init,
    .process = sl_luafn_process_cb,
    .event = sl_luafn_event_cb,
    .check = sl_luafn_check_cb,
    .destroy = sl_luafn_destroy_cb,
};
