/* file_in — reads records from a file or standard input with a codec (the `file` sink's source
 * counterpart).
 *
 * Bytes come through the reader of vm/reader.c, so an LZ4-compressed input (found by its magic
 * number) is decompressed on the fly; they are split and parsed by the codec's decoder in one
 * buffer that holds at least one whole record (max_record). A record that does not parse (a
 * line that is not JSON, a csv row with the wrong number of fields) fails on its own and follows
 * on_error, with its text as the failed record; what cannot be read on (a record longer than
 * max_record, a truncated frame, corrupt lz4 data, a read error) fails the pipeline, naming the
 * file and the byte offset. A pipe is read only when it is readable (the event loop watches it). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "reader.h"
#include "sluice.h"

#define READ_SIZE (256 * 1024)

typedef struct fin {
  char *path;         /* option: file, or "-" for standard input */
  sl_codec_opts co;   /* options: codec, header, columns, delimiter, max_record */
  sl_reader *r;
  sl_decoder dec;
  bool dec_ready;     /* dec was initialised */
  char *buf;          /* bytes read, not yet decoded: buf[start, end) */
  size_t start, end, cap;
  bool eof;
  bool cut;           /* splitting behind: emit runs of whole lines (codec.h) */
  uint64_t line, offset; /* cut: line breaks and bytes emitted so far */
  sl_value name;      /* cut: the input's name, shared by the runs */
  sl_stage *st;
} fin;

static const sl_option options[] = {
    {SL_OPT_STRING, "path", "-", offsetof(fin, path), "the file to read (lz4-compressed files are read transparently); - for standard input", NULL, SL_OPT_PRIMARY},
    SL_CODEC_OPTIONS(fin, co, "lines", "how records are stored: lines, jsonl, csv, raw, frames or json (auto reads lines)", 0),
    SL_CODEC_READ_OPTIONS(fin, co),
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  fin *f = ctx;
  f->st = st;
  int rc = sl_decoder_init(&f->dec, &f->co, err);
  if (rc) return rc;
  f->dec_ready = true;
  if ((rc = sl_reader_open(f->path, &f->r, err))) return rc;
  f->cut = sl_stage_splits_behind(st);
  if (f->cut && sl_str_try(sl_reader_name(f->r), strlen(sl_reader_name(f->r)), &f->name) != 0) return SL_ENOMEM;
  f->cap = (size_t)f->co.max_record + 16 > READ_SIZE ? (size_t)f->co.max_record + 16 : READ_SIZE;
  f->buf = malloc(f->cap);
  return f->buf ? 0 : sl_error_set(err, SL_ENOMEM, NULL, "out of memory for a %zu-byte buffer", f->cap);
}

/* Splitting behind: the next run of whole lines as [text, lines before it, its byte, name]. */
static int cut_next(fin *f, sl_emitter *em, bool *more) {
  size_t take;
  uint64_t lines;
  *more = false;
  int rc = sl_lines_cut(f->buf + f->start, f->end - f->start, f->eof, (size_t)f->co.max_record, false, &take, &lines);
  if (rc == SL_DECODE_MORE) {
    *more = true;
    return 0;
  }
  if (rc == SL_EINVAL)
    return sl_stage_fail(f->st, "%s: the line at line %llu (byte %llu) is longer than max_record (%zu bytes); raise max_record",
                         sl_reader_name(f->r), (unsigned long long)f->line + 1, (unsigned long long)f->offset, (size_t)f->co.max_record);
  rc = sl_lines_emit_run(em, f->buf + f->start, take, f->line, f->offset, &f->name);
  f->line += lines;
  f->offset += take;
  f->start += take;
  return rc;
}

static int produce(void *ctx, sl_emitter *em) {
  fin *f = ctx;
  uint32_t room = sl_emitter_room(em), emitted = 0;
  while (f->cut && emitted < room) {
    bool more;
    int rc = cut_next(f, em, &more);
    if (rc) return rc;
    if (!more) {
      emitted++;
      continue;
    }
    if (f->eof) return SL_DONE;
    rc = sl_reader_fill(f->r, f->st, f->buf, &f->start, &f->end, f->cap, &f->eof);
    if (rc) return rc;
  }
  if (f->cut) return 0;
  while (emitted < room) {
    size_t used;
    sl_value v;
    sl_error_t err;
    int rc = sl_decoder_next(&f->dec, f->buf + f->start, f->end - f->start, f->eof, &used, &v, &err);
    f->start += used;
    if (rc == SL_DECODE_RECORD) {
      if (sl_emit(em, SL_NO_ORIGIN, v) != 0) return SL_ENOMEM;
      emitted++;
      continue;
    }
    if (rc == SL_EDATA) {
      sl_emit_error_record(em, v, NULL, "%s, %s", sl_reader_name(f->r), err.msg);
      continue;
    }
    if (rc == SL_ENOMEM) return rc;
    if (rc < 0) return sl_stage_fail(f->st, "%s: %s", sl_reader_name(f->r), err.msg);
    if (f->eof) {
      sl_decoder_report(&f->dec, f->st);
      return SL_DONE;
    }
    rc = sl_reader_fill(f->r, f->st, f->buf, &f->start, &f->end, f->cap, &f->eof);
    if (rc) return rc; /* what was emitted is passed on either way */
  }
  return 0;
}

static void destroy(void *ctx) {
  fin *f = ctx;
  sl_reader_free(f->r);
  if (f->dec_ready) sl_decoder_close(&f->dec);
  sl_value_free(f->name);
  free(f->buf);
}

static int check(void *ctx, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  return sl_codec_check_stage(&((fin *)ctx)->co, true, stage, where, err);
}

const sl_stage_kind sl_stage_file_in = {
    .abi = SL_STAGE_ABI,
    .name = "file_in",
    .doc = "reads records from a file or standard input with a codec (lz4 files are decompressed on the fly)",
    .options = options,
    .ctx_size = sizeof(fin),
    .flags = SL_STAGE_SOURCE,
    .init = init,
    .check = check,
    .produce = produce,
    .destroy = destroy,
};
