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
#include "value.h"

#define MAX_DEPTH 100

const char sl_lua_null = 'N';

/* ---- records to Lua ------------------------------------------------------------------------
 *
 * Map keys repeat record after record, and lua_pushlstring hashes and interns each one. A state's
 * key cache (sl_lua_keys, one per sl_lua) remembers, per slot, an inline key (<= 13 bytes) in full
 * and keeps the Lua string made for it in a table (the cache table, at stack index kt while a
 * record is pushed); a key found in its slot is pushed from there. A slot holds one key: a hit
 * needs the whole key (length and bytes) to be equal, so a cached string is always the key's own;
 * a miss replaces the slot. Longer keys are pushed as before. */

/* The inline key k as two words: type, slen and its bytes, the rest zero. */
static inline void key_words(const sl_value *k, uint64_t w[2]) {
  w[0] = w[1] = 0;
  memcpy(w, k, offsetof(sl_value, sbuf) + k->slen - 1u);
}

static inline unsigned key_slot(const uint64_t w[2]) {
  uint64_t h = (w[0] ^ (w[1] * 0xC2B2AE3D27D4EB4Full)) * 0x9E3779B97F4A7C15ull;
  return (unsigned)(h >> 40) & (SL_LUA_KEY_SLOTS - 1);
}

static void push_key(lua_State *L, sl_lua_keys *kc, int kt, const sl_value *k) {
  if (!kc || !k->slen) {
    size_t n;
    const char *p = sl__str_view(k, &n);
    lua_pushlstring(L, p, n);
    return;
  }
  uint64_t w[2];
  key_words(k, w);
  unsigned s = key_slot(w);
  if (kc->key[s][0] == w[0] && kc->key[s][1] == w[1]) {
    lua_rawgeti(L, kt, (lua_Integer)s + 1);
    return;
  }
  lua_pushlstring(L, (const char *)k + offsetof(sl_value, sbuf), k->slen - 1u);
  lua_pushvalue(L, -1);
  lua_rawseti(L, kt, (lua_Integer)s + 1); /* the table has its slots preallocated: no allocation */
  kc->key[s][0] = w[0];
  kc->key[s][1] = w[1];
}

static void push_value(lua_State *L, sl_lua_keys *kc, int kt, const sl_value *v) {
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
      else push_value(L, kc, kt, item);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    if (n == 0) sl_lua_mark_array(L, -1);
    return;
  }
  case SL_TMAP: {
    size_t n = sl_map_len(v);
    luaL_checkstack(L, 4, "record nested too deeply");
    lua_createtable(L, 0, n < INT32_MAX ? (int)n : 0);
    const sl__map *m = (const sl__map *)v->u.o;
    for (size_t i = 0; i < n; i++) {
      push_key(L, kc, kt, &m->ent[i].key);
      push_value(L, kc, kt, &m->ent[i].val);
      lua_rawset(L, -3);
    }
    return;
  }
  }
  lua_pushnil(L);
}

void sl_lua_push(lua_State *L, const sl_value *v) { push_value(L, NULL, 0, v); }

