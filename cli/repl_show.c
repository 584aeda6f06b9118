/*
 * repl_show.c — Lua values as readable text for the REPL: records look like JSON ({"n": 2},
 * [1, 2]), other values like Lua (nil, <function>), objects with __tostring by it (a pipeline
 * says its stages). Large values are cut: SHOW_ITEMS entries per table, SHOW_DEPTH levels,
 * SHOW_STR bytes per string inside a table, SHOW_LINES lines in all. A value that does not fit
 * on one line is spread over several, indented. Map keys are sorted, so the same value always
 * prints the same way (Lua's own order changes from run to run).
 */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define SHOW_ITEMS 20     /* entries of a table shown */
#define SHOW_DEPTH 6      /* nesting shown */
#define SHOW_STR 200      /* bytes of a string inside a table */
#define SHOW_TOP_STR 4000 /* bytes of a string on its own */
#define SHOW_WIDTH 78     /* a table wider than this is spread over lines */
#define SHOW_LINES 200    /* lines at most */

typedef struct show {
  lua_State *L;
  sl_buf *out;
  const void *path[SHOW_DEPTH + 1]; /* tables being shown, outermost first (cycles) */
  int depth;
  int lines;                        /* lines written so far */
  size_t limit;                     /* compact attempt: give up past this length */
  bool over;                        /* the compact attempt went past limit */
} show;

static void put(show *s, const char *p, size_t n) {
  if (s->limit && s->out->len + n > s->limit) {
    s->over = true;
    return;
  }
  sl_buf_append(s->out, p, n);
}

static void puts_(show *s, const char *p) { put(s, p, strlen(p)); }

/* A string in double quotes with JSON escapes; bytes that are not UTF-8 as \xNN; cut at max. */
static void show_string(show *s, const char *p, size_t n, size_t max) {
  size_t shown = n > max ? max : n;
  puts_(s, "\"");
  for (size_t i = 0; i < shown && !s->over; i++) {
    unsigned char c = (unsigned char)p[i];
    char esc[8];
    if (c == '"' || c == '\\') snprintf(esc, sizeof esc, "\\%c", c);
    else if (c == '\n') snprintf(esc, sizeof esc, "\\n");
    else if (c == '\t') snprintf(esc, sizeof esc, "\\t");
    else if (c == '\r') snprintf(esc, sizeof esc, "\\r");
    else if (c < 0x20 || c == 0x7f) snprintf(esc, sizeof esc, "\\u%04x", c);
    else if (c < 0x80) {
      put(s, (const char *)&c, 1);
      continue;
    } else { /* a whole UTF-8 sequence, or \xNN for a byte that starts none */
      size_t len = c >= 0xF0 && c < 0xF8 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
      bool ok = len && i + len <= n;
      for (size_t k = 1; ok && k < len; k++) ok = ((unsigned char)p[i + k] & 0xC0) == 0x80;
      if (ok) {
        put(s, p + i, len);
        i += len - 1;
        continue;
      }
      snprintf(esc, sizeof esc, "\\x%02x", c);
    }
    puts_(s, esc);
  }
  puts_(s, "\"");
  if (shown < n) {
    char more[48];
    snprintf(more, sizeof more, "... (%zu bytes)", n);
    puts_(s, more);
  }
}

static void show_number(show *s, int idx) {
  char buf[64];
  if (lua_isinteger(s->L, idx)) {
    snprintf(buf, sizeof buf, "%lld", (long long)lua_tointeger(s->L, idx));
  } else {
    double d = lua_tonumber(s->L, idx);
    if (isnan(d)) snprintf(buf, sizeof buf, "nan");
    else if (isinf(d)) snprintf(buf, sizeof buf, d > 0 ? "inf" : "-inf");
    else {
      snprintf(buf, sizeof buf, "%.14g", d);
      if (!strpbrk(buf, ".eEn")) strcat(buf, ".0"); /* a float stays a float: 2.0 */
    }
  }
  puts_(s, buf);
}

/* Keys of the table at idx, for showing: an array (1..n) or sorted entries. Pushes nothing. */
typedef struct entry {
  int kind;        /* 0: string key, 1: number, 2: other (by address) */
  const char *str; /* string key */
  size_t len;
  double num;
  const void *ptr;
  int ref;         /* the key, in the registry */
} entry;

