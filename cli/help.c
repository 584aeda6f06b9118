/*
 * help.c — the usage of the program and of each verb, `sluice help [STAGE|VERB]`, and the stage
 * reference in Markdown (`sluice help --markdown`, committed as docs/stages.md). Everything about
 * stages is generated from the kinds' options tables, so help and docs cannot disagree with them.
 */
#include <string.h>

#include "cli.h"

static const char usage_top[] =
    "usage: sluice <command> [arguments]\n"
    "\n"
    "commands:\n"
    "  run FILE       run a pipeline (YAML or Lua), with live progress on a terminal\n"
    "  check FILE     validate a pipeline without running it\n"
    "  graph FILE     print the pipeline's graph (Graphviz dot or Mermaid)\n"
    "  test FILE      run the tests of a YAML pipeline file on the virtual clock\n"
    "  repl [FILE]    an interactive Lua prompt with sluice loaded (FILE's pipeline as p)\n"
    "  help [STAGE]   list the stage kinds, or the options of one; help VERB for a command\n"
    "  --version      print the version\n"
    "\n"
    "sluice COMMAND --help shows a command's flags. Exit status: 0 success, 1 the pipeline\n"
    "failed (or a test did), 2 usage or configuration error, 130 interrupted.\n";

static const char usage_run[] =
    "usage: sluice run FILE [--set PATH=VALUE]... [--workers N] [--virtual-time]\n"
    "                       [--progress|--quiet] [--stats FILE] [--metrics ADDR] [ARGS...]\n"
    "\n"
    "Runs a pipeline file: YAML (.yaml, .yml) or a Lua script (.lua).\n"
    "\n"
    "  --set PATH=VALUE  override a value of a YAML file: a top-level key (workers=4) or\n"
    "                    <stage name>.<option> (read.path=x.log); may be repeated\n"
    "  --workers N       worker threads (default: the file's workers:, else $SLUICE_WORKERS,\n"
    "                    else one per CPU)\n"
    "  --virtual-time    run on the virtual clock: timers fire at once, in order\n"
    "  --progress        draw the live table even when stderr is not a terminal\n"
    "  --quiet           no progress table, no summary, no warnings (errors are printed)\n"
    "  --stats FILE      write the stats as JSON to FILE when the run ends\n"
    "  --metrics ADDR    serve /metrics (Prometheus), /stats (JSON) and /health over HTTP while\n"
    "                    it runs; ADDR is PORT or HOST:PORT (the host defaults to 127.0.0.1)\n"
    "\n"
    "ARGS after FILE go to a Lua script (its arg table); put -- before ones that start with -.\n"
    "Ctrl-C (SIGINT) or SIGTERM drains: sources stop, records in flight reach the sinks; a second\n"
    "one aborts. Exit status: 0 done, 1 the pipeline failed, 2 usage or configuration error,\n"
    "130 interrupted.\n";

static const char usage_check[] =
    "usage: sluice check FILE\n"
    "\n"
    "Loads and builds the pipeline and checks its graph without running anything. Prints\n"
    "\"FILE: ok (N stages)\" and exits 0, or prints every problem (file:line:col: ...) and exits 2.\n"
    "A Lua script runs with p:run() checking its pipeline instead of running it.\n";

static const char usage_graph[] =
    "usage: sluice graph FILE [--format dot|mermaid]\n"
    "\n"
    "Prints the pipeline's graph: stages with their kind and main options, edges with their\n"
    "queue policy, the dead-letter stage dashed. dot (the default) renders with Graphviz\n"
    "(sluice graph p.yaml | dot -Tsvg > p.svg); mermaid renders in Markdown viewers.\n";

static const char usage_test[] =
    "usage: sluice test FILE\n"
    "\n"
    "Runs the tests: of a YAML pipeline file, each on a fresh engine on the virtual clock with no\n"
    "real source or sink touched. Prints \"ok   NAME\" or \"FAIL NAME\" and a diff per test; exits 1\n"
    "when any failed, 2 on configuration errors, 0 otherwise.\n";

