/* stdout — writes records to standard output with a codec (auto: strings as lines, other values
 * as JSON lines; also lines, jsonl, csv, raw, frames, json). A record the codec cannot write
 * fails alone and follows on_error.
 * A closed pipe (EPIPE, as `head` does) ends the pipeline quietly: the sink stops reading and
 * upstream is cancelled. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <stddef.h>
#include <unistd.h>

#include "codec.h"
#include "sluice.h"

#define FLUSH_AT (64 * 1024)

typedef struct out {
  sl_codec_opts co; /* options: codec, header, columns, delimiter */
  sl_encoder enc;
  bool enc_ready;   /* enc was initialised */
  int fd;      /* 1 */
  sl_buf buf;  /* pending bytes */
  bool closed; /* the reader went away */
  sl_stage *st;
} out;

static const sl_option options[] = {
    SL_CODEC_OPTIONS(out, co, "auto", "how records are written: auto (strings as lines, others as JSON), lines, jsonl, csv, raw, frames or json", SL_OPT_PRIMARY),
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  out *o = ctx;
  o->fd = STDOUT_FILENO;
  o->st = st;
  sl_buf_init(&o->buf);
  int rc = sl_encoder_init(&o->enc, &o->co, err);
  o->enc_ready = rc == 0;
  return rc;
}

/* Writes the buffer out. Returns 0, SL_DONE when the reader closed the pipe, or SL_EFAILED. */
static int drain(out *o) {
  size_t off = 0;
  while (off < o->buf.len) {
    ssize_t n = write(o->fd, o->buf.data + off, o->buf.len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EPIPE) {
      /* engine threads block SIGPIPE; take the pending one so it never fires later */
      sigset_t pipe_set;
      sigemptyset(&pipe_set);
      sigaddset(&pipe_set, SIGPIPE);
      struct timespec zero = {0, 0};
      sigtimedwait(&pipe_set, NULL, &zero);
      o->closed = true;
      o->buf.len = 0;
      return SL_DONE;
    }
    if (n < 0) return sl_stage_fail(o->st, "cannot write to standard output: %s", strerror(errno));
    off += (size_t)n;
  }
  o->buf.len = 0;
  return 0;
}

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  out *o = ctx;
  if (o->closed) return SL_DONE;
  char msg[200];
  for (uint32_t i = 0; i < in->len; i++) {
    int rc = sl_encoder_put(&o->enc, &o->buf, &in->recs[i], true, msg, sizeof msg);
    if (rc == SL_EDATA) sl_emit_error(em, i, "%s", msg);
    else if (rc) return rc;
    if (o->buf.len >= FLUSH_AT && (rc = drain(o)) != 0) return rc;
  }
  return drain(o);
}

static int flush(void *ctx, sl_emitter *em) {
  out *o = ctx;
  int rc = o->closed ? 0 : drain(o);
  sl_encoder_report(&o->enc, o->st);
  return rc == SL_DONE ? 0 : rc;
}

static void destroy(void *ctx) {
  out *o = ctx;
  sl_buf_close(&o->buf);
  if (o->enc_ready) sl_encoder_close(&o->enc);
}

static int check(void *ctx, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  return sl_codec_check_stage(&((out *)ctx)->co, false, stage, where, err);
}

const sl_stage_kind sl_stage_stdout = {
    .abi = SL_STAGE_ABI,
    .name = "stdout",
    .doc = "writes records to standard output, one per line",
    .options = options,
    .ctx_size = sizeof(out),
    .flags = SL_STAGE_SINK,
    .init = init,
    .check = check,
    .process = process,
    .flush = flush,
    .destroy = destroy,
};
