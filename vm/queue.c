/* queue.c — batches and bounded edge queues (see queue.h). */
#include "queue.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "lock.h"
#include "ack.h"

/* Worker threads keep a few freed standard batches for reuse: a batch that was just freed is
 * still in this core's cache, where a fresh allocation is not (and malloc/free cost ~50 ns). */
#define CACHE_CAP 256
#define CACHE_MAX 8
static _Thread_local sl_qbatch *tl_cache[CACHE_MAX];
static _Thread_local int tl_ncache = -1;       /* -1: this thread keeps no cache */
static _Thread_local const sl__mem *tl_mem;    /* the allocator of the cached batches */

static size_t batch_size(uint32_t cap) { return sizeof(sl_qbatch) + (size_t)cap * sizeof(sl_value); }

void sl_queue_thread_cache(const sl__mem *mem) {
  if (mem) {
    tl_mem = mem;
    tl_ncache = 0;
    return;
  }
  while (tl_ncache > 0) sl__mem_free(tl_mem, tl_cache[--tl_ncache], batch_size(CACHE_CAP));
  tl_ncache = -1;
  tl_mem = NULL;
}

sl_qbatch *sl_queue_batch_new(const sl__mem *mem, uint32_t cap) {
  if (cap == 0) cap = 1;
  sl_qbatch *b;
  if (cap <= CACHE_CAP && tl_ncache > 0 && mem == tl_mem) {
    b = tl_cache[--tl_ncache];
    b->next = NULL;
    b->seq = 0;
    b->len = 0;
    b->off = 0;
    b->acks = NULL;
    b->ports = NULL;
    b->bytes = 0;
    return b;
  }
  if (cap < CACHE_CAP && tl_ncache >= 0 && mem == tl_mem) cap = CACHE_CAP; /* cacheable later */
  b = sl__mem_alloc(mem, batch_size(cap));
  b->mem = mem;
  b->next = NULL;
  b->seq = 0;
  b->len = 0;
  b->off = 0;
  b->cap = cap;
  b->acks = NULL;
  b->ports = NULL;
  b->bytes = 0;
  return b;
}

sl_qbatch *sl_queue_batch_grow(sl_qbatch *b, uint32_t cap) {
  if (cap <= b->cap) return b;
  uint32_t ncap = b->cap * 2 > cap ? b->cap * 2 : cap;
  b = sl__mem_realloc(b->mem, b, batch_size(b->cap), batch_size(ncap));
  if (b->acks) {
    b->acks = sl__mem_realloc(b->mem, b->acks, (size_t)b->cap * sizeof *b->acks, (size_t)ncap * sizeof *b->acks);
    memset(b->acks + b->cap, 0, (size_t)(ncap - b->cap) * sizeof *b->acks);
  }
  if (b->ports) {
    b->ports = sl__mem_realloc(b->mem, b->ports, (size_t)b->cap * sizeof *b->ports, (size_t)ncap * sizeof *b->ports);
    memset(b->ports + b->cap, 0, (size_t)(ncap - b->cap) * sizeof *b->ports);
  }
  b->cap = ncap;
  return b;
}

void sl_queue_batch_acks(sl_qbatch *b) {
  if (!b->acks) b->acks = sl__mem_calloc(b->mem, (size_t)b->cap * sizeof *b->acks);
}

void sl_queue_batch_ports(sl_qbatch *b) {
  if (!b->ports) b->ports = sl__mem_calloc(b->mem, (size_t)b->cap * sizeof *b->ports);
}

static void free_ports(sl_qbatch *b) {
  if (b->ports) sl__mem_free(b->mem, b->ports, (size_t)b->cap * sizeof *b->ports);
  b->ports = NULL;
}

/* Frees records [from, to) of b and releases their acks. */
static void free_range(sl_qbatch *b, uint32_t from, uint32_t to, bool dropped) {
  for (uint32_t i = from; i < to; i++) sl_value_free(b->recs[i]);
  if (b->acks)
    for (uint32_t i = from; i < to; i++) {
      sl_ack_release(b->acks[i], dropped);
      b->acks[i] = NULL;
    }
}

