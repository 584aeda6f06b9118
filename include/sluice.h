/*
 * sluice.h — the embedding API of sluice, a stream-processing dataflow engine.
 *
 * Everything a program needs to embed sluice is in this header: records (sl_value), engines,
 * pipelines, ports (push records in), collect sinks (pull records out), stats, and the stage
 * interface for registering C stage kinds. Nothing here prints or exits on its own.
 *
 * Conventions (the same everywhere):
 * - Functions return int: 0 (SL_OK) or a negative SL_E* code; details go into an optional
 *   sl_error_t out-parameter (may be NULL). If a call that takes a callback fails, the callback
 *   never runs.
 * - Values: a function given an sl_value CONSUMES it (the caller must not use or free it after);
 *   a function returning an sl_value returns an OWNED value (the caller frees it with
 *   sl_value_free or hands it on). A `const sl_value *` parameter is a BORROW. Each declaration
 *   carries a one-line tag: "consumes v", "returns owned", "borrows", "errors: ...".
 * - Thread safety: an sl_value may be read from several threads at once; a value is modified in
 *   place only while its reference count is 1 (mutators copy a shared value first). Engine and
 *   pipeline calls are thread-safe where their comment says so, and not otherwise.
 */
#ifndef SLUICE_H
#define SLUICE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SL_VERSION "0.1.0"

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

/* X(name, code, text): one table for every error code (expanded into the enum and sl_strerror). */
#define SL_ERROR_LIST(X)                                                    \
  X(OK, 0, "success")                                                      \
  X(ENOMEM, -1, "out of memory")                                           \
  X(EINVAL, -2, "invalid argument")                                        \
  X(ECONFIG, -3, "configuration error")                                    \
  X(EIO, -4, "input/output error")                                         \
  X(EAGAIN, -5, "would block")                                             \
  X(ECLOSED, -6, "closed")                                                 \
  X(EOF, -7, "end of stream")                                              \
  X(ESTATE, -8, "not allowed in this state")                               \
  X(ENOTFOUND, -9, "not found")                                            \
  X(EFAILED, -10, "pipeline failed")                                       \
  X(ETIMEDOUT, -11, "timed out")                                           \
  X(EABORTED, -12, "aborted")                                              \
  X(EDATA, -13, "invalid data")                                            \
  X(ERECORD, -14, "record failed")

enum {
#define SL__ERR_ENUM(name, code, text) SL_##name = (code),
  SL_ERROR_LIST(SL__ERR_ENUM)
#undef SL__ERR_ENUM
};

/* The text of an error code ("unknown error" for codes not in the table). */
const char *sl_strerror(int code);

/* Details of a failed call. Caller-allocated; sl_error_init before first use. */
typedef struct sl_error {
  int code;        /* the SL_E* code, or 0 */
  char stage[64];  /* the stage the error concerns, or "" */
  char msg[1024];  /* human-readable message: what is wrong and what to do */
} sl_error_t;

