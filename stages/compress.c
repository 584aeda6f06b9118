/* compress — each record's bytes (the record, or its `field`) become one lz4 frame.
 *
 * The frame carries the content size and a content checksum (xxHash32), so `decompress` knows
 * how much to allocate and detects corruption. Each instance keeps its lz4 context and a
 * scratch buffer, so a chunk costs no allocation but its output string. The frame is compressed
 * in one call with autoFlush (see frame()). */
#include <lz4frame.h>
#include <stddef.h>
#include <stdlib.h>

#include "crypt.h"
#include "sluice.h"

typedef struct compress {
  char *field;       /* option */
  int64_t level;     /* option */
  LZ4F_cctx *cctx;
  char *buf;         /* scratch output */
  size_t cap;
} compress;

static const sl_option options[] = {
    {SL_OPT_STRING, "field", "data", offsetof(compress, field), "the field of a map record to compress (a string record is compressed whole)", NULL, 0},
    {SL_OPT_INT, "level", "1", offsetof(compress, level), "lz4 level: 1 fast (default), up to 12 (lz4hc, smaller and slower)", NULL, SL_OPT_PRIMARY},
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  compress *c = ctx;
  if (c->level < 1 || c->level > 12) return sl_error_set(err, SL_ECONFIG, NULL, "level must be from 1 to 12 (got %lld)", (long long)c->level);
  if (LZ4F_isError(LZ4F_createCompressionContext(&c->cctx, LZ4F_VERSION))) return SL_ENOMEM;
  return 0;
}

/* Compresses src into c->buf; returns the frame's size, or 0 with *rc set. */
static size_t frame(compress *c, const char *src, size_t n, int *rc) {
  LZ4F_preferences_t prefs = {0};
  prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
  prefs.frameInfo.contentSize = n;
  /* the smallest block size that holds the record: decoders size their buffers by it */
  prefs.frameInfo.blockSizeID = n <= (64 << 10) ? LZ4F_max64KB : n <= (256 << 10) ? LZ4F_max256KB : n <= (1 << 20) ? LZ4F_max1MB : LZ4F_max4MB;
  prefs.compressionLevel = c->level == 1 ? 0 : (int)c->level;
  /* the whole record is handed over in one call, so nothing needs buffering: without autoFlush,
   * LZ4F_compressBegin would also clear an input buffer of the block size for every frame
   * (~40 us of a 1 MiB chunk's ~1.6 ms) */
  prefs.autoFlush = 1;
  size_t bound = LZ4F_HEADER_SIZE_MAX + LZ4F_compressBound(n, &prefs);
  if (bound > c->cap) {
    char *nb = realloc(c->buf, bound);
    if (!nb) return *rc = SL_ENOMEM, 0;
    c->buf = nb;
    c->cap = bound;
  }
  size_t h = LZ4F_compressBegin(c->cctx, c->buf, c->cap, &prefs);
  if (LZ4F_isError(h)) return *rc = SL_EDATA, 0;
  size_t b = LZ4F_compressUpdate(c->cctx, c->buf + h, c->cap - h, src, n, NULL);
  if (LZ4F_isError(b)) return *rc = SL_EDATA, 0;
  size_t e = LZ4F_compressEnd(c->cctx, c->buf + h + b, c->cap - h - b, NULL);
  if (LZ4F_isError(e)) return *rc = SL_EDATA, 0;
  return h + b + e;
}

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  compress *c = ctx;
  char msg[200];
  for (uint32_t i = 0; i < in->len; i++) {
    const sl_value *b = sl_bytes_of(&in->recs[i], c->field, msg, sizeof msg);
    if (!b) {
      sl_emit_error(em, i, "cannot compress: %s", msg);
      continue;
    }
    int rc = 0;
    size_t n = frame(c, sl_str_data(b), sl_str_len(b), &rc);
    sl_value out;
    if (!n || sl_str_try(c->buf, n, &out) != 0) {
      sl_emit_error(em, i, "cannot compress a record of %zu bytes: %s", sl_str_len(b), rc == SL_EDATA ? "lz4 failed" : "out of memory");
      continue;
    }
    sl_value r = sl_batch_take(in, i);
    sl_bytes_put(&r, c->field, out);
    sl_emit(em, i, r);
  }
  return 0;
}

static void destroy(void *ctx) {
  compress *c = ctx;
  LZ4F_freeCompressionContext(c->cctx);
  free(c->buf);
}

const sl_stage_kind sl_stage_compress = {
    .abi = SL_STAGE_ABI,
    .name = "compress",
    .doc = "compresses each record (or its field) into one lz4 frame with a content checksum",
    .options = options,
    .ctx_size = sizeof(compress),
    .flags = SL_STAGE_STATELESS,
    .init = init,
    .process = process,
    .destroy = destroy,
};
