/*
 * pipeline.h — the engine, pipelines, graph nodes and stage instances (internal).
 *
 * Model. A pipeline is a graph of nodes (one per stage). A node has input edges (sl_edge
 * queues) and output edges; it runs as `parallelism` instances, each a task on the engine's
 * scheduler. Sources produce into their output edges; transforms pop a batch from an input
 * edge, call the kind's process(), and push the emitted batch to every output edge (broadcast:
 * each edge gets references to the same records). Passive nodes (port, collect) have no task:
 * the embedding program pushes into a port's edges and pulls from a collect's edges.
 *
 * Order. A node with several instances stamps each input batch with a sequence number when it
 * is popped, and its output goes through the node's reorder buffer, which releases batches in
 * sequence order (unless the kind is unordered). Every popped sequence number is released, even
 * when it produced no records.
 *
 * Fusion. Consecutive stateless stages joined one to one, with the same parallelism and no
 * `queue` of their own, run as one chain: instance i of the first stage's task hands each output
 * batch straight to instance i of the next stage, with no queue in between, so a batch stays in
 * one core's cache through the chain and parallel instances split the work by batch. Stats,
 * errors and on_error stay per stage. The head pops and stamps sequence numbers; the tail owns
 * the output edges and the reorder buffer.
 *
 * Parking. process() may return SL_PARKED: the batch is not finished (a Lua call yielded). The
 * runner keeps the input batch, the stage's partial output and the batch's sequence number,
 * takes no more input, and hands the stage's events (timers, fds) to it with the same emitter and
 * input view. When the event callback returns 0 the batch is finished: its output goes on
 * through the rest of the chain with the kept sequence number, so order holds. A stage in the
 * middle of a fused chain may park too; the stages after it wait with it.
 *
 * End of stream and cancellation. A producer that ends closes its output edges; a consumer whose
 * inputs are all closed and empty flushes, closes its outputs and ends. A consumer that wants no
 * more input (take) cancels its input edges, and a producer whose outputs are all cancelled ends
 * and cancels its own inputs, so cancellation travels upstream.
 *
 * Threads. An instance runs on one worker at a time (the task state machine guarantees it), so
 * stage code is single-threaded per instance. Events (timers, fds) reach an instance through
 * its mailbox (mutex-guarded) and completed source acks through a lock-free stack, each followed
 * by a wake.
 *
 * Lock order: node->out_mu -> collect pmu -> port pmu -> edge->mu -> scheduler locks. An edge
 * mutex is held while a drop policy releases acks, which may wake a source (scheduler locks).
 * The event loop's dispatch lock comes before instance mailboxes and the scheduler.
 */
#ifndef SL_PIPELINE_H
#define SL_PIPELINE_H

#include <pthread.h>
#include <stdatomic.h>

#include "ack.h"
#include "loop.h"
#include "queue.h"
#include "sched.h"
#include "sluice.h"

enum { SL_ON_ERROR_DEFAULT = -1, SL_ON_ERROR_SKIP = 0, SL_ON_ERROR_FAIL, SL_ON_ERROR_DEAD_LETTER };

struct sl_engine {
  sl_engine_config cfg;
  sl__mem mem;                 /* cfg.alloc: batches, acks, queues, instances come from it */
  sl_sched *sched;
  sl_loop *loop;
  const sl_stage_kind **kinds; /* built-ins first, then registered */
  size_t nkinds, nbuiltin;
  pthread_mutex_t mu;          /* kinds, pipelines count */
  int pipelines;               /* live pipelines (every one must be freed before the engine) */
  struct sl_httpc *httpc;      /* the HTTP client (vm/httpc.h), made on first use under mu */
  struct sl_bio *bio;          /* the blocking-I/O thread (vm/bio.h), made on first use under mu */
};

typedef struct sl_node sl_node;
typedef struct sl_pipeline sl_pipeline;

/* One instance of a stage: a task with its context. This is the sl_stage of sluice.h. */
struct sl_stage {
  sl_task task;            /* first: the scheduler's handle */
  sl_node *node;
  sl_pipeline *p;
  int index;               /* instance number */
  void *ctx;               /* the kind's context (options stored in it) */
  bool inited;             /* init ran (maybe failed): destroy must run */
  bool finished;           /* this instance ended its part */
  bool input_done;         /* stopped taking input (eof, SL_DONE, or all outputs cancelled) */
  bool source_eos;         /* source: produce returned SL_DONE (waits for acks before ending) */
  bool eos_sent;           /* source: its outputs were closed while it waits for acks */
  bool input_paused;       /* sl_stage_pause_input */
  sl_stage *runner;        /* the instance whose task runs this one (itself unless fused) */
  struct sl_lua *lua;      /* the Lua state of this task (runner instances only; vm/lua.h) */
  /* A batch parked by process() returning SL_PARKED (runner instances only; see "Parking") */
  sl_stage *susp_at;       /* the chain's instance that parked, or NULL */
  sl_qbatch *susp_qb;      /* its input batch, kept alive */
  sl_batch susp_view;      /* the view process() was given */
  sl_qbatch *susp_out;     /* what it emitted so far */
  uint64_t susp_failed;    /* records it failed so far */
  bool susp_have_seq;      /* the batch's sequence number (ordered chains) */
  uint64_t susp_seq;
  int rr;                  /* round-robin position over input edges */
  pthread_mutex_t mbox_mu; /* mailbox: fired events */
  uint64_t *events;
  size_t nevents, cap_events;
  _Atomic(sl_ack *) acked; /* completed source tokens (lock-free stack) */
  atomic_long outstanding; /* tokens created and not yet seen back */
  /* partition_by (vm/partition.c): */
  struct sl_parts *parts;  /* a partitioned stage's task instance: its keys' instances, or NULL */
  bool is_part;            /* one key's instance inside such a task (runner: the task instance) */
  atomic_bool part_events; /* runner: a key's instance has events in its mailbox */
};

