/*
 * graph.c — building a pipeline's graph, validating it, starting it and freeing it.
 *
 * Front ends (the C API here, YAML and Lua later) all come through sl_pipeline_add, which splits
 * the common keys (name, input, on_error, parallelism, queue) from the kind's options and checks
 * the options against the kind's table at once, so errors surface before anything runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "httpc.h"
#include "lock.h"
#include "lua.h"
#include "pipeline.h"
#include "policy.h"

#define DEFAULT_QUEUE 1024

static bool is_source(const sl_node *n) { return n->kind->flags & SL_STAGE_SOURCE; }
static bool is_sink(const sl_node *n) { return n->kind->flags & SL_STAGE_SINK; }
static bool is_passive(const sl_node *n) { return n->kind->flags & SL_STAGE_PASSIVE; }

int sl_pipeline_new(sl_engine *e, const char *name, sl_pipeline **out, sl_error_t *err) {
  sl_pipeline *p = sl__mem_calloc(&e->mem, sizeof *p);
  p->e = e;
  p->name = sl__xstrdup(name && *name ? name : "pipeline");
  p->on_error = SL_ON_ERROR_DEFAULT;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->done_cv, NULL);
  pthread_mutex_lock(&e->mu);
  e->pipelines++;
  pthread_mutex_unlock(&e->mu);
  *out = p;
  return 0;
}

static const char *const on_error_names[] = {"skip", "fail", "dead_letter"};

static int parse_on_error(const char *s) {
  for (int i = 0; i < 3; i++)
    if (strcmp(s, on_error_names[i]) == 0) return i;
  return -2;
}

int sl_pipeline_set_on_error(sl_pipeline *p, const char *policy, sl_error_t *err) {
  if (p->state != SL_P_BUILDING)
    return sl_error_set(err, SL_ESTATE, NULL, "pipeline '%s' already started: on_error is set before start", p->name);
  int pol = parse_on_error(policy);
  if (pol < 0)
    return sl_error_set(err, SL_ECONFIG, NULL, "on_error must be skip, fail or dead_letter (got '%s')", policy);
  p->on_error = pol;
  return 0;
}

int sl_pipeline_set_dead_letter(sl_pipeline *p, const char *stage, sl_error_t *err) {
  if (p->state != SL_P_BUILDING)
    return sl_error_set(err, SL_ESTATE, NULL, "pipeline '%s' already started: the dead letter is set before start", p->name);
  sl__free(p->dead_letter_name);
  p->dead_letter_name = stage ? sl__xstrdup(stage) : NULL;
  return 0;
}

/* Reads the value of a common key that must be a string. */
static const char *str_of(const sl_value *v) { return v && v->type == SL_TSTR ? sl_str_data(v) : NULL; }

/* Splits the common keys off opts into n. Returns the remaining kind options (owned). */
static int take_common(sl_pipeline *p, sl_node *n, sl_value opts, sl_value *rest, sl_error_t *err) {
  *rest = sl_nil();
  if (opts.type != SL_TMAP) {
    *rest = opts;
    return 0;
  }
  sl_value r = sl_map(sl_map_len(&opts));
  const sl_value *at = sl_map_getc(&opts, SL__AT);
  int rc = 0;
  for (size_t i = 0; i < sl_map_len(&opts) && rc == 0; i++) {
    const char *k = sl_str_data(sl_map_key(&opts, i));
    const sl_value *v = sl_map_val(&opts, i);
    if (strcmp(k, "_where") == 0) {
      if (str_of(v)) {
        sl__free(n->where);
        n->where = sl__xstrdup(str_of(v));
      }
    } else if (strcmp(k, "name") == 0) {
      if (!str_of(v) || !*str_of(v))
        rc = sl_error_set(err, SL_ECONFIG, NULL, "%sstage '%s': name must be a non-empty string", sl__at(at, k, true, n->where), n->name);
      else {
        sl__free(n->name);
        n->name = sl__xstrdup(str_of(v));
      }
    } else if (strcmp(k, "input") == 0) {
      n->default_input = false;
      if (str_of(v)) {
        n->input_names = sl__xcalloc(1, sizeof *n->input_names);
        n->input_names[n->ninput_names++] = sl__xstrdup(str_of(v));
      } else if (v->type == SL_TARRAY) {
        size_t m = sl_array_len(v);
        n->input_names = sl__xcalloc(m ? m : 1, sizeof *n->input_names);
        for (size_t j = 0; j < m && rc == 0; j++) {
          const char *s = str_of(sl_array_get(v, j));
          if (!s) rc = sl_error_set(err, SL_ECONFIG, NULL, "%sstage '%s': input must be a stage name or a list of names", sl__at(at, k, true, n->where), n->name);
          else n->input_names[n->ninput_names++] = sl__xstrdup(s);
        }
      } else {
        rc = sl_error_set(err, SL_ECONFIG, NULL, "%sstage '%s': input must be a stage name or a list of names", sl__at(at, k, true, n->where), n->name);
      }
    } else if (strcmp(k, "on_error") == 0) {
      n->on_error = str_of(v) ? parse_on_error(str_of(v)) : -2;
      if (n->on_error < -1)
        rc = sl_error_set(err, SL_ECONFIG, NULL, "%sstage '%s': on_error must be skip, fail or dead_letter", sl__at(at, k, true, n->where), n->name);
    } else if (strcmp(k, "partition_by") == 0) {
      if (!str_of(v) || !*str_of(v))
        rc = sl_error_set(err, SL_ECONFIG, NULL, "%sstage '%s': partition_by must be a Lua function or expression of r (such as r.host)", sl__at(at, k, true, n->where), n->name);
      else {
        sl__free(n->part_by);
        sl__free(n->part_where);
        n->part_by = sl__xstrdup(str_of(v));
        n->part_where = sl__xstrdup(sl__at(at, k, true, n->where));
      }
    } else if (strcmp(k, "parallelism") == 0) {
      if (str_of(v) && strcmp(str_of(v), "auto") == 0) n->parallelism = 0;
      else if (v->type == SL_TINT && v->u.i >= 1 && v->u.i <= 1024) n->parallelism = (int)v->u.i;
      else rc = sl_error_set(err, SL_ECONFIG, NULL, "%sstage '%s': parallelism must be an integer from 1 to 1024, or auto", sl__at(at, k, true, n->where), n->name);
    } else if (strcmp(k, "queue") == 0) {
      const sl_value *cap = v->type == SL_TMAP ? sl_map_getc(v, "capacity") : NULL;
      const sl_value *full = v->type == SL_TMAP ? sl_map_getc(v, "on_full") : NULL;
      size_t known = (cap != NULL) + (full != NULL);
      if (v->type != SL_TMAP || known != sl_map_len(v))
        rc = sl_error_set(err, SL_ECONFIG, NULL, "%sstage '%s': queue takes {capacity: N, on_full: block|drop_newest|drop_oldest}", sl__at(at, k, true, n->where), n->name);
      else if (cap && (cap->type != SL_TINT || cap->u.i < 1))
        rc = sl_error_set(err, SL_ECONFIG, NULL, "%sstage '%s': queue capacity must be a positive integer", sl__at(at, k, true, n->where), n->name);
      else {
        n->queue_set = true;
        if (cap) n->queue_cap = (uint64_t)cap->u.i;
        if (full) {
          const char *f = str_of(full);
          if (f && strcmp(f, "block") == 0) n->on_full = SL_ON_FULL_BLOCK;
          else if (f && strcmp(f, "drop_newest") == 0) n->on_full = SL_ON_FULL_DROP_NEWEST;
          else if (f && strcmp(f, "drop_oldest") == 0) n->on_full = SL_ON_FULL_DROP_OLDEST;
          else rc = sl_error_set(err, SL_ECONFIG, NULL, "%sstage '%s': on_full must be block, drop_newest or drop_oldest", sl__at(at, k, true, n->where), n->name);
        }
      }
    } else {
      sl_map_set(&r, k, sl_str_len(sl_map_key(&opts, i)), sl_value_ref(v));
    }
  }
  sl_value_free(opts);
  if (rc) {
    sl_value_free(r);
    return rc;
  }
  *rest = r;
  return 0;
}