void sl_lua_push_rec(sl_lua *l, lua_State *L, const sl_value *v) {
  if (v->type != SL_TMAP && v->type != SL_TARRAY) {
    push_value(L, NULL, 0, v);
    return;
  }
  sl_lua_keys *kc = sl__lua_keys(l);
  luaL_checkstack(L, 2, "pushing a record");
  if (kc->ref == LUA_NOREF) {
    lua_createtable(L, SL_LUA_KEY_SLOTS, 0);
    for (int s = 1; s <= SL_LUA_KEY_SLOTS; s++) { /* fill the array part so a store never allocates */
      lua_pushboolean(L, 0);
      lua_rawseti(L, -2, s);
    }
    kc->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, kc->ref);
  int kt = lua_gettop(L);
  push_value(L, kc, kt, v);
  lua_remove(L, kt);
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

/* ---- Lua to records, the fast path ---------------------------------------------------------
 *
 * The conversion above is the reference: it classifies a table's keys in one traversal, then
 * converts in a second, sorts with qsort and inserts key by key. The fast path below does one
 * traversal per table, sorts small maps by insertion and builds each map at its exact size. It
 * takes a hint: the record the function was called with (or the part of it at the same place).
 * A string equal to the hint's is a new reference to it, not a copy; a table whose entries all
 * come out as the hint's, with as many entries, becomes a reference to the hint itself when the
 * hint's keys are in the order the conversion would give them (sorted, as the reference sorts).
 * Equality is checked on the content (integers by value, floats bit for bit, strings byte for
 * byte), so a hint never changes the result: it only saves building what did not change, and a
 * wrong or unrelated hint just matches nothing.
 *
 * Anything unusual makes the fast path give up (FAST_NO) and the whole value is converted again
 * by the reference path, so errors and their messages stay those of the reference: keys that
 * are neither all strings nor exactly 1..n, holes, cycles, depth, functions, userdata, no memory.
 * A table with a metatable (the sluice.array marker) is converted by the reference path. */

#define FAST_NO 1

typedef struct fent {
  const char *k;         /* the key's bytes (a Lua string, kept alive by the table) */
  size_t klen;
  const sl_value *hkey;  /* the hint's equal key, or NULL */
  sl_value v;            /* the converted value (owned) */
} fent;

static int fast_value(conv *cv, int idx, const sl_value *hint, sl_value *out, bool *same);

static inline int cmp_keys(const char *a, size_t an, const char *b, size_t bn) {
  int c = memcmp(a, b, an < bn ? an : bn);
  return c ? c : (an > bn) - (an < bn);
}

static int cmp_fent(const void *a, const void *b) {
  const fent *x = a, *y = b;
  return cmp_keys(x->k, x->klen, y->k, y->klen);
}

/* Sorted bytewise like cmp_kv: insertion sort for the usual few keys, qsort beyond. */
static void sort_fents(fent *e, size_t n) {
  if (n > 24) {
    qsort(e, n, sizeof *e, cmp_fent);
    return;
  }
  for (size_t i = 1; i < n; i++) {
    fent x = e[i];
    size_t j = i;
    while (j > 0 && cmp_fent(&e[j - 1], &x) > 0) {
      e[j] = e[j - 1];
      j--;
    }
    e[j] = x;
  }
}

/* The hint's keys are strictly increasing (the order a conversion gives). */
static bool keys_sorted(const sl__map *m) {
  for (size_t i = 1; i < m->len; i++) {
    size_t an, bn;
    const char *a = sl__str_view(&m->ent[i - 1].key, &an), *b = sl__str_view(&m->ent[i].key, &bn);
    if (cmp_keys(a, an, b, bn) >= 0) return false;
  }
  return true;
}

/* A table whose first key (a string) and value are on the stack, above the key lua_next gave. */
static int fast_map(conv *cv, int idx, const sl_value *hint, sl_value *out, bool *same) {
  lua_State *L = cv->L;
  const sl__map *hm = hint && hint->type == SL_TMAP ? (const sl__map *)hint->u.o : NULL;
  fent small[16], *ents = small;
  size_t n = 0, cap = sizeof small / sizeof small[0];
  bool all_same = hm != NULL;
  int rc = 0;
  do {
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 2);
      rc = FAST_NO;
      break;
    }
    if (n == cap) {
      cap *= 2;
      fent *ne = sl__xmalloc(cap * sizeof *ne);
      memcpy(ne, ents, n * sizeof *ents);
      if (ents != small) sl__free(ents);
      ents = ne;
    }
    fent *e = &ents[n];
    e->k = lua_tolstring(L, -2, &e->klen);
    e->hkey = NULL;
    const sl_value *hv = NULL;
    if (hm) {
      size_t pos = sl__map_find(hm, e->k, e->klen);
      if (pos != SL__MAP_NOTFOUND) {
        e->hkey = &hm->ent[pos].key;
        hv = &hm->ent[pos].val;
      }
    }
    bool s = false;
    rc = fast_value(cv, lua_gettop(L), hv, &e->v, &s);
    lua_pop(L, 1);
    if (rc) {
      lua_pop(L, 1);
      break;
    }
    n++;
    all_same = all_same && s;
  } while (lua_next(L, idx));
  if (rc == 0 && all_same && n == hm->len && keys_sorted(hm)) {
    *out = sl_value_ref(hint); /* the converted values (references to the hint's) are dropped */
    *same = true;
  } else if (rc == 0) {
    sort_fents(ents, n);
    sl__map_entry me[16], *m = n <= 16 ? me : sl__xmalloc(n * sizeof *m);
    size_t made = 0;
    for (; made < n; made++) {
      fent *e = &ents[made];
      if (e->hkey) m[made].key = sl_value_ref(e->hkey);
      else if (sl_str_try(e->k, e->klen, &m[made].key) != 0) break;
      m[made].val = e->v;
    }
    if (made == n) {
      *out = sl__map_from(m, n);
      n = 0; /* the values are the map's now */
    } else { /* no memory for a key: the reference path says so */
      for (size_t i = 0; i < made; i++) sl_value_free(m[i].key);
      rc = FAST_NO;
    }
    if (m != me) sl__free(m);
  }
  for (size_t i = 0; i < n; i++) sl_value_free(ents[i].v);
  if (ents != small) sl__free(ents);
  return rc;
}

