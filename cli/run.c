/*
 * run.c — `sluice run FILE`: the main thread owns the pipeline. It starts it and loops on
 * sl_pipeline_wait with a short timeout, redrawing the progress table and acting on signals.
 *
 * Signals. The SIGINT/SIGTERM handler only counts (async-signal-safe); the loop acts on the
 * count: the first signal drains (sl_pipeline_stop: sources stop, records in flight reach the
 * sinks, files are renamed into place), bounded by the pipeline's drain_timeout (default 30s),
 * after which it aborts; a second signal aborts at once. Either way the exit status is 130.
 * While no pipeline is running (loading, or a Lua script between runs) a signal has its default
 * effect: nothing needs to be drained then.
 *
 * SIGPIPE. The engine's threads block SIGPIPE, so the stdout sink sees EPIPE when the reader
 * goes away (`sluice run x.yaml | head -1`); it then stops reading and cancels upstream, so the
 * pipeline ends normally and quietly: exit 0, like a stage that wanted no more input (take).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define DEFAULT_DRAIN_NS (30 * (int64_t)1000000000)
#define WAIT_STEP_NS (100 * (int64_t)1000000)

static atomic_int signals_seen;            /* SIGINT/SIGTERM received while a pipeline runs
                                              (lock-free: safe in a handler) */

static volatile sig_atomic_t owning;       /* the main thread is running a pipeline */

