/*
 * info.c — the graph as built, read-only, for `sluice graph` and other tools
 * (sl_pipeline_stage_info). Everything returned points into the pipeline's nodes and stays
 * valid until the pipeline is freed.
 */
#include "pipeline.h"

static const char *on_full_name(int on_full) {
  switch (on_full) {
  case SL_ON_FULL_DROP_NEWEST: return "drop_newest";
  case SL_ON_FULL_DROP_OLDEST: return "drop_oldest";
  default: return "block";
  }
}

static const char *on_error_name(int on_error) {
  switch (on_error) {
  case SL_ON_ERROR_SKIP: return "skip";
  case SL_ON_ERROR_FAIL: return "fail";
  case SL_ON_ERROR_DEAD_LETTER: return "dead_letter";
  default: return NULL; /* the pipeline's default */
  }
}

/* A stage whose input was not given reads the stage added before it (graph.c, check()); the
 * first stage and sources read nothing. For a default input the array is the previous node's
 * own `name` slot, so it stays valid without allocating. Inputs given explicitly are returned
 * as written (also a source's, which check() reports as an error). */
int sl_pipeline_stage_info(const sl_pipeline *p, size_t i, sl_stage_info *out) {
  if (i >= (size_t)(p->nnodes - p->nhidden)) return SL_ENOTFOUND;
  const sl_node *n = p->nodes[i];
  *out = (sl_stage_info){0};
  out->name = n->name;
  out->kind = n->kind->name;
  out->where = n->where ? n->where : "";
  if (n->default_input) {
    bool reads_prev = i > 0 && !(n->kind->flags & SL_STAGE_SOURCE);
    out->inputs = reads_prev ? (const char *const *)&p->nodes[i - 1]->name : NULL;
    out->ninputs = reads_prev ? 1 : 0;
  } else {
    out->inputs = (const char *const *)n->input_names;
    out->ninputs = n->ninput_names;
  }
  out->opts = &n->opts;
  out->parallelism = n->parallelism;
  out->queue_cap = n->queue_cap;
  out->on_full = on_full_name(n->on_full);
  out->on_error = on_error_name(n->on_error);
  out->flags = n->kind->flags;
  return 0;
}
