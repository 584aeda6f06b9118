/* codec.c — record encodings: streaming decoders and encoders (see codec.h).
 *
 * Messages name the line (for line-based codecs) and the byte offset counted from the start of
 * the input the decoder has been shown; a source prefixes the file's name. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "codec.h"
#include "value.h"

/* ---------------------------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------------------------- */

int sl_codec_check(const sl_codec_opts *o, bool reading, sl_error_t *err) {
  if (reading && o->max_record < 1) return sl_error_set(err, SL_ECONFIG, NULL, "max_record must be at least 1 byte");
  if (reading && o->max_record > ((int64_t)1 << 32) - 1)
    return sl_error_set(err, SL_ECONFIG, NULL, "max_record must be below 4GiB");
  if (o->delimiter && strlen(o->delimiter) != 1)
    return sl_error_set(err, SL_ECONFIG, NULL, "delimiter must be one byte (got '%s')", o->delimiter);
  if (o->delimiter && strchr("\"\r\n", o->delimiter[0]))
    return sl_error_set(err, SL_ECONFIG, NULL, "delimiter cannot be a quote or a line break");
  if (o->columns.type != SL_TNIL) {
    if (o->columns.type != SL_TARRAY || sl_array_len(&o->columns) == 0)
      return sl_error_set(err, SL_ECONFIG, NULL, "columns must be a non-empty list of names");
    for (size_t i = 0; i < sl_array_len(&o->columns); i++)
      if (sl_array_get(&o->columns, i)->type != SL_TSTR)
        return sl_error_set(err, SL_ECONFIG, NULL, "columns must be a list of names (item %zu is a %s)", i + 1,
                            sl_type_name(sl_array_get(&o->columns, i)->type));
  }
  if ((o->header || o->columns.type != SL_TNIL) && o->codec != SL_CODEC_CSV)
    return sl_error_set(err, SL_ECONFIG, NULL, "header and columns are options of codec csv");
  return 0;
}

