/*
 * cli.h — what the files of the `sluice` program share. The program is an ordinary client of
 * include/sluice.h (it includes no vm/ header). One file per concern, one prefix per file:
 *
 *   main.c      dispatch and the top-level usage
 *   args.c      args_     the flag parser every verb uses
 *   load.c      load_     opening a pipeline file: YAML (config -> engine -> pipeline) or Lua
 *                         (script with a run hook), the log callback
 *   run.c       run_      `sluice run`: the main thread owns the pipeline, signals, --stats;
 *                         the run loop the REPL shares (run_pipeline)
 *   progress.c  progress_ the live table on a terminal and the summary at the end
 *   metrics.c   metrics_  `run --metrics`: /metrics, /stats, /health over HTTP
 *   check.c     check_    `sluice check`
 *   graph.c     graph_    `sluice graph` (dot, mermaid), the REPL's ASCII drawing
 *   repl.c      repl_     `sluice repl`: the loop, the :commands, the run hook (docs/repl.md)
 *   repl_edit.c edit_     the REPL's lines: libedit, history, completion; plain from a pipe
 *   repl_show.c show_     Lua values as JSON-like text
 *   test.c      test_     `sluice test`
 *   help.c      help_     `sluice help [STAGE|VERB]`, `--markdown` (docs/stages.md)
 *
 * Exit codes (docs/cli.md): 0 success, 1 the pipeline failed at run time or a `sluice test`
 * failed, 2 usage or configuration error, 130 interrupted (SIGINT/SIGTERM).
 */
#ifndef SL_CLI_H
#define SL_CLI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

#include "sluice.h"

enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2, CLI_INTERRUPTED = 130 };

/* ---- args.c: flags of a verb ------------------------------------------------------------- */

/* One flag a verb accepts. `--name VALUE`, `--name=VALUE`, or `--name` when has_value is
 * false. Flags may come before or after FILE; after `--` everything is positional. */
typedef struct args_flag {
  const char *name;  /* "workers" for --workers */
  bool has_value;    /* takes a value */
  bool repeat;       /* may be given several times (--set) */
} args_flag;

/* The parsed command line of a verb. */
typedef struct args {
  const char *verb;          /* for messages */
  const char *file;          /* the first positional argument, or NULL */
  const char **rest;         /* positional arguments after FILE (script arguments) */
  size_t nrest;
  const char **values;       /* values[i]: the last value of flag i (NULL: not given; "" for a
                                flag without value that was given) */
  const char **sets;         /* every value of the repeatable flag (one per verb: --set) */
  size_t nsets;
  bool help;                 /* --help or -h was given */
} args;

/* Parses argv (after the verb) against flags (ending with a {NULL} entry). On a usage error
 * prints it with the verb's usage and returns CLI_USAGE; otherwise 0. args_free releases a. */
int args_parse(args *a, const char *verb, const args_flag *flags, int argc, char **argv,
               const char *usage);
void args_free(args *a);
/* Prints "sluice VERB: <problem>", the verb's synopsis and a pointer to --help; returns
 * CLI_USAGE. */
