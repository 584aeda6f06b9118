/*
 * luafn.h — the driver shared by the Lua stage kinds that call one function per record
 * (map, filter, filter_map, flat_map, inspect, take_while, reduce, lua_sink): calls in input
 * order, one at a time per instance; a call that waits parks the batch (SL_PARKED) and the
 * instance's event resumes it (sl_luafn_ prefix).
 */
#ifndef SL_LUAFN_H
#define SL_LUAFN_H

#include "lua.h"
#include "policy.h"

typedef struct sl_luafn sl_luafn;

/* How a stage kind emits, for carrying records as Lua values between fused Lua stages
 * (luafn.c, "Carrying"). */
enum {
  SL_LUAFN_NO_CARRY = 0,   /* other ways (flat_map, reduce, sinks) */
  SL_LUAFN_CARRY_PASS,     /* passes input records through with sl_luafn_pass */
  SL_LUAFN_CARRY_RESULT,   /* emits what the function returns with sl_luafn_emit_result */
};

/* Pushes the arguments of the call for record i of in onto co; returns how many, or < 0 when
 * the record failed (the callback reported it with sl_emit_error). */
typedef int (*sl_luafn_args)(void *ctx, lua_State *co, sl_batch *in, uint32_t i, sl_emitter *em);
/* The call for record i returned (c->nres results on c->co). Returns 0, SL_DONE (no more
 * input), or < 0. */
typedef int (*sl_luafn_result)(void *ctx, sl_lua_call *c, sl_batch *in, uint32_t i, sl_emitter *em);

/* A predicate stage's handling of record i once its predicate is known true or false (filter,
 * take_while): what its result callback does with a truthy or a falsy Lua result. */
typedef int (*sl_luafn_decide)(void *ctx, bool yes, sl_batch *in, uint32_t i, sl_emitter *em);

struct sl_luafn {
  const char *fn;       /* the function option (owned by the stage's options) */
  sl_stage *st;
  sl_lua *lua;          /* the task's state, once loaded */
  int ref;              /* the function in it */
  sl_luafn_args args;   /* NULL: the record is the one argument */
  sl_luafn_result result;
  void *ctx;            /* passed to the callbacks */
  sl_lua_call *call;    /* the parked call, or NULL */
  uint32_t at;          /* index of the parked call's record */
  bool whole_batch;     /* one call stands for the whole batch: its error fails every record */
  /* Lua-to-Lua hand-off (see luafn.c, "Carrying"): */
  int carries;          /* SL_LUAFN_*: how the kind emits (sl_luafn_emit_result or _pass) */
  bool carry_out;       /* our output records stay Lua values, in the carry table */
  int carry_ref;        /* registry ref of the carry table (when carry_out) */
  sl_luafn *from;       /* the stage whose carry table holds our input records, or NULL */
  sl_luafn *made_by;    /* the stage whose function made them (from, or where from got them) */
  /* Timeout, retry and circuit breaker (policy.h): */
  const sl_policy_opts *popts; /* the stage's policy options, or NULL */
  sl_policy pol;        /* resolved when the state is loaded */
  sl_breaker *cb;       /* the stage's breaker, or NULL */
  int retry_on;         /* registry ref of the retry_on predicate, or LUA_NOREF */
  int attempt;          /* try number of the record at `at` (1 = first) */
  int64_t first_start;  /* engine clock: its first try began */
  int64_t start;        /* its current try began */
  int64_t prev_wait;    /* the last backoff wait (decorrelated jitter) */
  int64_t tmo_timer;    /* the current try's timeout timer, or -1 */
  uint64_t serial;      /* numbers tries: the timers of an earlier try are stale */
  uint64_t rng;         /* jitter */
  bool backing_off;     /* waiting to retry the record at `at` */
  bool timed;           /* a timeout, retry or breaker needs each try's start time */
  /* Predicates evaluated in C (expr.h), for stages that set `decide`: */
  sl_luafn_decide decide; /* what a predicate's truth does with record i, or NULL */
  struct sl_expr *expr;   /* the compiled predicate (no policy, input not carried), or NULL */
};

/* Emits the first result of call c for input i (map, filter_map): nil is dropped when
 * nil_drops, else it fails the record. Kept as a Lua value when the output is carried,
 * converted to a record otherwise (a value that cannot be one fails the record). */
