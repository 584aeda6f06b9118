/*
 * luafn.c — one Lua call per record, in order, parking the batch while a call waits (see
 * luafn.h). The record is pushed as the call's argument; what the call returns is handled by the
 * stage's result callback; an error fails that record (on_error) with the message and traceback.
 *
 * Carrying. Lua stages fused one after the other run in one state (a state per task). Between
 * them a record need not become a sluice value and then a Lua table again: the first stage keeps
 * what it emits in its carry table (a Lua table indexed by position in its output batch) and puts
 * nil placeholders in the batch, and the next stage pushes the Lua value from that table as its
 * argument. Only the last Lua stage of the run converts, and only what it emits: a filter after a
 * map converts the records it keeps, never the ones it drops. A carried value that cannot be a
 * record (a table holding a function, say) fails where it is converted, with a message naming
 * the stage that made it. A failed carried record is converted for its dead-letter entry.
 * Because the stages see the same Lua table, a function that changes a record it does not return
 * (a filter editing r) or returns one table for several records shares that table downstream, as
 * plain Lua code would (docs/lua.md, "Records between Lua stages").
 */
#include "luafn.h"

#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "alloc.h"
#include "pipeline.h"

/* ---- carrying -------------------------------------------------------------------------- */

/* Pushes carried input record i of f onto L. */
static void push_carried(lua_State *L, const sl_luafn *from, uint32_t i) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, from->carry_ref);
  lua_rawgeti(L, -1, (lua_Integer)i + 1);
  lua_remove(L, -2);
}

/* Keeps the value at idx of L as output record `at` of f. */
static void carry_store(sl_luafn *f, lua_State *L, int idx, uint32_t at) {
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 2, "carrying a record");
  lua_rawgeti(L, LUA_REGISTRYINDEX, f->carry_ref);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, (lua_Integer)at + 1);
  lua_pop(L, 1);
}

/* Carried input record i as a sluice value. Returns 0, or < 0 with msg. */
static int carried_value(sl_luafn *f, uint32_t i, sl_value *v, char *msg, size_t msglen) {
  lua_State *L = sl_lua_L(f->lua);
  luaL_checkstack(L, 2, "converting a record");
  push_carried(L, f->from, i);
  int rc = sl_lua_to_value(L, -1, v, msg, msglen);
  lua_pop(L, 1);
  return rc;
}

/* When the stage fused after f is a Lua function stage on the same state, f's output stays in
 * Lua. A stage that passes its input through (filter) carries only what it was carried. */
static void link_carry(sl_luafn *f) {
  sl_stage *st = f->st;
  sl_node *nx = st->node->fuse_next;
  if (f->carries == SL_LUAFN_NO_CARRY || (f->carries == SL_LUAFN_CARRY_PASS && !f->from)) return;
  if (!nx || nx->kind->process != sl_luafn_process_cb) return;
  sl_stage *ns = &nx->insts[st->index];
  if ((ns->runner ? ns->runner : ns) != (st->runner ? st->runner : st)) return;
  lua_State *L = sl_lua_L(f->lua);
  lua_createtable(L, 256, 0);
  f->carry_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  f->carry_out = true;
  sl_luafn *g = &((sl_luafn_ctx *)ns->ctx)->f;
  g->from = f;
  g->made_by = f->carries == SL_LUAFN_CARRY_PASS ? f->made_by : f;
}

int sl_luafn_fail(sl_luafn *f, sl_batch *in, uint32_t i, sl_emitter *em, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (f->from && i < in->len && in->recs[i].type == SL_TNIL) {
    char why[256];
    sl_value v;
    if (carried_value(f, i, &v, why, sizeof why) == 0) in->recs[i] = v;
  }
  return sl_emit_error(em, i, "%s", msg);
}

int sl_luafn_pass(sl_luafn *f, sl_batch *in, uint32_t i, sl_emitter *em) {
  if (!f->from) return sl_emit(em, i, sl_batch_take(in, i));
  if (f->carry_out) {
    lua_State *L = sl_lua_L(f->lua);
    luaL_checkstack(L, 1, "carrying a record");
    push_carried(L, f->from, i);
    carry_store(f, L, -1, sl__emitter_len(em));
    lua_pop(L, 1);
    return sl_emit(em, i, sl_nil());
  }
  sl_value v;
  char msg[256];
  if (carried_value(f, i, &v, msg, sizeof msg) != 0)
    return sl_emit_error(em, i, "the record made by stage '%s' cannot be a record: %s", f->made_by->st->node->name, msg);
  return sl_emit(em, i, v);
}

