/*
 * options.c — stage options from their table (the single source of truth of STYLE.md).
 *
 * Every front end hands options as an sl_value map; this file checks each key against the
 * kind's table, converts it to the option's type and stores it in the instance context. The
 * same table prints `sluice help STAGE` and the docs, so they cannot disagree.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "pipeline.h"

/* Edit distance with adjacent transpositions (optimal string alignment): "gne" is 1 from "gen".
 * Names longer than 63 bytes are never suggested. */
static size_t distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63) return 99;
  size_t d[64][64];
  for (size_t i = 0; i <= la; i++) d[i][0] = i;
  for (size_t j = 0; j <= lb; j++) d[0][j] = j;
  for (size_t i = 1; i <= la; i++)
    for (size_t j = 1; j <= lb; j++) {
      size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
        best = d[i - 2][j - 2] + 1;
      d[i][j] = best;
    }
  return d[la][lb];
}

const char *sl_did_you_mean(const char *word, const char *const *names, size_t n) {
  const char *best = NULL;
  size_t bestd = 99, len = strlen(word);
  size_t limit = len < 4 ? 1 : len / 3 + 1;
  for (size_t i = 0; i < n; i++) {
    size_t d = distance(word, names[i]);
    if (d < bestd) {
      bestd = d;
      best = names[i];
    }
  }
  return bestd <= limit ? best : NULL;
}

static const char *type_hint(const sl_option *o) {
  switch (o->type) {
  case SL_OPT_BOOL: return "true or false";
  case SL_OPT_INT: return "an integer";
  case SL_OPT_DOUBLE: return "a number";
  case SL_OPT_SIZE: return "a size like 512, 64KiB, 1MiB or 10MB";
  case SL_OPT_DURATION: return "a duration like 250ms, 2s, 1m or 1h (or seconds as a number)";
  case SL_OPT_STRING: return "a string";
  case SL_OPT_ENUM: return o->choices;
  case SL_OPT_VALUE: return "a value";
  default: return "set only through the C API";
  }
}

/* Short text of a value for messages. */
static void show(const sl_value *v, char *buf, size_t n) {
  sl_buf b;
  sl_buf_init(&b);
  if (sl_value_to_json(v, &b) == 0 && b.len) snprintf(buf, n, "%.*s%s", (int)(b.len > 60 ? 60 : b.len), b.data, b.len > 60 ? "..." : "");
  else snprintf(buf, n, "?");
  sl_buf_close(&b);
}

static int enum_index(const char *choices, const char *s) {
  int idx = 0;
  size_t sl = strlen(s);
  for (const char *c = choices; *c; idx++) {
    const char *bar = strchr(c, '|');
    size_t len = bar ? (size_t)(bar - c) : strlen(c);
    if (len == sl && strncmp(c, s, len) == 0) return idx;
    if (!bar) break;
    c = bar + 1;
  }
  return -1;
}

