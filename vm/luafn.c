/*
 * luafn.c — one Lua call per record, in order, parking the batch while a call waits (see
 * luafn.h). The record is pushed as the call's argument; what the call returns is handled by the
 * stage's result callback; an error fails that record (on_error) with the message and traceback.
 */
#include "luafn.h"

#include <stdlib.h>

#include "alloc.h"
#include "pipeline.h"

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
  return 0;
}

/* The call for record i finished one way or another. */
static int finished(sl_luafn *f, sl_lua_call *c, int rc, char *msg, sl_batch *in, uint32_t i, sl_emitter *em) {
  if (rc == SL_LUA_ERROR) {
    for (uint32_t k = f->whole_batch ? 0 : i; k < (f->whole_batch ? in->len : i + 1); k++) sl_emit_error(em, k, "%s", msg);
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

int sl_luafn_init(void *ctx, sl_stage *st, sl_luafn_result result) {
  sl_luafn_ctx *x = ctx;
  x->f = (sl_luafn){.fn = x->fn, .st = st, .result = result, .ctx = x};
  return 0;
}

int sl_luafn_process_cb(void *ctx, sl_batch *in, sl_emitter *em) { return sl_luafn_process(&((sl_luafn_ctx *)ctx)->f, in, em); }
int sl_luafn_event_cb(void *ctx, uint64_t token, sl_emitter *em) { return sl_luafn_event(&((sl_luafn_ctx *)ctx)->f, token, em); }
int sl_luafn_check_cb(void *ctx, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  return sl_luafn_check(((sl_luafn_ctx *)ctx)->fn, p, stage, where, err);
}
