/*
 * test_lua.c — Lua in the engine through the embedding API: the function stages, the three ways
 * to write a function, values both ways, errors with tracebacks, coroutines on the virtual
 * clock, limits, the sandbox, and buffer_unordered/buffered.
 */
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

/* Builds a pipeline from stages[i] = {kind, json options}, n of them, ending in a collect sink
 * named "out", runs it, and returns every collected record in *out (an array). Returns the run's
 * result code; err gets its message. */
static int run_stages(sl_engine *e, const char *lua, const char *const stages[][2], size_t n, sl_value *out,
                      sl_error_t *err) {
  sl_pipeline *p;
  *out = sl_array(0);
  int rc = sl_pipeline_new(e, "t", &p, err);
  if (rc) return rc;
  if (lua) rc = sl_pipeline_add_lua(p, lua, strlen(lua), "test.lua", 1, err);
  for (size_t i = 0; i < n && rc == 0; i++) rc = sl_pipeline_add_json(p, stages[i][0], stages[i][1], err);
  if (rc == 0) rc = sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", err);
  if (rc == 0) rc = sl_pipeline_start(p, err);
  if (rc == 0) {
    sl_collect *c = sl_pipeline_collect(p, "out");
    sl_value v;
    while (sl_collect_pull(c, &v, -1) == 0) sl_array_push(out, v);
    rc = sl_pipeline_wait(p, -1, err);
  }
  sl_pipeline_free(p);
  return rc;
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) abort();
  fputs(text, f);
  fclose(f);
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return buf;
}

static int64_t int_at(const sl_value *a, size_t i) {
  const sl_value *v = sl_array_get(a, i);
  return v && v->type == SL_TINT ? v->u.i : -999999;
}

TEST(lua_map_filter) {
  sl_engine *e = sl_test_engine(2, false);
  sl_error_t err;
  sl_error_init(&err);
  const char *st[][2] = {{"generate", "{\"count\": 100000}"},
                         {"map", "\"r * 2\""},
                         {"filter", "{\"fn\": \"function(r) return r % 3 == 0 end\"}"}};
  sl_value out;
  ASSERT_OK(run_stages(e, NULL, st, 3, &out, &err), &err);
  size_t n = sl_array_len(&out);
  ASSERT_EQ(n, 33333);
  for (size_t i = 0; i < n; i++)
    if (int_at(&out, i) != (int64_t)(i + 1) * 6) SL__FAIL("record %zu is %lld", i, (long long)int_at(&out, i));
  sl_value_free(out);
  sl_engine_free(e);
}

/* The three ways to write a function: a global of the pipeline's Lua code, an expression over
 * r, a body with return. Plus filter_map, flat_map with sluice.emit, inspect, take_while. */
TEST(lua_function_forms) {
  sl_engine *e = sl_test_engine(2, false);
  sl_error_t err;
  sl_error_init(&err);
  const char *lua = "function triple(r) return r * 3 end\n"
                    "seen = sluice.counter('seen')\n";
  const char *st[][2] = {{"generate", "{\"count\": 10}"},
                         {"map", "\"triple\""},
                         {"inspect", "\"seen:inc()\""},
                         {"filter_map", "\"if r % 2 == 0 then return nil end\\nreturn r\""},
                         {"flat_map", "\"sluice.emit(r); sluice.emit(r + 1); return {r + 2}\""},
                         {"take_while", "\"r < 40\""}};
  sl_value out;
  ASSERT_OK(run_stages(e, lua, st, 6, &out, &err), &err);
  /* triple: 3 6 9 ... 30; odd: 3 9 15 21 27; each -> r, r+1, r+2; while < 40 */
  int64_t want[] = {3, 4, 5, 9, 10, 11, 15, 16, 17, 21, 22, 23, 27, 28, 29};
  ASSERT_EQ(sl_array_len(&out), 15);
  for (size_t i = 0; i < 15; i++) ASSERT_EQ(int_at(&out, i), want[i]);
  sl_value_free(out);
  const char *st2[][2] = {{"generate", "{\"count\": 100}"}, {"take_while", "\"r < 40\""}};
  ASSERT_OK(run_stages(e, NULL, st2, 2, &out, &err), &err);
  ASSERT_EQ(sl_array_len(&out), 39);
  sl_value_free(out);
  sl_engine_free(e);
}

