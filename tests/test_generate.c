/*
 * test_generate.c — the generate source with `fn` through the embedding API: fn(i) for
 * i = 1..count (nil emits nothing for that i), sluice.emit, errors under on_error, a function
 * that waits on the virtual clock, an endless generator stopped by take, configuration errors.
 */
#include "test.h"

/* Runs generate (options json) -> [take] -> collect "out" (and a dead-letter collect "dl" when
 * dl is not NULL); the records in *out, the dead letters in *dl, generate's stats in *gs. */
static int run_gen(sl_engine *e, const char *lua, const char *gen, const char *take, sl_value *out, sl_value *dl,
                   sl_stage_stats *gs, sl_error_t *err) {
  sl_pipeline *p;
  *out = sl_array(0);
  if (dl) *dl = sl_array(0);
  int rc = sl_pipeline_new(e, "t", &p, err);
  if (rc) return rc;
  if (lua) rc = sl_pipeline_add_lua(p, lua, strlen(lua), "t.lua", 1, err);
  if (rc == 0) rc = sl_pipeline_add_json(p, "generate", gen, err);
  if (rc == 0 && take) rc = sl_pipeline_add_json(p, "take", take, err);
  if (rc == 0) rc = sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", err);
  if (rc == 0 && dl) rc = sl_pipeline_add_json(p, "collect", "{\"name\": \"dl\", \"input\": []}", err);
  if (rc == 0 && dl) rc = sl_pipeline_set_dead_letter(p, "dl", err);
  if (rc == 0) rc = sl_pipeline_start(p, err);
  if (rc == 0) {
    sl_value v;
    while (sl_collect_pull(sl_pipeline_collect(p, "out"), &v, -1) == 0) sl_array_push(out, v);
    if (dl)
      while (sl_collect_pull(sl_pipeline_collect(p, "dl"), &v, -1) == 0) sl_array_push(dl, v);
    rc = sl_pipeline_wait(p, -1, err);
    if (gs) sl_pipeline_stats(p, 0, gs);
  }
  sl_pipeline_free(p);
  return rc;
}

static char *json_of(const sl_value *v) {
  sl_buf b;
  sl_buf_init(&b);
  sl_value_to_json(v, &b);
  return b.data;
}

#define ASSERT_JSON(v, want)      \
  do {                            \
    char *sl__j = json_of(v);     \
    int sl__same = strcmp(sl__j, want) == 0; \
    if (!sl__same) fprintf(stderr, "    got %s\n", sl__j); \
    free(sl__j);                  \
    ASSERT(sl__same);             \
  } while (0)

TEST(generate_fn_records) {
  sl_engine *e = sl_test_engine(2, false);
  sl_error_t err;
  sl_error_init(&err);
  sl_value out;
  sl_stage_stats gs;
  /* nil emits nothing for that i; sluice.emit goes before the result; count counts the i's */
  const char *lua = "function f(i)\n"
                    "  if i % 3 == 0 then return nil end\n"
                    "  if i == 4 then sluice.emit('before 4') end\n"
                    "  return { i = i, sq = i * i }\n"
                    "end\n";
  ASSERT_OK(run_gen(e, lua, "{\"count\": 6, \"fn\": \"f\"}", NULL, &out, NULL, &gs, &err), &err);
  ASSERT_JSON(&out, "[{\"i\":1,\"sq\":1},{\"i\":2,\"sq\":4},\"before 4\",{\"i\":4,\"sq\":16},{\"i\":5,\"sq\":25}]");
  ASSERT_EQ(gs.out, 5);
  ASSERT_EQ(gs.errors, 0);
  sl_value_free(out);
  /* an expression over i, without any pipeline Lua code */
  ASSERT_OK(run_gen(e, NULL, "{\"count\": 4, \"fn\": \"i * 1.5\"}", NULL, &out, NULL, NULL, &err), &err);
  ASSERT_JSON(&out, "[1.5,3.0,4.5,6.0]");
  sl_value_free(out);
  /* without end, stopped by take downstream */
  ASSERT_OK(run_gen(e, NULL, "{\"fn\": \"function(i) return -i end\"}", "{\"count\": 1000}", &out, NULL, NULL, &err), &err);
  ASSERT_EQ(sl_array_len(&out), 1000);
  ASSERT_EQ(sl_array_get(&out, 999)->u.i, -1000);
  sl_value_free(out);
  /* without fn: the integers, as before */
  ASSERT_OK(run_gen(e, NULL, "{\"count\": 3}", NULL, &out, NULL, NULL, &err), &err);
  ASSERT_JSON(&out, "[1,2,3]");
  sl_value_free(out);
  sl_engine_free(e);
}

