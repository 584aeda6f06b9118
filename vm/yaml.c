/*
 * yaml.c — the YAML front end: pipeline files (DESIGN sections 4 and 7, docs/yaml.md).
 *
 * Loading (sl_config_load_*) reads the text once with libyaml's event parser into a tree of
 * sl_yaml_node, each with its 1-based line:column, then, in order: expands ${VAR} in scalar
 * values, applies top-level --set overrides, reads the top-level keys, the stage maps and the
 * tests, and resolves stage --set overrides. Every problem found on the way is collected (one
 * line each, "file:line:col: ..."), so a file with five mistakes is reported once, not five times.
 *
 * Building (sl_config_build) turns the tree into calls of the pipeline API on an engine:
 * sl_pipeline_set for settings, sl_pipeline_add_lua for Lua code, sl_pipeline_add per stage
 * (the kind's options merged with the common keys, plus `_where`), then sl_pipeline_check, whose
 * messages carry the stages' `_where`. Stage kinds and their options are only known to an engine,
 * so option errors surface at build; again every stage is tried and all problems reported.
 *
 * `_where` of a stage (what the engine prefixes to the stage's messages, and where the Lua engine
 * counts lines of a Lua function string from):
 *   - the kind's value is a scalar or a list (shorthand: `map: parse`, `filter: "r.x > 1"`,
 *     `take: 5`, `values: [1, 2]`): the position of the value's first content character — after
 *     the quote of a quoted string; for a `|` or `>` block scalar the line after the header (the
 *     line of the string's first character) and the column of its indentation;
 *   - otherwise (a map of options, or nothing): the position of the kind key.
 * So a Lua function written as shorthand has exact line numbers; one written inside a map of
 * options (`map: {fn: ...}`) gets as many blank lines in front as it is below the kind key, so
 * its line numbers are exact too (option_value). Each option's own position goes to the engine
 * in the stage's SL__AT map (at_node), for messages that point at the key or the value.
 *
 * Tests (sl_config_run_test) build a rewritten graph (see build()): the records are injected by a
 * `values` source, only stages downstream of the injection point are kept, sinks become `null`,
 * and the expected stage's records are captured by a `collect` sink.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "alloc.h"
#include "lua.h"
#include "pipeline.h"

#define MAX_DEPTH 64                 /* nesting of YAML collections */
#define MAX_LUA_FILE (64 << 20)      /* bytes of a lua_file */
#define MAX_PROBLEM_TEXT 4096        /* problems text kept before only counting */
#define TEST_INPUT "_test_input"     /* the values source of a test */
#define TEST_EXPECT "_test_expect"   /* the collect sink of a test */

enum { YN_SCALAR, YN_SEQ, YN_MAP };
enum { TAG_NONE, TAG_STR, TAG_INT, TAG_FLOAT, TAG_BOOL, TAG_NULL, TAG_OTHER };

/* A node of the YAML tree. */
typedef struct sl_yaml_node {
  int type;                      /* YN_* */
  int line, col;                 /* 1-based position of the node (a quote or | included) */
  int cline, ccol;               /* 1-based position of a scalar's first content character */
  bool plain;                    /* a plain scalar: typed (int, bool, null, ...); else a string */
  int tag;                       /* TAG_*: an explicit !!tag */
  char *s;                       /* scalar text (NUL-terminated), "" for an alias; NULL otherwise */
  size_t len;
  struct sl_yaml_node **kids;    /* seq: items; map: key, value, key, value, ... */
  size_t n, cap;
  char *origin;                  /* a --set argument that made this node (positions: none) */
} sl_yaml_node;

/* A --set override of a stage option. */
typedef struct sl_yaml_set {
  char *arg;  /* the argument as given */
  char *path; /* the option path after the stage name ("count", "retry.attempts") */
  sl_value v; /* the value, typed like a plain scalar */
} sl_yaml_set;

/* A stage as read at load. */
typedef struct sl_yaml_stage {
  sl_yaml_node *map;            /* the stage map */
  sl_yaml_node *kind_key;       /* its kind key, or NULL (reported at load) */
  sl_yaml_node *kind_val;
  char *name;                   /* name: or <kind>#<index> */
  char **inputs;                /* resolved input names (the previous stage by default) */
  size_t ninputs;
  sl_yaml_set *sets;            /* --set overrides of its options */
  size_t nsets;
} sl_yaml_stage;

enum { EXPECT_RECORDS, EXPECT_COUNT, EXPECT_LUA };

/* A pipeline test. */
typedef struct sl_yaml_test {
  char *name;
  size_t in_stage;              /* index into stages */
  sl_value in_records;          /* an array */
  size_t exp_stage;             /* index into stages; nstages: the dead letter */
  sl_yaml_node *exp_node;       /* expect.stage, for messages */
  int mode;                     /* EXPECT_* */
  sl_value exp_records;
  int64_t count;
  sl_yaml_node *lua;            /* expect.lua */
} sl_yaml_test;

/* Lua code of the file (lua:, lua_file:), in the order given. */
typedef struct sl_yaml_lua {
  char *code;
  size_t len;
  char *file;                   /* the file it comes from */
  int line;                     /* line of its first character there */
} sl_yaml_lua;

struct sl_config {
  char *file;                   /* the name used in messages */
  char *dir;                    /* folder lua_file paths are relative to ("" for the cwd) */
  sl_yaml_node *root;           /* the top-level map */
  char *name;                   /* pipeline: (NULL: the engine's default) */
  int workers;                  /* workers: or 0 */
  sl_yaml_lua *lua;
  size_t nlua;
  sl_yaml_stage *stages;
  size_t nstages;
  sl_yaml_stage *dead_letter;   /* dead_letter:, or NULL */
  sl_yaml_test *tests;
  size_t ntests;
  const sl_load_options *opts;  /* while loading: --set NAME=VALUE also sets ${NAME} */
  bool *set_used;               /* while loading: which --set was used as a ${NAME} */
};

/* Problems collected over a whole load or build. */
typedef struct problems {
  sl_buf text;                  /* one problem per line */
  int count;                    /* problems found (some may not be in text) */
  int kept;                     /* problems in text */
  int code;                     /* the first one's code */
  char stage[64];               /* the first one's stage */
} problems;

static const char *const top_keys[] = {"pipeline", "workers", "lua", "lua_file", "dead_letter", "on_error",
                                       "drain_timeout", "sandbox", "sandbox_paths", "lua_memory_limit",
                                       "lua_instruction_limit", "memory_limit", "stages", "tests"};
#define NTOP (sizeof top_keys / sizeof top_keys[0])
/* keys passed through sl_pipeline_set (which validates them) */
static const char *const setting_keys[] = {"on_error", "drain_timeout", "sandbox", "sandbox_paths",
                                           "lua_memory_limit", "lua_instruction_limit", "memory_limit"};
static const char *const common_keys[] = {"name", "input", "on_error", "parallelism", "queue", "partition_by"};

static bool in_list(const char *s, const char *const *list, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(s, list[i]) == 0) return true;
  return false;
}
#define IN_LIST(s, list) in_list((s), (list), sizeof(list) / sizeof((list)[0]))

/* ------------------------------------------------------------------------------------------ */
/* Problems                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static void problems_init(problems *pr) {
  memset(pr, 0, sizeof *pr);
  sl_buf_init(&pr->text);
}

/* Appends one line (or several, for a message of sl_pipeline_check). Past MAX_PROBLEM_TEXT only
 * counts, so a hostile file cannot make the message grow without bound. */
static void problem_text(problems *pr, int code, const char *stage, const char *msg) {
  if (pr->count++ == 0) {
    pr->code = code;
    snprintf(pr->stage, sizeof pr->stage, "%s", stage ? stage : "");
  }
  if (pr->text.len > MAX_PROBLEM_TEXT) return;
  pr->kept++;
  if (pr->text.len) sl_buf_append(&pr->text, "\n", 1);
  sl_buf_append(&pr->text, msg, strlen(msg));
}

