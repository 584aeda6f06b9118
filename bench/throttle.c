/*
 * throttle.c — real-time accuracy of the throttle stage: generate → throttle(rate R, burst 1)
 * → a C sink stamping the engine clock, for SECONDS seconds at each rate; prints the achieved
 * rate between the first and the last record (target: within 1% of R) and how late the last
 * record left against its ideal time. Prints figures only.
 * usage: bench_throttle [SECONDS (default 10)] [RATE ...] (default rates 1000 and 100000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

typedef struct stamps {
  sl_stage *st;
  int64_t n, first, last; /* records seen, engine time of the first and the last */
  double rate;            /* the throttle's rate: where each record should arrive */
  double dev_max, dev_sum; /* jitter: |arrival - ideal| of each batch's first record, ns */
  int64_t batches;
} stamps;

static double the_rate;

static stamps *the_sink;

static int stamps_init(void *ctx, sl_stage *st, sl_error_t *err) {
  ((stamps *)ctx)->st = st;
  ((stamps *)ctx)->rate = the_rate;
  the_sink = ctx;
  return 0;
}

static int stamps_process(void *ctx, sl_batch *in, sl_emitter *em) {
  stamps *s = ctx;
  int64_t now = sl_stage_now(s->st);
  if (s->n == 0) s->first = now;
  double dev = (double)(now - s->first) - (double)s->n * 1e9 / s->rate;
  if (dev < 0) dev = -dev;
  if (dev > s->dev_max) s->dev_max = dev;
  s->dev_sum += dev;
  s->batches++;
  s->last = now;
  s->n += in->len;
  return 0;
}

static const sl_stage_kind stamps_kind = {
    .abi = SL_STAGE_ABI,
    .name = "stamps",
    .doc = "bench: when the first and last records arrive",
    .ctx_size = sizeof(stamps),
    .flags = SL_STAGE_SINK,
    .init = stamps_init,
    .process = stamps_process,
};

static int run(double seconds, double rate) {
  sl_engine_config cfg;
  sl_engine_config_init(&cfg);
  sl_engine *e;
  sl_error_t err;
  if (sl_engine_new(&cfg, &e, &err) || sl_engine_register(e, &stamps_kind, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  long long count = (long long)(seconds * rate) + 1;
  the_rate = rate;
  char gen[64], thr[96];
  snprintf(gen, sizeof gen, "{\"count\": %lld}", count);
  snprintf(thr, sizeof thr, "{\"rate\": %.0f, \"per\": \"1s\", \"burst\": 1}", rate);
  sl_pipeline *p;
  sl_pipeline_new(e, "throttle", &p, NULL);
  int rc = sl_pipeline_add_json(p, "generate", gen, &err);
  if (!rc) rc = sl_pipeline_add_json(p, "throttle", thr, &err);
  if (!rc) rc = sl_pipeline_add_json(p, "stamps", NULL, &err);
  if (!rc) rc = sl_pipeline_run(p, &err);
  if (rc) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  stamps *s = the_sink;
  double span = (double)(s->last - s->first) / 1e9;
  double achieved = (double)(s->n - 1) / span;
  double ideal = (double)(s->n - 1) / rate;
  printf("throttle %9.0f/s over %5.1f s: %lld records, achieved %11.2f/s (%+.3f%%), last record %+.2f ms from ideal\n", rate,
         seconds, (long long)s->n, achieved, (achieved / rate - 1) * 100, (span - ideal) * 1e3);
  printf("  jitter (arrival of each batch against its ideal time): mean %.3f ms, max %.3f ms over %lld batches\n",
         s->dev_sum / (double)s->batches / 1e6, s->dev_max / 1e6, (long long)s->batches);
  printf("BENCH {\"variant\": \"%.0f/s\", \"seconds\": %.6f, \"records\": %lld, \"rate\": %.0f, \"achieved\": %.3f, "
         "\"error_pct\": %.4f, \"last_ms\": %.3f, \"jitter_mean_ms\": %.4f, \"jitter_max_ms\": %.4f}\n",
         rate, span, (long long)s->n, rate, achieved, (achieved / rate - 1) * 100, (span - ideal) * 1e3,
         s->dev_sum / (double)s->batches / 1e6, s->dev_max / 1e6);
  sl_pipeline_free(p);
  sl_engine_free(e);
  return 0;
}

int main(int argc, char **argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 10;
  if (seconds <= 0) {
    fprintf(stderr, "usage: bench_throttle [SECONDS] [RATE ...]\n");
    return 2;
  }
  int rc = 0;
  if (argc > 2)
    for (int i = 2; i < argc; i++) rc |= run(seconds, atof(argv[i]));
  else
    rc = run(seconds, 1000) | run(seconds, 100000);
  return rc;
}
