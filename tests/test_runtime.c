/*
 * test_runtime.c — timers on the virtual and real clock, and end-to-end acknowledgement, through
 * C stage kinds registered by the test (the embedding API's sl_engine_register).
 */
#include <stdatomic.h>
#include <pthread.h>
#include <time.h>

#include "test.h"


static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- a "delay" transform: holds each record `delay` ns, one at a time, in order ---- */

typedef struct delay {
  int64_t delay;    /* option: duration */
  sl_value *q;      /* held records */
  sl_ack **acks;
  size_t head, len, cap;
  bool armed;       /* a timer is pending */
  sl_stage *st;
} delay;

static const sl_option delay_options[] = {
    {SL_OPT_DURATION, "delay", "1s", offsetof(delay, delay), "how long each record waits", NULL, SL_OPT_PRIMARY},
    SL_OPTIONS_END,
};

static int delay_init(void *ctx, sl_stage *st, sl_error_t *err) {
  ((delay *)ctx)->st = st;
  return 0;
}

static void arm(delay *d) {
  if (d->armed || d->len == 0) return;
  d->armed = true;
  sl_stage_timer(d->st, sl_stage_now(d->st) + d->delay, 7);
}

static int delay_process(void *ctx, sl_batch *in, sl_emitter *em) {
  delay *d = ctx;
  for (uint32_t i = 0; i < in->len; i++) {
    if (d->head + d->len == d->cap) {
      d->cap = d->cap ? d->cap * 2 : 64;
      d->q = realloc(d->q, d->cap * sizeof *d->q);
      d->acks = realloc(d->acks, d->cap * sizeof *d->acks);
    }
    d->q[d->head + d->len] = sl_batch_take(in, i);
    d->acks[d->head + d->len] = sl_batch_hold(in, i);
    d->len++;
  }
  sl_stage_pause_input(d->st, d->len >= 1000); /* bound what it holds */
  arm(d);
  return 0;
}

/* Emits the oldest record as {v: record, t: seconds on the engine clock}. */
static int delay_event(void *ctx, uint64_t token, sl_emitter *em) {
  delay *d = ctx;
  if (token != 7 || d->len == 0) return SL_EINVAL;
  d->armed = false;
  sl_value m = sl_map(2);
  sl_map_setc(&m, "v", d->q[d->head]);
  sl_map_setc(&m, "t", sl_int(sl_stage_now(d->st)));
  sl_emit_acked(em, m, d->acks[d->head]);
  d->head++;
  d->len--;
  if (d->len == 0) d->head = 0;
  sl_stage_pause_input(d->st, d->len >= 1000);
  arm(d);
  return 0;
}

static int delay_flush(void *ctx, sl_emitter *em) { return ((delay *)ctx)->len ? SL_PARKED : 0; }

static void delay_destroy(void *ctx) {
  delay *d = ctx;
  for (size_t i = d->head; i < d->head + d->len; i++) {
    sl_value_free(d->q[i]);
    sl_ack_release(d->acks[i], true);
  }
  free(d->q);
  free(d->acks);
}

static const sl_stage_kind delay_kind = {
    .abi = SL_STAGE_ABI,
    .name = "delay",
    .doc = "test: holds each record for a while",
    .options = delay_options,
    .ctx_size = sizeof(delay),
    .init = delay_init,
    .process = delay_process,
    .flush = delay_flush,
    .destroy = delay_destroy,
    .event = delay_event,
};