static void problem(problems *pr, const char *stage, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void problem(problems *pr, const char *stage, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  problem_text(pr, SL_ECONFIG, stage, msg);
}

/* Takes over an error of the pipeline API; its stage, or `stage` when it names none. Messages of
 * sl_pipeline_check hold several problems, one per line: each counts. */
static void problem_err(problems *pr, const sl_error_t *e, const char *stage) {
  const char *st = e->stage[0] ? e->stage : stage;
  int lines = 1;
  for (const char *s = e->msg; *s; s++) lines += *s == '\n';
  problem_text(pr, e->code ? e->code : SL_ECONFIG, st, e->msg);
  pr->count += lines - 1;
  pr->kept += lines - 1;
}

/* Moves the problems into err (cut at a line that fits its 1024 bytes, saying how many were left
 * out) and returns the first one's code, or 0 when there were none. */
static int problems_finish(problems *pr, sl_error_t *err) {
  int code = pr->count ? pr->code : 0;
  if (code && err) {
    char *t = pr->text.data ? pr->text.data : "";
    size_t room = sizeof err->msg - 40, len = strlen(t);
    int shown = pr->kept;
    if (len >= sizeof err->msg) {
      char *cut = t + room;
      while (cut > t && *cut != '\n') cut--;
      len = cut > t ? (size_t)(cut - t) : room; /* one long line: cut it */
      shown = 1;
      for (size_t i = 0; i < len; i++) shown += t[i] == '\n';
    }
    char msg[sizeof err->msg];
    if (pr->count > shown) snprintf(msg, sizeof msg, "%.*s\n(and %d more problems)", (int)len, t, pr->count - shown);
    else snprintf(msg, sizeof msg, "%.*s", (int)len, t);
    sl_error_set(err, code, pr->stage, "%s", msg);
  }
  sl_buf_close(&pr->text);
  return code;
}

/* ------------------------------------------------------------------------------------------ */
/* The tree                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static void node_free(sl_yaml_node *n) {
  if (!n) return;
  for (size_t i = 0; i < n->n; i++) node_free(n->kids[i]);
  sl__free(n->kids);
  sl__free(n->s);
  sl__free(n->origin);
  sl__free(n);
}

static void node_push(sl_yaml_node *parent, sl_yaml_node *kid) {
  if (parent->n == parent->cap) {
    parent->cap = parent->cap ? parent->cap * 2 : 4;
    parent->kids = sl__xrealloc(parent->kids, parent->cap * sizeof *parent->kids);
  }
  parent->kids[parent->n++] = kid;
}

static size_t map_len(const sl_yaml_node *m) { return m && m->type == YN_MAP ? m->n / 2 : 0; }
static const char *map_key(const sl_yaml_node *m, size_t i) { return m->kids[2 * i]->s ? m->kids[2 * i]->s : ""; }
static sl_yaml_node *map_val(const sl_yaml_node *m, size_t i) { return m->kids[2 * i + 1]; }

/* The value under key in map m, or NULL. */
static sl_yaml_node *map_get(const sl_yaml_node *m, const char *key) {
  for (size_t i = 0; i < map_len(m); i++)
    if (strcmp(map_key(m, i), key) == 0) return map_val(m, i);
  return NULL;
}

/* "file:line:col: " of a node (content: the first content character of a scalar), or
 * "--set 'arg': " for a node a --set argument made. */
static void where(const sl_config *c, const sl_yaml_node *n, bool content, char *buf, size_t size) {
  if (n && n->origin) snprintf(buf, size, "--set '%s': ", n->origin);
  else if (n) snprintf(buf, size, "%s:%d:%d: ", c->file, content ? n->cline : n->line, content ? n->ccol : n->col);
  else snprintf(buf, size, "%s:1:1: ", c->file);
}

static bool is_str_scalar(const sl_yaml_node *n);

/* A node's description for messages: "a string", "a list", ... */
static const char *what(const sl_yaml_node *n) {
  if (!n) return "nothing";
  if (n->type == YN_SEQ) return "a list";
  if (n->type == YN_MAP) return "a map";
  return is_str_scalar(n) ? "a string" : "a value";
}

/* Byte offsets of line starts (0-based lines), for block scalar columns. */
typedef struct lines {
  const char *text;
  size_t len;
  size_t *start;
  size_t n;
} lines;

static void lines_init(lines *l, const char *text, size_t len) {
  l->text = text;
  l->len = len;
  l->n = 1;
  for (size_t i = 0; i < len; i++) l->n += text[i] == '\n';
  l->start = sl__xmalloc(l->n * sizeof *l->start);
  size_t k = 0;
  l->start[k++] = 0;
  for (size_t i = 0; i < len; i++)
    if (text[i] == '\n') l->start[k++] = i + 1;
}

/* The 1-based column of the first non-blank content line of a block scalar whose header is on
 * 0-based line hdr (its indentation + 1). */
static int block_column(const lines *l, size_t hdr) {
  for (size_t ln = hdr + 1; ln < l->n; ln++) {
    size_t i = l->start[ln], sp = 0;
    while (i < l->len && l->text[i] == ' ') i++, sp++;
    if (i < l->len && l->text[i] != '\n' && l->text[i] != '\r') return (int)sp + 1;
  }
  return 1;
}

static int tag_of(const char *tag) {
  if (!tag) return TAG_NONE;
  if (strcmp(tag, "!") == 0 || strcmp(tag, YAML_STR_TAG) == 0) return TAG_STR;
  if (strcmp(tag, YAML_INT_TAG) == 0) return TAG_INT;
  if (strcmp(tag, YAML_FLOAT_TAG) == 0) return TAG_FLOAT;
  if (strcmp(tag, YAML_BOOL_TAG) == 0) return TAG_BOOL;
  if (strcmp(tag, YAML_NULL_TAG) == 0) return TAG_NULL;
  if (strcmp(tag, YAML_SEQ_TAG) == 0 || strcmp(tag, YAML_MAP_TAG) == 0) return TAG_NONE;
  return TAG_OTHER;
}

static sl_yaml_node *node_new(int type, const yaml_mark_t *m) {
  sl_yaml_node *n = sl__xcalloc(1, sizeof *n);
  n->type = type;
  n->line = n->cline = (int)m->line + 1;
  n->col = n->ccol = (int)m->column + 1;
  return n;
}

/* Reports a libyaml error at its mark (reader errors give a byte offset instead). */
static void syntax_problem(const sl_config *c, const yaml_parser_t *ps, const lines *l, problems *pr) {
  if (ps->error == YAML_MEMORY_ERROR) {
    problem_text(pr, SL_ENOMEM, NULL, "out of memory while parsing YAML");
    return;
  }
  size_t line = ps->problem_mark.line, col = ps->problem_mark.column;
  if (ps->error == YAML_READER_ERROR) { /* the mark is not set: count lines up to the offset */
    size_t off = ps->problem_offset < l->len ? ps->problem_offset : l->len;
    line = 0;
    while (line + 1 < l->n && l->start[line + 1] <= off) line++;
    col = off - l->start[line];
  }
  char ctx[160] = "";
  if (ps->context)
    snprintf(ctx, sizeof ctx, " (%s at %d:%d)", ps->context, (int)ps->context_mark.line + 1,
             (int)ps->context_mark.column + 1);
  problem(pr, NULL, "%s:%d:%d: YAML syntax error: %s%s", c->file, (int)line + 1, (int)col + 1,
          ps->problem ? ps->problem : "unknown problem", ctx);
}

/* Adds n under the open collection (or as the root), checking map keys: scalars, no duplicates. */
static void attach(const sl_config *c, sl_yaml_node **root, sl_yaml_node *parent, sl_yaml_node *n, problems *pr) {
  if (!parent) {
    if (!*root) *root = n;
    else node_free(n);
    return;
  }
  if (parent->type == YN_MAP && parent->n % 2 == 0) {
    if (n->type != YN_SCALAR) {
      problem(pr, NULL, "%s:%d:%d: a map key must be a string, not %s", c->file, n->line, n->col, what(n));
    } else {
      for (size_t i = 0; i + 1 < parent->n; i += 2) {
        const sl_yaml_node *k = parent->kids[i];
        if (k->s && k->len == n->len && memcmp(k->s, n->s, n->len) == 0) {
          problem(pr, NULL, "%s:%d:%d: duplicate key '%s' (first at %d:%d)", c->file, n->line, n->col, n->s, k->line,
                  k->col);
          break;
        }
      }
    }
  }
  node_push(parent, n);
}

/* Parses text into c->root. libyaml's event parser, so aliases can be refused (they would let a
 * small file expand without bound) and every node gets its position. Returns false when the tree
 * is incomplete (a syntax error, nesting too deep, out of memory). */
static bool parse_tree(sl_config *c, const char *text, size_t len, problems *pr) {
  yaml_parser_t ps;
  lines l;
  lines_init(&l, text, len);
  if (!yaml_parser_initialize(&ps)) {
    problem_text(pr, SL_ENOMEM, NULL, "out of memory while parsing YAML");
    sl__free(l.start);
    return false;
  }
  yaml_parser_set_input_string(&ps, (const unsigned char *)text, len);
  sl_yaml_node *stack[MAX_DEPTH];
  int depth = 0, docs = 0;
  bool done = false, whole = true;
  while (!done) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&ps, &ev)) {
      syntax_problem(c, &ps, &l, pr);
      whole = false;
      break;
    }
    sl_yaml_node *n = NULL;
    switch (ev.type) {
    case YAML_STREAM_END_EVENT:
      done = true;
      break;
    case YAML_DOCUMENT_START_EVENT:
      if (++docs > 1) {
        problem(pr, NULL, "%s:%d:%d: the file holds more than one YAML document (a pipeline file is one)", c->file,
                (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1);
        done = true;
      }
      break;
    case YAML_ALIAS_EVENT:
      problem(pr, NULL, "%s:%d:%d: aliases (*%s) are not supported: write the value out", c->file,
              (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1, (const char *)ev.data.alias.anchor);
      n = node_new(YN_SCALAR, &ev.start_mark); /* a stand-in keeps the structure for more checks */
      n->s = sl__xstrdup("");
      break;
    case YAML_SCALAR_EVENT: {
      n = node_new(YN_SCALAR, &ev.start_mark);
      n->len = ev.data.scalar.length;
      n->s = sl__xmalloc(n->len + 1);
      memcpy(n->s, ev.data.scalar.value, n->len);
      n->s[n->len] = 0;
      n->tag = tag_of((const char *)ev.data.scalar.tag);
      n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && n->tag != TAG_STR;
      switch (ev.data.scalar.style) {
      case YAML_SINGLE_QUOTED_SCALAR_STYLE:
      case YAML_DOUBLE_QUOTED_SCALAR_STYLE:
        n->ccol = n->col + 1;
        break;
      case YAML_LITERAL_SCALAR_STYLE:
      case YAML_FOLDED_SCALAR_STYLE:
        n->cline = n->line + 1;
        n->ccol = block_column(&l, ev.start_mark.line);
        break;
      default:
        break;
      }
      if (ev.data.scalar.tag && n->tag == TAG_OTHER)
        problem(pr, NULL, "%s:%d:%d: unsupported tag '%s'", c->file, n->line, n->col, (const char *)ev.data.scalar.tag);
      break;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
      n = node_new(ev.type == YAML_MAPPING_START_EVENT ? YN_MAP : YN_SEQ, &ev.start_mark);
      const char *tag = (const char *)(ev.type == YAML_MAPPING_START_EVENT ? ev.data.mapping_start.tag
                                                                          : ev.data.sequence_start.tag);
      if (tag && tag_of(tag) != TAG_NONE) problem(pr, NULL, "%s:%d:%d: unsupported tag '%s'", c->file, n->line, n->col, tag);
      break;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
      if (depth > 0) depth--;
      break;
    default:
      break;
    }
    if (n) {
      attach(c, &c->root, depth ? stack[depth - 1] : NULL, n, pr);
      if (n->type != YN_SCALAR) {
        if (depth == MAX_DEPTH) {
          problem(pr, NULL, "%s:%d:%d: collections are nested more than %d deep", c->file, n->line, n->col, MAX_DEPTH);
          done = true;
          whole = false;
        } else {
          stack[depth++] = n;
        }
      }
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&ps);
  sl__free(l.start);
  return whole;
}

/* ------------------------------------------------------------------------------------------ */
/* Scalars and values                                                                          */
/* ------------------------------------------------------------------------------------------ */

static bool all_digits(const char *s) {
  if (!*s) return false;
  for (; *s; s++)
    if (*s < '0' || *s > '9') return false;
  return true;
}

/* [-+]? ( .digits | digits ( . digits? )? ) ( [eE] [-+]? digits )? with at least a dot or an
 * exponent (integers are handled before). */
static bool is_float(const char *s) {
  if (*s == '-' || *s == '+') s++;
  size_t d1 = 0, d2 = 0;
  while (*s >= '0' && *s <= '9') s++, d1++;
  bool dot = *s == '.';
  if (dot) {
    s++;
    while (*s >= '0' && *s <= '9') s++, d2++;
  }
  if (d1 + d2 == 0) return false;
  if (*s == 'e' || *s == 'E') {
    s++;
    if (*s == '-' || *s == '+') s++;
    if (!all_digits(s)) return false;
    return true;
  }
  return dot && !*s;
}

/* A plain scalar typed by the YAML 1.2 core schema (decimal integers only): null, bool, int,
 * float, else the string. Durations and sizes ("2s", "64KiB") stay strings. */
static sl_value plain_value(const char *s, size_t len) {
  if (strlen(s) != len) return sl_str(s, len); /* holds a NUL: text */
  if (!*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0)
    return sl_nil();
  if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0) return sl_bool(true);
  if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0) return sl_bool(false);
  const char *d = s + (*s == '-' || *s == '+');
  if (all_digits(d)) {
    errno = 0;
    long long x = strtoll(s, NULL, 10);
    if (errno == 0) return sl_int(x);
    return sl_double(strtod(s, NULL)); /* beyond int64 */
  }
  if (is_float(s)) return sl_double(strtod(s, NULL));
  if (strcmp(d, ".inf") == 0 || strcmp(d, ".Inf") == 0 || strcmp(d, ".INF") == 0)
    return sl_double(*s == '-' ? -HUGE_VAL : HUGE_VAL);
  if (strcmp(s, ".nan") == 0 || strcmp(s, ".NaN") == 0 || strcmp(s, ".NAN") == 0) return sl_double(NAN);
  return sl_str(s, len);
}

