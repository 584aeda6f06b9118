/* throttle — passes at most `rate` records per `per`, with bursts of up to `burst`: a token
 * bucket that delays records, never drops them (unless `on_limit: drop`, load shedding: a record
 * that finds no credit is dropped and counted in the stage's `dropped` stat).
 *
 * The bucket is kept in integers so it is exact on the virtual clock: every nanosecond adds
 * `rate` units of credit, a record costs `per` units, and the bucket holds `burst * per` (plus
 * less than one record's worth of slack, see init). It starts full. Records that find no credit wait in arrival order; one timer at a time is armed
 * for the moment the next one can go, and input is paused while many wait, so upstream sees
 * backpressure instead of the stage growing. A drained stop lets the waiting records go at
 * the same rate (flush parks until they are out). */
#include <stdint.h>
#include <stdlib.h>

#include "sluice.h"

#define HOLD_MAX 1024 /* records held before input is paused */
#define TIMER_TOKEN 1

typedef struct throttle {
  int64_t rate;     /* option: records per `per` */
  int64_t per;      /* option: ns */
  int64_t burst;    /* option: records that may pass at once */
  int on_limit;     /* option: 0 delay, 1 drop */
  int64_t cap;      /* burst * per plus slack: the bucket's size in units (refill) */
  int64_t credit;   /* units in the bucket */
  int64_t last;     /* engine clock of the last refill */
  sl_value *q;      /* waiting records: q[head, head + len) */
  sl_ack **acks;    /* and their ack tokens */
  size_t head, len, cap_q;
  bool armed;       /* a timer is pending */
  sl_stage *st;
} throttle;

static const sl_option options[] = {
    {SL_OPT_INT, "rate", NULL, offsetof(throttle, rate), "records let through per `per`", NULL, SL_OPT_REQUIRED | SL_OPT_PRIMARY},
    {SL_OPT_DURATION, "per", "1s", offsetof(throttle, per), "the period the rate is counted over", NULL, 0},
    {SL_OPT_INT, "burst", "1", offsetof(throttle, burst), "records that may pass at once after a quiet spell", NULL, 0},
    {SL_OPT_ENUM, "on_limit", "delay", offsetof(throttle, on_limit), "a record over the rate waits (delay) or is dropped and counted (drop: load shedding)", "delay|drop", 0},
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  throttle *t = ctx;
  t->st = st;
  if (t->rate < 1) return sl_error_set(err, SL_ECONFIG, NULL, "rate must be 1 or more (got %lld)", (long long)t->rate);
  if (t->per < 1) return sl_error_set(err, SL_ECONFIG, NULL, "per must be a positive duration");
  if (t->burst < 1) return sl_error_set(err, SL_ECONFIG, NULL, "burst must be 1 or more (got %lld)", (long long)t->burst);
  if (t->burst > INT64_MAX / t->per)
    return sl_error_set(err, SL_ECONFIG, NULL, "burst times per is too large: use a smaller burst or a shorter per");
  t->credit = t->burst * t->per;
  /* A timer fires at the first whole nanosecond with enough credit, so it may overshoot by up
   * to rate - 1 units; the slack keeps that remainder for the next record instead of clamping
   * it away (rate 3/s would drift otherwise). Less than one record's cost: no extra burst. */
  int64_t slack = (t->rate < t->per ? t->rate : t->per) - 1;
  t->cap = t->credit > INT64_MAX - slack ? INT64_MAX : t->credit + slack;
  t->last = sl_stage_now(st);
  return 0;
}

/* Adds the credit earned since the last refill. A quiet spell fills the bucket to its size and
 * no further. While records wait (the whole time since the last refill), nothing is clamped: a
 * timer that fires late (real clocks do, by 50 µs to a few ms) then lets the records that were
 * due go at once, so the long-run rate stays exact instead of losing the lateness every time. */
