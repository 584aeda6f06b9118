/*
 * test.c — `sluice test FILE`: the `tests:` of a YAML pipeline file (DESIGN section 7), each on a
 * fresh engine on the virtual clock, so timers are exact and nothing really waits.
 */
#include <string.h>

#include "cli.h"

int test_main(int argc, char **argv) {
  const char *usage = help_verb_usage("test");
  static const args_flag flags[] = {{NULL, false, false}};
  args a;
  int status = args_parse(&a, "test", flags, argc, argv, usage);
  if (status) goto done;
  if (a.help) {
    fputs(usage, stdout);
    goto done;
  }
  if (!a.file || a.nrest) {
    status = args_error("test", usage, a.file ? "one FILE at a time" : "missing FILE");
    goto done;
  }
  load_type type = load_type_of(a.file);
  if (type != LOAD_YAML) {
    if (type == LOAD_LUA)
      fprintf(stderr, "sluice test: tests are written in YAML pipeline files (tests:); '%s' is a Lua script\n", a.file);
    else
      load_bad_type("test", a.file);
    status = CLI_USAGE;
    goto done;
  }
  sl_config *config = NULL;
  sl_error_t err;
  sl_error_init(&err);
  int rc = sl_config_load_file(a.file, NULL, &config, &err);
  if (rc) {
    fprintf(stderr, "%s\n", err.msg[0] ? err.msg : sl_strerror(rc));
    status = rc == SL_ECONFIG || rc == SL_EIO ? CLI_USAGE : CLI_FAILED;
    goto done;
  }
  size_t n = sl_config_test_count(config), failed = 0;
  if (n == 0) printf("%s: no tests (add a tests: list)\n", a.file);
  load_log log;
  load_log_init(&log, false);
  for (size_t i = 0; i < n && status != CLI_USAGE; i++) {
    const char *name = sl_config_test_name(config, i);
    sl_engine_config cfg;
    load_engine_config(&cfg, 2, true, &log);
    sl_engine *e;
    if (load_engine(&cfg, &e) != 0) {
      status = CLI_FAILED;
      break;
    }
    bool passed = false;
    sl_buf report;
    sl_buf_init(&report);
    sl_error_init(&err);
    rc = sl_config_run_test(config, i, e, &passed, &report, &err);
    if (rc == SL_ECONFIG) {
      fprintf(stderr, "%s\n", err.msg[0] ? err.msg : sl_strerror(rc));
      status = CLI_USAGE; /* a bad test is a config error: stop here */
    } else if (rc == 0 && passed) {
      printf("ok   %s\n", name);
    } else {
      failed++;
      printf("FAIL %s\n", name);
      if (rc) printf("  %s\n", err.msg[0] ? err.msg : sl_strerror(rc));
      if (report.len) {
        fwrite(report.data, 1, report.len, stdout);
        if (report.data[report.len - 1] != '\n') fputc('\n', stdout);
      }
    }
    fflush(stdout);
    sl_buf_close(&report);
    sl_engine_free(e);
  }
  load_log_close(&log);
  if (status == 0) {
    printf("%zu passed, %zu failed\n", n - failed, failed);
    if (failed) status = CLI_FAILED;
  }
  sl_config_free(config);
done:
  args_free(&a);
  return status;
}