/* Records to Lua and back: integers stay integers, floats floats, binary strings intact, nested
 * maps and arrays, empty arrays through sluice.array, maps with sorted keys. */
/* Null items of arrays keep their places in Lua as sluice.null, and sluice.null set as a map
 * value is a null entry; a map's null value is absent in Lua (nil), as documented. */
TEST(lua_values_null) {
  sl_engine *e = sl_test_engine(2, false);
  sl_error_t err;
  sl_error_init(&err);
  const char *lua =
      "local null = sluice.null\n" /* an upvalue: it crosses to every worker */
      "function f(r)\n"
      "  if r.a then\n"
      "    assert(#r.a == 3 and r.a[2] == null and r.a[3] == 3 and r.b == nil)\n"
      "    r.c = null\n"
      "  else\n"
      "    for i = 1, #r do assert(r[i] == null or math.type(r[i]) == 'integer') end\n"
      "  end\n"
      "  return r\n"
      "end\n";
  const char *st[][2] = {{"values", "{\"records\": [{\"a\": [1, null, 3], \"b\": null}, [null], [1, null], [null, null, 2]]}"},
                         {"map", "{\"fn\": \"f\", \"on_error\": \"fail\"}"}};
  sl_value out;
  ASSERT_OK(run_stages(e, lua, st, 2, &out, &err), &err);
  sl_buf b;
  sl_buf_init(&b);
  sl_value_to_json(&out, &b);
  bool same = strcmp(b.data, "[{\"a\":[1,null,3],\"c\":null},[null],[1,null],[null,null,2]]") == 0;
  if (!same) fprintf(stderr, "    got %s\n", b.data);
  sl_buf_close(&b);
  sl_value_free(out);
  sl_engine_free(e);
  ASSERT(same);
}

TEST(lua_values_roundtrip) {
  sl_engine *e = sl_test_engine(1, false);
  sl_error_t err;
  sl_error_init(&err);
  const char *lua =
      "function make(i)\n"
      "  return { i = i, f = i + 0.5, s = 'a\\0b' .. i, nested = { list = {1, 2.5, 'x', true}, empty = sluice.array{} },\n"
      "           map = {}, big = string.rep('z', 100) }\n"
      "end\n"
      "function check(r)\n"
      "  assert(math.type(r.i) == 'integer' and math.type(r.f) == 'float')\n"
      "  assert(#r.s == 4 and r.s:byte(2) == 0)\n"
      "  assert(#r.nested.list == 4 and math.type(r.nested.list[1]) == 'integer')\n"
      "  assert(next(r.nested.empty) == nil and getmetatable(r.nested.empty) ~= nil)\n"
      "  return r\n"
      "end\n";
  const char *st[][2] = {{"generate", "{\"count\": 3}"}, {"map", "\"make\""}, {"map", "\"check\""}};
  sl_value out;
  ASSERT_OK(run_stages(e, lua, st, 3, &out, &err), &err);
  ASSERT_EQ(sl_array_len(&out), 3);
  sl_buf b;
  sl_buf_init(&b);
  sl_value_to_json(sl_array_get(&out, 0), &b);
  char want[512], zs[101];
  memset(zs, 'z', 100);
  zs[100] = 0;
  snprintf(want, sizeof want, "{\"big\":\"%s\",\"f\":1.5,%s", zs,
           "\"i\":1,\"map\":{},\"nested\":{\"empty\":[],\"list\":[1,2.5,\"x\",true]},\"s\":\"a\\u0000b1\"}");
  ASSERT_STR(b.data, want);
  sl_buf_close(&b);
  sl_value_free(out);
  sl_engine_free(e);
}

