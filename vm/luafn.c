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
#include "expr.h"
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
  sl_luafn *g = &((sl_luafn_ctx *)ns->ctx)->f;
  if (g->popts && (g->popts->retry.type != SL_TNIL || g->popts->retry_set)) return; /* each try needs the record as it came */
  lua_State *L = sl_lua_L(f->lua);
  lua_createtable(L, 256, 0);
  f->carry_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  f->carry_out = true;
  g->from = f;
  g->made_by = f->carries == SL_LUAFN_CARRY_PASS ? f->made_by : f;
}

/* A failed record's dead-letter entry needs it as a record: convert a carried one. */
static void materialize(sl_luafn *f, sl_batch *in, uint32_t i) {
  if (!f->from || i >= in->len || in->recs[i].type != SL_TNIL) return;
  char why[256];
  sl_value v;
  if (carried_value(f, i, &v, why, sizeof why) == 0) in->recs[i] = v;
}

int sl_luafn_fail(sl_luafn *f, sl_batch *in, uint32_t i, sl_emitter *em, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  materialize(f, in, i);
  return sl_emit_error_attempts(em, i, f->attempt > 0 ? f->attempt : 1, "%s", msg);
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
  /* The record the function was given (when it was): what the result keeps of it is shared. */
  const sl_value *hint = !f->from && !f->args && i < in->len ? &in->recs[i] : NULL;
  if (sl_lua_result_hint(c, hint, &v, msg, sizeof msg) != 0)
    return sl_luafn_fail(f, in, i, em, "%s returned a value that cannot be a record: %s", kind, msg);
  return sl_emit(em, i, v);
}

/* ---- calls ------------------------------------------------------------------------------ */

/* Tokens of the policy timers: the try's serial number and a tag in the low bits (a call's own
 * token has them clear, lua.h). */
enum { TAG_CALL = 0, TAG_TIMEOUT = 1, TAG_RETRY = 2, TAG_MASK = 7 };
static uint64_t policy_token(const sl_luafn *f, int tag) { return (f->serial << 3) | (uint64_t)tag; }

int sl_luafn_ready(sl_luafn *f) {
  if (f->lua) return 0;
  sl_error_t err;
  sl_error_init(&err);
  sl_lua *l = sl_lua_get(f->st, &err);
  if (!l) return sl_stage_fail(f->st, "%s", err.msg);
  const char *where = f->st->node->where, *name = f->st->node->name;
  f->retry_on = LUA_NOREF;
  f->tmo_timer = -1;
  f->attempt = 1;
  f->rng = (uint64_t)(uintptr_t)f ^ ((uint64_t)f->st->index << 32) ^ 0x5DEECE66Dull;
  int rc = sl_lua_fn(l, f->fn, where, name, &f->ref, &err);
  if (rc == 0 && f->popts) rc = sl_policy_parse(f->popts, &f->pol, where, name, &err);
  if (rc == 0 && f->pol.has_retry && f->pol.retry.retry_on) rc = sl_lua_fn(l, f->pol.retry.retry_on, where, name, &f->retry_on, &err);
  if (rc != 0) {
    sl__pipeline_fail(f->st->p, name, "%s", err.msg);
    return SL_EFAILED;
  }
  if (f->pol.has_breaker) f->cb = sl_breaker_get(f->st->p, name, &f->pol.cb);
  f->timed = f->pol.timeout > 0 || f->pol.has_retry || f->cb;
  f->lua = l;
  link_carry(f);
  /* A predicate in the C subset skips Lua, unless its input is carried (it is in Lua already)
   * or a policy must time and count each call. */
  if (f->decide && !f->from && !f->timed) f->expr = sl_expr_compile(f->fn);
  return 0;
}

void sl_luafn_free(sl_luafn *f) {
  sl_policy_free(&f->pol);
  sl_expr_free(f->expr);
  f->expr = NULL;
}

/* The record at i is done with: back to its first try. */
static void record_done(sl_luafn *f) {
  f->attempt = 1;
  f->prev_wait = 0;
}

/* Should a try that failed with msg be retried? Runs retry_on(r, e) when given; e is the value
 * the function raised when it was a table (an HTTP error: e.status, e.kind), else msg. */
bool sl_luafn_ask_retry(sl_lua *lua, sl_stage *st, sl_lua_call *c, const char *msg, bool lua_err) {
  if (lua_err) sl_lua_push_error(lua, c->co, msg);
  else lua_pushstring(c->co, msg);
  return sl_luafn_retry_answer(st, c);
}

bool sl_luafn_retry_answer(sl_stage *st, sl_lua_call *c) {
  char *err = NULL;
  int rc = sl_lua_resume(c, 2, &err);
  bool yes = false;
  if (rc == SL_LUA_DONE) {
    yes = c->nres >= 1 && lua_toboolean(c->co, 1);
    sl_lua_call_free(c);
  } else if (rc == SL_LUA_PARKED) {
    sl_lua_call_abandon(c);
    sl_stage_log(st, SL_LOG_WARN, "retry_on must not wait: not retrying");
  } else {
    sl_stage_log(st, SL_LOG_WARN, "retry_on failed (not retrying): %s", err);
    sl__free(err);
  }
  return yes;
}

