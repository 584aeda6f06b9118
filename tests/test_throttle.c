/*
 * test_throttle.c — the throttle stage on the virtual clock: exact release times, bursts, order,
 * no drops under backpressure, a drained stop, and option errors.
 */
#include "test.h"

/* ---- a "stamp" transform: each record becomes {v: record, t: engine clock in ns} ---- */

static int stamp_process(void *ctx, sl_batch *in, sl_emitter *em) {
  sl_stage *st = *(sl_stage **)ctx;
  for (uint32_t i = 0; i < in->len; i++) {
    sl_value m = sl_map(2);
    sl_map_setc(&m, "v", sl_batch_take(in, i));
    sl_map_setc(&m, "t", sl_int(sl_stage_now(st)));
    sl_emit(em, i, m);
  }
  return 0;
}

static int stamp_init(void *ctx, sl_stage *st, sl_error_t *err) {
  *(sl_stage **)ctx = st;
  return 0;
}

static const sl_stage_kind stamp_kind = {
    .abi = SL_STAGE_ABI,
    .name = "stamp",
    .doc = "test: wraps each record with the engine clock",
    .ctx_size = sizeof(sl_stage *),
    .init = stamp_init,
    .process = stamp_process,
};

/* Runs generate(count) -> throttle(json) -> stamp -> collect and checks that record i (from 1)
 * left at want_ns(i). */
static void run_throttle(int64_t count, const char *json, int64_t (*want_ns)(int64_t), double want_elapsed) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  ASSERT_OK(sl_engine_register(e, &stamp_kind, &err), &err);
  sl_pipeline *p;
  sl_pipeline_new(e, "throttle", &p, NULL);
  char gen[64];
  snprintf(gen, sizeof gen, "{\"count\": %lld}", (long long)count);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", gen, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "throttle", json, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "stamp", NULL, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", &err), &err);
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  sl_collect *c = sl_pipeline_collect(p, "out");
  sl_value v;
  int64_t n = 0;
  while (sl_collect_pull(c, &v, 0) == SL_OK) {
    n++;
    int64_t got_v = sl_map_getc(&v, "v")->u.i, got_t = sl_map_getc(&v, "t")->u.i;
    sl_value_free(v);
    ASSERT_EQ(got_v, n);           /* in order, none lost */
    if (got_t != want_ns(n)) fprintf(stderr, "rec %lld t %lld want %lld\n", (long long)n, (long long)got_t, (long long)want_ns(n));
    ASSERT_EQ(got_t, want_ns(n));  /* exactly on time */
  }
  ASSERT_EQ(n, count);
  ASSERT(sl_pipeline_elapsed(p) == want_elapsed);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* rate 2 per 1s, burst 1: one record every 0.5 s, the first at once. */
static int64_t every_half_second(int64_t i) { return (i - 1) * 500000000; }
TEST(throttle_rate_exact) { run_throttle(10, "{\"rate\": 2, \"per\": \"1s\", \"burst\": 1}", every_half_second, 4.5); }

/* rate 5 (burst defaults to 1): one every 0.2 s, the first at once. */
static int64_t fifth(int64_t i) { return (i - 1) * 200000000; }
TEST(throttle_burst_default) { run_throttle(20, "{\"rate\": 5}", fifth, 3.8); }

/* The issue's figures: rate 10 per 1s over 100 records, record i at (i-1)*100 ms; with burst 5
 * the first five at t = 0, then one every 100 ms. */
static int64_t tenth(int64_t i) { return (i - 1) * 100000000; }
static int64_t burst5(int64_t i) { return i <= 5 ? 0 : (i - 5) * 100000000; }
TEST(throttle_issue_exact) {
  run_throttle(100, "{\"rate\": 10, \"per\": \"1s\"}", tenth, 9.9);
  if (sl_test_failed) return;
  run_throttle(100, "{\"rate\": 10, \"per\": \"1s\", \"burst\": 5}", burst5, 9.5);
}

/* on_limit: drop at 10/s over a source of 100/s for 10 s: the records at 0, 100 ms, 200 ms, ...
 * pass (100 of them), the 900 others are shed and counted; nothing waits. */