/* 10,000 records each wait one second, one after the other: 10,000 s of virtual time. */
TEST(runtime_virtual_timers) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  ASSERT_OK(sl_engine_register(e, &delay_kind, &err), &err);
  ASSERT_EQ(sl_engine_register(e, &delay_kind, &err), SL_EINVAL); /* twice */
  sl_pipeline *p;
  sl_pipeline_new(e, "timers", &p, NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 10000}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "delay", "\"1s\"", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", &err), &err);
  double t0 = mono_s();
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  double real = mono_s() - t0;
  printf("     10,000 one-second timers: %.3f s real, %.0f s virtual\n", real, sl_pipeline_elapsed(p));
  ASSERT(sl_pipeline_elapsed(p) == 10000.0);
  sl_collect *c = sl_pipeline_collect(p, "out");
  sl_value v;
  int64_t n = 0;
  while (sl_collect_pull(c, &v, 0) == SL_OK) {
    n++;
    ASSERT_EQ(sl_map_getc(&v, "v")->u.i, n);                          /* in order */
    ASSERT_EQ(sl_map_getc(&v, "t")->u.i, n * (int64_t)1000000000);   /* exactly n seconds */
    sl_value_free(v);
  }
  ASSERT_EQ(n, 10000);
  ASSERT(real < 30.0); /* nothing really waited (10,000 s); the speed is bench/timers' figure */
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* The real clock: a 20 ms delay takes at least 20 ms (no upper bound: machines stall). */
TEST(runtime_real_timer) {
  sl_engine *e = sl_test_engine(2, false);
  sl_error_t err;
  ASSERT_OK(sl_engine_register(e, &delay_kind, &err), &err);
  sl_pipeline *p;
  sl_pipeline_new(e, "timers", &p, NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 3}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "delay", "{\"delay\": \"20ms\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", &err), &err);
  double t0 = mono_s();
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  ASSERT(mono_s() - t0 >= 0.060);
  sl_collect *c = sl_pipeline_collect(p, "out");
  sl_value v;
  int64_t prev = 0, n = 0;
  while (sl_collect_pull(c, &v, 0) == SL_OK) {
    int64_t t = sl_map_getc(&v, "t")->u.i;
    if (n++) ASSERT(t - prev >= 20000000);
    prev = t;
    sl_value_free(v);
  }
  ASSERT_EQ(n, 3);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* ---- acknowledgement: a source of "units" of 3 records each, with a token per unit ---- */

typedef struct units {
  int64_t count;       /* option: units to emit */
  int64_t next;
  atomic_llong acked[3]; /* by status */
} units;

static _Atomic(units *) last_units; /* the test reads the source's context through this */

static const sl_option units_options[] = {
    {SL_OPT_INT, "count", "100", offsetof(units, count), "units", NULL, SL_OPT_PRIMARY},
    SL_OPTIONS_END,
};

static int units_init(void *ctx, sl_stage *st, sl_error_t *err) {
  atomic_store(&last_units, (units *)ctx);
  return 0;
}

static int units_produce(void *ctx, sl_emitter *em) {
  units *u = ctx;
  if (u->next >= u->count) return SL_DONE;
  sl_ack *a = sl_ack_new(sl_emitter_stage(em), (uint64_t)u->next);
  for (int k = 0; k < 3; k++) sl_emit_acked(em, sl_int(u->next * 3 + k), k < 2 ? sl_ack_ref(a) : a);
  u->next++;
  return 0;
}

static void units_acked(void *ctx, uint64_t id, int status) {
  units *u = ctx;
  atomic_fetch_add(&u->acked[status], 1);
}

static const sl_stage_kind units_kind = {
    .abi = SL_STAGE_ABI,
    .name = "units",
    .doc = "test: a source with end-to-end acks",
    .options = units_options,
    .ctx_size = sizeof(units),
    .flags = SL_STAGE_SOURCE,
    .init = units_init,
    .produce = units_produce,
    .acked = units_acked,
};

/* A stage that joins pairs of records into one array (like chunks), joining their acks. */
typedef struct pairs {
  sl_value held;
  sl_ack *held_ack;
  bool have;
} pairs;

static int pairs_process(void *ctx, sl_batch *in, sl_emitter *em) {
  pairs *pr = ctx;
  for (uint32_t i = 0; i < in->len; i++) {
    if (!pr->have) {
      pr->held = sl_batch_take(in, i);
      pr->held_ack = sl_batch_hold(in, i);
      pr->have = true;
      continue;
    }
    sl_value a = sl_array(2);
    sl_array_push(&a, pr->held);
    sl_array_push(&a, sl_batch_take(in, i));
    sl_ack *parts[2] = {pr->held_ack, sl_batch_hold(in, i)};
    sl_emit_acked(em, a, sl_ack_join(parts, 2));
    pr->have = false;
  }
  return 0;
}

