/*
 * lua.h — Lua inside the engine (sl_lua_ prefix): states, calls as coroutines, values, shipping
 * functions between states. Used by the Lua stage kinds (stages/map.c, ...) and the Lua front
 * end (vm/script.c).
 *
 * States. Every task that runs Lua stages owns one lua_State: the runner instance of a stage
 * (or of a fused chain of stages) creates it the first time it calls Lua and closes it when the
 * pipeline is freed. A task runs on one worker at a time, so a state is only ever used by one
 * thread at a time; debug builds assert it (sl_lua_enter/leave record the owner thread). With
 * parallelism N a Lua stage has N states, one per instance, so Lua runs on every core. This is
 * one state per task rather than one per worker thread: a coroutine parked in a state resumes
 * on whichever worker is free when its timer fires, instead of waiting for one particular
 * worker (docs/lua.md, "States").
 *
 * What a state holds: the standard libraries (restricted by `sandbox`), the `sluice` module,
 * the pipeline's Lua code (sl_pipeline_add_lua, run in order), the globals a Lua pipeline script
 * defined (shipped, see below), and the stage functions of the stages it runs (registry refs).
 *
 * Calls. Every call of a stage function runs in a coroutine taken from the state's pool. It
 * either returns (its results are read, then the coroutine goes back to the pool), fails (the
 * message carries a traceback; the coroutine is reset), or yields to the runtime
 * (sluice.sleep, or a C function built on sl_lua_park): the call is then parked with a token,
 * and the stage resumes it from its event callback when the token comes back.
 *
 * Limits. Each state's allocator counts its bytes: while user code runs, an allocation past
 * lua_memory_limit fails and the call fails with a clear error. A count hook stops a call after
 * lua_instruction_limit VM instructions.
 *
 * Shipping. A Lua front end hands a compiled function (with its upvalues) to a stage as a
 * string blob made by sl_lua_ship_fn; every state rebuilds it with sl_lua_unship. See
 * docs/lua.md for what can cross (numbers, strings, booleans, tables, Lua functions, modules
 * loaded by require, standard library functions) and what cannot (userdata such as open files,
 * coroutines, C functions of unknown modules).
 */
#ifndef SL_LUA_H
#define SL_LUA_H

#include <lua.h>
#include <stdbool.h>

#include "sluice.h"

typedef struct sl_lua sl_lua;           /* one state and its bookkeeping */
typedef struct sl_lua_prog sl_lua_prog; /* a pipeline's Lua code and limits (shared, read-only once running) */
typedef struct sl_lua_call sl_lua_call; /* a call in flight */

/* A call: a coroutine with what it produced. */
struct sl_lua_call {
  lua_State *co;    /* the coroutine (anchored in the state's registry) */
  int ref;          /* its registry ref */
  sl_lua *lua;      /* the state it belongs to */
  sl_stage *st;     /* the instance that made the call (timers) */
  sl_value *out;    /* records given to sluice.emit during the call */
  size_t nout, capout;
  int nres;         /* results on co's stack after it returned */
  int64_t budget;   /* instructions left (count hook) */
  bool parked;      /* yielded to the runtime, waiting for its token */
  uint16_t gen;     /* bumped by every use of the object (part of its token) */
  int64_t timer;    /* the sluice.sleep timer it waits on, or -1 */
  void (*cancel)(void *pending); /* drops what it waits on (an HTTP request) when abandoned */
  void *pending;    /* ... passed to cancel, or NULL */
  void *ud;         /* the stage's own use (e.g. the record it works on) */
  uint64_t tag;     /* the stage's own use */
  sl_lua_call *next;/* pool / stage lists */
  sl_lua_call *all; /* every call of the state (freed with it) */
};

enum { SL_LUA_DONE = 0, SL_LUA_PARKED = 1, SL_LUA_ERROR = 2 };

/* ---- pipeline side ---- */
/* The pipeline's Lua program (created on first use). */
sl_lua_prog *sl__lua_prog(sl_pipeline *p);
void sl__lua_prog_free(sl_lua_prog *g);
/* Adds a shipped blob (globals of a Lua script) that every state unships into its globals. */
int sl__lua_prog_add_globals(sl_pipeline *p, const char *blob, size_t len, sl_error_t *err);
/* Where states find modules (package.path and cpath of a Lua script; NULL keeps the default). */
void sl__lua_prog_set_path(sl_pipeline *p, const char *path, const char *cpath);
/* Checks that fn (an option string) makes a function, in the pipeline's control state (which
 * runs the pipeline's Lua code). where/stage prefix the messages. errors: config */