/* Copies the named outputs a kind declares (route) into the node; checks they can be named in
 * `input: <stage>.<output>`. */
static int take_outputs(sl_node *n, const void *scratch, sl_error_t *err) {
  const char *const *names = NULL;
  size_t m = n->kind->outputs(scratch, &names);
  if (m > 1000)
    return sl_error_set(err, SL_ECONFIG, n->name, "%sstage '%s': at most 1000 outputs (got %zu)", n->where, n->name, m);
  n->outputs = sl__xcalloc(m ? m : 1, sizeof *n->outputs);
  for (size_t i = 0; i < m; i++) {
    const char *o = names[i];
    if (!*o || strchr(o, '.') || strcmp(o, "default") == 0)
      return sl_error_set(err, SL_ECONFIG, n->name, "%sstage '%s': output name '%s' is not allowed (not empty, no '.', not 'default')",
                          n->where, n->name, o);
    for (int j = 0; j < n->noutputs; j++)
      if (strcmp(n->outputs[j], o) == 0)
        return sl_error_set(err, SL_ECONFIG, n->name, "%sstage '%s': output '%s' is named twice", n->where, n->name, o);
    n->outputs[n->noutputs++] = sl__xstrdup(o);
  }
  return 0;
}

static void node_free(sl_node *n) {
  if (!n) return;
  sl__breaker_free(n->breaker);
  sl__free(n->name);
  sl__free(n->where);
  sl__free(n->part_by);
  sl__free(n->part_where);
  sl_value_free(n->at);
  sl_value_free(n->opts);
  for (int i = 0; i < n->ninput_names; i++) sl__free(n->input_names[i]);
  sl__free(n->input_names);
  sl__free(n->in);
  sl__free(n->out);
  sl__free(n->fn_ptrs);
  for (int i = 0; i < n->noutputs; i++) sl__free(n->outputs[i]);
  sl__free(n->outputs);
  sl__mem_free(sl__pmem(n->p), n, sizeof *n);
}