static int pairs_flush(void *ctx, sl_emitter *em) {
  pairs *pr = ctx;
  if (pr->have) {
    sl_value a = sl_array(1);
    sl_array_push(&a, pr->held);
    sl_emit_acked(em, a, pr->held_ack);
    pr->have = false;
  }
  return 0;
}

static void pairs_destroy(void *ctx) {
  pairs *pr = ctx;
  if (pr->have) {
    sl_value_free(pr->held);
    sl_ack_release(pr->held_ack, true);
  }
}

static const sl_stage_kind pairs_kind = {
    .abi = SL_STAGE_ABI,
    .name = "pairs",
    .doc = "test: joins records two by two",
    .ctx_size = sizeof(pairs),
    .process = pairs_process,
    .flush = pairs_flush,
    .destroy = pairs_destroy,
};

static int drop_odd(void *ud, sl_value *rec, char *errbuf, size_t errlen) { return rec->u.i % 2 == 0; }

static int fail_seven(void *ud, sl_value *rec, char *errbuf, size_t errlen) {
  if (rec->u.i == 7) {
    snprintf(errbuf, errlen, "seven");
    return -1;
  }
  return 0;
}

static sl_engine *ack_engine(void) {
  sl_engine *e = sl_test_engine(2, false);
  if (sl_engine_register(e, &units_kind, NULL) || sl_engine_register(e, &pairs_kind, NULL)) abort();
  return e;
}

/* Through a filter that drops, a join, a broadcast to two sinks (one a collect nobody pulls yet):
 * no unit is acknowledged before its records reached every sink, and then every unit is. */
