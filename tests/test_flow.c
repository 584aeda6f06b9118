/*
 * test_flow.c — flow-control stages through the embedding API, on the virtual clock: chunks and
 * unchunk, route and named outputs, merge fairness, dead letters from any stage, memory_limit
 * (partition_by: test_partition.c; windows: tests/cli/window.sh).
 */
#include <stdatomic.h>

#include "test.h"

/* ---- helpers ---- */

#define ADD(p, kind, json)                                                  \
  do {                                                                      \
    sl_error_t add_err;                                                     \
    sl_error_init(&add_err);                                                \
    int add_rc = sl_pipeline_add_json((p), (kind), (json), &add_err);       \
    if (add_rc) SL__FAIL("add %s %s: %s", (kind), #json, add_err.msg);      \
  } while (0)

/* A "stamp" transform: each record becomes [record, engine clock in ms]. */
static int stamp_process(void *ctx, sl_batch *in, sl_emitter *em) {
  sl_stage *st = *(sl_stage **)ctx;
  for (uint32_t i = 0; i < in->len; i++) {
    sl_value a = sl_array(2);
    sl_array_push(&a, sl_batch_take(in, i));
    sl_array_push(&a, sl_int(sl_stage_now(st) / 1000000));
    sl_emit(em, i, a);
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
    .doc = "test: [record, engine clock in ms]",
    .ctx_size = sizeof(sl_stage *),
    .init = stamp_init,
    .process = stamp_process,
};

static sl_pipeline *pipeline(sl_engine *e) {
  sl_pipeline *p = NULL;
  sl_pipeline_new(e, "test", &p, NULL);
  return p;
}

/* Every record of collect sink `name`, as one JSON array text (owned by b). */
static const char *pull_json(sl_pipeline *p, const char *name, sl_buf *b) {
  sl_collect *c = sl_pipeline_collect(p, name);
  sl_value all = sl_array(0), v;
  while (c && sl_collect_pull(c, &v, -1) == SL_OK) sl_array_push(&all, v);
  sl_buf_init(b);
  sl_value_to_json(&all, b);
  sl_value_free(all);
  return b->data ? b->data : "";
}

static sl_stage_stats stats_of(sl_pipeline *p, const char *name) {
  sl_stage_stats s = {0};
  for (size_t i = 0; i < sl_pipeline_stage_count(p); i++) {
    sl_pipeline_stats(p, i, &s);
    if (strcmp(s.name, name) == 0) return s;
  }
  memset(&s, 0, sizeof s);
  return s;
}

/* Runs p to the end and compares collect "out" with want (JSON). */
#define EXPECT_OUT(p, want)                                                 \
  do {                                                                      \
    sl_error_t run_err;                                                     \
    sl_error_init(&run_err);                                                \
    ASSERT_OK(sl_pipeline_start((p), &run_err), &run_err);                  \
    sl_buf got_buf;                                                         \
    const char *got = pull_json((p), "out", &got_buf);                      \
    int same = strcmp(got, (want)) == 0;                                    \
    if (!same) fprintf(stderr, "    got  %s\n    want %s\n", got, (want));  \
    sl_buf_close(&got_buf);                                                 \
    ASSERT(same);                                                           \
    ASSERT_OK(sl_pipeline_wait((p), -1, &run_err), &run_err);               \
  } while (0)

/* ---- chunks and unchunk ---- */

TEST(flow_chunks_size) {
  sl_engine *e = sl_test_engine(2, true);
  sl_pipeline *p = pipeline(e);
  ADD(p, "generate", "10");
  ADD(p, "chunks", "3");
  ADD(p, "collect", "{\"name\": \"out\"}");
  EXPECT_OUT(p, "[[1,2,3],[4,5,6],[7,8,9],[10]]");
  sl_pipeline_free(p);
  /* and back: unchunk restores the records, in order, through a parallel stage */
  p = pipeline(e);
  ADD(p, "generate", "1000");
  ADD(p, "chunks", "7");
  ADD(p, "unchunk", "{\"parallelism\": 2}");
  ADD(p, "chunks", "500");
  ADD(p, "collect", "{\"name\": \"out\"}");
  sl_error_t err;
  sl_error_init(&err);
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  sl_collect *c = sl_pipeline_collect(p, "out");
  sl_value v;
  int64_t n = 0;
  while (sl_collect_pull(c, &v, 0) == SL_OK) {
    for (size_t i = 0; i < sl_array_len(&v); i++) ASSERT_EQ(sl_array_get(&v, i)->u.i, ++n);
    sl_value_free(v);
  }
  ASSERT_EQ(n, 1000);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* A source at one record per 2 s and chunks of 2 with a 1 s timeout: every chunk is partial and
 * leaves exactly 1 s after its (only) record; the last one leaves at the end of the stream.
 * Then 1 record/s with a 1.5 s timeout: [1,2] leaves at 1.5 s, [3,4] at 3.5 s, [5] at the end. */
TEST(flow_chunks_timeout) {
  const char *cases[][3] = {
      {"{\"count\": 4, \"rate\": 0.5}", "{\"size\": 2, \"timeout\": \"1s\"}", "[[[1],1000],[[2],3000],[[3],5000],[[4],6000]]"},
      {"{\"count\": 5, \"rate\": 1}", "{\"size\": 3, \"timeout\": 1.5}", "[[[1,2],1500],[[3,4],3500],[[5],4000]]"},
      /* full chunks cancel their timer: nothing partial, nothing empty */
      {"{\"count\": 6, \"rate\": 10}", "{\"size\": 2, \"timeout\": \"1s\"}", "[[[1,2],100],[[3,4],300],[[5,6],500]]"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sl_engine *e = sl_test_engine(2, true); /* a fresh clock at 0 */
    sl_error_t err;
    sl_error_init(&err);
    ASSERT_OK(sl_engine_register(e, &stamp_kind, &err), &err);
    sl_pipeline *p = pipeline(e);
    ADD(p, "generate", cases[i][0]);
    ADD(p, "chunks", cases[i][1]);
    ADD(p, "stamp", "");
    ADD(p, "collect", "{\"name\": \"out\"}");
    EXPECT_OUT(p, cases[i][2]);
    sl_pipeline_free(p);
    sl_engine_free(e);
  }
}

TEST(flow_chunks_errors) {
  sl_engine *e = sl_test_engine(1, true);
  sl_error_t err;
  const char *bad[] = {"0", "{\"size\": 3, \"timeout\": \"-1s\"}"};
  for (size_t i = 0; i < 2; i++) {
    sl_pipeline *p = pipeline(e);
    sl_error_init(&err);
    ADD(p, "generate", "3");
    int rc = sl_pipeline_add_json(p, "chunks", bad[i], &err);
    if (rc == 0) {
      ADD(p, "null", NULL);
      rc = sl_pipeline_run(p, &err);
    }
    ASSERT_EQ(rc, SL_ECONFIG);
    ASSERT(strstr(err.msg, "chunks#2") != NULL);
    sl_pipeline_free(p);
  }
  /* unchunk of a record that is not an array: the record fails */
  sl_pipeline *p = pipeline(e);
  sl_error_init(&err);
  ADD(p, "values", "[[1, 2], 3, [4]]");
  ADD(p, "unchunk", "{\"name\": \"u\"}");
  ADD(p, "collect", "{\"name\": \"out\"}");
  EXPECT_OUT(p, "[1,2,4]");
  ASSERT_EQ(stats_of(p, "u").errors, 1);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* ---- dead letters ---- */

/* A C stage that "retried" odd records 3 times and gives up on them. */
static int giveup_process(void *ctx, sl_batch *in, sl_emitter *em) {
  for (uint32_t i = 0; i < in->len; i++) {
    if (in->recs[i].u.i % 2) sl_emit_error_attempts(em, i, 3, "gave up on %lld", (long long)in->recs[i].u.i);
    else sl_emit(em, i, sl_batch_take(in, i));
  }
  return 0;
}

static const sl_stage_kind giveup_kind = {
    .abi = SL_STAGE_ABI,
    .name = "giveup",
    .doc = "test: fails odd records after 3 attempts",
    .flags = SL_STAGE_STATELESS,
    .process = giveup_process,
};

static int fail_big(void *ud, sl_value *rec, char *errbuf, size_t errlen) {
  if (rec->type == SL_TINT && rec->u.i > 8) {
    snprintf(errbuf, errlen, "too big: %lld", (long long)rec->u.i);
    return -1;
  }
  return 0;
}

/* Failures of several stages (a C kind reporting attempts, c_map, unchunk) all reach the
 * pipeline's dead-letter sink as {record, error, stage, attempts, time}, counted per stage. */
TEST(flow_dead_letter_any_stage) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  ASSERT_OK(sl_engine_register(e, &giveup_kind, &err), &err);
  sl_pipeline *p = pipeline(e);
  ADD(p, "values", "[[1, 2], 7, [4, 10], [6, 8]]");
  ADD(p, "unchunk", "{\"name\": \"flat\"}");
  ADD(p, "giveup", "{\"name\": \"retrying\", \"parallelism\": 2}");
  sl_value o = sl_map(1);
  sl_map_setc(&o, "name", sl_cstr("limit"));
  ASSERT_OK(sl_pipeline_add_fn(p, "c_map", fail_big, NULL, o, &err), &err);
  ADD(p, "collect", "{\"name\": \"out\"}");
  ADD(p, "collect", "{\"name\": \"dl\", \"input\": []}");
  ASSERT_OK(sl_pipeline_set(p, "dead_letter", sl_cstr("dl"), NULL, &err), &err);
  EXPECT_OUT(p, "[2,4,6,8]");
  sl_collect *c = sl_pipeline_collect(p, "dl");
  sl_value v;
  int n = 0;
  char seen[3] = {0};
  while (sl_collect_pull(c, &v, 0) == SL_OK) {
    n++;
    const char *stage = sl_str_data(sl_map_getc(&v, "stage"));
    const sl_value *rec = sl_map_getc(&v, "record");
    int64_t attempts = sl_map_getc(&v, "attempts")->u.i;
    const char *msg = sl_str_data(sl_map_getc(&v, "error"));
    ASSERT(sl_map_getc(&v, "time")->type == SL_TDOUBLE);
    if (strcmp(stage, "flat") == 0) {
      seen[0]++;
      ASSERT_EQ(rec->u.i, 7);
      ASSERT_EQ(attempts, 1);
      ASSERT_STR(msg, "unchunk expects an array record (got int)");
    } else if (strcmp(stage, "retrying") == 0) {
      seen[1]++;
      ASSERT(rec->u.i == 1);
      ASSERT_EQ(attempts, 3);
      ASSERT_STR(msg, "gave up on 1");
    } else {
      seen[2]++;
      ASSERT_STR(stage, "limit");
      ASSERT_EQ(rec->u.i, 10);
      ASSERT_STR(msg, "too big: 10");
    }
    sl_value_free(v);
  }
  ASSERT_EQ(n, 3);
  ASSERT(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
  ASSERT_EQ(stats_of(p, "flat").dead_letter, 1);
  ASSERT_EQ(stats_of(p, "retrying").dead_letter, 1);
  ASSERT_EQ(stats_of(p, "limit").dead_letter, 1);
  ASSERT_EQ(stats_of(p, "dl").in, 3);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* ---- route ---- */

/* Pulls every record of a collect sink as integers into one JSON text. */
static void expect_collect(sl_pipeline *p, const char *name, const char *want) {
  sl_buf b;
  const char *got = pull_json(p, name, &b);
  int same = strcmp(got, want) == 0;
  if (!same) fprintf(stderr, "    %s: got %s, want %s\n", name, got, want);
  sl_buf_close(&b);
  if (!same) sl_test_failed = 1;
}

/* First match wins, in the order of `outputs`; the rest go to default; a bare input reads
 * default; two readers of one output both get it; order holds with parallelism. */
TEST(flow_route_outputs) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  sl_pipeline *p = pipeline(e);
  ADD(p, "generate", "16");
  ADD(p, "route", "{\"name\": \"r\", \"parallelism\": 2, \"outputs\": {\"fizz\": \"r % 3 == 0\", \"buzz\": \"function(r) return r % 5 == 0 end\"}}");
  ADD(p, "collect", "{\"name\": \"rest\"}"); /* the previous stage: its default output */
  ADD(p, "collect", "{\"name\": \"fizz\", \"input\": \"r.fizz\"}");
  ADD(p, "collect", "{\"name\": \"buzz\", \"input\": \"r.buzz\"}");
  ADD(p, "collect", "{\"name\": \"fizz2\", \"input\": [\"r.fizz\"]}");
  ADD(p, "collect", "{\"name\": \"rest2\", \"input\": \"r.default\"}");
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  expect_collect(p, "rest", "[1,2,4,7,8,11,13,14,16]");
  expect_collect(p, "fizz", "[3,6,9,12,15]"); /* 15: fizz comes first */
  expect_collect(p, "buzz", "[5,10]");
  expect_collect(p, "fizz2", "[3,6,9,12,15]");
  expect_collect(p, "rest2", "[1,2,4,7,8,11,13,14,16]");
  ASSERT_EQ(stats_of(p, "r").out, 16);
  sl_pipeline_free(p);
  /* the list form keeps its order too; outputs nobody reads let their records go */
  p = pipeline(e);
  ADD(p, "generate", "10");
  ADD(p, "route", "{\"name\": \"r\", \"outputs\": [{\"big\": \"r > 5\"}, {\"even\": \"r % 2 == 0\"}]}");
  ADD(p, "collect", "{\"name\": \"even\", \"input\": \"r.even\"}");
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  expect_collect(p, "even", "[2,4]");
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* A predicate that raises fails the record (dead letter); the others go on. */
TEST(flow_route_errors) {
  sl_engine *e = sl_test_engine(1, true);
  sl_error_t err;
  sl_pipeline *p = pipeline(e);
  ADD(p, "values", "[1, \"x\", 3]");
  ADD(p, "route", "{\"name\": \"r\", \"outputs\": {\"odd\": \"r % 2 == 1\"}}");
  ADD(p, "collect", "{\"name\": \"odd\", \"input\": \"r.odd\"}");
  ADD(p, "null", "{\"input\": \"r\"}");
  ADD(p, "collect", "{\"name\": \"dl\", \"input\": []}");
  sl_error_init(&err);
  ASSERT_OK(sl_pipeline_set(p, "dead_letter", sl_cstr("dl"), NULL, &err), &err);
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  expect_collect(p, "odd", "[1,3]");
  sl_collect *c = sl_pipeline_collect(p, "dl");
  sl_value v;
  ASSERT_OK(sl_collect_pull(c, &v, 0), NULL);
  ASSERT(strstr(sl_str_data(sl_map_getc(&v, "error")), "route output 'odd': ") != NULL);
  sl_value_free(v);
  sl_pipeline_free(p);
  /* configuration errors */
  struct { const char *route, *input, *msg; } bad[] = {
      {"{\"outputs\": {\"a\": \"r > 1\"}}", "route#2.b", "input 'route#2.b': stage 'route#2' has no output 'b'"},
      {"{\"outputs\": {\"alpha\": \"r > 1\"}}", "route#2.alpah", "did you mean 'alpha'?"},
      {"{\"outputs\": {\"a\": \"r > 1\"}}", "generate#1.a", "stage 'generate#1' has no named outputs; read it as 'generate#1'"},
      {"{\"outputs\": {\"default\": \"r > 1\"}}", NULL, "output name 'default' is not allowed"},
      {"{\"outputs\": {\"a.b\": \"r > 1\"}}", NULL, "output name 'a.b' is not allowed"},
      {"{\"outputs\": {\"a\": 5}}", NULL, "output 'a': the predicate must be a Lua function or expression of r (got int)"},
      {"{\"outputs\": [{\"a\": \"r\", \"b\": \"r\"}]}", NULL, "outputs[1] must be a map with one key"},
      {"{\"outputs\": {\"a\": \"r >\"}}", NULL, "stage 'route#2'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    p = pipeline(e);
    sl_error_init(&err);
    ADD(p, "generate", "3");
    int rc = sl_pipeline_add_json(p, "route", bad[i].route, &err);
    if (rc == 0) {
      char in[128];
      snprintf(in, sizeof in, "{\"input\": \"%s\"}", bad[i].input);
      ADD(p, "null", in);
      rc = sl_pipeline_check(p, &err);
    }
    ASSERT_EQ(rc, SL_ECONFIG);
    if (!strstr(err.msg, bad[i].msg)) fprintf(stderr, "    got: %s\n", err.msg);
    ASSERT(strstr(err.msg, bad[i].msg) != NULL);
    sl_pipeline_free(p);
  }
  sl_engine_free(e);
}

/* ---- merge ---- */

static int add_million(void *ud, sl_value *rec, char *errbuf, size_t errlen) {
  rec->u.i += 1000000;
  return 0;
}

/* Two endless sources into a merge in front of a slow stage (a throttle): the merge takes its
 * inputs in turn, so once the queues are full (the first ~2,300 records come from whichever
 * source started first) each gets about half of the output and none starves; each input's
 * records keep their order. */
TEST(flow_merge_fair) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  sl_pipeline *p = pipeline(e);
  ADD(p, "generate", "{\"name\": \"a\"}");
  ADD(p, "generate", "{\"name\": \"b0\"}");
  sl_value o = sl_map(1);
  sl_map_setc(&o, "name", sl_cstr("b"));
  ASSERT_OK(sl_pipeline_add_fn(p, "c_map", add_million, NULL, o, &err), &err);
  ADD(p, "merge", "{\"input\": [\"a\", \"b\"], \"parallelism\": 2}");
  ADD(p, "throttle", "{\"rate\": 1000}");
  ADD(p, "take", "20000");
  ADD(p, "collect", "{\"name\": \"out\"}");
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  sl_collect *c = sl_pipeline_collect(p, "out");
  sl_value v;
  int64_t na = 0, nb = 0, last_a = 0, last_b = 1000000, run = 0, longest = 0, prev = -1;
  int64_t seen = 0;
  while (sl_collect_pull(c, &v, 0) == SL_OK) {
    int from_b = v.u.i > 1000000;
    if (++seen <= 10000) { /* the warm-up: order only */
      ASSERT(v.u.i > (from_b ? last_b : last_a));
      *(from_b ? &last_b : &last_a) = v.u.i;
      sl_value_free(v);
      continue;
    }
    if (from_b) {
      nb++;
      ASSERT(v.u.i > last_b);
      last_b = v.u.i;
    } else {
      na++;
      ASSERT(v.u.i > last_a);
      last_a = v.u.i;
    }
    run = from_b == prev ? run + 1 : 1;
    if (run > longest) longest = run;
    prev = from_b;
    sl_value_free(v);
  }
  ASSERT_EQ(na + nb, 10000);
  if (getenv("SL_TEST_VERBOSE") || na < 4000 || nb < 4000 || longest > 512) fprintf(stderr, "    a %lld b %lld longest run %lld\n", (long long)na, (long long)nb, (long long)longest);
  ASSERT(na >= 4000 && nb >= 4000); /* about half each */
  ASSERT(longest <= 512);            /* turns of at most a couple of batches */
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* ---- memory_limit ---- */

/* A source of 16 KiB strings (count in the context) and a sink that takes 10 ms (engine
 * clock) per batch: without a limit the queues (1024 records each) would hold 16 MiB. */
typedef struct blobs {
  int64_t left;
} blobs;

static int blobs_init(void *ctx, sl_stage *st, sl_error_t *err) {
  ((blobs *)ctx)->left = 3000;
  return 0;
}

static int blobs_produce(void *ctx, sl_emitter *em) {
  blobs *b = ctx;
  static char text[16384];
  for (uint32_t i = 0; i < sl_emitter_room(em) && b->left > 0; i++, b->left--) sl_emit(em, SL_NO_ORIGIN, sl_str(text, sizeof text));
  return b->left > 0 ? 0 : SL_DONE;
}

static const sl_stage_kind blobs_kind = {
    .abi = SL_STAGE_ABI,
    .name = "blobs",
    .doc = "test: 3000 strings of 16 KiB",
    .ctx_size = sizeof(blobs),
    .flags = SL_STAGE_SOURCE,
    .init = blobs_init,
    .produce = blobs_produce,
};

typedef struct slow {
  sl_stage *st;
  int64_t got;
} slow;

static int slow_init(void *ctx, sl_stage *st, sl_error_t *err) {
  ((slow *)ctx)->st = st;
  return 0;
}

static int slow_process(void *ctx, sl_batch *in, sl_emitter *em) {
  slow *s = ctx;
  s->got += in->len;
  sl_stage_timer(s->st, sl_stage_now(s->st) + 10000000, 1);
  return SL_PARKED; /* the batch is done when the timer fires */
}

static int slow_event(void *ctx, uint64_t token, sl_emitter *em) { return 0; }

static const sl_stage_kind slow_kind = {
    .abi = SL_STAGE_ABI,
    .name = "slow",
    .doc = "test: a sink taking 10 ms per batch",
    .ctx_size = sizeof(slow),
    .flags = SL_STAGE_SINK,
    .init = slow_init,
    .process = slow_process,
    .event = slow_event,
};

static uint64_t run_blobs(const char *limit, uint64_t *peak) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  sl_engine_register(e, &blobs_kind, &err);
  sl_engine_register(e, &slow_kind, &err);
  sl_pipeline *p = pipeline(e);
  if (limit && sl_pipeline_set(p, "memory_limit", sl_cstr(limit), NULL, &err) != 0) abort();
  sl_pipeline_add_json(p, "blobs", "", &err);
  sl_pipeline_add_json(p, "map", "{\"fn\": \"r\", \"parallelism\": 2}", &err);
  sl_pipeline_add_json(p, "slow", "{\"name\": \"sink\"}", &err);
  int rc = sl_pipeline_run(p, &err);
  if (rc) fprintf(stderr, "    run: %s\n", err.msg);
  sl_stage_stats s;
  sl_pipeline_stats(p, 2, &s);
  uint64_t in = s.in;
  sl_pipeline_memory(p, NULL, peak);
  sl_pipeline_free(p);
  sl_engine_free(e);
  return in;
}

/* With memory_limit 1MiB the queued bytes stay under the limit plus a batch (at most an eighth
 * of the limit) per producer instance (3 here); everything arrives (the source paused, nothing
 * was dropped). */
TEST(flow_memory_limit) {
  uint64_t peak = 0;
  ASSERT_EQ(run_blobs("1MiB", &peak), 3000);
  uint64_t bound = (1 << 20) + 3 * ((1 << 20) / 8 + 16500);
  if (getenv("SL_TEST_VERBOSE") || peak > bound || peak < (1 << 20) / 2) fprintf(stderr, "    peak %llu\n", (unsigned long long)peak);
  ASSERT(peak <= bound);
  ASSERT(peak >= (1 << 20) / 2);         /* and it was reached: the test measures something */
  ASSERT_EQ(run_blobs(NULL, &peak), 3000);
  ASSERT_EQ(peak, 0); /* nothing counted without a limit */
}
