/*
 * graph.c — `sluice graph FILE [--format dot|mermaid]`: the pipeline's graph as built, from
 * sl_pipeline_stage_info. A node shows the stage's name, kind and a short summary of its
 * options; an edge shows the queue policy of the stage it enters; the dead-letter stage and the
 * paths failed records take to it are dashed.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define MAX_OPTS 3      /* options shown per stage */
#define MAX_VALUE 24    /* characters of an option's value */

#define BOX_MIN 32      /* inner width of an ASCII box at least */

/* A value in at most MAX_VALUE characters (cut on a UTF-8 boundary, "..." when cut). */
static void short_value(sl_buf *b, const sl_value *v) {
  sl_buf t;
  sl_buf_init(&t);
  if (sl_typeof(v) == SL_TSTR) {
    const char *s = sl_str_data(v);
    size_t n = sl_str_len(v);
    while (n && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')) s++, n--; /* a block's first line */
    bool binary = false;
    for (size_t i = 0; i < n; i++)
      if ((unsigned char)s[i] < 0x20 && s[i] != '\n' && s[i] != '\t') binary = true;
    if (binary) sl_buf_printf(&t, "<binary: %zu bytes>", n); /* a Lua function shipped to workers */
    else sl_buf_append(&t, s, n);
  } else {
    sl_value_to_json(v, &t);
  }
  size_t n = t.len;
  if (n > MAX_VALUE) {
    n = MAX_VALUE - 3;
    while (n > 0 && ((unsigned char)t.data[n] & 0xC0) == 0x80) n--;
  }
  sl_buf_append(b, t.len ? t.data : "", n);
  if (n < t.len) sl_buf_append(b, "...", 3);
  sl_buf_close(&t);
}

/* The lines of a node's label: name, kind, then key=value of its first options. */
static void node_label(sl_buf *b, const sl_stage_info *si, const char *sep) {
  sl_buf_printf(b, "%s%s%s", si->name, sep, si->kind);
  size_t shown = 0;
  for (size_t i = 0; si->opts && i < sl_map_len(si->opts) && shown < MAX_OPTS; i++) {
    const char *key = sl_str_data(sl_map_key(si->opts, i));
    if (key[0] == '_') continue; /* internal keys (_where) */
    sl_buf_printf(b, "%s%s=", sep, key);
    short_value(b, sl_map_val(si->opts, i));
    shown++;
  }
  if (si->parallelism > 1) sl_buf_printf(b, "%sparallelism=%d", sep, si->parallelism);
}

/* Text made safe inside a double-quoted dot string ("\n" in sep stays a line break). */
static void dot_escaped(FILE *out, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (ch == '\x01') fputs("\\n", out); /* our line separator */
    else if (ch == '"' || ch == '\\') fprintf(out, "\\%c", ch);
    else if (ch == '\n' || ch == '\r' || ch == '\t') fputc(' ', out);
    else fputc(ch, out);
  }
}

/* Text made safe inside a quoted Mermaid label: entity codes for what its parser reads. */
static void mermaid_escaped(FILE *out, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (ch == '\x01') fputs("<br/>", out);
    else if (ch == '"' || ch == '#' || ch == '<' || ch == '>' || ch == '&' || ch == '`') fprintf(out, "#%d;", ch);
    else if (ch == '\n' || ch == '\r' || ch == '\t') fputc(' ', out);
    else fputc(ch, out);
  }
}

static void escaped(FILE *out, graph_format f, const char *s) {
  if (f == FORMAT_DOT) dot_escaped(out, s, strlen(s));
  else mermaid_escaped(out, s, strlen(s));
}

/* The stage receiving failed records: the dead_letter setting, or else a sink that reads from
 * nothing (the graph check allows an empty input list only for the dead letter). */