/* Stores v into the option's slot. Returns 0, or SL_ECONFIG with nothing stored. */
static int set_one(const sl_option *o, void *ctx, const sl_value *v) {
  char *slot = (char *)ctx + o->offset;
  const char *s = v->type == SL_TSTR ? sl_str_data(v) : NULL;
  switch (o->type) {
  case SL_OPT_BOOL:
    if (v->type == SL_TBOOL) *(bool *)slot = v->u.b;
    else if (s && strcmp(s, "true") == 0) *(bool *)slot = true;
    else if (s && strcmp(s, "false") == 0) *(bool *)slot = false;
    else return SL_ECONFIG;
    return 0;
  case SL_OPT_INT: {
    if (v->type == SL_TINT) { *(int64_t *)slot = v->u.i; return 0; }
    if (v->type == SL_TDOUBLE && v->u.d >= -9.2e18 && v->u.d <= 9.2e18 && v->u.d == (double)(int64_t)v->u.d) {
      *(int64_t *)slot = (int64_t)v->u.d;
      return 0;
    }
    if (!s || !*s) return SL_ECONFIG;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (*end || errno) return SL_ECONFIG;
    *(int64_t *)slot = x;
    return 0;
  }
  case SL_OPT_DOUBLE: {
    if (v->type == SL_TINT) { *(double *)slot = (double)v->u.i; return 0; }
    if (v->type == SL_TDOUBLE) { *(double *)slot = v->u.d; return 0; }
    if (!s || !*s) return SL_ECONFIG;
    char *end;
    double d = strtod(s, &end);
    if (*end) return SL_ECONFIG;
    *(double *)slot = d;
    return 0;
  }
  case SL_OPT_SIZE:
    if (v->type == SL_TINT && v->u.i >= 0) { *(int64_t *)slot = v->u.i; return 0; }
    return s && sl_parse_size(s, (int64_t *)slot) == 0 ? 0 : SL_ECONFIG;
  case SL_OPT_DURATION:
    if (v->type == SL_TINT && v->u.i >= 0 && v->u.i < INT64_MAX / 1000000000) {
      *(int64_t *)slot = v->u.i * 1000000000;
      return 0;
    }
    if (v->type == SL_TDOUBLE && v->u.d >= 0 && v->u.d < 9e9) {
      *(int64_t *)slot = (int64_t)(v->u.d * 1e9 + 0.5);
      return 0;
    }
    return s && sl_parse_duration(s, (int64_t *)slot) == 0 ? 0 : SL_ECONFIG;
  case SL_OPT_STRING: {
    char buf[64];
    if (v->type == SL_TINT) snprintf(buf, sizeof buf, "%lld", (long long)v->u.i), s = buf;
    else if (v->type == SL_TDOUBLE) snprintf(buf, sizeof buf, "%.17g", v->u.d), s = buf;
    if (!s) return SL_ECONFIG;
    char **p = (char **)slot;
    sl__free(*p);
    *p = sl__xstrdup(s);
    return 0;
  }
  case SL_OPT_ENUM: {
    int idx = s ? enum_index(o->choices, s) : -1;
    if (idx < 0) return SL_ECONFIG;
    *(int *)slot = idx;
    return 0;
  }
  case SL_OPT_VALUE: {
    sl_value *p = (sl_value *)slot;
    sl_value_free(*p);
    *p = sl_value_ref(v);
    return 0;
  }
  default:
    return SL_ECONFIG;
  }
}

const char *sl__at(const sl_value *at, const char *key, bool value, const char *where) {
  const sl_value *pos = at && at->type == SL_TMAP ? sl_map_getc(at, key) : NULL;
  const sl_value *w = pos && pos->type == SL_TARRAY ? sl_array_get(pos, value ? 1 : 0) : NULL;
  return w && w->type == SL_TSTR ? sl_str_data(w) : where ? where : "";
}

/* Problems of one options map: every one is kept (one per line), the first code returned. */
typedef struct opt_problems {
  sl_buf text;
  int count;
} opt_problems;

