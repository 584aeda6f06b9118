/*
 * check.c — `sluice check FILE`: load, build and check the graph without running anything.
 */
#include <string.h>

#include "cli.h"

typedef struct check_ctx {
  const char *file;
  int status;      /* CLI_OK until a pipeline fails its check */
  bool reported;   /* the failure was printed */
} check_ctx;

/* Checks one built pipeline; prints "FILE: ok (N stages)" or its problems. */
static int check_pipeline(check_ctx *c, sl_pipeline *p, sl_error_t *err) {
  int rc = sl_pipeline_check(p, err);
  if (rc) {
    fprintf(stderr, "%s\n", err->msg[0] ? err->msg : sl_strerror(rc));
    c->status = CLI_USAGE;
    c->reported = true;
    return rc;
  }
  printf("%s: ok (%zu stage%s)\n", c->file, sl_pipeline_stage_count(p), sl_pipeline_stage_count(p) == 1 ? "" : "s");
  return 0;
}

/* The run hook of a Lua script under check: p:run() checks instead of running. */
static int check_hook(void *ud, sl_pipeline *p, sl_error_t *err) { return check_pipeline(ud, p, err); }

int check_main(int argc, char **argv) {
  const char *usage = help_verb_usage("check");
  args a;
  static const args_flag flags[] = {{NULL, false, false}};
  int status = args_parse(&a, "check", flags, argc, argv, usage);
  if (status) goto done;
  if (a.help) {
    fputs(usage, stdout);
    goto done;
  }
  if (!a.file || a.nrest) {
    status = args_error("check", usage, a.file ? "one FILE at a time" : "missing FILE");
    goto done;
  }
  load_type type = load_type_of(a.file);
  if (type == LOAD_OTHER) {
    status = load_bad_type("check", a.file);
    goto done;
  }
  check_ctx c = {a.file, CLI_OK, false};
  load_log log;
  load_log_init(&log, false);
  if (type == LOAD_YAML) {
    load_yaml y;
    status = load_yaml_open(&y, a.file, NULL, 0, 1, false, &log);
    if (status == 0) {
      sl_error_t err;
      sl_error_init(&err);
      check_pipeline(&c, y.pipeline, &err);
      status = c.status;
    }
    load_yaml_free(&y);
  } else {
    sl_engine_config cfg;
    load_engine_config(&cfg, 1, false, &log);
    status = load_lua_run(a.file, &cfg, check_hook, &c, NULL, 0, &c.reported);
    if (c.status != CLI_OK) status = c.status;
  }
  load_log_close(&log);
done:
  args_free(&a);
  return status;
}
