/*
 * test_partition.c — partition_by through the embedding API: a C stage kind of the program's own
 * gets one instance per key with no code for it (its key from sl_stage_key), per-key state and
 * order under parallelism 2, the hidden key node kept out of the stats, and option errors.
 */
#include <string.h>

#include "test.h"

/* "tally": a stateful kind that counts its records and checks they come in order; at the end it
 * emits {key, n, first, last, ordered}. */
typedef struct tally {
  sl_stage *st;
  int64_t n, first, last;
  bool ordered;
} tally;

static int tally_init(void *ctx, sl_stage *st, sl_error_t *err) {
  tally *t = ctx;
  t->st = st;
  t->ordered = true;
  return 0;
}

static int tally_process(void *ctx, sl_batch *in, sl_emitter *em) {
  tally *t = ctx;
  for (uint32_t i = 0; i < in->len; i++) {
    int64_t v = in->recs[i].u.i;
    if (t->n++ == 0) t->first = v;
    else if (v <= t->last) t->ordered = false;
    t->last = v;
  }
  return 0;
}

static int tally_flush(void *ctx, sl_emitter *em) {
  tally *t = ctx;
  const sl_value *key = sl_stage_key(t->st);
  sl_value m = sl_map(5);
  sl_map_setc(&m, "key", key ? sl_value_ref(key) : sl_nil());
  sl_map_setc(&m, "n", sl_int(t->n));
  sl_map_setc(&m, "first", sl_int(t->first));
  sl_map_setc(&m, "last", sl_int(t->last));
  sl_map_setc(&m, "ordered", sl_bool(t->ordered));
  return sl_emit(em, SL_NO_ORIGIN, m);
}

static const sl_stage_kind tally_kind = {
    .abi = SL_STAGE_ABI,
    .name = "tally",
    .doc = "test: counts records, checks their order",
    .ctx_size = sizeof(tally),
    .init = tally_init,
    .process = tally_process,
    .flush = tally_flush,
};

static int add(sl_pipeline *p, const char *kind, const char *json, sl_error_t *err) {
  sl_error_init(err);
  return sl_pipeline_add_json(p, kind, json, err);
}

TEST(partition_custom_kind) {
  sl_engine *e = sl_test_engine(2, false);
  sl_error_t err;
  ASSERT_OK(sl_engine_register(e, &tally_kind, &err), &err);
  sl_pipeline *p = NULL;
  ASSERT_OK(sl_pipeline_new(e, "t", &p, &err), &err);
  ASSERT_OK(add(p, "generate", "{\"count\": 100000}", &err), &err);
  ASSERT_OK(add(p, "tally", "{\"name\": \"count\", \"partition_by\": \"r % 10\", \"parallelism\": 2}", &err), &err);
  ASSERT_OK(add(p, "collect", "{\"name\": \"out\"}", &err), &err);
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  sl_collect *c = sl_pipeline_collect(p, "out");
  sl_value v;
  bool seen[10] = {false};
  int n = 0;
  while (sl_collect_pull(c, &v, 0) == SL_OK) {
    int64_t k = sl_map_getc(&v, "key")->u.i;
    ASSERT(k >= 0 && k < 10 && !seen[k]);
    seen[k] = true;
    ASSERT_EQ(sl_map_getc(&v, "n")->u.i, 10000);
    ASSERT_EQ(sl_map_getc(&v, "first")->u.i, k ? k : 10);
    ASSERT_EQ(sl_map_getc(&v, "last")->u.i, k ? 99990 + k : 100000);
    ASSERT(sl_map_getc(&v, "ordered")->u.b);
    sl_value_free(v);
    n++;
  }
  ASSERT_EQ(n, 10);
  ASSERT_EQ(sl_pipeline_stage_count(p), 3); /* the key node is not a stage of the user's */
  sl_stage_stats s;
  ASSERT_EQ(sl_pipeline_stats(p, 1, &s), 0);
  ASSERT_STR(s.name, "count");
  ASSERT_EQ(s.in, 100000);
  ASSERT_EQ(s.out, 10);
  ASSERT_EQ(s.parallelism, 2);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

TEST(partition_errors) {
  sl_engine *e = sl_test_engine(1, true);
  sl_pipeline *p = NULL;
  sl_error_t err;
  ASSERT_OK(sl_pipeline_new(e, "t", &p, &err), &err);
  const struct {
    const char *kind, *opts, *msg;
  } bad[] = {
      {"map", "{\"fn\": \"r\", \"partition_by\": \"r\"}", "partition_by applies to stages that keep state"},
      {"collect", "{\"partition_by\": \"r\"}", "a collect stage cannot be partitioned"},
      {"take", "{\"count\": 1, \"partition_by\": 3}", "partition_by must be a Lua function or expression of r"},
      {"take", "{\"count\": 1, \"partition_by\": \"r +\"}", "take#"},
      {"take", "{\"count\": 1, \"parallelism\": 2}", "give partition_by to run one instance per key"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ASSERT_EQ(add(p, bad[i].kind, bad[i].opts, &err), SL_ECONFIG);
    if (!strstr(err.msg, bad[i].msg)) fprintf(stderr, "    got: %s\n", err.msg);
    ASSERT(strstr(err.msg, bad[i].msg) != NULL);
  }
  sl_pipeline_free(p);
  sl_engine_free(e);
}
