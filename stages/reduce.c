/*
 * reduce.c — folds records into accumulators with a Lua function, one per key, and emits them at
 * the end of the stream: `acc = fn(acc, r)`, starting from `init`. With `key` (a Lua function
 * of r), each key has its own accumulator and the output is one {key = k, value = acc} per key,
 * in the order keys were first seen; without it, the output is the one accumulator (nothing if
 * it is nil). Accumulators stay Lua values in the stage's state until the end.
 *
 * Acknowledgement: the ack token of every folded record is held until the end, then joined into
 * one that the outputs carry, so a source hears about a record only once the result it went
 * into reached the sinks (nothing is emitted: it completes then).
 */
#include <lauxlib.h>
#include <stddef.h>
#include <stdlib.h>

#include "alloc.h"
#include "luafn.h"

typedef struct ctx {
  char *fn;      /* option: (acc, r) -> acc */
  sl_value init; /* option: the first accumulator */
  char *key;     /* option: r -> key, or NULL */
  sl_luafn f;
  int key_ref;   /* the key function */
  int accs;      /* registry ref: key -> accumulator */
  int order;     /* registry ref: keys in first-seen order */
  int seen;      /* registry ref: key -> true */
  int cur;       /* registry ref of the current record's key */
  sl_ack **acks; /* tokens of the records folded so far */
  size_t nacks, capacks;
} ctx;

static const sl_option options[] = {
    {SL_OPT_STRING, "fn", NULL, offsetof(ctx, fn), "Lua function (acc, r) returning the new accumulator", NULL, SL_OPT_REQUIRED | SL_OPT_PRIMARY | SL_OPT_LUA},
    {SL_OPT_VALUE, "init", NULL, offsetof(ctx, init), "the accumulator before the first record (default nil)", NULL, 0},
    {SL_OPT_STRING, "key", NULL, offsetof(ctx, key), "Lua function or expression of r: one accumulator per key", NULL, SL_OPT_LUA},
    SL_OPTIONS_END,
};

static const char all_key = 0; /* the key of the single accumulator (a light userdata) */

/* Pushes (acc, r) for record i, computing its key first. */
static int args(void *c, lua_State *co, sl_batch *in, uint32_t i, sl_emitter *em) {
  ctx *x = c;
  lua_State *L = sl_lua_L(x->f.lua);
  if (x->key) {
    sl_lua_call *k = sl_lua_call_new(x->f.lua, sl_emitter_stage(em), x->key_ref);
    sl_lua_push(k->co, &in->recs[i]);
    char *msg = NULL;
    int rc = sl_lua_resume(k, 1, &msg);
    if (rc == SL_LUA_ERROR) {
      sl_emit_error(em, i, "reduce key: %s", msg);
      sl__free(msg);
      return -1;
    }
    if (rc == SL_LUA_PARKED) {
      sl_lua_call_abandon(k);
      sl_emit_error(em, i, "reduce key: the key function must not wait");
      return -1;
    }
    if (k->nres < 1 || lua_isnil(k->co, 1) || (lua_type(k->co, 1) == LUA_TNUMBER && lua_tonumber(k->co, 1) != lua_tonumber(k->co, 1))) {
      sl_lua_call_free(k);
      sl_emit_error(em, i, "reduce key: the key of this record is nil");
      return -1;
    }
    lua_xmove(k->co, L, 1);
    sl_lua_call_free(k);
  } else {
    lua_pushlightuserdata(L, (void *)&all_key);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->cur);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 1); /* cur[1] = key */
  lua_pop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->accs);
  lua_insert(L, -2);
  lua_rawget(L, -2); /* accs[key] */
  lua_remove(L, -2);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    sl_lua_push(L, &x->init);
  }
  lua_xmove(L, co, 1);
  sl_lua_push(co, &in->recs[i]);
  return 2;
}

/* The call returned the new accumulator of the current key. */
static int result(void *c, sl_lua_call *call, sl_batch *in, uint32_t i, sl_emitter *em) {
  ctx *x = c;
  lua_State *L = sl_lua_L(x->f.lua);
  if (call->nres < 1) lua_pushnil(call->co);
  lua_settop(call->co, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->cur);
  lua_rawgeti(L, -1, 1); /* key */
  lua_remove(L, -2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->seen);
  lua_pushvalue(L, -2);
  lua_rawget(L, -2);
  if (lua_isnil(L, -1)) { /* first time: remember the order */
    lua_pushvalue(L, -3);
    lua_pushboolean(L, 1);
    lua_rawset(L, -4);
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->order);
    lua_pushvalue(L, -4);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 1);
  }
  lua_pop(L, 2); /* seen[key], seen */
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->accs);
  lua_insert(L, -2);
  lua_xmove(call->co, L, 1);
  lua_rawset(L, -3); /* accs[key] = acc */
  lua_pop(L, 1);
  sl_ack *a = sl_batch_hold(in, i);
  if (a) {
    if (x->nacks == x->capacks) {
      x->capacks = x->capacks ? x->capacks * 2 : 256;
      x->acks = sl__xrealloc(x->acks, x->capacks * sizeof *x->acks);
    }
    x->acks[x->nacks++] = a;
  }
  return 0;
}

