/*
 * window — tumbling windows by count or by time, each closed with one record of aggregates
 * (count, sum, min, max, mean over a field) and/or a Lua reducer's accumulator.
 *
 * A window opens at its first record. `count: N` closes it at its N-th record; `time: D` closes
 * it at the end of its slot: slots are [k*D, (k+1)*D) of sluice.now() (Unix time on the real
 * clock, 0 at start on the virtual one), a timer per open window fires at the slot's end. With
 * both, whichever comes first; with neither, one window holds the whole stream. What is open
 * at the end of the stream closes then. Empty windows emit nothing.
 *
 * Per key: with partition_by the engine runs one instance of this stage per key
 * (vm/partition.c); the output then starts with `key`. The output record is a map: key, then
 * start and end (time windows: the slot, in seconds), then the aggregates in the order given,
 * then `value` (the reducer's accumulator).
 *
 * The reducer runs in the task's Lua state, one call per record, and must not wait: its
 * accumulator stays a Lua value (a registry reference) until the window closes.
 */
#include <lauxlib.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "lua.h"

#define MAX_AGGS 64

enum { AGG_COUNT, AGG_SUM, AGG_MIN, AGG_MAX, AGG_MEAN };
static const char *const agg_names[] = {"count", "sum", "min", "max", "mean"};

typedef struct agg {
  const char *name;  /* output field (points into the option) */
  int op;            /* AGG_* */
  const char *field; /* input field, or NULL (count) */
  /* the open window's state */
  int64_t n;         /* values seen */
  int64_t isum;      /* sum while every value is an integer and it fits */
  double dsum;
  bool is_double;    /* a double (or an overflow) was seen: dsum holds the sum */
  sl_value best;     /* min / max so far (nil: none) */
} agg;

typedef struct window {
  int64_t count;      /* option: records per window (0: no limit) */
  int64_t time;       /* option: ns per slot (0: no time windows) */
  sl_value aggregates;/* option: name -> op spec, ordered */
  char *fn;           /* option: Lua reducer (acc, r) -> acc */
  sl_value init;      /* option: the reducer's first accumulator */
  sl_stage *st;
  agg aggs[MAX_AGGS];
  size_t naggs;
  int64_t n;          /* records in the open window (0: none open) */
  double start, end;  /* its slot (time windows), seconds */
  uint64_t gen;       /* number of the open window (timer tokens) */
  int64_t timer;      /* its timer, or 0 */
  sl_lua *lua;        /* the task's state, once the reducer is loaded */
  int ref;            /* the reducer */
  int acc;            /* registry ref of the accumulator (LUA_NOREF: init) */
} window;

static const sl_option options[] = {
    {SL_OPT_INT, "count", "0", offsetof(window, count), "records per window: it closes at its count-th record (0: no limit)", NULL, 0},
    {SL_OPT_DURATION, "time", "0", offsetof(window, time), "tumbling time windows of this length, aligned to multiples of it on sluice.now() (0: none)", NULL, 0},
    {SL_OPT_VALUE, "aggregates", NULL, offsetof(window, aggregates),
     "output field -> count, or {sum|min|max|mean|count: <field of r>} (a.b: nested; .: r itself), in order (a map, or a list of one-key maps)", NULL, 0},
    {SL_OPT_STRING, "fn", NULL, offsetof(window, fn), "Lua reducer (acc, r) returning the new accumulator, emitted as `value`", NULL, SL_OPT_LUA},
    {SL_OPT_VALUE, "init", NULL, offsetof(window, init), "the reducer's accumulator at the start of each window (default nil)", NULL, 0},
    SL_OPTIONS_END,
};

