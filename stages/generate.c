/* generate — a source of the integers 1, 2, ... (count of them, or without end), as fast as
 * downstream takes them or, with `rate`, paced on the engine clock: record i is emitted at
 * (i - 1) / rate seconds after the start (a timer wakes the source; no worker waits). */
#include <math.h>
#include <stddef.h>

#include "sluice.h"

typedef struct generate {
  int64_t count; /* option: how many; 0 = without end */
  double rate;   /* option: records per second; 0 = as fast as possible */
  int64_t next;  /* next integer to emit */
  int64_t t0;    /* engine clock at init */
  int64_t armed; /* deadline of the pending timer, or -1 */
  sl_stage *st;
} generate;

static const sl_option options[] = {
    {SL_OPT_INT, "count", "0", offsetof(generate, count), "how many records to emit (0: without end)", NULL, SL_OPT_PRIMARY},
    {SL_OPT_DOUBLE, "rate", "0", offsetof(generate, rate), "records per second on the engine clock, evenly spaced (0: as fast as downstream takes them)", NULL, 0},
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  generate *g = ctx;
  if (g->count < 0) return sl_error_set(err, SL_ECONFIG, NULL, "count must be 0 or more (got %lld)", (long long)g->count);
  if (!(g->rate >= 0) || g->rate > 1e9) return sl_error_set(err, SL_ECONFIG, NULL, "rate must be from 0 to 1e9 records per second (got %g)", g->rate);
  g->next = 1;
  g->st = st;
  g->t0 = sl_stage_now(st);
  g->armed = -1;
  return 0;
}

/* When record i is due (rate > 0). */
static int64_t due(const generate *g, int64_t i) { return g->t0 + (int64_t)llround((double)(i - 1) * 1e9 / g->rate); }

static int produce(void *ctx, sl_emitter *em) {
  generate *g = ctx;
  uint32_t room = sl_emitter_room(em);
  int64_t now = g->rate > 0 ? sl_stage_now(g->st) : 0;
  if (g->armed >= 0 && now >= g->armed) g->armed = -1; /* its timer fired: that is why we run */
  for (uint32_t i = 0; i < room; i++) {
    if (g->count && g->next > g->count) return SL_DONE;
    if (g->rate > 0 && due(g, g->next) > now) {
      if (g->armed < 0) {
        g->armed = due(g, g->next);
        if (sl_stage_timer(g->st, g->armed, 0) < 0) return sl_stage_fail(g->st, "cannot arm a timer");
      }
      return SL_PARKED;
    }
    sl_emit(em, SL_NO_ORIGIN, sl_int(g->next++));
  }
  return g->count && g->next > g->count ? SL_DONE : 0;
}

const sl_stage_kind sl_stage_generate = {
    .abi = SL_STAGE_ABI,
    .name = "generate",
    .doc = "emits the integers 1, 2, ... (count of them, or without end), optionally at a rate",
    .options = options,
    .ctx_size = sizeof(generate),
    .flags = SL_STAGE_SOURCE,
    .init = init,
    .produce = produce,
};
