/* encode — turns each record into a string with a codec (json by default).
 *
 * Each record is encoded on its own, as the codec writes it to a file but without the line
 * break: jsonl/json give the JSON text, csv one row (with header: true the header line, a line
 * break and the row), lines a string as it is (other values as JSON), raw a string as it is,
 * frames a string behind its 4-byte length. A record the codec cannot write (raw and frames
 * take strings) fails alone and follows on_error. Stateless: runs on every worker, in order. */
#include <stddef.h>

#include "codec.h"
#include "sluice.h"

typedef struct encode {
  sl_codec_opts co; /* options: codec, header, columns, delimiter */
  sl_buf buf;
  sl_stage *st;
  uint64_t bad_utf8; /* strings written with U+FFFD, over all records */
  uint64_t warned;
} encode;

static const sl_option options[] = {
    SL_CODEC_OPTIONS(encode, co, "json", "the encoding: json (or jsonl), csv, lines, raw, frames or auto", SL_OPT_PRIMARY),
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  encode *c = ctx;
  c->st = st;
  sl_buf_init(&c->buf);
  return sl_codec_check(&c->co, false, err);
}

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  encode *c = ctx;
  char msg[200];
  bool text = c->co.codec == SL_CODEC_AUTO || c->co.codec == SL_CODEC_LINES;
  for (uint32_t i = 0; i < in->len; i++) {
    if (text && in->recs[i].type == SL_TSTR) { /* a string is its own text */
      sl_emit(em, i, sl_batch_take(in, i));
      continue;
    }
    sl_encoder enc;
    sl_encoder_init(&enc, &c->co, NULL); /* checked in init */
    c->buf.len = 0;
    int rc = sl_encoder_put(&enc, &c->buf, &in->recs[i], false, msg, sizeof msg);
    c->bad_utf8 += enc.bad_utf8;
    sl_encoder_close(&enc);
    sl_value s;
    if (rc == SL_EDATA) sl_emit_error(em, i, "%s", msg);
    else if (rc || sl_str_try(c->buf.data ? c->buf.data : "", c->buf.len, &s) != 0) return SL_ENOMEM;
    else sl_emit(em, i, s);
  }
  return 0;
}

static int flush(void *ctx, sl_emitter *em) {
  encode *c = ctx;
  sl_encoder e = {.bad_utf8 = c->bad_utf8, .warned = c->warned};
  sl_encoder_report(&e, c->st);
  return 0;
}

static void destroy(void *ctx) {
  encode *c = ctx;
  sl_buf_close(&c->buf);
}

static int check(void *ctx, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  return sl_codec_check_stage(&((encode *)ctx)->co, false, stage, where, err);
}

const sl_stage_kind sl_stage_encode = {
    .abi = SL_STAGE_ABI,
    .name = "encode",
    .doc = "turns each record into a string with a codec (json, csv, lines, raw, frames)",
    .options = options,
    .ctx_size = sizeof(encode),
    .flags = SL_STAGE_STATELESS,
    .init = init,
    .check = check,
    .process = process,
    .flush = flush,
    .destroy = destroy,
};