int sl_luafn_emit_result(sl_luafn *f, sl_lua_call *c, sl_batch *in, uint32_t i, sl_emitter *em, bool nil_drops);
/* Emits input record i unchanged (filter, inspect, take_while). */
int sl_luafn_pass(sl_luafn *f, sl_batch *in, uint32_t i, sl_emitter *em);
/* Fails input record i with a message (sl_emit_error, once a carried record is a value again). */
int sl_luafn_fail(sl_luafn *f, sl_batch *in, uint32_t i, sl_emitter *em, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The context of the simple function stages: the `fn` option and the calls. */
typedef struct sl_luafn_ctx {
  char *fn;              /* option: the function */
  sl_policy_opts policy; /* options: timeout, retry, circuit_breaker */
  sl_luafn f;            /* the calls */
} sl_luafn_ctx;
/* The options every simple function stage has besides `fn`. */
#define SL_LUAFN_POLICY_OPTIONS SL_POLICY_OPTIONS(sl_luafn_ctx)
/* The result handler of map and of the policy stage kinds (timeout, retry, circuit_breaker): the
 * first result replaces the record; nil fails it. */
int sl_luafn_map_result(void *ctx, sl_lua_call *c, sl_batch *in, uint32_t i, sl_emitter *em);
/* Their callbacks: init sets the result handler; the rest are the same for all of them. */
int sl_luafn_init(void *ctx, sl_stage *st, sl_luafn_result result, int carries);
/* init of a predicate stage (filter, take_while): decide handles the truth of each record,
 * from its Lua call or from the predicate evaluated in C (expr.h). */
int sl_luafn_init_predicate(void *ctx, sl_stage *st, sl_luafn_decide decide);
int sl_luafn_process_cb(void *ctx, sl_batch *in, sl_emitter *em);
int sl_luafn_event_cb(void *ctx, uint64_t token, sl_emitter *em);
int sl_luafn_check_cb(void *ctx, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err);
void sl_luafn_destroy_cb(void *ctx);
/* The context of the `retry` and `circuit_breaker` stage kinds: a function stage whose policy
 * options are flat in its own table (SL_RETRY_OPTION_LIST / SL_BREAKER_OPTION_LIST at the offsets
 * of `retry` / `breaker`). Its init and check use what the kind's table filled (the other
 * struct stays zero). */
typedef struct sl_luafn_policy_ctx {
  sl_luafn_ctx x;          /* first: the callbacks above take it as an sl_luafn_ctx */
  sl_retry retry;          /* options of the retry kind */
  sl_breaker_opts breaker; /* options of the circuit_breaker kind */
} sl_luafn_policy_ctx;
int sl_luafn_policy_init_cb(void *ctx, sl_stage *st, sl_error_t *err);
int sl_luafn_policy_check_cb(void *ctx, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err);
/* Checks policy options (and compiles retry_on) at add time. errors: config */
int sl_luafn_check_policy(const sl_policy_opts *o, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err);
/* Releases what sl_luafn_ready resolved. */
void sl_luafn_free(sl_luafn *f);

/* retry_on(r, e) of call c, made with sl_lua_call_new(lua, st, retry_on ref) and holding the
 * record r: pushes e (msg, or the error value a Lua error raised) and runs it. True: retry. */
bool sl_luafn_ask_retry(sl_lua *lua, sl_stage *st, sl_lua_call *c, const char *msg, bool lua_err);
/* Runs retry_on(r, e) of call c once r and e are pushed; the call is finished either way. A
 * function that fails or waits is logged and means no retry. True: retry. */
bool sl_luafn_retry_answer(sl_stage *st, sl_lua_call *c);

/* Loads the state and the function on first use. Returns 0 or < 0 (the pipeline fails). */
int sl_luafn_ready(sl_luafn *f);
/* process(): calls for each record from 0. */
int sl_luafn_process(sl_luafn *f, sl_batch *in, sl_emitter *em);
/* event(): resumes the parked call with token, then goes on with the batch. */
int sl_luafn_event(sl_luafn *f, uint64_t token, sl_emitter *em);
/* The check callback of function stages: the `fn` option compiles. */
int sl_luafn_check(const char *fn, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err);

#endif

/* ---- buffer_unordered / buffered: up to `concurrency` calls in flight (vm/luafan.c) ---- */
typedef struct sl_luafan_item sl_luafan_item;
typedef struct sl_luafan_ctx {
  int64_t concurrency;   /* option: calls in flight at most */
  char *fn;              /* option: the function */
  bool ordered;          /* buffered: results in input order */
  sl_stage *st;
  sl_lua *lua;
  int ref;
  sl_luafan_item *ring;  /* records in input order, from `base` */
  uint64_t base, head, tail, next; /* ring seq numbers: first held, first to emit, end, next to start */
  size_t cap;
  int64_t inflight;      /* slots taken: calls parked, and records waiting to be retried */
  sl_policy_opts policy; /* options: timeout, retry, circuit_breaker */
  sl_policy pol;         /* resolved when the state is loaded */
  sl_breaker *cb;        /* the stage's breaker, or NULL */
  int retry_on;          /* registry ref of retry_on, or LUA_NOREF */
  uint64_t rng;          /* jitter */
  uint64_t *ready;       /* buffer_unordered: seq numbers of finished items, in finishing order */
  size_t nready, cap_ready;
} sl_luafan_ctx;
int sl_luafan_init(void *ctx, sl_stage *st, bool ordered);
int sl_luafan_process(void *ctx, sl_batch *in, sl_emitter *em);
int sl_luafan_event(void *ctx, uint64_t token, sl_emitter *em);
int sl_luafan_flush(void *ctx, sl_emitter *em);
void sl_luafan_destroy(void *ctx);
int sl_luafan_check(void *ctx, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err);