static int entry_cmp(const void *a, const void *b) {
  const entry *x = a, *y = b;
  if (x->kind != y->kind) return x->kind - y->kind;
  if (x->kind == 0) {
    int c = memcmp(x->str, y->str, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
  }
  if (x->kind == 1) return (x->num > y->num) - (x->num < y->num);
  return (x->ptr > y->ptr) - (x->ptr < y->ptr);
}

static void show_any(show *s, int idx, int indent, bool top);

static void newline(show *s, int indent) {
  s->lines++;
  puts_(s, "\n");
  for (int i = 0; i < indent; i++) puts_(s, " ");
}

/* A table: [a, b] or {"k": v}, on one line when it fits, else one entry per line. */
static void show_table(show *s, int idx, int indent) {
  lua_State *L = s->L;
  idx = lua_absindex(L, idx);
  const void *me = lua_topointer(L, idx);
  for (int i = 0; i < s->depth; i++)
    if (s->path[i] == me) {
      puts_(s, "<cycle>");
      return;
    }
  if (s->depth >= SHOW_DEPTH) {
    puts_(s, "{...}");
    return;
  }
  /* count the keys and tell an array (keys exactly 1..n) */
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
  bool array = true;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    count++;
    if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 || lua_tointeger(L, -2) > n) array = false;
    lua_pop(L, 1);
  }
  array = array && count == n;
  if (count == 0) {
    puts_(s, sl_script_is_array(L, idx) ? "[]" : "{}");
    return;
  }
  entry *e = NULL;
  size_t ne = 0;
  if (!array) { /* the keys, sorted (a few at most SHOW_ITEMS are shown, but all are sorted) */
    e = calloc((size_t)count, sizeof *e);
    if (!e) {
      puts_(s, "{...}");
      return;
    }
    lua_pushnil(L);
    while (lua_next(L, idx) && ne < (size_t)count) {
      lua_pop(L, 1);
      entry *x = &e[ne++];
      int t = lua_type(L, -1);
      x->kind = t == LUA_TSTRING ? 0 : t == LUA_TNUMBER ? 1 : 2;
      if (t == LUA_TSTRING) x->str = lua_tolstring(L, -1, &x->len); /* kept alive by the ref */
      else if (t == LUA_TNUMBER) x->num = lua_tonumber(L, -1);
      else x->ptr = lua_topointer(L, -1);
      lua_pushvalue(L, -1);
      x->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    qsort(e, ne, sizeof *e, entry_cmp);
  }
  s->path[s->depth++] = me;
  size_t items = array ? (size_t)n : ne;
  size_t shown = items > SHOW_ITEMS ? SHOW_ITEMS : items;
  /* First on one line, within what is left of the width (inside an outer one-line attempt, within
   * its limit: if it does not fit, the outer one starts again spread). If it does not fit, again,
   * one entry per line. */
  bool outer = s->limit != 0;
  size_t start = s->out->len;
  int lines = s->lines;
  if (!outer) s->limit = start + (size_t)(SHOW_WIDTH > indent ? SHOW_WIDTH - indent : 20);
  for (int spread = 0; spread < 2; spread++) {
    puts_(s, array ? "[" : "{");
    for (size_t i = 0; i < shown && !s->over && s->lines < SHOW_LINES; i++) {
      if (i) puts_(s, ",");
      if (spread) newline(s, indent + 2);
      else if (i) puts_(s, " ");
      if (array) {
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
      } else {
        lua_rawgeti(L, LUA_REGISTRYINDEX, e[i].ref);
        if (e[i].kind == 0) {
          show_string(s, e[i].str, e[i].len, SHOW_STR);
        } else {
          puts_(s, "[");
          show_any(s, -1, indent + 2, false);
          puts_(s, "]");
        }
        puts_(s, ": ");
        lua_rawget(L, idx);
      }
      show_any(s, -1, indent + 2, false);
      lua_pop(L, 1);
    }
    if (shown < items) {
      char more[48];
      snprintf(more, sizeof more, "... (%zu more)", items - shown);
      puts_(s, ",");
      if (spread) newline(s, indent + 2);
      else puts_(s, " ");
      puts_(s, more);
    }
    if (spread) newline(s, indent);
    puts_(s, array ? "]" : "}");
    if (outer || spread || !s->over) break;
    s->out->len = start; /* did not fit on one line */
    s->lines = lines;
    s->limit = 0;
    s->over = false;
  }
  if (!outer) {
    s->limit = 0;
    s->over = false;
  }
  s->depth--;
  for (size_t i = 0; i < ne; i++) luaL_unref(L, LUA_REGISTRYINDEX, e[i].ref);
  free(e);
}

static void show_any(show *s, int idx, int indent, bool top) {
  lua_State *L = s->L;
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
  case LUA_TNIL: puts_(s, "nil"); return;
  case LUA_TBOOLEAN: puts_(s, lua_toboolean(L, idx) ? "true" : "false"); return;
  case LUA_TNUMBER: show_number(s, idx); return;
  case LUA_TSTRING: {
    size_t n;
    const char *p = lua_tolstring(L, idx, &n);
    show_string(s, p, n, top ? SHOW_TOP_STR : SHOW_STR);
    return;
  }
  case LUA_TFUNCTION: puts_(s, "<function>"); return;
  case LUA_TTHREAD: puts_(s, "<coroutine>"); return;
  default: break;
  }
  if (luaL_getmetafield(L, idx, "__tostring") != LUA_TNIL) { /* objects say what they are */
    lua_pop(L, 1);
    size_t n;
    const char *p = luaL_tolstring(L, idx, &n); /* may raise: the caller runs under pcall */
    put(s, p, n);
    lua_pop(L, 1);
    return;
  }
  if (lua_type(L, idx) == LUA_TTABLE) show_table(s, idx, indent);
  else puts_(s, lua_type(L, idx) == LUA_TUSERDATA ? "<userdata>" : "<light userdata>");
}

/* Runs under lua_pcall: (buffer as light userdata, value) -> appends the text. */
static int show_protected(lua_State *L) {
  show s = {.L = L, .out = lua_touserdata(L, 1)};
  show_any(&s, 2, 0, true);
  if (s.lines >= SHOW_LINES) sl_buf_printf(s.out, "\n... (cut at %d lines)", SHOW_LINES);
  return 0;
}

void show_value(lua_State *L, int idx, sl_buf *out) {
  idx = lua_absindex(L, idx);
  size_t start = out->len;
  lua_pushcfunction(L, show_protected);
  lua_pushlightuserdata(L, out);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) { /* a __tostring that raised */
    out->len = start;
    sl_buf_printf(out, "<%s: %s>", luaL_typename(L, idx), lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
    lua_pop(L, 1);
  }
  if (out->data) out->data[out->len] = 0;
}