/* A call that raises or returns what cannot be a record fails record i under on_error. */
TEST(generate_fn_errors) {
  sl_engine *e = sl_test_engine(1, false);
  sl_error_t err;
  sl_error_init(&err);
  sl_value out, dl;
  sl_stage_stats gs;
  const char *lua = "function f(i)\n"
                    "  if i == 2 then error('two is bad') end\n"
                    "  if i == 3 then return { f = print } end\n"
                    "  return i\n"
                    "end\n";
  ASSERT_OK(run_gen(e, lua, "{\"count\": 4, \"fn\": \"f\", \"name\": \"g\"}", NULL, &out, &dl, &gs, &err), &err);
  ASSERT_JSON(&out, "[1,4]");
  ASSERT_EQ(gs.errors, 2);
  ASSERT_EQ(gs.dead_letter, 2);
  ASSERT_EQ(sl_array_len(&dl), 2);
  const sl_value *d0 = sl_array_get(&dl, 0), *d1 = sl_array_get(&dl, 1);
  ASSERT_EQ(sl_map_getc(d0, "record")->u.i, 2);
  ASSERT(strstr(sl_str_data(sl_map_getc(d0, "error")), "two is bad"));
  ASSERT(strstr(sl_str_data(sl_map_getc(d0, "error")), "t.lua:2"));
  ASSERT_STR(sl_str_data(sl_map_getc(d0, "stage")), "g");
  ASSERT_EQ(sl_map_getc(d1, "record")->u.i, 3);
  ASSERT(strstr(sl_str_data(sl_map_getc(d1, "error")), "cannot be a record"));
  sl_value_free(out);
  sl_value_free(dl);
  /* skip: counted, the rest goes on */
  ASSERT_OK(run_gen(e, lua, "{\"count\": 4, \"fn\": \"f\", \"on_error\": \"skip\"}", NULL, &out, NULL, &gs, &err), &err);
  ASSERT_JSON(&out, "[1,4]");
  ASSERT_EQ(gs.errors, 2);
  sl_value_free(out);
  /* fail: the pipeline fails with the message */
  int rc = run_gen(e, lua, "{\"count\": 4, \"fn\": \"f\", \"on_error\": \"fail\"}", NULL, &out, NULL, NULL, &err);
  ASSERT_EQ(rc, SL_EFAILED);
  ASSERT(strstr(err.msg, "two is bad"));
  sl_value_free(out);
  sl_engine_free(e);
}

/* fn may wait: on the virtual clock the calls keep their order and the rate spaces them. */
TEST(generate_fn_waits) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  sl_value out;
  const char *gen = "{\"count\": 5, \"rate\": 10, \"fn\": \"function(i) sluice.sleep(0.25) return { i = i, t = sluice.now() } end\"}";
  ASSERT_OK(run_gen(e, NULL, gen, NULL, &out, NULL, NULL, &err), &err);
  ASSERT_EQ(sl_array_len(&out), 5);
  double prev = 0;
  for (size_t k = 0; k < 5; k++) {
    const sl_value *r = sl_array_get(&out, k);
    ASSERT_EQ(sl_map_getc(r, "i")->u.i, (int64_t)k + 1);
    double t = sl_map_getc(r, "t")->u.d;
    /* one call at a time, each 0.25 s: the rate (0.1 s apart) is not what limits them */
    ASSERT(t > prev + 0.249 && t < prev + 0.251);
    prev = t;
  }
  sl_value_free(out);
  sl_engine_free(e);
}

TEST(generate_fn_config_errors) {
  sl_engine *e = sl_test_engine(1, false);
  sl_error_t err;
  sl_error_init(&err);
  sl_value out;
  int rc = run_gen(e, NULL, "{\"count\": 2, \"fn\": \"i +\"}", NULL, &out, NULL, NULL, &err);
  sl_value_free(out);
  ASSERT_EQ(rc, SL_ECONFIG);
  ASSERT(strstr(err.msg, "Lua syntax error"));
  rc = run_gen(e, NULL, "{\"count\": 2, \"fn\": \"nosuch\"}", NULL, &out, NULL, NULL, &err);
  sl_value_free(out);
  ASSERT_EQ(rc, SL_ECONFIG);
  ASSERT(strstr(err.msg, "no function named 'nosuch'"));
  rc = run_gen(e, NULL, "{\"count\": 2, \"fn\": [1]}", NULL, &out, NULL, NULL, &err);
  sl_value_free(out);
  ASSERT_EQ(rc, SL_ECONFIG);
  sl_engine_free(e);
}