/* One `name: spec` entry of aggregates. */
static int add_agg(window *w, const sl_value *k, const sl_value *spec, sl_error_t *err) {
  if (w->naggs == MAX_AGGS) return sl_error_set(err, SL_ECONFIG, NULL, "at most %d aggregates", MAX_AGGS);
  agg *a = &w->aggs[w->naggs];
  memset(a, 0, sizeof *a);
  a->name = sl_str_data(k);
  const char *op = NULL;
  if (sl_typeof(spec) == SL_TSTR) {
    op = sl_str_data(spec);
  } else if (sl_typeof(spec) == SL_TMAP && sl_map_len(spec) == 1 && sl_typeof(sl_map_val(spec, 0)) == SL_TSTR) {
    op = sl_str_data(sl_map_key(spec, 0));
    a->field = sl_str_data(sl_map_val(spec, 0));
  } else {
    return sl_error_set(err, SL_ECONFIG, NULL, "aggregate '%s': write count, or one of {sum|min|max|mean|count: <field>}", a->name);
  }
  a->op = -1;
  for (int i = 0; i < 5; i++)
    if (strcmp(op, agg_names[i]) == 0) a->op = i;
  if (a->op < 0) {
    const char *dym = sl_did_you_mean(op, agg_names, 5);
    return sl_error_set(err, SL_ECONFIG, NULL, "aggregate '%s': unknown aggregate '%s'%s%s%s (count, sum, min, max, mean)", a->name, op,
                        dym ? ": did you mean '" : "", dym ? dym : "", dym ? "'?" : "");
  }
  if (a->op != AGG_COUNT && !a->field)
    return sl_error_set(err, SL_ECONFIG, NULL, "aggregate '%s': %s needs a field, as {%s: <field of r>}", a->name, op, op);
  if (strcmp(a->name, "key") == 0 || strcmp(a->name, "start") == 0 || strcmp(a->name, "end") == 0 || strcmp(a->name, "value") == 0)
    return sl_error_set(err, SL_ECONFIG, NULL, "aggregate '%s': the name is taken by the window's own fields (key, start, end, value)", a->name);
  w->naggs++;
  return 0;
}

static int parse_options(window *w, sl_error_t *err) {
  w->naggs = 0;
  if (w->count < 0) return sl_error_set(err, SL_ECONFIG, NULL, "count must be 0 or more (got %lld)", (long long)w->count);
  if (w->time < 0) return sl_error_set(err, SL_ECONFIG, NULL, "time must not be negative");
  const sl_value *o = &w->aggregates;
  int rc = 0;
  if (sl_typeof(o) == SL_TMAP) {
    for (size_t i = 0; i < sl_map_len(o) && rc == 0; i++) rc = add_agg(w, sl_map_key(o, i), sl_map_val(o, i), err);
  } else if (sl_typeof(o) == SL_TARRAY) {
    for (size_t i = 0; i < sl_array_len(o) && rc == 0; i++) {
      const sl_value *m = sl_array_get(o, i);
      if (sl_typeof(m) != SL_TMAP || sl_map_len(m) != 1)
        return sl_error_set(err, SL_ECONFIG, NULL, "aggregates[%zu] must be a map with one key, { name: aggregate }", i + 1);
      rc = add_agg(w, sl_map_key(m, 0), sl_map_val(m, 0), err);
    }
  } else if (sl_typeof(o) != SL_TNIL) {
    return sl_error_set(err, SL_ECONFIG, NULL, "aggregates must be a map of output field -> aggregate (or a list of one-key maps)");
  }
  if (rc) return rc;
  if (w->naggs == 0 && !w->fn) return sl_error_set(err, SL_ECONFIG, NULL, "give aggregates (such as {n: count}), fn (a Lua reducer), or both");
  return 0;
}

static int init(void *c, sl_stage *st, sl_error_t *err) {
  window *w = c;
  w->st = st;
  w->ref = w->acc = LUA_NOREF;
  return parse_options(w, err);
}

static int check(void *c, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  window *w = c;
  sl_error_t e2;
  sl_error_init(&e2);
  if (parse_options(w, &e2) != 0) return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': %s", where, stage, e2.msg);
  return w->fn ? sl_lua_check_fn(p, w->fn, where, stage, err) : 0;
}

static bool is_number(const sl_value *v) { return sl_typeof(v) == SL_TINT || sl_typeof(v) == SL_TDOUBLE; }
static double num(const sl_value *v) { return sl_typeof(v) == SL_TINT ? (double)v->u.i : v->u.d; }

