/*
 * csv_fuzz.c — libFuzzer target for the CSV decoder (make fuzz).
 *
 * The first byte picks the options (header, a delimiter, a window size); the rest is decoded
 * twice: in one piece, and as a stream shown a growing window of the bytes, as a file source
 * sees them. Both must give the same records and failures (the streaming logic may not depend
 * on where reads end), make progress, and free what they made.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decodes data into an array of records (a failed row becomes the string "!ERR:" + its text).
 * window 0: all at once; else the decoder sees `window` more bytes each time it asks. */
static sl_value decode(const sl_codec_opts *o, const char *data, size_t size, size_t window) {
  sl_decoder d;
  if (sl_decoder_init(&d, o, NULL) != 0) abort();
  sl_value out = sl_array(0);
  size_t at = 0, end = window ? (window < size ? window : size) : size;
  for (;;) {
    size_t used;
    sl_value v;
    sl_error_t err;
    int rc = sl_decoder_next(&d, data + at, end - at, end == size, &used, &v, &err);
    at += used;
    if (rc == SL_DECODE_RECORD) {
      sl_array_push(&out, v);
    } else if (rc == SL_EDATA) {
      if (!err.msg[0]) abort();
      sl_array_push(&out, sl_strf("!ERR:%.*s", (int)sl_str_len(&v), sl_str_data(&v)));
      sl_value_free(v);
    } else if (rc == SL_DECODE_MORE && end < size) {
      end = end + window < size ? end + window : size;
    } else {
      if (rc < 0 && rc != SL_EINVAL) abort();
      break;
    }
  }
  sl_decoder_close(&d);
  return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t f = data[0];
  sl_value cols = sl_array(2);
  sl_array_push(&cols, sl_cstr("a"));
  sl_array_push(&cols, sl_cstr("b"));
  char delim[2] = {(f & 2) ? ';' : ',', 0};
  sl_codec_opts o = {.codec = SL_CODEC_CSV, .header = f & 1, .columns = (f & 4) ? cols : sl_nil(),
                     .delimiter = delim, .max_record = 1 << 20};
  size_t window = 1 + (f >> 3);
  sl_value whole = decode(&o, (const char *)data + 1, size - 1, 0);
  sl_value stream = decode(&o, (const char *)data + 1, size - 1, window);
  if (!sl_value_equal(&whole, &stream)) {
    fprintf(stderr, "streaming (window %zu) and whole decoding differ\n", window);
    abort();
  }
  sl_value_free(whole);
  sl_value_free(stream);
  sl_value_free(cols);
  return 0;
}
