/*
 * lua_async.c — waiting Lua calls do not hold a worker.
 *
 * generate(count = CALLS) -> buffer_unordered(concurrency = C, fn: sluice.sleep("1s"); return r)
 * -> null, on one worker. With C calls in flight at once, CALLS calls of 1 s take CALLS / C
 * seconds (1,000 / 200 = 5 s) if a parked call costs nothing but its timer. Run twice:
 *   - on the real clock: prints the wall time (ideal CALLS / C s) and the time beyond it;
 *   - on the virtual clock: prints the virtual time (exactly CALLS / C s) and the real time
 *     it took (near zero: timers fire as soon as everything is idle).
 *
 * usage: bench_lua_async [--quick] [CALLS [CONCURRENCY]]   (default 1000 200; --quick: the same,
 * the real-clock run is what takes time and it is already short)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char code[] =
    "function wait_one(r)\n"
    "  sluice.sleep(\"1s\")\n"
    "  return r\n"
    "end\n";

/* Runs the pipeline; returns real seconds, the engine's elapsed seconds in *engine_s. */
static double run(bool virtual_time, long calls, long concurrency, double *engine_s) {
  sl_engine_config cfg;
  sl_engine_config_init(&cfg);
  cfg.workers = 1;
  cfg.virtual_time = virtual_time;
  sl_engine *e;
  sl_pipeline *p;
  sl_error_t err;
  sl_error_init(&err);
  if (sl_engine_new(&cfg, &e, &err) || sl_pipeline_new(e, "lua_async", &p, &err)) goto fail;
  if (sl_pipeline_add_lua(p, code, sizeof code - 1, "bench/lua_async.c", 1, &err)) goto fail;
  char json[128];
  snprintf(json, sizeof json, "{\"count\": %ld}", calls);
  if (sl_pipeline_add_json(p, "generate", json, &err)) goto fail;
  snprintf(json, sizeof json, "{\"concurrency\": %ld, \"fn\": \"wait_one\", \"on_error\": \"fail\"}", concurrency);
  if (sl_pipeline_add_json(p, "buffer_unordered", json, &err)) goto fail;
  if (sl_pipeline_add_json(p, "null", "{\"name\": \"sink\"}", &err)) goto fail;
  double t0 = now_s();
  if (sl_pipeline_run(p, &err)) goto fail;
  double t = now_s() - t0;
  *engine_s = sl_pipeline_elapsed(p);
  sl_stage_stats s;
  sl_pipeline_stats(p, 2, &s);
  if ((long)s.in != calls) {
    fprintf(stderr, "sink saw %llu of %ld records\n", (unsigned long long)s.in, calls);
    exit(1);
  }
  sl_pipeline_free(p);
  sl_engine_free(e);
  return t;
fail:
  fprintf(stderr, "lua_async: %s\n", err.msg);
  exit(1);
}

int main(int argc, char **argv) {
  long calls = 1000, concurrency = 200;
  int pos = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) continue;
    if (pos == 0) calls = atol(argv[i]);
    else if (pos == 1) concurrency = atol(argv[i]);
    pos++;
  }
  if (calls < 1 || concurrency < 1) {
    fprintf(stderr, "usage: bench_lua_async [--quick] [CALLS [CONCURRENCY]]\n");
    return 2;
  }
  double ideal = (double)((calls + concurrency - 1) / concurrency);
  printf("lua_async: %ld calls of sluice.sleep(\"1s\") through buffer_unordered(concurrency %ld), workers = 1; ideal %.0f s\n",
         calls, concurrency, ideal);
  double eng;
  double real = run(false, calls, concurrency, &eng);
  printf("real clock:    wall %.3f s (%.3f s over the ideal; engine elapsed %.3f s)\n", real, real - ideal, eng);
  fflush(stdout);
  real = run(true, calls, concurrency, &eng);
  printf("virtual clock: virtual %.3f s, real %.4f s\n", eng, real);
  return 0;
}
