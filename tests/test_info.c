/*
 * test_info.c — sl_pipeline_stage_info: the graph as built, for `sluice graph` and other tools.
 */
#include "test.h"

TEST(pipeline_stage_info) {
  sl_engine *e = sl_test_engine(1, true);
  sl_pipeline *p;
  sl_error_t err;
  sl_error_init(&err);
  sl_pipeline_new(e, "info", &p, NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 5, \"_where\": \"f.yaml:3:5: \"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "take", "{\"count\": 3, \"name\": \"first\", \"on_error\": \"skip\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "skip", "{\"count\": 1, \"input\": \"generate#1\", "
                                           "\"queue\": {\"capacity\": 8, \"on_full\": \"drop_oldest\"}}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "null", "{\"input\": [\"first\", \"skip#3\"]}", &err), &err);
  ASSERT_EQ(sl_pipeline_stage_count(p), 4);

  sl_stage_info si;
  ASSERT_OK(sl_pipeline_stage_info(p, 0, &si), NULL);
  ASSERT_STR(si.name, "generate#1");
  ASSERT_STR(si.kind, "generate");
  ASSERT_STR(si.where, "f.yaml:3:5: ");
  ASSERT_EQ(si.ninputs, 0);
  ASSERT(si.flags & SL_STAGE_SOURCE);
  ASSERT_EQ(sl_map_getc(si.opts, "count")->u.i, 5);
  ASSERT(sl_map_getc(si.opts, "_where") == NULL); /* common keys are not options */

  ASSERT_OK(sl_pipeline_stage_info(p, 1, &si), NULL);
  ASSERT_STR(si.name, "first");
  ASSERT_STR(si.where, "");
  ASSERT_EQ(si.ninputs, 1);                 /* default input: the previous stage */
  ASSERT_STR(si.inputs[0], "generate#1");
  ASSERT_STR(si.on_full, "block");
  ASSERT_EQ(si.queue_cap, 1024);
  ASSERT_STR(si.on_error, "skip");
  ASSERT_EQ(si.parallelism, 1);
  ASSERT(sl_map_getc(si.opts, "name") == NULL);

  ASSERT_OK(sl_pipeline_stage_info(p, 2, &si), NULL);
  ASSERT_EQ(si.ninputs, 1);
  ASSERT_STR(si.inputs[0], "generate#1");
  ASSERT_EQ(si.queue_cap, 8);
  ASSERT_STR(si.on_full, "drop_oldest");
  ASSERT(si.on_error == NULL);              /* the pipeline's default */

  ASSERT_OK(sl_pipeline_stage_info(p, 3, &si), NULL);
  ASSERT_EQ(si.ninputs, 2);
  ASSERT_STR(si.inputs[0], "first");
  ASSERT_STR(si.inputs[1], "skip#3");
  ASSERT(si.flags & SL_STAGE_SINK);
  ASSERT(sl_typeof(si.opts) == SL_TNIL || sl_map_len(si.opts) == 0); /* only common keys given */

  ASSERT_EQ(sl_pipeline_stage_info(p, 4, &si), SL_ENOTFOUND);
  /* the same after a run: stats and info agree on names */
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  ASSERT_OK(sl_pipeline_stage_info(p, 1, &si), NULL);
  ASSERT_STR(si.inputs[0], "generate#1");
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* sl_pipeline_lua_memory: the bytes the pipeline's Lua states hold (0 without Lua); a function
 * that keeps a big table shows in it. */
TEST(pipeline_lua_memory) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  sl_pipeline *p;
  ASSERT_OK(sl_pipeline_new(e, "plain", &p, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 3}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "null", NULL, &err), &err);
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  ASSERT_EQ(sl_pipeline_lua_memory(p), 0);
  sl_pipeline_free(p);

  ASSERT_OK(sl_pipeline_new(e, "lua", &p, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 3}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "map", "{\"fn\": \"function(r) big = big or {} for i = 1, 100000 do big[i] = i end return r end\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "null", NULL, &err), &err);
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  ASSERT(sl_pipeline_lua_memory(p) > 100000 * 8); /* the table's array part alone */
  sl_pipeline_free(p);
  sl_engine_free(e);
}