int sl_luafn_emit_result(sl_luafn *f, sl_lua_call *c, sl_batch *in, uint32_t i, sl_emitter *em, bool nil_drops) {
  const char *kind = f->st->node->kind->name;
  if (c->nres < 1 || lua_isnil(c->co, 1)) {
    if (nil_drops) return 0;
    return sl_luafn_fail(f, in, i, em, "%s returned nil: return a record (use filter_map to drop records)", kind);
  }
  if (f->carry_out) {
    int t = lua_type(c->co, 1);
    if (t == LUA_TTABLE || t == LUA_TSTRING || t == LUA_TNUMBER || t == LUA_TBOOLEAN) {
      carry_store(f, c->co, 1, sl__emitter_len(em));
      return sl_emit(em, i, sl_nil());
    }
  }
  sl_value v;
  char msg[256];
  if (sl_lua_result(c, &v, msg, sizeof msg) != 0)
    return sl_luafn_fail(f, in, i, em, "%s returned a value that cannot be a record: %s", kind, msg);
  return sl_emit(em, i, v);
}

/* ---- calls ------------------------------------------------------------------------------ */

int sl_luafn_ready(sl_luafn *f) {
  if (f->lua) return 0;
  sl_error_t err;
  sl_error_init(&err);
  sl_lua *l = sl_lua_get(f->st, &err);
  if (!l) return sl_stage_fail(f->st, "%s", err.msg);
  if (sl_lua_fn(l, f->fn, f->st->node->where, f->st->node->name, &f->ref, &err) != 0) {
    sl__pipeline_fail(f->st->p, f->st->node->name, "%s", err.msg);
    return SL_EFAILED;
  }
  f->lua = l;
  link_carry(f);
  return 0;
}

/* The call for record i finished one way or another. */
static int finished(sl_luafn *f, sl_lua_call *c, int rc, char *msg, sl_batch *in, uint32_t i, sl_emitter *em) {
  if (rc == SL_LUA_ERROR) {
    for (uint32_t k = f->whole_batch ? 0 : i; k < (f->whole_batch ? in->len : i + 1); k++) sl_luafn_fail(f, in, k, em, "%s", msg);
    sl__free(msg);
    return 0;
  }
  int r = f->result(f->ctx, c, in, i, em);
  sl_lua_call_free(c);
  return r;
}

/* Runs the calls of records from..len-1. */
static int run_from(sl_luafn *f, sl_batch *in, uint32_t from, sl_emitter *em) {
  for (uint32_t i = from; i < in->len; i++) {
    sl_lua_call *c = sl_lua_call_new(f->lua, f->st, f->ref);
    int nargs = 1;
    if (f->args) {
      nargs = f->args(f->ctx, c->co, in, i, em);
      if (nargs < 0) {
        sl_lua_call_free(c);
        continue;
      }
    } else if (f->from) {
      push_carried(c->co, f->from, i);
    } else {
      sl_lua_push(c->co, &in->recs[i]);
    }
    char *msg = NULL;
    int rc = sl_lua_resume(c, nargs, &msg);
    if (rc == SL_LUA_PARKED) {
      f->call = c;
      f->at = i;
      return SL_PARKED;
    }
    int r = finished(f, c, rc, msg, in, i, em);
    if (r) return r; /* SL_DONE (the rest of the batch is dropped) or a failure */
  }
  return 0;
}

int sl_luafn_process(sl_luafn *f, sl_batch *in, sl_emitter *em) {
  int rc = sl_luafn_ready(f);
  if (rc) return rc;
  return run_from(f, in, 0, em);
}

int sl_luafn_event(sl_luafn *f, uint64_t token, sl_emitter *em) {
  sl_lua_call *c = sl_lua_from_token(token);
  sl_batch *in = sl_emitter_batch(em);
  if (!f->call || c != f->call || !in) return 0; /* stale */
  f->call = NULL;
  char *msg = NULL;
  int rc = sl_lua_resume(c, 0, &msg);
  if (rc == SL_LUA_PARKED) {
    f->call = c;
    return SL_PARKED;
  }
  int r = finished(f, c, rc, msg, in, f->at, em);
  if (r) return r;
  return run_from(f, in, f->at + 1, em);
}

int sl_luafn_check(const char *fn, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  return sl_lua_check_fn(p, fn, where, stage, err);
}

int sl_luafn_init(void *ctx, sl_stage *st, sl_luafn_result result, int carries) {
  sl_luafn_ctx *x = ctx;
  x->f = (sl_luafn){.fn = x->fn, .st = st, .result = result, .ctx = x, .carries = carries};
  return 0;
}

int sl_luafn_process_cb(void *ctx, sl_batch *in, sl_emitter *em) { return sl_luafn_process(&((sl_luafn_ctx *)ctx)->f, in, em); }
int sl_luafn_event_cb(void *ctx, uint64_t token, sl_emitter *em) { return sl_luafn_event(&((sl_luafn_ctx *)ctx)->f, token, em); }
int sl_luafn_check_cb(void *ctx, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  return sl_luafn_check(((sl_luafn_ctx *)ctx)->fn, p, stage, where, err);
}
