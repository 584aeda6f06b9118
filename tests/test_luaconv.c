/*
 * test_luaconv.c — records to Lua and back on the fast paths (vm/lua_value.c): a conversion with
 * a hint (the record the function was given) shares what did not change and gives exactly what a
 * conversion without one gives; errors keep their messages; the per-state key cache never hands
 * a wrong key (keys differing only in length or in one byte, binary keys, more keys than slots).
 */
#include <lauxlib.h>
#include <lualib.h>

#include "lua.h"
#include "test.h"
#include "value.h"

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  sl_lua_open_sluice(L);
  lua_pop(L, 1);
  return L;
}

/* Calls `function(r) body end` on rec (pushed as a record) and converts its result, with hint
 * when with_hint. Returns the conversion's code; msg gets its message. */
static int call_convert(lua_State *L, const char *body, const sl_value *rec, bool with_hint, sl_value *out, char *msg,
                        size_t msglen) {
  char code[2048];
  snprintf(code, sizeof code, "return function(r) %s end", body);
  *out = sl_nil();
  if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    snprintf(msg, msglen, "bad test code: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -100;
  }
  sl_lua_push(L, rec);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    snprintf(msg, msglen, "test code raised: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -101;
  }
  int rc = sl_lua_to_value_hint(L, -1, with_hint ? rec : NULL, out, msg, msglen);
  lua_pop(L, 1);
  return rc;
}

static char *to_json(const sl_value *v) {
  sl_buf b;
  sl_buf_init(&b);
  sl_value_to_json(v, &b);
  return b.data ? b.data : strdup("");
}

/* The heap object of a value (NULL for scalars and inline strings). */
static const void *obj(const sl_value *v) { return sl__value_obj(v); }

/* What did not change is the input's own object; what changed is new. */
TEST(luaconv_hint_shares_unchanged) {
  lua_State *L = new_state();
  sl_value rec, out;
  char msg[256];
  const char *text = "{\"a\": {\"x\": 1, \"y\": \"a string longer than inline\"}, \"b\": [1, 2, {\"k\": \"v\"}],"
                     " \"c\": \"another string longer than inline\", \"n\": 1.5}";
  ASSERT_OK(sl_value_from_json(text, strlen(text), &rec, NULL), NULL);
  /* unchanged: the very same record comes back */
  ASSERT_EQ(call_convert(L, "return r", &rec, true, &out, msg, sizeof msg), 0);
  ASSERT(obj(&out) == obj(&rec));
  sl_value_free(out);
  /* a field added: a new top map sharing its children */
  ASSERT_EQ(call_convert(L, "r.z = 1; return r", &rec, true, &out, msg, sizeof msg), 0);
  ASSERT(obj(&out) != obj(&rec));
  ASSERT(obj(sl_map_getc(&out, "a")) == obj(sl_map_getc(&rec, "a")));
  ASSERT(obj(sl_map_getc(&out, "b")) == obj(sl_map_getc(&rec, "b")));
  ASSERT(obj(sl_map_getc(&out, "c")) == obj(sl_map_getc(&rec, "c")));
  char *j = to_json(&out);
  ASSERT_STR(j, "{\"a\":{\"x\":1,\"y\":\"a string longer than inline\"},\"b\":[1,2,{\"k\":\"v\"}],"
                "\"c\":\"another string longer than inline\",\"n\":1.5,\"z\":1}");
  free(j);
  sl_value_free(out);
  /* a change deep down: new maps and arrays on its path only */
  ASSERT_EQ(call_convert(L, "r.b[3].k = 'w'; return r", &rec, true, &out, msg, sizeof msg), 0);
  ASSERT(obj(sl_map_getc(&out, "b")) != obj(sl_map_getc(&rec, "b")));
  ASSERT(obj(sl_map_getc(&out, "a")) == obj(sl_map_getc(&rec, "a")));
  j = to_json(&out);
  ASSERT(strstr(j, "\"b\":[1,2,{\"k\":\"w\"}]") != NULL);
  free(j);
  sl_value_free(out);
  /* the input is intact (copy-on-write: nothing shared was changed) */
  j = to_json(&rec);
  ASSERT_STR(j, "{\"a\":{\"x\":1,\"y\":\"a string longer than inline\"},\"b\":[1,2,{\"k\":\"v\"}],"
                "\"c\":\"another string longer than inline\",\"n\":1.5}");
  free(j);
  sl_value_free(rec);
  lua_close(L);
}

