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
 */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "luafn.h"
#include "pipeline.h"

enum { I_WAITING = 0, I_RUNNING, I_DONE, I_FAILED, I_EMPTY };

struct sl_luafan_item {
  sl_value rec;      /* the input record */
  sl_ack *ack;       /* its token */
  sl_value result;   /* I_DONE: the output (nil: dropped) */
  char *err;         /* I_FAILED: the message */
  int state;
  sl_lua_call *call; /* I_RUNNING: the parked call */
  int64_t timer;     /* I_RUNNING: its timeout timer, or -1 */
};

/* A timeout timer's token: the item's sequence number, tagged (a call's token has its low 3
 * bits clear, lua.h). */
enum { TAG_TIMEOUT = 1, TAG_MASK = 7 };

static sl_luafan_item *item(sl_luafan_ctx *x, uint64_t seq) { return &x->ring[(seq) % x->cap]; }

int sl_luafan_init(void *ctx, sl_stage *st, bool ordered) {
  sl_luafan_ctx *x = ctx;
  x->st = st;
  x->ordered = ordered;
  x->cap = 64;
  x->ring = sl__xcalloc(x->cap, sizeof *x->ring);
  if (x->concurrency < 1) x->concurrency = 1;
  return 0;
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

/* A call finished (rc from sl_lua_resume): record its outcome in the item. */
static void settle(sl_luafan_ctx *x, sl_luafan_item *it, sl_lua_call *c, int rc, char *msg) {
  if (rc == SL_LUA_ERROR) {
    it->err = msg;
    it->state = I_FAILED;
    return;
  }
  char m[256];
  it->state = I_DONE;
  if (sl_lua_result(c, &it->result, m, sizeof m) != 0) {
    it->err = sl__xstrdup(m);
    it->state = I_FAILED;
  }
  sl_lua_call_free(c);
}

/* Emits finished items: from the front (buffered) or wherever they are (unordered). */
static void emit_ready(sl_luafan_ctx *x, sl_emitter *em) {
  for (uint64_t s = x->head; s < x->tail; s++) {
    sl_luafan_item *it = item(x, s);
    if (it->state == I_DONE || it->state == I_FAILED) {
      if (it->state == I_DONE) {
        if (it->result.type != SL_TNIL) sl_emit_acked(em, it->result, it->ack);
        else sl_ack_release(it->ack, false);
        sl_value_free(it->rec);
      } else {
        sl_emit_error_record(em, it->rec, it->ack, "%s", it->err);
        sl__free(it->err);
      }
      *it = (sl_luafan_item){.state = I_EMPTY};
    } else if (x->ordered && it->state != I_EMPTY) {
      break;
    }
  }
  while (x->head < x->tail && item(x, x->head)->state == I_EMPTY) x->head++;
  x->base = x->head;
}

/* Starts calls while a slot is free. */
static void start(sl_luafan_ctx *x) {
  while (x->inflight < x->concurrency && x->next < x->tail) {
    uint64_t seq = x->next++;
    sl_luafan_item *it = item(x, seq);
    sl_lua_call *c = sl_lua_call_new(x->lua, x->st, x->ref);
    c->tag = seq;
    sl_lua_push(c->co, &it->rec);
    char *msg = NULL;
    int rc = sl_lua_resume(c, 1, &msg);
    if (rc == SL_LUA_PARKED) {
      it->state = I_RUNNING;
      it->call = c;
      it->timer = x->timeout > 0 ? sl_stage_timer(x->st, sl_stage_now(x->st) + x->timeout, (seq << 3) | TAG_TIMEOUT) : -1;
      x->inflight++;
    } else {
      settle(x, it, c, rc, msg);
    }
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
    if (sl_lua_fn(x->lua, x->fn, sl_lua_where(x->st), sl_stage_name(x->st), &x->ref, &err) != 0) return sl_stage_fail(x->st, "%s", err.msg);
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
  if ((token & TAG_MASK) == TAG_TIMEOUT) {
    uint64_t seq = token >> 3;
    if (seq < x->base || seq >= x->tail || item(x, seq)->state != I_RUNNING) return 0;
    sl_luafan_item *it = item(x, seq);
    sl_lua_call_abandon(it->call);
    it->call = NULL;
    it->timer = -1;
    it->err = sl_policy_timeout_msg(x->timeout);
    it->state = I_FAILED;
    x->inflight--;
  } else {
    if (!sl_lua_token_live(token)) return 0;
    sl_lua_call *c = sl_lua_from_token(token);
    uint64_t seq = c->tag;
    if (seq < x->base || seq >= x->tail || item(x, seq)->state != I_RUNNING || item(x, seq)->call != c) return 0;
    char *msg = NULL;
    int rc = sl_lua_resume(c, 0, &msg);
    if (rc != SL_LUA_PARKED) {
      sl_luafan_item *it = item(x, seq);
      x->inflight--;
      if (it->timer >= 0) sl_stage_timer_cancel(x->st, it->timer);
      it->call = NULL;
      settle(x, it, c, rc, msg);
    }
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
}

int sl_luafan_check(void *ctx, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  sl_luafan_ctx *x = ctx;
  if (x->concurrency < 1 || x->concurrency > 1000000)
    return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': concurrency must be from 1 to 1000000 (got %lld)", where, stage,
                        (long long)x->concurrency);
  return sl_lua_check_fn(p, x->fn, where, stage, err);
}
