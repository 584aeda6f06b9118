/*
 * route — sends each record to one named output: the first whose Lua predicate is true, else
 * the `default` output. Downstream stages read an output with `input: <stage>.<output>`; a bare
 * `input: <stage>` (or the next stage, by default) reads `default`. Records of an output nobody
 * reads are let go, as a filter drops them.
 *
 * `outputs` is ordered: a map (YAML keeps its order) or a list of one-key maps (the Lua front end,
 * whose tables have no order). The predicates run in the instance's Lua state, one call each,
 * in order, and must not wait (sluice.sleep): routing is a decision, not an I/O.
 */
#include <lauxlib.h>
#include <stddef.h>
#include <string.h>

#include "alloc.h"
#include "luafn.h"

#define MAX_OUTPUTS 64

typedef struct ctx {
  sl_value outputs;                /* option: name -> predicate, ordered */
  const char *names[MAX_OUTPUTS];  /* output k + 1 (pointing into `outputs`) */
  const char *preds[MAX_OUTPUTS];  /* its predicate text */
  size_t n;
  sl_stage *st;
  sl_lua *lua;                     /* the task's state, once loaded */
  int refs[MAX_OUTPUTS];           /* the predicates in it */
} ctx;

static const sl_option options[] = {
    {SL_OPT_VALUE, "outputs", NULL, offsetof(ctx, outputs),
     "output name -> Lua predicate of r, in order (a map, or a list of one-key maps); the first true one wins, else `default`", NULL,
     SL_OPT_REQUIRED | SL_OPT_PRIMARY},
    SL_OPTIONS_END,
};

/* One name: predicate entry (k, v of a map). */
static int add_output(ctx *x, const sl_value *k, const sl_value *v, sl_error_t *err) {
  if (x->n == MAX_OUTPUTS) return sl_error_set(err, SL_ECONFIG, NULL, "at most %d outputs", MAX_OUTPUTS);
  if (sl_typeof(v) != SL_TSTR)
    return sl_error_set(err, SL_ECONFIG, NULL, "output '%s': the predicate must be a Lua function or expression of r (got %s)",
                        sl_str_data(k), sl_type_name(sl_typeof(v)));
  x->names[x->n] = sl_str_data(k);
  x->preds[x->n++] = sl_str_data(v);
  return 0;
}

/* Reads `outputs` into names and preds. */
static int parse_outputs(ctx *x, sl_error_t *err) {
  const sl_value *o = &x->outputs;
  x->n = 0;
  if (sl_typeof(o) == SL_TMAP) {
    for (size_t i = 0; i < sl_map_len(o); i++) {
      int rc = add_output(x, sl_map_key(o, i), sl_map_val(o, i), err);
      if (rc) return rc;
    }
    return 0;
  }
  if (sl_typeof(o) == SL_TARRAY) {
    for (size_t i = 0; i < sl_array_len(o); i++) {
      const sl_value *m = sl_array_get(o, i);
      if (sl_typeof(m) != SL_TMAP || sl_map_len(m) != 1)
        return sl_error_set(err, SL_ECONFIG, NULL, "outputs[%zu] must be a map with one key, { name: predicate }", i + 1);
      int rc = add_output(x, sl_map_key(m, 0), sl_map_val(m, 0), err);
      if (rc) return rc;
    }
    return 0;
  }
  return sl_error_set(err, SL_ECONFIG, NULL, "outputs must be a map of output name -> predicate, or a list of one-key maps");
}

static int init(void *c, sl_stage *st, sl_error_t *err) {
  ctx *x = c;
  x->st = st;
  return parse_outputs(x, err);
}

static int check(void *c, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  ctx *x = c;
  sl_error_t e2;
  sl_error_init(&e2);
  if (parse_outputs(x, &e2) != 0) return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': %s", where, stage, e2.msg);
  for (size_t i = 0; i < x->n; i++) {
    int rc = sl_lua_check_fn(p, x->preds[i], where, stage, err);
    if (rc) return rc;
  }
  return 0;
}

static size_t outputs(const void *c, const char *const **names) {
  const ctx *x = c;
  *names = x->names;
  return x->n;
}

/* Loads the state and the predicates on first use. */
static int ready(ctx *x) {
  if (x->lua) return 0;
  sl_error_t err;
  sl_error_init(&err);
  sl_lua *l = sl_lua_get(x->st, &err);
  if (!l) return sl_stage_fail(x->st, "%s", err.msg);
  for (size_t i = 0; i < x->n; i++)
    if (sl_lua_fn(l, x->preds[i], sl_lua_where(x->st), sl_stage_name(x->st), &x->refs[i], &err) != 0)
      return sl_stage_fail(x->st, "%s", err.msg);
  x->lua = l;
  return 0;
}

/* The output of record i: 1 + the first predicate that holds, 0 when none does, -1 when one
 * failed (the record was failed with the message). */
static int choose(ctx *x, sl_batch *in, uint32_t i, sl_emitter *em) {
  for (size_t k = 0; k < x->n; k++) {
    sl_lua_call *call = sl_lua_call_new(x->lua, x->st, x->refs[k]);
    sl_lua_push(call->co, &in->recs[i]);
    char *msg = NULL;
    int rc = sl_lua_resume(call, 1, &msg);
    if (rc == SL_LUA_ERROR) {
      sl_emit_error(em, i, "route output '%s': %s", x->names[k], msg);
      sl__free(msg);
      return -1;
    }
    if (rc == SL_LUA_PARKED) {
      sl_lua_call_abandon(call);
      sl_emit_error(em, i, "route output '%s': a predicate must not wait (sluice.sleep)", x->names[k]);
      return -1;
    }
    bool yes = call->nres >= 1 && lua_toboolean(call->co, 1);
    sl_lua_call_free(call);
    if (yes) return (int)k + 1;
  }
  return 0;
}

static int process(void *c, sl_batch *in, sl_emitter *em) {
  ctx *x = c;
  int rc = ready(x);
  if (rc) return rc;
  for (uint32_t i = 0; i < in->len; i++) {
    int out = choose(x, in, i, em);
    if (out < 0) continue;
    rc = sl_emit_to(em, (uint32_t)out, i, sl_batch_take(in, i));
    if (rc) return rc;
  }
  return 0;
}

const sl_stage_kind sl_stage_route = {
    .abi = SL_STAGE_ABI,
    .name = "route",
    .doc = "sends each record to the first output whose Lua predicate holds, else to `default`; read one with input: <stage>.<output>",
    .options = options,
    .ctx_size = sizeof(ctx),
    .flags = SL_STAGE_STATELESS,
    .init = init,
    .process = process,
    .check = check,
    .outputs = outputs,
};