static sl_value scalar_value(const sl_yaml_node *n) {
  if (!n->plain) return sl_str(n->s, n->len);
  sl_value v = plain_value(n->s, n->len);
  if (n->tag == TAG_FLOAT && v.type == SL_TINT) v = sl_double((double)v.u.i);
  return v;
}

static bool is_str_scalar(const sl_yaml_node *n) {
  if (!n || n->type != YN_SCALAR) return false;
  if (!n->plain) return true;
  sl_value v = plain_value(n->s, n->len);
  bool s = v.type == SL_TSTR;
  sl_value_free(v);
  return s;
}

static bool is_nil_scalar(const sl_yaml_node *n) {
  sl_value v = scalar_value(n);
  bool nil = v.type == SL_TNIL;
  sl_value_free(v);
  return nil;
}

/* The sl_value of a node (depth is bounded by MAX_DEPTH at parse). returns owned */
static sl_value to_value(const sl_yaml_node *n) {
  if (!n) return sl_nil();
  if (n->type == YN_SCALAR) return scalar_value(n);
  if (n->type == YN_SEQ) {
    sl_value a = sl_array(n->n);
    for (size_t i = 0; i < n->n; i++) sl_array_push(&a, to_value(n->kids[i]));
    return a;
  }
  sl_value m = sl_map(map_len(n));
  for (size_t i = 0; i < map_len(n); i++) sl_map_set(&m, n->kids[2 * i]->s ? n->kids[2 * i]->s : "", n->kids[2 * i]->s ? n->kids[2 * i]->len : 0, to_value(map_val(n, i)));
  return m;
}

/* ------------------------------------------------------------------------------------------ */
/* ${VAR}                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static bool var_name_ok(const char *s, size_t n) {
  if (n == 0 || (s[0] >= '0' && s[0] <= '9')) return false;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_')) return false;
  }
  return true;
}

/* The value a --set NAME=VALUE gives ${NAME} (the last such --set wins), or NULL. Marks it used. */
static const char *set_var(const sl_config *c, const char *var) {
  const char *val = NULL;
  size_t n = strlen(var);
  for (size_t i = 0; c->opts && i < c->opts->nsets; i++) {
    const char *a = c->opts->sets[i];
    if (a && strncmp(a, var, n) == 0 && a[n] == '=') {
      val = a + n + 1;
      c->set_used[i] = true;
    }
  }
  return val;
}

/* Expands ${VAR}, ${VAR:-default} (also when VAR is empty) and $$ in one scalar. A lone $ stays.
 * A --set VAR=VALUE comes before the environment. */
static void expand_scalar(const sl_config *c, sl_yaml_node *n, problems *pr) {
  if (!memchr(n->s, '$', n->len)) return;
  char w[1200];
  sl_buf out;
  sl_buf_init(&out);
  const char *s = n->s, *end = n->s + n->len;
  while (s < end) {
    if (s[0] != '$' || s + 1 >= end || (s[1] != '$' && s[1] != '{')) {
      const char *next = memchr(s + 1, '$', (size_t)(end - s - 1));
      if (!next) next = end;
      sl_buf_append(&out, s, (size_t)(next - s));
      s = next;
      continue;
    }
    if (s[1] == '$') {
      sl_buf_append(&out, "$", 1);
      s += 2;
      continue;
    }
    const char *close = memchr(s + 2, '}', (size_t)(end - s - 2));
    where(c, n, true, w, sizeof w);
    if (!close) {
      problem(pr, NULL, "%sunterminated ${ in \"%.80s\"", w, n->s);
      goto fail;
    }
    const char *name = s + 2, *name_end = name;
    while (name_end < close && *name_end != ':') name_end++;
    bool has_default = name_end < close;
    if (name_end - name > 200 || !var_name_ok(name, (size_t)(name_end - name)) || (has_default && (name_end + 1 >= close || name_end[1] != '-'))) {
      problem(pr, NULL, "%sbad variable name in \"%.80s\": write ${NAME} or ${NAME:-default}", w, n->s);
      goto fail;
    }
    char var[256];
    snprintf(var, sizeof var, "%.*s", (int)(name_end - name), name);
    const char *val = set_var(c, var);
    if (!val) val = getenv(var);
    if (has_default && (!val || !*val)) sl_buf_append(&out, name_end + 2, (size_t)(close - name_end - 2));
    else if (val) sl_buf_append(&out, val, strlen(val));
    else {
      problem(pr, NULL, "%senvironment variable '%s' is not set (write ${%s:-default} to give a default)", w, var, var);
      goto fail;
    }
    s = close + 1;
  }
  sl__free(n->s);
  n->len = out.len;
  n->s = sl__xmalloc(out.len + 1);
  if (out.len) memcpy(n->s, out.data, out.len);
  n->s[out.len] = 0;
fail:
  sl_buf_close(&out);
}