static bool wants_retry(sl_luafn *f, sl_batch *in, uint32_t i, const char *msg, bool lua_err) {
  if (f->retry_on == LUA_NOREF) return true;
  sl_lua_call *c = sl_lua_call_new(f->lua, f->st, f->retry_on);
  if (f->from) push_carried(c->co, f->from, i);
  else sl_lua_push_rec(f->lua, c->co, &in->recs[i]);
  return sl_luafn_ask_retry(f->lua, f->st, c, msg, lua_err);
}

/* Try number f->attempt of record i failed with msg (owned): wait and retry (SL_PARKED), or
 * fail the record (0). */
static int try_failed(sl_luafn *f, char *msg, bool retryable, bool lua_err, sl_batch *in, uint32_t i, sl_emitter *em) {
  int64_t now = sl_stage_now(f->st);
  const sl_retry *r = &f->pol.retry;
  if (retryable && f->pol.has_retry && f->attempt < r->attempts) {
    int64_t wait = sl_retry_delay(r, f->attempt, f->prev_wait, &f->rng);
    bool in_time = r->max_elapsed <= 0 || now + wait - f->first_start <= r->max_elapsed;
    if (in_time && wants_retry(f, in, i, msg, lua_err)) {
      sl__free(msg);
      f->prev_wait = wait;
      f->attempt++;
      f->serial++;
      f->at = i;
      f->backing_off = true;
      sl_policy_count_retry(f->st);
      if (sl_stage_timer(f->st, now + wait, policy_token(f, TAG_RETRY)) < 0) return sl_stage_fail(f->st, "no timer for a retry");
      return SL_PARKED;
    }
  }
  for (uint32_t k = f->whole_batch ? 0 : i; k < (f->whole_batch ? in->len : i + 1); k++)
    materialize(f, in, k), sl_emit_error_attempts(em, k, f->attempt, "%s", msg);
  sl__free(msg);
  record_done(f);
  return 0;
}

/* What a resume of the try of record i came to. Returns 0 or SL_DONE (the record is done with),
 * SL_PARKED, or < 0. */
static int settle(sl_luafn *f, sl_lua_call *c, int rc, char *msg, sl_batch *in, uint32_t i, sl_emitter *em) {
  if (rc == SL_LUA_PARKED) {
    f->call = c;
    f->at = i;
    if (f->pol.timeout > 0 && f->tmo_timer < 0) {
      f->tmo_timer = sl_stage_timer(f->st, f->start + f->pol.timeout, policy_token(f, TAG_TIMEOUT));
      if (f->tmo_timer < 0) return sl_stage_fail(f->st, "no timer for a timeout");
    }
    return SL_PARKED;
  }
  if (f->tmo_timer >= 0) sl_stage_timer_cancel(f->st, f->tmo_timer);
  f->tmo_timer = -1;
  if (f->cb) sl_breaker_record(f->cb, f->start, sl_stage_now(f->st), rc == SL_LUA_ERROR, f->st);
  if (rc == SL_LUA_ERROR) return try_failed(f, msg, true, true, in, i, em);
  int r = f->result(f->ctx, c, in, i, em);
  sl_lua_call_free(c);
  record_done(f);
  return r;
}

/* Starts try f->attempt of record i. */
static int try_record(sl_luafn *f, sl_batch *in, uint32_t i, sl_emitter *em) {
  f->serial++;
  if (f->timed) { /* the clock only when a policy needs it: this runs once per record */
    int64_t now = sl_stage_now(f->st);
    if (f->attempt == 1) f->first_start = now;
    f->start = now;
    if (f->cb && !sl_breaker_allow(f->cb, now, f->st)) return try_failed(f, sl__xstrdup("circuit open"), false, false, in, i, em);
  }
  sl_lua_call *c = sl_lua_call_new(f->lua, f->st, f->ref);
  int nargs = 1;
  if (f->args) {
    nargs = f->args(f->ctx, c->co, in, i, em);
    if (nargs < 0) {
      sl_lua_call_free(c);
      record_done(f);
      return 0;
    }
  } else if (f->from) {
    push_carried(c->co, f->from, i);
  } else {
    sl_lua_push_rec(f->lua, c->co, &in->recs[i]);
  }
  char *msg = NULL;
  int rc = sl_lua_resume(c, nargs, &msg);
  return settle(f, c, rc, msg, in, i, em);
}

/* Runs the calls of records from..len-1. */
static int run_from(sl_luafn *f, sl_batch *in, uint32_t from, sl_emitter *em) {
  for (uint32_t i = from; i < in->len; i++) {
    int t = f->expr ? sl_expr_test(f->expr, &in->recs[i]) : SL_EXPR_ASK_LUA;
    int r = t == SL_EXPR_ASK_LUA ? try_record(f, in, i, em) : f->decide(f->ctx, t == SL_EXPR_TRUE, in, i, em);
    if (r) return r; /* SL_PARKED, SL_DONE (the rest of the batch is dropped) or a failure */
  }
  return 0;
}