static const char *dead_letter_of(const sl_pipeline *p) {
  const sl_value *v = sl_pipeline_setting(p, "dead_letter");
  if (v && sl_typeof(v) == SL_TSTR) return sl_str_data(v);
  for (size_t i = 0; i < sl_pipeline_stage_count(p); i++) {
    sl_stage_info si;
    if (sl_pipeline_stage_info(p, i, &si) == 0 && (si.flags & SL_STAGE_SINK) && !(si.flags & SL_STAGE_SOURCE) &&
        si.ninputs == 0)
      return si.name;
  }
  return NULL;
}

/* Does a failed record of this stage go to the dead letter? Its own on_error, else the
 * pipeline's, else dead_letter when there is a dead-letter stage (DESIGN section 3). Only
 * transforms are drawn with the dashed edge (sources and sinks fail the pipeline instead,
 * mostly); a stage that says on_error: dead_letter itself always is. */
static bool to_dead_letter(const sl_pipeline *p, const sl_stage_info *si, const char *dl) {
  if (!dl || strcmp(si->name, dl) == 0) return false;
  if (si->on_error) return strcmp(si->on_error, "dead_letter") == 0;
  if (si->flags & (SL_STAGE_SOURCE | SL_STAGE_SINK)) return false;
  const sl_value *v = sl_pipeline_setting(p, "on_error");
  return !(v && sl_typeof(v) == SL_TSTR && strcmp(sl_str_data(v), "dead_letter") != 0);
}

static size_t index_of(const sl_pipeline *p, const char *name) {
  for (size_t i = 0; i < sl_pipeline_stage_count(p); i++) {
    sl_stage_info si;
    if (sl_pipeline_stage_info(p, i, &si) == 0 && strcmp(si.name, name) == 0) return i;
  }
  return (size_t)-1;
}

void graph_print(FILE *out, const sl_pipeline *p, graph_format f) {
  const char *dl = dead_letter_of(p);
  size_t n = sl_pipeline_stage_count(p);
  size_t dl_index = dl ? index_of(p, dl) : (size_t)-1;
  if (f == FORMAT_DOT) {
    fprintf(out, "digraph \"");
    escaped(out, f, sl_pipeline_name(p));
    fprintf(out, "\" {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fillcolor=white, fontname=\"Helvetica\"];\n"
           "  edge [fontname=\"Helvetica\", fontsize=10];\n");
  } else {
    fprintf(out, "flowchart LR\n");
  }
  sl_buf label;
  sl_buf_init(&label);
  for (size_t i = 0; i < n; i++) {
    sl_stage_info si;
    if (sl_pipeline_stage_info(p, i, &si) != 0) continue;
    label.len = 0;
    node_label(&label, &si, "\x01");
    bool is_dl = i == dl_index;
    if (f == FORMAT_DOT) {
      fprintf(out, "  s%zu [label=\"", i);
      dot_escaped(out, label.data, label.len);
      fprintf(out, "\"");
      if (is_dl) fprintf(out, ", style=\"rounded,dashed\"");
      else if (si.flags & SL_STAGE_SOURCE) fprintf(out, ", fillcolor=\"#e8f0fe\"");
      else if (si.flags & SL_STAGE_SINK) fprintf(out, ", fillcolor=\"#e6f4ea\"");
      fprintf(out, "];\n");
    } else {
      fprintf(out, "  s%zu[\"", i);
      mermaid_escaped(out, label.data, label.len);
      fprintf(out, "\"]\n");
      if (is_dl) fprintf(out, "  style s%zu stroke-dasharray: 5 5\n", i);
    }
  }
  for (size_t i = 0; i < n; i++) {
    sl_stage_info si;
    if (sl_pipeline_stage_info(p, i, &si) != 0) continue;
    label.len = 0;
    if (si.queue_cap) sl_buf_printf(&label, "cap %llu", (unsigned long long)si.queue_cap);
    if (si.on_full && strcmp(si.on_full, "block") != 0) sl_buf_printf(&label, "%s%s", label.len ? ", " : "", si.on_full);
    for (int k = 0; k < si.ninputs; k++) {
      size_t from = index_of(p, si.inputs[k]);
      const char *dot = strrchr(si.inputs[k], '.');
      size_t base = label.len;
      if (from == (size_t)-1 && dot) { /* <stage>.<output> of a route: the edge says which output */
        char stage[256];
        snprintf(stage, sizeof stage, "%.*s", (int)(dot - si.inputs[k]), si.inputs[k]);
        from = index_of(p, stage);
        sl_buf_printf(&label, "%s%s", label.len ? ", " : "", dot + 1);
      }
      if (from == (size_t)-1) continue; /* check() reported it */
      if (f == FORMAT_DOT) {
        fprintf(out, "  s%zu -> s%zu", from, i);
        if (label.len) {
          fprintf(out, " [label=\"");
          dot_escaped(out, label.data, label.len);
          fprintf(out, "\"]");
        }
        fprintf(out, ";\n");
      } else if (label.len) {
        fprintf(out, "  s%zu -- \"", from);
        mermaid_escaped(out, label.data, label.len);
        fprintf(out, "\" --> s%zu\n", i);
      } else {
        fprintf(out, "  s%zu --> s%zu\n", from, i);
      }
      label.len = base; /* the output's name was for this edge only */
      if (label.data) label.data[base] = 0;
    }
    if (to_dead_letter(p, &si, dl) && dl_index != (size_t)-1) {
      if (f == FORMAT_DOT) fprintf(out, "  s%zu -> s%zu [style=dashed, label=\"failed\"];\n", i, dl_index);
      else fprintf(out, "  s%zu -. failed .-> s%zu\n", i, dl_index);
    }
  }
  if (f == FORMAT_DOT) fprintf(out, "}\n");
  sl_buf_close(&label);
  fflush(out);
}