void sl_queue_batch_free(sl_qbatch *b, bool dropped) {
  if (!b) return;
  free_range(b, b->off, b->len, dropped);
  if (b->acks) sl__mem_free(b->mem, b->acks, (size_t)b->cap * sizeof *b->acks);
  free_ports(b);
  if (b->cap == CACHE_CAP && b->mem == tl_mem && tl_ncache >= 0 && tl_ncache < CACHE_MAX) tl_cache[tl_ncache++] = b;
  else sl__mem_free(b->mem, b, batch_size(b->cap));
}

sl_qbatch *sl_queue_batch_clone(const sl_qbatch *b) {
  uint32_t n = b->len - b->off;
  sl_qbatch *c = sl_queue_batch_new(b->mem, n);
  c->seq = b->seq;
  c->bytes = b->bytes;
  c->len = n;
  for (uint32_t i = 0; i < n; i++) c->recs[i] = sl_value_ref(&b->recs[b->off + i]);
  if (b->acks) {
    sl_queue_batch_acks(c);
    for (uint32_t i = 0; i < n; i++) c->acks[i] = sl_ack_ref(b->acks[b->off + i]);
  }
  return c;
}

void sl_queue_init(sl_edge *e, uint64_t cap, int on_full) {
  memset(e, 0, sizeof *e);
  e->port = -1;
  e->inst = -1;
  sl_lock_init(&e->mu);
  e->cap = cap;
  e->on_full = on_full;
}

void sl_queue_close_free(sl_edge *e) {
  while (e->head) {
    sl_qbatch *b = e->head;
    e->head = b->next;
    sl_queue_batch_free(b, true);
  }
  e->tail = NULL;
  pthread_mutex_destroy(&e->mu);
}

/* memory_limit accounting (edges with mem_used): bytes of queued batches. */
static void mem_sub(sl_edge *e, uint64_t bytes) {
  if (e->mem_used && bytes) atomic_fetch_sub_explicit(e->mem_used, bytes, memory_order_relaxed);
}

/* Bytes of records [from, to) of b, taken off b->bytes (they are about to be freed). */
static uint64_t take_bytes(sl_qbatch *b, uint32_t from, uint32_t to) {
  if (!b->bytes) return 0;
  uint64_t n = 0;
  for (uint32_t i = from; i < to; i++) n += sl_value_size(&b->recs[i]);
  if (n > b->bytes || to - from == b->len - b->off) n = b->bytes;
  b->bytes -= n;
  return n;
}

static void append(sl_edge *e, sl_qbatch *b) {
  b->next = NULL;
  if (e->tail) e->tail->next = b; else e->head = b;
  e->tail = b;
}

/* drop_oldest: evicts records from the head until len <= cap. mu held. Returns records shed. */
static uint64_t evict_oldest(sl_edge *e, uint64_t *len) {
  uint64_t shed = 0;
  while (*len > e->cap && e->head) {
    sl_qbatch *b = e->head;
    uint32_t avail = b->len - b->off;
    uint64_t k = *len - e->cap < avail ? *len - e->cap : avail;
    mem_sub(e, take_bytes(b, b->off, b->off + (uint32_t)k));
    free_range(b, b->off, b->off + (uint32_t)k, true);
    b->off += (uint32_t)k;
    *len -= k;
    shed += k;
    if (b->off == b->len) {
      e->head = b->next;
      if (!e->head) e->tail = NULL;
      if (b->acks) sl__mem_free(b->mem, b->acks, (size_t)b->cap * sizeof *b->acks);
      free_ports(b);
      sl__mem_free(b->mem, b, batch_size(b->cap));
    }
  }
  return shed;
}