/* Checks that an explicitly tagged scalar has its type. */
static void check_tag(const sl_config *c, const sl_yaml_node *n, problems *pr) {
  if (n->tag == TAG_NONE || n->tag == TAG_STR || n->tag == TAG_OTHER) return;
  sl_value v = scalar_value(n);
  static const int want[] = {[TAG_INT] = SL_TINT, [TAG_FLOAT] = SL_TDOUBLE, [TAG_BOOL] = SL_TBOOL, [TAG_NULL] = SL_TNIL};
  static const char *const names[] = {[TAG_INT] = "!!int", [TAG_FLOAT] = "!!float", [TAG_BOOL] = "!!bool", [TAG_NULL] = "!!null"};
  if (v.type != want[n->tag]) {
    char w[1200];
    where(c, n, true, w, sizeof w);
    problem(pr, NULL, "%s\"%.80s\" is not a valid %s", w, n->s, names[n->tag]);
  }
  sl_value_free(v);
}

/* Expands every scalar value (not keys) of the tree. */
static void expand_tree(const sl_config *c, sl_yaml_node *n, problems *pr) {
  if (!n) return;
  if (n->type == YN_SCALAR) {
    expand_scalar(c, n, pr);
    check_tag(c, n, pr);
    return;
  }
  for (size_t i = 0; i < n->n; i++)
    if (n->type != YN_MAP || i % 2 == 1) expand_tree(c, n->kids[i], pr);
}

/* ------------------------------------------------------------------------------------------ */
/* Reading the file's keys                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* "stage 'name'" or "stage #i" for messages about a stage that may have no name yet. */
static void stage_label(const sl_yaml_stage *st, size_t index, char *buf, size_t n) {
  if (st->name) snprintf(buf, n, "stage '%s'", st->name);
  else snprintf(buf, n, "stage #%zu", index);
}

/* A common key of a stage: next to the kind key, else inside the kind's map of options. */
static sl_yaml_node *common_key(const sl_yaml_stage *st, const char *key) {
  sl_yaml_node *v = st->map->type == YN_MAP ? map_get(st->map, key) : NULL;
  if (!v && st->kind_val && st->kind_val->type == YN_MAP) v = map_get(st->kind_val, key);
  return v;
}

/* Reads one stage map (index: 1-based position in stages:, 0 for the dead letter). */
static void read_stage(sl_config *c, sl_yaml_node *m, size_t index, sl_yaml_stage *st, problems *pr) {
  char w[1200], label[128];
  memset(st, 0, sizeof *st);
  st->map = m;
  if (m->type != YN_MAP) {
    where(c, m, false, w, sizeof w);
    if (index) problem(pr, NULL, "%sstage #%zu must be a map with one kind key (got %s)", w, index, what(m));
    else problem(pr, NULL, "%sdead_letter must be a stage map such as { file: { path: failed.jsonl } } (got %s)", w, what(m));
    return;
  }
  for (size_t i = 0; i < map_len(m); i++) { /* the kind key: the first key that is not common */
    const char *k = map_key(m, i);
    if (!IN_LIST(k, common_keys) && k[0] != '_' && !st->kind_key) {
      st->kind_key = m->kids[2 * i];
      st->kind_val = map_val(m, i);
    }
  }
  const sl_yaml_node *name = common_key(st, "name");
  if (name && name->type == YN_SCALAR && name->len) st->name = sl__xstrdup(name->s);
  else if (!index) st->name = sl__xstrdup("dead_letter");
  if (!st->name && st->kind_key) {
    char buf[160];
    snprintf(buf, sizeof buf, "%s#%zu", st->kind_key->s, index);
    st->name = sl__xstrdup(buf);
  }
  stage_label(st, index, label, sizeof label);
  if (!st->kind_key) {
    where(c, m, false, w, sizeof w);
    problem(pr, st->name, "%s%s has no kind key: a stage is a map with one kind key (such as take: or file:) and common keys",
            w, label);
  }
  const sl_yaml_node *in = common_key(st, "input");
  if (!index && in) {
    where(c, in, false, w, sizeof w);
    problem(pr, st->name, "%s%s: the dead_letter stage receives failed records and takes no input", w, label);
  }
  for (size_t i = 0; i < map_len(m); i++) {
    const char *k = map_key(m, i);
    const sl_yaml_node *kn = m->kids[2 * i];
    where(c, kn, false, w, sizeof w);
    if (k[0] == '_')
      problem(pr, st->name, "%s%s: unknown key '%s'", w, label, k);
    else if (kn != st->kind_key && !IN_LIST(k, common_keys))
      problem(pr, st->name, "%s%s has two kind keys, '%s' and '%s': write each as its own stage", w, label,
              st->kind_key->s, k);
  }
}

/* The names a stage reads from: input: (a name or a list), else the previous stage. */
static void resolve_inputs(sl_config *c, size_t i) {
  sl_yaml_stage *st = &c->stages[i];
  const sl_yaml_node *in = st->map->type == YN_MAP ? common_key(st, "input") : NULL;
  if (!in) {
    if (i > 0 && c->stages[i - 1].name) {
      st->inputs = sl__xmalloc(sizeof *st->inputs);
      st->inputs[st->ninputs++] = sl__xstrdup(c->stages[i - 1].name);
    }
    return;
  }
  if (in->type == YN_SCALAR) {
    st->inputs = sl__xmalloc(sizeof *st->inputs);
    st->inputs[st->ninputs++] = sl__xstrdup(in->s);
  } else if (in->type == YN_SEQ && in->n) {
    st->inputs = sl__xcalloc(in->n, sizeof *st->inputs);
    for (size_t k = 0; k < in->n; k++)
      if (in->kids[k]->type == YN_SCALAR) st->inputs[st->ninputs++] = sl__xstrdup(in->kids[k]->s);
  }
}

/* Index of the stage named name (nstages: the dead letter when dl), or SIZE_MAX. */
static size_t stage_index(const sl_config *c, const char *name, bool dl) {
  for (size_t i = 0; i < c->nstages; i++)
    if (c->stages[i].name && strcmp(c->stages[i].name, name) == 0) return i;
  if (dl && c->dead_letter && strcmp(c->dead_letter->name, name) == 0) return c->nstages;
  return SIZE_MAX;
}

/* Index of the stage an input name reads: a stage name, or `<stage>.<output>` of a stage with
 * named outputs (route); SIZE_MAX when neither. */
static size_t input_index(const sl_config *c, const char *name) {
  size_t i = stage_index(c, name, false);
  const char *dot = strrchr(name, '.');
  if (i != SIZE_MAX || !dot) return i;
  char *stage = sl__xstrdup(name);
  stage[dot - name] = 0;
  i = stage_index(c, stage, false);
  sl__free(stage);
  return i;
}

/* "; did you mean 'x'?" among the stage names, or "". */
static void stage_suggestion(const sl_config *c, const char *name, char *buf, size_t n) {
  const char **names = sl__xcalloc(c->nstages + 1, sizeof *names);
  size_t k = 0;
  for (size_t i = 0; i < c->nstages; i++)
    if (c->stages[i].name) names[k++] = c->stages[i].name;
  if (c->dead_letter) names[k++] = c->dead_letter->name;
  const char *dym = sl_did_you_mean(name, names, k);
  if (dym) snprintf(buf, n, "; did you mean '%s'?", dym);
  else buf[0] = 0;
  sl__free(names);
}

static char *read_file(const char *path, size_t *len, int *errnum) {
  char *buf = NULL;
  struct stat sb;
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  *errnum = 0;
  if (fd < 0 || fstat(fd, &sb) != 0) goto fail;
  if (!S_ISREG(sb.st_mode)) { /* not a FIFO or a device: a read must end */
    errno = EINVAL;
    goto fail;
  }
  if (sb.st_size > MAX_LUA_FILE) {
    errno = EFBIG;
    goto fail;
  }
  buf = sl__trymalloc((size_t)sb.st_size + 1);
  if (!buf) {
    errno = ENOMEM;
    goto fail;
  }
  size_t n = 0;
  for (;;) {
    ssize_t r = read(fd, buf + n, (size_t)sb.st_size - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) goto fail;
    if (r == 0 || (n += (size_t)r) == (size_t)sb.st_size) break;
  }
  buf[n] = 0;
  *len = n;
  close(fd);
  return buf;
fail:
  *errnum = errno;
  if (fd >= 0) close(fd);
  sl__free(buf);
  return NULL;
}

static void add_lua(sl_config *c, char *code, size_t len, const char *file, int line) {
  c->lua = sl__xrealloc(c->lua, (c->nlua + 1) * sizeof *c->lua);
  c->lua[c->nlua++] = (sl_yaml_lua){code, len, sl__xstrdup(file), line};
}

static void read_lua_file(sl_config *c, const sl_yaml_node *v, problems *pr) {
  char w[1200];
  where(c, v, true, w, sizeof w);
  if (!is_str_scalar(v) || !v->len) {
    problem(pr, NULL, "%slua_file must be the path of a Lua file", w);
    return;
  }
  char *path = v->s[0] == '/' || !c->dir[0] ? sl__xstrdup(v->s) : NULL;
  if (!path) {
    sl_buf b;
    sl_buf_init(&b);
    sl_buf_printf(&b, "%s/%s", c->dir, v->s);
    path = sl__xstrdup(b.data);
    sl_buf_close(&b);
  }
  size_t len = 0;
  int errnum;
  char *code = read_file(path, &len, &errnum);
  if (!code)
    problem(pr, NULL, "%slua_file: cannot read '%s': %s", w, path, errnum == EINVAL ? "not a regular file" : strerror(errnum));
  else add_lua(c, code, len, path, 1);
  sl__free(path);
}