static const char usage_repl[] =
    "usage: sluice repl [FILE] [--workers N] [--virtual-time]\n"
    "\n"
    "A Lua 5.4 prompt with sluice loaded: build pipelines line by line, run them with live\n"
    "progress, draw and inspect them. FILE (YAML or Lua) is loaded first; its pipeline is p.\n"
    "Commands: :help [STAGE], :graph [P] [--format dot|mermaid [FILE]], :run [P], :stats,\n"
    ":load FILE, :peek STAGE [N], :quit. Ctrl-C stops a running pipeline (it drains) or clears\n"
    "the line; Ctrl-D exits. History is kept in ~/.sluice_history. With input from a pipe it\n"
    "reads without prompts or line editing, and exits 1 if any input failed.\n"
    "\n"
    "  --workers N       worker threads of the pipelines it builds (default: a script's\n"
    "                    workers, else $SLUICE_WORKERS, else one per CPU)\n"
    "  --virtual-time    run them on the virtual clock: timers fire at once, in order\n";

static const char usage_help[] =
    "usage: sluice help [STAGE|COMMAND] [--markdown]\n"
    "\n"
    "Without argument lists the stage kinds; with a kind, its options (generated from the kind's\n"
    "options table); with a command, its usage. --markdown prints the reference of every stage\n"
    "kind in Markdown (docs/stages.md is this output).\n";

const char *help_verb_usage(const char *verb) {
  if (strcmp(verb, "run") == 0) return usage_run;
  if (strcmp(verb, "check") == 0) return usage_check;
  if (strcmp(verb, "graph") == 0) return usage_graph;
  if (strcmp(verb, "test") == 0) return usage_test;
  if (strcmp(verb, "help") == 0) return usage_help;
  if (strcmp(verb, "repl") == 0) return usage_repl;
  return NULL;
}

void help_usage(FILE *f) { fputs(usage_top, f); }

static const char *type_name(const sl_option *o) {
  switch (o->type) {
  case SL_OPT_BOOL: return "bool";
  case SL_OPT_INT: return "integer";
  case SL_OPT_DOUBLE: return "number";
  case SL_OPT_SIZE: return "size";
  case SL_OPT_DURATION: return "duration";
  case SL_OPT_STRING: return o->flags & SL_OPT_LUA ? "Lua function" : "string";
  case SL_OPT_ENUM: return o->choices;
  case SL_OPT_VALUE: return "value";
  case SL_OPT_PTR: return "C API only";
  default: return "?";
  }
}

static const char *role_of(const sl_stage_kind *k) {
  return (k->flags & SL_STAGE_SOURCE) ? "source" : (k->flags & SL_STAGE_SINK) ? "sink" : "transform";
}

void help_stage(FILE *out, const sl_stage_kind *k) {
  fprintf(out, "%s — %s\n", k->name, k->doc);
  fprintf(out, "kind: %s%s\n", role_of(k), (k->flags & SL_STAGE_STATELESS) ? " (stateless: runs on every worker)" : "");
  if (!k->options || k->options[0].type == SL_OPT_END) {
    fprintf(out, "options: none\n");
    return;
  }
  fprintf(out, "options:\n");
  for (const sl_option *o = k->options; o->type != SL_OPT_END; o++) {
    fprintf(out, "  %-12s %-20s %s", o->key, type_name(o), o->help);
    if (o->flags & SL_OPT_REQUIRED) fprintf(out, " (required)");
    else if (o->def) fprintf(out, " (default: %s)", o->def);
    if (o->flags & SL_OPT_PRIMARY) fprintf(out, " [shorthand: %s: VALUE]", k->name);
    fprintf(out, "\n");
  }
}

/* Markdown table cells: '|' would end the cell. */
static void md_text(const char *s) {
  for (; s && *s; s++) {
    if (*s == '|') fputs("\\|", stdout);
    else if (*s == '\n') fputc(' ', stdout);
    else fputc(*s, stdout);
  }
}

static void md_type(const sl_option *o) {
  if (o->type != SL_OPT_ENUM) {
    fputs(type_name(o), stdout);
    return;
  }
  fputs("one of ", stdout);
  const char *c = o->choices ? o->choices : "";
  while (*c) {
    size_t n = strcspn(c, "|");
    printf("`%.*s`%s", (int)n, c, c[n] ? ", " : "");
    c += n + (c[n] != 0);
  }
}

