/*
 * policy.c — timeouts, retries with backoff and circuit breakers around stage calls (policy.h).
 *
 * Backoff. Retry n (n = 1 before the second try) waits `initial` (constant), initial * n
 * (linear) or initial * multiplier^(n-1) (exponential), capped at `max`. Jitter then draws the
 * wait d: none keeps d; full draws from [0, d]; equal from [d/2, d]; decorrelated from
 * [initial, 3 * previous wait], capped at `max` (the AWS "decorrelated jitter" rule).
 *
 * Circuit breaker (the resilience4j model). Closed: calls run, and their outcomes fill a window
 * (the last `window` calls, or those of the last `window_time`). Once the window holds at least
 * `min_calls` calls and the failure percentage reaches `failure_rate` (or the slow-call
 * percentage reaches `slow_rate`), it opens. Open: calls fail at once with "circuit open", for
 * `open_for`. Then half-open: `half_open_calls` trial calls run (others fail fast); when they
 * are all back it closes if they stayed under the rates, and opens again otherwise. Every
 * change is logged (warn when it opens, info otherwise) and counted.
 */
#include "policy.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "pipeline.h"

const sl_option sl_retry_options[] = {SL_RETRY_OPTION_LIST(0), SL_OPTIONS_END};
const sl_option sl_breaker_options[] = {SL_BREAKER_OPTION_LIST(0), SL_OPTIONS_END};

/* ---- options ------------------------------------------------------------------------------ */

static int sub_options(const sl_option *table, void *out, const sl_value *v, const char *what, const char *where,
                       const char *stage, sl_error_t *err) {
  if (v->type != SL_TMAP)
    return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': %s takes a map of options (see `sluice help %s`)", where,
                        stage, what, what);
  return sl__options_apply(table, out, v, NULL, where, stage, what, err);
}

int sl_policy_parse(const sl_policy_opts *o, sl_policy *out, const char *where, const char *stage, sl_error_t *err) {
  memset(out, 0, sizeof *out);
  out->timeout = o->timeout;
  if (o->timeout < 0) return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': timeout must be positive", where, stage);
  if (o->retry_set) { /* the retry stage kind: a copy the policy owns */
    out->retry = *o->retry_set;
    if (out->retry.retry_on) out->retry.retry_on = sl__xstrdup(out->retry.retry_on);
    out->has_retry = true;
  }
  if (o->retry.type != SL_TNIL && !o->retry_set) {
    int rc = sub_options(sl_retry_options, &out->retry, &o->retry, "retry", where, stage, err);
    if (rc) return rc;
    out->has_retry = true;
  }
  if (out->has_retry) {
    const sl_retry *r = &out->retry;
    if (r->attempts < 1) return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': retry attempts must be at least 1 (it counts the first try)", where, stage);
    if (r->multiplier < 1) return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': retry multiplier must be at least 1", where, stage);
  }
  if (o->breaker_set) {
    out->cb = *o->breaker_set;
    out->has_breaker = true;
  } else if (o->breaker.type != SL_TNIL) {
    int rc = sub_options(sl_breaker_options, &out->cb, &o->breaker, "circuit_breaker", where, stage, err);
    if (rc) return rc;
    out->has_breaker = true;
  }
  if (out->has_breaker) {
    const sl_breaker_opts *c = &out->cb;
    if (c->window < 1 || c->min_calls < 1 || c->half_open_calls < 1)
      return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': circuit_breaker window, min_calls and half_open_calls must be at least 1", where, stage);
    if (!(c->failure_rate > 0 && c->failure_rate <= 100) || !(c->slow_rate > 0 && c->slow_rate <= 100))
      return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': circuit_breaker failure_rate and slow_rate are percentages in (0, 100]", where, stage);
    if (c->open_for <= 0) return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': circuit_breaker open_for must be positive", where, stage);
  }
  return 0;
}

void sl_policy_free(sl_policy *p) {
  if (p->has_retry) sl__options_free(sl_retry_options, &p->retry);
  if (p->has_breaker) sl__options_free(sl_breaker_options, &p->cb);
  memset(p, 0, sizeof *p);
}