/* The field of r an aggregate reads ("a.b" goes into maps; "." is r itself), or NULL. */
static const sl_value *field_of(const sl_value *r, const char *path) {
  char part[256];
  if (strcmp(path, ".") == 0) return r;
  while (r && sl_typeof(r) == SL_TMAP) {
    size_t n = strcspn(path, ".");
    if (n >= sizeof part) return NULL;
    memcpy(part, path, n);
    part[n] = 0;
    r = sl_map_getc(r, part);
    if (!path[n]) return r;
    path += n + 1;
  }
  return NULL;
}

/* Adds record r to the aggregates. A field that is there but is no number fails the record. */
static int add_record(window *w, const sl_value *r, char *msg, size_t msglen) {
  for (size_t i = 0; i < w->naggs; i++) { /* check first: a failed record counts nowhere */
    const agg *a = &w->aggs[i];
    if (!a->field || a->op == AGG_COUNT) continue;
    const sl_value *v = field_of(r, a->field);
    if (v && sl_typeof(v) != SL_TNIL && !is_number(v)) {
      snprintf(msg, msglen, "aggregate '%s': field '%s' is %s, not a number", a->name, a->field, sl_type_name(sl_typeof(v)));
      return -1;
    }
  }
  for (size_t i = 0; i < w->naggs; i++) {
    agg *a = &w->aggs[i];
    const sl_value *v = a->field ? field_of(r, a->field) : NULL;
    if (a->op == AGG_COUNT) {
      if (!a->field || (v && sl_typeof(v) != SL_TNIL)) a->n++;
      continue;
    }
    if (!v || !is_number(v)) continue; /* missing: not counted */
    a->n++;
    if (a->op == AGG_SUM || a->op == AGG_MEAN) {
      if (!a->is_double && sl_typeof(v) == SL_TINT && !__builtin_add_overflow(a->isum, v->u.i, &a->isum)) continue;
      if (!a->is_double) a->dsum = (double)a->isum;
      a->is_double = true;
      a->dsum += num(v);
    } else if (sl_typeof(&a->best) == SL_TNIL || (a->op == AGG_MIN ? num(v) < num(&a->best) : num(v) > num(&a->best))) {
      a->best = *v; /* a number: no reference to take */
    }
  }
  return 0;
}

/* Runs the reducer on record r: acc = fn(acc, r). */
static int reduce(window *w, const sl_value *r, char **msg) {
  if (!w->lua) {
    sl_error_t err;
    sl_error_init(&err);
    sl_lua *l = sl_lua_get(w->st, &err);
    if (!l || sl_lua_fn(l, w->fn, sl_lua_where(w->st), sl_stage_name(w->st), &w->ref, &err) != 0) {
      sl_stage_fail(w->st, "%s", err.msg);
      return SL_EFAILED;
    }
    w->lua = l;
  }
  lua_State *L = sl_lua_L(w->lua);
  sl_lua_call *c = sl_lua_call_new(w->lua, w->st, w->ref);
  if (w->acc == LUA_NOREF) {
    sl_lua_push(c->co, &w->init);
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->acc);
    lua_xmove(L, c->co, 1);
  }
  sl_lua_push(c->co, r);
  int rc = sl_lua_resume(c, 2, msg);
  if (rc == SL_LUA_ERROR) return -1;
  if (rc == SL_LUA_PARKED) {
    sl_lua_call_abandon(c);
    *msg = sl__xstrdup("the reducer must not wait (sluice.sleep)");
    return -1;
  }
  if (c->nres < 1) lua_pushnil(c->co);
  lua_settop(c->co, 1);
  lua_xmove(c->co, L, 1);
  if (w->acc == LUA_NOREF) w->acc = luaL_ref(L, LUA_REGISTRYINDEX);
  else lua_rawseti(L, LUA_REGISTRYINDEX, w->acc);
  sl_lua_call_free(c);
  return 0;
}