/* What cannot become a record fails that record, with a message naming the problem. */
TEST(lua_values_errors) {
  sl_engine *e = sl_test_engine(1, false);
  sl_error_t err;
  sl_error_init(&err);
  const char *lua = "function bad(r)\n"
                    "  if r == 1 then local t = {}; t.self = t; return t end\n"
                    "  if r == 2 then return { print } end\n"
                    "  if r == 3 then return { 1, 2, x = 3 } end\n"
                    "  if r == 4 then return { [1] = 1, [3] = 3 } end\n"
                    "  return r\n"
                    "end\n";
  sl_pipeline *p;
  ASSERT_OK(sl_pipeline_new(e, "t", &p, &err), &err);
  ASSERT_OK(sl_pipeline_add_lua(p, lua, strlen(lua), "t.lua", 1, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 5}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "map", "{\"fn\": \"bad\", \"name\": \"m\", \"on_error\": \"dead_letter\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"dl\", \"input\": []}", &err), &err);
  ASSERT_OK(sl_pipeline_set_dead_letter(p, "dl", &err), &err);
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  sl_value v;
  int outs = 0;
  while (sl_collect_pull(sl_pipeline_collect(p, "out"), &v, -1) == 0) {
    ASSERT_EQ(v.u.i, 5);
    outs++;
    sl_value_free(v);
  }
  const char *want[] = {"cycle", "function", "mixing", "holes"};
  for (int i = 0; i < 4; i++) {
    ASSERT_OK(sl_collect_pull(sl_pipeline_collect(p, "dl"), &v, -1), NULL);
    const char *msg = sl_str_data(sl_map_getc(&v, "error"));
    if (!strstr(msg, want[i])) SL__FAIL("dead letter %d: '%s' lacks '%s'", i, msg, want[i]);
    sl_value_free(v);
  }
  ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
  ASSERT_EQ(outs, 1);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* 1 record in 100,000 raises: 99,999 outputs and one dead letter with the text and a traceback
 * line naming the file and line of the error. The pipeline keeps running. */
TEST(lua_error_one_in_100k) {
  sl_engine *e = sl_test_engine(2, false);
  sl_error_t err;
  sl_error_init(&err);
  const char *lua = "function f(r)\n"
                    "  if r == 77777 then error('bad record ' .. r) end\n"
                    "  return r\n"
                    "end\n";
  sl_pipeline *p;
  ASSERT_OK(sl_pipeline_new(e, "t", &p, &err), &err);
  ASSERT_OK(sl_pipeline_add_lua(p, lua, strlen(lua), "errors.lua", 10, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 100000}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "map", "{\"fn\": \"f\", \"name\": \"m\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "null", NULL, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"dl\", \"input\": []}", &err), &err);
  ASSERT_OK(sl_pipeline_set_dead_letter(p, "dl", &err), &err);
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  sl_value v;
  ASSERT_OK(sl_collect_pull(sl_pipeline_collect(p, "dl"), &v, -1), NULL);
  const char *msg = sl_str_data(sl_map_getc(&v, "error"));
  if (!strstr(msg, "errors.lua:11: bad record 77777")) SL__FAIL("message: %s", msg);
  if (!strstr(msg, "stack traceback") || !strstr(msg, "errors.lua:11: in function")) SL__FAIL("traceback: %s", msg);
  ASSERT_EQ(sl_map_getc(&v, "record")->u.i, 77777);
  ASSERT_STR(sl_str_data(sl_map_getc(&v, "stage")), "m");
  sl_value_free(v);
  ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
  sl_stage_stats s;
  ASSERT_OK(sl_pipeline_stats(p, 1, &s), NULL);
  ASSERT_EQ(s.in, 100000);
  ASSERT_EQ(s.out, 99999);
  ASSERT_EQ(s.errors, 1);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* Configuration errors are found when the stage is added: a syntax error names the line, an
 * unknown global function is named. */
