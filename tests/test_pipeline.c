/*
 * test_pipeline.c — the runtime end to end through the embedding API: order, chains, broadcast,
 * merge, cancellation, drop policies, stop/drain, on_error, graph validation.
 */
#include <stdatomic.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

/* ---- helpers ---- */


static sl_pipeline *pipeline(sl_engine *e) {
  sl_pipeline *p = NULL;
  sl_pipeline_new(e, "test", &p, NULL);
  return p;
}

/* Adds a stage from JSON options; aborts the test on error. */
#define ADD(p, kind, json)                                                  \
  do {                                                                      \
    sl_error_t add_err;                                                     \
    sl_error_init(&add_err);                                                \
    int add_rc = sl_pipeline_add_json((p), (kind), (json), &add_err);       \
    if (add_rc) SL__FAIL("add %s %s: %s", (kind), (json), add_err.msg);     \
  } while (0)

#define ADD_FN(p, kind, fn, ud, json)                                       \
  do {                                                                      \
    sl_error_t add_err;                                                     \
    sl_value add_opts = sl_nil();                                           \
    sl_error_init(&add_err);                                                \
    if ((json) && *(const char *)(json))                                    \
      sl_value_from_json((json), strlen(json), &add_opts, &add_err);        \
    int add_rc = sl_pipeline_add_fn((p), (kind), (fn), (ud), add_opts, &add_err); \
    if (add_rc) SL__FAIL("add %s: %s", (kind), add_err.msg);                 \
  } while (0)

static sl_stage_stats stats_of(sl_pipeline *p, const char *name) {
  sl_stage_stats s = {0};
  for (size_t i = 0; i < sl_pipeline_stage_count(p); i++) {
    sl_pipeline_stats(p, i, &s);
    if (strcmp(s.name, name) == 0) return s;
  }
  memset(&s, 0, sizeof s);
  return s;
}

/* Pulls every record of a collect sink into ints (record i must be an integer). */
static size_t pull_ints(sl_pipeline *p, const char *name, int64_t *out, size_t cap) {
  sl_collect *c = sl_pipeline_collect(p, name);
  size_t n = 0;
  sl_value v;
  while (c && sl_collect_pull(c, &v, -1) == SL_OK) {
    if (n < cap) out[n] = v.type == SL_TINT ? v.u.i : -1;
    n++;
    sl_value_free(v);
  }
  return n;
}

static int add_one(void *ud, sl_value *rec, char *errbuf, size_t errlen) {
  rec->u.i += 1;
  return 0;
}

static int add_ud(void *ud, sl_value *rec, char *errbuf, size_t errlen) {
  rec->u.i += (int64_t)(intptr_t)ud;
  return 0;
}

typedef struct order_check {
  int64_t next;   /* expected next value */
  int64_t wrong;  /* values out of order */
} order_check;