static void opt_problem(opt_problems *pr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void opt_problem(opt_problems *pr, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (pr->count++) sl_buf_append(&pr->text, "\n", 1);
  sl_buf_append(&pr->text, msg, strlen(msg));
}

/* The problem with key = v against the table (n entries), or none; sets given[i]. */
static void check_key(const sl_option *table, size_t n, void *ctx, const sl_value *opts, const char *key,
                      const sl_value *v, const char *where, const char *stage, const char *kind, bool *given,
                      opt_problems *pr) {
  size_t i = 0;
  while (i < n && strcmp(table[i].key, key) != 0) i++;
  if (i == n) {
    const char *names[128] = {NULL};
    char list[512] = "";
    size_t m = 0, len = 0;
    for (size_t j = 0; j < n && j < 128; j++) {
      if (table[j].type == SL_OPT_PTR) continue;
      names[m++] = table[j].key;
      len += (size_t)snprintf(list + len, len < sizeof list ? sizeof list - len : 0, "%s%s", m > 1 ? ", " : "", table[j].key);
    }
    const char *dym = sl_did_you_mean(key, names, m);
    const char *at = sl__at(sl_map_getc(opts, SL__AT), key, false, where);
    if (dym) opt_problem(pr, "%sstage '%s': unknown option '%s' for %s; did you mean '%s'?", at, stage, key, kind, dym);
    else opt_problem(pr, "%sstage '%s': unknown option '%s' for %s (%s%s)", at, stage, key, kind,
                     m ? "its options are: " : "it takes no options", list);
    return;
  }
  if (table[i].type == SL_OPT_PTR) {
    opt_problem(pr, "%sstage '%s': option '%s' can only be set through the C API", sl__at(sl_map_getc(opts, SL__AT), key, false, where),
                stage, key);
    return;
  }
  if (set_one(&table[i], ctx, v) != 0) {
    char shown[80];
    show(v, shown, sizeof shown);
    opt_problem(pr, "%sstage '%s': option '%s' expects %s (got %s)", sl__at(sl_map_getc(opts, SL__AT), key, true, where), stage, key,
                type_hint(&table[i]), shown);
    return;
  }
  if (i < 128) given[i] = true;
}

int sl__options_apply(const sl_option *table, void *ctx, const sl_value *opts, void **ptrs,
                      const char *where, const char *stage, const char *kind, sl_error_t *err) {
  size_t n = 0;
  if (table)
    while (table[n].type != SL_OPT_END) n++;
  for (size_t i = 0; i < n; i++) { /* defaults, parsed like user input */
    const sl_option *o = &table[i];
    if (o->type == SL_OPT_PTR) {
      *(void **)((char *)ctx + o->offset) = ptrs ? ptrs[i] : NULL;
      continue;
    }
    if (!o->def) continue;
    sl_value d = sl_cstr(o->def);
    int rc = set_one(o, ctx, &d);
    sl_value_free(d);
    if (rc) return sl_error_set(err, SL_ECONFIG, stage, "stage kind '%s': bad default for option '%s' (a bug)", kind, o->key);
  }
  bool given[128] = {false};
  opt_problems pr = {0};
  sl_buf_init(&pr.text);
  if (opts->type == SL_TNIL) {
  } else if (opts->type != SL_TMAP) { /* scalar shorthand: the primary option */
    size_t i = 0;
    while (i < n && !(table[i].flags & SL_OPT_PRIMARY)) i++;
    if (i == n) opt_problem(&pr, "%sstage '%s': a %s stage takes a map of options, not a single value", where, stage, kind);
    else if (set_one(&table[i], ctx, opts) != 0) {
      char shown[80];
      show(opts, shown, sizeof shown);
      opt_problem(&pr, "%sstage '%s': %s expects %s (got %s)", where, stage, table[i].key, type_hint(&table[i]), shown);
    } else if (i < 128) {
      given[i] = true;
    }
  } else {
    for (size_t k = 0; k < sl_map_len(opts); k++) {
      const char *key = sl_str_data(sl_map_key(opts, k));
      if (strcmp(key, SL__AT) != 0) check_key(table, n, ctx, opts, key, sl_map_val(opts, k), where, stage, kind, given, &pr);
    }
  }
  for (size_t i = 0; i < n && i < 128 && pr.count == 0; i++)
    if ((table[i].flags & SL_OPT_REQUIRED) && !given[i])
      opt_problem(&pr, "%sstage '%s': option '%s' is required (%s: %s)", where, stage, table[i].key, table[i].key,
                  table[i].help);
  int rc = pr.count ? sl_error_set(err, SL_ECONFIG, stage, "%s", pr.text.data) : 0;
  sl_buf_close(&pr.text);
  return rc;
}

void sl__options_free(const sl_option *table, void *ctx) {
  if (!table) return;
  for (const sl_option *o = table; o->type != SL_OPT_END; o++) {
    char *slot = (char *)ctx + o->offset;
    if (o->type == SL_OPT_STRING) {
      sl__free(*(char **)slot);
      *(char **)slot = NULL;
    } else if (o->type == SL_OPT_VALUE) {
      sl_value_free(*(sl_value *)slot);
      *(sl_value *)slot = sl_nil();
    }
  }
}
