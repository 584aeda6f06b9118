/*
 * ack.h — end-to-end acknowledgement tokens (sl_ack_ prefix; the public part is in sluice.h).
 *
 * A source that wants to know when an input unit (a Redis entry, a file offset) is fully done
 * creates a token and emits the records of that unit with it. Every record derived from it
 * carries a reference: a stage that emits with an origin adds one, the engine drops the input's
 * reference after process(), a sink's write or a dead-letter hand-off drops the last one. When
 * the count reaches zero the token goes back to its source, whose task calls the kind's
 * acked(ctx, id, status) callback. A join token (a chunk made of several records) holds one
 * reference to each part and releases them when it completes itself.
 *
 * The status is OK unless a derived record was shed by a drop policy, skipped after an error,
 * or discarded by a cancelled edge (DROPPED); an abort reports CANCELLED.
 */
#ifndef SL_ACK_H
#define SL_ACK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "alloc.h"
#include "sluice.h"

struct sl_ack {
  const sl__mem *mem;   /* the engine allocator it came from */
  atomic_int refs;
  atomic_bool dropped;  /* some derived record was not delivered */
  sl_stage *src;        /* the source instance to tell (NULL for a join) */
  uint64_t id;          /* the source's id for it */
  sl_ack **parts;       /* a join's parts */
  uint32_t nparts;
  sl_ack *next;         /* link in the source's completed list */
};

/* Implemented by the pipeline: a source token completed (runs on any thread). */
void sl__stage_ack_done(sl_stage *st, sl_ack *a);
/* Frees a completed token (after the source saw it). */
void sl__ack_free(sl_ack *a);

#endif
