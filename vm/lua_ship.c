/*
 * lua_ship.c — copying Lua functions, with their upvalues, from one state to another.
 *
 * The Lua front end runs a pipeline script in its own state; the stage functions it passes must
 * run in every task's state. A function is written as its bytecode (lua_dump, with debug info so
 * tracebacks keep their lines) followed by its upvalues, recursively: numbers, strings,
 * booleans, tables (with their metatables), other Lua functions, and references to things the
 * other state has by name: its global table (the _ENV upvalue), and every module reachable
 * through package.loaded (standard libraries, modules loaded with require, and the functions and
 * tables in them: `local insert = table.insert` ships as "table.insert", and a required module
 * is required again in the other state). Repeated tables and functions keep their identity
 * within one blob; shared upvalues between two shipped closures become separate copies.
 *
 * What cannot cross: userdata (open files, sockets, C objects), coroutines, and C functions that
 * no module exports. The error names the function (file:line) and the path to the value.
 *
 * Format: SL_LUA_BLOB_MAGIC, then one value: tag byte and payload. Integers are little-endian,
 * lengths are LEB128.
 */
#include <lauxlib.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "lua.h"

enum { T_NIL = 'n', T_FALSE = 'f', T_TRUE = 't', T_INT = 'i', T_NUM = 'd', T_STR = 's', T_TABLE = 'T',
       T_ARRAYTABLE = 'A', T_FUNC = 'F', T_GLOBALS = 'G', T_NAMED = 'L', T_REF = 'R', T_END = 'e',
       T_NULL = '0' };

/* Blobs carry a per-process random key after the magic: bytecode is not verified by Lua, so only
 * blobs this process made are loaded, never one written into a YAML file or passed by a caller. */
