/*
 * cut.c — lines split and parsed on every worker (see codec.h, "Splitting behind a source").
 *
 * With 2 or more workers, a `lines` source or a file_in source reading jsonl does not split
 * (nor parse) its input: it cuts it into runs of whole lines (sl_lines_cut), checking each
 * line's length as it would, and emits each run as one internal record
 * [text, lines before it, its byte offset, the input's name]. A hidden node of the kind below
 * (graph.c add_splitters), stateless and so on every worker with the order kept, splits each
 * run into lines: string records for `lines` (every line, its CR before the line break
 * removed), parsed JSON for jsonl, with the same results, messages and failed records as the
 * source's own decoder (blank lines skipped, a line that is not JSON failing alone with the
 * input's name, its line and byte). A line too long fails the pipeline in the source, after
 * the lines before it, as it would without the split.
 */
#define _GNU_SOURCE /* memrchr */
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "value.h"

/* A run ends at the first line break at or past this many bytes, or after this many lines: a
 * run becomes one batch of records, as many as a source makes at most. */
#define RUN_BYTES (64 * 1024)
#define RUN_LINES 256

int sl_lines_cut(const char *buf, size_t len, bool eof, size_t max, bool cr_counts, size_t *take, uint64_t *lines) {
  size_t at = 0;
  *take = 0;
  *lines = 0;
  while (at < len && at < RUN_BYTES && *lines < RUN_LINES) { /* line by line, as the source checks them */
    size_t rest = len - at, reach = max + (cr_counts ? 1 : 2), limit = rest < reach ? rest : reach;
    const char *nl = memchr(buf + at, '\n', limit);
    bool too_long = !nl && rest > reach - 1; /* no line break where one had to be */
    if (!nl && !too_long && !eof) break;     /* the line is not whole yet */
    size_t n = nl ? (size_t)(nl - (buf + at)) : rest;
    if (!cr_counts && n > 0 && buf[at + n - 1] == '\r') n--;
    if (too_long || n > max) {
      if (at) break; /* the lines before it first */
      return SL_EINVAL;
    }
    if (!nl) { /* at eof: the last line, without a line break */
      at = len;
      break;
    }
    at = (size_t)(nl - buf) + 1;
    (*lines)++;
  }
  if (at == 0) return SL_DECODE_MORE;
  *take = at;
  return SL_DECODE_RECORD;
}

/* A run is [text, line breaks before it, its byte offset, the input's name]: parse_run reads it. */
int sl_lines_emit_run(sl_emitter *em, const char *p, size_t n, uint64_t line, uint64_t offset, const sl_value *name) {
  sl_value text, run = sl_array(4);
  if (sl_str_try(p, n, &text) != 0) {
    sl_value_free(run);
    return SL_ENOMEM;
  }
  sl_array_push(&run, text);
  sl_array_push(&run, sl_int((int64_t)line));
  sl_array_push(&run, sl_int((int64_t)offset));
  sl_array_push(&run, sl_value_ref(name));
  return sl_emit(em, SL_NO_ORIGIN, run) != 0 ? SL_ENOMEM : 0;
}

typedef struct split {
  int codec;          /* option: SL_CODEC_LINES or SL_CODEC_JSONL */
  sl_stage *st;
  uint64_t big_ints;  /* integers beyond int64 read as doubles, by this instance */
  atomic_uint_least64_t all_big; /* instance 0: the sum over the instances that flushed */
  atomic_int flushed;            /* instance 0: how many have */
} split;

static const sl_option options[] = {
    {SL_OPT_ENUM, "codec", "lines", offsetof(split, codec), "lines: strings; jsonl: parsed", SL_CODEC_CHOICES, 0},
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  ((split *)ctx)->st = st;
  return 0;
}

static bool blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return false;
  return true;
}

/* One run: its lines, parsed in order. */
static int parse_run(split *j, sl_batch *in, uint32_t i, sl_emitter *em) {
  const sl_value *run = &in->recs[i];
  const sl_value *text = sl_array_get(run, 0), *name = sl_array_get(run, 3);
  uint64_t line = (uint64_t)sl_array_get(run, 1)->u.i, byte = (uint64_t)sl_array_get(run, 2)->u.i;
  const char *s = sl_str_data(text);
  size_t len = sl_str_len(text), at = 0;
  while (at < len) {
    const char *nl = memchr(s + at, '\n', len - at);
    size_t take = nl ? (size_t)(nl - (s + at)) + 1 : len - at, n = nl ? take - 1 : take;
    if (n > 0 && s[at + n - 1] == '\r') n--;
    if (j->codec == SL_CODEC_LINES) {
      sl_value v;
      if (sl_str_try(s + at, n, &v) != 0) return SL_ENOMEM;
      sl_emit(em, i, v);
    } else if (!blank(s + at, n)) {
      sl_value v;
      sl_error_t e;
      sl_error_init(&e);
      int rc = sl__json_parse(s + at, n, &v, &e, &j->big_ints);
      if (rc == SL_ENOMEM) return rc;
      if (rc == 0) {
        sl_emit(em, i, v);
      } else {
        sl_value bad;
        if (sl_str_try(s + at, n, &bad) != 0) bad = sl_nil();
        sl_emit_error_record(em, bad, NULL, "%s, line %llu (byte %llu): %s", sl_str_data(name),
                             (unsigned long long)line + 1, (unsigned long long)byte, e.msg);
      }
    }
    line += nl != NULL;
    byte += take;
    at += take;
  }
  return 0;
}

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  for (uint32_t i = 0; i < in->len; i++) {
    int rc = parse_run(ctx, in, i, em);
    if (rc) return rc;
  }
  return 0;
}

/* The last instance to flush warns once for all of them, as the source's decoder would. */
static int flush(void *ctx, sl_emitter *em) {
  split *j = ctx, *first = sl_stage_sibling(j->st, 0);
  atomic_fetch_add(&first->all_big, j->big_ints);
  if (atomic_fetch_add(&first->flushed, 1) + 1 == sl_stage_parallelism(j->st)) {
    sl_decoder d = {.big_ints = atomic_load(&first->all_big)};
    sl_decoder_report(&d, j->st);
  }
  return 0;
}

const sl_stage_kind sl__split_lines_kind = {
    .abi = SL_STAGE_ABI,
    .name = "split_lines",
    .doc = "internal: splits (and parses) the runs of lines a source cut, on every worker",
    .options = options,
    .ctx_size = sizeof(split),
    .flags = SL_STAGE_STATELESS,
    .init = init,
    .process = process,
    .flush = flush,
};