char *sl_policy_timeout_msg(int64_t ns) {
  char d[32], *msg = sl__xmalloc(64);
  if (ns % 1000000000 == 0) snprintf(d, sizeof d, "%llds", (long long)(ns / 1000000000));
  else if (ns % 1000000 == 0 && ns < 1000000000) snprintf(d, sizeof d, "%lldms", (long long)(ns / 1000000));
  else snprintf(d, sizeof d, "%gs", (double)ns / 1e9);
  snprintf(msg, 64, "timeout after %s", d);
  return msg;
}

/* ---- backoff ------------------------------------------------------------------------------ */

static uint64_t next_rand(uint64_t *s) { /* xorshift64* */
  uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1Dull;
}

int64_t sl_policy_uniform(uint64_t *rng, int64_t lo, int64_t hi) {
  if (hi <= lo) return lo;
  uint64_t span = (uint64_t)(hi - lo) + 1;
  return lo + (int64_t)(next_rand(rng) % span);
}

static int64_t clamp_ns(double d) { return d >= 9.2e18 ? INT64_MAX : d <= 0 ? 0 : (int64_t)d; }

int64_t sl_retry_delay(const sl_retry *r, int n, int64_t prev, uint64_t *rng) {
  double d;
  switch (r->backoff) {
  case SL_BACKOFF_CONSTANT: d = (double)r->initial; break;
  case SL_BACKOFF_LINEAR: d = (double)r->initial * n; break;
  default: d = (double)r->initial * pow(r->multiplier, n - 1); break;
  }
  int64_t w = clamp_ns(d);
  if (r->max > 0 && w > r->max) w = r->max;
  switch (r->jitter) {
  case SL_JITTER_FULL: return sl_policy_uniform(rng, 0, w);
  case SL_JITTER_EQUAL: return sl_policy_uniform(rng, w / 2, w);
  case SL_JITTER_DECORRELATED: {
    int64_t base = r->initial, top = clamp_ns(3.0 * (double)(prev > base ? prev : base));
    int64_t x = sl_policy_uniform(rng, base, top);
    return r->max > 0 && x > r->max ? r->max : x;
  }
  default: return w;
  }
}

/* ---- circuit breaker ---------------------------------------------------------------------- */

typedef struct outcome {
  int64_t t;   /* when the call ended */
  bool failed, slow;
} outcome;

struct sl_breaker {
  pthread_mutex_t mu;
  sl_breaker_opts o;
  int state;               /* SL_CB_* */
  int64_t opened_at;
  outcome *ring;           /* the window (count window: window entries; time window: grows) */
  size_t cap, head, len;   /* ring of len outcomes from head */
  int64_t trials, trial_done, trial_failed, trial_slow; /* half-open */
  const char *stage;
};

static const char *const state_names[] = {"closed", "open", "half_open"};
const char *sl_breaker_state_name(int s) { return s >= 0 && s <= 2 ? state_names[s] : "?"; }

sl_breaker *sl_breaker_of(sl_stage *st, const sl_breaker_opts *o) { return sl_breaker_get(st->p, st->node->name, o); }

void sl_policy_count_retry(sl_stage *st) { atomic_fetch_add_explicit(&st->node->st_retries, 1, memory_order_relaxed); }

sl_breaker *sl_breaker_get(sl_pipeline *p, const char *stage, const sl_breaker_opts *o) {
  sl_node *n = sl__pipeline_node(p, stage);
  if (!n) return NULL;
  pthread_mutex_lock(&p->mu);
  sl_breaker *b = n->breaker;
  if (!b) {
    b = sl__xcalloc(1, sizeof *b);
    pthread_mutex_init(&b->mu, NULL);
    b->o = *o;
    b->stage = n->name;
    b->cap = o->window_time > 0 ? 64 : (size_t)o->window;
    b->ring = sl__xcalloc(b->cap, sizeof *b->ring);
    atomic_store(&n->breaker_state, SL_CB_CLOSED + 1);
    n->breaker = b;
  }
  pthread_mutex_unlock(&p->mu);
  return b;
}

