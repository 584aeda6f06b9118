/* file_in — reads records from a file or standard input with a codec (the `file` sink's source
 * counterpart).
 *
 * Bytes come through the reader of vm/reader.c, so an LZ4-compressed input (found by its magic
 * number) is decompressed on the fly; they are split and parsed by the codec's decoder in one
 * buffer that holds at least one whole record (max_record). A record that does not parse (a
 * line that is not JSON, a csv row with the wrong number of fields) fails on its own and follows
 * on_error, with its text as the failed record; what cannot be read on (a record longer than
 * max_record, a truncated frame, corrupt lz4 data, a read error) fails the pipeline, naming the
 * file and the byte offset. A pipe is read only when it is readable (the event loop watches it).
 *
 * Big frames straight into their strings. Frames of a regular file that is not lz4-compressed,
 * when the first few average DIRECT_AVG bytes or more (the chunks of a protected file), skip the
 * buffer: the worker reads each 4-byte length (pread), and the frame's bytes are read into the
 * record's own string on the engine's I/O thread (vm/bio.h; inline when the workers fill the
 * CPUs), DIRECT_AHEAD frames ahead. That is one copy of every byte instead of two, and at one
 * worker not on the worker (restore: ~6% of its time). Errors are the decoder's, in the same
 * order: the frames before a bad length are emitted first. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bio.h"
#include "codec.h"
#include "crypt.h"
#include "reader.h"
#include "sluice.h"

#define READ_SIZE (256 * 1024)
/* Bytes of records per batch at most: batches are the unit parallel stages share out, so big
 * records (the 1 MiB chunks of a restore) go a few at a time, every worker gets some, and the
 * queues hold a few MiB, not 256 records' worth (restore at 2 workers: 674 MiB peak RSS). */
#define BATCH_BYTES (4 << 20)
#define DIRECT_AVG (16 * 1024)
#define DIRECT_SAMPLE 4 /* frames whose lengths decide */
#define DIRECT_AHEAD 4
#define BIO_TOKEN 1 /* no event callback: a finished read just wakes the source */

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
  /* big frames straight into their strings (see the top) */
  bool direct;
  sl_bio_file *bio;
  int fd;
  uint64_t base;      /* the descriptor's offset at the start (offsets in messages count from it) */
  uint64_t pos;       /* the next frame's length, as a file offset */
  struct { uint64_t at; size_t n; } q[DIRECT_AHEAD]; /* frames being read, oldest first */
  uint32_t qhead, nq;
  sl_error_t derr;    /* a bad length found ahead: fails once the frames before it went out */
  bool dfail;
} fin;

static const sl_option options[] = {
    {SL_OPT_STRING, "path", "-", offsetof(fin, path), "the file to read (lz4-compressed files are read transparently); - for standard input", NULL, SL_OPT_PRIMARY},
    SL_CODEC_OPTIONS(fin, co, "lines", "how records are stored: lines, jsonl, csv, raw, frames or json (auto reads lines)", 0),
    SL_CODEC_READ_OPTIONS(fin, co),
    SL_OPTIONS_END,
};

/* pread of up to n bytes at off, all of them unless the file ends: the count, or -1 (errno). */
static ssize_t pread_full(int fd, void *p, size_t n, uint64_t off) {
  size_t got = 0;
  while (got < n) {
    ssize_t k = pread(fd, (char *)p + got, n - got, (off_t)(off + got));
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return -1;
    if (k == 0) break;
    got += (size_t)k;
  }
  return (ssize_t)got;
}

/* Whether the frames go straight into their strings: frames, a regular file not lz4-compressed,
 * and the first DIRECT_SAMPLE frames average DIRECT_AVG bytes or more. */
