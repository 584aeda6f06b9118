/*
 * pipeline.c — building, checking and running pipelines (the model is in pipeline.h).
 *
 * Building: sl_pipeline_add stores a node with its kind, common keys and options (validated at
 * once against the kind's options table). Checking resolves input names and validates the graph.
 * Starting creates the edges and the instances, calls init, and wakes the sources.
 *
 * Running: every instance is a task whose run function (inst_run) does a bounded amount of work
 * and returns: handle fired events and completed acks, then produce (sources) or pop-process-push
 * (transforms, sinks) while there is input and room downstream.
 */
#include "pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "codec.h"
#include "policy.h"

#define BATCH 256 /* records per batch a source makes, and the default output batch size */
#define BUDGET 64 /* batches an instance handles before it yields its worker */

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                               */
/* ------------------------------------------------------------------------------------------ */

static bool is_source(const sl_node *n) { return n->kind->flags & SL_STAGE_SOURCE; }
static bool is_sink(const sl_node *n) { return n->kind->flags & SL_STAGE_SINK; }
static bool is_passive(const sl_node *n) { return n->kind->flags & SL_STAGE_PASSIVE; }

sl_node *sl__pipeline_node(const sl_pipeline *p, const char *name) {
  for (int i = 0; i < p->nnodes; i++)
    if (strcmp(p->nodes[i]->name, name) == 0) return p->nodes[i];
  return NULL;
}