static void help_markdown(const sl_engine *e) {
  printf("# Stage reference\n\n"
         "<!-- Generated by `sluice help --markdown` from the stage kinds' options tables. Do not edit:\n"
         "     regenerate with `build/sluice help --markdown > docs/stages.md` (tests/cli/docs.sh\n"
         "     fails when this file is stale). -->\n\n"
         "Every stage also takes the common keys `name` (default `<kind>#<index>`), `input` (a stage\n"
         "name or a list of names; default the previous stage), `on_error` (`skip`, `fail` or\n"
         "`dead_letter`), `parallelism` (stateless kinds: an integer or `auto`) and `queue`\n"
         "(`{capacity: N, on_full: block|drop_newest|drop_oldest}`, the policy of its input edges).\n"
         "Durations are written `250ms`, `2s`, `1m`, `1h` or as seconds; sizes `512`, `64KiB`, `1MiB`, `10MB`.\n\n");
  printf("| kind | role | description |\n|---|---|---|\n");
  for (size_t i = 0; i < sl_engine_kind_count(e); i++) {
    const sl_stage_kind *k = sl_engine_kind_at(e, i);
    printf("| [`%s`](#%s) | %s | ", k->name, k->name, role_of(k));
    md_text(k->doc);
    printf(" |\n");
  }
  for (size_t i = 0; i < sl_engine_kind_count(e); i++) {
    const sl_stage_kind *k = sl_engine_kind_at(e, i);
    printf("\n## %s\n\n", k->name);
    md_text(k->doc);
    printf(".\n\nRole: %s%s%s.\n\n", role_of(k), (k->flags & SL_STAGE_STATELESS) ? ", stateless (runs as `parallelism` instances)" : "",
           (k->flags & SL_STAGE_PASSIVE) ? ", driven by the embedding program (C API)" : "");
    if (!k->options || k->options[0].type == SL_OPT_END) {
      printf("No options.\n");
      continue;
    }
    printf("| option | type | default | description |\n|---|---|---|---|\n");
    for (const sl_option *o = k->options; o->type != SL_OPT_END; o++) {
      printf("| `%s` | ", o->key);
      md_type(o);
      if (o->flags & SL_OPT_REQUIRED) printf(" | required | ");
      else if (o->def) printf(" | `%s` | ", o->def);
      else printf(" | | ");
      md_text(o->help);
      if (o->flags & SL_OPT_PRIMARY) printf(" (shorthand: `%s: VALUE`)", k->name);
      printf(" |\n");
    }
  }
}

int help_main(int argc, char **argv) {
  bool markdown = false;
  const char *topic = NULL;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--markdown") == 0) markdown = true;
    else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(usage_help, stdout);
      return CLI_OK;
    } else if (argv[i][0] == '-' || topic) {
      fprintf(stderr, "sluice help: unexpected argument '%s'\n%s", argv[i], usage_help);
      return CLI_USAGE;
    } else topic = argv[i];
  }
  if (topic && help_verb_usage(topic)) {
    fputs(help_verb_usage(topic), stdout);
    return CLI_OK;
  }
  sl_engine_config cfg;
  load_engine_config(&cfg, 1, false, NULL);
  sl_engine *e;
  if (load_engine(&cfg, &e) != 0) return CLI_FAILED;
  int rc = CLI_OK;
  if (markdown) {
    help_markdown(e);
  } else if (topic) {
    const sl_stage_kind *k = sl_engine_kind(e, topic);
    if (k) {
      help_stage(stdout, k);
    } else {
      fprintf(stderr, "sluice: no stage kind named '%s' (sluice help lists them)\n", topic);
      rc = CLI_USAGE;
    }
  } else {
    help_usage(stdout);
    printf("\nstage kinds (sluice help STAGE for its options):\n");
    for (size_t i = 0; i < sl_engine_kind_count(e); i++) {
      const sl_stage_kind *k = sl_engine_kind_at(e, i);
      printf("  %-10s %s\n", k->name, k->doc);
    }
  }
  sl_engine_free(e);
  return rc;
}