/* Adds a node; ptrs (may be NULL) gives SL_OPT_PTR values in option-table order. */
static int add_node(sl_pipeline *p, const char *kind, sl_value opts, void **ptrs, size_t nptrs,
                    sl_error_t *err) {
  int rc = 0;
  sl_value rest = sl_nil();
  sl_node *n = NULL;
  if (p->state != SL_P_BUILDING) {
    sl_value_free(opts);
    return sl_error_set(err, SL_ESTATE, NULL, "pipeline '%s' already started: stages can no longer be added", p->name);
  }
  const sl_stage_kind *k = sl_engine_kind(p->e, kind ? kind : "");
  /* A sink kind first in a pipeline, with no input named, is its source twin `<kind>_in` when
   * there is one: `file` reads there (file_in), as DESIGN.md writes it. */
  if (k && !(k->flags & SL_STAGE_SOURCE) && p->nnodes == 0 && !(opts.type == SL_TMAP && sl_map_getc(&opts, "input"))) {
    char twin[128];
    snprintf(twin, sizeof twin, "%s_in", k->name);
    const sl_stage_kind *src = sl_engine_kind(p->e, twin);
    if (src && (src->flags & SL_STAGE_SOURCE)) k = src;
  }
  if (!k) {
    const char *names[256];
    size_t m = sl_engine_kind_count(p->e);
    for (size_t i = 0; i < m && i < 256; i++) names[i] = sl_engine_kind_at(p->e, i)->name;
    const char *dym = sl_did_you_mean(kind ? kind : "", names, m < 256 ? m : 256);
    const char *where = "";
    if (opts.type == SL_TMAP && str_of(sl_map_getc(&opts, "_where"))) where = str_of(sl_map_getc(&opts, "_where"));
    const char *name = opts.type == SL_TMAP ? str_of(sl_map_getc(&opts, "name")) : NULL;
    rc = sl_error_set(err, SL_ECONFIG, name, "%s%s%s%sunknown stage kind '%s'%s%s%s (sluice help lists them)", where,
                      name ? "stage '" : "", name ? name : "", name ? "': " : "", kind ? kind : "",
                      dym ? ": did you mean '" : "", dym ? dym : "", dym ? "'?" : "");
    sl_value_free(opts);
    goto fail;
  }
  n = sl__mem_calloc(sl__pmem(p), sizeof *n);
  n->p = p;
  n->kind = k;
  n->index = p->nnodes;
  n->default_input = true;
  n->on_error = SL_ON_ERROR_DEFAULT;
  n->parallelism = -1; /* not given */
  n->queue_cap = (k->flags & SL_STAGE_PASSIVE) ? 0 : DEFAULT_QUEUE;
  char defname[128];
  snprintf(defname, sizeof defname, "%s#%d", k->name, p->nnodes + 1);
  n->name = sl__xstrdup(defname);
  rc = take_common(p, n, opts, &rest, err);
  if (!n->where) n->where = sl__xstrdup("");
  if (rc) goto fail;
  if (sl__pipeline_node(p, n->name)) {
    rc = sl_error_set(err, SL_ECONFIG, n->name, "%sstage name '%s' is used twice: give each stage its own name", n->where, n->name);
    goto fail;
  }
  if (n->part_by && (k->flags & (SL_STAGE_STATELESS | SL_STAGE_SOURCE | SL_STAGE_SINK | SL_STAGE_PASSIVE) || k->outputs)) {
    rc = sl_error_set(err, SL_ECONFIG, n->name, "%sstage '%s': partition_by applies to stages that keep state (such as take, chunks, throttle, reduce, window); a %s stage %s: remove partition_by",
                      n->part_where, n->name, k->name, (k->flags & SL_STAGE_STATELESS) && !k->outputs ? "keeps none and already runs in parallel" : "cannot be partitioned");
    goto fail;
  }
  if (n->parallelism > 1 && !(k->flags & SL_STAGE_STATELESS) && !n->part_by) {
    rc = sl_error_set(err, SL_ECONFIG, n->name, "%sstage '%s': a %s stage keeps state and runs as one instance; remove parallelism, or give partition_by to run one instance per key", n->where, n->name, k->name);
    goto fail;
  }
  if (n->parallelism < 0) n->parallelism = (k->flags & SL_STAGE_STATELESS) || n->part_by ? 0 : 1; /* 0: auto */
  if (n->parallelism == 0 && !(k->flags & SL_STAGE_STATELESS) && !n->part_by) n->parallelism = 1;
  if (n->part_by && (rc = sl_lua_check_fn(p, n->part_by, n->part_where, n->name, err)) != 0) goto fail;
  /* validate the options now, on a scratch context */
  size_t nopt = 0;
  if (k->options)
    while (k->options[nopt].type != SL_OPT_END) nopt++;
  if (nptrs) {
    n->fn_ptrs = sl__xcalloc(nopt ? nopt : 1, sizeof *n->fn_ptrs);
    for (size_t i = 0; i < nptrs && i < nopt; i++) n->fn_ptrs[i] = ptrs[i];
  }
  void *scratch = sl__xcalloc(1, k->ctx_size ? k->ctx_size : 1);
  rc = sl__options_apply(k->options, scratch, &rest, n->fn_ptrs, n->where, n->name, k->name, err);
  if (rc == 0 && k->check) rc = k->check(scratch, p, n->name, n->where, err);
  if (rc == 0 && k->outputs) rc = take_outputs(n, scratch, err);
  sl__options_free(k->options, scratch);
  sl__free(scratch);
  if (rc) goto fail;
  if (sl_map_getc(&rest, SL__AT)) { /* positions are for messages, not options */
    n->at = sl_value_ref(sl_map_getc(&rest, SL__AT));
    sl_map_del(&rest, SL__AT, strlen(SL__AT));
  }
  n->opts = rest;
  if (p->nnodes == p->capnodes) {
    p->capnodes = p->capnodes ? p->capnodes * 2 : 8;
    p->nodes = sl__xrealloc(p->nodes, (size_t)p->capnodes * sizeof *p->nodes);
  }
  p->nodes[p->nnodes++] = n;
  return 0;
fail:
  sl_value_free(rest);
  node_free(n);
  return rc;
}

int sl_pipeline_add(sl_pipeline *p, const char *kind, sl_value opts, sl_error_t *err) {
  return add_node(p, kind, opts, NULL, 0, err);
}

int sl_pipeline_add_json(sl_pipeline *p, const char *kind, const char *json, sl_error_t *err) {
  sl_value opts = sl_nil();
  if (json && *json) {
    int rc = sl_value_from_json(json, strlen(json), &opts, err);
    if (rc) return rc;
  }
  return add_node(p, kind, opts, NULL, 0, err);
}

int sl_pipeline_add_fn(sl_pipeline *p, const char *kind, sl_record_fn fn, void *ud, sl_value opts,
                       sl_error_t *err) {
  if (!kind || (strcmp(kind, "c_map") != 0 && strcmp(kind, "c_filter") != 0)) {
    sl_value_free(opts);
    return sl_error_set(err, SL_EINVAL, NULL, "sl_pipeline_add_fn takes kind c_map or c_filter (got '%s')", kind ? kind : "");
  }
  void *ptrs[2] = {(void *)fn, ud};
  return add_node(p, kind, opts, ptrs, 2, err);
}

