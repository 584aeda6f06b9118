/*
 * partition.c — partition_by: a stateful stage run as one instance of its kind per key
 * (DESIGN section 2), for every stateful transform kind without code of its own.
 *
 * Routing. At start (graph.c, add_partitions) a stage X with `partition_by` gets a hidden node
 * of kind sl__partition_kind in front of it, with X's name, its inputs and its on_error. That
 * node is stateless (it runs on every worker and keeps its input's order, like a map) and
 * computes each record's key with the partition_by function; it emits [key, record] on output
 * 1 + hash(key) % P, where P is X's parallelism, and output k + 1 is an edge that only
 * instance k of X pops (sl_edge.inst). So all records of a key reach one task instance of X,
 * in their input order, and different keys run on different workers.
 *
 * Keys. Each task instance of X keeps a hash table of the keys it has seen (sl_parts). Every
 * key has a full sl_stage of its own (sl_part.st: node X, the task instance as runner, its own
 * context with X's options, its own mailbox), so the kind's code runs unchanged: its timers
 * reach the key's context, sl_stage_fail and on_error name X, Lua runs in the task's state.
 * process() gets, per input batch, one sub-batch per key (records in order, with their acks);
 * what they emit goes into the task's one output batch. X's output is unordered across keys
 * (per-key order holds). A key whose process returned SL_DONE (take) lets its later records go;
 * the input is never cancelled for one key. At end of input every key flushes, in first-seen
 * order; a flush that parks (throttle with records waiting) is called again after events, and
 * a key that finished flushing is not flushed again.
 *
 * Limits. A key's function must not wait (a parked batch cannot be split between keys): such a
 * stage fails with a message. Keys are strings, numbers or booleans. A key's state lives until
 * the end of the stream (no expiry): a stream of unbounded distinct keys grows without bound.
 * The task instance's own context (init run on it validates the options at start) gets no records.
 *
 * Threads: everything here runs on the task instance's worker (one at a time), but mailbox_cb
 * (pipeline.c), which appends to a key's mailbox under its mbox_mu and sets part_events.
 */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "lock.h"
#include "lua.h"
#include "pipeline.h"

typedef struct sl_part sl_part;
struct sl_part {
  sl_stage st;     /* the key's instance (mailbox_cb gets &st) */
  sl_value key;    /* owned */
  uint64_t hash;
  sl_part *hnext;  /* hash chain */
  sl_part *next;   /* every key, first seen first */
  bool done;       /* process returned SL_DONE: later records are let go */
  bool flushed;    /* flush returned 0 */
  uint32_t n, off; /* its records in the current batch: scratch[off, off + n) */
};

typedef struct sl_parts {
  sl_part **buckets;
  size_t nbuckets, count;
  sl_part *first, *last;
  sl_part **touched;  /* keys of the current batch, first seen first */
  sl_part **of;       /* key of input record i */
  sl_value *recs;     /* the batch's records grouped by key */
  sl_ack **acks;      /* and their acks (borrowed from the input batch) */
  size_t cap;
} sl_parts;

/* FNV-1a over a scalar key's type and bytes. */
static uint64_t key_hash(const sl_value *k) {
  uint64_t h = 1469598103934665603ull ^ (uint64_t)sl_typeof(k);
  const unsigned char *b;
  size_t n;
  int64_t i;
  double d;
  switch (sl_typeof(k)) {
  case SL_TSTR:
    b = (const unsigned char *)sl_str_data(k);
    n = sl_str_len(k);
    break;
  case SL_TINT:
    i = k->u.i;
    b = (const unsigned char *)&i;
    n = sizeof i;
    break;
  case SL_TDOUBLE:
    d = k->u.d;
    b = (const unsigned char *)&d;
    n = sizeof d;
    break;
  default:
    b = (const unsigned char *)&k->u.b;
    n = sizeof k->u.b;
    break;
  }
  for (size_t j = 0; j < n; j++) h = (h ^ b[j]) * 1099511628211ull;
  return h ^ (h >> 29);
}