static void refill(throttle *t, int64_t now) {
  int64_t delta = now - t->last;
  t->last = now;
  if (delta <= 0) return;
  int64_t cap = t->len ? INT64_MAX : t->cap;
  int64_t room = cap - t->credit;
  if (delta > room / t->rate) t->credit = cap;
  else t->credit += delta * t->rate;
}

/* Lets waiting records go while there is credit; arms a timer for the next one. */
static int release(throttle *t, sl_emitter *em) {
  int64_t now = sl_stage_now(t->st);
  refill(t, now);
  int rc = 0;
  while (t->len && t->credit >= t->per && rc == 0) {
    t->credit -= t->per;
    rc = sl_emit_acked(em, t->q[t->head], t->acks[t->head]);
    t->head++;
    t->len--;
  }
  if (t->len == 0) {
    t->head = 0;
    if (t->credit > t->cap) t->credit = t->cap; /* caught up: back to the bucket's size */
  }
  if (t->len && !t->armed) {
    int64_t wait = (t->per - t->credit + t->rate - 1) / t->rate;
    t->armed = true;
    if (sl_stage_timer(t->st, now + wait, TIMER_TOKEN) < 0) return sl_stage_fail(t->st, "cannot arm a timer");
  }
  sl_stage_pause_input(t->st, t->len >= HOLD_MAX);
  return rc;
}

/* on_limit: drop — a record passes if the bucket has credit for it, else it is shed. */
static int process_drop(throttle *t, sl_batch *in, sl_emitter *em) {
  refill(t, sl_stage_now(t->st));
  for (uint32_t i = 0; i < in->len; i++) {
    if (t->credit >= t->per) {
      t->credit -= t->per;
      int rc = sl_emit(em, i, sl_batch_take(in, i));
      if (rc) return rc;
    } else {
      sl_emit_dropped(em, i);
    }
  }
  return 0;
}

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  throttle *t = ctx;
  if (t->on_limit == 1) return process_drop(t, in, em);
  refill(t, sl_stage_now(t->st)); /* before the new records join: they did not wait */
  if (t->head + t->len + in->len > t->cap_q) {
    if (t->head) { /* move the waiting records to the front first */
      for (size_t i = 0; i < t->len; i++) {
        t->q[i] = t->q[t->head + i];
        t->acks[i] = t->acks[t->head + i];
      }
      t->head = 0;
    }
    size_t need = t->len + in->len;
    if (need > t->cap_q) {
      size_t cap = t->cap_q ? t->cap_q : 256;
      while (cap < need) cap *= 2;
      sl_value *q = realloc(t->q, cap * sizeof *q);
      if (q) t->q = q;
      sl_ack **acks = q ? realloc(t->acks, cap * sizeof *acks) : NULL;
      if (acks) t->acks = acks;
      if (!q || !acks) return SL_ENOMEM;
      t->cap_q = cap;
    }
  }
  for (uint32_t i = 0; i < in->len; i++) {
    t->q[t->head + t->len] = sl_batch_take(in, i);
    t->acks[t->head + t->len] = sl_batch_hold(in, i);
    t->len++;
  }
  return release(t, em);
}

static int event(void *ctx, uint64_t token, sl_emitter *em) {
  throttle *t = ctx;
  if (token != TIMER_TOKEN) return 0;
  t->armed = false;
  return release(t, em);
}

static int flush(void *ctx, sl_emitter *em) { return ((throttle *)ctx)->len ? SL_PARKED : 0; }

static void destroy(void *ctx) {
  throttle *t = ctx;
  for (size_t i = t->head; i < t->head + t->len; i++) {
    sl_value_free(t->q[i]);
    sl_ack_release(t->acks[i], true);
  }
  free(t->q);
  free(t->acks);
}

const sl_stage_kind sl_stage_throttle = {
    .abi = SL_STAGE_ABI,
    .name = "throttle",
    .doc = "passes at most rate records per period, in order; delays records (or sheds them with on_limit: drop)",
    .options = options,
    .ctx_size = sizeof(throttle),
    .init = init,
    .process = process,
    .flush = flush,
    .destroy = destroy,
    .event = event,
};