/* Reads tests: (stages must be read first). */
static void read_tests(sl_config *c, const sl_yaml_node *list, problems *pr) {
  char w[1200], sug[200];
  if (list->type != YN_SEQ) {
    where(c, list, false, w, sizeof w);
    problem(pr, NULL, "%stests must be a list of tests", w);
    return;
  }
  c->tests = sl__xcalloc(list->n ? list->n : 1, sizeof *c->tests);
  for (size_t i = 0; i < list->n; i++) {
    const sl_yaml_node *m = list->kids[i];
    sl_yaml_test *t = &c->tests[c->ntests++];
    t->exp_stage = t->in_stage = SIZE_MAX;
    const sl_yaml_node *name = map_get(m, "name");
    char buf[160];
    snprintf(buf, sizeof buf, "test #%zu", i + 1);
    t->name = sl__xstrdup(name && name->type == YN_SCALAR && name->len ? name->s : buf);
    char label[200];
    snprintf(label, sizeof label, name && name->type == YN_SCALAR && name->len ? "test '%s'" : "%s", t->name);
    if (m->type != YN_MAP) {
      where(c, m, false, w, sizeof w);
      problem(pr, NULL, "%s%s must be a map with name, input and expect", w, label);
      continue;
    }
    for (size_t k = 0; k < map_len(m); k++) {
      const char *key = map_key(m, k);
      if (strcmp(key, "name") && strcmp(key, "input") && strcmp(key, "expect")) {
        where(c, m->kids[2 * k], false, w, sizeof w);
        problem(pr, NULL, "%s%s: unknown key '%s' (a test has name, input and expect)", w, label, key);
      }
    }
    const sl_yaml_node *in = map_get(m, "input"), *ex = map_get(m, "expect");
    where(c, m, false, w, sizeof w);
    if (!in) problem(pr, NULL, "%s%s: input is missing", w, label);
    if (!ex) problem(pr, NULL, "%s%s: expect is missing", w, label);
    if (in) {
      const sl_yaml_node *st = map_get(in, "stage"), *recs = map_get(in, "records");
      where(c, in, false, w, sizeof w);
      if (in->type != YN_MAP || !st || !recs || map_len(in) != 2) {
        problem(pr, NULL, "%s%s: input needs stage and records", w, label);
      } else {
        where(c, st, true, w, sizeof w);
        if (!is_str_scalar(st) || (t->in_stage = stage_index(c, st->s, false)) == SIZE_MAX) {
          stage_suggestion(c, st->s ? st->s : "", sug, sizeof sug);
          problem(pr, NULL, "%s%s: input.stage '%s' names no stage%s", w, label, st->s ? st->s : "", sug);
        }
        where(c, recs, true, w, sizeof w);
        if (recs->type != YN_SEQ) problem(pr, NULL, "%s%s: input.records must be a list", w, label);
        else t->in_records = to_value(recs);
      }
    }
    if (ex) {
      const sl_yaml_node *st = map_get(ex, "stage"), *recs = map_get(ex, "records"), *count = map_get(ex, "count"),
                         *lua = map_get(ex, "lua");
      int given = (recs != NULL) + (count != NULL) + (lua != NULL);
      where(c, ex, false, w, sizeof w);
      if (ex->type != YN_MAP || !st || given != 1 || map_len(ex) != 2) {
        problem(pr, NULL, "%s%s: expect takes one of records, count or lua, and stage", w, label);
        continue;
      }
      t->exp_node = (sl_yaml_node *)st;
      where(c, st, true, w, sizeof w);
      if (!is_str_scalar(st) || (t->exp_stage = stage_index(c, st->s, true)) == SIZE_MAX) {
        stage_suggestion(c, st->s ? st->s : "", sug, sizeof sug);
        problem(pr, NULL, "%s%s: expect.stage '%s' names no stage%s", w, label, st->s ? st->s : "", sug);
      }
      if (recs) {
        t->mode = EXPECT_RECORDS;
        where(c, recs, true, w, sizeof w);
        if (recs->type != YN_SEQ) problem(pr, NULL, "%s%s: expect.records must be a list", w, label);
        else t->exp_records = to_value(recs);
      } else if (count) {
        t->mode = EXPECT_COUNT;
        sl_value v = count->type == YN_SCALAR ? scalar_value(count) : sl_nil();
        where(c, count, true, w, sizeof w);
        if (v.type != SL_TINT || v.u.i < 0) problem(pr, NULL, "%s%s: expect.count must be an integer of 0 or more", w, label);
        t->count = v.type == SL_TINT ? v.u.i : 0;
        sl_value_free(v);
      } else {
        t->mode = EXPECT_LUA;
        t->lua = (sl_yaml_node *)lua;
        where(c, lua, true, w, sizeof w);
        if (!is_str_scalar(lua)) problem(pr, NULL, "%s%s: expect.lua must be Lua code (a string)", w, label);
      }
    }
  }
}

/* ------------------------------------------------------------------------------------------ */
/* --set                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* Splits "path=value"; false when malformed (no '=', empty path, empty part of a dotted path). */
static bool split_set(const char *arg, char **path, const char **value) {
  const char *eq = strchr(arg, '=');
  if (!eq || eq == arg || arg[0] == '.' || eq[-1] == '.') return false;
  for (const char *s = arg; s + 1 < eq; s++)
    if (s[0] == '.' && s[1] == '.') return false;
  *path = sl__xmalloc((size_t)(eq - arg) + 1);
  memcpy(*path, arg, (size_t)(eq - arg));
  (*path)[eq - arg] = 0;
  *value = eq + 1;
  return true;
}

/* A plain scalar node made by --set arg with the given text (typed like a plain scalar). */
static sl_yaml_node *set_node(const char *arg, const char *text) {
  sl_yaml_node *n = sl__xcalloc(1, sizeof *n);
  n->type = YN_SCALAR;
  n->plain = true;
  n->s = sl__xstrdup(text);
  n->len = strlen(text);
  n->origin = sl__xstrdup(arg);
  return n;
}

/* Top-level overrides ("workers=4"): replace or add the key's value in the root map, before the
 * keys are read, so they are checked like the file's own values. */
static void apply_top_sets(sl_config *c, const sl_load_options *o, problems *pr) {
  for (size_t i = 0; o && i < o->nsets; i++) {
    const char *arg = o->sets[i] ? o->sets[i] : "", *value;
    char *path = NULL;
    if (!split_set(arg, &path, &value)) {
      problem(pr, NULL, "--set '%s': expected path=value (for example workers=4 or parse.timeout=2s)", arg);
      continue;
    }
    if (!strchr(path, '.') && c->set_used[i] && !in_list(path, top_keys, NTOP)) {
      /* it set a ${VAR} of the file */
    } else if (!strchr(path, '.') && c->root && c->root->type == YN_MAP) {
      sl_yaml_node *v = set_node(arg, value);
      size_t k = 0;
      while (k < map_len(c->root) && strcmp(map_key(c->root, k), path) != 0) k++;
      if (k < map_len(c->root)) {
        node_free(c->root->kids[2 * k + 1]);
        c->root->kids[2 * k + 1] = v;
      } else {
        node_push(c->root, set_node(arg, path));
        c->root->kids[c->root->n - 1]->plain = false;
        node_push(c->root, v);
      }
    }
    sl__free(path);
  }
}

/* Stage overrides ("<stage name>.<option path>=value"), after the stages were read: the longest
 * stage name followed by a dot wins, so names may contain dots. Applied at build (a shorthand
 * value needs the kind's primary option, which only an engine knows). */
static void apply_stage_sets(sl_config *c, const sl_load_options *o, problems *pr) {
  for (size_t i = 0; o && i < o->nsets; i++) {
    const char *arg = o->sets[i] ? o->sets[i] : "", *value;
    char *path = NULL;
    if (!split_set(arg, &path, &value)) continue; /* reported with the top-level ones */
    if (!strchr(path, '.')) {
      sl__free(path);
      continue;
    }
    sl_yaml_stage *best = NULL;
    size_t bestlen = 0;
    for (size_t k = 0; k <= c->nstages; k++) {
      sl_yaml_stage *st = k < c->nstages ? &c->stages[k] : c->dead_letter;
      size_t n = st && st->name ? strlen(st->name) : 0;
      if (n && n > bestlen && strncmp(path, st->name, n) == 0 && path[n] == '.') best = st, bestlen = n;
    }
    if (!best) {
      char sug[200];
      *strrchr(path, '.') = 0;
      stage_suggestion(c, path, sug, sizeof sug);
      problem(pr, NULL, "--set '%s': no stage is named '%s'%s", arg, path, sug);
    } else {
      const char *opt = path + bestlen + 1;
      size_t first = strcspn(opt, ".");
      if ((first == 4 && strncmp(opt, "name", 4) == 0) || (first == 5 && strncmp(opt, "input", 5) == 0)) {
        problem(pr, best->name, "--set '%s': --set cannot change a stage's name or input; edit the file", arg);
      } else {
        best->sets = sl__xrealloc(best->sets, (best->nsets + 1) * sizeof *best->sets);
        best->sets[best->nsets++] = (sl_yaml_set){sl__xstrdup(arg), sl__xstrdup(opt), plain_value(value, strlen(value))};
      }
    }
    sl__free(path);
  }
}