struct sl_node {
  sl_pipeline *p;          /* the pipeline it belongs to */
  char *name;
  const sl_stage_kind *kind;
  int index;               /* position in the pipeline */
  sl_value opts;           /* the kind's options as given (for graph/docs), owned */
  char *where;             /* "file:line:col: " of its definition, or "" */
  sl_value at;             /* SL__AT positions of its keys (options.c), or nil */
  char **input_names;      /* as given; NULL entries never */
  int ninput_names;
  bool default_input;      /* input not given: the previous stage */
  sl_edge **in, **out;     /* edges */
  int nin, nout;
  int parallelism;         /* instances */
  int on_error;            /* SL_ON_ERROR_* */
  uint64_t queue_cap;      /* capacity of its input edges */
  int on_full;
  bool ordered;            /* output goes through the reorder buffer */
  uint32_t room;           /* records a source emits per batch: at most its smallest queue */
  bool queue_set;          /* `queue` was given: its input is a real queue (never fused) */
  sl_node *fuse_next;      /* the stage fused after this one (runs in this stage's task) */
  sl_node *fuse_head;      /* first stage of its fused chain (itself when not fused) */
  sl_node *fuse_tail;      /* last stage of its fused chain: its output edges are the chain's */
  sl_stage *insts;         /* parallelism instances */
  void **fn_ptrs;          /* SL_OPT_PTR values given through the C API (key order of options) */
  char **outputs;          /* named outputs (kind->outputs): output k + 1 is outputs[k]; 0 is default */
  int noutputs;
  atomic_uint_least64_t mem_avg; /* source: bytes per record of its last batch (memory_limit) */
  /* reorder buffer */
  pthread_mutex_t out_mu;
  uint64_t next_seq;       /* next sequence number to release */
  sl_qbatch *pending;      /* out-of-order batches, sorted by seq */
  atomic_uint_least64_t pending_len; /* records in pending (count against output room) */
  atomic_uint_least64_t seq_counter; /* stamps input batches */
  atomic_int active;       /* instances not finished */
  atomic_bool done;        /* node finished (outputs closed) */
  /* passive nodes: the embedding thread waits here */
  pthread_mutex_t pmu;
  pthread_cond_t pcv;
  bool port_closed;
  int pushing;             /* port: pushes past the closed check, not yet delivered */
  sl_qbatch *cur;          /* collect: batch being pulled from */
  /* stats */
  atomic_uint_least64_t st_in, st_out, st_errors, st_dropped, st_retries, st_dead;
  char *part_by;           /* partition_by: the key function's text, or NULL */
  char *part_where;        /* "file:line:col: " of its value */
  sl_node *part_keys;      /* partitioned: the hidden node computing its keys (vm/partition.c) */
  sl_node *encoder;        /* a sink encoding ahead: the hidden encode node in front (graph.c add_encoders) */
  sl_node *splitter;       /* a source splitting behind: the hidden node splitting its runs of lines (graph.c add_splitters) */
  bool hidden;             /* added by the runtime at start (a key node): not in stats or info */
  struct sl_breaker *breaker; /* the stage's circuit breaker (vm/policy.c), or NULL */
  atomic_int breaker_state;   /* SL_CB_* + 1 while it has one, else 0 */
  atomic_uint_least64_t st_breaker_changes;
};

enum { SL_P_BUILDING = 0, SL_P_RUNNING, SL_P_ENDED };

