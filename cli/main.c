/*
 * main.c — the `sluice` program: dispatch to a verb. It uses only include/sluice.h, like any
 * embedding program; cli.h says which file does what, docs/cli.md is the user's reference.
 */
#include <string.h>

#include "cli.h"

typedef struct verb {
  const char *name;
  int (*main)(int argc, char **argv);
} verb;

static const verb verbs[] = {
    {"run", run_main}, {"check", check_main}, {"graph", graph_main}, {"test", test_main}, {"help", help_main},
    {"repl", repl_main},
};

int main(int argc, char **argv) {
  sl_tune_malloc();
  if (argc < 2) {
    help_usage(stderr);
    return CLI_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
    printf("sluice %s\n", SL_VERSION);
    return CLI_OK;
  }
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    help_usage(stdout);
    return CLI_OK;
  }
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
    if (strcmp(cmd, verbs[i].name) == 0) return verbs[i].main(argc - 2, argv + 2);
  fprintf(stderr, "sluice: unknown command '%s'", cmd);
  const char *names[sizeof verbs / sizeof verbs[0]];
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) names[i] = verbs[i].name;
  const char *dym = sl_did_you_mean(cmd, names, sizeof verbs / sizeof verbs[0]);
  if (dym) fprintf(stderr, "; did you mean '%s'?", dym);
  fprintf(stderr, "\n\n");
  help_usage(stderr);
  return CLI_USAGE;
}