/* ------------------------------------------------------------------------------------------ */
/* Checking                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* Appends one problem to err (several are reported at once, one per line). */
static void problem(sl_error_t *err, int *count, const sl_node *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void problem(sl_error_t *err, int *count, const sl_node *n, const char *fmt, ...) {
  (*count)++;
  if (!err) return;
  if (*count == 1) {
    err->code = SL_ECONFIG;
    err->msg[0] = 0;
    snprintf(err->stage, sizeof err->stage, "%s", n ? n->name : "");
  }
  size_t len = strlen(err->msg);
  if (len && len + 2 < sizeof err->msg) {
    err->msg[len++] = '\n';
    err->msg[len] = 0;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg + len, sizeof err->msg - len, fmt, ap);
  va_end(ap);
}

/* Resolved inputs of node i, as node indices (ins[i][0..nins[i]-1]). */
typedef struct resolved {
  int **ins;
  int **ports; /* ports[i][k]: the output of ins[i][k] read (-1 all; a node with outputs: 0 default) */
  int *nins;
} resolved;

static void resolved_free(resolved *r, int n) {
  for (int i = 0; i < n; i++) {
    sl__free(r->ins[i]);
    sl__free(r->ports[i]);
  }
  sl__free(r->ins);
  sl__free(r->ports);
  sl__free(r->nins);
}

/* Resolves an input name: a stage, or `<stage>.<output>` of a stage with named outputs (an exact
 * stage name wins). Returns the node (and *port), or NULL with a problem reported. */
static sl_node *resolve_input(sl_pipeline *p, sl_node *nd, int k, int *port, const char **names, int n,
                              sl_error_t *err, int *count) {
  const char *name = nd->input_names[k];
  char item[32];
  snprintf(item, sizeof item, "input.%d", k);
  const char *where = sl__at(&nd->at, item, true, sl__at(&nd->at, "input", true, nd->where));
  sl_node *src = sl__pipeline_node(p, name);
  *port = -1;
  if (src) {
    if (src->kind->outputs) *port = 0;
    return src;
  }
  const char *dot = strrchr(name, '.');
  if (dot) {
    char *stage = sl__xstrdup(name);
    stage[dot - name] = 0;
    src = sl__pipeline_node(p, stage);
    sl__free(stage);
  }
  if (src && !src->kind->outputs) {
    problem(err, count, nd, "%sstage '%s': input '%s': stage '%s' has no named outputs; read it as '%s'", where, nd->name,
            name, src->name, src->name);
    return NULL;
  }
  if (src) {
    if (strcmp(dot + 1, "default") == 0) {
      *port = 0;
      return src;
    }
    for (int o = 0; o < src->noutputs; o++)
      if (strcmp(src->outputs[o], dot + 1) == 0) {
        *port = o + 1;
        return src;
      }
    const char *dym = sl_did_you_mean(dot + 1, (const char *const *)src->outputs, (size_t)src->noutputs);
    problem(err, count, nd, "%sstage '%s': input '%s': stage '%s' has no output '%s'%s%s%s (its outputs: default%s%s)", where,
            nd->name, name, src->name, dot + 1, dym ? "; did you mean '" : "", dym ? dym : "", dym ? "'?" : "",
            src->noutputs ? ", " : "", src->noutputs ? src->outputs[0] : "");
    return NULL;
  }
  const char *dym = sl_did_you_mean(name, names, (size_t)n);
  problem(err, count, nd, "%sstage '%s': input '%s' names no stage%s%s%s", where, nd->name, name,
          dym ? "; did you mean '" : "", dym ? dym : "", dym ? "'?" : "");
  return NULL;
}

enum { WHITE = 0, GREY, BLACK };

/* Depth-first search for a cycle through node i; reports the first one found. */
static bool find_cycle(sl_pipeline *p, resolved *r, int i, int *color, sl_error_t *err, int *count) {
  color[i] = GREY;
  for (int k = 0; k < r->nins[i]; k++) {
    int j = r->ins[i][k];
    if (color[j] == GREY) {
      problem(err, count, p->nodes[i], "%sstage '%s' reads from '%s', which depends on '%s': the graph has a cycle; pipelines must be acyclic",
              sl__at(&p->nodes[i]->at, "input", true, p->nodes[i]->where), p->nodes[i]->name, p->nodes[j]->name, p->nodes[i]->name);
      return true;
    }
    if (color[j] == WHITE && find_cycle(p, r, j, color, err, count)) return true;
  }
  color[i] = BLACK;
  return false;
}

static int check(sl_pipeline *p, resolved *r, sl_error_t *err) {
  int count = 0, n = p->nnodes;
  r->ins = sl__xcalloc((size_t)(n ? n : 1), sizeof *r->ins);
  r->ports = sl__xcalloc((size_t)(n ? n : 1), sizeof *r->ports);
  r->nins = sl__xcalloc((size_t)(n ? n : 1), sizeof *r->nins);
  if (n == 0) {
    problem(err, &count, NULL, "pipeline '%s' has no stages", p->name);
    return SL_ECONFIG;
  }
  const char **names = sl__xcalloc((size_t)n, sizeof *names);
  for (int i = 0; i < n; i++) names[i] = p->nodes[i]->name;
  for (int i = 0; i < n; i++) {
    sl_node *nd = p->nodes[i];
    if (is_source(nd)) {
      if (!nd->default_input && nd->ninput_names > 0)
        problem(err, &count, nd, "%sstage '%s' is a source (%s) and cannot have an input; remove 'input'", sl__at(&nd->at, "input", false, nd->where), nd->name, nd->kind->name);
      continue;
    }
    if (nd->default_input) {
      if (i == 0) {
        problem(err, &count, nd, "%sstage '%s' has no input: put a source before it or name one with 'input'", nd->where, nd->name);
        continue;
      }
      r->ins[i] = sl__xmalloc(sizeof(int));
      r->ports[i] = sl__xmalloc(sizeof(int));
      r->ports[i][0] = p->nodes[i - 1]->kind->outputs ? 0 : -1;
      r->ins[i][r->nins[i]++] = i - 1;
      continue;
    }
    if (nd->ninput_names == 0) {
      if (p->dead_letter_name && strcmp(p->dead_letter_name, nd->name) == 0) continue; /* fed by failures */
      problem(err, &count, nd, "%sstage '%s' has an empty input list: name at least one stage", sl__at(&nd->at, "input", true, nd->where), nd->name);
      continue;
    }
    r->ins[i] = sl__xcalloc((size_t)nd->ninput_names, sizeof(int));
    r->ports[i] = sl__xcalloc((size_t)nd->ninput_names, sizeof(int));
    for (int k = 0; k < nd->ninput_names; k++) {
      int port;
      sl_node *src = resolve_input(p, nd, k, &port, names, n, err, &count);
      if (!src) continue;
      r->ports[i][r->nins[i]] = port;
      r->ins[i][r->nins[i]++] = src->index;
    }
  }
  sl__free(names);
  /* sinks feed nothing; other stages must feed something */
  int *consumers = sl__xcalloc((size_t)n, sizeof *consumers);
  for (int i = 0; i < n; i++)
    for (int k = 0; k < r->nins[i]; k++) {
      int j = r->ins[i][k];
      consumers[j]++;
      if (is_sink(p->nodes[j]))
        problem(err, &count, p->nodes[i], "%sstage '%s' reads from '%s', which is a sink and has no output; read from the stage before it",
                p->nodes[i]->where, p->nodes[i]->name, p->nodes[j]->name);
    }
  for (int i = 0; i < n; i++)
    if (!is_sink(p->nodes[i]) && consumers[i] == 0)
      problem(err, &count, p->nodes[i], "%sstage '%s': its output goes nowhere; add a sink after it (for example null or stdout)",
              p->nodes[i]->where, p->nodes[i]->name);
  sl__free(consumers);
  int *color = sl__xcalloc((size_t)n, sizeof *color);
  for (int i = 0; i < n; i++)
    if (color[i] == WHITE && find_cycle(p, r, i, color, err, &count)) break;
  sl__free(color);
  if (p->dead_letter_name) {
    sl_node *dl = sl__pipeline_node(p, p->dead_letter_name);
    if (!dl) problem(err, &count, NULL, "dead_letter names '%s', which is no stage", p->dead_letter_name);
    else if (!is_sink(dl)) problem(err, &count, dl, "%sdead_letter stage '%s' must be a sink", dl->where, dl->name);
  } else {
    for (int i = 0; i < n; i++)
      if (p->nodes[i]->on_error == SL_ON_ERROR_DEAD_LETTER || p->on_error == SL_ON_ERROR_DEAD_LETTER) {
        problem(err, &count, p->nodes[i], "%sstage '%s': on_error is dead_letter but the pipeline has no dead_letter sink",
                p->nodes[i]->where, p->nodes[i]->name);
        break;
      }
  }
  return count ? SL_ECONFIG : 0;
}

int sl_pipeline_check(sl_pipeline *p, sl_error_t *err) {
  resolved r;
  int rc = check(p, &r, err);
  resolved_free(&r, p->nnodes);
  return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Starting                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static sl_edge *edge_new(sl_node *from, sl_node *to, uint64_t cap, int on_full, int port) {
  sl_edge *e = sl__mem_alloc(sl__pmem(to->p), sizeof *e);
  sl_queue_init(e, cap, on_full);
  e->port = port;
  e->from = from;
  e->to = to;
  if (from) {
    from->out = sl__xrealloc(from->out, (size_t)(from->nout + 1) * sizeof *from->out);
    from->out[from->nout++] = e;
  }
  to->in = sl__xrealloc(to->in, (size_t)(to->nin + 1) * sizeof *to->in);
  to->in[to->nin++] = e;
  return e;
}

static int init_instances(sl_pipeline *p, sl_node *n, sl_error_t *err) {
  const sl_stage_kind *k = n->kind;
  n->insts = sl__mem_calloc(sl__pmem(p), (size_t)n->parallelism * sizeof *n->insts);
  atomic_init(&n->active, n->parallelism);
  sl_lock_init(&n->out_mu);
  pthread_mutex_init(&n->pmu, NULL);
  pthread_cond_init(&n->pcv, NULL);
  for (int i = 0; i < n->parallelism; i++) {
    sl_stage *st = &n->insts[i];
    /* real callbacks before init: init may already arm a timer or wake the instance (the task
     * then waits for `started`, and start wakes every instance once) */
    sl_task_init(&st->task, sl__inst_run, sl__inst_dead);
    st->node = n;
    st->p = p;
    st->index = i;
    st->runner = st;
    sl_lock_init(&st->mbox_mu);
    st->ctx = sl__mem_calloc(sl__pmem(p), k->ctx_size ? k->ctx_size : 1);
  }
  for (int i = 0; i < n->parallelism; i++) {
    sl_stage *st = &n->insts[i];
    int rc = sl__options_apply(k->options, st->ctx, &n->opts, n->fn_ptrs, n->where, n->name, k->name, err);
    if (rc) return rc;
    st->inited = true; /* from here on destroy runs, even if init fails half-way */
    if (k->init) {
      sl_error_t e2;
      sl_error_init(&e2);
      rc = k->init(st->ctx, st, &e2);
      if (rc) {
        sl_error_set(err, rc, n->name, "%sstage '%s': %s", n->where, n->name, e2.msg[0] ? e2.msg : sl_strerror(rc));
        return rc;
      }
    }
  }
  return 0;
}

/* Ends an instance's life: no more timer or fd callbacks, then destroy (once). */
static void destroy_instance(sl_pipeline *p, sl_stage *st) {
  sl_httpc_cancel_owner(p->e->httpc, st);
  sl_loop_cancel_owner(p->e->loop, st);
  sl__part_cancel(st);
  sl__part_destroy(st);
  if (st->inited && st->node->kind->destroy) st->node->kind->destroy(st->ctx);
  st->inited = false;
}

/* Tells a source about the tokens that came back but were never seen (status cancelled). */
static void drain_acks(sl_stage *st) {
  sl_ack *a = atomic_exchange(&st->acked, NULL);
  while (a) {
    sl_ack *next = a->next;
    if (st->inited && st->node->kind->acked) st->node->kind->acked(st->ctx, a->id, SL_ACK_CANCELLED);
    sl__ack_free(a);
    a = next;
  }
}

/* Frees the instances' memory (after destroy_instance). */
static void free_instances(sl_node *n) {
  if (!n->insts) return;
  for (int i = 0; i < n->parallelism; i++) {
    sl_stage *st = &n->insts[i];
    sl__part_free(st);
    sl__options_free(n->kind->options, st->ctx);
    sl__mem_free(sl__pmem(n->p), st->ctx, n->kind->ctx_size ? n->kind->ctx_size : 1);
    sl__mem_free(sl__pmem(n->p), st->events, st->cap_events * sizeof *st->events);
    pthread_mutex_destroy(&st->mbox_mu);
  }
  sl__mem_free(sl__pmem(n->p), n->insts, (size_t)n->parallelism * sizeof *n->insts);
  n->insts = NULL;
  pthread_mutex_destroy(&n->out_mu);
  pthread_mutex_destroy(&n->pmu);
  pthread_cond_destroy(&n->pcv);
}

/* Tears down every instance in an order that keeps acks safe: queued records first and the
 * stages that hold records next (their acks go back to the sources), the sources last. */
static void teardown(sl_pipeline *p) {
  for (int i = 0; i < p->nnodes; i++) {
    sl_node *n = p->nodes[i];
    for (int k = 0; n->insts && k < n->parallelism; k++) {
      sl_httpc_cancel_owner(p->e->httpc, &n->insts[k]); /* its requests post to the instance */
      sl_loop_cancel_owner(p->e->loop, &n->insts[k]);
      sl__part_cancel(&n->insts[k]);
    }
  }
  for (int i = 0; i < p->nnodes; i++) {
    sl_node *n = p->nodes[i];
    for (int k = 0; k < n->nin; k++) {
      sl_queue_close_free(n->in[k]);
      sl__mem_free(sl__pmem(p), n->in[k], sizeof *n->in[k]);
    }
    n->nin = 0;
    while (n->pending) {
      sl_qbatch *b = n->pending;
      n->pending = b->next;
      sl_queue_batch_free(b, true);
    }
    if (n->cur) sl_queue_batch_free(n->cur, true);
    n->cur = NULL;
    for (int k = 0; n->insts && k < n->parallelism; k++) { /* a parked batch */
      sl_stage *st = &n->insts[k];
      if (st->susp_qb) sl_queue_batch_free(st->susp_qb, true);
      if (st->susp_out) sl_queue_batch_free(st->susp_out, true);
      st->susp_qb = st->susp_out = NULL;
      st->susp_at = NULL;
    }
  }
  for (int pass = 0; pass < 2; pass++) /* pass 0: all but sources; pass 1: sources */
    for (int i = 0; i < p->nnodes; i++) {
      sl_node *n = p->nodes[i];
      if (!n->insts || (pass == 0) == is_source(n)) continue;
      for (int k = 0; k < n->parallelism; k++) {
        if (pass == 1) drain_acks(&n->insts[k]);
        destroy_instance(p, &n->insts[k]);
      }
    }
  for (int i = 0; i < p->nnodes; i++) /* Lua states last: stage destroy may still use them */
    for (int k = 0; p->nodes[i]->insts && k < p->nodes[i]->parallelism; k++) {
      sl__lua_close(p->nodes[i]->insts[k].lua);
      p->nodes[i]->insts[k].lua = NULL;
    }
  for (int i = 0; i < p->nnodes; i++) free_instances(p->nodes[i]);
}

/* May `m` run fused after `n`? Both stateless, joined one to one, same parallelism, no queue
 * options, not the dead letter. (Events of fused stages reach their own mailboxes and the
 * runner delivers them; a parked batch holds the chain, see pipeline.h.) */
static bool fusable(const sl_pipeline *p, const sl_node *n, const sl_node *m, int consumers_of_n, int inputs_of_m) {
  const uint32_t bad = SL_STAGE_SOURCE | SL_STAGE_PASSIVE;
  return consumers_of_n == 1 && inputs_of_m == 1 && (n->kind->flags & SL_STAGE_STATELESS) &&
         (m->kind->flags & SL_STAGE_STATELESS) && !(n->kind->flags & bad) && !(m->kind->flags & bad) &&
         !(n->kind->flags & SL_STAGE_SINK) && !m->queue_set && !n->kind->outputs &&
         n->parallelism == m->parallelism && n != p->dead_letter && m != p->dead_letter;
}

/* A hidden node for x (in front of it, or after a source), named as x, with x's on_error, and
 * no inputs yet. Hidden nodes come after the user's in p->nodes; stats and info skip them. */
static sl_node *hidden_node(sl_pipeline *p, resolved *r, sl_node *x, const sl_stage_kind *kind, const char *where) {
  sl_node *h = sl__mem_calloc(sl__pmem(p), sizeof *h);
  h->p = p;
  h->kind = kind;
  h->index = p->nnodes;
  h->name = sl__xstrdup(x->name);
  h->where = sl__xstrdup(where);
  h->on_error = x->on_error;
  h->parallelism = 0;
  h->queue_cap = DEFAULT_QUEUE;
  h->hidden = true;
  if (p->nnodes == p->capnodes) {
    p->capnodes *= 2;
    p->nodes = sl__xrealloc(p->nodes, (size_t)p->capnodes * sizeof *p->nodes);
  }
  p->nodes[p->nnodes++] = h;
  p->nhidden++;
  r->ins = sl__xrealloc(r->ins, (size_t)p->nnodes * sizeof *r->ins);
  r->ports = sl__xrealloc(r->ports, (size_t)p->nnodes * sizeof *r->ports);
  r->nins = sl__xrealloc(r->nins, (size_t)p->nnodes * sizeof *r->nins);
  r->ins[h->index] = NULL;
  r->ports[h->index] = NULL;
  r->nins[h->index] = 0;
  return h;
}

/* A hidden node in front of x: it takes over x's inputs (the caller links x to it). */
static sl_node *hidden_before(sl_pipeline *p, resolved *r, sl_node *x, const sl_stage_kind *kind, const char *where) {
  sl_node *h = hidden_node(p, r, x, kind, where);
  r->ins[h->index] = r->ins[x->index];
  r->ports[h->index] = r->ports[x->index];
  r->nins[h->index] = r->nins[x->index];
  return h;
}

/* partition_by (vm/partition.c): puts a hidden key node in front of every partitioned stage. It
 * takes over the stage's inputs, name and on_error; the stage reads output k + 1 of it on the
 * edge of its instance k. */
static void add_partitions(sl_pipeline *p, resolved *r) {
  int n0 = p->nnodes;
  for (int i = 0; i < n0; i++) {
    sl_node *x = p->nodes[i];
    if (!x->part_by) continue;
    if (x->parallelism == 0) x->parallelism = sl_engine_workers(p->e);
    int np = x->parallelism;
    sl_node *h = hidden_before(p, r, x, &sl__partition_kind, x->part_where);
    h->opts = sl_map(2);
    sl_map_setc(&h->opts, "key", sl_cstr(x->part_by));
    sl_map_setc(&h->opts, "shards", sl_int(np));
    h->outputs = sl__xcalloc((size_t)np, sizeof *h->outputs);
    for (int k = 0; k < np; k++) {
      char buf[16];
      snprintf(buf, sizeof buf, "%d", k);
      h->outputs[h->noutputs++] = sl__xstrdup(buf);
    }
    x->part_keys = h;
    r->ins[i] = sl__xcalloc((size_t)np, sizeof(int));
    r->ports[i] = sl__xcalloc((size_t)np, sizeof(int));
    r->nins[i] = np;
    for (int k = 0; k < np; k++) {
      r->ins[i][k] = h->index;
      r->ports[i][k] = k + 1;
    }
  }
}

extern const sl_stage_kind sl_stage_file, sl_stage_stdout, sl_stage_encode, sl_stage_file_in, sl_stage_lines;

/* Splitting behind a source (vm/cut.c). With 2 or more workers a `lines` source (long lines
 * an error, the default) or a file_in source reading jsonl cuts its input into runs of whole
 * lines, and a hidden node after it (stateless: every worker, fused with a stateless chain after
 * it, order kept) splits them into lines and, for jsonl, parses them: the work per line, and the
 * line strings' memory, leave the source's one worker. The source's consumers read the hidden
 * node instead; the queue between them holds 4 runs (a run is at most 256 lines), so a stop
 * drains no more lines than a source's queue of records holds. */
static void add_splitters(sl_pipeline *p, resolved *r) {
  if (sl_engine_workers(p->e) < 2) return;
  int n0 = p->nnodes;
  for (int i = 0; i < n0; i++) {
    sl_node *s = p->nodes[i];
    const sl_value *o = s->opts.type == SL_TMAP ? sl_map_getc(&s->opts, s->kind == &sl_stage_file_in ? "codec" : "long_lines") : NULL;
    const char *codec;
    if (s->kind == &sl_stage_file_in && o && o->type == SL_TSTR && strcmp(sl_str_data(o), "jsonl") == 0) codec = "jsonl";
    else if (s->kind == &sl_stage_lines && (!o || (o->type == SL_TSTR && strcmp(sl_str_data(o), "error") == 0))) codec = "lines";
    else continue;
    bool consumed = false;
    for (int j = 0; j < n0 && !consumed; j++)
      for (int k = 0; k < r->nins[j]; k++) consumed |= r->ins[j][k] == i;
    if (!consumed) continue;
    sl_node *h = hidden_node(p, r, s, &sl__split_lines_kind, s->where);
    h->opts = sl_map(1);
    sl_map_setc(&h->opts, "codec", sl_cstr(codec));
    h->queue_cap = 4;
    for (int j = 0; j < n0; j++) /* the source's consumers read the splitter */
      for (int k = 0; k < r->nins[j]; k++)
        if (r->ins[j][k] == i) r->ins[j][k] = h->index;
    r->ins[h->index] = sl__xmalloc(sizeof(int)); /* and it reads the source */
    r->ports[h->index] = sl__xmalloc(sizeof(int));
    r->ins[h->index][0] = i;
    r->ports[h->index][0] = -1;
    r->nins[h->index] = 1;
    s->splitter = h;
  }
}

/* Encoding ahead of a sink. A file or stdout sink writing JSON (codec jsonl, json, or auto/lines
 * with records that are not strings) spends most of its time encoding, on the one worker that
 * runs it. With 2 or more workers a hidden `encode` node in front of it does the encoding on
 * every worker (it is stateless: it runs fused at the end of a stateless upstream chain, and
 * the order is kept), and the sink writes the ready text as lines. The encode node takes the
 * sink's input queue options; the queue between them blocks. Not for csv (its header and
 * columns come from the first record), raw and frames (cheap), nor the dead-letter stage. */
static void add_encoders(sl_pipeline *p, resolved *r) {
  if (sl_engine_workers(p->e) < 2) return;
  static const char *const ahead[] = {"jsonl", "json", "auto", "lines"};
  int n0 = p->nnodes;
  for (int i = 0; i < n0; i++) {
    sl_node *s = p->nodes[i];
    if ((s->kind != &sl_stage_file && s->kind != &sl_stage_stdout) || s == p->dead_letter || r->nins[i] == 0) continue;
    const sl_value *c = s->opts.type == SL_TMAP ? sl_map_getc(&s->opts, "codec") : NULL;
    const char *codec = c && c->type == SL_TSTR ? sl_str_data(c) : "auto";
    size_t k = 0;
    while (k < sizeof ahead / sizeof ahead[0] && strcmp(codec, ahead[k]) != 0) k++;
    if (k == sizeof ahead / sizeof ahead[0]) continue;
    sl_node *h = hidden_before(p, r, s, &sl_stage_encode, s->where);
    h->opts = sl_map(1);
    sl_map_setc(&h->opts, "codec", sl_cstr(codec));
    h->queue_cap = s->queue_cap;
    h->on_full = s->on_full;
    h->queue_set = s->queue_set;
    s->on_full = SL_ON_FULL_BLOCK;
    s->queue_set = false;
    if (s->opts.type != SL_TMAP) {
      sl_value_free(s->opts);
      s->opts = sl_map(1);
    }
    sl_map_setc(&s->opts, "codec", sl_cstr("lines")); /* the text as it is, and a line break */
    s->encoder = h;
    r->ins[i] = sl__xmalloc(sizeof(int));
    r->ports[i] = sl__xmalloc(sizeof(int));
    r->ins[i][0] = h->index;
    r->ports[i][0] = -1;
    r->nins[i] = 1;
  }
}

/* Resolves parallelism and order, then links fused chains (pipeline.h, "Fusion"). */
static void fuse(sl_pipeline *p, const resolved *r) {
  int workers = sl_engine_workers(p->e);
  int *consumers = sl__xcalloc((size_t)p->nnodes, sizeof *consumers);
  for (int i = 0; i < p->nnodes; i++) {
    sl_node *n = p->nodes[i];
    if (n->parallelism == 0) n->parallelism = workers;
    n->ordered = n->parallelism > 1 && !(n->kind->flags & SL_STAGE_UNORDERED) && !n->part_keys; /* per-key order only */
    n->fuse_head = n->fuse_tail = n;
    for (int k = 0; k < r->nins[i]; k++) consumers[r->ins[i][k]]++;
  }
  bool *fused_in = sl__xcalloc((size_t)p->nnodes, sizeof *fused_in);
  for (int i = 0; i < p->nnodes; i++) {
    sl_node *m = p->nodes[i];
    if (r->nins[i] != 1) continue;
    sl_node *n = p->nodes[r->ins[i][0]];
    if (!fusable(p, n, m, consumers[n->index], r->nins[i])) continue;
    n->fuse_next = m;
    fused_in[i] = true;
  }
  for (int i = 0; i < p->nnodes; i++) { /* walk each chain from its head: heads and tails */
    if (fused_in[i] || !p->nodes[i]->fuse_next) continue;
    sl_node *tail = p->nodes[i];
    while (tail->fuse_next) tail = tail->fuse_next;
    for (sl_node *c = p->nodes[i]; c; c = c->fuse_next) {
      c->fuse_head = p->nodes[i];
      c->fuse_tail = tail;
    }
  }
  sl__free(fused_in);
  sl__free(consumers);
}

int sl_pipeline_start(sl_pipeline *p, sl_error_t *err) {
  if (p->state != SL_P_BUILDING)
    return sl_error_set(err, SL_ESTATE, NULL, "pipeline '%s' was already started; build a new one to run again", p->name);
  resolved r;
  int rc = check(p, &r, err);
  if (rc) {
    resolved_free(&r, p->nnodes);
    return rc;
  }
  if (p->dead_letter_name) p->dead_letter = sl__pipeline_node(p, p->dead_letter_name);
  add_partitions(p, &r);
  add_encoders(p, &r);
  add_splitters(p, &r);
  fuse(p, &r);
  for (int i = 0; i < p->nnodes; i++) {
    sl_node *to = p->nodes[i];
    for (int k = 0; k < r.nins[i]; k++) {
      sl_node *from = p->nodes[r.ins[i][k]];
      if (from->fuse_next != to) edge_new(from, to, to->queue_cap, to->on_full, r.ports[i][k]);
    }
  }
  resolved_free(&r, p->nnodes);
  for (int i = 0; i < p->nnodes; i++) /* partition_by: output k + 1 of the key node feeds instance k */
    for (int k = 0; p->nodes[i]->part_keys && k < p->nodes[i]->nin; k++) p->nodes[i]->in[k]->inst = p->nodes[i]->in[k]->port - 1;
  for (int i = 0; i < p->nnodes; i++) { /* a source's batches fit its smallest blocking queue */
    sl_node *n = p->nodes[i];
    n->room = 256;
    for (int k = 0; k < n->nout; k++) {
      sl_edge *e = n->out[k];
      if (e->cap && e->on_full == SL_ON_FULL_BLOCK && e->cap < n->room) n->room = (uint32_t)e->cap;
    }
  }
  for (int i = 0; i < p->nnodes && p->mem_limit; i++) /* memory_limit counts what edges hold */
    for (int k = 0; k < p->nodes[i]->nout; k++) p->nodes[i]->out[k]->mem_used = &p->mem_used;
  if (p->dead_letter_name) {
    p->dl_edge = edge_new(NULL, p->dead_letter, 0, SL_ON_FULL_BLOCK, -1); /* unbounded: failures never wait */
  }
  int i = 0;
  for (; i < p->nnodes; i++) {
    rc = init_instances(p, p->nodes[i], err);
    if (rc) break;
  }
  if (rc) { /* undo: destroy what was initialised, back to a pipeline that cannot run */
    teardown(p);
    pthread_mutex_lock(&p->mu);
    p->state = SL_P_ENDED;
    p->result = SL_EFAILED;
    if (err) p->err = *err;
    pthread_mutex_unlock(&p->mu);
    return rc;
  }
  for (i = 0; i < p->nnodes; i++) {
    sl_node *n = p->nodes[i];
    if (n->fuse_head != n)
      for (int k = 0; k < n->parallelism; k++) n->insts[k].runner = &n->fuse_head->insts[k];
  }
  int tasks = 0, producers = 0;
  for (i = 0; i < p->nnodes; i++) {
    sl_node *n = p->nodes[i];
    if (is_passive(n)) {
      if (is_source(n)) tasks++; /* an open port keeps the pipeline alive */
      continue;
    }
    if (n->fuse_head == n) tasks += n->parallelism; /* a fused stage runs in its head's task */
    if (n != p->dead_letter) producers++;
  }
  atomic_store(&p->alive, tasks);
  atomic_store(&p->producers_alive, producers);
  if (producers == 0 && p->dl_edge) sl_queue_close(p->dl_edge);
  pthread_mutex_lock(&p->mu);
  p->state = SL_P_RUNNING;
  p->t_start = sl_loop_now(p->e->loop);
  pthread_mutex_unlock(&p->mu);
  if (tasks == 0) {
    pthread_mutex_lock(&p->mu);
    p->state = SL_P_ENDED;
    p->t_end = p->t_start;
    pthread_mutex_unlock(&p->mu);
    return 0;
  }
  atomic_store(&p->started, true);
  for (i = 0; i < p->nnodes; i++) { /* sources start; the others see whether anything is there */
    sl_node *n = p->nodes[i];
    if (!is_passive(n) && n->fuse_head == n) sl__node_wake(n);
  }
  return 0;
}

void sl_pipeline_free(sl_pipeline *p) {
  if (!p) return;
  if (!sl_pipeline_done(p) && p->state != SL_P_BUILDING) {
    sl_pipeline_abort(p);
    sl_pipeline_wait(p, -1, NULL);
  }
  teardown(p);
  for (int i = 0; i < p->nnodes; i++) node_free(p->nodes[i]);
  sl__free(p->nodes);
  sl__free(p->name);
  sl__free(p->dead_letter_name);
  sl_value_free(p->settings);
  sl__lua_prog_free(p->lua);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->done_cv);
  sl_engine *e = p->e;
  pthread_mutex_lock(&e->mu);
  e->pipelines--;
  pthread_mutex_unlock(&e->mu);
  sl__mem_free(&e->mem, p, sizeof *p);
}