int sl_lua_check_fn(sl_pipeline *p, const char *fn, const char *where, const char *stage, sl_error_t *err);
/* sl_lua_check_fn for a function whose expression forms are over `params` (e.g. "i"). */
int sl_lua_check_fn_of(sl_pipeline *p, const char *fn, const char *params, const char *where, const char *stage, sl_error_t *err);

/* ---- states ---- */
/* The state of the task running instance st (created and loaded on first use). Errors (the
 * pipeline's Lua code failed to run) go to err. */
sl_lua *sl_lua_get(sl_stage *st, sl_error_t *err);
lua_State *sl_lua_L(sl_lua *l);
/* "file:line:col: " of the stage's definition (for its functions' messages). */
const char *sl_lua_where(const sl_stage *st);
/* Closes the states of a pipeline's instances (teardown). */
void sl__lua_close(sl_lua *l);

/* Loads fn (an option string: a global name, a function expression, an expression or a body over
 * r, or a shipped blob) as a function; returns its registry ref in *ref. errors: config */
int sl_lua_fn(sl_lua *l, const char *fn, const char *where, const char *stage, int *ref, sl_error_t *err);
/* sl_lua_fn whose expression and body forms are over `params` (a Lua parameter list, e.g. "i")
 * instead of "r, e". */
int sl_lua_fn_of(sl_lua *l, const char *fn, const char *params, const char *where, const char *stage, int *ref, sl_error_t *err);

/* Evaluates a predicate over `records` (text: an expression, a body with return, or a function
 * of records; numbered from `line` of `file`) in a fresh state: *result is its truth. Returns 0,
 * or -1 with a message (syntax or run-time error). For `tests:` (expect.lua). */
int sl_lua_predicate(const char *text, const char *file, int line, const sl_value *records, bool *result, char *msg,
                     size_t msglen);

/* ---- calls ---- */
/* Starts a call of function `ref`: returns the call with the function pushed on c->co; push
 * the arguments on c->co, then sl_lua_resume(c, nargs). */
sl_lua_call *sl_lua_call_new(sl_lua *l, sl_stage *st, int ref);
/* Runs (or resumes, with nargs values pushed on c->co) the call. Returns SL_LUA_DONE (c->nres
 * results on c->co), SL_LUA_PARKED (yielded: resume when its token comes back), or SL_LUA_ERROR
 * (*msg: owned message with traceback; the call is already recycled). */
int sl_lua_resume(sl_lua_call *c, int nargs, char **msg);
/* The first result of a finished call as a record in *out (nil when it returned nothing or
 * nil). errors: data (msg says why it cannot be a record) */
int sl_lua_result(sl_lua_call *c, sl_value *out, char *msg, size_t msglen);
/* sl_lua_result with a hint (see sl_lua_to_value_hint). */
int sl_lua_result_hint(sl_lua_call *c, const sl_value *hint, sl_value *out, char *msg, size_t msglen);
/* Calls function `ref` on rec (borrowed) and returns its first result as a record in *out (nil
 * when none): for decisions that must not wait (keys, predicates). Returns 0, or -1 with *msg
 * (owned, sl__free) when it raised, waited (sluice.sleep) or returned what cannot be a record. */
int sl_lua_apply(sl_lua *l, sl_stage *st, int ref, const sl_value *rec, sl_value *out, char **msg);
/* Gives a finished call back to its state's pool (drops its results and emitted records). */
void sl_lua_call_free(sl_lua_call *c);
/* Drops a parked call for good (its coroutine is reset, then pooled). */
void sl_lua_call_abandon(sl_lua_call *c);
/* The token a parked call is resumed with (what its timer or fd event carries): the call and
 * its generation. Call objects are pooled, so a timer of an earlier use of the same object (a
 * sleep whose call timed out) carries a stale token: check with sl_lua_token_live. Tokens have
 * their low 3 bits clear, so a stage can tell its own tokens apart by setting them. */
static inline uint64_t sl_lua_token(const sl_lua_call *c) { return (uint64_t)(uintptr_t)c | ((uint64_t)c->gen << 48); }
static inline sl_lua_call *sl_lua_from_token(uint64_t token) { return (sl_lua_call *)(uintptr_t)(token & ((1ull << 48) - 1)); }
static inline bool sl_lua_token_live(uint64_t token) { return sl_lua_token(sl_lua_from_token(token)) == token; }

/* The async primitive. A C function running inside a stage call gets its call with
 * sl_lua_current (NULL outside a stage call), arranges for the call's token to come back (a
 * timer, an fd watch) and ends with `return sl_lua_park(L)`, which parks the coroutine. Whoever
 * holds the token resumes the call with values pushed on its coroutine (sl_lua_resume). */