uint64_t sl_queue_push(sl_edge *e, sl_qbatch *b, bool *wake_consumer) {
  uint64_t n = b->len - b->off, shed = 0;
  *wake_consumer = false;
  pthread_mutex_lock(&e->mu);
  if (e->cancelled) { /* the consumer ended on purpose (take): a discard, not a shed */
    pthread_mutex_unlock(&e->mu);
    sl_queue_batch_free(b, true);
    return 0;
  }
  if (!e->mem_used) b->bytes = 0;
  uint64_t len = atomic_load_explicit(&e->len, memory_order_relaxed);
  if (e->cap && e->on_full == SL_ON_FULL_DROP_NEWEST && len + n > e->cap) {
    uint64_t keep = e->cap > len ? e->cap - len : 0;
    take_bytes(b, b->off + (uint32_t)keep, b->len);
    free_range(b, b->off + (uint32_t)keep, b->len, true);
    b->len = b->off + (uint32_t)keep;
    shed = n - keep;
    n = keep;
  }
  if (n == 0) {
    sl_queue_batch_free(b, true);
  } else {
    if (b->bytes) atomic_fetch_add_explicit(e->mem_used, b->bytes, memory_order_relaxed);
    append(e, b);
    len += n;
    if (e->cap && e->on_full == SL_ON_FULL_DROP_OLDEST && len > e->cap) shed += evict_oldest(e, &len);
    *wake_consumer = true;
  }
  if (len > e->hwm) e->hwm = len;
  atomic_store_explicit(&e->len, len, memory_order_relaxed);
  pthread_mutex_unlock(&e->mu);
  return shed;
}

sl_qbatch *sl_queue_pop(sl_edge *e, bool *eof, bool *wake_producer, atomic_uint_least64_t *seq_counter) {
  *eof = false;
  *wake_producer = false;
  pthread_mutex_lock(&e->mu);
  sl_qbatch *b = e->head;
  if (b) {
    e->head = b->next;
    if (!e->head) e->tail = NULL;
    uint64_t len = atomic_load_explicit(&e->len, memory_order_relaxed) - (b->len - b->off);
    atomic_store_explicit(&e->len, len, memory_order_relaxed);
    mem_sub(e, b->bytes);
    b->bytes = 0;
    if (seq_counter) b->seq = atomic_fetch_add_explicit(seq_counter, 1, memory_order_relaxed);
    /* wake a waiting producer once half the queue is free, so it runs a burst of batches
     * rather than one batch per wake-up */
    if (e->producer_waiting && (!e->cap || len <= e->cap / 2)) {
      e->producer_waiting = false;
      *wake_producer = true;
    }
    b->next = NULL;
  } else {
    *eof = e->closed || e->cancelled;
  }
  pthread_mutex_unlock(&e->mu);
  return b;
}

bool sl_queue_room(sl_edge *e, uint64_t extra) {
  if (!e->cap || e->on_full != SL_ON_FULL_BLOCK) return true;
  pthread_mutex_lock(&e->mu);
  bool room = e->cancelled || atomic_load_explicit(&e->len, memory_order_relaxed) + extra < e->cap;
  if (!room) e->producer_waiting = true;
  pthread_mutex_unlock(&e->mu);
  return room;
}

bool sl_queue_empty_or_wait(sl_edge *e) {
  pthread_mutex_lock(&e->mu);
  bool empty = e->cancelled || atomic_load_explicit(&e->len, memory_order_relaxed) == 0;
  if (!empty) e->producer_waiting = true;
  pthread_mutex_unlock(&e->mu);
  return empty;
}

void sl_queue_close(sl_edge *e) {
  pthread_mutex_lock(&e->mu);
  e->closed = true;
  pthread_mutex_unlock(&e->mu);
}

uint64_t sl_queue_cancel(sl_edge *e, bool *wake_producer) {
  pthread_mutex_lock(&e->mu);
  sl_qbatch *b = e->head;
  e->head = e->tail = NULL;
  e->cancelled = true;
  *wake_producer = true;
  e->producer_waiting = false;
  atomic_store_explicit(&e->len, 0, memory_order_relaxed);
  pthread_mutex_unlock(&e->mu);
  uint64_t n = 0;
  while (b) {
    sl_qbatch *next = b->next;
    n += b->len - b->off;
    mem_sub(e, b->bytes);
    sl_queue_batch_free(b, true);
    b = next;
  }
  return n;
}

bool sl_queue_is_cancelled(sl_edge *e) {
  pthread_mutex_lock(&e->mu);
  bool c = e->cancelled;
  pthread_mutex_unlock(&e->mu);
  return c;
}