/* With or without the hint, the same value: same JSON text (key order included) and same types. */
TEST(luaconv_hint_same_result) {
  static const char *const cases[][3] = {
      /* record, function body, expected JSON */
      {"{\"b\": 1, \"a\": 2}", "return r", "{\"a\":2,\"b\":1}"}, /* unsorted keys come out sorted */
      {"{\"m\": {\"z\": 1, \"y\": 2}, \"a\": 0}", "return r", "{\"a\":0,\"m\":{\"y\":2,\"z\":1}}"},
      {"{\"d\": 0.0}", "r.d = -0.0; return r", "{\"d\":-0.0}"},
      {"{\"d\": -0.0}", "r.d = 0.0; return r", "{\"d\":0.0}"},
      {"{\"i\": 1}", "r.i = 1.0; return r", "{\"i\":1.0}"},
      {"{\"f\": 1.0}", "r.f = 1; return r", "{\"f\":1}"},
      {"{\"a\": null, \"b\": 1}", "return r", "{\"b\":1}"},
      {"{\"a\": [1, null, 3]}", "return r", "{\"a\":[1,null,3]}"},
      {"{\"a\": [1, 2, 3]}", "r.a[4] = 4; return r", "{\"a\":[1,2,3,4]}"},
      {"{\"a\": [1, 2, 3]}", "r.a[3] = nil; return r", "{\"a\":[1,2]}"},
      {"{\"a\": [1, 2, 3]}", "r.a[2] = '2'; return r", "{\"a\":[1,\"2\",3]}"},
      {"{\"a\": [], \"b\": {}}", "return r", "{\"a\":[],\"b\":{}}"},
      {"{\"a\": []}", "r.a[1] = 5; return r", "{\"a\":[5]}"},
      {"{\"s\": \"abcdefghijklmnopq\"}", "r.s = 'abcdefghijklmnopX'; return r", "{\"s\":\"abcdefghijklmnopX\"}"},
      {"{\"s\": \"a\\u0000b\"}", "assert(#r.s == 3); return r", "{\"s\":\"a\\u0000b\"}"},
      {"{\"k\": 1}", "return { k = 1, [\"k\\0\"] = 2 }", "{\"k\":1,\"k\\u0000\":2}"},
      {"{\"a\": {\"x\": 1}}", "return { a = { x = 1 } }", "{\"a\":{\"x\":1}}"}, /* a new table equal to the input */
      {"{\"a\": {\"x\": 1}}", "return { a = r }", "{\"a\":{\"a\":{\"x\":1}}}"}, /* the input one level down */
      {"[1, {\"a\": 2}]", "return r", "[1,{\"a\":2}]"},
      {"[1, 2]", "return { 2, 1 }", "[2,1]"},
      {"\"str\"", "return r .. 'x'", "\"strx\""},
      {"{\"a\": true}", "r.a = false; return r", "{\"a\":false}"},
      {"{\"a\": 1}", "return setmetatable({ a = 1 }, {})", "{\"a\":1}"},
      {"{\"a\": 1}", "return { a = sluice.null }", "{\"a\":null}"},
      {"{\"a\": 1}", "return {}", "{}"},
      {"{\"a\": [1]}", "return { a = sluice.array{} }", "{\"a\":[]}"},
      /* items stored in the hash part, out of order */
      {"[0]", "local t = {}; t[3] = 'c'; t[1] = 'a'; t[2] = 'b'; return t", "[\"a\",\"b\",\"c\"]"},
      /* more items than the converter's first buffer, one changed */
      {"[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]", "r[20] = 'x'; return r",
       "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,\"x\"]"},
      {"[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]", "return r", "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]"},
  };
  lua_State *L = new_state();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sl_value rec, a, b;
    char msg[256];
    ASSERT_OK(sl_value_from_json(cases[i][0], strlen(cases[i][0]), &rec, NULL), NULL);
    int ra = call_convert(L, cases[i][1], &rec, true, &a, msg, sizeof msg);
    if (ra) SL__FAIL("case %zu: %s", i, msg);
    int rb = call_convert(L, cases[i][1], &rec, false, &b, msg, sizeof msg);
    if (rb) SL__FAIL("case %zu: %s", i, msg);
    char *ja = to_json(&a), *jb = to_json(&b);
    bool ok = strcmp(ja, cases[i][2]) == 0 && strcmp(jb, cases[i][2]) == 0;
    if (!ok) fprintf(stderr, "    case %zu: with hint %s, without %s, want %s\n", i, ja, jb, cases[i][2]);
    free(ja);
    free(jb);
    sl_value_free(a);
    sl_value_free(b);
    sl_value_free(rec);
    ASSERT(ok);
  }
  lua_close(L);
}