int sl_codec_check_stage(const sl_codec_opts *o, bool reading, const char *stage, const char *where, sl_error_t *err) {
  sl_error_t e;
  sl_error_init(&e);
  int rc = sl_codec_check(o, reading, &e);
  return rc ? sl_error_set(err, rc, stage, "%sstage '%s': %s", where, stage, e.msg) : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------------------------- */

int sl_decoder_init(sl_decoder *d, const sl_codec_opts *o, sl_error_t *err) {
  memset(d, 0, sizeof *d);
  sl_buf_init(&d->scratch);
  int rc = sl_codec_check(o, true, err);
  if (rc) return rc;
  d->codec = o->codec == SL_CODEC_AUTO ? SL_CODEC_LINES : o->codec;
  d->delim = o->delimiter ? o->delimiter[0] : ',';
  d->max_record = (size_t)o->max_record;
  d->columns = sl_value_ref(&o->columns);
  d->header_pending = o->header; /* with columns too: the given names win, the file's header is skipped */
  return 0;
}

void sl_decoder_close(sl_decoder *d) {
  sl_value_free(d->columns);
  d->columns = sl_nil();
  sl_buf_close(&d->scratch);
}

void sl_decoder_report(sl_decoder *d, sl_stage *st) {
  if (d->big_ints == d->warned) return;
  sl_stage_log(st, SL_LOG_WARN, "%llu integer(s) too big for 64 bits were read as doubles (precision may be lost)",
               (unsigned long long)(d->big_ints - d->warned));
  d->warned = d->big_ints;
}

/* Uses n bytes of the input, counting its line breaks. */
static void consume(sl_decoder *d, const char *buf, size_t n) {
  for (const char *p = buf; (p = memchr(p, '\n', (size_t)(buf + n - p))) != NULL; p++) d->line++;
  d->offset += n;
}

/* The record at buf (n bytes, the record's text for the dead letter; take bytes with its line
 * break) is invalid: *out gets its text, *used += take, err the message (prefixed with the line
 * and byte where the record starts). */
static int bad(sl_decoder *d, const char *buf, size_t n, size_t take, size_t *used, sl_value *out,
               sl_error_t *err, const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static int bad(sl_decoder *d, const char *buf, size_t n, size_t take, size_t *used, sl_value *out,
               sl_error_t *err, const char *fmt, ...) {
  char msg[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (sl_str_try(buf, n, out) != 0) *out = sl_nil();
  sl_error_set(err, SL_EDATA, NULL, "line %llu (byte %llu): %s", (unsigned long long)d->line + 1,
               (unsigned long long)d->offset, msg);
  consume(d, buf, take);
  *used += take;
  return SL_EDATA;
}

static int too_long(sl_decoder *d, sl_error_t *err, const char *what) {
  return sl_error_set(err, SL_EINVAL, NULL,
                      "%s at line %llu (byte %llu) is longer than max_record (%zu bytes); raise max_record",
                      what, (unsigned long long)d->line + 1, (unsigned long long)d->offset, d->max_record);
}

/* Only JSON whitespace (a line break too when nl is set). */
static bool blank(const char *s, size_t n, bool nl) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && !(nl && s[i] == '\n')) return false;
  return true;
}

/* lines and jsonl: one record per line; CRLF loses its CR; jsonl skips blank lines. */
static int decode_line(sl_decoder *d, const char *buf, size_t len, bool eof, size_t *used, sl_value *out,
                       sl_error_t *err) {
  for (;;) {
    if (len == 0) return SL_DECODE_MORE;
    const char *nl = memchr(buf, '\n', len < d->max_record + 2 ? len : d->max_record + 2);
    if (!nl && (!eof || len > d->max_record + 1)) {
      if (len > d->max_record + 1) return too_long(d, err, "the line");
      return SL_DECODE_MORE;
    }
    size_t take = nl ? (size_t)(nl - buf) + 1 : len, n = nl ? take - 1 : len;
    if (n > 0 && buf[n - 1] == '\r') n--;
    if (n > d->max_record) return too_long(d, err, "the line");
    if (d->codec == SL_CODEC_LINES) {
      if (sl_str_try(buf, n, out) != 0) return SL_ENOMEM;
    } else if (blank(buf, n, false)) {
      consume(d, buf, take);
      *used += take;
      buf += take;
      len -= take;
      continue;
    } else {
      sl_error_t e;
      sl_error_init(&e);
      int rc = sl__json_parse(buf, n, out, &e, &d->big_ints);
      if (rc == SL_ENOMEM) return sl_error_set(err, rc, NULL, "%s", e.msg);
      if (rc) return bad(d, buf, n, take, used, out, err, "%s", e.msg);
    }
    d->line += nl != NULL;
    d->offset += take;
    *used += take;
    return SL_DECODE_RECORD;
  }
}

/* One csv field at buf[i]: its bytes in *f / *fn (pointing into buf, or into d->scratch for a
 * quoted field with doubled quotes), the index after it in *next. Returns 1 (the field ends
 * the row), 0 (more fields follow), SL_DECODE_MORE + 2 (the input ends inside it: need more),
 * or SL_EDATA with *why set. */
enum { F_NEXT = 0, F_LAST = 1, F_MORE = 2 };
static int csv_field(sl_decoder *d, const char *buf, size_t len, bool eof, size_t i, const char **f, size_t *fn,
                     size_t *next, const char **why) {
  char delim = d->delim;
  if (i < len && buf[i] == '"') {
    size_t j = i + 1;
    bool copied = false;
    d->scratch.len = 0;
    for (;;) {
      const char *q = memchr(buf + j, '"', len - j);
      if (!q) {
        if (!eof) return F_MORE;
        *why = "a quoted field is not closed (a '\"' is missing)";
        return SL_EDATA;
      }
      size_t k = (size_t)(q - buf);
      if (k + 1 == len && !eof) return F_MORE; /* a doubled quote, or the closing one? */
      if (k + 1 < len && buf[k + 1] == '"') { /* "" stands for " */
        if (sl_buf_append(&d->scratch, buf + j, k + 1 - j)) return SL_ENOMEM;
        copied = true;
        j = k + 2;
        continue;
      }
      if (copied) {
        if (sl_buf_append(&d->scratch, buf + j, k - j)) return SL_ENOMEM;
        *f = d->scratch.data ? d->scratch.data : "";
        *fn = d->scratch.len;
      } else {
        *f = buf + i + 1;
        *fn = k - i - 1;
      }
      i = k + 1;
      break;
    }
    if (i == len) {
      if (!eof) return F_MORE;
      *next = i;
      return F_LAST;
    }
    char c = buf[i];
    if (c == delim) {
      *next = i + 1;
      return F_NEXT;
    }
    if (c == '\n') {
      *next = i + 1;
      return F_LAST;
    }
    if (c == '\r') {
      if (i + 1 == len && !eof) return F_MORE;
      if (i + 1 == len || buf[i + 1] == '\n') {
        *next = i + 1 + (i + 1 < len);
        return F_LAST;
      }
    }
    *why = "unexpected character after the closing quote of a field (quote the whole field and double the quotes in it)";
    return SL_EDATA;
  }
  size_t k = i;
  while (k < len && buf[k] != delim && buf[k] != '\n') k++;
  if (k == len && !eof) return F_MORE;
  *f = buf + i;
  *fn = k - i;
  if (k < len && buf[k] == delim) {
    *next = k + 1;
    return F_NEXT;
  }
  if (*fn > 0 && buf[k - 1] == '\r') (*fn)--;
  *next = k < len ? k + 1 : k;
  return F_LAST;
}

/* The row as a value: a map over the columns, or an array of strings. */
static int csv_row(sl_decoder *d, sl_value fields, sl_value *out, const char **why, char *whybuf, size_t whylen) {
  if (d->columns.type == SL_TNIL) {
    *out = fields;
    return 0;
  }
  size_t nf = sl_array_len(&fields), nc = sl_array_len(&d->columns);
  if (nf != nc) {
    snprintf(whybuf, whylen, "%zu field%s where there are %zu columns", nf, nf == 1 ? "" : "s", nc);
    *why = whybuf;
    sl_value_free(fields);
    return SL_EDATA;
  }
  sl_value m = sl_map(nc);
  for (size_t i = 0; i < nc; i++) {
    const sl_value *k = sl_array_get(&d->columns, i);
    sl_map_set(&m, sl_str_data(k), sl_str_len(k), sl_value_ref(sl_array_get(&fields, i)));
  }
  sl_value_free(fields);
  *out = m;
  return 0;
}

static int decode_csv(sl_decoder *d, const char *buf, size_t len, bool eof, size_t *used, sl_value *out,
                      sl_error_t *err) {
  for (;;) {
    if (len == 0) return SL_DECODE_MORE;
    if (buf[0] == '\n' || (buf[0] == '\r' && len > 1 && buf[1] == '\n')) { /* a blank line */
      size_t take = buf[0] == '\n' ? 1 : 2;
      consume(d, buf, take);
      *used += take;
      buf += take;
      len -= take;
      continue;
    }
    sl_value fields = sl_array(8);
    size_t i = 0;
    const char *why = NULL;
    char whybuf[160];
    int rc;
    for (;;) {
      const char *f;
      size_t fn, next = 0;
      rc = csv_field(d, buf, len, eof, i, &f, &fn, &next, &why);
      if (rc == F_MORE || rc < 0) break;
      sl_value v;
      if (sl_str_try(f, fn, &v) != 0) {
        rc = SL_ENOMEM;
        break;
      }
      sl_array_push(&fields, v);
      i = next;
      if (rc == F_LAST) break;
      if (i > d->max_record) break;
    }
    if (rc == SL_ENOMEM) {
      sl_value_free(fields);
      return rc;
    }
    if (i > d->max_record || (rc == F_MORE && len > d->max_record + 2)) {
      sl_value_free(fields);
      return too_long(d, err, "the csv row");
    }
    if (rc == F_MORE) {
      sl_value_free(fields);
      return SL_DECODE_MORE;
    }
    if (rc == SL_EDATA) { /* skip to the end of the line the error is on */
      sl_value_free(fields);
      const char *nl = memchr(buf + i, '\n', len - i);
      if (!nl && !eof) return SL_DECODE_MORE;
      size_t take = nl ? (size_t)(nl - buf) + 1 : len;
      return bad(d, buf, nl ? take - 1 : take, take, used, out, err, "%s", why);
    }
    if (d->header_pending) {
      if (d->columns.type == SL_TNIL) d->columns = fields;
      else sl_value_free(fields);
      d->header_pending = false;
      consume(d, buf, i);
      *used += i;
      buf += i;
      len -= i;
      continue;
    }
    if (csv_row(d, fields, out, &why, whybuf, sizeof whybuf) != 0) {
      size_t n = i;
      while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
      return bad(d, buf, n, i, used, out, err, "%s", why);
    }
    consume(d, buf, i);
    *used += i;
    return SL_DECODE_RECORD;
  }
}

int sl_frame_length(const unsigned char *p, size_t max, uint64_t offset, size_t *n, sl_error_t *err) {
  *n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
  if (*n <= max) return 0;
  return sl_error_set(err, SL_EINVAL, NULL,
                      "the frame at byte %llu announces %zu bytes, more than max_record (%zu bytes); raise max_record "
                      "if the input really is frames",
                      (unsigned long long)offset, *n, max);
}

int sl_frame_truncated(uint64_t offset, size_t announced, size_t present, sl_error_t *err) {
  if (!announced)
    return sl_error_set(err, SL_EINVAL, NULL, "truncated frame at byte %llu: %zu of the 4 length bytes", (unsigned long long)offset, present);
  return sl_error_set(err, SL_EINVAL, NULL, "truncated frame at byte %llu: %zu bytes announced, %zu present",
                      (unsigned long long)offset, announced, present);
}

static int decode_frame(sl_decoder *d, const char *buf, size_t len, bool eof, size_t *used, sl_value *out,
                        sl_error_t *err) {
  if (len < 4) {
    if (eof && len > 0) return sl_frame_truncated(d->offset, 0, len, err);
    return SL_DECODE_MORE;
  }
  size_t n;
  if (sl_frame_length((const unsigned char *)buf, d->max_record, d->offset, &n, err)) return SL_EINVAL;
  if (len - 4 < n) {
    if (eof) return sl_frame_truncated(d->offset, n, len - 4, err);
    return SL_DECODE_MORE;
  }
  if (sl_str_try(buf + 4, n, out) != 0) return SL_ENOMEM;
  *used += n + 4;
  d->offset += n + 4;
  return SL_DECODE_RECORD;
}

static int decode_raw(sl_decoder *d, const char *buf, size_t len, bool eof, size_t *used, sl_value *out) {
  if (len == 0 || (len < d->max_record && !eof)) return SL_DECODE_MORE;
  size_t n = len < d->max_record ? len : d->max_record;
  if (sl_str_try(buf, n, out) != 0) return SL_ENOMEM;
  *used += n;
  d->offset += n;
  return SL_DECODE_RECORD;
}

/* json: the whole input is one JSON text (or nothing but whitespace). */
static int decode_json(sl_decoder *d, const char *buf, size_t len, bool eof, size_t *used, sl_value *out,
                       sl_error_t *err) {
  if (!eof) {
    if (len > d->max_record) return too_long(d, err, "the JSON text");
    return SL_DECODE_MORE;
  }
  if (len > d->max_record) return too_long(d, err, "the JSON text");
  if (blank(buf, len, true)) {
    consume(d, buf, len);
    *used += len;
    return SL_DECODE_MORE;
  }
  sl_error_t e;
  sl_error_init(&e);
  int rc = sl__json_parse(buf, len, out, &e, &d->big_ints);
  if (rc == SL_ENOMEM) return sl_error_set(err, rc, NULL, "%s", e.msg);
  if (rc) {
    sl_value_free(*out);
    if (sl_str_try(buf, len, out) != 0) *out = sl_nil();
    *used += len;
    d->offset += len;
    return sl_error_set(err, SL_EDATA, NULL, "%s", e.msg);
  }
  *used += len;
  consume(d, buf, len);
  return SL_DECODE_RECORD;
}

int sl_decoder_next(sl_decoder *d, const char *buf, size_t len, bool eof, size_t *used, sl_value *out,
                    sl_error_t *err) {
  *used = 0;
  *out = sl_nil();
  switch (d->codec) {
  case SL_CODEC_CSV: return decode_csv(d, buf, len, eof, used, out, err);
  case SL_CODEC_FRAMES: return decode_frame(d, buf, len, eof, used, out, err);
  case SL_CODEC_RAW: return decode_raw(d, buf, len, eof, used, out);
  case SL_CODEC_JSON: return decode_json(d, buf, len, eof, used, out, err);
  default: return decode_line(d, buf, len, eof, used, out, err);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------------------------------- */

int sl_encoder_init(sl_encoder *e, const sl_codec_opts *o, sl_error_t *err) {
  memset(e, 0, sizeof *e);
  int rc = sl_codec_check(o, false, err);
  if (rc) return rc;
  e->codec = o->codec;
  e->delim = o->delimiter ? o->delimiter[0] : ',';
  e->header = o->header;
  e->columns = sl_value_ref(&o->columns);
  return 0;
}

void sl_encoder_close(sl_encoder *e) {
  sl_value_free(e->columns);
  e->columns = sl_nil();
}

void sl_encoder_report(sl_encoder *e, sl_stage *st) {
  if (e->bad_utf8 == e->warned) return;
  sl_stage_log(st, SL_LOG_WARN, "%llu string(s) with invalid UTF-8 were written with U+FFFD in its place",
               (unsigned long long)(e->bad_utf8 - e->warned));
  e->warned = e->bad_utf8;
}

/* A csv field: text as it is, quoted (with doubled quotes) when it holds the delimiter, a
 * quote or a line break, or starts or ends with a space. */
static int csv_text(sl_encoder *e, sl_buf *out, const char *s, size_t n) {
  bool quote = n > 0 && (s[0] == ' ' || s[n - 1] == ' ');
  for (size_t i = 0; i < n && !quote; i++)
    quote = s[i] == e->delim || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
  if (!quote) return sl_buf_append(out, s, n);
  int rc = sl_buf_append(out, "\"", 1);
  for (size_t i = 0; i < n && !rc;) {
    const char *q = memchr(s + i, '"', n - i);
    size_t k = q ? (size_t)(q - s) + 1 : n;
    rc = sl_buf_append(out, s + i, k - i);
    if (!rc && q) rc = sl_buf_append(out, "\"", 1);
    i = k;
  }
  return rc ? rc : sl_buf_append(out, "\"", 1);
}

/* A value as a csv field: strings as they are, nil empty, others as their JSON text. */
static int csv_value(sl_encoder *e, sl_buf *out, const sl_value *v) {
  if (!v || v->type == SL_TNIL) return 0;
  if (v->type == SL_TSTR) return csv_text(e, out, sl_str_data(v), sl_str_len(v));
  sl_buf j;
  sl_buf_init(&j);
  int rc = sl__json_write(v, &j, &e->bad_utf8);
  if (!rc) rc = csv_text(e, out, j.data ? j.data : "", j.len);
  sl_buf_close(&j);
  return rc;
}

static int csv_put(sl_encoder *e, sl_buf *out, const sl_value *v, bool term) {
  int rc = 0;
  char d = e->delim;
  if (v->type == SL_TMAP && e->columns.type == SL_TNIL) { /* the first map's keys name the columns */
    e->columns = sl_array(sl_map_len(v));
    for (size_t i = 0; i < sl_map_len(v); i++) sl_array_push(&e->columns, sl_value_ref(sl_map_key(v, i)));
  }
  if (e->header && !e->header_done) {
    e->header_done = true;
    if (e->columns.type == SL_TARRAY) {
      for (size_t i = 0; i < sl_array_len(&e->columns) && !rc; i++) {
        if (i) rc = sl_buf_append(out, &d, 1);
        if (!rc) rc = csv_value(e, out, sl_array_get(&e->columns, i));
      }
      if (!rc) rc = sl_buf_append(out, "\n", 1);
    }
  }
  if (v->type == SL_TMAP) {
    for (size_t i = 0; i < sl_array_len(&e->columns) && !rc; i++) {
      const sl_value *k = sl_array_get(&e->columns, i);
      if (i) rc = sl_buf_append(out, &d, 1);
      if (!rc) rc = csv_value(e, out, sl_map_get(v, sl_str_data(k), sl_str_len(k)));
    }
  } else if (v->type == SL_TARRAY) {
    for (size_t i = 0; i < sl_array_len(v) && !rc; i++) {
      if (i) rc = sl_buf_append(out, &d, 1);
      if (!rc) rc = csv_value(e, out, sl_array_get(v, i));
    }
  } else {
    rc = csv_value(e, out, v);
  }
  return rc || !term ? rc : sl_buf_append(out, "\n", 1);
}

int sl_encoder_put_head(sl_encoder *e, sl_buf *out, const sl_value *v, char *msg, size_t msglen) {
  if (v->type != SL_TSTR) {
    snprintf(msg, msglen, "codec %s writes strings (bytes), not a %s; encode the record first",
             e->codec == SL_CODEC_RAW ? "raw" : "frames", sl_type_name(v->type));
    return SL_EDATA;
  }
  if (e->codec != SL_CODEC_FRAMES) return 0;
  size_t n = sl_str_len(v);
  if (n > 0xFFFFFFFFu) {
    snprintf(msg, msglen, "a frame holds at most 4 GiB - 1 bytes (the record has %zu)", n);
    return SL_EDATA;
  }
  unsigned char h[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8), (unsigned char)n};
  return sl_buf_append(out, h, 4);
}

int sl_encoder_put(sl_encoder *e, sl_buf *out, const sl_value *v, bool term, char *msg, size_t msglen) {
  size_t len0 = out->len;
  int rc;
  switch (e->codec) {
  case SL_CODEC_RAW:
  case SL_CODEC_FRAMES:
    if ((rc = sl_encoder_put_head(e, out, v, msg, msglen))) return rc;
    rc = sl_buf_append(out, sl_str_data(v), sl_str_len(v));
    break;
  case SL_CODEC_CSV: rc = csv_put(e, out, v, term); break;
  case SL_CODEC_JSONL:
  case SL_CODEC_JSON:
    rc = sl__json_write(v, out, &e->bad_utf8);
    if (!rc && term) rc = sl_buf_append(out, "\n", 1);
    break;
  default: /* auto, lines: strings as they are, other values as JSON */
    if (v->type == SL_TSTR) rc = sl_buf_append(out, sl_str_data(v), sl_str_len(v));
    else rc = sl__json_write(v, out, &e->bad_utf8);
    if (!rc && term) rc = sl_buf_append(out, "\n", 1);
    break;
  }
  if (rc && out->len > len0) {
    out->len = len0;
    out->data[len0] = '\0';
  }
  return rc;
}