TEST(lua_config_errors) {
  sl_engine *e = sl_test_engine(1, false);
  sl_error_t err;
  sl_pipeline *p;
  sl_error_init(&err);
  ASSERT_OK(sl_pipeline_new(e, "t", &p, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", NULL, &err), &err);
  int rc = sl_pipeline_add_json(p, "map", "{\"fn\": \"r.x +\", \"_where\": \"p.yaml:7:9: \"}", &err);
  ASSERT_EQ(rc, SL_ECONFIG);
  if (!strstr(err.msg, "p.yaml:7:9: stage 'map#2': Lua syntax error: p.yaml:7:")) SL__FAIL("message: %s", err.msg);
  rc = sl_pipeline_add_json(p, "filter", "{\"fn\": \"nosuch\", \"_where\": \"p.yaml:8:3: \"}", &err);
  ASSERT_EQ(rc, SL_ECONFIG);
  if (!strstr(err.msg, "no function named 'nosuch'")) SL__FAIL("message: %s", err.msg);
  const char *bad = "function f(\n";
  rc = sl_pipeline_add_lua(p, bad, strlen(bad), "p.yaml", 3, &err);
  ASSERT_EQ(rc, SL_ECONFIG);
  if (!strstr(err.msg, "p.yaml:4:")) SL__FAIL("message: %s", err.msg);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* Runs a pipeline of stages on engine e and returns the collected records and elapsed time. */
static int run_timed(sl_engine *e, const char *lua, const char *const stages[][2], size_t n, sl_value *out,
                     double *elapsed, sl_error_t *err) {
  sl_pipeline *p;
  *out = sl_array(0);
  int rc = sl_pipeline_new(e, "t", &p, err);
  if (rc) return rc;
  if (lua) rc = sl_pipeline_add_lua(p, lua, strlen(lua), "test.lua", 1, err);
  for (size_t i = 0; i < n && rc == 0; i++) rc = sl_pipeline_add_json(p, stages[i][0], stages[i][1], err);
  if (rc == 0) rc = sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", err);
  if (rc == 0) rc = sl_pipeline_start(p, err);
  if (rc == 0) {
    sl_value v;
    while (sl_collect_pull(sl_pipeline_collect(p, "out"), &v, -1) == 0) sl_array_push(out, v);
    rc = sl_pipeline_wait(p, -1, err);
    *elapsed = sl_pipeline_elapsed(p);
  }
  sl_pipeline_free(p);
  return rc;
}

/* A map that sleeps keeps order across parallel instances, on the virtual clock: each of the 2
 * instances sleeps once per record, batch by batch. */
TEST(lua_sleep_map_ordered) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  const char *st[][2] = {{"generate", "{\"count\": 1000}"},
                         {"map", "{\"fn\": \"function(r) if r % 100 == 0 then sluice.sleep('1s') end return r end\", \"parallelism\": 2}"},
                         {"map", "{\"fn\": \"r + 0\", \"parallelism\": 2}"}};
  sl_value out;
  double el = 0;
  ASSERT_OK(run_timed(e, NULL, st, 3, &out, &el, &err), &err);
  ASSERT_EQ(sl_array_len(&out), 1000);
  for (size_t i = 0; i < 1000; i++) ASSERT_EQ(int_at(&out, i), (int64_t)i + 1);
  if (el < 1.0 || el > 10.0) SL__FAIL("elapsed %f", el);
  sl_value_free(out);
  sl_engine_free(e);
}

/* buffer_unordered, concurrency 200, 1,000 calls of one second each: 5 s of virtual time
 * exactly, never more than 200 in flight (seen through a counter), every record once. */
TEST(lua_buffer_unordered_virtual) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  const char *lua = "local inflight = sluice.counter('inflight')\n"
                    "function call(r)\n"
                    "  local n = inflight:inc()\n"
                    "  sluice.sleep('1s')\n"
                    "  inflight:inc(-1)\n"
                    "  return { r = r, n = n, t = sluice.now() }\n"
                    "end\n";
  const char *st[][2] = {{"generate", "{\"count\": 1000}"}, {"buffer_unordered", "{\"concurrency\": 200, \"fn\": \"call\"}"}};
  sl_value out;
  double el = 0;
  ASSERT_OK(run_timed(e, lua, st, 2, &out, &el, &err), &err);
  ASSERT_EQ(sl_array_len(&out), 1000);
  if (el != 5.0) SL__FAIL("elapsed %.9f, want 5 s", el);
  char seen[1001] = {0};
  int64_t maxn = 0;
  for (size_t i = 0; i < 1000; i++) {
    const sl_value *m = sl_array_get(&out, i);
    int64_t r = sl_map_getc(m, "r")->u.i, n = sl_map_getc(m, "n")->u.i;
    ASSERT(r >= 1 && r <= 1000 && !seen[r]);
    seen[r] = 1;
    if (n > maxn) maxn = n;
  }
  ASSERT_EQ(maxn, 200);
  sl_value_free(out);
  const char *st2[][2] = {{"generate", "{\"count\": 1000}"},
                          {"buffered", "{\"concurrency\": 200, \"fn\": \"function(r) sluice.sleep((r * 7919) % 13 / 10) return r end\"}"}};
  ASSERT_OK(run_timed(e, lua, st2, 2, &out, &el, &err), &err);
  ASSERT_EQ(sl_array_len(&out), 1000);
  for (size_t i = 0; i < 1000; i++) ASSERT_EQ(int_at(&out, i), (int64_t)i + 1);
  sl_value_free(out);
  sl_engine_free(e);
}

/* An endless loop is stopped by the instruction budget; a memory bomb by the memory limit. The
 * pipeline goes on with the next record in both cases. */
TEST(lua_limits) {
  sl_engine *e = sl_test_engine(1, false);
  sl_error_t err;
  sl_error_init(&err);
  const char *lua = "function f(r)\n"
                    "  if r == 2 then while true do end end\n"
                    "  if r == 4 then local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 64) .. i end end\n"
                    "  return r\n"
                    "end\n";
  sl_pipeline *p;
  ASSERT_OK(sl_pipeline_new(e, "t", &p, &err), &err);
  ASSERT_OK(sl_pipeline_set(p, "lua_memory_limit", sl_cstr("32MiB"), NULL, &err), &err);
  ASSERT_OK(sl_pipeline_set(p, "lua_instruction_limit", sl_int(5000000), NULL, &err), &err);
  ASSERT_OK(sl_pipeline_add_lua(p, lua, strlen(lua), "limits.lua", 1, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 5}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "map", "\"f\"", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"dl\", \"input\": []}", &err), &err);
  ASSERT_OK(sl_pipeline_set_dead_letter(p, "dl", &err), &err);
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  sl_value v;
  int outs = 0;
  while (sl_collect_pull(sl_pipeline_collect(p, "out"), &v, -1) == 0) {
    outs++;
    sl_value_free(v);
  }
  ASSERT_EQ(outs, 3);
  ASSERT_OK(sl_collect_pull(sl_pipeline_collect(p, "dl"), &v, -1), NULL);
  if (!strstr(sl_str_data(sl_map_getc(&v, "error")), "instruction limit")) SL__FAIL("%s", sl_str_data(sl_map_getc(&v, "error")));
  sl_value_free(v);
  ASSERT_OK(sl_collect_pull(sl_pipeline_collect(p, "dl"), &v, -1), NULL);
  if (!strstr(sl_str_data(sl_map_getc(&v, "error")), "memory limit")) SL__FAIL("%s", sl_str_data(sl_map_getc(&v, "error")));
  sl_value_free(v);
  ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* A sandboxed pipeline cannot run programs, open files outside its paths, or load bytecode. */
TEST(lua_sandbox) {
  sl_engine *e = sl_test_engine(1, false);
  sl_error_t err;
  sl_error_init(&err);
  const char *lua = "function f(r)\n"
                    "  local ok, e\n"
                    "  if r == 1 then ok, e = pcall(os.execute, 'true') end\n"
                    "  if r == 2 then ok, e = pcall(io.open, '/etc/passwd') end\n"
                    "  if r == 3 then ok, e = pcall(io.popen, 'ls') end\n"
                    "  if r == 4 then ok, e = pcall(load, string.dump(function() end)) ; if ok and e then ok = true else ok = false end end\n"
                    "  if r == 5 then ok = package.loadlib ~= nil or debug ~= nil end\n"
                    "  return ok and 'allowed' or 'denied'\n"
                    "end\n";
  sl_pipeline *p;
  ASSERT_OK(sl_pipeline_new(e, "t", &p, &err), &err);
  ASSERT_OK(sl_pipeline_set(p, "sandbox", sl_bool(true), NULL, &err), &err);
  ASSERT_OK(sl_pipeline_add_lua(p, lua, strlen(lua), "sandbox.lua", 1, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 5}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "map", "\"f\"", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", &err), &err);
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  sl_value v;
  int n = 0;
  while (sl_collect_pull(sl_pipeline_collect(p, "out"), &v, -1) == 0) {
    n++;
    if (strcmp(sl_str_data(&v), "denied") != 0) SL__FAIL("record %d was allowed", n);
    sl_value_free(v);
  }
  ASSERT_EQ(n, 5);
  ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* reduce with keyed state; a lua generator that sleeps (virtual clock); a lua sink. */
TEST(lua_reduce_source_sink) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  const char *st[][2] = {{"lua", "\"function(i) if i > 10 then return nil end if i % 5 == 0 then sluice.sleep(1) end return i end\""},
                         {"reduce", "{\"fn\": \"function(acc, r) return acc + r end\", \"init\": 0, \"key\": \"r % 2 == 0 and 'even' or 'odd'\"}"}};
  sl_value out;
  double el = 0;
  ASSERT_OK(run_timed(e, NULL, st, 2, &out, &el, &err), &err);
  ASSERT_EQ(sl_array_len(&out), 2);
  sl_buf b;
  sl_buf_init(&b);
  sl_value_to_json(&out, &b);
  ASSERT_STR(b.data, "[{\"key\":\"odd\",\"value\":25},{\"key\":\"even\",\"value\":30}]");
  sl_buf_close(&b);
  if (el != 2.0) SL__FAIL("elapsed %f", el);
  sl_value_free(out);
  const char *st2[][2] = {{"generate", "{\"count\": 1000}"}, {"reduce", "{\"fn\": \"function(acc, r) acc.n = acc.n + 1; acc.s = acc.s + r; return acc end\", \"init\": {\"n\": 0, \"s\": 0}}"}};
  ASSERT_OK(run_timed(e, NULL, st2, 2, &out, &el, &err), &err);
  sl_buf_init(&b);
  sl_value_to_json(&out, &b);
  ASSERT_STR(b.data, "[{\"n\":1000,\"s\":500500}]");
  sl_buf_close(&b);
  sl_value_free(out);
  /* lua_sink: per record (in order) and per batch, both writing to files the test reads */
  char dir[] = "/tmp/sluice-lua-XXXXXX", recs[256], batches[256], lua[1024];
  ASSERT(mkdtemp(dir));
  snprintf(recs, sizeof recs, "%s/recs", dir);
  snprintf(batches, sizeof batches, "%s/batches", dir);
  snprintf(lua, sizeof lua, "recs = assert(io.open('%s', 'a'))\nbatches = assert(io.open('%s', 'a'))\n", recs, batches);
  sl_pipeline *p;
  ASSERT_OK(sl_pipeline_new(e, "t", &p, &err), &err);
  ASSERT_OK(sl_pipeline_add_lua(p, lua, strlen(lua), "s.lua", 1, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 1000, \"name\": \"g\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "lua_sink", "\"recs:write(r, '\\\\n') recs:flush()\"", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "lua_sink", "{\"fn\": \"function(b) batches:write(#b, ' ', b[#b], '\\\\n') batches:flush() end\", \"batch\": true, \"input\": \"g\"}", &err), &err);
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  sl_stage_stats s;
  ASSERT_OK(sl_pipeline_stats(p, 1, &s), NULL);
  ASSERT_EQ(s.out, 1000);
  sl_pipeline_free(p);
  char *text = slurp(recs);
  ASSERT(text);
  int64_t want = 1;
  for (char *line = text; *line; line = strchr(line, '\n') + 1, want++)
    if (strtoll(line, NULL, 10) != want) SL__FAIL("record %lld is '%.10s'", (long long)want, line);
  ASSERT_EQ(want, 1001);
  text = slurp(batches);
  ASSERT(text);
  long sum = 0, last = 0, n, at;
  for (char *line = text; *line && sscanf(line, "%ld %ld", &n, &at) == 2; line = strchr(line, '\n') + 1) sum += n, last = at;
  ASSERT_EQ(sum, 1000);
  ASSERT_EQ(last, 1000);
  remove(recs);
  remove(batches);
  rmdir(dir);
  sl_engine_free(e);
}

/* ---- Lua pipeline scripts (the Lua front end) ---- */

/* Upvalues cross to every worker: a table of thresholds, a local helper function, a required
 * module, and a global helper of the script. */
TEST(lua_script_upvalues) {
  char dir[] = "/tmp/sluice-lua-XXXXXX", path[256], mod[256], out[256], script[2048];
  ASSERT(mkdtemp(dir));
  snprintf(mod, sizeof mod, "%s/thresholds.lua", dir);
  write_text(mod, "local M = {}\n"
                  "function M.level(n) if n >= 500 then return 'error' elseif n >= 400 then return 'warn' end return 'ok' end\n"
                  "return M\n");
  snprintf(out, sizeof out, "%s/out.jsonl", dir);
  snprintf(script, sizeof script,
           "package.path = '%s/?.lua;' .. package.path\n"
           "local sluice = require 'sluice'\n"
           "local th = require 'thresholds'\n"
           "local limits = { low = 10, high = 90 }\n"
           "local function scale(x) return x * 2 end\n"
           "function global_helper(x) return x + 1 end\n"
           "local p = sluice.pipeline { workers = 2 }\n"
           "p:generate(100)\n"
           " :map(function(r) return { n = scale(r), lvl = th.level(r * 10), g = global_helper(r) } end, { parallelism = 2 })\n"
           " :filter(function(r) return r.n > limits.low and r.n < limits.high end)\n"
           " :file { path = '%s', codec = 'jsonl' }\n"
           "local stats = p:run()\n"
           "assert(stats.stages['map#2']['in'] == 100 and stats.stages['filter#3'].out == 39, 'stats')\n",
           dir, out);
  snprintf(path, sizeof path, "%s/p.lua", dir);
  write_text(path, script);
  sl_error_t err;
  sl_error_init(&err);
  ASSERT_OK(sl_script_run_file(path, NULL, &err), &err);
  char *text = slurp(out);
  ASSERT(text);
  if (!strstr(text, "{\"g\":7,\"lvl\":\"ok\",\"n\":12}\n")) SL__FAIL("output: %.200s", text);
  if (!strstr(text, "{\"g\":45,\"lvl\":\"warn\",\"n\":88}\n")) SL__FAIL("output: %.200s", text);
  int lines = 0;
  for (char *c = text; *c; c++) lines += *c == '\n';
  ASSERT_EQ(lines, 39);
  remove(out);
  remove(mod);
  remove(path);
  rmdir(dir);
}

/* Script errors: an unknown stage kind names the script line and suggests; an upvalue that
 * cannot cross names the function and the upvalue; a failing run is EFAILED. */
TEST(lua_script_errors) {
  char dir[] = "/tmp/sluice-lua-XXXXXX", path[256];
  ASSERT(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/bad.lua", dir);
  sl_error_t err;
  sl_error_init(&err);
  write_text(path, "local sluice = require 'sluice'\nlocal p = sluice.pipeline {}\np:generate(3)\n  :mapp(function(r) return r end)\n");
  ASSERT_EQ(sl_script_run_file(path, NULL, &err), SL_ECONFIG);
  if (!strstr(err.msg, "bad.lua:3:1: unknown stage kind 'mapp': did you mean 'map'?")) SL__FAIL("%s", err.msg);
  write_text(path, "local sluice = require 'sluice'\nlocal fh = io.open('/dev/null', 'w')\nlocal p = sluice.pipeline {}\n"
                   "p:generate(3):map(function(r) fh:write(r) return r end)\n");
  ASSERT_EQ(sl_script_run_file(path, NULL, &err), SL_ECONFIG);
  if (!strstr(err.msg, "upvalue 'fh'") || !strstr(err.msg, "bad.lua:4")) SL__FAIL("%s", err.msg);
  write_text(path, "local sluice = require 'sluice'\nlocal p = sluice.pipeline {}\n"
                   "p:generate(3):map(function(r) return r end, { on_error = 'fail' }):map('error(\"boom\")', { on_error = 'fail' }):null()\n"
                   "p:run()\n");
  ASSERT_EQ(sl_script_run_file(path, NULL, &err), SL_EFAILED);
  if (!strstr(err.msg, "boom")) SL__FAIL("%s", err.msg);
  write_text(path, "local x = \n");
  ASSERT_EQ(sl_script_run_file(path, NULL, &err), SL_ECONFIG);
  if (!strstr(err.msg, "bad.lua:")) SL__FAIL("%s", err.msg);
  remove(path);
  rmdir(dir);
}

/* Library members as upvalues (local fmt = string.format) cross by name; "r.ok" is an
 * expression, not a global name; a script's global function can be named as a string. */
TEST(lua_script_library_upvalues) {
  char dir[] = "/tmp/sluice-lua-XXXXXX", path[256], out[256], script[2048];
  ASSERT(mkdtemp(dir));
  snprintf(out, sizeof out, "%s/out.jsonl", dir);
  snprintf(script, sizeof script,
           "local sluice = require 'sluice'\n"
           "local fmt, insert = string.format, table.insert\n"
           "function tag(r) local t = {} insert(t, fmt('n=%%d', r.n)) return { s = t[1], ok = r.ok } end\n"
           "local p = sluice.pipeline { workers = 2 }\n"
           "p:generate(6):map(function(r) return { n = r, ok = r %% 2 == 0 } end):filter('r.ok'):map('tag')\n"
           " :file { path = '%s', codec = 'jsonl' }\n"
           "p:run()\n", out);
  snprintf(path, sizeof path, "%s/p.lua", dir);
  write_text(path, script);
  sl_error_t err;
  sl_error_init(&err);
  ASSERT_OK(sl_script_run_file(path, NULL, &err), &err);
  char *text = slurp(out);
  ASSERT(text);
  ASSERT_STR(text, "{\"ok\":true,\"s\":\"n=2\"}\n{\"ok\":true,\"s\":\"n=4\"}\n{\"ok\":true,\"s\":\"n=6\"}\n");
  remove(out);
  remove(path);
  rmdir(dir);
}

/* Records handed between fused Lua stages as Lua tables (vm/luafn.c, "Carrying"): a chain of
 * the carrying kinds gives exact results, also when a stage in it parks; a value that cannot
 * be a record fails only where it would leave Lua, naming the stage that made it; a record
 * failing in a later stage reaches the dead letter as a record, not as a placeholder. */
TEST(lua_carry) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  const char *lua = "function mk(i) return {i = i, sq = i * i, tag = 'n' .. i, f = (i % 10 == 0) and print or nil} end\n"
                    "function slow(r) if r.i % 250 == 0 then sluice.sleep('1s') end return r end\n"
                    "function thin(r) r.f = nil; r.f2 = (r.i == 500) and print or nil; return r end\n"
                    "function boom(r) if r.i == 778 then error('boom ' .. r.i) end return true end\n";
  sl_pipeline *p;
  ASSERT_OK(sl_pipeline_new(e, "t", &p, &err), &err);
  ASSERT_OK(sl_pipeline_add_lua(p, lua, strlen(lua), "carry.lua", 1, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 1000}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "map", "{\"fn\": \"mk\", \"name\": \"mk\", \"parallelism\": 2}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "map", "{\"fn\": \"slow\", \"parallelism\": 2}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "filter", "{\"fn\": \"r.i % 2 == 0\", \"parallelism\": 2}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "filter_map", "{\"fn\": \"thin\", \"name\": \"thin\", \"parallelism\": 2}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "inspect", "{\"fn\": \"function(r) end\", \"parallelism\": 2}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "filter", "{\"fn\": \"boom\", \"name\": \"boom\", \"parallelism\": 2}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"dl\", \"input\": []}", &err), &err);
  ASSERT_OK(sl_pipeline_set_dead_letter(p, "dl", &err), &err);
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  sl_collect *out = sl_pipeline_collect(p, "out"), *dl = sl_pipeline_collect(p, "dl");
  sl_value v;
  int64_t want = 2;
  while (sl_collect_pull(out, &v, -1) == 0) {
    if (want == 500 || want == 778) want += 2; /* 500 cannot be a record, 778 failed */
    if (v.type != SL_TMAP || sl_map_len(&v) != 3) SL__FAIL("record %lld is not a 3-field map", (long long)want);
    ASSERT_EQ(sl_map_getc(&v, "i")->u.i, want);
    ASSERT_EQ(sl_map_getc(&v, "sq")->u.i, want * want);
    sl_value_free(v);
    want += 2;
  }
  ASSERT_EQ(want, 1002);
  int got = 0;
  while (sl_collect_pull(dl, &v, -1) == 0) {
    const char *msg = sl_str_data(sl_map_getc(&v, "error"));
    const char *stage = sl_str_data(sl_map_getc(&v, "stage"));
    ASSERT_STR(stage, "boom");
    if (sl_map_getc(&v, "record")->type == SL_TNIL) {
      /* converted where it leaves Lua (after boom), named after the stage that made it */
      if (!strstr(msg, "made by stage 'thin'") || !strstr(msg, "function")) SL__FAIL("message: %s", msg);
    } else {
      if (!strstr(msg, "carry.lua:4: boom 778")) SL__FAIL("message: %s", msg);
      const sl_value *r = sl_map_getc(&v, "record");
      if (r->type != SL_TMAP) SL__FAIL("the failed record is a %s", sl_type_name(sl_typeof(r)));
    }
    got++;
    sl_value_free(v);
  }
  ASSERT_EQ(got, 2);
  ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
  sl_pipeline_free(p);
  sl_engine_free(e);
}
