/*
 * passthrough.c — the engine's own cost per record per hop.
 *
 * generate -> K c_map stages that each rewrite every record (add 1) -> null, for K = 1, 4, 16
 * and workers = 1, 2. Prints records/s end to end and ns per record per hop (wall time divided
 * by records x K), then a long run that samples peak RSS to show memory stays flat.
 *
 * usage: bench_passthrough [records (default 20000000)] [long-run records (default 100000000)]
 *        bench_passthrough --one WORKERS K RECORDS [queued]
 *          one configuration, its figures on one "BENCH {json}" line (what bench/run runs)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "sluice.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) kib = atol(line + 6);
  if (f) fclose(f);
  return kib;
}

static int add_one(void *ud, sl_value *rec, char *errbuf, size_t errlen) {
  rec->u.i += 1;
  return 0;
}

/* Runs one configuration; returns seconds. queued: every stage gets its own input queue (no
 * fusion), which measures the cost of a hop through a queue between tasks. */
static double run(int workers, int k, long records, long *peak_rss, bool queued) {
  sl_engine_config cfg;
  sl_engine_config_init(&cfg);
  cfg.workers = workers;
  sl_engine *e;
  sl_pipeline *p;
  sl_error_t err;
  if (sl_engine_new(&cfg, &e, &err) || sl_pipeline_new(e, "bench", &p, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    exit(1);
  }
  char json[64];
  snprintf(json, sizeof json, "{\"count\": %ld}", records);
  sl_pipeline_add_json(p, "generate", json, &err);
  for (int i = 0; i < k; i++) {
    sl_value o = sl_nil();
    if (queued) sl_value_from_json("{\"queue\": {\"capacity\": 1024}}", 29, &o, NULL);
    sl_pipeline_add_fn(p, "c_map", add_one, NULL, o, &err);
  }
  sl_pipeline_add_json(p, "null", "{\"name\": \"sink\"}", &err);
  double t0 = now_s();
  if (sl_pipeline_start(p, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    exit(1);
  }
  long peak = rss_kib();
  while (sl_pipeline_wait(p, 200000000, NULL) == SL_ETIMEDOUT) {
    long r = rss_kib();
    if (r > peak) peak = r;
  }
  double t = now_s() - t0;
  sl_stage_stats s;
  sl_pipeline_stats(p, (size_t)k + 1, &s);
  if ((long)s.in != records) {
    fprintf(stderr, "sink saw %llu of %ld records\n", (unsigned long long)s.in, records);
    exit(1);
  }
  if (peak_rss) *peak_rss = peak;
  sl_pipeline_free(p);
  sl_engine_free(e);
  return t;
}

int main(int argc, char **argv) {
  if (argc >= 5 && strcmp(argv[1], "--one") == 0) {
    int w = atoi(argv[2]), k = atoi(argv[3]);
    long n = atol(argv[4]);
    bool queued = argc > 5 && strcmp(argv[5], "queued") == 0;
    if (w < 1 || k < 1 || n < 1) {
      fprintf(stderr, "usage: bench_passthrough --one WORKERS K RECORDS [queued]\n");
      return 2;
    }
    double t = run(w, k, n, NULL, queued);
    printf("BENCH {\"seconds\": %.6f, \"records\": %ld, \"workers\": %d, \"k\": %d, \"ns_per_hop\": %.3f}\n", t, n, w, k,
           t * 1e9 / ((double)n * k));
    return 0;
  }
  long records = argc > 1 ? atol(argv[1]) : 20000000;
  long long_records = argc > 2 ? atol(argv[2]) : 100000000;
  printf("passthrough: generate -> K x c_map(add 1) -> null, %ld records\n", records);
  printf("%-8s %-4s %-8s %14s %16s %12s\n", "workers", "K", "stages", "records/s", "ns/record/hop", "seconds");
  double t_k16[2][3] = {{0}};
  for (int queued = 0; queued < 2; queued++)
    for (int k = 1; k <= 16; k *= 4) {
      if (queued && k != 16) continue;
      for (int w = 1; w <= 2; w++) {
        double t = run(w, k, records, NULL, queued);
        printf("%-8d %-4d %-8s %14.0f %16.2f %12.3f\n", w, k, queued ? "queued" : "fused", records / t,
               t * 1e9 / ((double)records * k), t);
        if (k == 16) t_k16[queued][w] = t;
        fflush(stdout);
      }
    }
  printf("speed-up workers 2 vs 1 at K=16: %.2fx fused (the default), %.2fx with a queue per stage\n",
         t_k16[0][1] / t_k16[0][2], t_k16[1][1] / t_k16[1][2]);
  if (long_records > 0) {
    long peak;
    long before = rss_kib();
    double t = run(2, 4, long_records, &peak, false);
    printf("memory: %ld records through K=4 at workers=2 in %.1f s; RSS before %ld KiB, peak during %ld KiB\n",
           long_records, t, before, peak);
  }
  return 0;
}