int sl_luafn_process(sl_luafn *f, sl_batch *in, sl_emitter *em) {
  int rc = sl_luafn_ready(f);
  if (rc) return rc;
  return run_from(f, in, 0, em);
}

/* An event of a parked batch: the call's own token (resume it), the try's timeout (cancel the
 * call), or the end of a backoff wait (try again). A stale one (a timer of an earlier try)
 * leaves the batch parked. */
int sl_luafn_event(sl_luafn *f, uint64_t token, sl_emitter *em) {
  sl_batch *in = sl_emitter_batch(em);
  if (!in) return 0; /* not parked: nothing of ours is waiting */
  int tag = (int)(token & TAG_MASK), r;
  if (tag == TAG_CALL) {
    sl_lua_call *c = sl_lua_from_token(token);
    if (!f->call || c != f->call || !sl_lua_token_live(token)) return SL_PARKED;
    f->call = NULL;
    char *msg = NULL;
    int rc = sl_lua_resume(c, 0, &msg);
    r = settle(f, c, rc, msg, in, f->at, em);
  } else if (tag == TAG_TIMEOUT) {
    if (token >> 3 != f->serial || !f->call) return SL_PARKED;
    sl_lua_call_abandon(f->call);
    f->call = NULL;
    f->tmo_timer = -1;
    char *msg = sl_policy_timeout_msg(f->pol.timeout);
    if (f->cb) sl_breaker_record(f->cb, f->start, sl_stage_now(f->st), true, f->st);
    r = try_failed(f, msg, true, false, in, f->at, em);
  } else {
    if (token >> 3 != f->serial || !f->backing_off) return SL_PARKED;
    f->backing_off = false;
    r = try_record(f, in, f->at, em);
  }
  if (r) return r;
  return run_from(f, in, f->at + 1, em);
}

int sl_luafn_check(const char *fn, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  return sl_lua_check_fn(p, fn, where, stage, err);
}

int sl_luafn_init(void *ctx, sl_stage *st, sl_luafn_result result, int carries) {
  sl_luafn_ctx *x = ctx;
  x->f = (sl_luafn){.fn = x->fn, .st = st, .result = result, .ctx = x, .carries = carries, .popts = &x->policy};
  return 0;
}

int sl_luafn_map_result(void *ctx, sl_lua_call *c, sl_batch *in, uint32_t i, sl_emitter *em) {
  return sl_luafn_emit_result(&((sl_luafn_ctx *)ctx)->f, c, in, i, em, false);
}

static int predicate_result(void *ctx, sl_lua_call *c, sl_batch *in, uint32_t i, sl_emitter *em) {
  sl_luafn *f = &((sl_luafn_ctx *)ctx)->f;
  return f->decide(ctx, c->nres >= 1 && lua_toboolean(c->co, 1), in, i, em);
}

int sl_luafn_init_predicate(void *ctx, sl_stage *st, sl_luafn_decide decide) {
  int rc = sl_luafn_init(ctx, st, predicate_result, SL_LUAFN_CARRY_PASS);
  ((sl_luafn_ctx *)ctx)->f.decide = decide;
  return rc;
}

int sl_luafn_process_cb(void *ctx, sl_batch *in, sl_emitter *em) { return sl_luafn_process(&((sl_luafn_ctx *)ctx)->f, in, em); }
int sl_luafn_event_cb(void *ctx, uint64_t token, sl_emitter *em) { return sl_luafn_event(&((sl_luafn_ctx *)ctx)->f, token, em); }
int sl_luafn_check_cb(void *ctx, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  sl_luafn_ctx *x = ctx;
  int rc = sl_luafn_check(x->fn, p, stage, where, err);
  return rc ? rc : sl_luafn_check_policy(&x->policy, p, stage, where, err);
}

/* The flat policy options the kind's table filled (its defaults are not 0) become the stage's
 * policy; values the user gives are checked by sl_policy_parse. */
static void policy_set(sl_luafn_policy_ctx *k) {
  if (k->retry.attempts || k->retry.multiplier != 0) k->x.policy.retry_set = &k->retry;
  if (k->breaker.window || k->breaker.open_for || k->breaker.min_calls) k->x.policy.breaker_set = &k->breaker;
}

int sl_luafn_policy_init_cb(void *ctx, sl_stage *st, sl_error_t *err) {
  policy_set(ctx);
  return sl_luafn_init(ctx, st, sl_luafn_map_result, SL_LUAFN_CARRY_RESULT);
}

int sl_luafn_policy_check_cb(void *ctx, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  policy_set(ctx);
  return sl_luafn_check_cb(ctx, p, stage, where, err);
}

void sl_luafn_destroy_cb(void *ctx) { sl_luafn_free(&((sl_luafn_ctx *)ctx)->f); }

int sl_luafn_check_policy(const sl_policy_opts *o, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  sl_policy pol;
  int rc = sl_policy_parse(o, &pol, where, stage, err);
  if (rc == 0 && pol.has_retry && pol.retry.retry_on) rc = sl_lua_check_fn(p, pol.retry.retry_on, where, stage, err);
  sl_policy_free(&pol);
  return rc;
}