/* ---- ASCII ----------------------------------------------------------------------------- */

/* The stages in an order where each comes after its inputs (Kahn's algorithm, keeping the order
 * they were added among those ready), or as added if the graph has a cycle (check reports it). */
static size_t *topo_order(const sl_pipeline *p, size_t n) {
  size_t *order = calloc(n ? n : 1, sizeof *order);
  bool *placed = calloc(n ? n : 1, sizeof *placed);
  size_t k = 0;
  if (!order || !placed) goto done;
  for (bool moved = true; moved && k < n;) {
    moved = false;
    for (size_t i = 0; i < n; i++) {
      sl_stage_info si;
      if (placed[i] || sl_pipeline_stage_info(p, i, &si) != 0) continue;
      bool ready = true;
      for (int j = 0; j < si.ninputs && ready; j++) {
        size_t from = index_of(p, si.inputs[j]);
        ready = from == (size_t)-1 || placed[from];
      }
      if (!ready) continue;
      placed[i] = moved = true;
      order[k++] = i;
      break; /* the earliest ready stage first */
    }
  }
  for (size_t i = 0; i < n; i++)
    if (!placed[i]) order[k++] = i;
done:
  free(placed);
  return order;
}

/* Appends one line of a box's text (the lines are separated by '\n' in b). */
static void box_line(sl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void box_line(sl_buf *b, const char *fmt, ...) {
  char line[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  sl_buf_printf(b, "%s%s", b->len ? "\n" : "", line);
}

/* The names of the stages reading from stage i ("a, b"), into b. */
static size_t readers(const sl_pipeline *p, const char *name, sl_buf *b, size_t *only) {
  size_t count = 0;
  for (size_t i = 0; i < sl_pipeline_stage_count(p); i++) {
    sl_stage_info si;
    if (sl_pipeline_stage_info(p, i, &si) != 0) continue;
    for (int k = 0; k < si.ninputs; k++)
      if (strcmp(si.inputs[k], name) == 0) {
        sl_buf_printf(b, "%s%s", count ? ", " : "", si.name);
        *only = i;
        count++;
        break;
      }
  }
  return count;
}

/* Columns a UTF-8 string takes (one per character). */
static size_t columns(const char *s, size_t n) {
  size_t c = 0;
  for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
  return c;
}

static void rule(FILE *out, size_t width) {
  fputc('+', out);
  for (size_t i = 0; i < width + 2; i++) fputc('-', out);
  fputs("+\n", out);
}

/* The graph as boxes in one column, for a terminal: each stage's name, kind and first options;
 * an arrow joins a stage to the next when that one reads from it alone; otherwise the boxes say
 * where records come from ("<- from") and go to ("-> to"). The dead letter says so. */
void graph_ascii(FILE *out, const sl_pipeline *p) {
  size_t n = sl_pipeline_stage_count(p);
  size_t *order = topo_order(p, n);
  const char *dl = dead_letter_of(p);
  sl_buf *text = calloc(n ? n : 1, sizeof *text);
  bool *joined = calloc(n ? n : 1, sizeof *joined); /* an arrow from the box above */
  if (!order || !text || !joined) goto done;
  size_t width = BOX_MIN;
  for (size_t k = 0; k < n; k++) {
    sl_stage_info si, prev;
    sl_buf *b = &text[k];
    sl_buf_init(b);
    if (sl_pipeline_stage_info(p, order[k], &si) != 0) continue;
    joined[k] = k > 0 && si.ninputs == 1 && sl_pipeline_stage_info(p, order[k - 1], &prev) == 0 &&
                strcmp(prev.name, si.inputs[0]) == 0;
    box_line(b, "%s  (%s)", si.name, si.kind);
    sl_buf opts;
    sl_buf_init(&opts);
    node_label(&opts, &si, "\n");
    const char *rest = strchr(opts.data ? opts.data : "", '\n');
    rest = rest ? strchr(rest + 1, '\n') : NULL; /* skip name and kind */
    while (rest) {
      const char *end = strchr(rest + 1, '\n');
      box_line(b, "  %.*s", (int)(end ? end - rest - 1 : (long)strlen(rest + 1)), rest + 1);
      rest = end;
    }
    sl_buf_close(&opts);
    if (!joined[k] && si.ninputs > 0) {
      sl_buf from;
      sl_buf_init(&from);
      for (int j = 0; j < si.ninputs; j++) sl_buf_printf(&from, "%s%s", j ? ", " : "", si.inputs[j]);
      box_line(b, "  <- from %s", from.data);
      sl_buf_close(&from);
    }
    sl_buf to;
    sl_buf_init(&to);
    size_t only = (size_t)-1;
    size_t m = readers(p, si.name, &to, &only);
    bool next_joined = k + 1 < n && m == 1 && only == order[k + 1];
    if (m > 0 && !next_joined) box_line(b, "  -> to %s", to.data);
    sl_buf_close(&to);
    if (dl && strcmp(dl, si.name) == 0) box_line(b, "  (dead letter: receives the failed records)");
    for (const char *l = b->data; l && *l;) {
      const char *end = strchr(l, '\n');
      size_t len = end ? (size_t)(end - l) : strlen(l);
      if (columns(l, len) > width) width = columns(l, len);
      l = end ? end + 1 : l + len;
    }
  }
  for (size_t k = 0; k < n; k++) {
    sl_stage_info si;
    if (sl_pipeline_stage_info(p, order[k], &si) != 0) continue;
    if (joined[k]) {
      char label[64] = "";
      bool plain = si.queue_cap == 1024 && (!si.on_full || strcmp(si.on_full, "block") == 0);
      if (!plain) snprintf(label, sizeof label, "  cap %llu%s%s", (unsigned long long)si.queue_cap,
                           si.on_full && strcmp(si.on_full, "block") != 0 ? ", " : "",
                           si.on_full && strcmp(si.on_full, "block") != 0 ? si.on_full : "");
      fprintf(out, "%*s|\n%*sv%s\n", (int)(width / 2 + 2), "", (int)(width / 2 + 2), "", label);
    } else if (k > 0) {
      fputc('\n', out);
    }
    rule(out, width);
    for (const char *l = text[k].data; l && *l;) {
      const char *end = strchr(l, '\n');
      size_t len = end ? (size_t)(end - l) : strlen(l);
      fprintf(out, "| %.*s%*s |\n", (int)len, l, (int)(width - columns(l, len)), "");
      l = end ? end + 1 : l + len;
    }
    rule(out, width);
  }
done:
  for (size_t k = 0; text && k < n; k++) sl_buf_close(&text[k]);
  free(text);
  free(joined);
  free(order);
  fflush(out);
}

typedef struct graph_ctx {
  FILE *out;            /* where graphs go */
  graph_format format;
  int status;
  bool reported;
} graph_ctx;

/* Prints the graph of a checked pipeline; its problems otherwise. */
static int graph_pipeline(graph_ctx *c, sl_pipeline *p, sl_error_t *err) {
  int rc = sl_pipeline_check(p, err);
  if (rc) {
    fprintf(stderr, "%s\n", err->msg[0] ? err->msg : sl_strerror(rc));
    c->status = CLI_USAGE;
    c->reported = true;
    return rc;
  }
  graph_print(c->out, p, c->format);
  return 0;
}

/* The run hook of a Lua script under graph: p:run() prints the graph instead of running. */
static int graph_hook(void *ud, sl_pipeline *p, sl_error_t *err) { return graph_pipeline(ud, p, err); }

int graph_main(int argc, char **argv) {
  const char *usage = help_verb_usage("graph");
  static const args_flag flags[] = {{"format", true, false}, {NULL, false, false}};
  args a;
  int status = args_parse(&a, "graph", flags, argc, argv, usage);
  if (status) goto done;
  if (a.help) {
    fputs(usage, stdout);
    goto done;
  }
  graph_ctx c = {stdout, FORMAT_DOT, CLI_OK, false};
  if (a.values[0] && strcmp(a.values[0], "mermaid") == 0) c.format = FORMAT_MERMAID;
  else if (a.values[0] && strcmp(a.values[0], "dot") != 0) {
    status = args_error("graph", usage, "--format is dot or mermaid (got '%s')", a.values[0]);
    goto done;
  }
  if (!a.file || a.nrest) {
    status = args_error("graph", usage, a.file ? "one FILE at a time" : "missing FILE");
    goto done;
  }
  load_type type = load_type_of(a.file);
  if (type == LOAD_OTHER) {
    status = load_bad_type("graph", a.file);
    goto done;
  }
  load_log log;
  load_log_init(&log, false);
  if (type == LOAD_YAML) {
    load_yaml y;
    status = load_yaml_open(&y, a.file, NULL, 0, 1, false, &log);
    if (status == 0) {
      sl_error_t err;
      sl_error_init(&err);
      graph_pipeline(&c, y.pipeline, &err);
      status = c.status;
    }
    load_yaml_free(&y);
  } else {
    /* the script's own output (print) goes to stderr, so stdout holds only graphs */
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    c.out = saved >= 0 ? fdopen(saved, "w") : NULL;
    if (!c.out || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
      fprintf(stderr, "sluice graph: cannot set up standard output\n");
      if (c.out) fclose(c.out);
      else if (saved >= 0) close(saved);
      status = CLI_FAILED;
    } else {
      sl_engine_config cfg;
      load_engine_config(&cfg, 1, false, &log);
      status = load_lua_run(a.file, &cfg, graph_hook, &c, NULL, 0, &c.reported);
      if (c.status != CLI_OK) status = c.status;
      fflush(stdout);
      dup2(saved, STDOUT_FILENO);
      fclose(c.out);
    }
  }
  load_log_close(&log);
done:
  args_free(&a);
  return status;
}