/* What cannot be a record fails with the reference conversion's message, hint or not, also when
 * the fast path would meet another problem first. */
TEST(luaconv_errors_with_hint) {
  static const char *const cases[][2] = {
      {"local t = {}; t.self = t; return t", "cycle"},
      {"return { print }", "function"},
      {"return { 1, 2, x = 3 }", "mixing"},
      {"return { [1] = 1, [3] = 3 }", "holes"},
      {"return { a = print, [1] = 2 }", "mixing"},         /* the keys are judged before the values */
      {"r.a.b = { f = print }; return r", "function"},
      {"return { [2.5] = 1 }", "keys other than strings"},
      {"return { a = coroutine.create(print) }", "thread"},
      /* a border of 2^30 with 31 entries: holes, found without allocating by the border */
      {"local t = {}; for k = 0, 30 do t[1 << k] = k end; return t", "holes"},
  };
  lua_State *L = new_state();
  sl_value rec;
  const char *text = "{\"a\": {\"b\": 1}, \"c\": [1, 2]}";
  ASSERT_OK(sl_value_from_json(text, strlen(text), &rec, NULL), NULL);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sl_value a, b;
    char ma[256] = "", mb[256] = "";
    int ra = call_convert(L, cases[i][0], &rec, true, &a, ma, sizeof ma);
    int rb = call_convert(L, cases[i][0], &rec, false, &b, mb, sizeof mb);
    bool ok = ra == SL_EDATA && rb == SL_EDATA && strcmp(ma, mb) == 0 && strstr(ma, cases[i][1]) != NULL &&
              a.type == SL_TNIL && b.type == SL_TNIL;
    if (!ok) fprintf(stderr, "    case %zu: %d '%s' / %d '%s'\n", i, ra, ma, rb, mb);
    if (!ok) {
      sl_value_free(rec);
      lua_close(L);
    }
    ASSERT(ok);
  }
  sl_value_free(rec);
  lua_close(L);
}

/* Through map stages (which push records with their state's key cache): every key arrives as
 * itself. The records hold keys that differ only in length or in one byte, binary keys, the
 * longest inline key and the shortest heap key, and over the run about a thousand distinct keys,
 * far more than the cache has slots. A take between the maps makes the second one receive
 * records (not Lua tables carried from the first). */
TEST(luaconv_key_cache) {
  sl_engine *e = sl_test_engine(1, false);
  sl_error_t err;
  sl_error_init(&err);
  const char *lua =
      "function mk(i)\n"
      "  local r = { i = i, k = 1, ['k\\0'] = 2, ['k\\0\\0'] = 3, ['\\0'] = 4, [''] = 5, ['\\255\\254'] = 6,\n"
      "              abcdefghijklm = 7, abcdefghijklmn = 8, abcdefghijklmo = 9, abcdefghijkln = 10 }\n"
      "  for j = 1, 5 do local k = 'd' .. ((i * 7 + j * 131) % 1000); r[k] = k end\n"
      "  r['x' .. string.char(i % 256)] = i % 256\n"
      "  r['y' .. string.char(i % 256, (i * 3) % 256)] = i\n"
      "  return r\n"
      "end\n"
      "function check(r)\n"
      "  local want = mk(r.i)\n"
      "  for k, v in pairs(r) do assert(want[k] == v, 'unexpected key ' .. string.format('%q', k)) end\n"
      "  for k, v in pairs(want) do assert(r[k] == v, 'missing key ' .. string.format('%q', k)) end\n"
      "  return r\n"
      "end\n";
  sl_pipeline *p;
  ASSERT_OK(sl_pipeline_new(e, "t", &p, &err), &err);
  ASSERT_OK(sl_pipeline_add_lua(p, lua, strlen(lua), "t.lua", 1, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 3000}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "map", "{\"fn\": \"mk\", \"on_error\": \"fail\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "take", "{\"count\": 1000000}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "map", "{\"fn\": \"check\", \"on_error\": \"fail\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", &err), &err);
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  sl_value v;
  int n = 0;
  while (sl_collect_pull(sl_pipeline_collect(p, "out"), &v, -1) == 0) {
    n++;
    sl_value_free(v);
  }
  int rc = sl_pipeline_wait(p, -1, &err);
  sl_pipeline_free(p);
  sl_engine_free(e);
  ASSERT_OK(rc, &err);
  ASSERT_EQ(n, 3000);
}