static double wallclock(const sl_engine *e) {
  if (sl_loop_virtual(e->loop)) return (double)sl_loop_now(e->loop) / 1e9;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void logf_(sl_engine *e, int level, const char *stage, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static void logf_(sl_engine *e, int level, const char *stage, const char *fmt, va_list ap) {
  if (!e->cfg.log || level > e->cfg.log_level) return;
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  e->cfg.log(e->cfg.log_ud, level, stage, msg);
}

void sl__elog(sl_engine *e, int level, const char *stage, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  logf_(e, level, stage, fmt, ap);
  va_end(ap);
}

void sl__node_wake(sl_node *n) {
  if (is_passive(n)) {
    pthread_mutex_lock(&n->pmu);
    pthread_cond_broadcast(&n->pcv);
    pthread_mutex_unlock(&n->pmu);
    return;
  }
  if (!n->insts) return;
  for (int i = 0; i < n->parallelism; i++) sl_stage_wake(&n->insts[i]);
}

/* ------------------------------------------------------------------------------------------ */
/* Moving batches                                                                              */
/* ------------------------------------------------------------------------------------------ */

/* memory_limit: the estimated bytes of b's records (b->bytes while it is queued). */
static uint64_t batch_bytes(const sl_qbatch *b) {
  uint64_t n = 0;
  for (uint32_t i = b->off; i < b->len; i++) n += sl_value_size(&b->recs[i]);
  return n;
}

static void push_edge(sl_edge *e, sl_qbatch *c) {
  bool wake = false;
  if (e->mem_used && !c->bytes) c->bytes = batch_bytes(c);
  uint64_t shed = sl_queue_push(e, c, &wake);
  if (e->mem_used) { /* the high-water mark, for sl_pipeline_memory */
    sl_pipeline *p = e->to->p;
    uint64_t used = atomic_load_explicit(&p->mem_used, memory_order_relaxed);
    uint64_t peak = atomic_load_explicit(&p->mem_peak, memory_order_relaxed);
    while (used > peak && !atomic_compare_exchange_weak_explicit(&p->mem_peak, &peak, used, memory_order_relaxed,
                                                                 memory_order_relaxed)) {
    }
  }
  if (shed) atomic_fetch_add_explicit(&e->to->st_dropped, shed, memory_order_relaxed);
  if (wake && e->inst >= 0 && e->to->insts) sl_stage_wake(&e->to->insts[e->inst]);
  else if (wake) sl__node_wake(e->to);
}

/* A node with named outputs (route): each edge gets the records of its output (references),
 * in order; records of an output nobody reads are let go (done, like a filter's). */
static void deliver_ports(sl_node *n, sl_qbatch *b) {
  for (int i = 0; i < n->nout; i++) {
    sl_edge *e = n->out[i];
    uint32_t m = 0;
    for (uint32_t k = b->off; k < b->len; k++) m += b->ports[k] == e->port;
    if (m == 0) continue;
    sl_qbatch *c = sl_queue_batch_new(b->mem, m);
    c->seq = b->seq;
    if (b->acks) sl_queue_batch_acks(c);
    for (uint32_t k = b->off; k < b->len; k++) {
      if (b->ports[k] != e->port) continue;
      if (b->acks) c->acks[c->len] = sl_ack_ref(b->acks[k]);
      c->recs[c->len++] = sl_value_ref(&b->recs[k]);
    }
    push_edge(e, c);
  }
  sl_queue_batch_free(b, false);
}

/* Pushes b (consumed) to every output edge of n; each extra edge gets references. */
static void deliver(sl_node *n, sl_qbatch *b) {
  if (n->nout == 0 || b->len == b->off) {
    sl_queue_batch_free(b, n->nout > 0);
    return;
  }
  if (n->p->mem_limit) { /* counted once, before broadcast copies it */
    if (!b->bytes) b->bytes = batch_bytes(b);
    if (is_source(n)) atomic_store_explicit(&n->mem_avg, b->bytes / (b->len - b->off) + 1, memory_order_relaxed);
  }
  if (b->ports) {
    deliver_ports(n, b);
    return;
  }
  if (n->noutputs) { /* every record on the default output: only its readers get them */
    int k = 0;
    for (int i = 0; i < n->nout; i++) k += n->out[i]->port <= 0;
    if (k < n->nout) {
      sl_queue_batch_ports(b);
      deliver_ports(n, b);
      return;
    }
  }
  for (int i = n->nout - 1; i >= 0; i--) {
    sl_edge *e = n->out[i];
    push_edge(e, i == 0 ? b : sl_queue_batch_clone(b));
  }
}

/* Releases batch `seq` of an ordered node and every later one already waiting, in order. */
static void reorder_push(sl_node *n, sl_qbatch *b) {
  sl_pipeline *p = n->p;
  if (p->mem_limit) { /* what waits here counts against memory_limit too */
    b->bytes = batch_bytes(b);
    atomic_fetch_add_explicit(&p->mem_used, b->bytes, memory_order_relaxed);
  }
  pthread_mutex_lock(&n->out_mu);
  sl_qbatch **pp = &n->pending;
  while (*pp && (*pp)->seq < b->seq) pp = &(*pp)->next;
  b->next = *pp;
  *pp = b;
  atomic_fetch_add_explicit(&n->pending_len, b->len - b->off, memory_order_relaxed);
  while (n->pending && n->pending->seq == n->next_seq) {
    sl_qbatch *h = n->pending;
    n->pending = h->next;
    h->next = NULL;
    atomic_fetch_sub_explicit(&n->pending_len, h->len - h->off, memory_order_relaxed);
    if (p->mem_limit) atomic_fetch_sub_explicit(&p->mem_used, h->bytes, memory_order_relaxed);
    n->next_seq++;
    deliver(n, h);
  }
  pthread_mutex_unlock(&n->out_mu);
}

/* Hands the emitter's batch on. seq is the input batch's sequence number (ordered nodes). */
static void flush_out(sl_emitter *em, bool have_seq, uint64_t seq) {
  sl_node *n = em->node;
  sl_qbatch *b = em->out;
  em->out = NULL;
  if (!n->ordered) {
    if (b) {
      atomic_fetch_add_explicit(&n->st_out, b->len, memory_order_relaxed);
      deliver(n, b);
    }
    return;
  }
  if (!b && !have_seq) return;
  if (!b) b = sl_queue_batch_new(sl__pmem(n->p), 1);
  b->seq = have_seq ? seq : atomic_fetch_add(&n->fuse_head->seq_counter, 1);
  atomic_fetch_add_explicit(&n->st_out, b->len, memory_order_relaxed);
  reorder_push(n, b);
}

static bool out_room(sl_node *n) {
  uint64_t extra = atomic_load_explicit(&n->pending_len, memory_order_relaxed);
  for (int i = 0; i < n->nout; i++)
    if (!sl_queue_room(n->out[i], extra)) return false;
  return true;
}

/* memory_limit: may a source produce now? Records how many it should make (*room: what is left
 * under the limit, at most an eighth of it, at its records' average size). A source that finds no
 * room sets mem_blocked; the pop that brings the use under the limit wakes the sources. */
static bool mem_room(sl_node *n, uint32_t *room) {
  sl_pipeline *p = n->p;
  if (!p->mem_limit) return true;
  for (int pass = 0; pass < 2; pass++) {
    uint64_t used = atomic_load(&p->mem_used);
    if (used < p->mem_limit) {
      uint64_t avg = atomic_load_explicit(&n->mem_avg, memory_order_relaxed);
      /* batches of at most an eighth of the limit: each producer instance may pass the limit
       * by one batch, so smaller ones keep the total near it. A first record tells the size. */
      uint64_t budget = p->mem_limit - used < p->mem_limit / 8 ? p->mem_limit - used : p->mem_limit / 8;
      uint64_t fit = avg ? budget / avg + 1 : 1;
      if (fit < *room) *room = (uint32_t)fit;
      return true;
    }
    atomic_store(&p->mem_blocked, true); /* then look again: a pop may have come in between */
  }
  return false;
}

/* memory_limit: may a transform take input now? Under the limit, yes. Over it, only when its
 * output edges are empty, so it passes on at most about a batch: then the consumer of the most
 * downstream non-empty queue can always go on (its own outputs are empty, or it is a sink), and
 * the use comes down. Otherwise it waits for one of its output edges to be popped (the
 * producer_waiting flag), or for the use to fall under the limit (mem_blocked). */
static bool mem_room_transform(sl_node *n, sl_node *tail) {
  sl_pipeline *p = n->p;
  if (!p->mem_limit || atomic_load(&p->mem_used) < p->mem_limit) return true;
  bool empty = atomic_load_explicit(&tail->pending_len, memory_order_relaxed) == 0; /* reorder buffer */
  for (int i = 0; i < tail->nout; i++)
    if (!sl_queue_empty_or_wait(tail->out[i])) empty = false;
  if (empty) return true;
  atomic_store(&p->mem_blocked, true);
  return atomic_load(&p->mem_used) < p->mem_limit;
}

/* A pop freed queue memory: wake the stages that wait for it (sources, and transforms held by
 * mem_room_transform). */
static void mem_released(sl_pipeline *p) {
  if (!p->mem_limit || !atomic_load_explicit(&p->mem_blocked, memory_order_relaxed)) return;
  if (atomic_load(&p->mem_used) >= p->mem_limit || !atomic_exchange(&p->mem_blocked, false)) return;
  for (int i = 0; i < p->nnodes; i++)
    if (!is_sink(p->nodes[i]) && p->nodes[i]->fuse_head == p->nodes[i]) sl__node_wake(p->nodes[i]);
}

static bool all_out_cancelled(sl_node *n) {
  if (n->nout == 0) return false;
  for (int i = 0; i < n->nout; i++)
    if (!sl_queue_is_cancelled(n->out[i])) return false;
  return true;
}

/* n stopped reading before the end of its input, perhaps holding records with ack tokens:
 * every edge above it is marked, so that a source that ended and waits for its tokens does not
 * wait for these (run_source). */
static void taint_up(sl_node *n) {
  n = n->fuse_head;
  for (int i = 0; i < n->nin; i++) {
    sl_edge *e = n->in[i];
    if (atomic_exchange(&e->tainted, true) || !e->from) continue;
    sl__node_wake(e->from);
    taint_up(e->from);
  }
}

static bool any_out_tainted(sl_node *n) {
  for (int i = 0; i < n->nout; i++)
    if (atomic_load(&n->out[i]->tainted)) return true;
  return false;
}

static void cancel_inputs(sl_node *n) {
  for (int i = 0; i < n->nin; i++) {
    bool wake = false;
    sl_queue_cancel(n->in[i], &wake);
    if (wake && n->in[i]->from) sl__node_wake(n->in[i]->from);
  }
}

/* Pops the next input batch round-robin. *all_eof: every input is closed and empty. */
/* Does the chain headed by n number its input batches? When its output is put back in order,
 * and whenever it runs as several instances: a stage in it may ask for the order of its input
 * (sl_emitter_seq; decrypt checks its chunks' order) even when the chain ends unordered (a null
 * sink fused after it). */
static bool stamps_seq(const sl_node *n) { return n->fuse_tail->ordered || n->parallelism > 1; }

static sl_qbatch *pop_input(sl_stage *st, bool *all_eof) {
  sl_node *n = st->node;
  *all_eof = true;
  for (int k = 0; k < n->nin; k++) {
    int i = (st->rr + k) % n->nin;
    if (n->in[i]->inst >= 0 && n->in[i]->inst != st->index) continue; /* another instance's keys */
    bool eof, wake;
    sl_qbatch *b = sl_queue_pop(n->in[i], &eof, &wake, stamps_seq(n) ? &n->seq_counter : NULL);
    if (wake && n->in[i]->from) sl__node_wake(n->in[i]->from);
    if (b) {
      st->rr = i + 1;
      *all_eof = false;
      atomic_fetch_add_explicit(&n->st_in, b->len - b->off, memory_order_relaxed);
      mem_released(n->p);
      return b;
    }
    if (!eof) *all_eof = false;
  }
  return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Emitting (sluice.h)                                                                         */
/* ------------------------------------------------------------------------------------------ */

static int emit(sl_emitter *em, sl_value v, sl_ack *ack) {
  sl_node *n = em->node;
  if (n->nout == 0 && !n->fuse_next) { /* sinks have nowhere to emit */
    sl_value_free(v);
    sl_ack_release(ack, false);
    return 0;
  }
  if (!em->out) em->out = sl_queue_batch_new(sl__pmem(n->p), em->room > BATCH ? em->room : BATCH);
  if (em->out->len == em->out->cap) {
    if (n->ordered || n->fuse_next) { /* one output batch per input batch */
      em->out = sl_queue_batch_grow(em->out, em->out->cap * 2);
    } else {
      flush_out(em, false, 0);
      em->out = sl_queue_batch_new(sl__pmem(n->p), BATCH);
    }
  }
  sl_qbatch *b = em->out;
  if (ack) {
    sl_queue_batch_acks(b);
    b->acks[b->len] = ack;
  } else if (b->acks) {
    b->acks[b->len] = NULL;
  }
  b->recs[b->len++] = v;
  return 0;
}

/* The hot path of every stage: a record into a batch with room, no ack to carry. It stores v
 * straight from its registers (the general path spills it, and reloading it whole stalls on
 * store forwarding: that cost ~6 ns per record). */
static __attribute__((noinline)) int emit_slow(sl_emitter *em, uint32_t origin, sl_value v) {
  bool acks = origin != SL_NO_ORIGIN && em->in && em->in->acks && origin < em->in->len;
  return emit(em, v, acks ? sl_ack_ref(em->in->acks[origin]) : NULL);
}

int sl_emit(sl_emitter *em, uint32_t origin, sl_value v) {
  sl_qbatch *b = em->out;
  if (b && b->len < b->cap && !b->acks && (origin == SL_NO_ORIGIN || !em->in || !em->in->acks)) {
    b->recs[b->len++] = v;
    return 0;
  }
  return emit_slow(em, origin, v);
}

int sl_emit_acked(sl_emitter *em, sl_value v, sl_ack *ack) { return emit(em, v, ack); }

int sl_emit_to(sl_emitter *em, uint32_t output, uint32_t origin, sl_value v) {
  if (output == 0) return sl_emit(em, origin, v);
  if (output > (uint32_t)em->node->noutputs) {
    sl_value_free(v);
    return SL_EINVAL;
  }
  int rc = emit_slow(em, origin, v);
  sl_qbatch *b = em->out;
  if (rc == 0 && b) { /* a sink's emit goes nowhere and leaves no batch */
    sl_queue_batch_ports(b);
    b->ports[b->len - 1] = (uint16_t)output;
  }
  return rc;
}

uint32_t sl_emitter_room(const sl_emitter *em) { return em->room; }
sl_stage *sl_emitter_stage(sl_emitter *em) { return em->st; }

static int policy_of(const sl_node *n, const sl_pipeline *p) {
  int pol = n->on_error != SL_ON_ERROR_DEFAULT ? n->on_error : p->on_error;
  if (pol == SL_ON_ERROR_DEFAULT) pol = p->dead_letter_name ? SL_ON_ERROR_DEAD_LETTER : SL_ON_ERROR_SKIP;
  return pol;
}

/* Sends a dead-letter map for a failed record to the pipeline's dead-letter stage. */
static void dead_letter(sl_stage *st, const sl_value *rec, sl_ack *ack, const char *msg, int attempts) {
  sl_pipeline *p = st->p;
  sl_value m = sl_map(5);
  sl_map_setc(&m, "record", rec ? sl_value_ref(rec) : sl_nil());
  sl_map_setc(&m, "error", sl_cstr(msg));
  sl_map_setc(&m, "stage", sl_cstr(st->node->name));
  sl_map_setc(&m, "attempts", sl_int(attempts));
  sl_map_setc(&m, "time", sl_double(wallclock(p->e)));
  sl_qbatch *b = sl_queue_batch_new(sl__pmem(p), 1);
  b->recs[0] = m;
  b->len = 1;
  if (ack) {
    sl_queue_batch_acks(b);
    b->acks[0] = ack;
  }
  bool wake = false;
  sl_queue_push(p->dl_edge, b, &wake);
  atomic_fetch_add_explicit(&st->node->st_dead, 1, memory_order_relaxed);
  if (wake) sl__node_wake(p->dead_letter);
}

/* Record rec (borrowed, may be NULL) with token ack (borrowed) failed after `attempts` tries:
 * on_error decides. */
static void fail_record(sl_emitter *em, const sl_value *rec, sl_ack *ack, int attempts, const char *msg) {
  sl_stage *st = em->st;
  sl_node *n = em->node;
  em->failed++;
  atomic_fetch_add_explicit(&n->st_errors, 1, memory_order_relaxed);
  int policy = policy_of(n, st->p);
  if (policy == SL_ON_ERROR_DEAD_LETTER && n == st->p->dead_letter) policy = SL_ON_ERROR_SKIP; /* no loop */
  switch (policy) {
  case SL_ON_ERROR_FAIL:
    sl__pipeline_fail(st->p, n->name, "%sstage '%s': %s", n->where, n->name, msg);
    break;
  case SL_ON_ERROR_DEAD_LETTER:
    if (st->p->dl_edge) {
      dead_letter(st, rec, sl_ack_ref(ack), msg, attempts < 1 ? 1 : attempts);
      break;
    }
    __attribute__((fallthrough)); /* no dead-letter stage: skip */
  default:
    if (ack) atomic_store_explicit(&ack->dropped, true, memory_order_relaxed);
    sl__elog(st->p->e, SL_LOG_WARN, n->name, "record skipped: %s", msg);
    break;
  }
}

static void emit_error_v(sl_emitter *em, uint32_t origin, int attempts, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static void emit_error_v(sl_emitter *em, uint32_t origin, int attempts, const char *fmt, va_list ap) {
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  bool have = origin != SL_NO_ORIGIN && em->in && origin < em->in->len;
  fail_record(em, have ? &em->in->recs[origin] : NULL, have && em->in->acks ? em->in->acks[origin] : NULL, attempts, msg);
}

int sl_emit_error(sl_emitter *em, uint32_t origin, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  emit_error_v(em, origin, 1, fmt, ap);
  va_end(ap);
  return 0;
}

int sl_emit_error_attempts(sl_emitter *em, uint32_t origin, int attempts, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  emit_error_v(em, origin, attempts, fmt, ap);
  va_end(ap);
  return 0;
}

static void error_record_v(sl_emitter *em, sl_value rec, sl_ack *ack, int attempts, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));
static void error_record_v(sl_emitter *em, sl_value rec, sl_ack *ack, int attempts, const char *fmt, va_list ap) {
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  fail_record(em, &rec, ack, attempts, msg);
  sl_value_free(rec);
  sl_ack_release(ack, false);
}

int sl_emit_error_record(sl_emitter *em, sl_value rec, sl_ack *ack, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  error_record_v(em, rec, ack, 1, fmt, ap);
  va_end(ap);
  return 0;
}

int sl_emit_error_record_attempts(sl_emitter *em, sl_value rec, sl_ack *ack, int attempts, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  error_record_v(em, rec, ack, attempts, fmt, ap);
  va_end(ap);
  return 0;
}

sl_batch *sl_emitter_batch(sl_emitter *em) { return (sl_batch *)em->in; }
uint32_t sl__emitter_len(const sl_emitter *em) { return em->out ? em->out->len : 0; }

void sl_emit_dropped(sl_emitter *em, uint32_t origin) {
  atomic_fetch_add_explicit(&em->node->st_dropped, 1, memory_order_relaxed);
  if (origin != SL_NO_ORIGIN && em->in && origin < em->in->len && em->in->acks && em->in->acks[origin])
    atomic_store_explicit(&em->in->acks[origin]->dropped, true, memory_order_relaxed);
}

bool sl_emitter_seq(const sl_emitter *em, uint64_t *seq) {
  if (!em->in || !em->have_seq) return false;
  *seq = em->seq;
  return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Engine services for stages (sluice.h)                                                       */
/* ------------------------------------------------------------------------------------------ */

const char *sl_stage_name(const sl_stage *st) { return st->node->name; }
int sl_stage_instance(const sl_stage *st) { return st->index; }
bool sl_stage_splits_behind(const sl_stage *st) { return st->node->splitter != NULL; }
int sl_stage_parallelism(const sl_stage *st) { return st->node->parallelism; }
void *sl_stage_sibling(const sl_stage *st, int i) {
  return i >= 0 && i < st->node->parallelism && st->node->insts ? st->node->insts[i].ctx : NULL;
}
int64_t sl_stage_now(const sl_stage *st) { return sl_loop_now(st->p->e->loop); }
double sl_stage_wallclock(const sl_stage *st) { return wallclock(st->p->e); }
/* Before start (an init arming a timer) a wake is dropped: start wakes every instance once. */
void sl_stage_wake(sl_stage *st) {
  if (atomic_load_explicit(&st->p->started, memory_order_acquire))
    sl_sched_wake(st->p->e->sched, &st->runner->task);
}

static void mailbox_cb(void *arg, uint64_t token) {
  sl_stage *st = arg; /* a fused instance or a key's instance has its own mailbox; its runner delivers it */
  if (!st->node->kind->event) { /* no callback to tell: the wake-up itself is the message */
    sl_stage_wake(st);
    return;
  }
  pthread_mutex_lock(&st->mbox_mu);
  if (st->nevents == st->cap_events) {
    size_t ncap = st->cap_events ? st->cap_events * 2 : 16;
    st->events = sl__mem_realloc(sl__pmem(st->p), st->events, st->cap_events * sizeof *st->events,
                                 ncap * sizeof *st->events);
    st->cap_events = ncap;
  }
  st->events[st->nevents++] = token;
  pthread_mutex_unlock(&st->mbox_mu);
  if (st->is_part) atomic_store(&st->runner->part_events, true);
  sl_stage_wake(st);
}

void sl__stage_post(void *st, uint64_t token) { mailbox_cb(st, token); }

int64_t sl_stage_timer(sl_stage *st, int64_t deadline_ns, uint64_t token) {
  return sl_loop_timer(st->p->e->loop, deadline_ns, st, mailbox_cb, st, token);
}

void sl_stage_timer_cancel(sl_stage *st, int64_t id) { sl_loop_timer_cancel(st->p->e->loop, id); }

int sl_stage_watch_fd(sl_stage *st, int fd, bool write, uint64_t token) {
  int rc = sl_loop_watch(st->p->e->loop, fd, write, st, mailbox_cb, st, token);
  return rc < 0 ? SL_EIO : 0;
}

/* A fused stage's input is its chain's: pausing it pauses the chain's first stage. */
void sl_stage_pause_input(sl_stage *st, bool paused) {
  sl_stage *r = st->runner;
  bool was = r->input_paused;
  r->input_paused = paused;
  if (was && !paused) sl_stage_wake(r);
}

void sl_stage_log(sl_stage *st, int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  logf_(st->p->e, level, st->node->name, fmt, ap);
  va_end(ap);
}

int sl_stage_fail(sl_stage *st, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  sl__pipeline_fail(st->p, st->node->name, "%sstage '%s': %s", st->node->where, st->node->name, msg);
  return SL_EFAILED;
}

void *sl_stage_alloc(sl_stage *st, void *ptr, size_t osize, size_t nsize) {
  const sl_engine_config *c = &st->p->e->cfg;
  return c->alloc(c->alloc_ud, ptr, osize, nsize);
}

bool sl_stage_stopping(const sl_stage *st) {
  return atomic_load(&st->p->stopping) || atomic_load(&st->p->aborted);
}

sl_ack *sl_ack_new(sl_stage *st, uint64_t id) {
  sl_ack *a = sl__mem_calloc(sl__pmem(st->p), sizeof *a);
  a->mem = sl__pmem(st->p);
  atomic_init(&a->refs, 1);
  a->src = st;
  a->id = id;
  atomic_fetch_add_explicit(&st->outstanding, 1, memory_order_relaxed);
  return a;
}

void sl__stage_ack_done(sl_stage *st, sl_ack *a) {
  sl_ack *head = atomic_load_explicit(&st->acked, memory_order_relaxed);
  do a->next = head;
  while (!atomic_compare_exchange_weak_explicit(&st->acked, &head, a, memory_order_release,
                                                memory_order_relaxed));
  sl_stage_wake(st);
}

/* Tells the source kind about completed tokens, oldest first. */
static void deliver_acks(sl_stage *st) {
  sl_ack *a = atomic_exchange_explicit(&st->acked, NULL, memory_order_acquire);
  sl_ack *fifo = NULL;
  while (a) { /* reverse the stack */
    sl_ack *next = a->next;
    a->next = fifo;
    fifo = a;
    a = next;
  }
  bool aborted = atomic_load(&st->p->aborted);
  while (fifo) {
    sl_ack *next = fifo->next;
    int status = aborted ? SL_ACK_CANCELLED
                 : atomic_load(&fifo->dropped) ? SL_ACK_DROPPED : SL_ACK_OK;
    if (st->inited && st->node->kind->acked) st->node->kind->acked(st->ctx, fifo->id, status);
    atomic_fetch_sub_explicit(&st->outstanding, 1, memory_order_relaxed);
    sl__ack_free(fifo);
    fifo = next;
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Running                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* The node's last instance ended: close its outputs, cancel what is left of its inputs. */
static void node_end(sl_node *n) {
  sl_pipeline *p = n->insts[0].p;
  cancel_inputs(n);
  for (int i = 0; i < n->nout; i++) {
    sl_queue_close(n->out[i]);
    sl__node_wake(n->out[i]->to);
  }
  atomic_store(&n->done, true);
  if (n != p->dead_letter && !is_passive(n) && atomic_fetch_sub(&p->producers_alive, 1) == 1 && p->dl_edge) {
    sl_queue_close(p->dl_edge);
    sl__node_wake(p->dead_letter);
  }
}

/* The instance (and the instances fused after it) ended. Its timers go: they would only wake a
 * task that is gone, and on the virtual clock they would still move the clock (the sleeps of
 * calls that buffer_unordered abandoned when take had enough). */
static int end_inst(sl_stage *st) {
  for (; st; st = st->node->fuse_next ? &st->node->fuse_next->insts[st->index] : NULL) {
    st->finished = true;
    sl_loop_cancel_timers(st->p->e->loop, st);
    if (atomic_fetch_sub(&st->node->active, 1) == 1) node_end(st->node);
  }
  return SL_TASK_DONE;
}

static int chain_run(sl_stage *st, sl_qbatch *qb, bool have_seq, uint64_t seq, bool resume, uint64_t token);
static int process_chain(sl_stage *st, sl_qbatch *qb, bool have_seq, uint64_t seq);

uint64_t *sl__take_events(sl_stage *st, uint64_t *small, size_t *n) {
  pthread_mutex_lock(&st->mbox_mu);
  *n = st->nevents;
  uint64_t *tokens = small;
  if (*n > 16) tokens = sl__xmalloc(*n * sizeof *tokens);
  if (*n) memcpy(tokens, st->events, *n * sizeof *tokens);
  st->nevents = 0;
  pthread_mutex_unlock(&st->mbox_mu);
  return tokens;
}

/* Hands every instance of the chain its events. A parked batch's stage finishes it through
 * chain_run; other events emit like a source would, and a fused stage's output goes on
 * through the rest of its chain. Returns < 0 when the chain failed. */
static int deliver_events(sl_stage *head, sl_emitter *em) {
  int result = 0;
  for (sl_stage *st = head; st; st = st->node->fuse_next ? &st->node->fuse_next->insts[st->index] : NULL) {
    sl_node *nd = st->node;
    if (!nd->kind->event) continue; /* its wake-ups carry no message */
    uint64_t small[16];
    size_t n;
    uint64_t *tokens = sl__take_events(st, small, &n);
    for (size_t i = 0; i < n && !atomic_load(&st->p->aborted); i++) {
      if (head->susp_at == st) {
        int rc = chain_run(st, NULL, false, 0, true, tokens[i]);
        if (rc < 0) result = rc;
        if (rc == SL_DONE) {
          cancel_inputs(head->node);
          head->input_done = true;
        }
        continue;
      }
      sl_emitter e2 = {.st = st, .node = nd, .room = em->room};
      int rc = nd->kind->event(st->ctx, tokens[i], &e2);
      if (rc < 0) {
        sl_stage_fail(st, "event handler failed: %s", sl_strerror(rc));
        result = rc;
      }
      if (nd->fuse_next && e2.out) {
        atomic_fetch_add_explicit(&nd->st_out, e2.out->len, memory_order_relaxed);
        bool ordered = nd->fuse_tail->ordered;
        rc = process_chain(&nd->fuse_next->insts[st->index], e2.out, ordered,
                           ordered ? atomic_fetch_add(&nd->fuse_head->seq_counter, 1) : 0);
        if (rc < 0) result = rc;
      } else {
        flush_out(&e2, false, 0);
      }
    }
    if (tokens != small) sl__free(tokens);
    if (st->parts && !atomic_load(&st->p->aborted)) { /* partition_by: the keys' own events */
      sl_emitter e3 = {.st = st, .node = nd, .room = em->room};
      if (sl__part_events(st, &e3) < 0) result = -1;
      flush_out(&e3, false, 0);
    }
  }
  return result;
}

/* A source: produce while there is room. */
static int run_source(sl_stage *st, sl_emitter *em) {
  sl_node *n = st->node;
  for (int budget = BUDGET; budget > 0; budget--) {
    if (st->source_eos) { /* ended; waits until every token it made came back, unless a stage
                             holding tokens stopped reading (they come back only at the free) */
      if (atomic_load(&st->outstanding) == 0) return end_inst(st);
      if (all_out_cancelled(n) && (!st->eos_sent || any_out_tainted(n))) return end_inst(st);
      if (!st->eos_sent && n->parallelism == 1) { /* the end of stream goes on meanwhile: stages */
        st->eos_sent = true;                       /* that hold records until then (reduce, a */
        for (int i = 0; i < n->nout; i++) {        /* partial chunk) flush them, and their */
          sl_queue_close(n->out[i]);               /* tokens come back */
          sl__node_wake(n->out[i]->to);
        }
      }
      return SL_TASK_IDLE;
    }
    if (atomic_load(&st->p->stopping) || all_out_cancelled(n)) {
      st->source_eos = true;
      continue;
    }
    if (!out_room(n)) return SL_TASK_IDLE;
    em->room = n->room;
    if (!mem_room(n, &em->room)) return SL_TASK_IDLE;
    int rc = n->kind->produce(st->ctx, em);
    flush_out(em, false, 0);
    if (rc < 0) {
      sl_stage_fail(st, "%s", sl_strerror(rc));
      return end_inst(st);
    }
    if (rc == SL_PARKED) return SL_TASK_IDLE;
    if (rc == SL_DONE) st->source_eos = true;
  }
  return SL_TASK_YIELD;
}

/* Runs batch qb (consumed) through instance st and the stages fused after it; the tail's
 * output goes on with sequence number seq (ordered chains). With resume set, st is the chain's
 * parked instance and its event `token` runs instead of process(), on the parked batch. Returns
 * SL_DONE when a stage wants no more input, SL_PARKED when a stage parked the batch, < 0 when
 * one failed, else 0. */
static int chain_run(sl_stage *st, sl_qbatch *qb, bool have_seq, uint64_t seq, bool resume, uint64_t token) {
  int result = 0;
  for (;;) {
    sl_node *n = st->node;
    sl_stage *r = st->runner;
    sl_emitter em = {.st = st, .node = n, .room = BATCH};
    sl_batch view;
    int rc;
    if (resume) {
      resume = false;
      qb = r->susp_qb;
      view = r->susp_view;
      have_seq = r->susp_have_seq;
      seq = r->susp_seq;
      em.have_seq = have_seq;
      em.seq = seq;
      em.out = r->susp_out;
      em.failed = r->susp_failed;
      r->susp_at = NULL;
      em.in = &view;
      rc = n->kind->event(st->ctx, token, &em);
    } else {
      view = (sl_batch){qb->recs + qb->off, qb->acks ? qb->acks + qb->off : NULL, qb->len - qb->off};
      if (n->fuse_head != n) atomic_fetch_add_explicit(&n->st_in, view.len, memory_order_relaxed);
      em.in = &view;
      em.have_seq = have_seq;
      em.seq = seq;
      rc = n->part_keys ? sl__part_process(st, &view, &em) : n->kind->process(st->ctx, &view, &em);
    }
    em.in = NULL;
    if (rc == SL_PARKED) { /* the batch waits in the runner until the stage's event finishes it */
      r->susp_at = st;
      r->susp_qb = qb;
      r->susp_view = view;
      r->susp_out = em.out;
      r->susp_failed = em.failed;
      r->susp_have_seq = have_seq;
      r->susp_seq = seq;
      return SL_PARKED;
    }
    r->susp_qb = NULL;
    r->susp_out = NULL;
    if (is_sink(n)) atomic_fetch_add_explicit(&n->st_out, view.len - em.failed, memory_order_relaxed);
    sl_queue_batch_free(qb, false); /* what process() left, and the input's acks */
    if (rc < 0) { /* the pipeline fails: the rest of the chain gets nothing more */
      sl_stage_fail(st, "%s", sl_strerror(rc));
      sl_queue_batch_free(em.out, true);
      return rc;
    }
    if (rc == SL_DONE) result = SL_DONE;
    if (!n->fuse_next) {
      flush_out(&em, have_seq, seq);
      return result;
    }
    qb = em.out ? em.out : sl_queue_batch_new(sl__pmem(n->p), 1);
    atomic_fetch_add_explicit(&n->st_out, qb->len, memory_order_relaxed);
    st = &n->fuse_next->insts[st->index];
  }
}

static int process_chain(sl_stage *st, sl_qbatch *qb, bool have_seq, uint64_t seq) {
  return chain_run(st, qb, have_seq, seq, false, 0);
}

/* End of input for a chain: each stage flushes, and what it emits runs through the rest. */
static int flush_chain(sl_stage *st) {
  for (; st; st = st->node->fuse_next ? &st->node->fuse_next->insts[st->index] : NULL) {
    sl_node *n = st->node;
    if (!n->kind->flush) continue;
    sl_emitter em = {.st = st, .node = n, .room = BATCH};
    int rc = n->part_keys ? sl__part_flush(st, &em) : n->kind->flush(st->ctx, &em);
    if (rc == SL_PARKED && n->fuse_head != n) rc = 0; /* fused stages are stateless: nothing waits */
    if (n->fuse_next && em.out) {
      atomic_fetch_add_explicit(&n->st_out, em.out->len, memory_order_relaxed);
      bool ordered = n->fuse_tail->ordered;
      process_chain(&n->fuse_next->insts[st->index], em.out, ordered,
                    ordered ? atomic_fetch_add(&n->fuse_head->seq_counter, 1) : 0);
    } else if (!n->fuse_next) {
      flush_out(&em, false, 0);
    }
    if (rc == SL_PARKED) return rc;
    if (rc < 0) {
      sl_stage_fail(st, "flush failed: %s", sl_strerror(rc));
      return rc;
    }
  }
  return 0;
}

/* A transform or sink (with the stages fused after it): pop, process, push, while there is
 * input and room. */
static int run_transform(sl_stage *st, sl_emitter *em) {
  sl_node *n = st->node, *tail = n->fuse_tail;
  for (int budget = BUDGET; budget > 0; budget--) {
    if (all_out_cancelled(tail)) { /* nobody wants our output: also not what a parked flush */
      taint_up(n);                   /* still waits for (calls in flight are abandoned) */
      if (!st->input_done) cancel_inputs(n);
      return end_inst(st);
    }
    if (st->susp_at) return SL_TASK_IDLE; /* a parked batch first */
    if (st->input_done) {
      if (atomic_load(&st->p->aborted)) return end_inst(st); /* a failed run never flushes */
      if (flush_chain(st) == SL_PARKED) return SL_TASK_IDLE;
      return end_inst(st);
    }
    if (st->input_paused) return SL_TASK_IDLE;
    if (!out_room(tail)) return SL_TASK_IDLE;
    if (!is_sink(tail) && !mem_room_transform(n, tail)) return SL_TASK_IDLE;
    bool all_eof;
    sl_qbatch *qb = pop_input(st, &all_eof);
    if (!qb) {
      if (!all_eof) return SL_TASK_IDLE;
      st->input_done = true;
      continue;
    }
    int rc = process_chain(st, qb, stamps_seq(n), qb->seq);
    if (rc < 0) return end_inst(st);
    if (rc == SL_PARKED) return SL_TASK_IDLE; /* its event will finish the batch */
    if (rc == SL_DONE) {
      cancel_inputs(n);
      st->input_done = true;
    }
    if (atomic_load(&st->p->aborted)) break;
  }
  return SL_TASK_YIELD;
}

int sl__inst_run(sl_task *t, int worker) {
  sl_stage *st = (sl_stage *)t;
  if (st->finished) return SL_TASK_DONE;
  if (atomic_load(&st->p->aborted)) return end_inst(st);
  sl_emitter em = {.st = st, .node = st->node, .room = st->node->room};
  if (deliver_events(st, &em) < 0 && !is_source(st->node)) return end_inst(st);
  deliver_acks(st);
  if (atomic_load(&st->p->aborted)) return end_inst(st);
  return is_source(st->node) ? run_source(st, &em) : run_transform(st, &em);
}

/* The last task ended. After the unlock the waiter may free p: touch nothing of it then. */
static void pipeline_ended(sl_pipeline *p) {
  for (int i = 0; i < p->nnodes; i++)
    if (is_passive(p->nodes[i])) sl__node_wake(p->nodes[i]);
  pthread_mutex_lock(&p->mu);
  p->state = SL_P_ENDED;
  p->t_end = sl_loop_now(p->e->loop);
  if (p->result == SL_OK && atomic_load(&p->aborted)) p->result = SL_EABORTED;
  pthread_cond_broadcast(&p->done_cv);
  pthread_mutex_unlock(&p->mu);
}

void sl__inst_dead(sl_task *t) {
  sl_stage *st = (sl_stage *)t;
  sl_pipeline *p = st->p;
  if (atomic_fetch_sub(&p->alive, 1) == 1) pipeline_ended(p);
}

/* ------------------------------------------------------------------------------------------ */
/* Stop, abort, failure                                                                        */
/* ------------------------------------------------------------------------------------------ */

static void wake_all(sl_pipeline *p) {
  for (int i = 0; i < p->nnodes; i++) sl__node_wake(p->nodes[i]);
}

static void port_close(sl_node *n) {
  sl_pipeline *p = n->insts[0].p;
  pthread_mutex_lock(&n->pmu);
  bool was = n->port_closed;
  n->port_closed = true;
  pthread_cond_broadcast(&n->pcv);
  while (n->pushing > 0) pthread_cond_wait(&n->pcv, &n->pmu); /* records past the check land first */
  pthread_mutex_unlock(&n->pmu);
  if (was) return;
  atomic_store(&n->active, 0);
  node_end(n);
  if (atomic_fetch_sub(&p->alive, 1) == 1) pipeline_ended(p);
}

static void close_ports(sl_pipeline *p) {
  for (int i = 0; i < p->nnodes; i++)
    if (is_passive(p->nodes[i]) && is_source(p->nodes[i])) port_close(p->nodes[i]);
}

static bool running(sl_pipeline *p) {
  pthread_mutex_lock(&p->mu);
  bool r = p->state == SL_P_RUNNING;
  pthread_mutex_unlock(&p->mu);
  return r;
}

void sl_pipeline_stop(sl_pipeline *p) {
  if (!running(p)) return;
  atomic_store(&p->stopping, true);
  close_ports(p);
  wake_all(p);
}

void sl_pipeline_abort(sl_pipeline *p) {
  if (!running(p)) return;
  atomic_store(&p->aborted, true);
  close_ports(p);
  wake_all(p);
}

void sl__pipeline_fail(sl_pipeline *p, const char *stage, const char *fmt, ...) {
  pthread_mutex_lock(&p->mu);
  bool first = p->result == SL_OK; /* the first failure is the one reported and logged */
  if (first) {
    p->result = SL_EFAILED;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err.msg, sizeof p->err.msg, fmt, ap);
    va_end(ap);
    p->err.code = SL_EFAILED;
    snprintf(p->err.stage, sizeof p->err.stage, "%s", stage ? stage : "");
  }
  pthread_mutex_unlock(&p->mu);
  if (first) sl__elog(p->e, SL_LOG_ERROR, stage, "%s", p->err.msg);
  atomic_store(&p->aborted, true);
  close_ports(p);
  wake_all(p);
}

/* ------------------------------------------------------------------------------------------ */
/* Ports and collect sinks                                                                     */
/* ------------------------------------------------------------------------------------------ */

sl_port *sl_pipeline_port(sl_pipeline *p, const char *name) {
  sl_node *n = sl__pipeline_node(p, name);
  return n && is_passive(n) && is_source(n) ? (sl_port *)n : NULL;
}

sl_collect *sl_pipeline_collect(sl_pipeline *p, const char *name) {
  sl_node *n = sl__pipeline_node(p, name);
  return n && is_passive(n) && is_sink(n) ? (sl_collect *)n : NULL;
}

static void deadline_ts(struct timespec *ts, int64_t timeout_ns) {
  clock_gettime(CLOCK_REALTIME, ts);
  int64_t ns = ts->tv_nsec + timeout_ns % 1000000000;
  ts->tv_sec += timeout_ns / 1000000000 + ns / 1000000000;
  ts->tv_nsec = ns % 1000000000;
}

int sl_port_push(sl_port *port, sl_value *rec, int flags) {
  sl_node *n = (sl_node *)port;
  if (!n->insts) return SL_ESTATE;
  sl_pipeline *p = n->insts[0].p;
  if (!running(p) && p->state == SL_P_BUILDING) return SL_ESTATE;
  pthread_mutex_lock(&n->pmu);
  for (;;) {
    if (n->port_closed || atomic_load(&p->stopping) || atomic_load(&p->aborted) || all_out_cancelled(n)) {
      pthread_mutex_unlock(&n->pmu);
      return SL_ECLOSED;
    }
    uint32_t room = 1;
    if (out_room(n) && mem_room(n, &room)) break;
    if (flags & SL_NOWAIT) {
      pthread_mutex_unlock(&n->pmu);
      return SL_EAGAIN;
    }
    pthread_cond_wait(&n->pcv, &n->pmu);
  }
  n->pushing++; /* port_close waits for this push to be delivered before it ends the stream */
  pthread_mutex_unlock(&n->pmu);
  sl_qbatch *b = sl_queue_batch_new(sl__pmem(p), 1);
  b->recs[0] = *rec;
  b->len = 1;
  *rec = sl_nil();
  atomic_fetch_add_explicit(&n->st_in, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&n->st_out, 1, memory_order_relaxed);
  deliver(n, b);
  pthread_mutex_lock(&n->pmu);
  if (--n->pushing == 0 && n->port_closed) pthread_cond_broadcast(&n->pcv);
  pthread_mutex_unlock(&n->pmu);
  return SL_OK;
}

void sl_port_close(sl_port *port) {
  sl_node *n = (sl_node *)port;
  if (n->insts && running(n->insts[0].p)) port_close(n);
}

int sl_collect_pull(sl_collect *c, sl_value *out, int64_t timeout_ns) {
  sl_node *n = (sl_node *)c;
  if (!n->insts) return SL_ESTATE;
  struct timespec until;
  if (timeout_ns > 0) deadline_ts(&until, timeout_ns);
  pthread_mutex_lock(&n->pmu);
  for (;;) {
    sl_qbatch *b = n->cur;
    if (b && b->off < b->len) {
      *out = b->recs[b->off];
      b->recs[b->off] = sl_nil();
      if (b->acks) {
        sl_ack_release(b->acks[b->off], false);
        b->acks[b->off] = NULL;
      }
      b->off++;
      atomic_fetch_add_explicit(&n->st_out, 1, memory_order_relaxed);
      pthread_mutex_unlock(&n->pmu);
      return SL_OK;
    }
    if (b) {
      sl_queue_batch_free(b, false);
      n->cur = NULL;
    }
    bool all_eof;
    n->cur = pop_input(&n->insts[0], &all_eof);
    if (n->cur) continue;
    if (all_eof) {
      pthread_mutex_unlock(&n->pmu);
      return SL_EOF;
    }
    if (timeout_ns == 0) {
      pthread_mutex_unlock(&n->pmu);
      return SL_EAGAIN;
    }
    if (timeout_ns < 0) {
      pthread_cond_wait(&n->pcv, &n->pmu);
    } else if (pthread_cond_timedwait(&n->pcv, &n->pmu, &until) != 0) {
      timeout_ns = 0; /* one last look, then EAGAIN */
    }
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Waiting and stats                                                                           */
/* ------------------------------------------------------------------------------------------ */

int sl_pipeline_wait(sl_pipeline *p, int64_t timeout_ns, sl_error_t *err) {
  struct timespec until;
  if (timeout_ns > 0) deadline_ts(&until, timeout_ns);
  pthread_mutex_lock(&p->mu);
  if (p->state == SL_P_BUILDING) {
    pthread_mutex_unlock(&p->mu);
    return sl_error_set(err, SL_ESTATE, NULL, "pipeline '%s' was not started", p->name);
  }
  while (p->state != SL_P_ENDED) {
    if (timeout_ns == 0) break;
    if (timeout_ns < 0) {
      pthread_cond_wait(&p->done_cv, &p->mu);
    } else if (pthread_cond_timedwait(&p->done_cv, &p->mu, &until) != 0) {
      break;
    }
  }
  int rc = p->state == SL_P_ENDED ? p->result : SL_ETIMEDOUT;
  if (rc == SL_EFAILED && err) *err = p->err;
  else if (rc == SL_EABORTED) sl_error_set(err, rc, NULL, "pipeline '%s' was aborted", p->name);
  else if (rc == SL_ETIMEDOUT) sl_error_set(err, rc, NULL, "pipeline '%s' still running", p->name);
  pthread_mutex_unlock(&p->mu);
  return rc;
}

bool sl_pipeline_done(const sl_pipeline *p) {
  pthread_mutex_lock((pthread_mutex_t *)&p->mu);
  bool d = p->state == SL_P_ENDED;
  pthread_mutex_unlock((pthread_mutex_t *)&p->mu);
  return d;
}

int sl_pipeline_run(sl_pipeline *p, sl_error_t *err) {
  int rc = sl_pipeline_start(p, err);
  return rc ? rc : sl_pipeline_wait(p, -1, err);
}

size_t sl_pipeline_stage_count(const sl_pipeline *p) { return (size_t)(p->nnodes - p->nhidden); }

/* Adds the fill of n's input queues to o (and their capacities when cap is set). */
static void add_queues(sl_stage_stats *o, const sl_node *n, bool cap) {
  for (int k = 0; k < n->nin; k++) {
    sl_edge *e = n->in[k];
    o->queue_len += atomic_load_explicit(&e->len, memory_order_relaxed);
    if (cap) o->queue_cap += e->cap;
    pthread_mutex_lock(&e->mu);
    o->queue_hwm += e->hwm;
    pthread_mutex_unlock(&e->mu);
  }
}

int sl_pipeline_stats(const sl_pipeline *p, size_t i, sl_stage_stats *o) {
  if (i >= (size_t)(p->nnodes - p->nhidden)) return SL_EINVAL;
  const sl_node *n = p->nodes[i];
  memset(o, 0, sizeof *o);
  o->name = n->name;
  o->kind = n->kind->name;
  o->in = atomic_load(&n->st_in);
  o->out = atomic_load(&n->st_out);
  o->errors = atomic_load(&n->st_errors);
  o->dropped = atomic_load(&n->st_dropped);
  o->retries = atomic_load(&n->st_retries);
  o->dead_letter = atomic_load(&n->st_dead);
  const sl_node *front = n->part_keys ? n->part_keys : n->encoder;
  if (front) { /* its key function's or its encoder's failures are its own */
    o->errors += atomic_load(&front->st_errors);
    o->dead_letter += atomic_load(&front->st_dead);
  }
  if (n->encoder) o->dropped += atomic_load(&n->encoder->st_dropped); /* its input queue is the encoder's */
  if (n->splitter) { /* its records are the splitter's */
    o->out = atomic_load(&n->splitter->st_out);
    o->errors += atomic_load(&n->splitter->st_errors);
    o->dead_letter += atomic_load(&n->splitter->st_dead);
  }
  add_queues(o, n, !n->encoder);
  if (n->encoder) add_queues(o, n->encoder, true); /* records waiting to be encoded */
  o->parallelism = n->parallelism;
  o->done = atomic_load(&n->done);
  int cb = atomic_load(&n->breaker_state);
  if (cb) o->breaker = sl_breaker_state_name(cb - 1);
  const sl_value *cbo = n->opts.type == SL_TMAP ? sl_map_getc(&n->opts, "circuit_breaker") : NULL;
  if (!cb && cbo && cbo->type != SL_TNIL) o->breaker = "closed"; /* made on its first call */
  o->breaker_changes = atomic_load(&n->st_breaker_changes);
  return 0;
}

void sl_pipeline_memory(const sl_pipeline *p, uint64_t *used, uint64_t *peak) {
  if (used) *used = atomic_load((atomic_uint_least64_t *)&p->mem_used);
  if (peak) *peak = atomic_load((atomic_uint_least64_t *)&p->mem_peak);
}

double sl_pipeline_elapsed(const sl_pipeline *p) {
  pthread_mutex_lock((pthread_mutex_t *)&p->mu);
  int64_t end = p->state == SL_P_ENDED ? p->t_end : sl_loop_now(p->e->loop);
  int64_t start = p->t_start;
  int st = p->state;
  pthread_mutex_unlock((pthread_mutex_t *)&p->mu);
  return st == SL_P_BUILDING ? 0.0 : (double)(end - start) / 1e9;
}

static int json_str(sl_buf *b, const char *s) {
  sl_value v = sl_cstr(s);
  int rc = sl_value_to_json(&v, b);
  sl_value_free(v);
  return rc;
}

int sl_pipeline_stats_json(const sl_pipeline *p, sl_buf *b) {
  int rc = sl_buf_printf(b, "{\"elapsed_s\": %.6f, \"stages\": {", sl_pipeline_elapsed(p));
  for (int i = 0; i < p->nnodes - p->nhidden && rc == 0; i++) {
    sl_stage_stats s;
    sl_pipeline_stats(p, (size_t)i, &s);
    rc = sl_buf_printf(b, "%s", i ? ", " : "");
    if (rc == 0) rc = json_str(b, s.name);
    if (rc == 0)
      rc = sl_buf_printf(b,
                         ": {\"kind\": \"%s\", \"in\": %llu, \"out\": %llu, \"errors\": %llu, "
                         "\"dropped\": %llu, \"retries\": %llu, \"dead_letter\": %llu, "
                         "\"queue_hwm\": %llu",
                         s.kind, (unsigned long long)s.in, (unsigned long long)s.out,
                         (unsigned long long)s.errors, (unsigned long long)s.dropped,
                         (unsigned long long)s.retries, (unsigned long long)s.dead_letter,
                         (unsigned long long)s.queue_hwm);
    if (rc == 0 && s.breaker)
      rc = sl_buf_printf(b, ", \"breaker\": \"%s\", \"breaker_changes\": %llu", s.breaker,
                         (unsigned long long)s.breaker_changes);
    if (rc == 0) rc = sl_buf_printf(b, "}");
  }
  return rc ? rc : sl_buf_printf(b, "}}");
}