sl_lua_call *sl_lua_current(lua_State *L);
int sl_lua_park(lua_State *L);
/* sl_lua_park with a continuation: k(L, LUA_YIELD, ctx) runs when the call is resumed and
 * returns the C function's results. A call parked on something other than a timer sets
 * c->cancel/c->pending first: they are run if the call is abandoned, fails or its state closes. */
int sl_lua_park_k(lua_State *L, lua_KContext ctx, lua_KFunction k);
/* After a call failed (SL_LUA_ERROR): pushes onto `to` the value it raised when that was a table
 * (an HTTP error carries its status and kind), else msg. The saved value is then dropped. */
void sl_lua_push_error(sl_lua *l, lua_State *to, const char *msg);
/* A duration argument: a number of seconds or a string like 250ms; raises otherwise. */
int64_t sl__lua_duration(lua_State *L, int idx, const char *what);
/* Adds sluice.http to the sluice module table at the top of L (vm/lua_http.c). */
void sl__lua_open_http(lua_State *L);

/* ---- values (DESIGN section 1) ---- */
/* Pushes v (borrowed) as a Lua value. Aborts on Lua memory errors only outside user code. */
void sl_lua_push(lua_State *L, const sl_value *v);
/* A state's cache of map keys as Lua strings (lua_value.c, "records to Lua"). */
#define SL_LUA_KEY_SLOTS 256
typedef struct sl_lua_keys {
  int ref;                             /* registry ref of the table of cached strings, or LUA_NOREF */
  uint64_t key[SL_LUA_KEY_SLOTS][2];   /* the inline key cached in each slot; 0, 0: none */
} sl_lua_keys;
sl_lua_keys *sl__lua_keys(sl_lua *l);
/* sl_lua_push onto L (l's state or one of its coroutines) with l's key cache: for records. */
void sl_lua_push_rec(sl_lua *l, lua_State *L, const sl_value *v);
/* Converts the Lua value at idx into *out (owned). errors: data (functions, userdata, cycles,
 * tables that are neither arrays nor string-keyed maps; *msg says which) */
int sl_lua_to_value(lua_State *L, int idx, sl_value *out, char *msg, size_t msglen);
/* sl_lua_to_value, reusing the parts of hint (borrowed; NULL: none) that the value has
 * unchanged: typically the record the function was given. The result is the same as without a
 * hint; it shares what it can with it. errors: as sl_lua_to_value */
int sl_lua_to_value_hint(lua_State *L, int idx, const sl_value *hint, sl_value *out, char *msg, size_t msglen);
/* sluice.null: a null item of an array (a Lua table cannot hold nil) or a null map value a
 * function sets. A light userdata of this address, the same in every state. */
extern const char sl_lua_null;
#define SL_LUA_NULL ((void *)&sl_lua_null)
/* Sets the `sluice.array` marker metatable on the table at idx; tells whether idx carries it. */
void sl_lua_mark_array(lua_State *L, int idx);
bool sl__lua_is_array_mt(lua_State *L, int idx);
/* Applies `sandbox: true` to L (vm/lua_sandbox.c); paths: sandbox_paths or NULL. */
void sl_lua_sandbox(lua_State *L, const sl_value *paths);

/* ---- shipping ---- */
/* Serialises the function at idx of L with its upvalues into *out (a string value starting with
 * SL_LUA_BLOB_MAGIC). errors: data (err names the function and the upvalue that cannot cross) */
int sl_lua_ship_fn(lua_State *L, int idx, sl_value *out, sl_error_t *err);
/* Serialises the user globals of L (those not in a fresh state) into *out. Values that cannot
 * cross are left out; their names are listed in *skipped (owned, may be NULL). */
int sl_lua_ship_globals(lua_State *L, sl_value *out, char **skipped);
/* Rebuilds a blob in L and pushes the result. errors: data */
int sl_lua_unship(lua_State *L, const char *blob, size_t len, char *msg, size_t msglen);
#define SL_LUA_BLOB_MAGIC "\x1bsluice\x01"
#define SL_LUA_BLOB_MAGIC_LEN 8

/* Opens the `sluice` module in L (both worker and control states) and registers it in
 * package.loaded. */
void sl_lua_open_sluice(lua_State *L);
/* The `sluice` front end script (scripts/sluice.lua, embedded at build time). */
extern const char sl__script_sluice[];
extern const size_t sl__script_sluice_len;

#endif