#define KEY_LEN 16
static unsigned char blob_key[KEY_LEN];
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void make_key(void) {
  if (getrandom(blob_key, sizeof blob_key, 0) != (ssize_t)sizeof blob_key) {
    uint64_t x = (uint64_t)(uintptr_t)&x ^ (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull;
    memcpy(blob_key, &x, sizeof x);
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    memcpy(blob_key + 8, &x, sizeof x);
  }
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_encode(sl_buf *out, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
    char q[4] = {b64[v >> 18 & 63], b64[v >> 12 & 63], i + 1 < n ? b64[v >> 6 & 63] : '=', i + 2 < n ? b64[v & 63] : '='};
    sl_buf_append(out, q, 4);
  }
}

/* Decodes base64 text into out (malloc'd); returns its length or -1. */
static long b64_decode(const char *s, size_t n, unsigned char **out) {
  if (n % 4) return -1;
  unsigned char *o = sl__xmalloc(n / 4 * 3 + 1);
  size_t len = 0;
  for (size_t i = 0; i < n; i += 4) {
    uint32_t v = 0;
    int pad = 0;
    for (int k = 0; k < 4; k++) {
      char c = s[i + k];
      const char *q = c == '=' ? NULL : memchr(b64, c, 64);
      if (c == '=') pad++;
      else if (!q || pad) {
        sl__free(o);
        return -1;
      }
      v = v << 6 | (q ? (uint32_t)(q - b64) : 0);
    }
    o[len++] = (unsigned char)(v >> 16);
    if (pad < 2) o[len++] = (unsigned char)(v >> 8);
    if (pad < 1) o[len++] = (unsigned char)v;
  }
  *out = o;
  return (long)len;
}

typedef struct writer {
  lua_State *L;
  sl_buf b;
  int seen;     /* stack index: table value -> id */
  int names;    /* stack index: value -> "module" or "module.field" */
  int next_id;
  char *err;    /* first problem */
  char path[512];
} writer;

static void put_u(writer *w, uint64_t x) {
  do {
    uint8_t byte = x & 0x7f;
    x >>= 7;
    if (x) byte |= 0x80;
    sl_buf_append(&w->b, &byte, 1);
  } while (x);
}

static void put_tag(writer *w, char t) { sl_buf_append(&w->b, &t, 1); }

static void put_str(writer *w, const char *s, size_t n) {
  put_u(w, n);
  sl_buf_append(&w->b, s, n);
}

static void problem(writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(writer *w, const char *fmt, ...) {
  if (w->err) return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  w->err = sl__xstrdup(buf);
}

/* Where the function at idx was defined: "file:line". */
static void fn_where(lua_State *L, int idx, char *out, size_t n) {
  lua_Debug ar;
  lua_pushvalue(L, idx);
  if (lua_getinfo(L, ">S", &ar)) snprintf(out, n, "%s:%d", ar.short_src, ar.linedefined);
  else snprintf(out, n, "?");
}

static int write_value(writer *w, int idx);

/* The function at idx: bytecode, then upvalues. */
static int lua_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  (void)L;
  return sl_buf_append(ud, p, sz);
}

static int write_function(writer *w, int idx) {
  lua_State *L = w->L;
  char where[300];
  fn_where(L, idx, where, sizeof where);
  if (lua_iscfunction(L, idx)) {
    problem(w, "a C function (%s) that no loaded module exports cannot be copied to the worker states", w->path[0] ? w->path : "?");
    return -1;
  }
  put_tag(w, T_FUNC);
  sl_buf code;
  sl_buf_init(&code);
  lua_pushvalue(L, idx);
  lua_dump(L, lua_writer, &code, 0);
  lua_pop(L, 1);
  put_str(w, code.data, code.len);
  sl_buf_close(&code);
  int nups = 0;
  while (lua_getupvalue(L, idx, nups + 1)) {
    lua_pop(L, 1);
    nups++;
  }
  put_u(w, (uint64_t)nups);
  for (int i = 1; i <= nups; i++) {
    const char *name = lua_getupvalue(L, idx, i);
    size_t plen = strlen(w->path);
    snprintf(w->path + plen, sizeof w->path - plen, "%supvalue '%s' of the function at %s", plen ? " <- " : "", name && *name ? name : "?", where);
    int rc = write_value(w, lua_gettop(L));
    w->path[plen] = 0;
    lua_pop(L, 1);
    if (rc) return rc;
  }
  return 0;
}

static int write_value(writer *w, int idx) {
  lua_State *L = w->L;
  idx = lua_absindex(L, idx);
  if (!lua_checkstack(L, 8)) {
    problem(w, "values nested too deeply to copy");
    return -1;
  }
  int t = lua_type(L, idx);
  switch (t) {
  case LUA_TNIL: put_tag(w, T_NIL); return 0;
  case LUA_TBOOLEAN: put_tag(w, lua_toboolean(L, idx) ? T_TRUE : T_FALSE); return 0;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      lua_Integer i = lua_tointeger(L, idx);
      put_tag(w, T_INT);
      sl_buf_append(&w->b, &i, sizeof i);
    } else {
      lua_Number d = lua_tonumber(L, idx);
      put_tag(w, T_NUM);
      sl_buf_append(&w->b, &d, sizeof d);
    }
    return 0;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    put_tag(w, T_STR);
    put_str(w, s, n);
    return 0;
  }
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == SL_LUA_NULL) {
      put_tag(w, T_NULL);
      return 0;
    }
    break;
  default: break;
  }
  /* reference types: seen before, the global table, or a module's? */
  lua_pushvalue(L, idx);
  lua_rawget(L, w->seen);
  if (!lua_isnil(L, -1)) {
    put_tag(w, T_REF);
    put_u(w, (uint64_t)lua_tointeger(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  lua_pop(L, 1);
  lua_pushglobaltable(L);
  bool is_g = lua_rawequal(L, -1, idx);
  lua_pop(L, 1);
  if (is_g) {
    put_tag(w, T_GLOBALS);
    return 0;
  }
  lua_pushvalue(L, idx);
  lua_rawget(L, w->names);
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    put_tag(w, T_NAMED);
    put_str(w, s, n);
    lua_pop(L, 1);
    return 0;
  }
  lua_pop(L, 1);
  /* a new table or function: give it an id first (it may refer to itself) */
  lua_pushvalue(L, idx);
  lua_pushinteger(L, ++w->next_id);
  lua_rawset(L, w->seen);
  if (t == LUA_TFUNCTION) return write_function(w, idx);
  if (t == LUA_TTABLE) {
    bool arr = sl__lua_is_array_mt(L, idx);
    put_tag(w, arr ? T_ARRAYTABLE : T_TABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      size_t plen = strlen(w->path);
      if (lua_type(L, -2) == LUA_TSTRING)
        snprintf(w->path + plen, sizeof w->path - plen, "%sfield '%s'", plen ? " <- " : "", lua_tostring(L, -2));
      if (write_value(w, -2) || write_value(w, -1)) {
        w->path[plen] = 0;
        lua_pop(L, 2);
        return -1;
      }
      w->path[plen] = 0;
      lua_pop(L, 1);
    }
    put_tag(w, T_END);
    if (!arr && lua_getmetatable(L, idx)) { /* other metatables travel too */
      put_tag(w, 'M');
      int rc = write_value(w, -1);
      lua_pop(L, 1);
      return rc;
    }
    put_tag(w, '-');
    return 0;
  }
  problem(w, "%s holds a %s (for example an open file or a coroutine): it cannot be copied to the worker states; create it inside the function, or pass what makes it (a path, a setting) instead",
          w->path[0] ? w->path : "a value", luaL_typename(L, idx));
  return -1;
}

/* Fills a table (pushed) mapping every module and module member to its name. */
static void build_names(lua_State *L) {
  lua_newtable(L);
  int names = lua_gettop(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  int loaded = lua_gettop(L);
  for (int pass = 0; pass < 2; pass++) { /* modules first, _G's members last */
    lua_pushnil(L);
    while (lua_next(L, loaded)) {
      if (lua_type(L, -2) != LUA_TSTRING || (strcmp(lua_tostring(L, -2), "_G") == 0) != (pass == 1) ||
          lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        continue;
      }
      const char *mod = lua_tostring(L, -2);
      if (pass == 0) {
        lua_pushvalue(L, -1);
        lua_rawget(L, names);
        bool known = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (!known) {
          lua_pushvalue(L, -1);
          lua_pushstring(L, mod);
          lua_rawset(L, names);
        }
      }
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        int vt = lua_type(L, -1);
        /* of _G only the C functions (print, pairs, ...): user globals travel by value */
        bool wanted = pass == 0 ? (vt == LUA_TFUNCTION || vt == LUA_TTABLE || vt == LUA_TUSERDATA) : lua_iscfunction(L, -1);
        if (lua_type(L, -2) == LUA_TSTRING && wanted) {
          lua_pushvalue(L, -1);
          lua_rawget(L, names);
          bool known = !lua_isnil(L, -1);
          lua_pop(L, 1);
          if (!known) {
            lua_pushvalue(L, -1);
            lua_pushfstring(L, "%s.%s", mod, lua_tostring(L, -3)); /* the member's name */
            lua_rawset(L, names);
          }
        }
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1); /* loaded */
}

static int ship(lua_State *L, int idx, sl_value *out, char **err) {
  idx = lua_absindex(L, idx);
  writer w = {.L = L};
  sl_buf_init(&w.b);
  sl_buf_append(&w.b, SL_LUA_BLOB_MAGIC, SL_LUA_BLOB_MAGIC_LEN);
  pthread_once(&key_once, make_key);
  sl_buf_append(&w.b, blob_key, KEY_LEN);
  lua_newtable(L);
  w.seen = lua_gettop(L);
  build_names(L);
  w.names = lua_gettop(L);
  int rc = write_value(&w, idx);
  lua_pop(L, 2);
  if (rc == 0) { /* option strings are NUL-terminated: the bytes after the magic go as base64 */
    sl_buf t;
    sl_buf_init(&t);
    sl_buf_append(&t, SL_LUA_BLOB_MAGIC, SL_LUA_BLOB_MAGIC_LEN);
    b64_encode(&t, (const unsigned char *)w.b.data + SL_LUA_BLOB_MAGIC_LEN, w.b.len - SL_LUA_BLOB_MAGIC_LEN);
    rc = sl_str_try(t.data, t.len, out);
    sl_buf_close(&t);
  }
  sl_buf_close(&w.b);
  if (rc && err) *err = w.err ? w.err : sl__xstrdup("out of memory");
  else sl__free(w.err);
  return rc ? SL_EDATA : 0;
}

int sl_lua_ship_fn(lua_State *L, int idx, sl_value *out, sl_error_t *err) {
  char *msg = NULL;
  if (ship(L, idx, out, &msg) == 0) return 0;
  sl_error_set(err, SL_EDATA, NULL, "%s", msg);
  sl__free(msg);
  return SL_EDATA;
}

/* Names a fresh state has as globals (the libraries and `sluice`), which are not shipped. */
static bool standard_global(const char *k) {
  static const char *const std[] = {"_G", "_VERSION", "assert", "collectgarbage", "coroutine", "debug", "dofile",
      "error", "getmetatable", "io", "ipairs", "load", "loadfile", "math", "next", "os", "package", "pairs",
      "pcall", "print", "rawequal", "rawget", "rawlen", "rawset", "require", "select", "setmetatable", "string",
      "table", "tonumber", "tostring", "type", "utf8", "warn", "xpcall", "sluice", "arg", NULL};
  for (int i = 0; std[i]; i++)
    if (strcmp(k, std[i]) == 0) return true;
  return false;
}

int sl_lua_ship_globals(lua_State *L, sl_value *out, char **skipped) {
  sl_buf sk;
  sl_buf_init(&sk);
  lua_newtable(L); /* the globals worth shipping, each checked on its own */
  int tbl = lua_gettop(L);
  lua_pushglobaltable(L);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) != LUA_TSTRING || standard_global(lua_tostring(L, -2))) {
      lua_pop(L, 1);
      continue;
    }
    sl_value one;
    char *msg = NULL;
    if (ship(L, -1, &one, &msg) == 0) {
      sl_value_free(one);
      lua_pushvalue(L, -2);
      lua_pushvalue(L, -2);
      lua_rawset(L, tbl);
    } else {
      sl_buf_printf(&sk, "%s%s", sk.len ? ", " : "", lua_tostring(L, -2));
      sl__free(msg);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1); /* G */
  char *msg = NULL;
  int rc = ship(L, tbl, out, &msg);
  sl__free(msg);
  lua_pop(L, 1);
  if (skipped) *skipped = sk.len ? sl__xstrdup(sk.data) : NULL;
  sl_buf_close(&sk);
  return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct reader {
  lua_State *L;
  const unsigned char *p, *end;
  int ids;  /* stack index: id -> value */
  int next_id;
  char *msg;
  size_t msglen;
} reader;

static int bad(reader *r, const char *what) {
  snprintf(r->msg, r->msglen, "corrupt function blob (%s)", what);
  return -1;
}

static int get_u(reader *r, uint64_t *x) {
  *x = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (r->p >= r->end) return bad(r, "truncated");
    uint8_t b = *r->p++;
    *x |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return 0;
  }
  return bad(r, "length");
}

static int get_bytes(reader *r, const char **s, size_t *n) {
  uint64_t len;
  if (get_u(r, &len)) return -1;
  if (len > (uint64_t)(r->end - r->p)) return bad(r, "truncated string");
  *s = (const char *)r->p;
  *n = (size_t)len;
  r->p += len;
  return 0;
}

/* require(mod) then the field path: pushes the value. */
static int push_named(reader *r, const char *s, size_t n) {
  lua_State *L = r->L;
  const char *dot = memchr(s, '.', n);
  size_t mlen = dot ? (size_t)(dot - s) : n;
  lua_getglobal(L, "require");
  lua_pushlstring(L, s, mlen);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    snprintf(r->msg, r->msglen, "module '%.*s' (used by a stage function) cannot be loaded here: %s", (int)mlen, s, lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  if (dot) {
    if (lua_type(L, -1) != LUA_TTABLE) {
      snprintf(r->msg, r->msglen, "module '%.*s' is not a table here", (int)mlen, s);
      lua_pop(L, 1);
      return -1;
    }
    lua_pushlstring(L, dot + 1, n - mlen - 1);
    lua_rawget(L, -2);
    lua_remove(L, -2);
  }
  return 0;
}

static void remember(reader *r) {
  lua_pushvalue(r->L, -1);
  lua_rawseti(r->L, r->ids, ++r->next_id);
}

static int read_value(reader *r) {
  lua_State *L = r->L;
  if (!lua_checkstack(L, 8)) return bad(r, "too deep");
  if (r->p >= r->end) return bad(r, "truncated");
  char tag = (char)*r->p++;
  switch (tag) {
  case T_NIL: lua_pushnil(L); return 0;
  case T_NULL: lua_pushlightuserdata(L, SL_LUA_NULL); return 0;
  case T_FALSE: lua_pushboolean(L, 0); return 0;
  case T_TRUE: lua_pushboolean(L, 1); return 0;
  case T_INT: {
    lua_Integer i;
    if ((size_t)(r->end - r->p) < sizeof i) return bad(r, "truncated integer");
    memcpy(&i, r->p, sizeof i);
    r->p += sizeof i;
    lua_pushinteger(L, i);
    return 0;
  }
  case T_NUM: {
    lua_Number d;
    if ((size_t)(r->end - r->p) < sizeof d) return bad(r, "truncated number");
    memcpy(&d, r->p, sizeof d);
    r->p += sizeof d;
    lua_pushnumber(L, d);
    return 0;
  }
  case T_STR: {
    const char *s;
    size_t n;
    if (get_bytes(r, &s, &n)) return -1;
    lua_pushlstring(L, s, n);
    return 0;
  }
  case T_GLOBALS: lua_pushglobaltable(L); return 0;
  case T_NAMED: {
    const char *s;
    size_t n;
    if (get_bytes(r, &s, &n)) return -1;
    return push_named(r, s, n);
  }
  case T_REF: {
    uint64_t id;
    if (get_u(r, &id)) return -1;
    if (id == 0 || id > (uint64_t)r->next_id) return bad(r, "reference");
    lua_rawgeti(L, r->ids, (lua_Integer)id);
    return 0;
  }
  case T_TABLE:
  case T_ARRAYTABLE: {
    lua_newtable(L);
    remember(r);
    for (;;) {
      if (r->p >= r->end) return bad(r, "truncated table");
      if (*r->p == T_END) {
        r->p++;
        break;
      }
      if (read_value(r)) return -1;
      if (read_value(r)) return -1;
      if (lua_isnil(L, -2)) return bad(r, "nil key");
      lua_rawset(L, -3);
    }
    if (tag == T_ARRAYTABLE) {
      sl_lua_mark_array(L, -1);
      return 0;
    }
    if (r->p >= r->end) return bad(r, "truncated table");
    if (*r->p++ == 'M') {
      if (read_value(r)) return -1;
      lua_setmetatable(L, -2);
    }
    return 0;
  }
  case T_FUNC: {
    const char *code;
    size_t n;
    if (get_bytes(r, &code, &n)) return -1;
    if (luaL_loadbufferx(L, code, n, "=shipped", "b") != LUA_OK) {
      snprintf(r->msg, r->msglen, "cannot load a shipped function: %s", lua_tostring(L, -1));
      lua_pop(L, 1);
      return -1;
    }
    remember(r);
    uint64_t nups;
    if (get_u(r, &nups)) return -1;
    for (uint64_t i = 1; i <= nups; i++) {
      if (read_value(r)) return -1;
      if (!lua_setupvalue(L, -2, (int)i)) lua_pop(L, 1);
    }
    return 0;
  }
  default: return bad(r, "tag");
  }
}

int sl_lua_unship(lua_State *L, const char *text, size_t tlen, char *msg, size_t msglen) {
  msg[0] = 0;
  pthread_once(&key_once, make_key);
  unsigned char *blob = NULL;
  long len = -1;
  if (tlen >= SL_LUA_BLOB_MAGIC_LEN && memcmp(text, SL_LUA_BLOB_MAGIC, SL_LUA_BLOB_MAGIC_LEN) == 0)
    len = b64_decode(text + SL_LUA_BLOB_MAGIC_LEN, tlen - SL_LUA_BLOB_MAGIC_LEN, &blob);
  if (len < KEY_LEN || memcmp(blob, blob_key, KEY_LEN) != 0) {
    sl__free(blob);
    snprintf(msg, msglen, "a compiled function can only come from this process's Lua front end");
    return -1;
  }
  int top = lua_gettop(L);
  lua_newtable(L);
  reader r = {L, blob + KEY_LEN, blob + len, lua_gettop(L), 0, msg, msglen};
  int rc = 0;
  if (read_value(&r) != 0 || r.p != r.end) {
    if (r.p != r.end && !msg[0]) bad(&r, "trailing bytes");
    lua_settop(L, top);
    rc = -1;
  } else {
    lua_remove(L, -2); /* ids */
  }
  sl__free(blob);
  return rc;
}
