/*
 * luafan.c — buffer_unordered and buffered (tokio-streams semantics): up to `concurrency` calls
 * of a Lua function in flight at once in the stage's state. A call that waits (sluice.sleep, an
 * async primitive) holds no worker; the stage starts the next record meanwhile.
 *
 * Records are held in a ring in input order: not started, running, or finished (a result or an
 * error). buffer_unordered emits each result as it finishes; buffered emits from the front of
 * the ring only, so one slow call holds back every result behind it (head-of-line blocking: its
 * latency is that of the slowest call in the window, and the window stops filling while the
 * head waits, because finished results still occupy it). Input is taken only while a slot is
 * free and nothing waits to start: upstream is pulled only when a slot is free (a whole batch at
 * a time; the records beyond the free slots wait in the ring without a call).
 *
 * The function returns the output record; nil drops the record. Errors follow on_error.
 *
 * Policies (policy.h), per record: `timeout` cancels a call; with `retry` a failed try (an error
 * or a timeout) waits its backoff on a timer and runs again with the original record, keeping
 * its slot meanwhile (a record being retried counts against `concurrency`, so a failing service
 * gets no more calls than a healthy one); the `circuit_breaker`, shared by the stage, sees every
 * try's outcome and, while open, fails records at once with "circuit open" (not retried).
 */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "luafn.h"
#include "pipeline.h"

enum { I_WAITING = 0, I_RUNNING, I_BACKOFF, I_DONE, I_FAILED, I_EMPTY };

struct sl_luafan_item {
  sl_value rec;      /* the input record */
  sl_ack *ack;       /* its token */
  sl_value result;   /* I_DONE: the output (nil: dropped) */
  char *err;         /* I_FAILED: the message */
  int state;
  sl_lua_call *call; /* I_RUNNING: the parked call */
  int64_t timer;     /* I_RUNNING: its timeout timer; I_BACKOFF: its retry timer; or -1 */
  int attempt;       /* the current try, from 1 */
  int64_t first;     /* engine clock: the first try began */
  int64_t start;     /* the current try began */
  int64_t prev_wait; /* the last backoff wait (decorrelated jitter) */
};

/* A policy timer's token: the item's sequence number, tagged (a call's token has its low 3 bits
 * clear, lua.h). */
enum { TAG_TIMEOUT = 1, TAG_RETRY = 2, TAG_MASK = 7 };

static sl_luafan_item *item(sl_luafan_ctx *x, uint64_t seq) { return &x->ring[(seq) % x->cap]; }

int sl_luafan_init(void *ctx, sl_stage *st, bool ordered) {
  sl_luafan_ctx *x = ctx;
  x->st = st;
  x->ordered = ordered;
  x->cap = 64;
  x->ring = sl__xcalloc(x->cap, sizeof *x->ring);
  if (x->concurrency < 1) x->concurrency = 1;
  x->retry_on = LUA_NOREF;
  x->rng = (uint64_t)(uintptr_t)x ^ 0x9E3779B97F4A7C15ull;
  return 0;
}

static bool holds_slot(int state) { return state == I_RUNNING || state == I_BACKOFF; }

/* Moves an item to state, keeping the count of taken slots; buffer_unordered lists the items
 * that finish (emit_ready then visits those only, not the whole window of `concurrency` items). */
static void set_state(sl_luafan_ctx *x, uint64_t seq, sl_luafan_item *it, int state) {
  x->inflight += (int64_t)holds_slot(state) - (int64_t)holds_slot(it->state);
  it->state = state;
  if (!x->ordered && (state == I_DONE || state == I_FAILED)) {
    if (x->nready == x->cap_ready) {
      x->cap_ready = x->cap_ready ? x->cap_ready * 2 : 64;
      x->ready = sl__xrealloc(x->ready, x->cap_ready * sizeof *x->ready);
    }
    x->ready[x->nready++] = seq;
  }
}

static void grow(sl_luafan_ctx *x, size_t need) {
  if (need <= x->cap) return;
  size_t ncap = x->cap;
  while (ncap < need) ncap *= 2;
  sl_luafan_item *r = sl__xcalloc(ncap, sizeof *r);
  for (uint64_t s = x->base; s < x->tail; s++) r[s % ncap] = *item(x, s);
  sl__free(x->ring);
  x->ring = r;
  x->cap = ncap;
}

/* Try it->attempt of item seq failed with msg (owned; lua_err: raised by the function, whose
 * error value retry_on gets): wait and try again, or fail the record. */
