/*
 * args.c — the flag parser of every verb: `--name VALUE`, `--name=VALUE`, boolean `--name`,
 * flags before or after FILE, `--` ends the flags, `-h`/`--help` anywhere.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int args_error(const char *verb, const char *usage, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "sluice %s: ", verb);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  const char *blank = strstr(usage, "\n\n"); /* the synopsis: up to the first blank line */
  int n = blank ? (int)(blank - usage) + 1 : (int)strlen(usage);
  fprintf(stderr, "\n%.*s(sluice %s --help says more)\n", n, usage, verb);
  return CLI_USAGE;
}

int args_parse(args *a, const char *verb, const args_flag *flags, int argc, char **argv,
               const char *usage) {
  size_t nflags = 0;
  while (flags && flags[nflags].name) nflags++;
  memset(a, 0, sizeof *a);
  a->verb = verb;
  a->values = calloc(nflags + 1, sizeof *a->values);
  a->sets = calloc((size_t)argc + 1, sizeof *a->sets);
  a->rest = calloc((size_t)argc + 1, sizeof *a->rest);
  if (!a->values || !a->sets || !a->rest) {
    fprintf(stderr, "sluice: out of memory\n");
    return CLI_FAILED;
  }
  bool flags_done = false;
  for (int i = 0; i < argc; i++) {
    const char *arg = argv[i];
    if (!flags_done && strcmp(arg, "--") == 0) {
      flags_done = true;
      continue;
    }
    if (!flags_done && (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)) {
      a->help = true;
      continue;
    }
    if (flags_done || arg[0] != '-' || strcmp(arg, "-") == 0) {
      if (!a->file) a->file = arg;
      else a->rest[a->nrest++] = arg;
      continue;
    }
    if (arg[1] != '-') return args_error(a->verb, usage, "unknown flag '%s'", arg);
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
    size_t f = 0;
    while (f < nflags && (strlen(flags[f].name) != nlen || strncmp(flags[f].name, name, nlen) != 0)) f++;
    if (f == nflags) return args_error(a->verb, usage, "unknown flag '%s'", arg);
    const char *value = "";
    if (flags[f].has_value) {
      if (eq) value = eq + 1;
      else if (i + 1 < argc) value = argv[++i];
      else return args_error(a->verb, usage, "flag '%s' needs a value", arg);
    } else if (eq) {
      return args_error(a->verb, usage, "flag '--%.*s' takes no value", (int)nlen, name);
    }
    a->values[f] = value;
    if (flags[f].repeat) a->sets[a->nsets++] = value;
  }
  return 0;
}

void args_free(args *a) {
  free(a->values);
  free(a->sets);
  free(a->rest);
  memset(a, 0, sizeof *a);
}

int args_int(const args *a, int i, const char *flagname, int min, int max) {
  const char *s = a->values[i];
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (!*s || *end || errno || v < min || v > max) {
    fprintf(stderr, "sluice %s: %s takes an integer from %d to %d (got '%s')\n", a->verb, flagname, min, max, s);
    return -1;
  }
  return (int)v;
}