struct sl_pipeline {
  sl_engine *e;
  char *name;
  sl_node **nodes;         /* in the order they were added; hidden nodes last (from start on) */
  int nnodes, capnodes;
  int nhidden;             /* nodes the runtime added at start (partition_by key nodes) */
  int on_error;            /* pipeline default */
  sl_value settings;       /* sl_pipeline_set: a map of what was set, owned */
  struct sl_lua_prog *lua; /* the pipeline's Lua code and limits (vm/lua.h), or NULL */
  char *dead_letter_name;
  sl_node *dead_letter;    /* resolved at start */
  sl_edge *dl_edge;        /* into dead_letter */
  int state;               /* SL_P_* (guarded by mu) */
  pthread_mutex_t mu;      /* state, result, done_cv, luas */
  pthread_cond_t done_cv;
  struct sl_lua *luas;     /* every Lua state of the pipeline (vm/lua.c), for sl_pipeline_lua_memory */
  atomic_int alive;        /* tasks and open ports not yet ended */
  atomic_int producers_alive; /* non-dead-letter nodes running (closes the dead-letter edge) */
  atomic_bool started;     /* tasks may run (set by start after `alive` is counted) */
  atomic_bool stopping;    /* drain requested */
  atomic_bool aborted;     /* abort requested or failure */
  int result;              /* SL_OK, SL_EFAILED, SL_EABORTED */
  sl_error_t err;          /* failure details (first failure wins) */
  int64_t t_start, t_end;  /* engine clock */
  /* memory_limit: bytes of records queued on edges (sl_value_size estimates). Sources (and
   * ports) do not produce while mem_used >= mem_limit; a pop that finds mem_blocked set and the
   * use under the limit wakes them. */
  uint64_t mem_limit;      /* 0: no limit (nothing is counted) */
  atomic_uint_least64_t mem_used, mem_peak;
  atomic_bool mem_blocked; /* a source found no memory room */
};

/* Where a callback emits (sluice.h's opaque sl_emitter). */
struct sl_emitter {
  sl_stage *st;
  sl_node *node;
  struct sl_qbatch *out; /* batch being filled, or NULL */
  const sl_batch *in;  /* input of the current process() call, or NULL */
  uint32_t room;       /* what a source should emit per call */
  uint64_t failed;     /* records failed during this call */
  bool have_seq;       /* the input batch's sequence number (ordered chains), for sl_emitter_seq */
  uint64_t seq;
};

/* The allocator of a pipeline's engine. */
static inline const sl__mem *sl__pmem(const sl_pipeline *p) { return &p->e->mem; }

/* Internal entry points shared by the vm files. */
sl_node *sl__pipeline_node(const sl_pipeline *p, const char *name);
/* Records emitted so far into the current output batch: the index the next sl_emit gets in it
 * (a fused stage has one output batch per input batch). */
uint32_t sl__emitter_len(const sl_emitter *em);
/* Fails the pipeline (first failure wins) and aborts it. */
void sl__pipeline_fail(sl_pipeline *p, const char *stage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The task functions of every instance. */
int sl__inst_run(sl_task *t, int worker);
void sl__inst_dead(sl_task *t);
/* Logs through the engine's log callback (dropped above its level). */
void sl__elog(sl_engine *e, int level, const char *stage, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Wakes every instance of n (or the embedding thread waiting on a passive node). */
void sl__node_wake(sl_node *n);
/* Delivers token to instance st's event callback now (an sl_loop_cb / sl_httpc_cb: arg is st). */
void sl__stage_post(void *st, uint64_t token);
/* Takes the events in st's mailbox (returns a malloc'd array when more than fit in small). */
uint64_t *sl__take_events(sl_stage *st, uint64_t *small, size_t *n);

/* partition.c: partition_by. A partitioned stage X gets, at start, a hidden node of kind
 * sl__partition_kind in front of it (same name) that computes each record's key and sends
 * [key, record] to instance hash(key) % parallelism of X over an edge of that instance alone.
 * Each task instance of X keeps one instance of X's kind per key (sl_parts). */
extern const sl_stage_kind sl__partition_kind;
extern const sl_stage_kind sl__split_lines_kind; /* vm/cut.c */
/* X's process/flush/events on a task instance: dispatch to the keys' instances. */
int sl__part_process(sl_stage *st, sl_batch *in, sl_emitter *em);
int sl__part_flush(sl_stage *st, sl_emitter *em);
int sl__part_events(sl_stage *st, sl_emitter *em);
/* Teardown of a task instance's keys: cancel their timers; destroy; free. */
void sl__part_cancel(sl_stage *st);
void sl__part_destroy(sl_stage *st);
void sl__part_free(sl_stage *st);

/* options.c */
/* A front end that knows where each option was written passes, in the options map, the key
 * SL__AT: a map of option key -> [where of the key, where of its value] ("file:line:col: ").
 * Messages about an option then point at it rather than at the stage. */
#define SL__AT "_at"
/* The where of key (value: of its value) in an SL__AT map (may be NULL), else `where` ("" for
 * NULL). */
const char *sl__at(const sl_value *at, const char *key, bool value, const char *where);
int sl__options_apply(const sl_option *table, void *ctx, const sl_value *opts, void **ptrs,
                      const char *where, const char *stage, const char *kind, sl_error_t *err);
void sl__options_free(const sl_option *table, void *ctx);

/* stages/registry.c */
extern const sl_stage_kind *const sl__builtin_kinds[];
extern const size_t sl__builtin_kind_count;

#endif
