/* file — writes records to a file with a codec (auto, lines, jsonl, csv, raw, frames, json),
 * optionally as one LZ4 frame (compress: lz4).
 *
 * The file is written under a temporary name in the same folder and renamed over `path` only
 * when the pipeline ends normally (or by a drained stop). When the pipeline fails or is aborted
 * the temporary file is removed, so `path` never holds a partial result.
 *
 * compress: lz4 streams the whole file through one LZ4F frame (4 MiB independent blocks, content
 * checksum on), as `lz4` writes it: `lz4 -d` and every sluice source read it back. A record that
 * the codec cannot write (raw and frames take strings) fails alone and follows on_error. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <lz4frame.h>

#include "codec.h"
#include "sluice.h"

#define FLUSH_AT (256 * 1024)
#define DIRECT_AT (64 * 1024) /* raw and frames: records this big are written from where they are */

enum { C_NONE = 0, C_LZ4 };

typedef struct file {
  char *path;        /* option */
  sl_codec_opts co;  /* options: codec, header, columns, delimiter */
  bool fsync;        /* option */
  int compress;      /* option: C_* */
  sl_encoder enc;
  bool enc_ready;    /* enc was initialised */
  LZ4F_cctx *cctx;   /* compress: lz4 */
  char *zbuf;        /* compressed bytes */
  size_t zcap;
  bool zstarted;     /* the frame header was made */
  size_t zheader;    /* its bytes at the start of zbuf, not written yet */
  char *tmp;     /* temporary name */
  int fd;        /* open temporary file, or -1 */
  bool renamed;  /* the result is in place */
  sl_buf buf;    /* pending bytes */
  sl_stage *st;
} file;