static int check_order(void *ud, sl_value *rec, char *errbuf, size_t errlen) {
  order_check *c = ud;
  if (rec->type != SL_TINT || rec->u.i != c->next) c->wrong++;
  c->next = (rec->type == SL_TINT ? rec->u.i : c->next) + 1;
  return 0; /* drop */
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

/* ---- tests ---- */

TEST(pipeline_order_parallel) {
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p = pipeline(e);
  order_check oc = {1, 0};
  ADD(p, "generate", "{\"count\": 1000000}");
  ADD_FN(p, "c_map", add_ud, (void *)(intptr_t)0, "{\"name\": \"m\", \"parallelism\": 2}");
  ADD_FN(p, "c_filter", check_order, &oc, "{\"name\": \"check\", \"parallelism\": 1}");
  ADD(p, "null", "");
  sl_error_t err;
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  ASSERT_EQ(oc.wrong, 0);
  ASSERT_EQ(oc.next, 1000001);
  sl_stage_stats s = stats_of(p, "m");
  ASSERT_EQ(s.parallelism, 2);
  ASSERT_EQ(s.in, 1000000);
  ASSERT_EQ(s.out, 1000000);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

TEST(pipeline_chain_10) {
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p = pipeline(e);
  ADD(p, "generate", "{\"count\": 100000}");
  for (int i = 0; i < 10; i++) ADD_FN(p, "c_map", add_one, NULL, "");
  ADD(p, "collect", "{\"name\": \"out\"}");
  sl_error_t err;
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  static int64_t got[100000];
  size_t n = pull_ints(p, "out", got, 100000);
  ASSERT_EQ(n, 100000);
  for (size_t i = 0; i < n; i++) ASSERT_EQ(got[i], (int64_t)i + 11);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

TEST(pipeline_broadcast) {
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p = pipeline(e);
  ADD(p, "generate", "{\"count\": 10000, \"name\": \"g\"}");
  ADD(p, "collect", "{\"name\": \"a\", \"input\": \"g\"}");
  ADD(p, "collect", "{\"name\": \"b\", \"input\": \"g\"}");
  ADD(p, "collect", "{\"name\": \"c\", \"input\": \"g\"}");
  sl_error_t err;
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  static int64_t got[10000];
  const char *names[] = {"a", "b", "c"};
  for (int k = 0; k < 3; k++) {
    size_t n = pull_ints(p, names[k], got, 10000);
    ASSERT_EQ(n, 10000);
    for (size_t i = 0; i < n; i++) ASSERT_EQ(got[i], (int64_t)i + 1);
  }
  sl_pipeline_free(p);
  sl_engine_free(e);
}

TEST(pipeline_merge) {
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p = pipeline(e);
  ADD(p, "generate", "{\"count\": 1000, \"name\": \"g1\"}");
  ADD_FN(p, "c_map", add_ud, (void *)(intptr_t)0, "{\"name\": \"m1\"}");
  ADD(p, "generate", "{\"count\": 2000, \"name\": \"g2\"}");
  ADD_FN(p, "c_map", add_ud, (void *)(intptr_t)1000000, "{\"name\": \"m2\"}");
  ADD(p, "generate", "{\"count\": 3000, \"name\": \"g3\"}");
  ADD_FN(p, "c_map", add_ud, (void *)(intptr_t)2000000, "{\"name\": \"m3\"}");
  ADD(p, "collect", "{\"name\": \"out\", \"input\": [\"m1\", \"m2\", \"m3\"]}");
  sl_error_t err;
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  static int64_t got[6000];
  size_t n = pull_ints(p, "out", got, 6000);
  ASSERT_EQ(n, 6000);
  int64_t next[3] = {1, 1000001, 2000001}, count[3] = {0};
  for (size_t i = 0; i < n; i++) {
    int src = (int)(got[i] / 1000000);
    ASSERT(src >= 0 && src < 3);
    ASSERT_EQ(got[i], next[src]); /* each source's records keep their order */
    next[src]++;
    count[src]++;
  }
  ASSERT_EQ(count[0], 1000);
  ASSERT_EQ(count[1], 2000);
  ASSERT_EQ(count[2], 3000);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

TEST(pipeline_take_stops_source) {
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p = pipeline(e);
  ADD(p, "generate", "{\"name\": \"g\"}"); /* without end */
  ADD_FN(p, "c_map", add_ud, (void *)(intptr_t)0, "{\"name\": \"m\"}");
  ADD(p, "take", "5");
  ADD(p, "collect", "{\"name\": \"out\"}");
  sl_error_t err;
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  int64_t got[10];
  ASSERT_EQ(pull_ints(p, "out", got, 10), 5);
  for (int i = 0; i < 5; i++) ASSERT_EQ(got[i], i + 1);
  /* the source stopped soon: bounded by two queues of 1024 plus a batch per instance */
  sl_stage_stats g = stats_of(p, "g");
  ASSERT(g.out < 2 * 1024 + 8 * 256);
  ASSERT(g.done);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

static void drop_case(const char *policy, int64_t first) {
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p = pipeline(e);
  char json[200];
  ADD(p, "generate", "{\"count\": 100}");
  snprintf(json, sizeof json, "{\"name\": \"slow\", \"queue\": {\"capacity\": 10, \"on_full\": \"%s\"}}", policy);
  ADD(p, "collect", json);
  sl_error_t err;
  /* nobody pulls while it runs: the slowest sink there is */
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  sl_stage_stats s = stats_of(p, "slow");
  ASSERT_EQ(s.dropped, 90);
  int64_t got[100];
  ASSERT_EQ(pull_ints(p, "slow", got, 100), 10);
  for (int i = 0; i < 10; i++) ASSERT_EQ(got[i], first + i);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

TEST(pipeline_drop_newest) { drop_case("drop_newest", 1); }
TEST(pipeline_drop_oldest) { drop_case("drop_oldest", 91); }

/* A bounded collect with block: the producer waits, nothing is lost. */
TEST(pipeline_backpressure_block) {
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p = pipeline(e);
  ADD(p, "generate", "{\"count\": 50000, \"name\": \"g\"}");
  ADD(p, "collect", "{\"name\": \"out\", \"queue\": {\"capacity\": 100}}");
  sl_error_t err;
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  static int64_t got[50000];
  ASSERT_EQ(pull_ints(p, "out", got, 50000), 50000);
  for (int i = 0; i < 50000; i++) ASSERT_EQ(got[i], i + 1);
  ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
  sl_stage_stats s = stats_of(p, "out");
  ASSERT_EQ(s.dropped, 0);
  ASSERT(s.queue_hwm <= 100); /* the source's batches fit the queue */
  sl_pipeline_free(p);
  sl_engine_free(e);
}

TEST(pipeline_stop_drains) {
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p = pipeline(e);
  ADD(p, "generate", "{\"name\": \"g\"}");
  ADD_FN(p, "c_map", add_one, NULL, "{\"name\": \"m\"}");
  ADD(p, "null", "{\"name\": \"sink\"}");
  sl_error_t err;
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  while (stats_of(p, "sink").in < 100000) sleep_ms(1); /* until records flow */
  sl_pipeline_stop(p);
  ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
  sl_stage_stats g = stats_of(p, "g"), m = stats_of(p, "m"), s = stats_of(p, "sink");
  ASSERT(g.out >= 100000);
  ASSERT_EQ(m.in, g.out);
  ASSERT_EQ(m.out, m.in);
  ASSERT_EQ(s.in, m.out);
  ASSERT_EQ(s.out, s.in);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

static int fail_every_100(void *ud, sl_value *rec, char *errbuf, size_t errlen) {
  if (rec->u.i % 100 == 0) {
    snprintf(errbuf, errlen, "bad record %lld", (long long)rec->u.i);
    return -1;
  }
  return 0;
}

TEST(pipeline_on_error_skip) {
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p = pipeline(e);
  ADD(p, "generate", "{\"count\": 10000}");
  ADD_FN(p, "c_map", fail_every_100, NULL, "{\"name\": \"m\", \"on_error\": \"skip\"}");
  ADD(p, "collect", "{\"name\": \"out\"}");
  sl_error_t err;
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  static int64_t got[10000];
  size_t n = pull_ints(p, "out", got, 10000);
  ASSERT_EQ(n, 9900);
  for (size_t i = 0; i < n; i++) ASSERT(got[i] % 100 != 0);
  ASSERT_EQ(stats_of(p, "m").errors, 100);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

TEST(pipeline_on_error_fail) {
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p = pipeline(e);
  ADD(p, "generate", "{\"name\": \"g\"}");
  ADD_FN(p, "c_map", fail_every_100, NULL, "{\"name\": \"m\", \"on_error\": \"fail\"}");
  ADD(p, "null", "");
  sl_error_t err;
  sl_error_init(&err);
  ASSERT_EQ(sl_pipeline_run(p, &err), SL_EFAILED);
  ASSERT_STR(err.stage, "m");
  /* parallel instances: the first failure may be any multiple of 100 */
  ASSERT(strstr(err.msg, "stage 'm'") && strstr(err.msg, "00") && strstr(err.msg, "bad record "));
  sl_pipeline_free(p);
  sl_engine_free(e);
}

TEST(pipeline_on_error_dead_letter) {
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p = pipeline(e);
  ADD(p, "generate", "{\"count\": 1000}");
  ADD_FN(p, "c_map", fail_every_100, NULL, "{\"name\": \"m\"}");
  ADD(p, "null", "");
  ADD(p, "collect", "{\"name\": \"dl\", \"input\": []}");
  sl_error_t err;
  ASSERT_OK(sl_pipeline_set_dead_letter(p, "dl", &err), &err);
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  sl_collect *c = sl_pipeline_collect(p, "dl");
  sl_value v;
  int n = 0;
  bool seen[11] = {false};
  while (sl_collect_pull(c, &v, -1) == SL_OK) { /* failures of parallel instances: any order */
    n++;
    const sl_value *rec = sl_map_getc(&v, "record");
    ASSERT(rec && rec->type == SL_TINT && rec->u.i % 100 == 0 && rec->u.i / 100 <= 10);
    ASSERT(!seen[rec->u.i / 100]);
    seen[rec->u.i / 100] = true;
    ASSERT_STR(sl_str_data(sl_map_getc(&v, "stage")), "m");
    ASSERT(strstr(sl_str_data(sl_map_getc(&v, "error")), "bad record"));
    ASSERT_EQ(sl_map_getc(&v, "attempts")->u.i, 1);
    ASSERT(sl_map_getc(&v, "time")->type == SL_TDOUBLE);
    sl_value_free(v);
  }
  ASSERT_EQ(n, 10);
  ASSERT_EQ(stats_of(p, "m").dead_letter, 10);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

TEST(pipeline_port_collect) {
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p = pipeline(e);
  ADD(p, "port", "{\"name\": \"in\"}");
  ADD_FN(p, "c_map", add_one, NULL, "");
  ADD(p, "collect", "{\"name\": \"out\"}");
  sl_error_t err;
  sl_port *port = sl_pipeline_port(p, "in");
  ASSERT(port);
  sl_value v = sl_int(1);
  ASSERT_EQ(sl_port_push(port, &v, 0), SL_ESTATE); /* not started */
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  for (int i = 0; i < 1000; i++) {
    v = sl_int(i);
    ASSERT_OK(sl_port_push(port, &v, 0), (sl_error_t *)NULL);
    ASSERT(v.type == SL_TNIL);
  }
  sl_port_close(port);
  v = sl_int(1);
  ASSERT_EQ(sl_port_push(port, &v, 0), SL_ECLOSED);
  ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
  int64_t got[1000];
  ASSERT_EQ(pull_ints(p, "out", got, 1000), 1000);
  for (int i = 0; i < 1000; i++) ASSERT_EQ(got[i], i + 1);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* A full port with SL_NOWAIT says EAGAIN; the record stays the caller's. */
TEST(pipeline_port_nowait) {
  sl_engine *e = sl_test_engine(1, false);
  sl_pipeline *p = pipeline(e);
  ADD(p, "port", "{\"name\": \"in\"}");
  ADD(p, "collect", "{\"name\": \"out\", \"queue\": {\"capacity\": 4}}");
  sl_error_t err;
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  sl_port *port = sl_pipeline_port(p, "in");
  int pushed = 0, rc;
  sl_value v = sl_int(0);
  while ((rc = sl_port_push(port, &v, SL_NOWAIT)) == SL_OK) v = sl_int(++pushed);
  ASSERT_EQ(rc, SL_EAGAIN);
  ASSERT_EQ(pushed, 4);
  ASSERT(v.type == SL_TINT && v.u.i == 4);
  sl_collect *c = sl_pipeline_collect(p, "out");
  sl_value got;
  ASSERT_OK(sl_collect_pull(c, &got, -1), (sl_error_t *)NULL);
  ASSERT_EQ(got.u.i, 0);
  ASSERT_OK(sl_port_push(port, &v, SL_NOWAIT), (sl_error_t *)NULL); /* room again */
  ASSERT_EQ(sl_collect_pull(c, &got, 0), SL_OK);
  sl_port_close(port);
  ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         (double)ru.ru_stime.tv_usec / 1e6;
}

/* An engine whose only source waits for input uses no CPU. */
TEST(pipeline_idle_cpu) {
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p = pipeline(e);
  ADD(p, "port", "{\"name\": \"in\"}");
  ADD_FN(p, "c_map", add_one, NULL, "");
  ADD(p, "null", "");
  sl_error_t err;
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  sleep_ms(50); /* let the workers settle */
  double c0 = cpu_seconds();
  sleep_ms(1000);
  double used = cpu_seconds() - c0;
  printf("     idle engine used %.1f ms of CPU in 1 s\n", used * 1e3);
  ASSERT(used < 0.05); /* ~0%: a spinning worker would use ~1 s */
  sl_port_close(sl_pipeline_port(p, "in"));
  ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

TEST(pipeline_abort) {
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p = pipeline(e);
  ADD(p, "generate", "");
  ADD_FN(p, "c_map", add_one, NULL, "");
  ADD(p, "null", "{\"name\": \"sink\"}");
  sl_error_t err;
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  while (stats_of(p, "sink").in < 1000) sleep_ms(1);
  sl_pipeline_abort(p);
  ASSERT_EQ(sl_pipeline_wait(p, -1, &err), SL_EABORTED);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* Freeing a running pipeline aborts it cleanly. */
TEST(pipeline_free_running) {
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p = pipeline(e);
  ADD(p, "generate", "");
  ADD(p, "collect", "{\"name\": \"out\", \"queue\": {\"capacity\": 10}}");
  sl_error_t err;
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

TEST(pipeline_stats_json) {
  sl_engine *e = sl_test_engine(1, false);
  sl_pipeline *p = pipeline(e);
  ADD(p, "generate", "{\"count\": 10, \"name\": \"g\\\"x\"}");
  ADD(p, "null", "{\"name\": \"n\"}");
  sl_error_t err;
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  sl_buf b;
  sl_buf_init(&b);
  ASSERT_OK(sl_pipeline_stats_json(p, &b), (sl_error_t *)NULL);
  sl_value v;
  ASSERT_OK(sl_value_from_json(b.data, b.len, &v, &err), &err);
  const sl_value *st = sl_map_getc(&v, "stages");
  ASSERT(st && sl_map_len(st) == 2);
  ASSERT_EQ(sl_map_getc(sl_map_getc(st, "g\"x"), "out")->u.i, 10);
  ASSERT_EQ(sl_map_getc(sl_map_getc(st, "n"), "in")->u.i, 10);
  ASSERT(sl_map_getc(&v, "elapsed_s")->type == SL_TDOUBLE);
  sl_value_free(v);
  sl_buf_close(&b);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* ---- configuration errors ---- */

static int config_error(const char *const *kinds, const char *const *jsons, int n, sl_error_t *err) {
  sl_engine *e = sl_test_engine(1, false);
  sl_pipeline *p = pipeline(e);
  int rc = 0;
  sl_error_init(err);
  for (int i = 0; i < n && rc == 0; i++) rc = sl_pipeline_add_json(p, kinds[i], jsons[i], err);
  if (rc == 0) rc = sl_pipeline_check(p, err);
  sl_pipeline_free(p);
  sl_engine_free(e);
  return rc;
}

TEST(pipeline_config_errors) {
  sl_error_t err;
  {
    const char *k[] = {"generate", "nul"}, *j[] = {"", ""};
    ASSERT_EQ(config_error(k, j, 2, &err), SL_ECONFIG);
    ASSERT(strstr(err.msg, "unknown stage kind 'nul'") && strstr(err.msg, "did you mean 'null'"));
  }
  {
    const char *k[] = {"generate"}, *j[] = {"{\"cuont\": 5}"};
    ASSERT_EQ(config_error(k, j, 1, &err), SL_ECONFIG);
    ASSERT(strstr(err.msg, "unknown option 'cuont'") && strstr(err.msg, "did you mean 'count'"));
  }
  {
    const char *k[] = {"generate"}, *j[] = {"{\"count\": \"many\"}"};
    ASSERT_EQ(config_error(k, j, 1, &err), SL_ECONFIG);
    ASSERT(strstr(err.msg, "option 'count' expects an integer"));
  }
  {
    const char *k[] = {"generate", "take"}, *j[] = {"", "{}"};
    ASSERT_EQ(config_error(k, j, 2, &err), SL_ECONFIG);
    ASSERT(strstr(err.msg, "option 'count' is required"));
  }
  {
    const char *k[] = {"generate", "null"}, *j[] = {"{\"name\": \"gen\"}", "{\"input\": \"gne\"}"};
    ASSERT_EQ(config_error(k, j, 2, &err), SL_ECONFIG);
    ASSERT(strstr(err.msg, "input 'gne' names no stage") && strstr(err.msg, "did you mean 'gen'"));
    ASSERT_STR(err.stage, "null#2");
  }
  {
    const char *k[] = {"generate", "generate"}, *j[] = {"{\"name\": \"a\"}", "{\"input\": \"a\"}"};
    ASSERT_EQ(config_error(k, j, 2, &err), SL_ECONFIG);
    ASSERT(strstr(err.msg, "is a source (generate) and cannot have an input"));
  }
  {
    const char *k[] = {"generate", "skip"}, *j[] = {"", "1"};
    ASSERT_EQ(config_error(k, j, 2, &err), SL_ECONFIG);
    ASSERT(strstr(err.msg, "output goes nowhere"));
  }
  {
    const char *k[] = {"generate", "skip", "take", "null"},
               *j[] = {"{\"name\": \"g\"}", "{\"name\": \"a\", \"input\": [\"g\", \"b\"], \"count\": 1}",
                       "{\"name\": \"b\", \"input\": \"a\", \"count\": 1}", "{\"input\": \"b\"}"};
    ASSERT_EQ(config_error(k, j, 4, &err), SL_ECONFIG);
    ASSERT(strstr(err.msg, "cycle"));
  }
  {
    const char *k[] = {"generate", "null", "null"}, *j[] = {"", "", ""};
    ASSERT_EQ(config_error(k, j, 3, &err), SL_ECONFIG);
    ASSERT(strstr(err.msg, "which is a sink"));
  }
  {
    const char *k[] = {"generate", "take"}, *j[] = {"", "{\"count\": 1, \"parallelism\": 2}"};
    ASSERT_EQ(config_error(k, j, 2, &err), SL_ECONFIG);
    ASSERT(strstr(err.msg, "runs as one instance"));
  }
  {
    const char *k[] = {"generate", "null"}, *j[] = {"", "{\"queue\": {\"on_full\": \"drop_all\"}}"};
    ASSERT_EQ(config_error(k, j, 2, &err), SL_ECONFIG);
    ASSERT(strstr(err.msg, "on_full must be"));
  }
  { /* several problems at once, one per line */
    const char *k[] = {"generate", "null", "null"}, *j[] = {"", "{\"input\": \"x\"}", "{\"input\": \"y\"}"};
    ASSERT_EQ(config_error(k, j, 3, &err), SL_ECONFIG);
    ASSERT(strstr(err.msg, "input 'x'") && strstr(err.msg, "input 'y'") && strchr(err.msg, '\n'));
  }
  {
    const char *k[] = {"generate", "null"}, *j[] = {"{\"name\": \"a\"}", "{\"name\": \"a\"}"};
    ASSERT_EQ(config_error(k, j, 2, &err), SL_ECONFIG);
    ASSERT(strstr(err.msg, "used twice"));
  }
}

TEST(pipeline_start_errors) {
  sl_engine *e = sl_test_engine(1, false);
  sl_pipeline *p = pipeline(e);
  ADD(p, "lines", "{\"path\": \"/nonexistent/sluice-test\"}");
  ADD(p, "null", "");
  sl_error_t err;
  sl_error_init(&err);
  ASSERT(sl_pipeline_start(p, &err) != 0);
  ASSERT(strstr(err.msg, "stage 'lines#1'") && strstr(err.msg, "cannot open '/nonexistent/sluice-test'"));
  ASSERT_EQ(sl_pipeline_start(p, &err), SL_ESTATE);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* Stateless stages fused into one task keep order across parallel instances, count per stage,
 * and give the same result as the same stages joined by queues. */
TEST(pipeline_fused_chain) {
  for (int queued = 0; queued < 2; queued++) {
    sl_engine *e = sl_test_engine(2, false);
    sl_pipeline *p = pipeline(e);
    order_check oc = {4, 0};
    const char *opts = queued ? "{\"parallelism\": 2, \"queue\": {\"capacity\": 1024}}" : "{\"parallelism\": 2}";
    ADD(p, "generate", "{\"count\": 300000}");
    ADD_FN(p, "c_map", add_one, NULL, opts);
    ADD_FN(p, "c_map", add_one, NULL, opts);
    ADD_FN(p, "c_map", fail_every_100, NULL, queued ? "{\"name\": \"f\", \"parallelism\": 2, \"queue\": {\"capacity\": 1024}}" : "{\"name\": \"f\", \"parallelism\": 2}");
    ADD_FN(p, "c_map", add_one, NULL, opts);
    ADD_FN(p, "c_filter", check_order, &oc, "{\"name\": \"check\", \"parallelism\": 1}");
    ADD(p, "null", "");
    ADD(p, "collect", "{\"name\": \"dl\", \"input\": []}");
    sl_error_t err;
    ASSERT_OK(sl_pipeline_set_dead_letter(p, "dl", &err), &err);
    ASSERT_OK(sl_pipeline_run(p, &err), &err);
    /* values 3..300002 after two add_one; those % 100 == 0 fail; the rest +1 */
    ASSERT_EQ(oc.wrong, 3000); /* each failure leaves a gap of one in the sequence */
    sl_stage_stats f = stats_of(p, "f"), c = stats_of(p, "check");
    ASSERT_EQ(f.in, 300000);
    ASSERT_EQ(f.errors, 3000);
    ASSERT_EQ(f.dead_letter, 3000);
    ASSERT_EQ(f.out, 297000);
    ASSERT_EQ(c.in, 297000);
    int dl = 0;
    sl_value v;
    while (sl_collect_pull(sl_pipeline_collect(p, "dl"), &v, 0) == SL_OK) {
      dl++;
      sl_value_free(v);
    }
    ASSERT_EQ(dl, 3000);
    sl_pipeline_free(p);
    sl_engine_free(e);
  }
}

/* The engine's allocator: batches, queues, instances come from it, and all goes back. */
typedef struct counting {
  atomic_long live;  /* bytes */
  atomic_long calls; /* allocations */
} counting;

static void *count_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  counting *c = ud;
  if (nsize == 0) {
    if (ptr) atomic_fetch_sub(&c->live, (long)osize);
    free(ptr);
    return NULL;
  }
  void *q = realloc(ptr, nsize);
  if (q) {
    atomic_fetch_add(&c->live, (long)nsize - (long)(ptr ? osize : 0));
    atomic_fetch_add(&c->calls, 1);
  }
  return q;
}

TEST(pipeline_custom_allocator) {
  static counting c;
  atomic_store(&c.live, 0);
  atomic_store(&c.calls, 0);
  sl_engine_config cfg;
  sl_engine_config_init(&cfg);
  cfg.workers = 2;
  cfg.alloc = count_alloc;
  cfg.alloc_ud = &c;
  sl_engine *e;
  sl_error_t err;
  ASSERT_OK(sl_engine_new(&cfg, &e, &err), &err);
  sl_pipeline *p = pipeline(e);
  ADD(p, "generate", "{\"count\": 100000, \"name\": \"g\"}");
  ADD_FN(p, "c_map", fail_every_100, NULL, "{\"parallelism\": 2}");
  ADD(p, "collect", "{\"name\": \"a\", \"input\": \"c_map#2\"}");
  ADD(p, "null", "{\"input\": \"c_map#2\", \"queue\": {\"capacity\": 100}}");
  ADD(p, "collect", "{\"name\": \"dl\", \"input\": []}");
  ASSERT_OK(sl_pipeline_set_dead_letter(p, "dl", &err), &err);
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  ASSERT(atomic_load(&c.calls) > 100); /* batches came from it */
  ASSERT(atomic_load(&c.live) > 0);    /* the collected records' batches are still held */
  sl_pipeline_free(p);
  sl_engine_free(e);
  ASSERT_EQ(atomic_load(&c.live), 0); /* every byte went back, with the right sizes */
}

/* Stress: queues of capacity 1 everywhere, parallel ordered stages, a broadcast and a merge:
 * every record arrives once, in order per source (STYLE's "queue capacity 1" stress case). */
TEST(pipeline_stress_capacity_1) {
  sl_engine *e = sl_test_engine(3, false);
  sl_pipeline *p = pipeline(e);
  const char *q1 = "{\"parallelism\": 2, \"queue\": {\"capacity\": 1}}";
  order_check a = {2, 0}, b = {2, 0};
  ADD(p, "generate", "{\"count\": 20000, \"name\": \"g\"}");
  ADD_FN(p, "c_map", add_one, NULL, "{\"name\": \"m\", \"parallelism\": 2, \"queue\": {\"capacity\": 1}}");
  ADD_FN(p, "c_map", add_ud, (void *)(intptr_t)0, q1);
  ADD_FN(p, "c_filter", check_order, &a, "{\"name\": \"ca\", \"parallelism\": 1, \"queue\": {\"capacity\": 1}}");
  ADD(p, "null", "{\"queue\": {\"capacity\": 1}}");
  ADD_FN(p, "c_filter", check_order, &b, "{\"name\": \"cb\", \"input\": \"m\", \"parallelism\": 1, \"queue\": {\"capacity\": 1}}");
  ADD(p, "null", "{\"queue\": {\"capacity\": 1}}");
  sl_error_t err;
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  ASSERT_EQ(a.wrong, 0);
  ASSERT_EQ(b.wrong, 0);
  ASSERT_EQ(a.next, 20002);
  ASSERT_EQ(b.next, 20002);
  for (size_t i = 1; i < sl_pipeline_stage_count(p); i++) { /* one record per producer instance */
    sl_stage_stats s;
    sl_pipeline_stats(p, i, &s);
    if (s.queue_hwm > 2) SL__FAIL("%s: queue_hwm %llu", s.name, (unsigned long long)s.queue_hwm);
  }
  sl_pipeline_free(p);
  sl_engine_free(e);
}
