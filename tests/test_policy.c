/*
 * test_policy.c — timeouts, retries and circuit breakers of function stages (vm/policy.c,
 * vm/luafn.c) through the embedding API, on the virtual clock, exact.
 */
#include "test.h"
#include "policy.h"

/* A pipeline of the given stages (kind, json options), with the Lua code `lua`, a collect sink
 * "out" after the last stage and a collect sink "dl" as the dead letter; runs it and returns
 * what each got. */
typedef struct run {
  sl_value out, dl;
  double elapsed;
  sl_stage_stats stats[8];
} run;

static int run_policy(sl_engine *e, const char *lua, const char *const st[][2], size_t n, run *r, sl_error_t *err) {
  sl_pipeline *p;
  r->out = sl_array(0);
  r->dl = sl_array(0);
  int rc = sl_pipeline_new(e, "t", &p, err);
  if (rc) return rc;
  rc = sl_pipeline_add_lua(p, lua, strlen(lua), "policy.lua", 1, err);
  for (size_t i = 0; i < n && rc == 0; i++) rc = sl_pipeline_add_json(p, st[i][0], st[i][1], err);
  if (rc == 0) rc = sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", err);
  if (rc == 0) rc = sl_pipeline_add_json(p, "collect", "{\"name\": \"dl\", \"input\": []}", err);
  if (rc == 0) rc = sl_pipeline_set_dead_letter(p, "dl", err);
  if (rc == 0) rc = sl_pipeline_start(p, err);
  if (rc == 0) {
    sl_value v;
    while (sl_collect_pull(sl_pipeline_collect(p, "out"), &v, -1) == 0) sl_array_push(&r->out, v);
    while (sl_collect_pull(sl_pipeline_collect(p, "dl"), &v, -1) == 0) sl_array_push(&r->dl, v);
    rc = sl_pipeline_wait(p, -1, err);
    r->elapsed = sl_pipeline_elapsed(p);
    for (size_t i = 0; i < n && i < 8; i++) sl_pipeline_stats(p, (int)i, &r->stats[i]);
  }
  sl_pipeline_free(p);
  return rc;
}

static void run_free(run *r) {
  sl_value_free(r->out);
  sl_value_free(r->dl);
}

static const char *str_of(const sl_value *m, const char *key) {
  const sl_value *v = sl_map_getc(m, key);
  return v && v->type == SL_TSTR ? sl_str_data(v) : "";
}

/* Exponential backoff from 100 ms, multiplier 2, no jitter, over a function failing twice:
 * tries at 0, 100 and 300 ms, then success; with attempts 2 the record reaches the dead letter
 * with attempts = 2 and the last error. */
TEST(policy_retry_backoff) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  const char *lua = "tries, at = {}, {}\n"
                    "function flaky(r)\n"
                    "  tries[r] = (tries[r] or 0) + 1\n"
                    "  at[r] = (at[r] or '') .. math.floor(sluice.now() * 1000 + 0.5) .. ' '\n"
                    "  if tries[r] < 3 then error('flaky ' .. tries[r]) end\n"
                    "  return at[r]\n"
                    "end\n";
  const char *st[][2] = {{"generate", "{\"count\": 1}"},
                         {"map", "{\"fn\": \"flaky\", \"name\": \"m\", \"retry\": {\"attempts\": 3, \"backoff\": \"exponential\", "
                                 "\"initial\": \"100ms\", \"multiplier\": 2, \"jitter\": \"none\"}}"}};
  run r;
  ASSERT_OK(run_policy(e, lua, st, 2, &r, &err), &err);
  ASSERT_EQ(sl_array_len(&r.out), 1);
  ASSERT_STR(sl_str_data(sl_array_get(&r.out, 0)), "0 100 300 ");
  ASSERT_EQ(sl_array_len(&r.dl), 0);
  ASSERT_EQ(r.stats[1].retries, 2);
  if (r.elapsed < 0.2999 || r.elapsed > 0.3001) SL__FAIL("elapsed %.6f s, want 0.3", r.elapsed);
  run_free(&r);

  const char *st2[][2] = {{"generate", "{\"count\": 1}"},
                          {"map", "{\"fn\": \"flaky\", \"name\": \"m\", \"retry\": {\"attempts\": 2, \"initial\": \"100ms\"}}"}};
  ASSERT_OK(run_policy(e, lua, st2, 2, &r, &err), &err);
  ASSERT_EQ(sl_array_len(&r.out), 0);
  ASSERT_EQ(sl_array_len(&r.dl), 1);
  const sl_value *d = sl_array_get(&r.dl, 0);
  ASSERT_EQ(sl_map_getc(d, "attempts")->u.i, 2);
  ASSERT_EQ(sl_map_getc(d, "record")->u.i, 1);
  if (!strstr(str_of(d, "error"), "flaky 2")) SL__FAIL("error: %s", str_of(d, "error"));
  ASSERT_STR(str_of(d, "stage"), "m");
  ASSERT_EQ(r.stats[1].retries, 1);
  ASSERT_EQ(r.stats[1].errors, 1);
  run_free(&r);
  sl_engine_free(e);
}

