/* file — writes records to a file, one per line (codec auto, lines or jsonl).
 *
 * The file is written under a temporary name in the same folder and renamed over `path` only
 * when the pipeline ends normally (or by a drained stop). When the pipeline fails or is aborted
 * the temporary file is removed, so `path` never holds a partial result. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "sluice.h"

#define FLUSH_AT (256 * 1024)

typedef struct file {
  char *path;    /* option */
  int codec;     /* option */
  bool fsync;    /* option */
  char *tmp;     /* temporary name */
  int fd;        /* open temporary file, or -1 */
  bool renamed;  /* the result is in place */
  sl_buf buf;    /* pending bytes */
  sl_stage *st;
} file;

static const sl_option options[] = {
    {SL_OPT_STRING, "path", NULL, offsetof(file, path), "the file to write (replaced when the pipeline ends normally)", NULL, SL_OPT_PRIMARY | SL_OPT_REQUIRED},
    {SL_OPT_ENUM, "codec", "auto", offsetof(file, codec), "auto (strings as lines, others as JSON), lines or jsonl", SL_CODEC_CHOICES, 0},
    {SL_OPT_BOOL, "fsync", "false", offsetof(file, fsync), "fsync the file before it is renamed into place", NULL, 0},
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  file *f = ctx;
  f->st = st;
  f->fd = -1;
  sl_buf_init(&f->buf);
  if (!*f->path) return sl_error_set(err, SL_ECONFIG, NULL, "path is empty");
  const char *slash = strrchr(f->path, '/');
  size_t dirlen = slash ? (size_t)(slash - f->path) + 1 : 0;
  const char *base = slash ? slash + 1 : f->path;
  size_t n = dirlen + strlen(base) + 32;
  f->tmp = malloc(n);
  if (!f->tmp) return SL_ENOMEM;
  snprintf(f->tmp, n, "%.*s.%s.sluice-XXXXXX", (int)dirlen, f->path, base);
  f->fd = mkstemp(f->tmp);
  if (f->fd < 0) {
    int e = errno;
    free(f->tmp);
    f->tmp = NULL;
    return sl_error_set(err, SL_EIO, NULL, "cannot create a file next to '%s': %s", f->path, strerror(e));
  }
  mode_t um = umask(0);
  umask(um);
  fchmod(f->fd, 0666 & ~um);
  return 0;
}

static int drain(file *f) {
  size_t off = 0;
  while (off < f->buf.len) {
    ssize_t n = write(f->fd, f->buf.data + off, f->buf.len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sl_stage_fail(f->st, "cannot write '%s': %s", f->path, strerror(errno));
    off += (size_t)n;
  }
  f->buf.len = 0;
  return 0;
}

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  file *f = ctx;
  for (uint32_t i = 0; i < in->len; i++)
    if (sl_codec_encode(&f->buf, &in->recs[i], f->codec) != 0) return SL_ENOMEM;
  return f->buf.len >= FLUSH_AT ? drain(f) : 0;
}

static int flush(void *ctx, sl_emitter *em) {
  file *f = ctx;
  int rc = drain(f);
  if (rc) return rc;
  if (f->fsync && fsync(f->fd) < 0) return sl_stage_fail(f->st, "cannot fsync '%s': %s", f->path, strerror(errno));
  if (close(f->fd) < 0) {
    f->fd = -1;
    return sl_stage_fail(f->st, "cannot close '%s': %s", f->path, strerror(errno));
  }
  f->fd = -1;
  if (rename(f->tmp, f->path) < 0) return sl_stage_fail(f->st, "cannot rename the output into '%s': %s", f->path, strerror(errno));
  f->renamed = true;
  return 0;
}

static void destroy(void *ctx) {
  file *f = ctx;
  if (f->fd >= 0) close(f->fd);
  if (f->tmp && !f->renamed) unlink(f->tmp);
  free(f->tmp);
  sl_buf_close(&f->buf);
}

const sl_stage_kind sl_stage_file = {
    .abi = SL_STAGE_ABI,
    .name = "file",
    .doc = "writes records to a file, one per line; the file appears only when the pipeline succeeds",
    .options = options,
    .ctx_size = sizeof(file),
    .flags = SL_STAGE_SINK,
    .init = init,
    .process = process,
    .flush = flush,
    .destroy = destroy,
};