/* Sets path ("a.b.c") in map *m to v (consumed), making maps on the way. errors: config (a part of
 * the path is not a map) */
static int set_path(sl_value *m, const char *path, sl_value v) {
  const char *dot = strchr(path, '.');
  if (!dot) return sl_map_set(m, path, strlen(path), v);
  const sl_value *cur = sl_map_get(m, path, (size_t)(dot - path));
  if (cur && cur->type != SL_TMAP) {
    sl_value_free(v);
    return SL_ECONFIG;
  }
  sl_value sub = cur ? sl_value_ref(cur) : sl_map(1);
  int rc = set_path(&sub, dot + 1, v); /* sub is shared with *m: the mutation copies it first */
  if (rc) {
    sl_value_free(sub);
    return rc;
  }
  return sl_map_set(m, path, (size_t)(dot - path), sub);
}

/* ------------------------------------------------------------------------------------------ */
/* The top level                                                                               */
/* ------------------------------------------------------------------------------------------ */

static void read_top(sl_config *c, const sl_load_options *o, problems *pr) {
  char w[1200], shown[100];
  const sl_yaml_node *stages = NULL, *tests = NULL, *dl = NULL;
  for (size_t i = 0; i < map_len(c->root); i++) {
    const char *k = map_key(c->root, i);
    sl_yaml_node *v = map_val(c->root, i);
    if (!in_list(k, top_keys, NTOP)) {
      const char *dym = sl_did_you_mean(k, top_keys, NTOP);
      where(c, c->root->kids[2 * i], false, w, sizeof w);
      problem(pr, NULL, "%sunknown key '%s'%s%s%s", w, k, dym ? "; did you mean '" : "", dym ? dym : "", dym ? "'?" : "");
      continue;
    }
    where(c, v, true, w, sizeof w);
    if (strcmp(k, "pipeline") == 0) {
      if (v->type != YN_SCALAR || !v->len) problem(pr, NULL, "%spipeline (the pipeline's name) must be a string", w);
      else {
        sl__free(c->name);
        c->name = sl__xstrdup(v->s);
      }
    } else if (strcmp(k, "workers") == 0) {
      sl_value x = to_value(v);
      if (x.type == SL_TINT && x.u.i >= 1 && x.u.i <= 256) c->workers = (int)x.u.i;
      else {
        sl_buf b;
        sl_buf_init(&b);
        sl_value_to_json(&x, &b);
        snprintf(shown, sizeof shown, "%.60s", b.data ? b.data : "");
        sl_buf_close(&b);
        problem(pr, NULL, "%sworkers must be an integer from 1 to 256 (got %s)", w, shown);
      }
      sl_value_free(x);
    } else if (strcmp(k, "lua") == 0) {
      if (!is_str_scalar(v)) problem(pr, NULL, "%slua must be Lua code (a string)", w);
      else {
        char *code = sl__xmalloc(v->len + 1);
        memcpy(code, v->s, v->len + 1);
        add_lua(c, code, v->len, c->file, v->cline);
      }
    } else if (strcmp(k, "lua_file") == 0) {
      read_lua_file(c, v, pr);
    } else if (strcmp(k, "stages") == 0) {
      stages = v;
    } else if (strcmp(k, "tests") == 0) {
      tests = v;
    } else if (strcmp(k, "dead_letter") == 0) {
      dl = v;
    } /* settings: checked by sl_pipeline_set at build */
  }
  if (!stages) {
    where(c, NULL, false, w, sizeof w);
    problem(pr, NULL, "%sthe file has no stages: list", w);
  } else if (stages->type != YN_SEQ) {
    where(c, stages, false, w, sizeof w);
    problem(pr, NULL, "%sstages must be a list of stages", w);
    stages = NULL;
  } else {
    c->stages = sl__xcalloc(stages->n ? stages->n : 1, sizeof *c->stages);
    for (size_t i = 0; i < stages->n; i++) read_stage(c, stages->kids[i], i + 1, &c->stages[c->nstages++], pr);
  }
  if (dl) {
    c->dead_letter = sl__xcalloc(1, sizeof *c->dead_letter);
    read_stage(c, (sl_yaml_node *)dl, 0, c->dead_letter, pr);
  }
  for (size_t i = 0; i < c->nstages; i++) resolve_inputs(c, i);
  apply_stage_sets(c, o, pr);
  if (tests) read_tests(c, tests, pr);
}

static void stage_free(sl_yaml_stage *st) {
  sl__free(st->name);
  for (size_t i = 0; i < st->ninputs; i++) sl__free(st->inputs[i]);
  sl__free(st->inputs);
  for (size_t i = 0; i < st->nsets; i++) {
    sl__free(st->sets[i].arg);
    sl__free(st->sets[i].path);
    sl_value_free(st->sets[i].v);
  }
  sl__free(st->sets);
}

void sl_config_free(sl_config *c) {
  if (!c) return;
  for (size_t i = 0; i < c->nstages; i++) stage_free(&c->stages[i]);
  sl__free(c->stages);
  if (c->dead_letter) stage_free(c->dead_letter);
  sl__free(c->dead_letter);
  for (size_t i = 0; i < c->ntests; i++) {
    sl__free(c->tests[i].name);
    sl_value_free(c->tests[i].in_records);
    sl_value_free(c->tests[i].exp_records);
  }
  sl__free(c->tests);
  for (size_t i = 0; i < c->nlua; i++) {
    sl__free(c->lua[i].code);
    sl__free(c->lua[i].file);
  }
  sl__free(c->lua);
  node_free(c->root);
  sl__free(c->name);
  sl__free(c->file);
  sl__free(c->dir);
  sl__free(c);
}

int sl_config_load_text(const char *text, size_t len, const char *name, const sl_load_options *o, sl_config **out,
                        sl_error_t *err) {
  if (out) *out = NULL;
  if (!out || (!text && len)) return sl_error_set(err, SL_EINVAL, NULL, "sl_config_load_text: no text or no out");
  problems pr;
  problems_init(&pr);
  sl_config *c = sl__xcalloc(1, sizeof *c);
  c->file = sl__xstrdup(name && *name ? name : "<text>");
  const char *slash = strrchr(c->file, '/');
  c->dir = slash ? sl__xstrdup(c->file) : sl__xstrdup("");
  if (slash) c->dir[slash == c->file ? 1 : slash - c->file] = 0;
  /* a syntax error leaves half a tree: its meaning is not checked. Duplicate keys and aliases
   * leave a whole one, so the checks below add what else is wrong. */
  if (!parse_tree(c, text ? text : "", len, &pr)) goto done;
  char w[1200];
  where(c, c->root, false, w, sizeof w);
  if (!c->root || (c->root->type == YN_SCALAR && !c->root->len)) {
    problem(&pr, NULL, "%sthe file is empty: a pipeline file is a map with a stages: list", w);
    goto done;
  }
  if (c->root->type != YN_MAP) {
    problem(&pr, NULL, "%sa pipeline file is a map of keys (pipeline, stages, ...), not %s", w, what(c->root));
    goto done;
  }
  c->opts = o;
  c->set_used = sl__xcalloc(o && o->nsets ? o->nsets : 1, sizeof *c->set_used);
  expand_tree(c, c->root, &pr);
  apply_top_sets(c, o, &pr);
  read_top(c, o, &pr);
  sl__free(c->set_used);
  c->set_used = NULL;
  c->opts = NULL;
done:;
  int rc = problems_finish(&pr, err);
  if (rc) sl_config_free(c);
  else *out = c;
  return rc;
}

int sl_config_load_file(const char *path, const sl_load_options *o, sl_config **out, sl_error_t *err) {
  if (out) *out = NULL;
  if (!path) return sl_error_set(err, SL_EINVAL, NULL, "sl_config_load_file: no path");
  size_t len = 0;
  int errnum;
  char *text = read_file(path, &len, &errnum);
  if (!text)
    return sl_error_set(err, errnum == ENOMEM ? SL_ENOMEM : SL_EIO, NULL, "cannot read '%s': %s", path,
                        errnum == EINVAL ? "not a regular file" : strerror(errnum));
  int rc = sl_config_load_text(text, len, path, o, out, err);
  sl__free(text);
  return rc;
}

int sl_config_workers(const sl_config *c) { return c ? c->workers : 0; }
size_t sl_config_test_count(const sl_config *c) { return c ? c->ntests : 0; }
const char *sl_config_test_name(const sl_config *c, size_t i) { return c && i < c->ntests ? c->tests[i].name : NULL; }

/* ------------------------------------------------------------------------------------------ */
/* Building                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* The stage's _where (see the top of this file). */
static void stage_where(const sl_config *c, const sl_yaml_stage *st, char *w, size_t n) {
  const sl_yaml_node *kv = st->kind_val;
  bool shorthand = kv->type == YN_SEQ || (kv->type == YN_SCALAR && !is_nil_scalar(kv));
  where(c, shorthand ? kv : st->kind_key, shorthand, w, n);
}

/* Records in the SL__AT map *at where key and its value were written (pipeline.h), so the
 * engine's messages about an option point at it; a list value (input: [a, b]) gets an entry per
 * item too ("input.0", ...). */
