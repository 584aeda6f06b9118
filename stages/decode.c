/* decode — parses each string record with a codec into the records it holds (json by default).
 *
 * Each record is decoded on its own, as a whole input: json gives one value; jsonl one per
 * line; csv one per row (header: true reads the record's first row as the column names);
 * lines one string per line; frames the records behind their lengths; raw the bytes as they
 * are. A record that is not a string, or holds invalid data, fails (with the line and byte of
 * the problem) and follows on_error; records decoded before the problem in it are still
 * emitted. Stateless: runs on every worker, in order. */
#include <stddef.h>

#include "codec.h"
#include "sluice.h"

typedef struct decode {
  sl_codec_opts co; /* options: codec, header, columns, delimiter, max_record */
  sl_stage *st;
  uint64_t big_ints, warned;
} decode;

static const sl_option options[] = {
    SL_CODEC_OPTIONS(decode, co, "json", "the encoding: json (one JSON text), jsonl, csv, lines, raw or frames", SL_OPT_PRIMARY),
    SL_CODEC_READ_OPTIONS(decode, co),
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  decode *c = ctx;
  c->st = st;
  return sl_codec_check(&c->co, true, err);
}

/* Emits every record of in->recs[i]; a failure fails record i. */
static int decode_one(decode *c, sl_batch *in, uint32_t i, sl_emitter *em) {
  const sl_value *r = &in->recs[i];
  if (r->type != SL_TSTR)
    return sl_emit_error(em, i, "decode takes strings, not a %s", sl_type_name((sl_type)r->type));
  sl_decoder d;
  sl_decoder_init(&d, &c->co, NULL); /* checked in init */
  const char *s = sl_str_data(r);
  size_t len = sl_str_len(r), at = 0;
  int rc = 0;
  for (;;) {
    size_t used;
    sl_value v;
    sl_error_t err;
    rc = sl_decoder_next(&d, s + at, len - at, true, &used, &v, &err);
    at += used;
    if (rc == SL_DECODE_RECORD) {
      sl_emit(em, i, v);
      continue;
    }
    if (rc == SL_DECODE_MORE) break;
    if (rc != SL_ENOMEM) {
      sl_value_free(v);
      rc = sl_emit_error(em, i, "%s", err.msg);
    }
    break;
  }
  c->big_ints += d.big_ints;
  sl_decoder_close(&d);
  return rc;
}

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  decode *c = ctx;
  for (uint32_t i = 0; i < in->len; i++) {
    int rc = decode_one(c, in, i, em);
    if (rc) return rc;
  }
  return 0;
}

static int flush(void *ctx, sl_emitter *em) {
  decode *c = ctx;
  sl_decoder d = {.big_ints = c->big_ints, .warned = c->warned};
  sl_decoder_report(&d, c->st);
  return 0;
}

static int check(void *ctx, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  return sl_codec_check_stage(&((decode *)ctx)->co, true, stage, where, err);
}

const sl_stage_kind sl_stage_decode = {
    .abi = SL_STAGE_ABI,
    .name = "decode",
    .doc = "parses each string record with a codec into the records it holds (json, jsonl, csv, lines, frames)",
    .options = options,
    .ctx_size = sizeof(decode),
    .flags = SL_STAGE_STATELESS,
    .init = init,
    .check = check,
    .process = process,
    .flush = flush,
    .destroy = NULL,
};