/* Emits the open window (if any) and starts afresh. */
static int close_window(window *w, sl_emitter *em) {
  if (w->n == 0) return 0;
  if (w->timer) sl_stage_timer_cancel(w->st, w->timer);
  w->timer = 0;
  w->gen++;
  sl_value out = sl_map(w->naggs + 4);
  const sl_value *key = sl_stage_key(w->st);
  if (key) sl_map_setc(&out, "key", sl_value_ref(key));
  if (w->time) {
    sl_map_setc(&out, "start", sl_double(w->start));
    sl_map_setc(&out, "end", sl_double(w->end));
  }
  for (size_t i = 0; i < w->naggs; i++) {
    agg *a = &w->aggs[i];
    sl_value v = sl_nil();
    switch (a->op) {
    case AGG_COUNT: v = sl_int(a->n); break;
    case AGG_SUM: v = a->is_double ? sl_double(a->dsum) : sl_int(a->isum); break;
    case AGG_MEAN: v = a->n ? sl_double((a->is_double ? a->dsum : (double)a->isum) / (double)a->n) : sl_nil(); break;
    default: v = a->best; break;
    }
    sl_map_setc(&out, a->name, v);
    a->n = a->isum = 0;
    a->dsum = 0;
    a->is_double = false;
    a->best = sl_nil();
  }
  int rc = 0;
  if (w->fn) {
    sl_value acc = sl_nil();
    if (w->acc != LUA_NOREF) {
      lua_State *L = sl_lua_L(w->lua);
      char msg[256];
      lua_rawgeti(L, LUA_REGISTRYINDEX, w->acc);
      rc = sl_lua_to_value(L, -1, &acc, msg, sizeof msg);
      lua_pop(L, 1);
      luaL_unref(L, LUA_REGISTRYINDEX, w->acc);
      w->acc = LUA_NOREF;
      if (rc) {
        sl_value_free(out);
        w->n = 0;
        return sl_stage_fail(w->st, "the accumulator cannot become a record: %s", msg);
      }
    } else {
      acc = sl_value_ref(&w->init);
    }
    sl_map_setc(&out, "value", acc);
  }
  w->n = 0;
  return sl_emit(em, SL_NO_ORIGIN, out);
}

static int process(void *c, sl_batch *in, sl_emitter *em) {
  window *w = c;
  double now = w->time ? sl_stage_wallclock(w->st) : 0;
  for (uint32_t i = 0; i < in->len; i++) {
    if (w->n && w->time && now >= w->end) { /* its timer has not come yet: the slot is over */
      int rc = close_window(w, em);
      if (rc) return rc;
    }
    char buf[256], *msg = NULL;
    if (add_record(w, &in->recs[i], buf, sizeof buf) != 0) {
      sl_emit_error(em, i, "window: %s", buf);
      continue;
    }
    if (w->fn) {
      int rc = reduce(w, &in->recs[i], &msg);
      if (rc == SL_EFAILED) return rc;
      if (rc) {
        sl_emit_error(em, i, "window fn: %s", msg);
        sl__free(msg);
        continue;
      }
    }
    if (w->n++ == 0 && w->time) { /* a new window: its slot, and a timer at the slot's end */
      double secs = (double)w->time / 1e9;
      w->start = floor(now / secs) * secs;
      w->end = w->start + secs;
      int64_t deadline = sl_stage_now(w->st) + (int64_t)llround((w->end - now) * 1e9);
      w->timer = sl_stage_timer(w->st, deadline, w->gen);
      if (w->timer < 0) return sl_stage_fail(w->st, "cannot arm a timer");
    }
    if (w->count && w->n >= w->count) {
      int rc = close_window(w, em);
      if (rc) return rc;
    }
  }
  return 0;
}

static int event(void *c, uint64_t token, sl_emitter *em) {
  window *w = c;
  if (token != w->gen) return 0; /* the window it was armed for already closed */
  w->timer = 0;
  return close_window(w, em);
}

static int flush(void *c, sl_emitter *em) { return close_window(c, em); }

static void destroy(void *c) {
  window *w = c;
  if (w->lua && w->acc != LUA_NOREF) luaL_unref(sl_lua_L(w->lua), LUA_REGISTRYINDEX, w->acc);
}

const sl_stage_kind sl_stage_window = {
    .abi = SL_STAGE_ABI,
    .name = "window",
    .doc = "tumbling windows by count or time (per key with partition_by), each closed with aggregates (count, sum, min, max, mean) and/or a Lua reducer's value",
    .options = options,
    .ctx_size = sizeof(window),
    .init = init,
    .process = process,
    .flush = flush,
    .destroy = destroy,
    .event = event,
    .check = check,
};