static const sl_option options[] = {
    {SL_OPT_STRING, "path", NULL, offsetof(file, path), "the file to write (replaced when the pipeline ends normally)", NULL, SL_OPT_PRIMARY | SL_OPT_REQUIRED},
    SL_CODEC_OPTIONS(file, co, "auto", "how records are written: auto (strings as lines, others as JSON), lines, jsonl, csv, raw, frames or json", 0),
    {SL_OPT_BOOL, "fsync", "false", offsetof(file, fsync), "fsync the file before it is renamed into place", NULL, 0},
    {SL_OPT_ENUM, "compress", "none", offsetof(file, compress), "lz4: the whole file as one LZ4 frame (content checksum on; read back transparently)", "none|lz4", 0},
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  file *f = ctx;
  f->st = st;
  f->fd = -1;
  sl_buf_init(&f->buf);
  if (!*f->path) return sl_error_set(err, SL_ECONFIG, NULL, "path is empty");
  int rc = sl_encoder_init(&f->enc, &f->co, err);
  if (rc) return rc;
  f->enc_ready = true;
  if (f->compress == C_LZ4) {
    LZ4F_errorCode_t e = LZ4F_createCompressionContext(&f->cctx, LZ4F_VERSION);
    if (LZ4F_isError(e)) return sl_error_set(err, SL_ENOMEM, NULL, "cannot start lz4: %s", LZ4F_getErrorName(e));
  }
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

static int write_all(file *f, const char *p, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t n = write(f->fd, p + off, len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sl_stage_fail(f->st, "cannot write '%s': %s", f->path, strerror(errno));
    off += (size_t)n;
  }
  return 0;
}

/* Makes room for the compressed form of n more bytes (or of the frame's end when n is 0). */
static int zreserve(file *f, size_t n) {
  static const LZ4F_preferences_t prefs = {
      .frameInfo = {.blockSizeID = LZ4F_max4MB, .blockMode = LZ4F_blockIndependent,
                    .contentChecksumFlag = LZ4F_contentChecksumEnabled}};
  size_t need = LZ4F_compressBound(n, &prefs) + LZ4F_HEADER_SIZE_MAX;
  if (need <= f->zcap) return 0;
  char *z = realloc(f->zbuf, need);
  if (!z) return SL_ENOMEM;
  f->zbuf = z;
  f->zcap = need;
  if (f->cctx && !f->zstarted) {
    size_t h = LZ4F_compressBegin(f->cctx, f->zbuf, f->zcap, &prefs);
    if (LZ4F_isError(h)) return sl_stage_fail(f->st, "lz4: %s", LZ4F_getErrorName(h));
    f->zstarted = true;
    f->zheader = h;
  }
  return 0;
}

/* Writes the pending bytes (through the lz4 frame when compressing); last: end the frame. */
static int drain(file *f, bool last) {
  if (!f->cctx) {
    int rc = write_all(f, f->buf.data, f->buf.len);
    f->buf.len = 0;
    return rc;
  }
  int rc = zreserve(f, f->buf.len);
  if (rc) return rc;
  size_t n = f->zheader; /* the frame header, written with the first bytes */
  f->zheader = 0;
  if (f->buf.len) {
    size_t z = LZ4F_compressUpdate(f->cctx, f->zbuf + n, f->zcap - n, f->buf.data, f->buf.len, NULL);
    if (LZ4F_isError(z)) return sl_stage_fail(f->st, "lz4: %s", LZ4F_getErrorName(z));
    n += z;
  }
  f->buf.len = 0;
  if (last) {
    if ((rc = write_all(f, f->zbuf, n))) return rc;
    if ((rc = zreserve(f, 0))) return rc;
    size_t z = LZ4F_compressEnd(f->cctx, f->zbuf, f->zcap, NULL);
    if (LZ4F_isError(z)) return sl_stage_fail(f->st, "lz4: %s", LZ4F_getErrorName(z));
    n = z;
  }
  return write_all(f, f->zbuf, n);
}

/* Writes the pending bytes, then n bytes at p, with writev: a big record of raw or frames goes
 * to the file from where it is, not copied into buf first (1 MiB chunks of a restore: a copy of
 * every byte saved). */
static int write_with(file *f, const char *p, size_t n) {
  struct iovec iov[2] = {{f->buf.data, f->buf.len}, {(void *)p, n}};
  struct iovec *v = f->buf.len ? iov : iov + 1;
  int cnt = f->buf.len ? 2 : 1;
  while (cnt > 0) {
    ssize_t w = writev(f->fd, v, cnt);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return sl_stage_fail(f->st, "cannot write '%s': %s", f->path, strerror(errno));
    size_t left = (size_t)w;
    for (; cnt > 0 && left >= v->iov_len; v++, cnt--) left -= v->iov_len;
    if (cnt > 0) { /* a short write: go on inside v */
      v->iov_base = (char *)v->iov_base + left;
      v->iov_len -= left;
    }
  }
  f->buf.len = 0;
  return 0;
}

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  file *f = ctx;
  char msg[200];
  for (uint32_t i = 0; i < in->len; i++) {
    const sl_value *v = &in->recs[i];
    if (!f->cctx && (f->co.codec == SL_CODEC_RAW || f->co.codec == SL_CODEC_FRAMES) && v->type == SL_TSTR &&
        sl_str_len(v) >= DIRECT_AT) { /* no copy of a big record into buf: its length, then writev */
      int rc = sl_encoder_put_head(&f->enc, &f->buf, v, msg, sizeof msg);
      if (rc == SL_EDATA) sl_emit_error(em, i, "%s", msg);
      else if (rc || (rc = write_with(f, sl_str_data(v), sl_str_len(v)))) return rc;
      continue;
    }
    int rc = sl_encoder_put(&f->enc, &f->buf, &in->recs[i], true, msg, sizeof msg);
    if (rc == SL_EDATA) sl_emit_error(em, i, "%s", msg);
    else if (rc) return rc;
  }
  return f->buf.len >= FLUSH_AT ? drain(f, false) : 0;
}

static int flush(void *ctx, sl_emitter *em) {
  file *f = ctx;
  int rc = drain(f, true);
  sl_encoder_report(&f->enc, f->st);
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
  if (f->enc_ready) sl_encoder_close(&f->enc);
  if (f->cctx) LZ4F_freeCompressionContext(f->cctx);
  free(f->zbuf);
}

static int check(void *ctx, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  return sl_codec_check_stage(&((file *)ctx)->co, false, stage, where, err);
}

const sl_stage_kind sl_stage_file = {
    .abi = SL_STAGE_ABI,
    .name = "file",
    .doc = "writes records to a file with a codec, optionally lz4-compressed; the file appears only when the pipeline succeeds",
    .options = options,
    .ctx_size = sizeof(file),
    .flags = SL_STAGE_SINK,
    .init = init,
    .check = check,
    .process = process,
    .flush = flush,
    .destroy = destroy,
};