void sl_error_init(sl_error_t *err);
/* Sets err (if not NULL) and returns code. */
int sl_error_set(sl_error_t *err, int code, const char *stage, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---------------------------------------------------------------------------------------------
 * Values: nil | bool | int64 | double | string (binary-safe) | array | map (insertion-ordered,
 * string keys). A 16-byte struct passed by value; strings up to 13 bytes live inline, larger
 * parts on the heap with an atomic reference count.
 * ------------------------------------------------------------------------------------------- */

typedef enum sl_type {
  SL_TNIL = 0,
  SL_TBOOL,
  SL_TINT,
  SL_TDOUBLE,
  SL_TSTR,
  SL_TARRAY,
  SL_TMAP
} sl_type;

struct sl_obj; /* heap part: string, array or map */

typedef struct sl_value {
  uint8_t type; /* sl_type */
  uint8_t slen; /* inline string: length + 1; 0 when the string (if any) is on the heap */
  char sbuf[6]; /* first inline string bytes; the union continues them (14 bytes in all) */
  union {
    bool b;
    int64_t i;
    double d;
    struct sl_obj *o;
    char s[8];
  } u;
} sl_value;

#define SL_STR_INLINE_MAX 13 /* longest string stored inline (plus a terminating NUL) */

static inline sl_value sl_nil(void) { sl_value v = {0}; return v; }
static inline sl_value sl_bool(bool b) { sl_value v = {0}; v.type = SL_TBOOL; v.u.b = b; return v; }
static inline sl_value sl_int(int64_t i) { sl_value v = {0}; v.type = SL_TINT; v.u.i = i; return v; }
static inline sl_value sl_double(double d) { sl_value v = {0}; v.type = SL_TDOUBLE; v.u.d = d; return v; }
static inline sl_type sl_typeof(const sl_value *v) { return (sl_type)v->type; }
const char *sl_type_name(sl_type t);

/* returns owned; copies n bytes of s; aborts through the allocation hook on nomem (small sizes) */
sl_value sl_str(const char *s, size_t n);
/* returns owned; s NUL-terminated */
sl_value sl_cstr(const char *s);
/* the same for sizes that come from data; errors: nomem */
int sl_str_try(const char *s, size_t n, sl_value *out);
/* returns owned: a printf-formatted string */
sl_value sl_strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* borrows: the bytes of a string value (NUL-terminated; may contain NULs). The pointer is valid
 * while *v lives at the same address and is not modified. NULL for non-strings. */
const char *sl_str_data(const sl_value *v);
size_t sl_str_len(const sl_value *v);

/* returns owned: an empty array with room for cap items */
sl_value sl_array(size_t cap);
size_t sl_array_len(const sl_value *a);
/* borrows: item i, or NULL past the end or for a non-array */
const sl_value *sl_array_get(const sl_value *a, size_t i);
/* consumes v; appends to *a (copied first if shared). errors: einval (not an array) */
int sl_array_push(sl_value *a, sl_value v);
/* consumes v; replaces item i (copied first if shared). errors: einval */
int sl_array_set(sl_value *a, size_t i, sl_value v);

/* returns owned: an empty map with room for cap entries */
sl_value sl_map(size_t cap);
size_t sl_map_len(const sl_value *m);
/* borrows: the value under key, or NULL */
const sl_value *sl_map_get(const sl_value *m, const char *key, size_t klen);
const sl_value *sl_map_getc(const sl_value *m, const char *key); /* key NUL-terminated */
/* consumes v; sets key (replacing its value in place, keeping its position). errors: einval */
int sl_map_set(sl_value *m, const char *key, size_t klen, sl_value v);
int sl_map_setc(sl_value *m, const char *key, sl_value v);
/* borrows: the i-th key (a string value) and value in insertion order, or NULL */
const sl_value *sl_map_key(const sl_value *m, size_t i);
const sl_value *sl_map_val(const sl_value *m, size_t i);
/* consumes nothing; removes key if present. errors: einval, notfound */
int sl_map_del(sl_value *m, const char *key, size_t klen);

/* returns owned: a new reference to *v (no copy) */
sl_value sl_value_ref(const sl_value *v);
/* consumes v */
void sl_value_free(sl_value v);
/* borrows both: deep equality (int 1 and double 1.0 are not equal) */
bool sl_value_equal(const sl_value *a, const sl_value *b);
/* borrows: an estimate of the heap and inline bytes a value holds (for memory accounting) */
size_t sl_value_size(const sl_value *v);

/* A growable byte buffer (caller-allocated): sl_buf_init, use, sl_buf_close. */
typedef struct sl_buf {
  char *data; /* bytes, NUL-terminated when len > 0 */
  size_t len; /* bytes used */
  size_t cap; /* bytes allocated */
} sl_buf;
void sl_buf_init(sl_buf *b);
void sl_buf_close(sl_buf *b);
/* errors: nomem */
int sl_buf_append(sl_buf *b, const void *p, size_t n);
int sl_buf_printf(sl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* borrows v; appends its JSON text to out. Strings are written as UTF-8 with escapes; invalid
 * UTF-8 is written as U+FFFD. Doubles that are integral keep a ".0"; NaN/Inf are written as null.
 * errors: nomem */
int sl_value_to_json(const sl_value *v, sl_buf *out);
/* Parses one JSON text of n bytes into *out (returns owned). Integers that fit int64 stay
 * integers; others become doubles. Duplicate keys: the last wins. errors: data (err->msg names
 * the byte offset), nomem */
int sl_value_from_json(const char *text, size_t n, sl_value *out, sl_error_t *err);

/* ---------------------------------------------------------------------------------------------
 * Engine and pipelines
 * ------------------------------------------------------------------------------------------- */

typedef struct sl_engine sl_engine;
typedef struct sl_pipeline sl_pipeline;
typedef struct sl_stage_kind sl_stage_kind;

/* Lua-style allocator: nsize == 0 frees ptr (osize is its size); otherwise (re)allocates. It
 * serves what the engine makes at run time — pipelines, stages, their contexts, queues, batches,
 * ack tokens — and sl_stage_alloc. Record values, configuration strings and the threads' own
 * small structures use the process allocator (malloc). Called from any engine thread. */
typedef void *(*sl_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);

enum { SL_LOG_ERROR = 0, SL_LOG_WARN, SL_LOG_INFO, SL_LOG_DEBUG };
/* Log callback. May be called from any engine thread, concurrently. stage may be NULL. */
typedef void (*sl_log_fn)(void *ud, int level, const char *stage, const char *msg);

typedef struct sl_engine_config {
  int workers;       /* worker threads; <= 0: $SLUICE_WORKERS (1 to 256) if set, else online CPUs */
  bool virtual_time; /* run on the virtual clock: timers fire in order as soon as all is idle */
  sl_alloc_fn alloc; /* NULL: malloc/realloc/free */
  void *alloc_ud;
  sl_log_fn log;     /* NULL: log lines are dropped */
  void *log_ud;
  int log_level;     /* highest level passed to log (default SL_LOG_INFO) */
} sl_engine_config;

void sl_engine_config_init(sl_engine_config *cfg);
/* Optional, process-wide, once at the start of main() of a program that keeps glibc's malloc
 * (the sluice program links mimalloc instead; docs/embedding.md says why). Records of a MiB or
 * more (read, compress and encrypt chunks) are made and freed by the thousand; glibc maps each
 * one on its own and returns it to the kernel at free, so every chunk costs page faults and
 * zeroing (a third of a restore's time). This keeps blocks below 64 MiB in the heap and up to
 * 64 MiB of freed memory for reuse. Without glibc it does nothing. */
void sl_tune_malloc(void);
/* Creates an engine with its worker threads and event loop. errors: nomem, inval (workers out of
 * range, or a bad $SLUICE_WORKERS), io */
int sl_engine_new(const sl_engine_config *cfg, sl_engine **out, sl_error_t *err);
/* The worker count of an engine made with workers <= 0: $SLUICE_WORKERS when set (an integer
 * from 1 to 256), else the online CPUs. errors: inval (a bad $SLUICE_WORKERS) */
int sl_engine_default_workers(sl_error_t *err);
/* Stops the threads and frees the engine. Every pipeline of it must be freed first. */
void sl_engine_free(sl_engine *e);
int sl_engine_workers(const sl_engine *e);
/* Registers a C stage kind (the struct must outlive the engine). errors: inval (bad ABI,
 * duplicate name) */
int sl_engine_register(sl_engine *e, const sl_stage_kind *kind, sl_error_t *err);
/* The kind of this name (built-in or registered), or NULL. Built-ins are listed from 0 to n-1. */
const sl_stage_kind *sl_engine_kind(const sl_engine *e, const char *name);
size_t sl_engine_kind_count(const sl_engine *e);
const sl_stage_kind *sl_engine_kind_at(const sl_engine *e, size_t i);
/* The engine clock in nanoseconds: monotonic on the real clock; 0 at start on the virtual one. */
int64_t sl_engine_now(const sl_engine *e);

/* A pipeline: a DAG of stages, built by adding stages in order, then started once. */
int sl_pipeline_new(sl_engine *e, const char *name, sl_pipeline **out, sl_error_t *err);
/* Aborts the pipeline if it is running, waits for its tasks to end, and frees it. */
void sl_pipeline_free(sl_pipeline *p);

/* Adds a stage of the given kind. opts (consumed; a map or nil) holds the kind's options plus the
 * common keys: name (default "<kind>#<index>"), input (a name or an array of names; default the
 * previous stage; [] for none), on_error ("skip" | "fail" | "dead_letter"), parallelism (integer
 * or "auto"), queue ({capacity: N, on_full: "block"|"drop_newest"|"drop_oldest"}: the policy of
 * this stage's input edges). Front ends that read files may add `_where` ("file:line:col: " of
 * the stage, the prefix of its messages) and `_at` ({key: [where of the key, where of its value]},
 * list items as "input.0", ...: messages about an option point at it). Every problem of the
 * options is reported, one per line. errors: config (unknown kind or option, wrong type;
 * err->stage set) */
int sl_pipeline_add(sl_pipeline *p, const char *kind, sl_value opts, sl_error_t *err);
/* The same with the options written as JSON text ("" or NULL for none). */
int sl_pipeline_add_json(sl_pipeline *p, const char *kind, const char *json_opts, sl_error_t *err);

/* A C function applied to each record by the built-in "c_map" and "c_filter" kinds.
 * c_map: may replace *rec (consuming the old value); return 0, or < 0 to fail the record.
 * c_filter: return 1 to keep, 0 to drop, < 0 to fail the record.
 * On failure write a message into errbuf (errlen bytes). Called concurrently from several
 * workers when the stage's parallelism > 1. */
typedef int (*sl_record_fn)(void *ud, sl_value *rec, char *errbuf, size_t errlen);
/* Adds a "c_map" or "c_filter" stage calling fn(ud, ...). opts (consumed) as sl_pipeline_add. */
int sl_pipeline_add_fn(sl_pipeline *p, const char *kind, sl_record_fn fn, void *ud, sl_value opts,
                       sl_error_t *err);
/* Names the stage that receives failed records as dead-letter maps (DESIGN section 3). The
 * stage must exist when the pipeline starts. */
int sl_pipeline_set_dead_letter(sl_pipeline *p, const char *stage, sl_error_t *err);
/* Pipeline-wide default for on_error ("skip" | "fail" | "dead_letter"). */
int sl_pipeline_set_on_error(sl_pipeline *p, const char *policy, sl_error_t *err);

/* Pipeline-wide settings by name, as a front end reads them from a file (YAML top-level keys,
 * Lua `sluice.pipeline{...}` fields). v is consumed; where ("file:line:col: " or NULL) prefixes
 * error messages. Keys:
 *   on_error               "skip" | "fail" | "dead_letter": default of every stage
 *   dead_letter            the name of the stage that receives failed records
 *   drain_timeout          duration: how long a drain (sl_pipeline_stop) may take before a host
 *                          aborts (the engine stores it; the CLI enforces it). default 30s
 *   sandbox                bool: Lua code may not run programs, load binary chunks or C modules,
 *                          or open files outside sandbox_paths
 *   sandbox_paths          array of directory names Lua may open files under (with sandbox)
 *   lua_memory_limit       size: bytes each Lua state may hold (default 256MiB; 0: no limit)
 *   lua_instruction_limit  integer: Lua VM instructions one call of a stage function may run
 *                          (default 100000000; 0: no limit)
 *   memory_limit           size: bytes of records queued between stages; when reached, sources
                          (and ports) pause until consumers catch up, nothing is dropped.
                          Estimated with sl_value_size; may be passed by one batch per producer
                          (sources make smaller batches near the limit). 0: no limit
 * errors: config (unknown key, with a suggestion; wrong type), state (already started) */
int sl_pipeline_set(sl_pipeline *p, const char *key, sl_value v, const char *where, sl_error_t *err);
/* borrows: the value of a setting given with sl_pipeline_set, or NULL. */
const sl_value *sl_pipeline_setting(const sl_pipeline *p, const char *key);
/* The pipeline's name. */
const char *sl_pipeline_name(const sl_pipeline *p);

/* Adds Lua code that every Lua state of the pipeline runs before any stage function: the YAML
 * `lua:` block, a `lua_file:`. file and line say where the code starts in its file, so Lua's
 * messages name file:line. Syntax is checked now; the code first runs when the pipeline starts.
 * errors: config */
int sl_pipeline_add_lua(sl_pipeline *p, const char *code, size_t len, const char *file, int line,
                        sl_error_t *err);

/* Lua function options. Stage kinds that call Lua (map, filter, reduce, buffer_unordered, ...)
 * take their function as a string, in one of three forms: the name of a global function defined
 * by the pipeline's Lua code ("parse"), a function expression ("function(r) return r.n end"), or
 * an expression or a body over the record r ("r.status >= 500", or statements with `return`).
 * The stage's `_where` ("file:line:col: ") says where the string's first character is, so Lua
 * syntax errors name the file line. The Lua front end passes compiled functions (with their
 * upvalues) in the same option: binary strings that start with SL_LUA_SHIPPED. */
#define SL_LUA_SHIPPED "\x1bsluice\x01"

/* The graph as built, for `sluice graph` and other tools. Valid until the pipeline is freed. */
typedef struct sl_stage_info {
  const char *name;            /* stage name */
  const char *kind;            /* kind name */
  const char *where;           /* "file:line:col: " of its definition, or "" */
  const char *const *inputs;   /* names of the stages it reads (the previous one by default) */
  int ninputs;
  const sl_value *opts;        /* the kind's options as given (borrowed; nil or a map) */
  int parallelism;             /* instances (0: auto, before start) */
  uint64_t queue_cap;          /* capacity of its input edges */
  const char *on_full;         /* "block" | "drop_newest" | "drop_oldest" */
  const char *on_error;        /* its own on_error, or NULL for the pipeline's default */
  uint32_t flags;              /* the kind's SL_STAGE_* flags */
} sl_stage_info;
/* errors: notfound (i out of range) */
int sl_pipeline_stage_info(const sl_pipeline *p, size_t i, sl_stage_info *out);

/* ---------------------------------------------------------------------------------------------
 * Pipeline files: YAML (a config is parsed once, then built on an engine) and Lua scripts.
 * ------------------------------------------------------------------------------------------- */

typedef struct sl_config sl_config; /* a parsed YAML pipeline file, not yet built */

typedef struct sl_load_options {
  const char *const *sets; /* "path=value" overrides (--set), applied after ${VAR} expansion:
                              a top-level key ("workers=4") or "<stage name>.<option>" */
  size_t nsets;
} sl_load_options;

/* Parses a YAML pipeline file (o may be NULL). Every problem found is reported at once in
 * err->msg, one per line, each starting "file:line:col: ". errors: config, io, nomem */
int sl_config_load_file(const char *path, const sl_load_options *o, sl_config **out, sl_error_t *err);
/* The same from text; name is used in messages as the file name. */
int sl_config_load_text(const char *text, size_t len, const char *name, const sl_load_options *o,
                        sl_config **out, sl_error_t *err);
void sl_config_free(sl_config *c);
/* The file's `workers:` (0 when not given). */
int sl_config_workers(const sl_config *c);
/* Builds the pipeline on engine e (returns owned in *out). errors: config */
int sl_config_build(const sl_config *c, sl_engine *e, sl_pipeline **out, sl_error_t *err);
/* The file's `tests:` (DESIGN section 7). */
size_t sl_config_test_count(const sl_config *c);
const char *sl_config_test_name(const sl_config *c, size_t i);
/* Runs test i on e (an engine on the virtual clock): builds the pipeline with the test's records
 * injected at its input stage and no real sources or sinks touched, runs it, and compares the
 * expected stage's records. *passed says the outcome; report receives a readable diff of expected
 * and actual records when it failed. errors: config (a bad test), or the run's error */
int sl_config_run_test(const sl_config *c, size_t i, sl_engine *e, bool *passed, sl_buf *report,
                       sl_error_t *err);

/* Lua pipeline scripts (DESIGN section 5). The script runs in a Lua state with `sluice` loaded;
 * each sluice.pipeline{} it makes gets its own engine from `engine` (workers: the script's
 * `workers` field unless engine.workers > 0). p:run() calls `run` (NULL: sl_pipeline_run) and
 * returns the stats to the script. */
typedef int (*sl_run_hook)(void *ud, sl_pipeline *p, sl_error_t *err);
typedef struct sl_script_options {
  sl_engine_config engine;   /* for the engines the script's pipelines run on */
  sl_run_hook run;           /* what p:run() does with a built pipeline */
  void *run_ud;
  const char *const *args;   /* the script's `arg` table: arg[1..nargs] */
  size_t nargs;
} sl_script_options;
void sl_script_options_init(sl_script_options *o);
/* Runs a Lua pipeline script. errors: config (syntax errors, bad stage options: file:line),
 * failed (the script raised an error at run time, or a pipeline it ran failed) */
int sl_script_run_file(const char *path, const sl_script_options *o, sl_error_t *err);

/* Lua states for tools that run Lua a piece at a time, such as `sluice repl`: the standard
 * libraries and `sluice` as a pipeline script sees it (DESIGN section 5), plus sluice.load(path)
 * (a pipeline object from a YAML file) and sluice.last() (the pipeline object built last). The
 * pipelines its code builds get engines from o->engine, and p:run() calls o->run (o is copied;
 * NULL: defaults; args are not used). A pipeline object that has run is built again from the same
 * steps when it is used again. The state belongs to the caller's thread; run code in it with
 * lua_pcall. Include <lua.h> to use it. errors: nomem, failed (the front end did not load) */
struct lua_State;
int sl_script_new(const sl_script_options *o, struct lua_State **out, sl_error_t *err);
/* Closes the state; pipelines that were built and not run are freed. */
void sl_script_close(struct lua_State *L);
/* Whether the value at idx is a pipeline object (what sluice.pipeline{} and sluice.load return). */
bool sl_script_is_pipeline(struct lua_State *L, int idx);
/* The pipeline of the pipeline object at idx, to check, draw, inspect or add stages to (valid until
 * the object runs or is collected); one that has run is built again first. Runs Lua code: call it
 * from outside any Lua call of L. errors: notfound (not a pipeline object), config (building it
 * again failed: err->msg) */
int sl_script_pipeline(struct lua_State *L, int idx, sl_pipeline **out, sl_error_t *err);
/* Whether the table at idx carries the sluice.array marker (an empty array, not an empty map). */
bool sl_script_is_array(struct lua_State *L, int idx);

/* Validates the graph (unknown inputs, cycles, sources with inputs, stages with no path to a
 * sink, a dead-letter stage that is not a sink) without running it. errors: config */
int sl_pipeline_check(sl_pipeline *p, sl_error_t *err);
/* Validates, then runs in the background on the engine's workers. errors: config, state */
int sl_pipeline_start(sl_pipeline *p, sl_error_t *err);
/* Waits until the pipeline ended or timeout_ns passed (< 0: no limit). Returns SL_OK when it
 * completed, SL_ETIMEDOUT, SL_EFAILED (err says why, naming the stage) or SL_EABORTED. */
int sl_pipeline_wait(sl_pipeline *p, int64_t timeout_ns, sl_error_t *err);
/* start + wait. */
int sl_pipeline_run(sl_pipeline *p, sl_error_t *err);
/* Drains: sources stop producing, records in flight reach the sinks, sinks flush and close.
 * Thread-safe; not async-signal-safe. */
void sl_pipeline_stop(sl_pipeline *p);
/* Stops at once: records in flight are discarded, file sinks remove their temporary files.
 * Thread-safe; not async-signal-safe. */
void sl_pipeline_abort(sl_pipeline *p);
/* True once the pipeline has ended (completed, failed or aborted). */
bool sl_pipeline_done(const sl_pipeline *p);

/* Ports: the "port" source kind takes records pushed by the embedding program. */
typedef struct sl_port sl_port;
enum { SL_NOWAIT = 1 };
/* The port stage of this name (after the stage was added), or NULL. */
sl_port *sl_pipeline_port(sl_pipeline *p, const char *name);
/* Pushes *rec: on success it is consumed (*rec becomes nil); on any error it is untouched and
 * stays the caller's. Blocks while the port's edges are full (backpressure), unless flags has
 * SL_NOWAIT. Thread-safe. errors: again (full, with SL_NOWAIT), closed (port closed or pipeline
 * stopping), state (not started) */
int sl_port_push(sl_port *port, sl_value *rec, int flags);
/* Ends the port's stream. Thread-safe. */
void sl_port_close(sl_port *port);

/* Collect sinks: the "collect" kind keeps records for the embedding program to pull. */
typedef struct sl_collect sl_collect;
sl_collect *sl_pipeline_collect(sl_pipeline *p, const char *name);
/* Takes the next record (returns owned in *out). Waits up to timeout_ns (< 0: no limit; 0: no
 * wait). errors: again (nothing yet), eof (the stream ended and everything was pulled). Thread-safe. */
int sl_collect_pull(sl_collect *c, sl_value *out, int64_t timeout_ns);

/* Stats of every stage, in the order they were added. Readable while running. */
typedef struct sl_stage_stats {
  const char *name;   /* the stage's name (valid while the pipeline lives) */
  const char *kind;   /* its kind */
  uint64_t in;        /* records received */
  uint64_t out;       /* records emitted (sinks: written) */
  uint64_t errors;    /* failed records */
  uint64_t dropped;   /* records shed by its input queue (on_full drop_*) */
  uint64_t retries;   /* retried calls */
  uint64_t dead_letter; /* failed records sent to the dead-letter stage */
  uint64_t queue_len; /* records now waiting in its input queue(s) */
  uint64_t queue_cap; /* capacity of its input queue(s), 0 for none or unbounded */
  uint64_t queue_hwm; /* highest queue_len seen */
  int parallelism;    /* instances */
  bool done;          /* this stage has finished */
  const char *breaker; /* its circuit breaker's state: "closed", "open", "half_open"; NULL without one */
  uint64_t breaker_changes; /* state changes of its circuit breaker */
} sl_stage_stats;
size_t sl_pipeline_stage_count(const sl_pipeline *p);
int sl_pipeline_stats(const sl_pipeline *p, size_t i, sl_stage_stats *out);
/* memory_limit: the estimated bytes of records queued now, and the most seen (both 0 without a
 * memory_limit, when nothing is counted). Readable while running. */
void sl_pipeline_memory(const sl_pipeline *p, uint64_t *used, uint64_t *peak);
/* Bytes held by the pipeline's Lua states (one per worker task running Lua), now. Thread-safe. */
uint64_t sl_pipeline_lua_memory(const sl_pipeline *p);
/* Seconds on the engine clock since start (until the end, once ended). */
double sl_pipeline_elapsed(const sl_pipeline *p);
/* Writes {"elapsed_s": ..., "stages": {"<name>": {"in": N, ...}, ...}} to out; a stage with a
 * circuit breaker also has "breaker" (its state) and "breaker_changes". errors: nomem */
int sl_pipeline_stats_json(const sl_pipeline *p, sl_buf *out);

/* ---------------------------------------------------------------------------------------------
 * The stage interface: register your own C stage kinds
 * ------------------------------------------------------------------------------------------- */

#define SL_STAGE_ABI 1

/* Option types of an options table. Values are stored at `offset` in the stage's context. */
typedef enum sl_opt_type {
  SL_OPT_END = 0,   /* terminates a table */
  SL_OPT_BOOL,      /* bool */
  SL_OPT_INT,       /* int64_t */
  SL_OPT_DOUBLE,    /* double */
  SL_OPT_SIZE,      /* int64_t bytes: 512, "64KiB", "1MiB", "10MB" */
  SL_OPT_DURATION,  /* int64_t nanoseconds: "250ms", "2s", "1m", "1h", or seconds as a number */
  SL_OPT_STRING,    /* char * (owned by the engine, NUL-terminated; NULL when unset) */
  SL_OPT_ENUM,      /* int: index into the '|'-separated names in `choices` */
  SL_OPT_VALUE,     /* sl_value (any value, owned by the engine) */
  SL_OPT_PTR        /* void *: set only through the C API (sl_pipeline_add_fn) */
} sl_opt_type;

enum {
  SL_OPT_REQUIRED = 1, /* must be given */
  SL_OPT_PRIMARY = 2,  /* the option a scalar shorthand sets ("take: 5" sets count) */
  SL_OPT_LUA = 4       /* a Lua function (SL_OPT_STRING in the forms of "Lua function options") */
};

typedef struct sl_option {
  sl_opt_type type;
  const char *key;     /* option name */
  const char *def;     /* default as text, parsed like user input; NULL: zero/NULL */
  size_t offset;       /* where the value goes in the context struct */
  const char *help;    /* one line for `sluice help STAGE` and docs */
  const char *choices; /* SL_OPT_ENUM: "block|drop_newest|drop_oldest" */
  unsigned flags;      /* SL_OPT_REQUIRED | SL_OPT_PRIMARY */
} sl_option;

/* The last entry of an options table. */
#define SL_OPTIONS_END {SL_OPT_END, NULL, NULL, 0, NULL, NULL, 0}

/* Stage kind flags. */
enum {
  SL_STAGE_SOURCE = 1 << 0,    /* has no input; produce() is called */
  SL_STAGE_SINK = 1 << 1,      /* has no output */
  SL_STAGE_STATELESS = 1 << 2, /* may run as several instances (parallelism) */
  SL_STAGE_UNORDERED = 1 << 3, /* with several instances, output order need not follow input */
  SL_STAGE_PASSIVE = 1 << 4    /* engine-internal: port/collect, driven by the embedding program */
};

/* Return codes of callbacks (besides 0 and negative errors). */
enum {
  SL_PARKED = 1, /* produce/flush: nothing now; call again after sl_stage_wake or an event */
  SL_DONE = 2    /* produce: end of stream; process: this stage wants no more input */
};

typedef struct sl_stage sl_stage;     /* an instance's handle on engine services */
typedef struct sl_emitter sl_emitter; /* where a callback emits records */
typedef struct sl_ack sl_ack;         /* end-to-end acknowledgement token (opaque) */

/* A batch of records handed to process(). The batch is borrowed: the stage may move records
 * out with sl_batch_take (leaving nil) or reference them; the engine frees what is left. */
typedef struct sl_batch {
  sl_value *recs;  /* records */
  sl_ack **acks;   /* per-record ack token, or NULL when no record of the batch has one */
  uint32_t len;    /* number of records */
} sl_batch;

#define SL_NO_ORIGIN UINT32_MAX

/* returns owned: record i moved out of the batch (nil is left behind). */
static inline sl_value sl_batch_take(sl_batch *b, uint32_t i) {
  sl_value v = b->recs[i];
  b->recs[i] = sl_nil();
  return v;
}

/* A stage kind: a const descriptor. The struct only grows at its end. */
struct sl_stage_kind {
  uint32_t abi;              /* SL_STAGE_ABI */
  const char *name;          /* kind name, as written in pipelines */
  const char *doc;           /* one line */
  const sl_option *options;  /* table ending with SL_OPTIONS_END; NULL for none */
  size_t ctx_size;           /* size of the per-instance context (options are stored in it) */
  uint32_t flags;            /* SL_STAGE_* */
  /* Called once per instance after options were stored in ctx. Non-zero fails the start. */
  int (*init)(void *ctx, sl_stage *st, sl_error_t *err);
  /* Transforms and sinks: handle a batch. Emit with sl_emit(em, i, v) naming the input index i
   * each output derives from; fail input i with sl_emit_error. Return 0, SL_DONE (no more input
   * wanted: upstream is cancelled), SL_PARKED (the batch is not finished: the engine keeps it and
   * the output so far, hands no more input, and calls event() with the same batch and emitter
   * until event returns 0, which finishes the batch; order is kept), or < 0 to fail the
   * pipeline (sl_stage_fail sets the text). */
  int (*process)(void *ctx, sl_batch *in, sl_emitter *em);
  /* Sources: emit up to sl_emitter_room(em) records. Return 0 (call again when there is room),
   * SL_PARKED (wait for sl_stage_wake, a timer or an fd), SL_DONE (end of stream) or < 0. */
  int (*produce)(void *ctx, sl_emitter *em);
  /* End of input: emit what is held (a partial chunk). Return 0 when finished, SL_PARKED to be
   * called again later (work still in flight), or < 0. Called only on a normal or drained end. */
  int (*flush)(void *ctx, sl_emitter *em);
  /* Frees what init allocated. Called for every instance whose init ran — also when init failed
   * half-way (the context was zeroed before init), after a failure, or after an abort. */
  void (*destroy)(void *ctx);
  /* A timer or fd event this instance asked for (token as given), run on the instance's task. */
  int (*event)(void *ctx, uint64_t token, sl_emitter *em);
  /* Sources that created ack tokens: every record derived from token `id` reached a sink or the
   * dead letter (status SL_ACK_OK), some were shed, skipped or discarded behind a stage that
   * stopped reading (SL_ACK_DROPPED), or the token never completed while the source ran: the
   * pipeline was aborted, or downstream stopped reading (SL_ACK_CANCELLED, reported from
   * sl_pipeline_free on the caller's thread). Otherwise run on the source's task, never
   * concurrently with produce. */
  void (*acked)(void *ctx, uint64_t id, int status);
  /* Optional: called when the stage is added, on a scratch context holding its parsed options,
   * to check what the options table cannot (a Lua function compiles, a name exists). Messages
   * start with `where` and name the stage. Non-zero rejects the stage. */
  int (*check)(void *ctx, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err);
  /* Optional: the stage's named outputs (route), read when the stage is added, on the scratch
   * context holding its parsed options: sets *names to n names (the engine copies them) and
   * returns n. Output 0 is always "default"; names[k] is output k + 1 (sl_emit_to). A stage
   * downstream reads one output with `input: <stage>.<output>`; a bare `input: <stage>` reads
   * the default output. */
  size_t (*outputs)(const void *ctx, const char *const **names);
};

enum { SL_ACK_OK = 0, SL_ACK_DROPPED = 1, SL_ACK_CANCELLED = 2 };

/* Emitting. sl_emit consumes v; origin is the index in the input batch the record derives from
 * (it inherits that record's ack token), or SL_NO_ORIGIN. errors: nomem */
int sl_emit(sl_emitter *em, uint32_t origin, sl_value v);
/* consumes v and ack (may be NULL): emits with an explicitly held ack token. */
int sl_emit_acked(sl_emitter *em, sl_value v, sl_ack *ack);
/* Input record `origin` failed with this message: it follows the stage's on_error policy. */
int sl_emit_error(sl_emitter *em, uint32_t origin, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A record the stage holds (moved out of its batch, with the ack token from sl_batch_hold)
 * failed: it follows on_error like sl_emit_error. Consumes rec and ack. */
int sl_emit_error_record(sl_emitter *em, sl_value rec, sl_ack *ack, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The input batch of the current process() call, or of the parked batch an event() finishes
 * (NULL otherwise). */
sl_batch *sl_emitter_batch(sl_emitter *em);
/* How many records a source should emit in this call (a batch's worth). */
uint32_t sl_emitter_room(const sl_emitter *em);
/* The instance the emitter belongs to. */
sl_stage *sl_emitter_stage(sl_emitter *em);
/* Input record `origin` is shed on purpose (load shedding, e.g. throttle's on_limit: drop): it
 * is counted in the stage's `dropped` stat and its ack token completes as SL_ACK_DROPPED. The
 * record stays in the batch (the engine frees it). */
void sl_emit_dropped(sl_emitter *em, uint32_t origin);
/* sl_emit to one of the stage's named outputs (0: default; see sl_stage_kind.outputs). Only the
 * stages reading that output receive v. errors: nomem, inval (no such output) */
int sl_emit_to(sl_emitter *em, uint32_t output, uint32_t origin, sl_value v);
/* sl_emit_error and sl_emit_error_record for a record that failed after `attempts` tries (a
 * retrying stage): the dead-letter record carries the count (DESIGN section 3). */
int sl_emit_error_attempts(sl_emitter *em, uint32_t origin, int attempts, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int sl_emit_error_record_attempts(sl_emitter *em, sl_value rec, sl_ack *ack, int attempts, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Ack tokens. A source creates one per input unit it wants to hear about. returns owned */
sl_ack *sl_ack_new(sl_stage *st, uint64_t id);
/* returns owned: another reference to a (NULL stays NULL), for one more record of the same unit */
sl_ack *sl_ack_ref(sl_ack *a);
/* returns owned: a new reference to the ack of input record i (NULL if it has none) — for stages
 * that keep a record past process() (chunks, windows). */
sl_ack *sl_batch_hold(const sl_batch *b, uint32_t i);
/* Consumes parts[0..n-1]: a token complete when the records it travels with are done, which then
 * releases every part (a chunk made of several records carries one). returns owned (NULL if all
 * parts were NULL) */
sl_ack *sl_ack_join(sl_ack **parts, size_t n);
/* consumes a (may be NULL). dropped: the records it stood for were shed, not delivered. */
void sl_ack_release(sl_ack *a, bool dropped);

/* Engine services for stage code. */
const char *sl_stage_name(const sl_stage *st);
int sl_stage_instance(const sl_stage *st);  /* 0 .. parallelism-1 */
int64_t sl_stage_now(const sl_stage *st);   /* the engine clock, ns */
/* Unix time in seconds on the real clock; seconds since start on the virtual clock. */
double sl_stage_wallclock(const sl_stage *st);
/* Runs the instance again soon (produce/flush/process retried). Thread-safe. */
void sl_stage_wake(sl_stage *st);
/* Calls event(ctx, token) on this instance at deadline_ns (engine clock). Returns an id for
 * cancel (> 0) or < 0 on error. Thread-safe. */
int64_t sl_stage_timer(sl_stage *st, int64_t deadline_ns, uint64_t token);
/* Cancels a timer that has not fired (no effect otherwise). Thread-safe. */
void sl_stage_timer_cancel(sl_stage *st, int64_t id);
/* Calls event(ctx, token) when fd becomes readable (write=false) or writable, once per request.
 * errors: io */
int sl_stage_watch_fd(sl_stage *st, int fd, bool write, uint64_t token);
/* Stops input from being handed to process() while paused (in-flight limits). */
void sl_stage_pause_input(sl_stage *st, bool paused);
void sl_stage_log(sl_stage *st, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Sets the stage's failure message; returns SL_EFAILED for `return sl_stage_fail(...)`. */
int sl_stage_fail(sl_stage *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The engine's allocator (for stage memory that counts as the engine's). */
void *sl_stage_alloc(sl_stage *st, void *ptr, size_t osize, size_t nsize);
/* How many instances the stage runs as (its parallelism). */
int sl_stage_parallelism(const sl_stage *st);
/* The context of instance i (0 .. parallelism-1) of the same stage, or NULL. Instances are
 * initialised in order, 0 first, on one thread before the pipeline starts, and every context
 * lives until the pipeline is freed: instance 0 may prepare in init what all instances share.
 * What they change later they synchronise themselves. */
void *sl_stage_sibling(const sl_stage *st, int i);
/* The order of the current input batch (process() or the event() of a parked batch) when the
 * stage runs as several ordered instances: a batch with a smaller *seq comes earlier in the
 * stage's input (numbers are unique and increase, but may skip values). false when there is one
 * instance (batches then come in order) or the output is unordered (no order exists). */
bool sl_emitter_seq(const sl_emitter *em, uint64_t *seq);

/* True once the pipeline drains or aborts: a source that serves outside callers (http_in) stops
 * taking records. Thread-safe. */
bool sl_stage_stopping(const sl_stage *st);

/* The partition_by key of this instance (borrowed), or NULL when the stage is not partitioned:
 * a partitioned stage runs one instance per key (a window names its key in its output). */
const sl_value *sl_stage_key(const sl_stage *st);

/* The closest of the n names to word (edit distance with transpositions, close enough to be a
 * likely typo), or NULL: for "did you mean" messages. borrows everything */
const char *sl_did_you_mean(const char *word, const char *const *names, size_t n);

/* Parsing helpers shared by the options table and front ends. errors: inval */
int sl_parse_duration(const char *text, int64_t *ns);
int sl_parse_size(const char *text, int64_t *bytes);

#ifdef __cplusplus
}
#endif
#endif /* SLUICE_H */