static void try_failed(sl_luafan_ctx *x, uint64_t seq, sl_luafan_item *it, char *msg, bool retryable, bool lua_err) {
  const sl_retry *r = &x->pol.retry;
  if (retryable && x->pol.has_retry && it->attempt < r->attempts) {
    int64_t now = sl_stage_now(x->st), wait = sl_retry_delay(r, it->attempt, it->prev_wait, &x->rng);
    bool yes = r->max_elapsed <= 0 || now + wait - it->first <= r->max_elapsed;
    if (yes && x->retry_on != LUA_NOREF) {
      sl_lua_call *c = sl_lua_call_new(x->lua, x->st, x->retry_on);
      sl_lua_push(c->co, &it->rec);
      yes = sl_luafn_ask_retry(x->lua, x->st, c, msg, lua_err);
    }
    if (yes) {
      sl__free(msg);
      it->prev_wait = wait;
      it->attempt++;
      it->timer = sl_stage_timer(x->st, now + wait, (seq << 3) | TAG_RETRY);
      sl_policy_count_retry(x->st);
      set_state(x, seq, it, I_BACKOFF);
      return;
    }
  }
  it->err = msg;
  set_state(x, seq, it, I_FAILED);
}

/* A try finished (rc from sl_lua_resume, not parked): record its outcome in the item. */
static void settle(sl_luafan_ctx *x, uint64_t seq, sl_luafan_item *it, sl_lua_call *c, int rc, char *msg) {
  it->call = NULL;
  if (it->timer >= 0) sl_stage_timer_cancel(x->st, it->timer);
  it->timer = -1;
  if (x->cb) sl_breaker_record(x->cb, it->start, sl_stage_now(x->st), rc == SL_LUA_ERROR, x->st);
  if (rc == SL_LUA_ERROR) {
    try_failed(x, seq, it, msg, true, true);
    return;
  }
  char m[256];
  if (sl_lua_result(c, &it->result, m, sizeof m) != 0) {
    it->err = sl__xstrdup(m);
    set_state(x, seq, it, I_FAILED);
  } else {
    set_state(x, seq, it, I_DONE);
  }
  sl_lua_call_free(c);
}

/* Starts try it->attempt of item seq. */
static void start_try(sl_luafan_ctx *x, uint64_t seq, sl_luafan_item *it) {
  it->timer = -1;
  if (x->pol.has_retry || x->cb || x->pol.timeout > 0) {
    it->start = sl_stage_now(x->st);
    if (it->attempt == 1) it->first = it->start;
    if (x->cb && !sl_breaker_allow(x->cb, it->start, x->st)) {
      try_failed(x, seq, it, sl__xstrdup("circuit open"), false, false);
      return;
    }
  }
  sl_lua_call *c = sl_lua_call_new(x->lua, x->st, x->ref);
  c->tag = seq;
  sl_lua_push(c->co, &it->rec);
  char *msg = NULL;
  int rc = sl_lua_resume(c, 1, &msg);
  if (rc == SL_LUA_PARKED) {
    it->call = c;
    if (x->pol.timeout > 0) it->timer = sl_stage_timer(x->st, it->start + x->pol.timeout, (seq << 3) | TAG_TIMEOUT);
    set_state(x, seq, it, I_RUNNING);
  } else {
    settle(x, seq, it, c, rc, msg);
  }
}

/* Emits a finished item and empties its place. */
static void emit_item(sl_luafan_item *it, sl_emitter *em) {
  if (it->state == I_DONE) {
    if (it->result.type != SL_TNIL) sl_emit_acked(em, it->result, it->ack);
    else sl_ack_release(it->ack, false);
    sl_value_free(it->rec);
  } else {
    sl_emit_error_record_attempts(em, it->rec, it->ack, it->attempt, "%s", it->err);
    sl__free(it->err);
  }
  *it = (sl_luafan_item){.state = I_EMPTY};
}

/* Emits finished items: from the front (buffered) or as they finished (unordered). */
static void emit_ready(sl_luafan_ctx *x, sl_emitter *em) {
  if (x->ordered) {
    for (uint64_t s = x->head; s < x->tail; s++) {
      sl_luafan_item *it = item(x, s);
      if (it->state == I_DONE || it->state == I_FAILED) emit_item(it, em);
      else if (it->state != I_EMPTY) break;
    }
  } else {
    for (size_t i = 0; i < x->nready; i++) emit_item(item(x, x->ready[i]), em);
    x->nready = 0;
  }
  while (x->head < x->tail && item(x, x->head)->state == I_EMPTY) x->head++;
  x->base = x->head;
}