static void on_signal(int sig) {
  if (!owning) { /* nothing to drain: the default effect (the shell sees 128 + sig) */
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  if (atomic_load(&signals_seen) < 100) atomic_fetch_add(&signals_seen, 1);
}

static void install_handlers(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The pipeline's drain_timeout: a duration string or a number of seconds; 30s by default. */
static int64_t drain_timeout(const sl_pipeline *p) {
  const sl_value *v = sl_pipeline_setting(p, "drain_timeout");
  int64_t ns = DEFAULT_DRAIN_NS;
  if (!v) return ns;
  if (sl_typeof(v) == SL_TSTR && sl_parse_duration(sl_str_data(v), &ns) == 0) return ns;
  if (sl_typeof(v) == SL_TINT) return v->u.i * 1000000000;
  if (sl_typeof(v) == SL_TDOUBLE) return (int64_t)(v->u.d * 1e9);
  return DEFAULT_DRAIN_NS;
}

static int write_stats(const char *path, const sl_pipeline *p) {
  sl_buf b;
  sl_buf_init(&b);
  int rc = sl_pipeline_stats_json(p, &b);
  if (rc == 0) rc = sl_buf_append(&b, "\n", 1);
  FILE *f = rc == 0 ? fopen(path, "w") : NULL;
  if (!f || fwrite(b.data, 1, b.len, f) != b.len || fclose(f) != 0) {
    if (f) fclose(f);
    fprintf(stderr, "sluice: cannot write the stats to '%s'\n", path);
    rc = -1;
  }
  sl_buf_close(&b);
  return rc ? CLI_FAILED : 0;
}

static void say(run_ctx *c, const char *msg) {
  if (c->quiet) return;
  pthread_mutex_lock(&c->log->mu);
  if (c->log->progress) progress_erase(c->log->progress);
  fprintf(stderr, "sluice: %s\n", msg);
  pthread_mutex_unlock(&c->log->mu);
}

/* The tick callback, holding the log mutex (it erases the table before it prints). */
static void tick(run_ctx *c) {
  if (!c->tick) return;
  pthread_mutex_lock(&c->log->mu);
  c->tick(c->tick_ud);
  pthread_mutex_unlock(&c->log->mu);
}

/* A stdout stage writing to the terminal the table is drawn on would be garbled by the redraws
 * (and its lines erased by them): the table is left out then, unless --progress. */
static bool stdout_on_terminal(const sl_pipeline *p) {
  if (!isatty(STDOUT_FILENO)) return false;
  for (size_t i = 0; i < sl_pipeline_stage_count(p); i++) {
    sl_stage_info si;
    if (sl_pipeline_stage_info(p, i, &si) == 0 && strcmp(si.kind, "stdout") == 0) return true;
  }
  return false;
}

int run_pipeline(run_ctx *c, sl_pipeline *p, sl_error_t *err) {
  bool table = c->progress && (c->forced || !stdout_on_terminal(p));
  progress *pr = table ? progress_new(p) : NULL;
  atomic_store(c->signals, 0);
  c->outcome = "not started";
  int rc = sl_pipeline_start(p, err);
  if (rc) {
    progress_free(pr);
    if (rc == SL_ECONFIG) fprintf(stderr, "%s\n", err->msg);
    else fprintf(stderr, "sluice: cannot start pipeline '%s': %s\n", sl_pipeline_name(p), err->msg);
    return rc == SL_ECONFIG ? CLI_USAGE : CLI_FAILED;
  }
  metrics_attach(c->metrics, p);
  pthread_mutex_lock(&c->log->mu);
  c->log->progress = pr;
  if (pr) progress_tick(pr, true);
  pthread_mutex_unlock(&c->log->mu);
  bool stopping = false, aborting = false;
  int64_t drain_deadline = 0;
  for (;;) {
    rc = sl_pipeline_wait(p, WAIT_STEP_NS, err);
    if (rc != SL_ETIMEDOUT) break;
    tick(c);
    int seen = atomic_load(c->signals);
    if (seen >= 1 && !stopping) {
      stopping = true;
      drain_deadline = mono_ns() + drain_timeout(p);
      say(c, "interrupted: draining (interrupt again to abort)");
      metrics_draining(c->metrics);
      sl_pipeline_stop(p);
    }
    if (stopping && !aborting && (seen >= 2 || mono_ns() > drain_deadline)) {
      aborting = true;
      say(c, seen >= 2 ? "interrupted again: aborting" : "the drain took longer than drain_timeout: aborting");
      sl_pipeline_abort(p);
    }
    if (pr) {
      pthread_mutex_lock(&c->log->mu);
      progress_tick(pr, false);
      pthread_mutex_unlock(&c->log->mu);
    }
  }
  tick(c);
  metrics_detach(c->metrics);
  pthread_mutex_lock(&c->log->mu);
  if (pr) progress_erase(pr);
  c->log->progress = NULL;
  pthread_mutex_unlock(&c->log->mu);
  progress_free(pr);

  bool interrupted = stopping || atomic_load(c->signals) > 0;
  const char *outcome = "completed";
  int status = CLI_OK;
  if (interrupted) {
    c->interrupted = true;
    status = CLI_INTERRUPTED;
    outcome = aborting || rc == SL_EABORTED ? "interrupted (aborted)" : "interrupted (drained)";
  } else if (rc != SL_OK) {
    status = CLI_FAILED;
    outcome = "failed";
  }
  c->outcome = outcome;
  if (!c->quiet) progress_summary(stderr, p, outcome);
  if (rc != SL_OK && !interrupted && (c->quiet || strcmp(c->log->last_error, err->msg) != 0))
    fprintf(stderr, "sluice: pipeline '%s' failed: %s\n", sl_pipeline_name(p), err->msg);
  if (c->stats && write_stats(c->stats, p) != 0 && status == CLI_OK) status = CLI_FAILED;
  return status;
}

/* run_pipeline with the handler owning the signals; after an interrupt, further signals change
 * nothing: the program exits 130. */
static int run_owned(run_ctx *c, sl_pipeline *p, sl_error_t *err) {
  owning = 1;
  int status = run_pipeline(c, p, err);
  if (status != CLI_INTERRUPTED) owning = 0;
  return status;
}

/* The run hook of Lua scripts: p:run() runs like a YAML pipeline. An interrupted run raises in
 * the script (SL_EABORTED), so the script ends instead of going on. */
static int lua_hook(void *ud, sl_pipeline *p, sl_error_t *err) {
  run_ctx *c = ud;
  sl_error_t e2;
  sl_error_init(&e2);
  c->status = run_owned(c, p, &e2);
  c->reported = c->status != CLI_OK;
  switch (c->status) {
  case CLI_OK: return 0;
  case CLI_INTERRUPTED: return sl_error_set(err, SL_EABORTED, NULL, "interrupted");
  case CLI_USAGE: return sl_error_set(err, SL_ECONFIG, e2.stage, "%s", e2.msg);
  default: return sl_error_set(err, SL_EFAILED, e2.stage, "%s", e2.msg[0] ? e2.msg : "pipeline failed");
  }
}

enum { F_SET, F_WORKERS, F_VIRTUAL, F_PROGRESS, F_QUIET, F_STATS, F_METRICS };
static const args_flag run_flags[] = {
    [F_SET] = {"set", true, true},
    [F_WORKERS] = {"workers", true, false},
    [F_VIRTUAL] = {"virtual-time", false, false},
    [F_PROGRESS] = {"progress", false, false},
    [F_QUIET] = {"quiet", false, false},
    [F_STATS] = {"stats", true, false},
    [F_METRICS] = {"metrics", true, false},
    {NULL, false, false},
};

int run_main(int argc, char **argv) {
  const char *usage = help_verb_usage("run");
  args a;
  int status = args_parse(&a, "run", run_flags, argc, argv, usage);
  if (status) goto done;
  if (a.help) {
    fputs(usage, stdout);
    goto done;
  }
  if (!a.file) {
    status = args_error("run", usage, "missing FILE");
    goto done;
  }
  if (a.values[F_PROGRESS] && a.values[F_QUIET]) {
    status = args_error("run", usage, "--progress and --quiet exclude each other");
    goto done;
  }
  int workers = 0;
  if (a.values[F_WORKERS] && (workers = args_int(&a, F_WORKERS, "--workers", 1, 256)) < 0) {
    status = CLI_USAGE;
    goto done;
  }
  if ((status = load_check_env_workers()) != 0) goto done; /* the engine reads it */
  load_type type = load_type_of(a.file);
  if (type == LOAD_OTHER) {
    status = load_bad_type("run", a.file);
    goto done;
  }
  if (type == LOAD_YAML && a.nrest) {
    status = args_error("run", usage, "unexpected argument '%s' (arguments after FILE are for Lua scripts)", a.rest[0]);
    goto done;
  }
  if (type == LOAD_LUA && a.nsets) {
    status = args_error("run", usage, "--set applies to YAML files; pass arguments to a Lua script after FILE");
    goto done;
  }
  char mhost[256], mport[16];
  if (a.values[F_METRICS] && metrics_parse_addr(a.values[F_METRICS], mhost, sizeof mhost, mport, sizeof mport) != 0) {
    status = args_error("run", usage, "--metrics '%s': give PORT or HOST:PORT", a.values[F_METRICS]);
    goto done;
  }
  bool quiet = a.values[F_QUIET] != NULL;
  bool virtual_time = a.values[F_VIRTUAL] != NULL;
  load_log log;
  load_log_init(&log, quiet);
  run_ctx c = {0};
  c.quiet = quiet;
  c.forced = a.values[F_PROGRESS] != NULL;
  c.progress = c.forced || (!quiet && isatty(STDERR_FILENO));
  c.stats = a.values[F_STATS];
  c.log = &log;
  c.signals = &signals_seen;
  if (a.values[F_METRICS] && metrics_start(a.values[F_METRICS], &c.metrics) != 0) {
    load_log_close(&log);
    status = CLI_FAILED;
    goto done;
  }
  install_handlers();
  if (type == LOAD_YAML) {
    load_yaml y;
    status = load_yaml_open(&y, a.file, a.sets, a.nsets, workers, virtual_time, &log);
    if (status == 0) {
      sl_error_t err;
      sl_error_init(&err);
      status = run_owned(&c, y.pipeline, &err);
    }
    load_yaml_free(&y);
  } else {
    sl_engine_config cfg;
    load_engine_config(&cfg, workers, virtual_time, &log);
    c.status = CLI_OK;
    status = load_lua_run(a.file, &cfg, lua_hook, &c, a.rest, a.nrest, &c.reported);
    if (c.interrupted) status = CLI_INTERRUPTED;
    else if (status == CLI_FAILED && c.status != CLI_OK) status = c.status; /* the run's own */
  }
  metrics_stop(c.metrics);
  load_log_close(&log);
done:
  args_free(&a);
  return status;
}