/* ------------------------------------------------------------------------------------------ */
/* The hidden key node                                                                         */
/* ------------------------------------------------------------------------------------------ */

typedef struct keys {
  char *key;      /* option: the partition_by function */
  int64_t shards; /* option: X's parallelism */
  sl_stage *st;
  sl_lua *lua;    /* the task's state, once loaded */
  int ref;
} keys;

static const sl_option key_options[] = {
    {SL_OPT_STRING, "key", NULL, offsetof(keys, key), "Lua function or expression of r: the record's key", NULL, SL_OPT_REQUIRED | SL_OPT_LUA},
    {SL_OPT_INT, "shards", "1", offsetof(keys, shards), "instances of the partitioned stage", NULL, 0},
    SL_OPTIONS_END,
};

static int keys_init(void *c, sl_stage *st, sl_error_t *err) {
  keys *k = c;
  k->st = st;
  if (k->shards < 1 || k->shards > 1024) return sl_error_set(err, SL_ECONFIG, NULL, "bad partition count %lld", (long long)k->shards);
  return 0;
}

static int keys_process(void *c, sl_batch *in, sl_emitter *em) {
  keys *k = c;
  if (!k->lua) {
    sl_error_t err;
    sl_error_init(&err);
    sl_lua *l = sl_lua_get(k->st, &err);
    if (!l || sl_lua_fn(l, k->key, sl_lua_where(k->st), sl_stage_name(k->st), &k->ref, &err) != 0)
      return sl_stage_fail(k->st, "%s", err.msg);
    k->lua = l;
  }
  for (uint32_t i = 0; i < in->len; i++) {
    sl_value key;
    char *msg = NULL;
    if (sl_lua_apply(k->lua, k->st, k->ref, &in->recs[i], &key, &msg) != 0) {
      sl_emit_error(em, i, "partition_by: %s", msg);
      sl__free(msg);
      continue;
    }
    int t = sl_typeof(&key);
    if (t != SL_TSTR && t != SL_TINT && t != SL_TBOOL && !(t == SL_TDOUBLE && key.u.d == key.u.d)) {
      sl_emit_error(em, i, "partition_by: the key must be a string, a number or a boolean (got %s)", sl_type_name(t));
      sl_value_free(key);
      continue;
    }
    uint32_t out = 1 + (uint32_t)(key_hash(&key) % (uint64_t)k->shards);
    sl_value w = sl_array(2);
    sl_array_push(&w, key);
    sl_array_push(&w, sl_batch_take(in, i));
    int rc = sl_emit_to(em, out, i, w);
    if (rc) return rc;
  }
  return 0;
}

const sl_stage_kind sl__partition_kind = {
    .abi = SL_STAGE_ABI,
    .name = "partition_by",
    .doc = "computes the partition_by key of each record for the stage after it (added by the runtime)",
    .options = key_options,
    .ctx_size = sizeof(keys),
    .flags = SL_STAGE_STATELESS,
    .init = keys_init,
    .process = keys_process,
};

/* ------------------------------------------------------------------------------------------ */
/* The keys' instances of a partitioned stage                                                  */
/* ------------------------------------------------------------------------------------------ */

static sl_parts *parts_of(sl_stage *st) {
  if (!st->parts) {
    st->parts = sl__xcalloc(1, sizeof *st->parts);
    st->parts->nbuckets = 64;
    st->parts->buckets = sl__xcalloc(64, sizeof *st->parts->buckets);
  }
  return st->parts;
}

static void grow_buckets(sl_parts *t) {
  size_t nb = t->nbuckets * 2;
  sl_part **b = sl__xcalloc(nb, sizeof *b);
  for (sl_part *k = t->first; k; k = k->next) {
    k->hnext = b[k->hash & (nb - 1)];
    b[k->hash & (nb - 1)] = k;
  }
  sl__free(t->buckets);
  t->buckets = b;
  t->nbuckets = nb;
}

