/* chunks — groups records into arrays of `size` (tokio's chunks_timeout): a chunk leaves when it
 * is full, or, with `timeout`, when that long has passed since its FIRST record arrived (a
 * partial chunk); never an empty one; what is left leaves at the end of the stream.
 *
 * The records of the open chunk are held with their ack tokens; the chunk carries one token
 * joining them (sl_ack_join), so a source hears about its records once the chunk is done. One
 * timer per open chunk, armed by its first record and cancelled when the chunk fills; the
 * chunk's number rides in the timer token, so a timer that fires after its chunk left (a race
 * with cancellation) is ignored. */
#include <stddef.h>
#include <stdlib.h>

#include "sluice.h"

#define SIZE_MAX_CHUNK 10000000

typedef struct chunks {
  int64_t size;     /* option: records per chunk */
  int64_t timeout;  /* option: ns; 0 = none */
  sl_stage *st;
  sl_value cur;     /* the open chunk (an array), or nil */
  sl_ack **acks;    /* its records' tokens */
  size_t n;         /* records in it */
  uint64_t gen;     /* number of the open chunk (timer tokens) */
  int64_t timer;    /* its timer id, or 0 */
} chunks;

static const sl_option options[] = {
    {SL_OPT_INT, "size", NULL, offsetof(chunks, size), "records per chunk", NULL, SL_OPT_REQUIRED | SL_OPT_PRIMARY},
    {SL_OPT_DURATION, "timeout", "0", offsetof(chunks, timeout), "emit a partial chunk this long after its first record arrived (0: only full chunks)", NULL, 0},
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  chunks *c = ctx;
  c->st = st;
  if (c->size < 1 || c->size > SIZE_MAX_CHUNK)
    return sl_error_set(err, SL_ECONFIG, NULL, "size must be from 1 to %d (got %lld)", SIZE_MAX_CHUNK, (long long)c->size);
  if (c->timeout < 0) return sl_error_set(err, SL_ECONFIG, NULL, "timeout must not be negative");
  c->acks = calloc((size_t)c->size, sizeof *c->acks);
  if (!c->acks) return sl_error_set(err, SL_ENOMEM, NULL, "no memory for a chunk of %lld records", (long long)c->size);
  return 0;
}

/* Emits the open chunk (if any) with one token for all its records. */
static int emit_chunk(chunks *c, sl_emitter *em) {
  if (c->n == 0) return 0;
  if (c->timer) sl_stage_timer_cancel(c->st, c->timer);
  c->timer = 0;
  sl_ack *a = sl_ack_join(c->acks, c->n);
  sl_value v = c->cur;
  c->cur = sl_nil();
  c->n = 0;
  c->gen++;
  return sl_emit_acked(em, v, a);
}

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  chunks *c = ctx;
  for (uint32_t i = 0; i < in->len; i++) {
    if (c->n == 0) {
      c->cur = sl_array(c->size < 256 ? (size_t)c->size : 256);
      if (c->timeout > 0) {
        c->timer = sl_stage_timer(c->st, sl_stage_now(c->st) + c->timeout, c->gen);
        if (c->timer < 0) return sl_stage_fail(c->st, "cannot arm a timer");
      }
    }
    c->acks[c->n++] = sl_batch_hold(in, i);
    sl_array_push(&c->cur, sl_batch_take(in, i));
    if ((int64_t)c->n == c->size) {
      int rc = emit_chunk(c, em);
      if (rc) return rc;
    }
  }
  return 0;
}

static int event(void *ctx, uint64_t token, sl_emitter *em) {
  chunks *c = ctx;
  if (token != c->gen) return 0; /* the chunk it was armed for already left */
  c->timer = 0;
  return emit_chunk(c, em);
}

static int flush(void *ctx, sl_emitter *em) { return emit_chunk(ctx, em); }

static void destroy(void *ctx) {
  chunks *c = ctx;
  sl_value_free(c->cur);
  for (size_t i = 0; i < c->n; i++) sl_ack_release(c->acks[i], true);
  free(c->acks);
}

const sl_stage_kind sl_stage_chunks = {
    .abi = SL_STAGE_ABI,
    .name = "chunks",
    .doc = "groups records into arrays of size; with timeout, a partial chunk leaves that long after its first record",
    .options = options,
    .ctx_size = sizeof(chunks),
    .init = init,
    .process = process,
    .flush = flush,
    .destroy = destroy,
    .event = event,
};
