/*
 * timers.c — the virtual clock's speed: N records that each wait one second in turn (N seconds
 * of virtual time), and the real-clock lateness of 1 ms timers. Prints figures only.
 * usage: bench_timers [N (default 100000)]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sluice.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A stage that re-arms a timer per record, one at a time (the shape of throttle and retry). */
typedef struct tick {
  int64_t period;
  int64_t pending;   /* records waiting */
  int64_t late_sum;  /* ns of lateness, real clock */
  int64_t late_max;
  int64_t due;       /* deadline of the armed timer, 0 = none */
  int64_t fired;
  sl_stage *st;
} tick;

static const sl_option tick_options[] = {
    {SL_OPT_DURATION, "period", "1s", offsetof(tick, period), "wait per record", NULL, SL_OPT_PRIMARY},
    SL_OPTIONS_END,
};

static tick *last_tick;

static int tick_init(void *ctx, sl_stage *st, sl_error_t *err) {
  ((tick *)ctx)->st = st;
  last_tick = ctx;
  return 0;
}

static void arm(tick *t) {
  if (t->due || !t->pending) return;
  t->due = sl_stage_now(t->st) + t->period;
  sl_stage_timer(t->st, t->due, 1);
}

static int tick_process(void *ctx, sl_batch *in, sl_emitter *em) {
  tick *t = ctx;
  t->pending += in->len;
  sl_stage_pause_input(t->st, t->pending > 1000);
  arm(t);
  return 0;
}

static int tick_event(void *ctx, uint64_t token, sl_emitter *em) {
  tick *t = ctx;
  int64_t late = sl_stage_now(t->st) - t->due;
  t->late_sum += late;
  if (late > t->late_max) t->late_max = late;
  t->fired++;
  t->pending--;
  t->due = 0;
  sl_emit(em, SL_NO_ORIGIN, sl_int(t->fired));
  sl_stage_pause_input(t->st, t->pending > 1000);
  arm(t);
  return 0;
}

static int tick_flush(void *ctx, sl_emitter *em) { return ((tick *)ctx)->pending ? SL_PARKED : 0; }

static const sl_stage_kind tick_kind = {
    .abi = SL_STAGE_ABI, .name = "tick", .doc = "bench: one timer per record",
    .options = tick_options, .ctx_size = sizeof(tick),
    .init = tick_init, .process = tick_process, .flush = tick_flush, .event = tick_event,
};

static double run(bool virtual_time, long n, const char *period, int64_t *late_avg, int64_t *late_max) {
  sl_engine_config cfg;
  sl_engine_config_init(&cfg);
  cfg.virtual_time = virtual_time;
  sl_engine *e;
  sl_pipeline *p;
  sl_error_t err;
  sl_engine_new(&cfg, &e, &err);
  sl_engine_register(e, &tick_kind, &err);
  sl_pipeline_new(e, "timers", &p, &err);
  char json[64];
  snprintf(json, sizeof json, "{\"count\": %ld}", n);
  sl_pipeline_add_json(p, "generate", json, &err);
  snprintf(json, sizeof json, "\"%s\"", period);
  sl_pipeline_add_json(p, "tick", json, &err);
  sl_pipeline_add_json(p, "null", "", &err);
  double t0 = now_s();
  if (sl_pipeline_run(p, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    exit(1);
  }
  double t = now_s() - t0;
  *late_avg = last_tick->late_sum / (last_tick->fired ? last_tick->fired : 1);
  *late_max = last_tick->late_max;
  sl_pipeline_free(p);
  sl_engine_free(e);
  return t;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 100000;
  int64_t avg, max;
  double t = run(true, n, "1s", &avg, &max);
  printf("virtual clock: %ld one-second timers in turn = %ld s virtual in %.3f s real (%.1f us per timer)\n", n, n, t,
         t * 1e6 / (double)n);
  t = run(false, 1000, "1ms", &avg, &max);
  printf("real clock: 1000 x 1 ms timers in turn in %.3f s; lateness avg %.1f us, max %.1f us\n", t, avg / 1e3,
         max / 1e3);
  return 0;
}