/* A new key's instance: X's options in a context of its own, then the kind's init. NULL when
 * init failed (the pipeline fails). */
static sl_part *part_new(sl_stage *st, sl_parts *t, const sl_value *key, uint64_t h) {
  sl_node *n = st->node;
  const sl_stage_kind *kind = n->kind;
  sl_part *k = sl__xcalloc(1, sizeof *k);
  k->key = sl_value_ref(key);
  k->hash = h;
  sl_stage *s = &k->st;
  sl_task_init(&s->task, sl__inst_run, sl__inst_dead); /* never scheduled: its runner runs it */
  s->node = n;
  s->p = st->p;
  s->index = st->index;
  s->runner = st;
  s->is_part = true;
  sl_lock_init(&s->mbox_mu);
  s->ctx = sl__mem_calloc(sl__pmem(st->p), kind->ctx_size ? kind->ctx_size : 1);
  if (t->nbuckets < t->count) grow_buckets(t);
  k->hnext = t->buckets[h & (t->nbuckets - 1)];
  t->buckets[h & (t->nbuckets - 1)] = k;
  if (t->last) t->last->next = k;
  else t->first = k;
  t->last = k;
  t->count++;
  sl_error_t err;
  sl_error_init(&err);
  int rc = sl__options_apply(kind->options, s->ctx, &n->opts, n->fn_ptrs, n->where, n->name, kind->name, &err);
  if (rc == 0) {
    s->inited = true;
    if (kind->init) rc = kind->init(s->ctx, s, &err);
  }
  if (rc) {
    sl_stage_fail(st, "a new key's instance: %s", err.msg[0] ? err.msg : sl_strerror(rc));
    return NULL;
  }
  return k;
}

static sl_part *part_find(sl_stage *st, sl_parts *t, const sl_value *key) {
  uint64_t h = key_hash(key);
  for (sl_part *k = t->buckets[h & (t->nbuckets - 1)]; k; k = k->hnext)
    if (k->hash == h && sl_value_equal(&k->key, key)) return k;
  return part_new(st, t, key, h);
}

/* Runs the kind's callback for key k with an emitter of its own that fills em's batch. */
static void sub_emitter(sl_emitter *e2, const sl_emitter *em, sl_part *k, const sl_batch *in) {
  *e2 = *em;
  e2->st = &k->st;
  e2->in = in;
  e2->have_seq = false;
}

static void sub_done(sl_emitter *em, const sl_emitter *e2) {
  em->out = e2->out;
  em->failed = e2->failed;
}

int sl__part_process(sl_stage *st, sl_batch *in, sl_emitter *em) {
  sl_parts *t = parts_of(st);
  const sl_stage_kind *kind = st->node->kind;
  if (in->len > t->cap) {
    t->cap = in->len;
    t->touched = sl__xrealloc(t->touched, t->cap * sizeof *t->touched);
    t->of = sl__xrealloc(t->of, t->cap * sizeof *t->of);
    t->recs = sl__xrealloc(t->recs, t->cap * sizeof *t->recs);
    t->acks = sl__xrealloc(t->acks, t->cap * sizeof *t->acks);
  }
  size_t ntouched = 0;
  for (uint32_t i = 0; i < in->len; i++) { /* which key, and how many records each */
    sl_part *k = part_find(st, t, sl_array_get(&in->recs[i], 0));
    if (!k) return SL_EFAILED;
    t->of[i] = k;
    if (k->n++ == 0) t->touched[ntouched++] = k;
  }
  uint32_t off = 0;
  for (size_t j = 0; j < ntouched; j++) {
    t->touched[j]->off = off;
    off += t->touched[j]->n;
    t->touched[j]->n = 0;
  }
  for (uint32_t i = 0; i < in->len; i++) { /* the records, grouped by key, in order */
    sl_part *k = t->of[i];
    uint32_t at = k->off + k->n++;
    t->recs[at] = sl_value_ref(sl_array_get(&in->recs[i], 1));
    t->acks[at] = in->acks ? in->acks[i] : NULL;
    sl_value_free(sl_batch_take(in, i));
  }
  int result = 0;
  for (size_t j = 0; j < ntouched; j++) {
    sl_part *k = t->touched[j];
    sl_batch sub = {t->recs + k->off, in->acks ? t->acks + k->off : NULL, k->n};
    if (!k->done && result >= 0) {
      sl_emitter e2;
      sub_emitter(&e2, em, k, &sub);
      int rc = kind->process(k->st.ctx, &sub, &e2);
      sub_done(em, &e2);
      if (rc == SL_DONE) k->done = true;
      else if (rc == SL_PARKED)
        result = sl_stage_fail(st, "partition_by: a %s stage cannot wait (sluice.sleep) while it is partitioned", kind->name);
      else if (rc < 0) result = rc;
    }
    for (uint32_t i = 0; i < sub.len; i++) sl_value_free(sub.recs[i]); /* what it did not take */
    k->n = 0;
  }
  return result;
}