/* One item of an array being converted: its key (1..n) and value. */
typedef struct aent {
  lua_Integer k;
  sl_value v;
} aent;

/* A table whose first key (a number) and value are on the stack. It is an array when its keys
 * are exactly 1..n, n being lua_rawlen (any other case goes to the reference path). The items are
 * gathered as they come (nothing is allocated by n, which a sparse table can make huge), then put
 * in their places: n distinct keys in 1..n are exactly 1..n. */
static int fast_array(conv *cv, int idx, const sl_value *hint, sl_value *out, bool *same) {
  lua_State *L = cv->L;
  const sl__array *ha = hint && hint->type == SL_TARRAY ? (const sl__array *)hint->u.o : NULL;
  size_t n = lua_rawlen(L, idx), got = 0, cap = 16;
  aent small[16], *ents = small;
  bool all_same = ha != NULL && ha->len == n;
  int rc = 0;
  do {
    lua_Integer k;
    if (!lua_isinteger(L, -2) || (k = lua_tointeger(L, -2)) < 1 || (lua_Unsigned)k > n || got == n) {
      lua_pop(L, 2);
      rc = FAST_NO;
      break;
    }
    if (got == cap) {
      cap *= 2;
      aent *ne = sl__xmalloc(cap * sizeof *ne);
      memcpy(ne, ents, got * sizeof *ents);
      if (ents != small) sl__free(ents);
      ents = ne;
    }
    bool s = false;
    const sl_value *hv = ha && (size_t)k <= ha->len ? &ha->items[k - 1] : NULL;
    ents[got].k = k;
    rc = fast_value(cv, lua_gettop(L), hv, &ents[got].v, &s);
    lua_pop(L, 1);
    if (rc) {
      lua_pop(L, 1);
      break;
    }
    got++;
    all_same = all_same && s;
  } while (lua_next(L, idx));
  if (rc == 0 && got != n) rc = FAST_NO; /* holes */
  if (rc == 0 && all_same) {
    *out = sl_value_ref(hint); /* the converted items (references to the hint's) are dropped */
    *same = true;
  } else if (rc == 0) {
    sl_value a = sl_array(n);
    sl__array *o = (sl__array *)a.u.o;
    for (size_t i = 0; i < n; i++) o->items[ents[i].k - 1] = ents[i].v;
    o->len = n;
    *out = a;
    got = 0; /* the items are the array's now */
  }
  for (size_t i = 0; i < got; i++) sl_value_free(ents[i].v);
  if (ents != small) sl__free(ents);
  return rc;
}

