/* flat_map.c — emits any number of records per record: those given to sluice.emit, then the items of a returned array */
#include <stddef.h>

#include "luafn.h"

static const sl_option options[] = {
    {SL_OPT_STRING, "fn", NULL, offsetof(sl_luafn_ctx, fn), "Lua function of the record r; emits with sluice.emit(v) or returns an array", NULL, SL_OPT_REQUIRED | SL_OPT_PRIMARY | SL_OPT_LUA},
    SL_LUAFN_POLICY_OPTIONS,
    SL_OPTIONS_END,
};

static int result(void *c, sl_lua_call *call, sl_batch *in, uint32_t i, sl_emitter *em) {
  sl_value ret = sl_nil();
  char msg[256];
  if (call->nres >= 1 && !lua_isnil(call->co, 1)) {
    if (sl_lua_to_value(call->co, 1, &ret, msg, sizeof msg) != 0) return sl_luafn_fail(&((sl_luafn_ctx *)c)->f, in, i, em, "flat_map returned a value that cannot be records: %s", msg);
    if (ret.type != SL_TARRAY && !(ret.type == SL_TMAP && sl_map_len(&ret) == 0)) {
      sl_value_free(ret);
      return sl_luafn_fail(&((sl_luafn_ctx *)c)->f, in, i, em, "flat_map must return nil or an array of records (emit single records with sluice.emit)");
    }
  }
  for (size_t k = 0; k < call->nout; k++) {
    sl_emit(em, i, call->out[k]);
    call->out[k] = sl_nil();
  }
  call->nout = 0;
  for (size_t k = 0; ret.type == SL_TARRAY && k < sl_array_len(&ret); k++) sl_emit(em, i, sl_value_ref(sl_array_get(&ret, k)));
  sl_value_free(ret);
  return 0;
}

static int init(void *c, sl_stage *st, sl_error_t *err) { return sl_luafn_init(c, st, result, SL_LUAFN_NO_CARRY); }

const sl_stage_kind sl_stage_flat_map = {
    .abi = SL_STAGE_ABI,
    .name = "flat_map",
    .doc = "emits any number of records per record: those given to sluice.emit, then the items of a returned array",
    .options = options,
    .ctx_size = sizeof(sl_luafn_ctx),
    .flags = SL_STAGE_STATELESS,
    .init = init,
    .process = sl_luafn_process_cb,
    .event = sl_luafn_event_cb,
    .check = sl_luafn_check_cb,
    .destroy = sl_luafn_destroy_cb,
};