TEST(throttle_drop_mode) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  ASSERT_OK(sl_engine_register(e, &stamp_kind, &err), &err);
  sl_pipeline *p;
  sl_pipeline_new(e, "shed", &p, NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 1000, \"rate\": 100}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "throttle", "{\"rate\": 10, \"on_limit\": \"drop\", \"name\": \"t\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "stamp", NULL, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", &err), &err);
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  sl_collect *c = sl_pipeline_collect(p, "out");
  sl_value v;
  int64_t n = 0;
  while (sl_collect_pull(c, &v, 0) == SL_OK) {
    int64_t got_v = sl_map_getc(&v, "v")->u.i, got_t = sl_map_getc(&v, "t")->u.i;
    sl_value_free(v);
    ASSERT_EQ(got_v, 10 * n + 1);           /* 1, 11, 21, ...: one in ten */
    ASSERT_EQ(got_t, n * 100000000);        /* when it arrived: shedding never delays */
    n++;
  }
  ASSERT_EQ(n, 100);
  sl_stage_stats s;
  sl_pipeline_stats(p, 1, &s);
  ASSERT_EQ(s.in, 1000);
  ASSERT_EQ(s.out, 100);
  ASSERT_EQ(s.dropped, 900);
  ASSERT(sl_pipeline_elapsed(p) == 9.99); /* the source's last record */
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* rate 3 per second: a third of a second is not a whole number of nanoseconds; the credit
 * left over carries, so record i leaves at ceil((i-1)/3 s) and nothing drifts. */
static int64_t thirds(int64_t i) { return ((i - 1) * 1000000000 + 2) / 3; }
TEST(throttle_rate_fraction) { run_throttle(31, "{\"rate\": 3, \"burst\": 1}", thirds, 10.0); }

/* Many records through a capacity-1 queue: backpressure, no drops. */
TEST(throttle_backpressure_no_drops) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  sl_pipeline *p;
  sl_pipeline_new(e, "throttle", &p, NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 20000}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "throttle", "{\"rate\": 1000, \"queue\": {\"capacity\": 1}}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\", \"queue\": {\"capacity\": 4}}", &err), &err);
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  sl_collect *c = sl_pipeline_collect(p, "out");
  sl_value v;
  int64_t n = 0;
  while (sl_collect_pull(c, &v, -1) == SL_OK) {
    n++;
    ASSERT_EQ(v.u.i, n);
    sl_value_free(v);
  }
  ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
  ASSERT_EQ(n, 20000);
  ASSERT(sl_pipeline_elapsed(p) == 19.999); /* one every ms, the first at once */
  sl_stage_stats s;
  sl_pipeline_stats(p, 1, &s);
  ASSERT_EQ(s.in, 20000);
  ASSERT_EQ(s.out, 20000);
  ASSERT_EQ(s.dropped, 0);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* A drained stop on the real clock lets what the throttle holds go at its rate. */
TEST(throttle_stop_drains) {
  sl_engine *e = sl_test_engine(2, false);
  sl_error_t err;
  sl_error_init(&err);
  sl_pipeline *p;
  sl_pipeline_new(e, "throttle", &p, NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", NULL, &err), &err); /* without end */
  ASSERT_OK(sl_pipeline_add_json(p, "throttle", "{\"rate\": 10, \"per\": \"1ms\", \"burst\": 1, \"queue\": {\"capacity\": 16}}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", &err), &err);
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  sl_collect *c = sl_pipeline_collect(p, "out");
  sl_value v;
  int64_t n = 0;
  while (n < 5 && sl_collect_pull(c, &v, -1) == SL_OK) { /* it is running and throttled */
    n++;
    ASSERT_EQ(v.u.i, n);
    sl_value_free(v);
  }
  sl_pipeline_stop(p);
  while (sl_collect_pull(c, &v, -1) == SL_OK) {
    n++;
    ASSERT_EQ(v.u.i, n); /* no gap */
    sl_value_free(v);
  }
  ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
  sl_stage_stats gen;
  sl_pipeline_stats(p, 0, &gen);
  ASSERT_EQ(n, (int64_t)gen.out); /* everything the source made arrived */
  sl_pipeline_free(p);
  sl_engine_free(e);
}

TEST(throttle_options) {
  sl_engine *e = sl_test_engine(1, true);
  sl_error_t err;
  const char *bad[] = {"{\"rate\": 0}", "{\"rate\": 5, \"burst\": -1}", "{\"rate\": 5, \"per\": \"0s\"}",
                       "{\"rate\": 5, \"burst\": 4611686018427387904, \"per\": \"1h\"}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    sl_pipeline *p;
    sl_error_init(&err);
    sl_pipeline_new(e, "bad", &p, NULL);
    ASSERT_OK(sl_pipeline_add_json(p, "generate", "3", &err), &err);
    ASSERT_OK(sl_pipeline_add_json(p, "throttle", bad[i], &err), &err);
    ASSERT_OK(sl_pipeline_add_json(p, "null", NULL, &err), &err);
    ASSERT_EQ(sl_pipeline_run(p, &err), SL_ECONFIG);
    ASSERT(strstr(err.msg, "throttle#2") != NULL);
    sl_pipeline_free(p);
  }
  sl_pipeline *p;
  sl_error_init(&err);
  sl_pipeline_new(e, "missing", &p, NULL);
  ASSERT_EQ(sl_pipeline_add_json(p, "throttle", "{}", &err), SL_ECONFIG); /* rate is required */
  ASSERT(strstr(err.msg, "rate") != NULL);
  sl_pipeline_free(p);
  sl_engine_free(e);
}