static int fast_table(conv *cv, int idx, const sl_value *hint, sl_value *out, bool *same) {
  lua_State *L = cv->L;
  const void *self = lua_topointer(L, idx);
  for (int i = 0; i < cv->depth; i++)
    if (cv->path[i] == self) return FAST_NO;
  if (cv->depth == MAX_DEPTH || !lua_checkstack(L, 6)) return FAST_NO;
  if (lua_getmetatable(L, idx)) { /* the sluice.array marker (or another): the reference path */
    lua_pop(L, 1);
    *same = false;
    return table_to_value(cv, idx, out) ? FAST_NO : 0;
  }
  cv->path[cv->depth++] = self;
  int rc;
  lua_pushnil(L);
  if (!lua_next(L, idx)) {
    *out = sl_map(0); /* an empty unmarked table is an empty map */
    rc = 0;
  } else if (lua_type(L, -2) == LUA_TSTRING) {
    rc = fast_map(cv, idx, hint, out, same);
  } else if (lua_type(L, -2) == LUA_TNUMBER) {
    rc = fast_array(cv, idx, hint, out, same);
  } else {
    lua_pop(L, 2);
    rc = FAST_NO;
  }
  cv->depth--;
  return rc;
}

/* Converts the value at idx (absolute) with the hint (or NULL) into *out; *same tells whether
 * *out is a reference to the hint. Returns 0 or FAST_NO (nothing left owned). */
static int fast_value(conv *cv, int idx, const sl_value *hint, sl_value *out, bool *same) {
  lua_State *L = cv->L;
  *same = false;
  switch (lua_type(L, idx)) {
  case LUA_TBOOLEAN: {
    bool b = lua_toboolean(L, idx);
    *out = sl_bool(b);
    *same = hint && hint->type == SL_TBOOL && hint->u.b == b;
    return 0;
  }
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      int64_t i = (int64_t)lua_tointeger(L, idx);
      *out = sl_int(i);
      *same = hint && hint->type == SL_TINT && hint->u.i == i;
    } else {
      double d = (double)lua_tonumber(L, idx);
      *out = sl_double(d);
      *same = hint && hint->type == SL_TDOUBLE && memcmp(&hint->u.d, &d, sizeof d) == 0; /* -0.0 is not 0.0 */
    }
    return 0;
  case LUA_TSTRING: {
    size_t n, hn;
    const char *s = lua_tolstring(L, idx, &n);
    if (hint && hint->type == SL_TSTR) {
      const char *h = sl__str_view(hint, &hn);
      if (hn == n && memcmp(h, s, n) == 0) {
        *out = sl_value_ref(hint);
        *same = true;
        return 0;
      }
    }
    return sl_str_try(s, n, out) == 0 ? 0 : FAST_NO;
  }
  case LUA_TTABLE: return fast_table(cv, idx, hint, out, same);
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) != SL_LUA_NULL) return FAST_NO;
    *out = sl_nil();
    *same = hint && hint->type == SL_TNIL;
    return 0;
  default: return FAST_NO; /* nil never comes from lua_next; the top-level nil is handled below */
  }
}

int sl_lua_to_value_hint(lua_State *L, int idx, const sl_value *hint, sl_value *out, char *msg, size_t msglen) {
  conv cv = {.L = L, .msg = msg, .msglen = msglen};
  bool same;
  *out = sl_nil();
  idx = lua_absindex(L, idx);
  if (lua_isnil(L, idx)) return 0;
  if (fast_value(&cv, idx, hint, out, &same) == 0) return 0;
  cv.depth = 0;
  *out = sl_nil();
  return to_value(&cv, idx, out);
}

int sl_lua_to_value(lua_State *L, int idx, sl_value *out, char *msg, size_t msglen) {
  return sl_lua_to_value_hint(L, idx, NULL, out, msg, msglen);
}
