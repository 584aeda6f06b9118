/*
 * codec.h — record encodings shared by sinks (sl_codec_ prefix). The full codec set (csv,
 * frames, raw, decoding) grows here; sinks pick one by the enum below.
 */
#ifndef SL_CODEC_H
#define SL_CODEC_H

#include "sluice.h"

/* The order matches the choices string SL_CODEC_CHOICES of the sinks' `codec` option. */
enum { SL_CODEC_AUTO = 0, SL_CODEC_LINES, SL_CODEC_JSONL };
#define SL_CODEC_CHOICES "auto|lines|jsonl"

/* Appends one record and its newline to out. auto: strings as lines, other values as JSON;
 * lines: the same (a line is a string; other values are written as JSON); jsonl: every record as
 * JSON. errors: nomem */
int sl_codec_encode(sl_buf *out, const sl_value *v, int codec);

#endif