/* Starts calls while a slot is free. */
static void start(sl_luafan_ctx *x) {
  while (x->inflight < x->concurrency && x->next < x->tail) {
    uint64_t seq = x->next++;
    sl_luafan_item *it = item(x, seq);
    it->attempt = 1;
    start_try(x, seq, it);
  }
  sl_stage_pause_input(x->st, x->inflight >= x->concurrency || x->next < x->tail);
}

int sl_luafan_process(void *ctx, sl_batch *in, sl_emitter *em) {
  sl_luafan_ctx *x = ctx;
  if (!x->lua) {
    sl_error_t err;
    sl_error_init(&err);
    x->lua = sl_lua_get(x->st, &err);
    if (!x->lua) return sl_stage_fail(x->st, "%s", err.msg);
    const char *where = sl_lua_where(x->st), *name = sl_stage_name(x->st);
    int rc = sl_lua_fn(x->lua, x->fn, where, name, &x->ref, &err);
    if (rc == 0) rc = sl_policy_parse(&x->policy, &x->pol, where, name, &err);
    if (rc == 0 && x->pol.has_retry && x->pol.retry.retry_on) rc = sl_lua_fn(x->lua, x->pol.retry.retry_on, where, name, &x->retry_on, &err);
    if (rc != 0) return sl_stage_fail(x->st, "%s", err.msg);
    if (x->pol.has_breaker) x->cb = sl_breaker_get(x->st->p, name, &x->pol.cb);
  }
  grow(x, (size_t)(x->tail - x->base) + in->len);
  for (uint32_t i = 0; i < in->len; i++) {
    sl_luafan_item *it = item(x, x->tail++);
    *it = (sl_luafan_item){.rec = sl_batch_take(in, i), .ack = sl_batch_hold(in, i), .state = I_WAITING};
  }
  start(x);
  emit_ready(x, em);
  return 0;
}

/* A parked call's token (resume it) or a call's timeout (cancel it: its coroutine is closed and
 * its record fails with "timeout after <d>"). Stale tokens (of an earlier use of a pooled call,
 * or of a call that already finished) are ignored. */
int sl_luafan_event(void *ctx, uint64_t token, sl_emitter *em) {
  sl_luafan_ctx *x = ctx;
  int tag = (int)(token & TAG_MASK);
  if (tag == TAG_TIMEOUT || tag == TAG_RETRY) {
    uint64_t seq = token >> 3;
    sl_luafan_item *it = seq >= x->base && seq < x->tail ? item(x, seq) : NULL;
    if (it && tag == TAG_TIMEOUT && it->state == I_RUNNING) {
      sl_lua_call_abandon(it->call);
      it->call = NULL;
      it->timer = -1;
      if (x->cb) sl_breaker_record(x->cb, it->start, sl_stage_now(x->st), true, x->st);
      try_failed(x, seq, it, sl_policy_timeout_msg(x->pol.timeout), true, false);
    } else if (it && tag == TAG_RETRY && it->state == I_BACKOFF) {
      start_try(x, seq, it);
    }
  } else {
    if (!sl_lua_token_live(token)) return 0;
    sl_lua_call *c = sl_lua_from_token(token);
    uint64_t seq = c->tag;
    if (seq < x->base || seq >= x->tail || item(x, seq)->state != I_RUNNING || item(x, seq)->call != c) return 0;
    char *msg = NULL;
    int rc = sl_lua_resume(c, 0, &msg);
    if (rc != SL_LUA_PARKED) settle(x, seq, item(x, seq), c, rc, msg);
  }
  start(x);
  emit_ready(x, em);
  return 0;
}

int sl_luafan_flush(void *ctx, sl_emitter *em) {
  sl_luafan_ctx *x = ctx;
  emit_ready(x, em);
  return x->head < x->tail ? SL_PARKED : 0;
}

void sl_luafan_destroy(void *ctx) {
  sl_luafan_ctx *x = ctx;
  for (uint64_t s = x->base; x->ring && s < x->tail; s++) {
    sl_luafan_item *it = item(x, s);
    if (it->state == I_EMPTY) continue;
    sl_value_free(it->rec);
    sl_value_free(it->result);
    sl_ack_release(it->ack, true);
    sl__free(it->err);
  }
  sl__free(x->ring);
  x->ring = NULL;
  sl__free(x->ready);
  x->ready = NULL;
  sl_policy_free(&x->pol);
}

int sl_luafan_check(void *ctx, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  sl_luafan_ctx *x = ctx;
  if (x->concurrency < 1 || x->concurrency > 1000000)
    return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': concurrency must be from 1 to 1000000 (got %lld)", where, stage,
                        (long long)x->concurrency);
  int rc = sl_lua_check_fn(p, x->fn, where, stage, err);
  return rc ? rc : sl_luafn_check_policy(&x->policy, p, stage, where, err);
}