static int init(void *c, sl_stage *st, sl_error_t *err) {
  ctx *x = c;
  x->f = (sl_luafn){.fn = x->fn, .st = st, .args = args, .result = result, .ctx = x};
  x->accs = x->order = x->seen = x->cur = x->key_ref = LUA_NOREF;
  return 0;
}

static int process(void *c, sl_batch *in, sl_emitter *em) {
  ctx *x = c;
  if (!x->f.lua) {
    int rc = sl_luafn_ready(&x->f);
    if (rc) return rc;
    lua_State *L = sl_lua_L(x->f.lua);
    lua_newtable(L);
    x->accs = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    x->order = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    x->cur = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    x->seen = luaL_ref(L, LUA_REGISTRYINDEX);
    sl_error_t err;
    sl_error_init(&err);
    if (x->key && sl_lua_fn(x->f.lua, x->key, sl_lua_where(x->f.st), sl_stage_name(x->f.st), &x->key_ref, &err) != 0) return sl_stage_fail(x->f.st, "%s", err.msg);
  }
  return sl_luafn_process(&x->f, in, em);
}

static int event(void *c, uint64_t token, sl_emitter *em) { return sl_luafn_event(&((ctx *)c)->f, token, em); }

/* End of stream: the accumulators, in first-seen key order, each carrying a reference to all. */
static int flush_accs(ctx *x, sl_emitter *em, sl_ack *all) {
  if (!x->f.lua) return 0;
  lua_State *L = sl_lua_L(x->f.lua);
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->order);
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->accs);
  lua_Integer n = (lua_Integer)lua_rawlen(L, -2);
  for (lua_Integer k = 1; k <= n; k++) {
    lua_rawgeti(L, -2, k);   /* key */
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);       /* acc */
    sl_value acc, key = sl_nil();
    char msg[256];
    if (sl_lua_to_value(L, -1, &acc, msg, sizeof msg) != 0) {
      lua_pop(L, 4);
      return sl_stage_fail(x->f.st, "the accumulator cannot become a record: %s", msg);
    }
    if (x->key && sl_lua_to_value(L, -2, &key, msg, sizeof msg) != 0) {
      sl_value_free(acc);
      lua_pop(L, 4);
      return sl_stage_fail(x->f.st, "the key cannot become a record: %s", msg);
    }
    lua_pop(L, 2);
    if (x->key) {
      sl_value m = sl_map(2);
      sl_map_setc(&m, "key", key);
      sl_map_setc(&m, "value", acc);
      sl_emit_acked(em, m, sl_ack_ref(all));
    } else if (acc.type != SL_TNIL) {
      sl_emit_acked(em, acc, sl_ack_ref(all));
    }
  }
  lua_pop(L, 2);
  return 0;
}

static int flush(void *c, sl_emitter *em) {
  ctx *x = c;
  sl_ack *all = sl_ack_join(x->acks, x->nacks); /* consumes the parts; released below */
  x->nacks = 0;
  int rc = flush_accs(x, em, all);
  sl_ack_release(all, false);
  return rc;
}

static void destroy(void *c) {
  ctx *x = c;
  for (size_t i = 0; i < x->nacks; i++) sl_ack_release(x->acks[i], true);
  sl__free(x->acks);
}

static int check(void *c, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  ctx *x = c;
  int rc = sl_lua_check_fn(p, x->fn, where, stage, err);
  if (rc == 0 && x->key) rc = sl_lua_check_fn(p, x->key, where, stage, err);
  return rc;
}

const sl_stage_kind sl_stage_reduce = {
    .abi = SL_STAGE_ABI,
    .name = "reduce",
    .doc = "folds records into an accumulator per key with a Lua function; emits them at the end",
    .options = options,
    .ctx_size = sizeof(ctx),
    .flags = 0,
    .init = init,
    .process = process,
    .flush = flush,
    .destroy = destroy,
    .event = event,
    .check = check,
};
