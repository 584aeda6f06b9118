/*
 * json_fuzz.c — libFuzzer target for the JSON decoder (make fuzz).
 *
 * Arbitrary bytes go to sl__json_parse as one text, and to the jsonl decoder as a stream. A
 * text that parses must survive a round trip (written, parsed again: an equal value); a failed
 * parse must say why. Crashes, leaks and undefined behaviour are caught by ASan and UBSan.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "codec.h"
#include "value.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A number beyond the double range reads as infinity, which JSON writes as null. */
static bool finite_only(const sl_value *v) {
  if (v->type == SL_TDOUBLE) return isfinite(v->u.d);
  for (size_t i = 0; v->type == SL_TARRAY && i < sl_array_len(v); i++)
    if (!finite_only(sl_array_get(v, i))) return false;
  for (size_t i = 0; v->type == SL_TMAP && i < sl_map_len(v); i++)
    if (!finite_only(sl_map_val(v, i))) return false;
  return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sl_value v, back;
  sl_error_t err;
  sl_error_init(&err);
  uint64_t big = 0;
  int rc = sl__json_parse((const char *)data, size, &v, &err, &big);
  if (rc == 0) {
    sl_buf b;
    sl_buf_init(&b);
    if (sl_value_to_json(&v, &b) != 0) abort();
    if (sl_value_from_json(b.data ? b.data : "", b.len, &back, &err) != 0) {
      fprintf(stderr, "written JSON does not parse: %s\n", err.msg);
      abort();
    }
    if (!sl_value_equal(&v, &back) && finite_only(&v)) { /* finite doubles read back exactly */
      fprintf(stderr, "round trip changed the value: %s\n", b.data);
      abort();
    }
    sl_value_free(back);
    sl_buf_close(&b);
    sl_value_free(v);
  } else if (err.code != rc || !err.msg[0]) {
    abort();
  }
  /* the jsonl decoder over the same bytes */
  sl_codec_opts o = {.codec = SL_CODEC_JSONL, .columns = sl_nil(), .max_record = 1 << 20};
  sl_decoder d;
  if (sl_decoder_init(&d, &o, NULL) != 0) abort();
  size_t at = 0;
  for (;;) {
    size_t used;
    rc = sl_decoder_next(&d, (const char *)data + at, size - at, true, &used, &v, &err);
    at += used;
    sl_value_free(v);
    if (rc == SL_DECODE_MORE || (rc < 0 && rc != SL_EDATA)) break;
    if (rc == SL_EDATA && used == 0) abort(); /* must make progress */
  }
  if (at != size && rc == SL_DECODE_MORE) abort();
  sl_decoder_close(&d);
  return 0;
}