static bool frames_direct(fin *f) {
  if (f->co.codec != SL_CODEC_FRAMES || !sl_reader_regular(f->r)) return false;
  f->fd = sl_reader_fd(f->r);
  off_t at = lseek(f->fd, 0, SEEK_CUR);
  if (at < 0) return false;
  f->base = f->pos = (uint64_t)at;
  uint64_t pos = f->pos, sum = 0;
  int count = 0;
  for (; count < DIRECT_SAMPLE; count++) {
    unsigned char h[4];
    size_t n;
    sl_error_t err; /* a bad length ends the sample: produce reports it where it stands */
    if (pread_full(f->fd, h, 4, pos) != 4 || (count == 0 && sl_lz4_magic(h)) ||
        sl_frame_length(h, f->dec.max_record, pos - f->base, &n, &err))
      break;
    sum += n;
    pos += 4 + n;
  }
  return count > 0 && sum / (uint64_t)count >= DIRECT_AVG;
}

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  fin *f = ctx;
  f->st = st;
  int rc = sl_decoder_init(&f->dec, &f->co, err);
  if (rc) return rc;
  f->dec_ready = true;
  if ((rc = sl_reader_open(f->path, &f->r, err))) return rc;
  f->cut = sl_stage_splits_behind(st);
  if (f->cut && sl_str_try(sl_reader_name(f->r), strlen(sl_reader_name(f->r)), &f->name) != 0) return SL_ENOMEM;
  if (frames_direct(f)) {
    f->direct = true;
    f->bio = sl_bio_open(st, f->fd, BIO_TOKEN);
    return 0;
  }
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

/* Direct: reads the next frame's length and queues the read of its bytes. A bad or short length
 * ends the file with f->derr. */
static int queue_frame(fin *f) {
  unsigned char h[4];
  uint64_t at = f->pos - f->base;
  ssize_t k = pread_full(f->fd, h, 4, f->pos);
  if (k < 0) return sl_stage_fail(f->st, "cannot read %s: %s", sl_reader_name(f->r), strerror(errno));
  size_t n;
  if (k == 0 || (k < 4 && sl_frame_truncated(at, 0, (size_t)k, &f->derr)) ||
      sl_frame_length(h, f->dec.max_record, at, &n, &f->derr)) {
    f->eof = true;
    f->dfail = k > 0;
    return 0;
  }
  sl_value v; /* a heap string even for a short frame (its bytes must stay put); shrunk when taken */
  char *data;
  if (sl_bytes_new(n > SL_STR_INLINE_MAX ? n : SL_STR_INLINE_MAX + 1, &v, &data) != 0) return SL_ENOMEM;
  sl_bio_read(f->bio, v, data, n, (int64_t)(f->pos + 4));
  uint32_t slot = (f->qhead + f->nq++) % DIRECT_AHEAD;
  f->q[slot].at = at;
  f->q[slot].n = n;
  f->pos += 4 + n;
  return 0;
}

static int produce_direct(fin *f, sl_emitter *em) {
  uint32_t room = sl_emitter_room(em);
  size_t bytes = 0;
  for (uint32_t emitted = 0;;) {
    while (!f->eof && f->nq < DIRECT_AHEAD) {
      int rc = queue_frame(f);
      if (rc) return rc;
    }
    if (f->nq == 0) {
      if (f->dfail) return sl_stage_fail(f->st, "%s: %s", sl_reader_name(f->r), f->derr.msg);
      sl_decoder_report(&f->dec, f->st);
      return SL_DONE;
    }
    if (emitted == room || bytes >= BATCH_BYTES) return 0;
    sl_value v;
    size_t got;
    int e;
    if (!sl_bio_take_read(f->bio, &v, &got, &e)) return SL_PARKED; /* its post runs us again */
    uint64_t at = f->q[f->qhead].at;
    size_t n = f->q[f->qhead].n;
    f->qhead = (f->qhead + 1) % DIRECT_AHEAD;
    f->nq--;
    if (e || got < n) {
      sl_value_free(v);
      if (e) return sl_stage_fail(f->st, "cannot read %s: %s", sl_reader_name(f->r), strerror(e));
      sl_error_t err;
      sl_frame_truncated(at, n, got, &err);
      return sl_stage_fail(f->st, "%s: %s", sl_reader_name(f->r), err.msg);
    }
    if (n <= SL_STR_INLINE_MAX) {
      sl_value s;
      int rc = sl_str_try(sl_str_data(&v), n, &s);
      sl_value_free(v);
      if (rc) return SL_ENOMEM;
      v = s;
    }
    if (sl_emit(em, SL_NO_ORIGIN, v) != 0) return SL_ENOMEM;
    emitted++;
    bytes += n;
  }
}

static int produce(void *ctx, sl_emitter *em) {
  fin *f = ctx;
  if (f->direct) return produce_direct(f, em);
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
  for (size_t bytes = 0; emitted < room && bytes < BATCH_BYTES;) {
    size_t used;
    sl_value v;
    sl_error_t err;
    int rc = sl_decoder_next(&f->dec, f->buf + f->start, f->end - f->start, f->eof, &used, &v, &err);
    f->start += used;
    bytes += used;
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
  sl_bio_close(f->bio); /* before the reader closes its descriptor */
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