TEST(runtime_acks_end_to_end) {
  sl_engine *e = ack_engine();
  sl_pipeline *p;
  sl_error_t err;
  sl_pipeline_new(e, "acks", &p, NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "units", "{\"count\": 1000, \"name\": \"src\"}", &err), &err);
  sl_value o = sl_nil();
  ASSERT_OK(sl_pipeline_add_fn(p, "c_filter", drop_odd, NULL, o, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "pairs", "{\"name\": \"pairs\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "null", "{\"input\": \"pairs\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\", \"input\": \"pairs\"}", &err), &err);
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  units *u = atomic_load(&last_units);
  sl_stage_stats s;
  do sl_pipeline_stats(p, 0, &s);
  while (s.out < 3000);
  /* all emitted, nothing pulled from "out": no unit may be acknowledged (the source is still
   * running, waiting for its acks, so its context is alive) */
  ASSERT_EQ(sl_pipeline_wait(p, 0, NULL), SL_ETIMEDOUT);
  ASSERT_EQ(atomic_load(&u->acked[SL_ACK_OK]) + atomic_load(&u->acked[SL_ACK_DROPPED]), 0);
  /* pull everything: then the pipeline ends, with every unit acknowledged */
  sl_collect *c = sl_pipeline_collect(p, "out");
  sl_value v;
  int n = 0;
  while (sl_collect_pull(c, &v, -1) == SL_OK) {
    n++;
    sl_value_free(v);
  }
  ASSERT_EQ(n, 750); /* 1500 even records, in pairs */
  ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
  ASSERT_EQ(atomic_load(&u->acked[SL_ACK_OK]), 1000);
  ASSERT_EQ(atomic_load(&u->acked[SL_ACK_DROPPED]), 0);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

static void ack_case(const char *on_error, int64_t want_ok, int64_t want_dropped) {
  sl_engine *e = ack_engine();
  sl_pipeline *p;
  sl_error_t err;
  sl_pipeline_new(e, "acks", &p, NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "units", "{\"count\": 100}", &err), &err);
  char json[100];
  snprintf(json, sizeof json, "{\"on_error\": \"%s\"}", on_error);
  sl_value o;
  sl_value_from_json(json, strlen(json), &o, NULL);
  ASSERT_OK(sl_pipeline_add_fn(p, "c_map", fail_seven, NULL, o, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "null", "", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"dl\", \"input\": []}", &err), &err);
  ASSERT_OK(sl_pipeline_set_dead_letter(p, "dl", &err), &err);
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  units *u = atomic_load(&last_units);
  sl_collect *c = sl_pipeline_collect(p, "dl");
  sl_value v;
  while (sl_collect_pull(c, &v, -1) == SL_OK) sl_value_free(v);
  ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
  /* the source ended only after all its tokens came back: its counts are final */
  ASSERT_EQ(atomic_load(&u->acked[SL_ACK_OK]), want_ok);
  ASSERT_EQ(atomic_load(&u->acked[SL_ACK_DROPPED]), want_dropped);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

TEST(runtime_acks_skip_is_dropped) { ack_case("skip", 99, 1); }
TEST(runtime_acks_dead_letter_is_ok) { ack_case("dead_letter", 100, 0); }

/* ---- regressions found in review ---- */

/* A stage that holds an ack is cancelled from downstream (take): the source stops waiting. */
TEST(runtime_cancel_with_held_ack) {
  sl_engine *e = ack_engine();
  sl_pipeline *p;
  sl_error_t err;
  sl_pipeline_new(e, "acks", &p, NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "units", "{\"count\": 1}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "pairs", "", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "take", "1", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "null", "", &err), &err);
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  ASSERT_OK(sl_pipeline_wait(p, 30 * (int64_t)1000000000, &err), &err); /* a hang guard, not a timing */
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* Freeing a running pipeline whose stages hold acks: every token goes back to a live source. */
TEST(runtime_free_with_held_acks) {
  sl_engine *e = ack_engine();
  sl_pipeline *p;
  sl_error_t err;
  sl_pipeline_new(e, "acks", &p, NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "units", "{\"count\": 1000000}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "pairs", "", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\", \"queue\": {\"capacity\": 10}}", &err), &err);
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  sl_value v;
  ASSERT_OK(sl_collect_pull(sl_pipeline_collect(p, "out"), &v, -1), (sl_error_t *)NULL);
  sl_value_free(v);
  sl_pipeline_free(p); /* abort, wait, free: ASan checks no token reaches a freed source */
  sl_engine_free(e);
}

/* A stage that arms a timer and wakes itself in init. */
typedef struct early {
  int fired;
} early;

static int early_init(void *ctx, sl_stage *st, sl_error_t *err) {
  sl_stage_timer(st, sl_stage_now(st), 1);
  sl_stage_wake(st);
  return 0;
}

static int early_event(void *ctx, uint64_t token, sl_emitter *em) {
  ((early *)ctx)->fired++;
  return 0;
}

static int early_process(void *ctx, sl_batch *in, sl_emitter *em) {
  for (uint32_t i = 0; i < in->len; i++) sl_emit(em, i, sl_int(((early *)ctx)->fired));
  return 0;
}

static const sl_stage_kind early_kind = {
    .abi = SL_STAGE_ABI, .name = "early", .doc = "test: timer and wake from init",
    .ctx_size = sizeof(early), .init = early_init, .process = early_process, .event = early_event,
};

TEST(runtime_wake_in_init) {
  for (int virt = 0; virt < 2; virt++) {
    sl_engine *e = sl_test_engine(2, virt);
    sl_error_t err;
    ASSERT_OK(sl_engine_register(e, &early_kind, &err), &err);
    sl_pipeline *p;
    sl_pipeline_new(e, "early", &p, NULL);
    ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 1000}", &err), &err);
    ASSERT_OK(sl_pipeline_add_json(p, "early", "", &err), &err);
    ASSERT_OK(sl_pipeline_add_json(p, "null", "", &err), &err);
    ASSERT_OK(sl_pipeline_run(p, &err), &err);
    sl_pipeline_free(p);
    sl_engine_free(e);
  }
}

/* Start fails in a stage's init with no error object: an error code, no crash. */
TEST(runtime_start_fails_without_err) {
  sl_engine *e = sl_test_engine(1, false);
  sl_pipeline *p;
  sl_pipeline_new(e, "bad", &p, NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "", NULL), (sl_error_t *)NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "take", "-1", NULL), (sl_error_t *)NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "null", "", NULL), (sl_error_t *)NULL);
  ASSERT_EQ(sl_pipeline_run(p, NULL), SL_ECONFIG);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* Only passive producers: the dead-letter stage must still end. */