/* retry_on sees the record and the error: only errors it accepts are retried. */
TEST(policy_retry_on) {
  sl_engine *e = sl_test_engine(1, true);
  sl_error_t err;
  sl_error_init(&err);
  const char *lua = "n = {}\n"
                    "function f(r) n[r] = (n[r] or 0) + 1; if n[r] == 1 then error(r % 2 == 0 and 'busy' or 'broken') end return n[r] end\n";
  const char *st[][2] = {{"generate", "{\"count\": 10}"},
                         {"map", "{\"fn\": \"f\", \"retry\": {\"attempts\": 5, \"backoff\": \"constant\", \"initial\": \"1s\", "
                                 "\"retry_on\": \"e:find('busy') ~= nil\"}}"}};
  run r;
  ASSERT_OK(run_policy(e, lua, st, 2, &r, &err), &err);
  ASSERT_EQ(sl_array_len(&r.out), 5); /* the even ones, on their second try */
  for (size_t i = 0; i < 5; i++) ASSERT_EQ(sl_array_get(&r.out, i)->u.i, 2);
  ASSERT_EQ(sl_array_len(&r.dl), 5); /* the odd ones, not retried */
  for (size_t i = 0; i < 5; i++) ASSERT_EQ(sl_map_getc(sl_array_get(&r.dl, i), "attempts")->u.i, 1);
  if (r.elapsed < 4.999 || r.elapsed > 5.001) SL__FAIL("elapsed %.6f s, want 5 (five one-second waits in order)", r.elapsed);
  run_free(&r);
  sl_engine_free(e);
}

/* The jitter modes stay within their bounds over 10,000 draws, and spread over them. */
TEST(policy_jitter_bounds) {
  sl_retry r = {.attempts = 10, .backoff = SL_BACKOFF_EXPONENTIAL, .initial = 100000000, .multiplier = 2, .max = 3000000000};
  uint64_t rng = 42;
  for (int mode = SL_JITTER_NONE; mode <= SL_JITTER_DECORRELATED; mode++) {
    r.jitter = mode;
    int64_t prev = 0, lo_seen = INT64_MAX, hi_seen = 0;
    for (int k = 0; k < 10000; k++) {
      int n = 1 + k % 6;
      int64_t d = (int64_t)(100000000.0 * (double)(1 << (n - 1)));
      if (d > r.max) d = r.max;
      int64_t w = sl_retry_delay(&r, n, prev, &rng);
      int64_t lo = 0, hi = d;
      if (mode == SL_JITTER_NONE) lo = d;
      if (mode == SL_JITTER_EQUAL) lo = d / 2;
      if (mode == SL_JITTER_DECORRELATED) {
        lo = r.initial;
        hi = 3 * (prev > r.initial ? prev : r.initial);
        if (hi > r.max) hi = r.max;
      }
      if (w < lo || w > hi) SL__FAIL("jitter %d, retry %d: %lld outside [%lld, %lld]", mode, n, (long long)w, (long long)lo, (long long)hi);
      if (n == 1 && w < lo_seen) lo_seen = w;
      if (n == 1 && w > hi_seen) hi_seen = w;
      prev = w;
    }
    if (mode == SL_JITTER_FULL && (lo_seen > 5000000 || hi_seen < 95000000)) SL__FAIL("full jitter does not spread: [%lld, %lld]", (long long)lo_seen, (long long)hi_seen);
  }
}

/* A 1 s timeout on a function sleeping 5 s: the record fails at exactly t = 1 s with "timeout
 * after 1s", and the sleeping coroutine is closed (its to-be-closed variable runs), never resumed. */
