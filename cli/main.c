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
};

/* Edit distance, for "did you mean" on a mistyped verb. */
static size_t distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 30 || lb > 30) return 99;
  size_t d[32][32];
  for (size_t i = 0; i <= la; i++) d[i][0] = i;
  for (size_t j = 0; j <= lb; j++) d[0][j] = j;
  for (size_t i = 1; i <= la; i++)
    for (size_t j = 1; j <= lb; j++) {
      size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
      d[i][j] = best;
    }
  return d[la][lb];
}

int main(int argc, char **argv) {
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
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
    if (distance(cmd, verbs[i].name) <= 2) {
      fprintf(stderr, "; did you mean '%s'?", verbs[i].name);
      break;
    }
  fprintf(stderr, "\n\n");
  help_usage(stderr);
  return CLI_USAGE;
}