void sl__breaker_free(sl_breaker *b) {
  if (!b) return;
  pthread_mutex_destroy(&b->mu);
  sl__free(b->ring);
  sl__free(b);
}

static void change(sl_breaker *b, int to, int64_t now, sl_stage *st) {
  int from = b->state;
  b->state = to;
  if (to == SL_CB_OPEN) b->opened_at = now;
  if (to == SL_CB_HALF_OPEN) b->trials = b->trial_done = b->trial_failed = b->trial_slow = 0;
  if (to == SL_CB_CLOSED) b->len = b->head = 0;
  if (st) {
    atomic_store(&st->node->breaker_state, to + 1);
    atomic_fetch_add_explicit(&st->node->st_breaker_changes, 1, memory_order_relaxed);
    sl_stage_log(st, to == SL_CB_OPEN ? SL_LOG_WARN : SL_LOG_INFO, "circuit breaker %s -> %s at %.3f s",
                 state_names[from], state_names[to], (double)(now - st->p->t_start) / 1e9);
  }
}

static void drop_old(sl_breaker *b, int64_t now) {
  if (b->o.window_time <= 0) return;
  while (b->len && b->ring[b->head].t <= now - b->o.window_time) {
    b->head = (b->head + 1) % b->cap;
    b->len--;
  }
}

bool sl_breaker_allow(sl_breaker *b, int64_t now, sl_stage *st) {
  pthread_mutex_lock(&b->mu);
  if (b->state == SL_CB_OPEN && now >= b->opened_at + b->o.open_for) change(b, SL_CB_HALF_OPEN, now, st);
  bool ok = b->state == SL_CB_CLOSED;
  if (b->state == SL_CB_HALF_OPEN && b->trials < b->o.half_open_calls) {
    b->trials++;
    ok = true;
  }
  pthread_mutex_unlock(&b->mu);
  return ok;
}

static bool over(const sl_breaker_opts *o, int64_t calls, int64_t failed, int64_t slow) {
  if (calls == 0) return false;
  if (100.0 * (double)failed >= o->failure_rate * (double)calls) return true;
  return o->slow_duration > 0 && 100.0 * (double)slow >= o->slow_rate * (double)calls;
}

void sl_breaker_record(sl_breaker *b, int64_t start, int64_t now, bool failed, sl_stage *st) {
  bool slow = b->o.slow_duration > 0 && now - start >= b->o.slow_duration;
  pthread_mutex_lock(&b->mu);
  if (b->state == SL_CB_HALF_OPEN) {
    b->trial_done++;
    b->trial_failed += failed;
    b->trial_slow += slow;
    if (b->trial_done >= b->o.half_open_calls)
      change(b, over(&b->o, b->trial_done, b->trial_failed, b->trial_slow) ? SL_CB_OPEN : SL_CB_CLOSED, now, st);
  } else if (b->state == SL_CB_CLOSED) {
    drop_old(b, now);
    if (b->len == b->cap) {
      if (b->o.window_time > 0) { /* grow the time window's ring */
        outcome *r = sl__xcalloc(b->cap * 2, sizeof *r);
        for (size_t i = 0; i < b->len; i++) r[i] = b->ring[(b->head + i) % b->cap];
        sl__free(b->ring);
        b->ring = r;
        b->head = 0;
        b->cap *= 2;
      } else {
        b->head = (b->head + 1) % b->cap;
        b->len--;
      }
    }
    b->ring[(b->head + b->len++) % b->cap] = (outcome){now, failed, slow};
    int64_t nf = 0, ns = 0;
    for (size_t i = 0; i < b->len; i++) {
      const outcome *x = &b->ring[(b->head + i) % b->cap];
      nf += x->failed;
      ns += x->slow;
    }
    if ((int64_t)b->len >= b->o.min_calls && over(&b->o, (int64_t)b->len, nf, ns)) change(b, SL_CB_OPEN, now, st);
  }
  /* open: a call that started before it opened adds nothing */
  pthread_mutex_unlock(&b->mu);
}

int sl_breaker_state(sl_breaker *b) {
  pthread_mutex_lock(&b->mu);
  int s = b->state;
  pthread_mutex_unlock(&b->mu);
  return s;
}