int sl__part_flush(sl_stage *st, sl_emitter *em) {
  if (!st->parts) return 0;
  int result = 0;
  for (sl_part *k = st->parts->first; k; k = k->next) {
    if (k->flushed) continue;
    sl_emitter e2;
    sub_emitter(&e2, em, k, NULL);
    int rc = st->node->kind->flush(k->st.ctx, &e2);
    sub_done(em, &e2);
    if (rc < 0) return rc;
    if (rc == SL_PARKED) result = SL_PARKED;
    else k->flushed = true;
  }
  return result;
}

int sl__part_events(sl_stage *st, sl_emitter *em) {
  if (!atomic_exchange(&st->part_events, false)) return 0;
  int result = 0;
  for (sl_part *k = st->parts ? st->parts->first : NULL; k; k = k->next) {
    uint64_t small[16];
    size_t n;
    uint64_t *tokens = sl__take_events(&k->st, small, &n);
    for (size_t i = 0; i < n && result >= 0; i++) {
      sl_emitter e2;
      sub_emitter(&e2, em, k, NULL);
      int rc = st->node->kind->event(k->st.ctx, tokens[i], &e2);
      sub_done(em, &e2);
      if (rc < 0) result = sl_stage_fail(&k->st, "event handler failed: %s", sl_strerror(rc));
    }
    if (tokens != small) sl__free(tokens);
  }
  return result;
}

const sl_value *sl_stage_key(const sl_stage *st) { return st->is_part ? &((const sl_part *)st)->key : NULL; }

void sl__part_cancel(sl_stage *st) {
  for (sl_part *k = st->parts ? st->parts->first : NULL; k; k = k->next) sl_loop_cancel_owner(st->p->e->loop, &k->st);
}

void sl__part_destroy(sl_stage *st) {
  for (sl_part *k = st->parts ? st->parts->first : NULL; k; k = k->next) {
    if (k->st.inited && st->node->kind->destroy) st->node->kind->destroy(k->st.ctx);
    k->st.inited = false;
  }
}

void sl__part_free(sl_stage *st) {
  sl_parts *t = st->parts;
  if (!t) return;
  const sl_stage_kind *kind = st->node->kind;
  sl_part *k = t->first;
  while (k) {
    sl_part *next = k->next;
    sl__options_free(kind->options, k->st.ctx);
    sl__mem_free(sl__pmem(st->p), k->st.ctx, kind->ctx_size ? kind->ctx_size : 1);
    sl__mem_free(sl__pmem(st->p), k->st.events, k->st.cap_events * sizeof *k->st.events);
    pthread_mutex_destroy(&k->st.mbox_mu);
    sl_value_free(k->key);
    sl__free(k);
    k = next;
  }
  sl__free(t->buckets);
  sl__free(t->touched);
  sl__free(t->of);
  sl__free(t->recs);
  sl__free(t->acks);
  sl__free(t);
  st->parts = NULL;
}
