/* filter.c — keeps the records for which a Lua predicate is true */
#include <stddef.h>

#include "luafn.h"

static const sl_option options[] = {
    {SL_OPT_STRING, "fn", NULL, offsetof(sl_luafn_ctx, fn), "Lua predicate of the record r", NULL, SL_OPT_REQUIRED | SL_OPT_PRIMARY | SL_OPT_LUA},
    SL_LUAFN_POLICY_OPTIONS,
    SL_OPTIONS_END,
};

/* Truthy keeps the record (moved on as it is); false or nil drops it. */
static int decide(void *c, bool yes, sl_batch *in, uint32_t i, sl_emitter *em) {
  return yes ? sl_luafn_pass(&((sl_luafn_ctx *)c)->f, in, i, em) : 0;
}

static int init(void *c, sl_stage *st, sl_error_t *err) { return sl_luafn_init_predicate(c, st, decide); }

const sl_stage_kind sl_stage_filter = {
    .abi = SL_STAGE_ABI,
    .name = "filter",
    .doc = "keeps the records for which a Lua predicate is true",
    .options = options,
    .ctx_size = sizeof(sl_luafn_ctx),
    .flags = SL_STAGE_STATELESS,
    .init = init,
    .process = sl_luafn_process_cb,
    .event = sl_luafn_event_cb,
    .check = sl_luafn_check_cb,
    .destroy = sl_luafn_destroy_cb,
};
