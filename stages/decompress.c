/* decompress — each record's bytes (the record, or its `field`) are one lz4 frame: they become
 * what the frame holds.
 *
 * A frame that is corrupt, cut short, followed by other bytes, whose checksum does not match,
 * or larger than max_size fails its record with the reason (and follows on_error). Frames that
 * state their content size (compress writes it) are decoded straight into the result; others
 * grow a scratch buffer. */
#include <lz4frame.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt.h"
#include "sluice.h"

typedef struct decompress {
  char *field;        /* option */
  int64_t max_size;   /* option */
  LZ4F_dctx *dctx;
  char *buf;          /* scratch output for frames without a content size */
  size_t cap;
} decompress;

static const sl_option options[] = {
    {SL_OPT_STRING, "field", "data", offsetof(decompress, field), "the field of a map record to decompress (a string record is decompressed whole)", NULL, SL_OPT_PRIMARY},
    {SL_OPT_SIZE, "max_size", "1GiB", offsetof(decompress, max_size), "the largest decompressed record accepted (a guard against decompression bombs)", NULL, 0},
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  decompress *d = ctx;
  if (d->max_size < 1) return sl_error_set(err, SL_ECONFIG, NULL, "max_size must be at least 1 byte");
  if (LZ4F_isError(LZ4F_createDecompressionContext(&d->dctx, LZ4F_VERSION))) return SL_ENOMEM;
  return 0;
}

/* Makes sure the scratch buffer has room past `total`; false when it may not grow (max_size) or
 * memory ran out (*rc). */
static bool grow(decompress *d, size_t total, int *rc) {
  if (total < d->cap) return true;
  size_t ncap = d->cap ? d->cap * 2 : 64 * 1024;
  if (ncap > (size_t)d->max_size + 1) ncap = (size_t)d->max_size + 1;
  if (ncap <= d->cap) return false;
  char *nb = realloc(d->buf, ncap);
  if (!nb) return *rc = SL_ENOMEM, false;
  d->buf = nb;
  d->cap = ncap;
  return true;
}

/* Decodes the frame src[0..n) into *out (returns owned). On failure writes why into msg. */
static int unframe(decompress *d, const char *src, size_t n, sl_value *out, char *msg, size_t msglen) {
  LZ4F_frameInfo_t fi;
  size_t pos = n, total = 0, cap = 0;
  int rc = SL_EDATA;
  char *dst = NULL;
  bool direct = false;
  *out = sl_nil();
  size_t r = LZ4F_getFrameInfo(d->dctx, &fi, src, &pos);
  if (LZ4F_isError(r)) {
    snprintf(msg, msglen, "not an lz4 frame (%zu bytes): %s", n, LZ4F_getErrorName(r));
    goto fail;
  }
  if (fi.contentSize > (unsigned long long)d->max_size) {
    snprintf(msg, msglen, "the frame holds %llu bytes, more than max_size (%lld)", fi.contentSize, (long long)d->max_size);
    goto fail;
  }
  if (fi.contentSize) { /* decoded straight into the result */
    cap = (size_t)fi.contentSize;
    if (sl_bytes_new(cap, out, &dst) != 0) {
      rc = SL_ENOMEM;
      snprintf(msg, msglen, "out of memory for %zu bytes", cap);
      goto fail;
    }
    direct = true;
  }
  while (r != 0) {
    if (!direct) {
      if (!grow(d, total, &rc)) {
        snprintf(msg, msglen, rc == SL_ENOMEM ? "out of memory" : "the frame holds more than max_size (%lld bytes)", (long long)d->max_size);
        goto fail;
      }
      dst = d->buf, cap = d->cap;
    }
    size_t room = cap - total, used = n - pos;
    if (used == 0) {
      snprintf(msg, msglen, "the lz4 frame is cut short (%zu bytes)", n);
      goto fail;
    }
    r = LZ4F_decompress(d->dctx, dst + total, &room, src + pos, &used, NULL);
    if (LZ4F_isError(r)) {
      snprintf(msg, msglen, "corrupt lz4 frame at byte %zu of %zu: %s", pos + used, n, LZ4F_getErrorName(r));
      goto fail;
    }
    pos += used;
    total += room;
    if (r != 0 && room == 0 && used == 0) { /* no progress: the result is full */
      snprintf(msg, msglen, "the frame holds more than its stated size (%zu bytes)", cap);
      goto fail;
    }
  }
  if (pos != n) {
    snprintf(msg, msglen, "%zu bytes follow the lz4 frame", n - pos);
    goto fail;
  }
  if (direct) {
    if (total == cap) return 0;
    snprintf(msg, msglen, "the frame holds %zu bytes, not the %zu it states", total, cap);
    goto fail;
  }
  if (total > (size_t)d->max_size) {
    snprintf(msg, msglen, "the frame holds more than max_size (%lld bytes)", (long long)d->max_size);
    goto fail;
  }
  if (sl_str_try(d->buf, total, out) == 0) return 0;
  rc = SL_ENOMEM;
  snprintf(msg, msglen, "out of memory");
fail:
  sl_value_free(*out);
  *out = sl_nil();
  LZ4F_resetDecompressionContext(d->dctx);
  return rc;
}

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  decompress *d = ctx;
  char msg[300];
  for (uint32_t i = 0; i < in->len; i++) {
    const sl_value *b = sl_bytes_of(&in->recs[i], d->field, msg, sizeof msg);
    sl_value out;
    if (!b || unframe(d, sl_str_data(b), sl_str_len(b), &out, msg, sizeof msg) != 0) {
      sl_emit_error(em, i, "cannot decompress: %s", msg);
      continue;
    }
    sl_value r = sl_batch_take(in, i);
    sl_bytes_put(&r, d->field, out);
    sl_emit(em, i, r);
  }
  return 0;
}

static void destroy(void *ctx) {
  decompress *d = ctx;
  LZ4F_freeDecompressionContext(d->dctx);
  free(d->buf);
}

const sl_stage_kind sl_stage_decompress = {
    .abi = SL_STAGE_ABI,
    .name = "decompress",
    .doc = "decompresses each record (or its field), one lz4 frame, checking its checksum",
    .options = options,
    .ctx_size = sizeof(decompress),
    .flags = SL_STAGE_STATELESS,
    .init = init,
    .process = process,
    .destroy = destroy,
};