TEST(policy_timeout) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  const char *lua = "closed, woke = sluice.counter('closed'), sluice.counter('woke')\n"
                    "function slow(r)\n"
                    "  local guard <close> = setmetatable({}, {__close = function() closed:inc() end})\n"
                    "  if r == 2 then sluice.sleep('5s') end\n"
                    "  woke:inc()\n"
                    "  return r\n"
                    "end\n"
                    "function check() return closed:get(), woke:get() end\n";
  const char *st[][2] = {{"generate", "{\"count\": 3}"}, {"map", "{\"fn\": \"slow\", \"timeout\": \"1s\", \"name\": \"m\"}"}};
  run r;
  ASSERT_OK(run_policy(e, lua, st, 2, &r, &err), &err);
  ASSERT_EQ(sl_array_len(&r.out), 2);
  ASSERT_EQ(sl_array_get(&r.out, 0)->u.i, 1);
  ASSERT_EQ(sl_array_get(&r.out, 1)->u.i, 3);
  ASSERT_EQ(sl_array_len(&r.dl), 1);
  const sl_value *d = sl_array_get(&r.dl, 0);
  ASSERT_STR(str_of(d, "error"), "timeout after 1s");
  ASSERT_EQ(sl_map_getc(d, "record")->u.i, 2);
  if (r.elapsed < 0.9999 || r.elapsed > 1.0001) SL__FAIL("elapsed %.6f s, want exactly 1 (the 5 s sleep is cancelled)", r.elapsed);
  run_free(&r);

  /* the counters: 3 closes (two returns, one cancelled), 2 wake-ups */
  sl_pipeline *p;
  ASSERT_OK(sl_pipeline_new(e, "c", &p, &err), &err);
  ASSERT_OK(sl_pipeline_add_lua(p, lua, strlen(lua), "policy.lua", 1, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 3}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "map", "{\"fn\": \"slow\", \"timeout\": \"1s\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "map", "{\"fn\": \"function(r) local c, w = check(); return {c = c, w = w} end\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", &err), &err);
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  sl_value v, last = sl_nil();
  while (sl_collect_pull(sl_pipeline_collect(p, "out"), &v, -1) == 0) {
    sl_value_free(last);
    last = v;
  }
  ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
  ASSERT_EQ(sl_map_getc(&last, "c")->u.i, 3);
  ASSERT_EQ(sl_map_getc(&last, "w")->u.i, 2);
  sl_value_free(last);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* Circuit breaker: window 10, min_calls 5, failure_rate 50, open_for 30 s, half_open_calls 3,
 * one record per second, a function failing while t < 60 s. The exact story:
 *   t=0..4   five calls fail                  -> open at 4
 *   t=5..33  29 records fail fast ("circuit open"), nothing called
 *   t=34..36 half-open: three trials fail      -> open at 36
 *   t=37..65 29 records fail fast
 *   t=66..68 half-open: three trials succeed   -> closed at 68
 *   t=69..99 called, succeed. */
TEST(policy_circuit_breaker) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  const char *lua = "calls = sluice.counter('calls')\n"
                    "function f(r)\n"
                    "  calls:inc()\n"
                    "  local t = math.floor(sluice.now() + 0.5)\n"
                    "  if t < 60 then error('down at ' .. t) end\n"
                    "  return {r = r, t = t, calls = calls:get()}\n"
                    "end\n";
  const char *st[][2] = {{"generate", "{\"count\": 100}"},
                         {"throttle", "{\"rate\": 1, \"per\": \"1s\"}"},
                         {"map", "{\"fn\": \"f\", \"name\": \"cb\", \"circuit_breaker\": {\"window\": 10, \"min_calls\": 5, "
                                 "\"failure_rate\": 50, \"open_for\": \"30s\", \"half_open_calls\": 3}}"}};
  run r;
  ASSERT_OK(run_policy(e, lua, st, 3, &r, &err), &err);
  /* successes: records 67..100 at t = 66..99 */
  ASSERT_EQ(sl_array_len(&r.out), 34);
  for (size_t i = 0; i < 34; i++) {
    const sl_value *v = sl_array_get(&r.out, i);
    ASSERT_EQ(sl_map_getc(v, "r")->u.i, (int64_t)i + 67);
    ASSERT_EQ(sl_map_getc(v, "t")->u.i, (int64_t)i + 66);
  }
  ASSERT_EQ(sl_map_getc(sl_array_get(&r.out, 33), "calls")->u.i, 42); /* 5 + 3 + 3 + 31: none while open */
  /* failures, in order: which records, and how */
  ASSERT_EQ(sl_array_len(&r.dl), 66);
  for (size_t i = 0; i < 66; i++) {
    const sl_value *d = sl_array_get(&r.dl, i);
    int64_t rec = sl_map_getc(d, "record")->u.i;
    ASSERT_EQ(rec, (int64_t)i + 1);
    bool fast = (rec >= 6 && rec <= 34) || (rec >= 38 && rec <= 66);
    const char *msg = str_of(d, "error");
    if (fast && strcmp(msg, "circuit open") != 0) SL__FAIL("record %lld: %s, want circuit open", (long long)rec, msg);
    if (!fast && !strstr(msg, "down at")) SL__FAIL("record %lld: %s, want a call that failed", (long long)rec, msg);
  }
  ASSERT_EQ(r.stats[2].errors, 66);
  /* its state and changes in the stats: open, half-open, open, half-open, closed */
  ASSERT(r.stats[2].breaker && strcmp(r.stats[2].breaker, "closed") == 0);
  ASSERT_EQ(r.stats[2].breaker_changes, 5);
  ASSERT(r.stats[0].breaker == NULL && r.stats[0].breaker_changes == 0);
  run_free(&r);
  sl_engine_free(e);
}