TEST(runtime_dead_letter_without_producers) {
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p;
  sl_error_t err;
  sl_pipeline_new(e, "dl", &p, NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "port", "{\"name\": \"in\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "null", "{\"name\": \"dl\", \"input\": []}", &err), &err);
  ASSERT_OK(sl_pipeline_set_dead_letter(p, "dl", &err), &err);
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  sl_port_close(sl_pipeline_port(p, "in"));
  ASSERT_OK(sl_pipeline_wait(p, 30 * (int64_t)1000000000, &err), &err);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* A dead-letter sink that fails its records does not feed them back to itself. */
static int reject_all(void *ctx, sl_batch *in, sl_emitter *em) {
  for (uint32_t i = 0; i < in->len; i++) sl_emit_error(em, i, "rejected");
  return 0;
}

static const sl_stage_kind reject_kind = {
    .abi = SL_STAGE_ABI, .name = "reject", .doc = "test: a sink that fails every record",
    .flags = SL_STAGE_SINK, .process = reject_all,
};

TEST(runtime_dead_letter_fails_itself) {
  sl_engine *e = sl_test_engine(2, false);
  sl_error_t err;
  ASSERT_OK(sl_engine_register(e, &reject_kind, &err), &err);
  sl_pipeline *p;
  sl_pipeline_new(e, "dl", &p, NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 10}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "reject", "{\"name\": \"main\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "reject", "{\"name\": \"dl\", \"input\": []}", &err), &err);
  ASSERT_OK(sl_pipeline_set_dead_letter(p, "dl", &err), &err);
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  sl_stage_stats s;
  sl_pipeline_stats(p, 2, &s);
  ASSERT_EQ(s.in, 10); /* each failure once, then skipped */
  ASSERT_EQ(s.errors, 10);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* The virtual clock never moves while a task is runnable: every event sees now == its deadline,
 * with several timers interleaved (the idle accounting of the scheduler). */
#define NT 4
typedef struct multi {
  sl_stage *st;
  int64_t due[NT];
  int64_t fired;
  bool armed;
} multi;

static atomic_long vc_mismatches;

static int multi_init(void *ctx, sl_stage *st, sl_error_t *err) {
  ((multi *)ctx)->st = st;
  return 0;
}

static int multi_produce(void *ctx, sl_emitter *em) {
  multi *m = ctx;
  if (!m->armed) {
    m->armed = true;
    for (int k = 0; k < NT; k++) {
      m->due[k] = sl_stage_now(m->st) + 1000 + k * 250;
      sl_stage_timer(m->st, m->due[k], (uint64_t)k);
    }
  }
  return m->fired >= 20000 ? SL_DONE : SL_PARKED;
}

static int multi_event(void *ctx, uint64_t k, sl_emitter *em) {
  multi *m = ctx;
  if (sl_stage_now(m->st) != m->due[k]) atomic_fetch_add(&vc_mismatches, 1);
  m->fired++;
  m->due[k] += 1000;
  if (m->fired < 20000) sl_stage_timer(m->st, m->due[k], k);
  return 0;
}

static const sl_stage_kind multi_kind = {
    .abi = SL_STAGE_ABI, .name = "multi", .doc = "test: interleaved timers", .ctx_size = sizeof(multi),
    .flags = SL_STAGE_SOURCE, .init = multi_init, .produce = multi_produce, .event = multi_event,
};

TEST(runtime_virtual_clock_exact) {
  for (int workers = 1; workers <= 3; workers++) {
    atomic_store(&vc_mismatches, 0);
    sl_engine *e = sl_test_engine(workers, true);
    sl_error_t err;
    ASSERT_OK(sl_engine_register(e, &multi_kind, &err), &err);
    sl_pipeline *p;
    sl_pipeline_new(e, "vc", &p, NULL);
    ASSERT_OK(sl_pipeline_add_json(p, "multi", "", &err), &err);
    ASSERT_OK(sl_pipeline_add_json(p, "null", "", &err), &err);
    ASSERT_OK(sl_pipeline_run(p, &err), &err);
    ASSERT_EQ(atomic_load(&vc_mismatches), 0);
    sl_pipeline_free(p);
    sl_engine_free(e);
  }
}

/* sl_port_push racing sl_port_close: every push that returned SL_OK reaches the sink. */
static sl_port *race_port;
static atomic_long race_ok;
static atomic_bool race_go;

static void *race_pusher(void *arg) {
  while (!atomic_load(&race_go)) {}
  for (;;) {
    sl_value v = sl_int(1);
    if (sl_port_push(race_port, &v, 0) != SL_OK) break;
    atomic_fetch_add(&race_ok, 1);
  }
  return NULL;
}

TEST(runtime_port_close_race) {
  sl_engine *e = sl_test_engine(2, false);
  for (int rep = 0; rep < 200; rep++) {
    sl_pipeline *p;
    sl_pipeline_new(e, "race", &p, NULL);
    ASSERT_OK(sl_pipeline_add_json(p, "port", "{\"name\": \"in\"}", NULL), (sl_error_t *)NULL);
    ASSERT_OK(sl_pipeline_add_json(p, "null", "{\"parallelism\": 1}", NULL), (sl_error_t *)NULL);
    ASSERT_OK(sl_pipeline_start(p, NULL), (sl_error_t *)NULL);
    race_port = sl_pipeline_port(p, "in");
    atomic_store(&race_ok, 0);
    atomic_store(&race_go, false);
    pthread_t th[3];
    for (int k = 0; k < 3; k++) pthread_create(&th[k], NULL, race_pusher, NULL);
    atomic_store(&race_go, true);
    for (volatile int i = 0; i < 20000; i++) {}
    sl_port_close(race_port);
    for (int k = 0; k < 3; k++) pthread_join(th[k], NULL);
    sl_pipeline_wait(p, -1, NULL);
    sl_stage_stats s;
    sl_pipeline_stats(p, 1, &s);
    ASSERT_EQ((long)s.in, atomic_load(&race_ok));
    sl_pipeline_free(p);
  }
  sl_engine_free(e);
}

/* An engine made with workers <= 0 takes $SLUICE_WORKERS (sl_engine_default_workers) (a bad value is an error naming it);
 * workers > 0 wins over it. */
TEST(runtime_workers_from_env) {
  const char *was = getenv("SLUICE_WORKERS");
  char *saved = was ? strdup(was) : NULL;
  sl_engine_config cfg;
  sl_engine_config_init(&cfg);
  sl_engine *e = NULL;
  sl_error_t err;
  sl_error_init(&err);
  setenv("SLUICE_WORKERS", "3", 1);
  ASSERT_EQ(sl_engine_default_workers(&err), 3);
  ASSERT_OK(sl_engine_new(&cfg, &e, &err), &err);
  ASSERT_EQ(sl_engine_workers(e), 3);
  sl_engine_free(e);
  cfg.workers = 1;
  ASSERT_OK(sl_engine_new(&cfg, &e, &err), &err);
  ASSERT_EQ(sl_engine_workers(e), 1);
  sl_engine_free(e);
  cfg.workers = 0;
  setenv("SLUICE_WORKERS", "lots", 1);
  ASSERT_EQ(sl_engine_default_workers(&err), SL_EINVAL);
  ASSERT_EQ(sl_engine_new(&cfg, &e, &err), SL_EINVAL);
  ASSERT_STR(err.msg, "SLUICE_WORKERS takes an integer from 1 to 256 (got 'lots')");
  if (saved) setenv("SLUICE_WORKERS", saved, 1);
  else unsetenv("SLUICE_WORKERS");
  free(saved);
}
