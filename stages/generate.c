/* generate — a source of the integers 1, 2, ... (count of them, or without end), or with `fn` of
 * what a Lua function makes of each of them: fn(i) is the record for i, and nil emits nothing for
 * that i (i is not skipped: the next call gets i + 1, and `count` counts the i's, not the
 * records). Records go as fast as downstream takes them or, with `rate`, paced on the engine
 * clock: record i is emitted at (i - 1) / rate seconds after the start (a timer wakes the source;
 * no worker waits). fn runs as a coroutine of the source's Lua state: it may wait (sluice.sleep),
 * which parks the source until it resumes; records it gives to sluice.emit go before its result.
 * A call that raises, or returns what cannot be a record, fails record i (the integer) under
 * on_error: skipped, dead-lettered (the entry's record is i) or failing the pipeline. */
#include <math.h>
#include <stddef.h>

#include "alloc.h"
#include "lua.h"

typedef struct generate {
  int64_t count;      /* option: how many; 0 = without end */
  double rate;        /* option: records per second; 0 = as fast as possible */
  char *fn;           /* option: Lua function of i, or NULL */
  int64_t next;       /* next integer to emit (or to call fn with) */
  int64_t t0;         /* engine clock at init */
  int64_t armed;      /* deadline of the pending timer, or -1 */
  sl_stage *st;
  sl_lua *lua;        /* fn's state, once loaded */
  int ref;            /* fn in it */
  sl_lua_call *call;  /* fn's call for i = next - 1, parked, or NULL */
} generate;

static const sl_option options[] = {
    {SL_OPT_INT, "count", "0", offsetof(generate, count), "how many records to emit (0: without end)", NULL, SL_OPT_PRIMARY},
    {SL_OPT_DOUBLE, "rate", "0", offsetof(generate, rate), "records per second on the engine clock, evenly spaced (0: as fast as downstream takes them)", NULL, 0},
    {SL_OPT_STRING, "fn", NULL, offsetof(generate, fn), "Lua function of i = 1, 2, ...: emits fn(i) instead of i; nil emits nothing for that i (a function name, a function, or an expression or body over i)", NULL, SL_OPT_LUA},
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  generate *g = ctx;
  if (g->count < 0) return sl_error_set(err, SL_ECONFIG, NULL, "count must be 0 or more (got %lld)", (long long)g->count);
  if (!(g->rate >= 0) || g->rate > 1e9) return sl_error_set(err, SL_ECONFIG, NULL, "rate must be from 0 to 1e9 records per second (got %g)", g->rate);
  g->next = 1;
  g->st = st;
  g->t0 = sl_stage_now(st);
  g->armed = -1;
  return 0;
}

static int check(void *ctx, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  generate *g = ctx;
  return g->fn ? sl_lua_check_fn_of(p, g->fn, "i", where, stage, err) : 0;
}

/* When record i is due (rate > 0). */
static int64_t due(const generate *g, int64_t i) { return g->t0 + (int64_t)llround((double)(i - 1) * 1e9 / g->rate); }

/* fn's call for i came to rc: emit what it made, or fail record i. Returns 0 or < 0. */
static int settle(generate *g, sl_lua_call *c, int rc, char *msg, int64_t i, sl_emitter *em) {
  if (rc == SL_LUA_ERROR) {
    int r = sl_emit_error_record(em, sl_int(i), NULL, "%s", msg);
    sl__free(msg);
    return r < 0 ? r : 0;
  }
  for (size_t k = 0; k < c->nout; k++) {
    sl_emit(em, SL_NO_ORIGIN, c->out[k]);
    c->out[k] = sl_nil();
  }
  c->nout = 0;
  sl_value v;
  char m[256];
  int r = 0;
  if (sl_lua_result(c, &v, m, sizeof m) != 0) r = sl_emit_error_record(em, sl_int(i), NULL, "fn returned a value that cannot be a record: %s", m);
  else if (v.type != SL_TNIL) r = sl_emit(em, SL_NO_ORIGIN, v);
  sl_lua_call_free(c);
  return r < 0 ? r : 0;
}

/* Calls fn(i). Returns 0, SL_PARKED (the call waits) or < 0. */
static int call_fn(generate *g, int64_t i, sl_emitter *em) {
  if (!g->lua) {
    sl_error_t err;
    sl_error_init(&err);
    g->lua = sl_lua_get(g->st, &err);
    if (!g->lua) return sl_stage_fail(g->st, "%s", err.msg);
    if (sl_lua_fn_of(g->lua, g->fn, "i", sl_lua_where(g->st), sl_stage_name(g->st), &g->ref, &err) != 0) {
      g->lua = NULL;
      return sl_stage_fail(g->st, "%s", err.msg);
    }
  }
  sl_lua_call *c = sl_lua_call_new(g->lua, g->st, g->ref);
  lua_pushinteger(c->co, (lua_Integer)i);
  char *msg = NULL;
  int rc = sl_lua_resume(c, 1, &msg);
  if (rc == SL_LUA_PARKED) {
    g->call = c;
    return SL_PARKED;
  }
  return settle(g, c, rc, msg, i, em);
}

static int produce(void *ctx, sl_emitter *em) {
  generate *g = ctx;
  if (g->call) return SL_PARKED; /* its event resumes it */
  uint32_t room = sl_emitter_room(em);
  int64_t now = g->rate > 0 ? sl_stage_now(g->st) : 0;
  if (g->armed >= 0 && now >= g->armed) g->armed = -1; /* its timer fired: that is why we run */
  for (uint32_t i = 0; i < room; i++) {
    if (g->count && g->next > g->count) return SL_DONE;
    if (g->rate > 0 && due(g, g->next) > now) {
      if (g->armed < 0) {
        g->armed = due(g, g->next);
        if (sl_stage_timer(g->st, g->armed, 0) < 0) return sl_stage_fail(g->st, "cannot arm a timer");
      }
      return SL_PARKED;
    }
    if (!g->fn) {
      sl_emit(em, SL_NO_ORIGIN, sl_int(g->next++));
      continue;
    }
    int rc = call_fn(g, g->next++, em);
    if (rc) return rc; /* SL_PARKED: what was emitted goes on meanwhile */
  }
  return g->count && g->next > g->count ? SL_DONE : 0;
}

/* A parked call's token came back (or the rate timer fired: nothing to do but run again). */
static int event(void *ctx, uint64_t token, sl_emitter *em) {
  generate *g = ctx;
  sl_lua_call *c = g->call;
  if (c && token == sl_lua_token(c)) {
    g->call = NULL;
    char *msg = NULL;
    int rc = sl_lua_resume(c, 0, &msg);
    if (rc == SL_LUA_PARKED) {
      g->call = c;
      return 0;
    }
    rc = settle(g, c, rc, msg, g->next - 1, em);
    if (rc < 0) return rc;
  }
  sl_stage_wake(g->st);
  return 0;
}

const sl_stage_kind sl_stage_generate = {
    .abi = SL_STAGE_ABI,
    .name = "generate",
    .doc = "emits the integers 1, 2, ... (count of them, or without end), or what a Lua function makes of each, optionally at a rate",
    .options = options,
    .ctx_size = sizeof(generate),
    .flags = SL_STAGE_SOURCE,
    .init = init,
    .produce = produce,
    .event = event,
    .check = check,
};