static void at_node(const sl_config *c, sl_value *at, const char *key, const sl_yaml_node *kn, const sl_yaml_node *vn) {
  char w[1200];
  sl_value pos = sl_array(2);
  where(c, kn, false, w, sizeof w);
  sl_array_push(&pos, sl_cstr(w));
  where(c, vn, true, w, sizeof w);
  sl_array_push(&pos, sl_cstr(w));
  sl_map_setc(at, key, pos);
  for (size_t i = 0; vn->type == YN_SEQ && i < vn->n; i++) {
    char item[160];
    snprintf(item, sizeof item, "%s.%zu", key, i);
    at_node(c, at, item, vn->kids[i], vn->kids[i]);
  }
}

/* A Lua function written inside a map of options (`map: {fn: ...}`): the engine counts its lines
 * from the stage's _where (the kind key), so blank lines in front make Lua's messages name the
 * file's own lines. Other values as they are. */
static sl_value option_value(const sl_yaml_stage *st, const sl_option *opt, const sl_yaml_node *vn) {
  int gap = vn->cline - st->kind_key->line;
  if (!opt || !(opt->flags & SL_OPT_LUA) || !is_str_scalar(vn) || vn->origin || gap <= 0) return to_value(vn);
  sl_buf b;
  sl_buf_init(&b);
  for (int i = 0; i < gap; i++) sl_buf_append(&b, "\n", 1);
  sl_buf_append(&b, vn->s, vn->len);
  sl_value v = sl_str(b.data, b.len);
  sl_buf_close(&b);
  return v;
}

/* The option of this key of a kind, or NULL. */
static const sl_option *kind_option(const sl_stage_kind *kind, const char *key) {
  for (const sl_option *o = kind ? kind->options : NULL; o && o->type != SL_OPT_END; o++)
    if (strcmp(o->key, key) == 0) return o;
  return NULL;
}

/* The options map of a stage as sl_pipeline_add takes it: _where, the positions of its keys
 * (SL__AT), name, the common keys, the kind's options (a shorthand value becomes the kind's
 * primary option), then --set overrides. */
static bool stage_opts(const sl_config *c, sl_engine *e, const sl_yaml_stage *st, problems *pr, sl_value *out) {
  char w[1200];
  const sl_yaml_node *kv = st->kind_val;
  const sl_stage_kind *kind = sl_engine_kind(e, st->kind_key->s);
  stage_where(c, st, w, sizeof w);
  sl_value opts = sl_map(8), at = sl_map(8);
  bool ok = true;
  sl_map_setc(&opts, "_where", sl_cstr(w));
  sl_map_setc(&opts, SL__AT, sl_nil()); /* filled below; first, so the engine reads it first */
  const sl_yaml_node *name = common_key(st, "name");
  sl_map_setc(&opts, "name", name && !(name->type == YN_SCALAR && name->len) ? to_value(name) : sl_cstr(st->name));
  for (size_t i = 0; i < map_len(st->map); i++) {
    const char *k = map_key(st->map, i);
    if (!IN_LIST(k, common_keys)) continue;
    at_node(c, &at, k, st->map->kids[2 * i], map_val(st->map, i));
    if (strcmp(k, "name") != 0) sl_map_setc(&opts, k, to_value(map_val(st->map, i)));
  }
  if (kv->type == YN_MAP) {
    for (size_t i = 0; i < map_len(kv); i++) {
      const char *k = map_key(kv, i);
      if (strcmp(k, "name") == 0 && !map_get(st->map, "name")) { /* already in opts */
        at_node(c, &at, k, kv->kids[2 * i], map_val(kv, i));
        continue;
      }
      if (k[0] == '_' || (sl_map_getc(&opts, k) && IN_LIST(k, common_keys))) {
        where(c, kv->kids[2 * i], false, w, sizeof w);
        problem(pr, st->name, k[0] == '_' ? "%sstage '%s': unknown option '%s'" : "%sstage '%s': '%s' is given twice", w,
                st->name, k);
        ok = false;
      } else {
        at_node(c, &at, k, kv->kids[2 * i], map_val(kv, i));
        sl_map_setc(&opts, k, option_value(st, kind_option(kind, k), map_val(kv, i)));
      }
    }
  } else {
    sl_value v = to_value(kv);
    const sl_option *primary = NULL;
    for (const sl_option *opt = kind ? kind->options : NULL; opt && opt->type != SL_OPT_END; opt++)
      if (opt->flags & SL_OPT_PRIMARY) primary = opt;
    if (v.type == SL_TNIL || !kind) { /* no options; or an unknown kind, which add reports */
      sl_value_free(v);
    } else if (!primary) {
      problem(pr, st->name, "%sstage '%s': a %s stage takes a map of options, not a single value", w, st->name, kind->name);
      sl_value_free(v);
      ok = false;
    } else {
      at_node(c, &at, primary->key, kv, kv);
      sl_map_setc(&opts, primary->key, v);
    }
  }
  for (size_t i = 0; i < st->nsets && ok; i++) {
    const sl_yaml_set *set = &st->sets[i];
    if (set_path(&opts, set->path, sl_value_ref(&set->v)) != 0) {
      problem(pr, st->name, "--set '%s': a part of the option path is not a map", set->arg);
      ok = false;
    }
    snprintf(w, sizeof w, "--set '%s': ", set->arg);
    sl_value pos = sl_array(2);
    sl_array_push(&pos, sl_cstr(w));
    sl_array_push(&pos, sl_cstr(w));
    sl_map_set(&at, set->path, strcspn(set->path, "."), pos);
  }
  sl_map_setc(&opts, SL__AT, at);
  if (!ok) {
    sl_value_free(opts);
    return false;
  }
  *out = opts;
  return true;
}

static bool kind_has(sl_engine *e, const sl_yaml_stage *st, uint32_t flag) {
  const sl_stage_kind *k = st->kind_key ? sl_engine_kind(e, st->kind_key->s) : NULL;
  return k && (k->flags & flag);
}

/* A map of _where, name and input: a stand-in stage of a test. */
static sl_value standin_opts(const sl_config *c, const sl_yaml_stage *st, sl_value input) {
  char w[1200];
  stage_where(c, st, w, sizeof w);
  sl_value opts = sl_map(4);
  sl_map_setc(&opts, "_where", sl_cstr(w));
  sl_map_setc(&opts, "name", sl_cstr(st->name));
  sl_map_setc(&opts, "input", input);
  return opts;
}

static void add_stage(sl_pipeline *p, const char *kind, sl_value opts, const char *name, problems *pr, bool *failed) {
  sl_error_t e2;
  sl_error_init(&e2);
  if (sl_pipeline_add(p, kind, opts, &e2) != 0) {
    problem_err(pr, &e2, name);
    *failed = true;
  }
}

/* Builds the pipeline, or with t the rewritten graph of test t (*capture: the collect stage whose
 * records the test compares):
 *   - the test's records come from a `values` source: it takes the place of input.stage when that
 *     is a source, else it is named _test_input and becomes input.stage's only input;
 *   - only input.stage and the stages downstream of it are kept (their inputs from stages left
 *     out are dropped), so no other source runs;
 *   - every kept sink and the dead letter become `null` sinks with the same name and inputs, except
 *     expect.stage when it is a sink, which becomes a `collect` (it captures what the sink receives);
 *   - when expect.stage is not a sink, a `collect` named _test_expect reads from it.
 * Stages keep their options, common keys, settings and Lua code. */
