/*
 * main.c — the `sluice` program. It uses only include/sluice.h, like any embedding program.
 *
 * Today: `sluice --version` and `sluice help [STAGE]` (generated from the stage kinds' options
 * tables). `run`, `check`, `graph` and `test` arrive with the YAML front end.
 */
#include <stdio.h>
#include <string.h>

#include "sluice.h"

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

static const char *type_name(const sl_option *o) {
  switch (o->type) {
  case SL_OPT_BOOL: return "bool";
  case SL_OPT_INT: return "integer";
  case SL_OPT_DOUBLE: return "number";
  case SL_OPT_SIZE: return "size";
  case SL_OPT_DURATION: return "duration";
  case SL_OPT_STRING: return "string";
  case SL_OPT_ENUM: return o->choices;
  case SL_OPT_VALUE: return "value";
  case SL_OPT_PTR: return "C API only";
  default: return "?";
  }
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: sluice <command> [arguments]\n"
          "\n"
          "commands:\n"
          "  help [STAGE]   list the stage kinds, or the options of one\n"
          "  --version      print the version\n");
}

static int help_stage(const sl_stage_kind *k) {
  printf("%s — %s\n", k->name, k->doc);
  const char *role = (k->flags & SL_STAGE_SOURCE) ? "source" : (k->flags & SL_STAGE_SINK) ? "sink" : "transform";
  printf("kind: %s%s\n", role, (k->flags & SL_STAGE_STATELESS) ? " (stateless: runs on every worker)" : "");
  if (!k->options || k->options[0].type == SL_OPT_END) {
    printf("options: none\n");
    return EXIT_OK;
  }
  printf("options:\n");
  for (const sl_option *o = k->options; o->type != SL_OPT_END; o++) {
    printf("  %-12s %-20s %s", o->key, type_name(o), o->help);
    if (o->flags & SL_OPT_REQUIRED) printf(" (required)");
    else if (o->def) printf(" (default: %s)", o->def);
    if (o->flags & SL_OPT_PRIMARY) printf(" [shorthand: %s: VALUE]", k->name);
    printf("\n");
  }
  return EXIT_OK;
}

static int cmd_help(int argc, char **argv) {
  sl_engine_config cfg;
  sl_engine_config_init(&cfg);
  cfg.workers = 1;
  sl_engine *e;
  sl_error_t err;
  sl_error_init(&err);
  if (sl_engine_new(&cfg, &e, &err) != 0) {
    fprintf(stderr, "sluice: %s\n", err.msg);
    return EXIT_RUNTIME;
  }
  int rc = EXIT_OK;
  if (argc > 0) {
    const sl_stage_kind *k = sl_engine_kind(e, argv[0]);
    if (k) {
      rc = help_stage(k);
    } else {
      fprintf(stderr, "sluice: no stage kind named '%s' (sluice help lists them)\n", argv[0]);
      rc = EXIT_USAGE;
    }
  } else {
    printf("stage kinds (sluice help STAGE for its options):\n");
    for (size_t i = 0; i < sl_engine_kind_count(e); i++) {
      const sl_stage_kind *k = sl_engine_kind_at(e, i);
      printf("  %-10s %s\n", k->name, k->doc);
    }
  }
  sl_engine_free(e);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
    printf("sluice %s\n", SL_VERSION);
    return EXIT_OK;
  }
  if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)
    return strcmp(cmd, "help") == 0 ? cmd_help(argc - 2, argv + 2) : (usage(stdout), EXIT_OK);
  fprintf(stderr, "sluice: unknown command '%s'\n", cmd);
  usage(stderr);
  return EXIT_USAGE;
}
