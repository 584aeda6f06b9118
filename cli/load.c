/*
 * load.c — opening pipeline files for the verbs: a YAML file is loaded into an sl_config and built
 * on an engine; a Lua script runs with a run hook that decides what its p:run() does (run,
 * check, graph). Also the engine configuration every verb uses and its log callback.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* Past this many warnings (a stage that skips every record) the rest are counted, not printed. */
#define MAX_WARNINGS 100

load_type load_type_of(const char *path) {
  const char *dot = strrchr(path, '.');
  const char *slash = strrchr(path, '/');
  if (!dot || (slash && dot < slash)) return LOAD_OTHER;
  if (strcmp(dot, ".yaml") == 0 || strcmp(dot, ".yml") == 0) return LOAD_YAML;
  if (strcmp(dot, ".lua") == 0) return LOAD_LUA;
  return LOAD_OTHER;
}

int load_bad_type(const char *verb, const char *path) {
  fprintf(stderr, "sluice %s: '%s' is not a pipeline file: the name must end in .yaml, .yml or .lua\n", verb, path);
  return CLI_USAGE;
}

void load_log_init(load_log *log, bool quiet) {
  memset(log, 0, sizeof *log);
  pthread_mutex_init(&log->mu, NULL);
  log->quiet = quiet;
}

void load_log_close(load_log *log) { pthread_mutex_destroy(&log->mu); }

/* Called from any engine thread. Warnings and errors only; info and debug are for embedders
 * who ask for them. A message that does not name its stage gets the name in front. */
void load_log_cb(void *ud, int level, const char *stage, const char *msg) {
  load_log *log = ud;
  if (log->quiet || level > SL_LOG_WARN) return;
  pthread_mutex_lock(&log->mu);
  if (level == SL_LOG_WARN && ++log->warnings > MAX_WARNINGS) {
    if (log->warnings == MAX_WARNINGS + 1) {
      if (log->progress) progress_erase(log->progress);
      fprintf(stderr, "sluice: more warnings are not shown (the summary counts every error)\n");
    }
    pthread_mutex_unlock(&log->mu);
    return;
  }
  if (log->progress) progress_erase(log->progress);
  const char *what = level == SL_LOG_ERROR ? "error" : "warning";
  if (stage && *stage && !strstr(msg, stage)) fprintf(stderr, "sluice: %s: %s: %s\n", what, stage, msg);
  else fprintf(stderr, "sluice: %s: %s\n", what, msg);
  if (level == SL_LOG_ERROR) snprintf(log->last_error, sizeof log->last_error, "%s", msg);
  pthread_mutex_unlock(&log->mu);
}

int load_check_env_workers(void) {
  sl_error_t err;
  sl_error_init(&err);
  if (sl_engine_default_workers(&err) > 0) return 0;
  fprintf(stderr, "sluice: %s: fix it or unset it\n", err.msg);
  return CLI_USAGE;
}

void load_engine_config(sl_engine_config *cfg, int workers, bool virtual_time, load_log *log) {
  sl_engine_config_init(cfg);
  cfg->workers = workers;
  cfg->virtual_time = virtual_time;
  if (log) {
    cfg->log = load_log_cb;
    cfg->log_ud = log;
    cfg->log_level = SL_LOG_WARN;
  }
}

/* The engine's threads inherit the signal mask of the thread that makes them: with SIGINT and
 * SIGTERM blocked there, only the main thread (which owns the pipeline) ever takes them. */
int load_engine(const sl_engine_config *cfg, sl_engine **out) {
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  sl_error_t err;
  sl_error_init(&err);
  int rc = sl_engine_new(cfg, out, &err);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc) {
    fprintf(stderr, "sluice: cannot start the engine: %s\n", err.msg[0] ? err.msg : sl_strerror(rc));
    *out = NULL;
    return CLI_FAILED;
  }
  return 0;
}

/* A config error prints err->msg as it is: it names file:line:col already (one per line). */
static int print_load_error(int rc, const sl_error_t *err, const char *path) {
  if (err->msg[0]) fprintf(stderr, "%s\n", err->msg);
  else fprintf(stderr, "%s: %s\n", path, sl_strerror(rc));
  return rc == SL_ECONFIG || rc == SL_EIO ? CLI_USAGE : CLI_FAILED;
}

int load_yaml_open(load_yaml *y, const char *path, const char *const *sets, size_t nsets, int workers,
                   bool virtual_time, load_log *log) {
  memset(y, 0, sizeof *y);
  sl_error_t err;
  sl_error_init(&err);
  sl_load_options o = {sets, nsets};
  int rc = sl_config_load_file(path, &o, &y->config, &err);
  if (rc) {
    y->config = NULL;
    return print_load_error(rc, &err, path);
  }
  if (workers <= 0) workers = sl_config_workers(y->config);
  sl_engine_config cfg;
  load_engine_config(&cfg, workers, virtual_time, log);
  rc = load_engine(&cfg, &y->engine);
  if (rc) return rc;
  rc = sl_config_build(y->config, y->engine, &y->pipeline, &err);
  if (rc) {
    y->pipeline = NULL;
    return print_load_error(rc, &err, path);
  }
  return 0;
}

void load_yaml_free(load_yaml *y) {
  sl_pipeline_free(y->pipeline);
  if (y->engine) sl_engine_free(y->engine);
  if (y->config) sl_config_free(y->config);
  memset(y, 0, sizeof *y);
}

int load_lua_run(const char *path, const sl_engine_config *cfg, sl_run_hook hook, void *ud,
                 const char *const *script_args, size_t nargs, const bool *reported) {
  sl_script_options o;
  sl_script_options_init(&o);
  o.engine = *cfg;
  o.run = hook;
  o.run_ud = ud;
  o.args = script_args;
  o.nargs = nargs;
  sl_error_t err;
  sl_error_init(&err);
  int rc = sl_script_run_file(path, &o, &err);
  if (rc == 0) return CLI_OK;
  if (reported && *reported) return rc == SL_ECONFIG ? CLI_USAGE : CLI_FAILED;
  if (rc == SL_ECONFIG || rc == SL_EIO) return print_load_error(rc, &err, path);
  fprintf(stderr, "sluice: %s\n", err.msg[0] ? err.msg : sl_strerror(rc));
  return CLI_FAILED;
}