static int build(const sl_config *c, sl_engine *e, const sl_yaml_test *t, const char **capture, sl_pipeline **out,
                 sl_error_t *err) {
  problems pr;
  problems_init(&pr);
  sl_pipeline *p = NULL;
  bool *keep = NULL, stage_failed = false;
  char w[1200];
  sl_error_t e2;
  *out = NULL;
  int rc = sl_pipeline_new(e, c->name, &p, err);
  if (rc) goto fail;
  for (size_t i = 0; i < map_len(c->root); i++) {
    const char *k = map_key(c->root, i);
    if (!IN_LIST(k, setting_keys)) continue;
    where(c, map_val(c->root, i), true, w, sizeof w);
    sl_error_init(&e2);
    if (sl_pipeline_set(p, k, to_value(map_val(c->root, i)), w, &e2) != 0) problem_err(&pr, &e2, NULL);
  }
  for (size_t i = 0; i < c->nlua; i++) {
    sl_error_init(&e2);
    if (sl_pipeline_add_lua(p, c->lua[i].code, c->lua[i].len, c->lua[i].file, c->lua[i].line, &e2) != 0)
      problem_err(&pr, &e2, NULL);
  }
  bool in_is_source = false;
  if (t) {
    keep = sl__xcalloc(c->nstages ? c->nstages : 1, sizeof *keep);
    keep[t->in_stage] = true;
    for (bool changed = true; changed;) { /* downstream of input.stage */
      changed = false;
      for (size_t j = 0; j < c->nstages; j++) {
        if (keep[j] || kind_has(e, &c->stages[j], SL_STAGE_SOURCE)) continue;
        for (size_t k = 0; k < c->stages[j].ninputs && !keep[j]; k++) {
          size_t from = input_index(c, c->stages[j].inputs[k]);
          if (from != SIZE_MAX && keep[from]) keep[j] = changed = true;
        }
      }
    }
    if (t->exp_stage < c->nstages && !keep[t->exp_stage]) {
      where(c, t->exp_node, true, w, sizeof w);
      problem(&pr, NULL, "%stest '%s': expect.stage '%s' receives no records from input.stage '%s'", w, t->name,
              c->stages[t->exp_stage].name, c->stages[t->in_stage].name);
      goto finish;
    }
    in_is_source = kind_has(e, &c->stages[t->in_stage], SL_STAGE_SOURCE);
    if (!in_is_source) {
      sl_value opts = sl_map(3);
      sl_map_setc(&opts, "name", sl_cstr(TEST_INPUT));
      sl_map_setc(&opts, "records", sl_value_ref(&t->in_records));
      add_stage(p, "values", opts, TEST_INPUT, &pr, &stage_failed);
    }
  }
  for (size_t i = 0; i < c->nstages; i++) {
    const sl_yaml_stage *st = &c->stages[i];
    if ((t && !keep[i]) || !st->kind_key) continue;
    const char *kind = st->kind_key->s;
    sl_value opts;
    if (!t) {
      if (!stage_opts(c, e, st, &pr, &opts)) {
        stage_failed = true;
        continue;
      }
      add_stage(p, kind, opts, st->name, &pr, &stage_failed);
      continue;
    }
    sl_value input = sl_array(st->ninputs);
    if (i == t->in_stage) sl_array_push(&input, sl_cstr(TEST_INPUT));
    else
      for (size_t k = 0; k < st->ninputs; k++) {
        size_t from = input_index(c, st->inputs[k]);
        if (from != SIZE_MAX && keep[from]) sl_array_push(&input, sl_cstr(st->inputs[k]));
      }
    if (i == t->in_stage && in_is_source) {
      kind = "values";
      opts = standin_opts(c, st, sl_nil());
      sl_map_del(&opts, "input", 5);
      sl_map_setc(&opts, "records", sl_value_ref(&t->in_records));
      sl_value_free(input);
    } else if (kind_has(e, st, SL_STAGE_SINK)) {
      kind = i == t->exp_stage ? "collect" : "null";
      opts = standin_opts(c, st, input);
    } else if (stage_opts(c, e, st, &pr, &opts)) {
      sl_map_setc(&opts, "input", input);
    } else {
      sl_value_free(input);
      stage_failed = true;
      continue;
    }
    add_stage(p, kind, opts, st->name, &pr, &stage_failed);
  }
  const sl_yaml_stage *dl = c->dead_letter;
  if (dl && dl->kind_key) {
    sl_value opts;
    if (t) add_stage(p, t->exp_stage == c->nstages ? "collect" : "null", standin_opts(c, dl, sl_array(0)), dl->name, &pr,
                     &stage_failed);
    else if (stage_opts(c, e, dl, &pr, &opts)) {
      sl_map_setc(&opts, "input", sl_array(0));
      add_stage(p, dl->kind_key->s, opts, dl->name, &pr, &stage_failed);
    } else {
      stage_failed = true;
    }
    stage_where(c, dl, w, sizeof w);
    sl_error_init(&e2);
    if (sl_pipeline_set(p, "dead_letter", sl_cstr(dl->name), w, &e2) != 0) problem_err(&pr, &e2, dl->name);
  }
  if (t) {
    const sl_yaml_stage *x = t->exp_stage < c->nstages ? &c->stages[t->exp_stage] : dl;
    *capture = x->name;
    if (t->exp_stage < c->nstages && !kind_has(e, x, SL_STAGE_SINK)) {
      sl_value opts = sl_map(2);
      sl_map_setc(&opts, "name", sl_cstr(TEST_EXPECT));
      sl_map_setc(&opts, "input", sl_cstr(x->name));
      add_stage(p, "collect", opts, TEST_EXPECT, &pr, &stage_failed);
      *capture = TEST_EXPECT;
    }
  }
  /* graph problems are only meaningful when every stage is there: a missing one would make its
   * neighbours look unconnected */
  sl_error_init(&e2);
  if (!stage_failed && sl_pipeline_check(p, &e2) != 0) problem_err(&pr, &e2, NULL);
finish:
  rc = problems_finish(&pr, err);
fail:
  sl__free(keep);
  if (rc) sl_pipeline_free(p);
  else *out = p;
  return rc;
}

int sl_config_build(const sl_config *c, sl_engine *e, sl_pipeline **out, sl_error_t *err) {
  if (out) *out = NULL;
  if (!c || !e || !out) return sl_error_set(err, SL_EINVAL, NULL, "sl_config_build: no config, engine or out");
  return build(c, e, NULL, NULL, out, err);
}

/* ------------------------------------------------------------------------------------------ */
/* Tests                                                                                       */
/* ------------------------------------------------------------------------------------------ */

static void report_record(sl_buf *r, const char *mark, size_t i, const sl_value *v) {
  sl_buf_printf(r, "%s [%zu] ", mark, i);
  sl_value_to_json(v, r);
  sl_buf_append(r, "\n", 1);
}

/* expect.lua: a Lua predicate over the list of records the expected stage received, bound to
 * `records` (an expression, a body with return, or a function of records). */
static int expect_lua(const sl_config *c, const sl_yaml_test *t, const sl_value *records, bool *passed, sl_buf *report,
                      sl_error_t *err) {
  char w[1200], msg[1024];
  where(c, t->lua, true, w, sizeof w);
  *passed = false;
  int rc = sl_lua_predicate(t->lua->s, c->file, t->lua->cline, records, passed, msg, sizeof msg);
  if (rc) return sl_error_set(err, SL_ECONFIG, NULL, "%stest '%s': expect.lua: %s", w, t->name, msg);
  if (!*passed) {
    sl_buf_printf(report, "expect.lua is false: %s\n", t->lua->s);
    for (size_t k = 0; k < sl_array_len(records) && k < 40; k++) report_record(report, "+", k, sl_array_get(records, k));
  }
  return 0;
}

#define REPORT_LINES 40 /* records shown after the first difference */

/* The diff of expected and actual records: equal ones with "  ", expected with "- ", actual with
 * "+ ", from a little before the first difference. */
static void report_diff(sl_buf *r, const char *stage, const sl_value *exp, const sl_value *got) {
  size_t ne = sl_array_len(exp), na = sl_array_len(got), n = ne > na ? ne : na, first = 0;
  while (first < ne && first < na && sl_value_equal(sl_array_get(exp, first), sl_array_get(got, first))) first++;
  sl_buf_printf(r, "stage '%s': expected %zu record%s, got %zu; first difference at index %zu\n", stage, ne,
                ne == 1 ? "" : "s", na, first);
  size_t i = first > 3 ? first - 3 : 0;
  if (i) sl_buf_printf(r, "  ... %zu equal records\n", i);
  for (; i < n && i < first + REPORT_LINES; i++) {
    const sl_value *a = sl_array_get(exp, i), *b = sl_array_get(got, i);
    if (a && b && sl_value_equal(a, b)) {
      report_record(r, " ", i, a);
      continue;
    }
    if (a) report_record(r, "-", i, a);
    if (b) report_record(r, "+", i, b);
  }
  if (i < n) sl_buf_printf(r, "  ... %zu more\n", n - i);
}

int sl_config_run_test(const sl_config *c, size_t i, sl_engine *e, bool *passed, sl_buf *report, sl_error_t *err) {
  bool ok = false;
  sl_buf scratch;
  sl_buf_init(&scratch);
  sl_buf *r = report ? report : &scratch;
  if (passed) *passed = false;
  if (!c || !e || i >= c->ntests)
    return sl_error_set(err, SL_EINVAL, NULL, "sl_config_run_test: no test %zu (the file has %zu)", i, c ? c->ntests : 0);
  const sl_yaml_test *t = &c->tests[i];
  const char *capture = NULL;
  sl_pipeline *p = NULL;
  sl_value got = sl_array(0);
  int rc = build(c, e, t, &capture, &p, err);
  if (rc) goto done;
  rc = sl_pipeline_run(p, err);
  if (rc) goto done;
  sl_collect *col = sl_pipeline_collect(p, capture);
  sl_value v;
  while (col && sl_collect_pull(col, &v, -1) == SL_OK) sl_array_push(&got, v);
  const char *stage = t->exp_stage < c->nstages ? c->stages[t->exp_stage].name : c->dead_letter->name;
  if (t->mode == EXPECT_RECORDS) {
    ok = sl_value_equal(&t->exp_records, &got);
    if (!ok) report_diff(r, stage, &t->exp_records, &got);
  } else if (t->mode == EXPECT_COUNT) {
    size_t n = sl_array_len(&got);
    ok = (int64_t)n == t->count;
    if (!ok) {
      sl_buf_printf(r, "stage '%s': expected %lld record%s, got %zu\n", stage, (long long)t->count, t->count == 1 ? "" : "s", n);
      for (size_t k = 0; k < n && k < REPORT_LINES; k++) report_record(r, "+", k, sl_array_get(&got, k));
      if (n > REPORT_LINES) sl_buf_printf(r, "  ... %zu more\n", n - REPORT_LINES);
    }
  } else {
    rc = expect_lua(c, t, &got, &ok, r, err);
  }
done:
  sl_value_free(got);
  sl_pipeline_free(p);
  sl_buf_close(&scratch);
  if (passed) *passed = ok && rc == 0;
  return rc;
}