/* Policy options are checked when the stage is added: unknown keys, bad values, retry_on syntax. */
TEST(policy_config_errors) {
  sl_engine *e = sl_test_engine(1, true);
  sl_error_t err;
  sl_error_init(&err);
  const char *bad[][2] = {
      {"{\"fn\": \"r\", \"retry\": {\"atempts\": 3}}", "atempts"},
      {"{\"fn\": \"r\", \"retry\": {\"attempts\": 0}}", "at least 1"},
      {"{\"fn\": \"r\", \"retry\": {\"backoff\": \"fast\"}}", "backoff"},
      {"{\"fn\": \"r\", \"retry\": 3}", "retry takes a map"},
      {"{\"fn\": \"r\", \"retry\": {\"retry_on\": \"e:find(\"}}", "syntax error"},
      {"{\"fn\": \"r\", \"circuit_breaker\": {\"failure_rate\": 150}}", "percentages"},
      {"{\"fn\": \"r\", \"timeout\": \"soon\"}", "timeout"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    sl_pipeline *p;
    ASSERT_OK(sl_pipeline_new(e, "t", &p, &err), &err);
    ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 1}", &err), &err);
    int rc = sl_pipeline_add_json(p, "map", bad[i][0], &err);
    if (rc == 0) SL__FAIL("%s was accepted", bad[i][0]);
    if (!strstr(err.msg, bad[i][1])) SL__FAIL("%s: message '%s' lacks '%s'", bad[i][0], err.msg, bad[i][1]);
    sl_pipeline_free(p);
  }
  sl_engine_free(e);
}

/* buffer_unordered and buffered with a timeout: 20 calls sleeping r seconds, 10 at a time, 5.5 s
 * timeout. 1..5 come back at 1..5 s and free slots for 11..15; 6..10 time out at 5.5 s, which
 * frees slots for 16..20; 11..15 time out at 6.5..10.5 s and 16..20 at 11 s: the run ends at
 * exactly 11 s, and a timed-out call's slot is free again at once. */
TEST(policy_timeout_fanout) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  const char *lua = "function nap(r) sluice.sleep(r) return r end\n";
  for (int ordered = 0; ordered < 2; ordered++) {
    const char *st[][2] = {{"generate", "{\"count\": 20}"},
                           {ordered ? "buffered" : "buffer_unordered", "{\"fn\": \"nap\", \"concurrency\": 10, \"timeout\": \"5.5s\"}"}};
    run r;
    ASSERT_OK(run_policy(e, lua, st, 2, &r, &err), &err);
    ASSERT_EQ(sl_array_len(&r.out), 5);
    for (size_t i = 0; i < 5; i++) ASSERT_EQ(sl_array_get(&r.out, i)->u.i, (int64_t)i + 1);
    ASSERT_EQ(sl_array_len(&r.dl), 15);
    for (size_t i = 0; i < 15; i++) ASSERT_STR(str_of(sl_array_get(&r.dl, i), "error"), "timeout after 5.5s");
    if (r.elapsed < 10.9999 || r.elapsed > 11.0001) SL__FAIL("%s: elapsed %.6f s, want 11", st[1][0], r.elapsed);
    run_free(&r);
  }
  sl_engine_free(e);
}

/* Each try gets the record as it came, also behind another Lua stage (which would otherwise hand
 * the same Lua table on, changed by the failed try). */
TEST(policy_retry_original_record) {
  sl_engine *e = sl_test_engine(1, true);
  sl_error_t err;
  sl_error_init(&err);
  const char *lua = "tries = 0\n"
                    "function bump(r) r.n = r.n + 10; tries = tries + 1; if tries < 2 then error('again') end return r end\n";
  const char *st[][2] = {{"generate", "{\"count\": 1}"},
                         {"map", "\"{n = r}\""},
                         {"map", "{\"fn\": \"bump\", \"retry\": {\"attempts\": 2, \"initial\": \"1ms\"}}"}};
  run r;
  ASSERT_OK(run_policy(e, lua, st, 3, &r, &err), &err);
  ASSERT_EQ(sl_array_len(&r.out), 1);
  ASSERT_EQ(sl_map_getc(sl_array_get(&r.out, 0), "n")->u.i, 11);
  run_free(&r);
  sl_engine_free(e);
}

