/*
 * lua_value.c — records to Lua values and back (DESIGN section 1). The hot path of every Lua
 * pipeline: each Lua call converts its record in and its result out.
 *
 * Records -> Lua: nil, booleans, integers (Lua integers), doubles (Lua floats), strings (Lua
 * strings, binary-safe), arrays (sequences; an empty one carries the sluice.array marker so it
 * comes back as an array; a null item is sluice.null, so the items keep their places), maps
 * (tables with string keys; a null value is absent, as nil is in Lua).
 *
 * Lua -> records: sluice.null is null (in an array or as a map value); a table is an array
 * when it carries the marker or its keys are exactly 1..n;
 * a map when every key is a string (an empty unmarked table is an empty map). Map keys come out
 * sorted bytewise: a Lua table has no order, and sorted keys make output deterministic (as
 * Vector's are). Functions, userdata, threads, tables mixing key kinds, arrays with holes and
 * cycles are errors whose message names the problem.
 */
#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "lua.h"

#define MAX_DEPTH 100

const char sl_lua_null = 'N';

void sl_lua_push(lua_State *L, const sl_value *v) {
  switch (v->type) {
  case SL_TNIL: lua_pushnil(L); return;
  case SL_TBOOL: lua_pushboolean(L, v->u.b); return;
  case SL_TINT: lua_pushinteger(L, (lua_Integer)v->u.i); return;
  case SL_TDOUBLE: lua_pushnumber(L, v->u.d); return;
  case SL_TSTR: lua_pushlstring(L, sl_str_data(v), sl_str_len(v)); return;
  case SL_TARRAY: {
    size_t n = sl_array_len(v);
    luaL_checkstack(L, 4, "record nested too deeply");
    lua_createtable(L, n < INT32_MAX ? (int)n : 0, 0);
    for (size_t i = 0; i < n; i++) {
      const sl_value *item = sl_array_get(v, i);
      if (item->type == SL_TNIL) lua_pushlightuserdata(L, SL_LUA_NULL);
      else sl_lua_push(L, item);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    if (n == 0) sl_lua_mark_array(L, -1);
    return;
  }
  case SL_TMAP: {
    size_t n = sl_map_len(v);
    luaL_checkstack(L, 4, "record nested too deeply");
    lua_createtable(L, 0, n < INT32_MAX ? (int)n : 0);
    for (size_t i = 0; i < n; i++) {
      const sl_value *k = sl_map_key(v, i);
      lua_pushlstring(L, sl_str_data(k), sl_str_len(k));
      sl_lua_push(L, sl_map_val(v, i));
      lua_rawset(L, -3);
    }
    return;
  }
  }
  lua_pushnil(L);
}

typedef struct conv {
  lua_State *L;
  const void *path[MAX_DEPTH]; /* tables being converted (cycle check) */
  int depth;
  char *msg;
  size_t msglen;
} conv;

typedef struct kv {
  const char *k;
  size_t klen;
  sl_value v;
} kv;

static int cmp_kv(const void *a, const void *b) {
  const kv *x = a, *y = b;
  size_t n = x->klen < y->klen ? x->klen : y->klen;
  int c = memcmp(x->k, y->k, n);
  return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

static int to_value(conv *cv, int idx, sl_value *out);

static int fail(conv *cv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(conv *cv, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cv->msg, cv->msglen, fmt, ap);
  va_end(ap);
  return SL_EDATA;
}

static int table_to_value(conv *cv, int idx, sl_value *out) {
  lua_State *L = cv->L;
  const void *self = lua_topointer(L, idx);
  for (int i = 0; i < cv->depth; i++)
    if (cv->path[i] == self) return fail(cv, "%s", "a table contains itself (a cycle): records must be trees");
  if (cv->depth == MAX_DEPTH) return fail(cv, "%s", "tables nested more than 100 levels deep");
  if (!lua_checkstack(L, 6)) return fail(cv, "%s", "tables nested too deeply");
  cv->path[cv->depth++] = self;
  int rc = 0;
  bool marked = sl__lua_is_array_mt(L, idx);
  /* classify the keys */
  size_t nstr = 0, nint = 0, other = 0;
  lua_Integer maxi = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    int kt = lua_type(L, -1);
    if (kt == LUA_TSTRING) nstr++;
    else if (kt == LUA_TNUMBER && lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
      nint++;
      if (lua_tointeger(L, -1) > maxi) maxi = lua_tointeger(L, -1);
    } else other++;
  }
  if (other || (nstr && nint) || (marked && nstr)) {
    rc = fail(cv, "%s", "a table with keys other than strings, or mixing strings and integers, cannot become a record (use string keys for a map, 1..n for an array)");
  } else if (marked || (nint && (size_t)maxi == nint)) {
    size_t n = marked ? lua_rawlen(L, idx) : nint;
    sl_value a = sl_array(n);
    for (size_t i = 1; i <= n && rc == 0; i++) {
      lua_rawgeti(L, idx, (lua_Integer)i);
      sl_value item;
      rc = to_value(cv, lua_gettop(L), &item);
      lua_pop(L, 1);
      if (rc == 0) sl_array_push(&a, item);
    }
    if (rc) sl_value_free(a);
    else *out = a;
  } else if (nint) {
    rc = fail(cv, "%s", "an array with holes (nil items) cannot become a record: keep 1..n filled (sluice.null stands for a null item)");
  } else {
    kv small[16];
    kv *ents = nstr <= 16 ? small : sl__xmalloc(nstr * sizeof *ents);
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      if (n < nstr && rc == 0) {
        ents[n].k = lua_tolstring(L, -2, &ents[n].klen); /* a string key: no conversion in place */
        rc = to_value(cv, lua_gettop(L), &ents[n].v);
        if (rc == 0) n++;
      }
      lua_pop(L, 1);
    }
    if (rc == 0) {
      if (n > 1) qsort(ents, n, sizeof *ents, cmp_kv);
      sl_value m = sl_map(n);
      for (size_t i = 0; i < n; i++) sl_map_set(&m, ents[i].k, ents[i].klen, ents[i].v);
      *out = m;
    } else {
      for (size_t i = 0; i < n; i++) sl_value_free(ents[i].v);
    }
    if (ents != small) sl__free(ents);
  }
  cv->depth--;
  return rc;
}

static int to_value(conv *cv, int idx, sl_value *out) {
  lua_State *L = cv->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: *out = sl_nil(); return 0;
  case LUA_TBOOLEAN: *out = sl_bool(lua_toboolean(L, idx)); return 0;
  case LUA_TNUMBER:
    *out = lua_isinteger(L, idx) ? sl_int((int64_t)lua_tointeger(L, idx)) : sl_double((double)lua_tonumber(L, idx));
    return 0;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    return sl_str_try(s, n, out) == 0 ? 0 : fail(cv, "%s", "out of memory");
  }
  case LUA_TTABLE: return table_to_value(cv, idx, out);
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == SL_LUA_NULL) {
      *out = sl_nil();
      return 0;
    }
    __attribute__((fallthrough));
  default: return fail(cv, "a Lua %s cannot become a record (records hold nil, booleans, numbers, strings and tables)", luaL_typename(L, idx));
  }
}

int sl_lua_to_value(lua_State *L, int idx, sl_value *out, char *msg, size_t msglen) {
  conv cv = {.L = L, .msg = msg, .msglen = msglen};
  *out = sl_nil();
  return to_value(&cv, lua_absindex(L, idx), out);
}
