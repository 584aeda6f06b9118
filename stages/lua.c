/*
 * lua.c — a source that calls a Lua generator: fn(i) for i = 1, 2, ... returns the next record,
 * or nil at the end. It may also emit with sluice.emit (those come first) and may wait
 * (sluice.sleep): the source then yields its worker. An error ends the pipeline (a source has no
 * input record to dead-letter).
 */
#include <stddef.h>

#include "alloc.h"
#include "luafn.h"

typedef struct ctx {
  char *fn;         /* option */
  sl_stage *st;
  sl_lua *lua;
  int ref;
  int64_t i;        /* the next argument */
  sl_lua_call *call;/* a parked call */
  bool ended;
} ctx;

static const sl_option options[] = {
    {SL_OPT_STRING, "fn", NULL, offsetof(ctx, fn), "Lua function of i = 1, 2, ... returning the next record, or nil at the end", NULL, SL_OPT_REQUIRED | SL_OPT_PRIMARY | SL_OPT_LUA},
    SL_OPTIONS_END,
};

static int init(void *c, sl_stage *st, sl_error_t *err) {
  ((ctx *)c)->st = st;
  ((ctx *)c)->i = 1;
  return 0;
}

/* A call finished: emit what it made. Returns 1 when the generator ended, < 0 on error. */
static int settle(ctx *x, sl_lua_call *c, int rc, char *msg, sl_emitter *em) {
  if (rc == SL_LUA_ERROR) {
    int r = sl_stage_fail(x->st, "%s", msg);
    sl__free(msg);
    return r;
  }
  size_t emitted = c->nout;
  for (size_t k = 0; k < c->nout; k++) {
    sl_emit(em, SL_NO_ORIGIN, c->out[k]);
    c->out[k] = sl_nil();
  }
  c->nout = 0;
  int r = 0;
  sl_value v;
  char m[256];
  if (sl_lua_result(c, &v, m, sizeof m) != 0) r = sl_stage_fail(x->st, "the generator returned a value that cannot be a record: %s", m);
  else if (v.type != SL_TNIL) sl_emit(em, SL_NO_ORIGIN, v);
  else if (emitted == 0) r = 1; /* nil and nothing emitted: the end */
  sl_lua_call_free(c);
  return r;
}

static int produce(void *c, sl_emitter *em) {
  ctx *x = c;
  if (x->call) return SL_PARKED;
  if (x->ended) return SL_DONE;
  if (!x->lua) {
    sl_error_t err;
    sl_error_init(&err);
    x->lua = sl_lua_get(x->st, &err);
    if (!x->lua) return sl_stage_fail(x->st, "%s", err.msg);
    if (sl_lua_fn(x->lua, x->fn, sl_lua_where(x->st), sl_stage_name(x->st), &x->ref, &err) != 0) return sl_stage_fail(x->st, "%s", err.msg);
  }
  for (uint32_t n = 0; n < sl_emitter_room(em); n++) {
    sl_lua_call *call = sl_lua_call_new(x->lua, x->st, x->ref);
    lua_pushinteger(call->co, (lua_Integer)x->i++);
    char *msg = NULL;
    int rc = sl_lua_resume(call, 1, &msg);
    if (rc == SL_LUA_PARKED) {
      x->call = call;
      return SL_PARKED;
    }
    int r = settle(x, call, rc, msg, em);
    if (r < 0) return r;
    if (r == 1) {
      x->ended = true;
      return SL_DONE;
    }
  }
  return 0;
}

static int event(void *c, uint64_t token, sl_emitter *em) {
  ctx *x = c;
  sl_lua_call *call = sl_lua_from_token(token);
  if (call != x->call) return 0;
  x->call = NULL;
  char *msg = NULL;
  int rc = sl_lua_resume(call, 0, &msg);
  if (rc == SL_LUA_PARKED) {
    x->call = call;
    return 0;
  }
  int r = settle(x, call, rc, msg, em);
  if (r < 0) return r;
  if (r == 1) x->ended = true;
  sl_stage_wake(x->st);
  return 0;
}

static int check(void *c, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  return sl_lua_check_fn(p, ((ctx *)c)->fn, where, stage, err);
}

const sl_stage_kind sl_stage_lua = {
    .abi = SL_STAGE_ABI,
    .name = "lua",
    .doc = "a source: calls a Lua generator for each record until it returns nil",
    .options = options,
    .ctx_size = sizeof(ctx),
    .flags = SL_STAGE_SOURCE,
    .init = init,
    .produce = produce,
    .event = event,
    .check = check,
};
