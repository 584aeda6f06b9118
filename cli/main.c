/*
 * main.c — the `sluice` program: dispatch to a verb. It uses only include/sluice.h, like any
 * embedding program; cli.h says which file does what, docs/cli.md is the user's reference.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#ifdef SL_MIMALLOC
#include <mimalloc.h>
#endif

/* `sluice version`: the version, and which malloc serves the records. */
static void print_version(void) {
  printf("sluice %s\n", SL_VERSION);
#ifdef SL_MIMALLOC
  void *probe = malloc(16); /* is malloc really mimalloc's (linked before libc)? */
  bool ours = mi_is_in_heap_region(probe);
  free(probe);
  int v = mi_version();
  printf("malloc: mimalloc %d.%d.%d%s\n", v / 100, v % 100 / 10, v % 10, ours ? "" : " (linked, but not serving malloc)");
#else
  printf("malloc: the C library's\n");
#endif
}

typedef struct verb {
  const char *name;
  int (*main)(int argc, char **argv);
} verb;

static const verb verbs[] = {
    {"run", run_main}, {"check", check_main}, {"graph", graph_main}, {"test", test_main}, {"help", help_main},
    {"repl", repl_main},
};

int main(int argc, char **argv) {
#ifndef SL_MIMALLOC
  sl_tune_malloc(); /* glibc's malloc only */
#endif
  if (argc < 2) {
    help_usage(stderr);
    return CLI_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
    print_version();
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
