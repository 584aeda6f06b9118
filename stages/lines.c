/* lines — reads a file or standard input line by line; each line is a string record.
 *
 * Large files are streamed through a fixed buffer. CRLF line ends lose their CR. A line longer
 * than max_line is an error (long_lines: error) or is cut into max_line pieces (split). A pipe or
 * terminal is read only when it is readable (the event loop watches it), so a quiet stdin holds
 * no worker. Bytes come through vm/reader.c: an LZ4-compressed input is decompressed on the fly. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "reader.h"
#include "sluice.h"

#define READ_SIZE (256 * 1024)

typedef struct lines {
  char *path;        /* option: file, or "-" for stdin */
  int64_t max_line;  /* option */
  int long_lines;    /* option: 0 error, 1 split */
  sl_reader *r;
  bool eof;
  char *buf;         /* bytes read, not yet emitted: buf[start, end) */
  size_t start, end, cap;
  uint64_t lineno;   /* lines emitted (for messages) */
  bool cut;          /* splitting behind: emit runs of whole lines (codec.h) */
  uint64_t offset;   /* cut: bytes emitted */
  sl_value name;     /* cut: the input's name, shared by the runs */
  sl_stage *st;
} lines;

static const sl_option options[] = {
    {SL_OPT_STRING, "path", "-", offsetof(lines, path), "the file to read; - for standard input", NULL, SL_OPT_PRIMARY},
    {SL_OPT_SIZE, "max_line", "1MiB", offsetof(lines, max_line), "the longest line accepted", NULL, 0},
    {SL_OPT_ENUM, "long_lines", "error", offsetof(lines, long_lines), "a longer line: error (fails the pipeline) or split (into max_line pieces)", "error|split", 0},
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  lines *l = ctx;
  l->st = st;
  if (l->max_line < 1) return sl_error_set(err, SL_ECONFIG, NULL, "max_line must be at least 1 byte");
  int rc = sl_reader_open(l->path, &l->r, err);
  if (rc) return rc;
  l->cut = sl_stage_splits_behind(st);
  if (l->cut && sl_str_try(sl_reader_name(l->r), strlen(sl_reader_name(l->r)), &l->name) != 0) return SL_ENOMEM;
  l->cap = READ_SIZE > (size_t)l->max_line + 1 ? READ_SIZE : (size_t)l->max_line + 1;
  l->buf = malloc(l->cap);
  return l->buf ? 0 : SL_ENOMEM;
}

static const char *name_of(const lines *l) { return sl_reader_name(l->r); }

/* Emits buf[s, s+n) as one line (CR before the newline removed by the caller). */
static int emit_line(lines *l, sl_emitter *em, const char *s, size_t n) {
  sl_value v;
  if (sl_str_try(s, n, &v) != 0) return SL_ENOMEM;
  l->lineno++;
  return sl_emit(em, SL_NO_ORIGIN, v);
}

static int too_long(lines *l) {
  return sl_stage_fail(l->st, "line %llu of %s is longer than max_line (%lld bytes); raise max_line or set long_lines: split",
                       (unsigned long long)l->lineno + 1, name_of(l), (long long)l->max_line);
}

/* Splitting behind: runs of whole lines as [text, lines before it, its byte, name]. */
static int produce_runs(lines *l, sl_emitter *em) {
  uint32_t room = sl_emitter_room(em), emitted = 0;
  while (emitted < room) {
    size_t take;
    uint64_t n;
    int rc = sl_lines_cut(l->buf + l->start, l->end - l->start, l->eof, (size_t)l->max_line, true, &take, &n);
    if (rc == SL_EINVAL) return too_long(l);
    if (rc == SL_DECODE_MORE) {
      if (l->eof) return SL_DONE;
      if ((rc = sl_reader_fill(l->r, l->st, l->buf, &l->start, &l->end, l->cap, &l->eof))) return rc;
      continue;
    }
    rc = sl_lines_emit_run(em, l->buf + l->start, take, l->lineno, l->offset, &l->name);
    l->lineno += n;
    l->offset += take;
    l->start += take;
    if (rc) return rc;
    emitted++;
  }
  return 0;
}

static int produce(void *ctx, sl_emitter *em) {
  lines *l = ctx;
  if (l->cut) return produce_runs(l, em);
  uint32_t room = sl_emitter_room(em), emitted = 0;
  while (emitted < room) {
    char *s = l->buf + l->start;
    size_t avail = l->end - l->start;
    char *nl = memchr(s, '\n', avail);
    size_t len = nl ? (size_t)(nl - s) : avail;
    if (len > (size_t)l->max_line) { /* too long, whether or not its end is in the buffer */
      if (l->long_lines == 0) return too_long(l);
      if (emit_line(l, em, s, (size_t)l->max_line) != 0) return SL_ENOMEM;
      l->start += (size_t)l->max_line;
      emitted++;
      continue;
    }
    if (nl) {
      size_t n = len > 0 && s[len - 1] == '\r' ? len - 1 : len;
      if (emit_line(l, em, s, n) != 0) return SL_ENOMEM;
      l->start += len + 1;
      emitted++;
      continue;
    }
    if (l->eof) {
      if (avail > 0) {
        size_t n = s[avail - 1] == '\r' ? avail - 1 : avail;
        if (emit_line(l, em, s, n) != 0) return SL_ENOMEM;
        l->start = l->end;
      }
      return SL_DONE;
    }
    int rc = sl_reader_fill(l->r, l->st, l->buf, &l->start, &l->end, l->cap, &l->eof);
    if (rc) return rc; /* what was emitted is passed on either way */
  }
  return 0;
}

static void destroy(void *ctx) {
  lines *l = ctx;
  sl_reader_free(l->r);
  sl_value_free(l->name);
  free(l->buf);
}

const sl_stage_kind sl_stage_lines = {
    .abi = SL_STAGE_ABI,
    .name = "lines",
    .doc = "reads a file or standard input line by line (each line a string record)",
    .options = options,
    .ctx_size = sizeof(lines),
    .flags = SL_STAGE_SOURCE,
    .init = init,
    .produce = produce,
    .destroy = destroy,
};
