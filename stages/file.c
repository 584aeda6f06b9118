/* file — writes records to a file with a codec (auto, lines, jsonl, csv, raw, frames, json),
 * optionally as one LZ4 frame (compress: lz4).
 *
 * The file is written under a temporary name in the same folder and renamed over `path` only
 * when the pipeline ends normally (or by a drained stop). When the pipeline fails or is aborted
 * the temporary file is removed, so `path` never holds a partial result.
 *
 * compress: lz4 streams the whole file through one LZ4F frame (4 MiB independent blocks, content
 * checksum on), as `lz4` writes it: `lz4 -d` and every sluice source read it back. A record that
 * the codec cannot write (raw and frames take strings) fails alone and follows on_error.
 *
 * The writes themselves go to the engine's I/O thread (vm/bio.h; inline when the workers fill
 * the CPUs): a filled buffer is handed over, and a big raw/frames record by reference. A batch
 * parks while more than BEHIND bytes wait, flush waits for all of them before the rename, and a
 * write that failed there fails the stage with its errno. */
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

#include "bio.h"
#include "codec.h"
#include "sluice.h"
#include "value.h"

#define FLUSH_AT (256 * 1024)
#define DIRECT_AT (64 * 1024) /* raw and frames: records this big are written from where they are */
#define BEHIND (4 << 20)      /* bytes queued for the I/O thread before a batch waits */
#define BIO_TOKEN 1

enum { C_NONE = 0, C_LZ4 };

typedef struct file {
  char *path;        /* option */
  sl_codec_opts co;  /* options: codec, header, columns, delimiter */
  bool fsync;        /* option */
  int compress;      /* option: C_* */
  sl_encoder enc;
  bool enc_ready;    /* enc was initialised */
  LZ4F_cctx *cctx;   /* compress: lz4 */
  sl_buf zb;         /* compressed bytes not queued yet */
  bool zstarted;     /* the frame header was made */
  char *tmp;     /* temporary name */
  int fd;        /* open temporary file, or -1 */
  bool renamed;  /* the result is in place */
  sl_buf buf;    /* pending bytes */
  sl_bio_file *bio; /* writes them on the engine's I/O thread */
  bool drained;  /* flush queued the rest */
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
  f->bio = sl_bio_open(st, f->fd, BIO_TOKEN);
  return 0;
}

/* A write the I/O thread could not make fails the stage. */
static int check_io(file *f) {
  int e = sl_bio_error(f->bio);
  return e ? sl_stage_fail(f->st, "cannot write '%s': %s", f->path, strerror(e)) : 0;
}

/* Queues the pending bytes, then string `tail` (NULL: none), for the I/O thread. */
static int put(file *f, sl_buf *b, const sl_value *tail) {
  sl_bio_write(f->bio, b, tail);
  return check_io(f);
}

/* Makes room in zb for the compressed form of n more bytes (or of the frame's end when n is 0);
 * the frame's header goes first into the first of them. */
static int zreserve(file *f, size_t n) {
  static const LZ4F_preferences_t prefs = {
      .frameInfo = {.blockSizeID = LZ4F_max4MB, .blockMode = LZ4F_blockIndependent,
                    .contentChecksumFlag = LZ4F_contentChecksumEnabled}};
  if (sl__buf_reserve(&f->zb, LZ4F_compressBound(n, &prefs) + LZ4F_HEADER_SIZE_MAX)) return SL_ENOMEM;
  if (!f->zstarted) {
    size_t h = LZ4F_compressBegin(f->cctx, f->zb.data + f->zb.len, f->zb.cap - f->zb.len, &prefs);
    if (LZ4F_isError(h)) return sl_stage_fail(f->st, "lz4: %s", LZ4F_getErrorName(h));
    f->zstarted = true;
    f->zb.len += h;
  }
  return 0;
}

/* Queues the pending bytes (through the lz4 frame when compressing); last: end the frame. */
static int drain(file *f, bool last) {
  if (!f->cctx) return f->buf.len ? put(f, &f->buf, NULL) : check_io(f);
  int rc = zreserve(f, f->buf.len);
  if (rc) return rc;
  if (f->buf.len) {
    size_t z = LZ4F_compressUpdate(f->cctx, f->zb.data + f->zb.len, f->zb.cap - f->zb.len, f->buf.data, f->buf.len, NULL);
    if (LZ4F_isError(z)) return sl_stage_fail(f->st, "lz4: %s", LZ4F_getErrorName(z));
    f->zb.len += z;
  }
  f->buf.len = 0;
  if (last) {
    if ((rc = zreserve(f, 0))) return rc;
    size_t z = LZ4F_compressEnd(f->cctx, f->zb.data + f->zb.len, f->zb.cap - f->zb.len, NULL);
    if (LZ4F_isError(z)) return sl_stage_fail(f->st, "lz4: %s", LZ4F_getErrorName(z));
    f->zb.len += z;
  }
  return f->zb.len ? put(f, &f->zb, NULL) : check_io(f);
}

/* After the batch's bytes were queued: on when few enough wait for the I/O thread, else the
 * batch parks until its post (event). */
static int behind(file *f) { return sl_bio_wait_below(f->bio, BEHIND) ? check_io(f) : SL_PARKED; }

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  file *f = ctx;
  char msg[200];
  int rc = check_io(f);
  if (rc) return rc;
  for (uint32_t i = 0; i < in->len; i++) {
    const sl_value *v = &in->recs[i];
    if (!f->cctx && (f->co.codec == SL_CODEC_RAW || f->co.codec == SL_CODEC_FRAMES) && v->type == SL_TSTR &&
        sl_str_len(v) >= DIRECT_AT) { /* no copy of a big record into buf: its length, then the record itself */
      rc = sl_encoder_put_head(&f->enc, &f->buf, v, msg, sizeof msg);
      if (rc == SL_EDATA) sl_emit_error(em, i, "%s", msg);
      else if (rc || (rc = put(f, &f->buf, v))) return rc;
      continue;
    }
    rc = sl_encoder_put(&f->enc, &f->buf, &in->recs[i], true, msg, sizeof msg);
    if (rc == SL_EDATA) sl_emit_error(em, i, "%s", msg);
    else if (rc) return rc;
  }
  if (f->buf.len >= FLUSH_AT && (rc = drain(f, false))) return rc;
  return behind(f);
}

/* The I/O thread's post: a parked batch goes on when few enough bytes wait (a parked flush is
 * called again after this). */
static int event(void *ctx, uint64_t token, sl_emitter *em) {
  file *f = ctx;
  (void)token;
  return sl_emitter_batch(em) ? behind(f) : check_io(f);
}

static int flush(void *ctx, sl_emitter *em) {
  file *f = ctx;
  if (!f->drained) { /* the rest, once; then wait for the I/O thread to write it all */
    f->drained = true;
    int rc = drain(f, true);
    if (rc) return rc;
  }
  if (!sl_bio_wait_below(f->bio, 0)) return SL_PARKED;
  int rc = check_io(f);
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
  sl_bio_close(f->bio); /* before the fd it writes to */
  if (f->fd >= 0) close(f->fd);
  if (f->tmp && !f->renamed) unlink(f->tmp);
  free(f->tmp);
  sl_buf_close(&f->buf);
  if (f->enc_ready) sl_encoder_close(&f->enc);
  if (f->cctx) LZ4F_freeCompressionContext(f->cctx);
  sl_buf_close(&f->zb);
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
    .event = event,
};
