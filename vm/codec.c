/* codec.c — record encodings for sinks (see codec.h). */
#include "codec.h"

int sl_codec_encode(sl_buf *out, const sl_value *v, int codec) {
  int rc;
  if (codec != SL_CODEC_JSONL && v->type == SL_TSTR) rc = sl_buf_append(out, sl_str_data(v), sl_str_len(v));
  else rc = sl_value_to_json(v, out);
  return rc ? rc : sl_buf_append(out, "\n", 1);
}