int args_error(const char *verb, const char *usage, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The value of flag i as a positive integer; prints a usage error and returns -1 otherwise. */
int args_int(const args *a, int i, const char *flagname, int min, int max);

/* ---- load.c: pipeline files ------------------------------------------------------------ */

typedef enum load_type { LOAD_YAML, LOAD_LUA, LOAD_OTHER } load_type;
/* The front end a file name asks for (by its extension). */
load_type load_type_of(const char *path);
/* Prints the "not a pipeline file" usage error for path; returns CLI_USAGE. */
int load_bad_type(const char *verb, const char *path);

/* The log callback's state: warnings and errors to stderr (not when quiet), coordinated with the
 * progress table so a message never lands inside it. */
typedef struct load_log {
  pthread_mutex_t mu;        /* stderr: log lines and the progress table's redraws */
  bool quiet;                /* print nothing */
  int warnings;              /* printed so far (capped: a stage that skips every record) */
  char last_error[1024];     /* the last error printed (the final message is not repeated) */
  struct progress *progress; /* the table on screen (erased before a line is printed), or NULL */
} load_log;
void load_log_init(load_log *log, bool quiet);
void load_log_close(load_log *log);
void load_log_cb(void *ud, int level, const char *stage, const char *msg);

/* The engine takes $SLUICE_WORKERS when neither --workers nor the file says; the verbs check it
 * first, so that a bad value is a usage error. Prints it; returns 0 or CLI_USAGE. */
int load_check_env_workers(void);
/* An engine configuration for the CLI: workers, clock, the log callback with `log`. */
void load_engine_config(sl_engine_config *cfg, int workers, bool virtual_time, load_log *log);
/* Creates an engine with SIGINT/SIGTERM blocked in its threads (the main thread handles them).
 * Prints the error; returns 0 or CLI_FAILED. */
int load_engine(const sl_engine_config *cfg, sl_engine **out);

/* A YAML file loaded and built: config, engine, pipeline (each NULL until made). */
typedef struct load_yaml {
  sl_config *config;
  sl_engine *engine;
  sl_pipeline *pipeline;
} load_yaml;
/* Loads path with the --set list and builds it on a new engine (workers: the argument if > 0,
 * else the file's workers:, else $SLUICE_WORKERS or CPUs). Prints config errors as they are; returns 0,
 * CLI_USAGE (config errors) or CLI_FAILED. load_yaml_free releases what was made. */
int load_yaml_open(load_yaml *y, const char *path, const char *const *sets, size_t nsets, int workers,
                   bool virtual_time, load_log *log);
void load_yaml_free(load_yaml *y);

/* Runs a Lua script whose p:run() calls hook(ud, p, err). Returns CLI_OK, CLI_USAGE (a config
 * error), or CLI_FAILED (the script failed). The error is printed unless *reported (read after
 * the script ended; may be NULL) says the hook printed it already. */
int load_lua_run(const char *path, const sl_engine_config *cfg, sl_run_hook hook, void *ud,
                 const char *const *script_args, size_t nargs, const bool *reported);

/* ---- run.c: one run on this thread -------------------------------------------------------- */

#include <stdatomic.h>

/* What one run needs: `sluice run` (the YAML file, every p:run() of a script) and the REPL. */
typedef struct run_ctx {
  bool progress;        /* draw the live table (stderr is a terminal, or --progress) */
  bool forced;          /* --progress: draw it even where it would be garbled */
  bool quiet;           /* no progress, no summary, no log lines */
  const char *stats;    /* --stats FILE, or NULL */
  load_log *log;
  atomic_int *signals;  /* interrupts counted by the caller (a signal handler, a thread) */
  void (*tick)(void *ud); /* called a few times a second while it runs and once at the end,
                             holding log->mu; it erases log->progress before it prints. Or NULL */
  void *tick_ud;
  const char *outcome;  /* how the last run ended: "completed", "interrupted (drained)", ... */
  bool interrupted;     /* a signal ended a run */
  int status;           /* exit status of the last run */
  bool reported;        /* the last run's failure was printed (the script's error is not) */
  struct metrics *metrics; /* --metrics server (shows the pipeline while it runs), or NULL */
} run_ctx;
/* Starts p and waits for its end on this thread, drawing progress and acting on *c->signals (one:
 * drain, bounded by drain_timeout; two: abort); prints the summary. Returns the exit status
 * (CLI_OK, CLI_FAILED, CLI_USAGE, CLI_INTERRUPTED); err has the failure. */
int run_pipeline(run_ctx *c, sl_pipeline *p, sl_error_t *err);

/* ---- progress.c ------------------------------------------------------------------------ */

typedef struct progress progress;
/* A live table of p's stages on stderr, redrawn by progress_tick. */
progress *progress_new(sl_pipeline *p);
/* Redraws when a quarter of a second passed since the last drawing (or force). */
void progress_tick(progress *pr, bool force);
/* Erases the table (before other output; the next tick draws it again). */
void progress_erase(progress *pr);
void progress_free(progress *pr);
/* The summary at the end, to f: how it ended, elapsed, and a line per stage. Stages whose name
 * starts with '_' (helpers a tool added, such as the REPL's peek) are left out here and in the
 * table. */
void progress_summary(FILE *f, sl_pipeline *p, const char *outcome);

/* ---- metrics.c: `sluice run --metrics ADDR` -------------------------------------------- */

typedef struct metrics metrics;
/* Splits ADDR (PORT, HOST:PORT or [V6]:PORT; host default 127.0.0.1). -1 when malformed. */
int metrics_parse_addr(const char *addr, char *host, size_t hostlen, char *port, size_t portlen);
/* Listens on addr (own thread); prints the problem and returns -1 when it cannot. */
int metrics_start(const char *addr, metrics **out);
/* The pipeline to serve (until detached; it must live until then). NULL-safe. */
void metrics_attach(metrics *m, sl_pipeline *p);
/* /health says 503 from now on. */
void metrics_draining(metrics *m);
void metrics_detach(metrics *m);
void metrics_stop(metrics *m);

/* ---- verbs --------------------------------------------------------------------------- */

int run_main(int argc, char **argv);
int check_main(int argc, char **argv);
int graph_main(int argc, char **argv);
int test_main(int argc, char **argv);
int help_main(int argc, char **argv);
int repl_main(int argc, char **argv);
/* The options of a stage kind, as `sluice help STAGE` prints them. */
void help_stage(FILE *out, const sl_stage_kind *k);

/* ---- the REPL (repl.c: the loop and the commands; repl_edit.c: reading lines; repl_show.c:
 *      printing values) ------------------------------------------------------------------ */

struct lua_State;
/* Appends a readable text of the Lua value at idx to out (JSON-like tables, cut when large). */
void show_value(struct lua_State *L, int idx, sl_buf *out);

typedef struct edit edit;
/* What completion asks of the REPL. */
typedef struct edit_env {
  struct lua_State *L;          /* the REPL's state: globals, pipeline objects */
  const sl_engine *catalog;     /* stage kinds */
  const char *const *commands;  /* ":help", ... (NULL-terminated) */
} edit_env;
/* Line input: with line editing, completion and history (history_path, may be NULL) when
 * interactive; plain lines from stdin otherwise. */
edit *edit_new(bool interactive, const edit_env *env, const char *history_path);
void edit_free(edit *ed);
/* The next line without its newline (valid until the next call), or NULL at the end of input.
 * *cleared says Ctrl-C emptied the line (NULL is returned then too). */
const char *edit_line(edit *ed, const char *prompt, bool *cleared);
/* Adds a line to the history (and saves the history file). */
void edit_remember(edit *ed, const char *line);
/* A descriptor a signal handler writes a byte to (write is async-signal-safe) to end the line
 * being read as Ctrl-C does; -1 when not interactive. */
int edit_wake_fd(const edit *ed);

/* ---- graph.c: drawing a built pipeline ----------------------------------------------------- */
typedef enum graph_format { FORMAT_DOT, FORMAT_MERMAID } graph_format;
void graph_print(FILE *out, const sl_pipeline *p, graph_format f);
/* Boxes in one column for a terminal (the REPL's :graph). */
void graph_ascii(FILE *out, const sl_pipeline *p);
/* The usage of a verb ("run", "check", ...), or NULL if there is no such verb. */
const char *help_verb_usage(const char *verb);
/* The top-level usage. */
void help_usage(FILE *f);

#endif