/* buffer_unordered and buffered with retry and a circuit breaker: each record's tries run at 0,
 * 100 and 300 ms while other records go on; with 2 attempts every record reaches the dead letter
 * with attempts = 2; a breaker that opens makes the rest fail fast without a call. */
TEST(policy_fanout_retry_breaker) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  const char *lua = "tries = {}\n"
                    "function flaky(r)\n"
                    "  tries[r] = (tries[r] or 0) + 1\n"
                    "  sluice.sleep(0.01 * (r % 3))\n" /* calls overlap and finish out of order */
                    "  if tries[r] < 3 then error('busy ' .. r) end\n"
                    "  return {r = r, t = sluice.now(), tries = tries[r]}\n"
                    "end\n"
                    "function down(r) error('down') end\n";
  for (int ordered = 0; ordered < 2; ordered++) {
    const char *kind = ordered ? "buffered" : "buffer_unordered";
    const char *st[][2] = {{"generate", "{\"count\": 12}"},
                           {kind, "{\"fn\": \"flaky\", \"concurrency\": 4, \"retry\": {\"attempts\": 3, \"initial\": \"100ms\", \"backoff\": \"exponential\"}}"}};
    run r;
    ASSERT_OK(run_policy(e, lua, st, 2, &r, &err), &err);
    ASSERT_EQ(sl_array_len(&r.out), 12);
    ASSERT_EQ(sl_array_len(&r.dl), 0);
    for (size_t i = 0; i < 12; i++) {
      const sl_value *o = sl_array_get(&r.out, i);
      int64_t k = sl_map_getc(o, "r")->u.i;
      if (ordered) ASSERT_EQ(k, (int64_t)i + 1);
      ASSERT_EQ(sl_map_getc(o, "tries")->u.i, 3);
      /* tries of record k start at s, s + 10 ms·(k%3) + 100 ms, then + 200 ms more: each try
       * sleeps 10 ms·(k%3) first, so success is at s + 3·10 ms·(k%3) + 300 ms */
      double t = sl_map_getc(o, "t")->u.d, want_min = 0.3 + 0.03 * (double)(k % 3);
      if (t < want_min - 1e-9) SL__FAIL("%s: record %lld done at %.6f s, before %.6f", kind, (long long)k, t, want_min);
    }
    ASSERT_EQ(r.stats[1].retries, 24);
    run_free(&r);
    const char *st2[][2] = {{"generate", "{\"count\": 5}"},
                            {kind, "{\"fn\": \"flaky\", \"concurrency\": 2, \"retry\": {\"attempts\": 2, \"initial\": \"10ms\"}}"}};
    ASSERT_OK(run_policy(e, "tries = {}\nfunction flaky(r) tries[r] = (tries[r] or 0) + 1 error('busy ' .. r) end\n", st2, 2, &r, &err), &err);
    ASSERT_EQ(sl_array_len(&r.out), 0);
    ASSERT_EQ(sl_array_len(&r.dl), 5);
    for (size_t i = 0; i < 5; i++) {
      const sl_value *d = sl_array_get(&r.dl, i);
      ASSERT_EQ(sl_map_getc(d, "attempts")->u.i, 2);
      if (!strstr(str_of(d, "error"), "busy")) SL__FAIL("error: %s", str_of(d, "error"));
    }
    run_free(&r);
    const char *st3[][2] = {{"generate", "{\"count\": 10}"},
                            {kind, "{\"fn\": \"down\", \"concurrency\": 1, \"circuit_breaker\": {\"window\": 4, \"min_calls\": 4, \"failure_rate\": 50, \"open_for\": \"1h\"}}"}};
    ASSERT_OK(run_policy(e, lua, st3, 2, &r, &err), &err);
    ASSERT_EQ(sl_array_len(&r.dl), 10);
    int open = 0;
    for (size_t i = 0; i < 10; i++) open += strcmp(str_of(sl_array_get(&r.dl, i), "error"), "circuit open") == 0;
    ASSERT_EQ(open, 6);
    ASSERT_STR(r.stats[1].breaker, "open");
    run_free(&r);
  }
  sl_engine_free(e);
}
