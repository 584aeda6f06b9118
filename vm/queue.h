/*
 * queue.h — batches and the bounded queues on graph edges (sl_queue_ prefix).
 *
 * A queue batch (sl_qbatch) is one allocation: header plus records, with an optional parallel
 * array of ack tokens. Batches travel whole from producer to consumer; records are never copied
 * one by one between queues.
 *
 * An edge queue holds batches between one producer stage and one consumer stage. Its capacity
 * counts records (0 = unbounded). A producer asks for room before it makes a batch (the `block`
 * policy: no room parks the producer task, never a thread); with `drop_newest`/`drop_oldest` the
 * push always succeeds and sheds records, counted exactly. Sources make batches no larger than
 * their smallest blocking queue, so a chain of small queues holds what its capacities say; a
 * stage that emits several records per input (or a large batch from upstream) may still overfill
 * by one batch per producer instance: room is checked before a batch is made, not per record.
 *
 * Locking: each edge has its own mutex, below the node's reorder lock. Wake-ups of the other
 * side are made after the mutex is released (queue.c returns what to wake); only the acks of
 * shed records are released under it (a completed token wakes its source).
 */
#ifndef SL_QUEUE_H
#define SL_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "alloc.h"
#include "sluice.h"

typedef struct sl_qbatch {
  struct sl_qbatch *next; /* queue link */
  const sl__mem *mem;     /* the engine allocator it came from (and goes back to) */
  uint64_t seq;           /* order of the input batch it came from (reordering) */
  uint32_t len;           /* records in recs[] */
  uint32_t off;           /* records before off were taken (drop_oldest, partial pulls) */
  uint32_t cap;           /* room in recs[] */
  sl_ack **acks;          /* NULL, or cap tokens (NULL entries allowed) */
  uint16_t *ports;        /* NULL, or cap output numbers (a node with named outputs; 0: default) */
  uint64_t bytes;         /* estimated bytes of its records while queued (memory_limit), or 0 */
  sl_value recs[];
} sl_qbatch;

enum { SL_ON_FULL_BLOCK = 0, SL_ON_FULL_DROP_NEWEST, SL_ON_FULL_DROP_OLDEST };

struct sl_node;

typedef struct sl_edge {
  pthread_mutex_t mu;
  sl_qbatch *head, *tail;
  atomic_uint_least64_t len; /* records queued (written under mu, read anywhere) */
  uint64_t cap;              /* records; 0 = unbounded */
  uint64_t hwm;              /* highest len seen */
  int on_full;               /* SL_ON_FULL_* */
  bool closed;               /* the producer ended: EOS after what is queued */
  bool cancelled;            /* the consumer ended: pushes are discarded */
  atomic_bool tainted;       /* a stage at or below the consumer stopped reading early: ack
                                tokens may be held there until the pipeline is freed */
  bool producer_waiting;     /* a producer found no room: wake it on pop */
  atomic_uint_least64_t *mem_used; /* the pipeline's queued bytes (memory_limit), or NULL: not counted */
  int port;                  /* output of `from` it carries: -1 every record, else an output number */
  int inst;                  /* the one instance of `to` that pops it (partition_by), or -1: any */
  struct sl_node *from;      /* producer (NULL for the dead-letter edge) */
  struct sl_node *to;        /* consumer */
} sl_edge;

/* Worker threads call this with their engine's allocator when they start and with NULL when
 * they stop: their freed batches of that allocator are kept for reuse in between. */
void sl_queue_thread_cache(const sl__mem *mem);
/* returns an owned batch with room for cap records (len 0), from mem. */
sl_qbatch *sl_queue_batch_new(const sl__mem *mem, uint32_t cap);
/* Grows b to hold at least cap records; returns the (moved) batch. */
sl_qbatch *sl_queue_batch_grow(sl_qbatch *b, uint32_t cap);
/* Frees b: records from off on are freed, their acks released (dropped: shed, not delivered). */
void sl_queue_batch_free(sl_qbatch *b, bool dropped);
/* A copy sharing b's records (references) and acks (references), for broadcast. */
sl_qbatch *sl_queue_batch_clone(const sl_qbatch *b);
/* Ensures b has an acks array. */
void sl_queue_batch_acks(sl_qbatch *b);
/* Ensures b has a ports array (zeroed: every record on output 0). */
void sl_queue_batch_ports(sl_qbatch *b);

void sl_queue_init(sl_edge *e, uint64_t cap, int on_full);
/* Frees what is still queued (acks released as cancelled or dropped). */
void sl_queue_close_free(sl_edge *e);

/* Pushes b (consumed). Returns the number of records shed by a drop policy (records pushed to a
 * cancelled edge are discarded and not counted). With e->mem_used, b->bytes is added to it while
 * b is queued (and what is shed or discarded comes off).
 * *wake_consumer is set when the consumer should be woken. */
uint64_t sl_queue_push(sl_edge *e, sl_qbatch *b, bool *wake_consumer);
/* Pops the next batch, or NULL. *eof is set when the edge is closed and empty.
 * *wake_producer is set when a waiting producer should be woken. seq_counter (may be NULL)
 * stamps the batch's seq atomically with the pop. */
sl_qbatch *sl_queue_pop(sl_edge *e, bool *eof, bool *wake_producer, atomic_uint_least64_t *seq_counter);
/* True if the producer may push `extra` more records beyond what is queued; otherwise marks the
 * producer as waiting (it is woken on the next pop). Always true for drop policies, unbounded
 * and cancelled edges. */
bool sl_queue_room(sl_edge *e, uint64_t extra);
/* True if nothing is queued on e; otherwise marks the producer as waiting (woken on a pop). */
bool sl_queue_empty_or_wait(sl_edge *e);
/* The producer ended: the consumer sees end of stream after what is queued (wake it). */
void sl_queue_close(sl_edge *e);
/* The consumer ended: frees what is queued, discards later pushes. Returns the records freed.
 * *wake_producer set when the producer should be woken. */
uint64_t sl_queue_cancel(sl_edge *e, bool *wake_producer);
bool sl_queue_is_cancelled(sl_edge *e);

#endif
