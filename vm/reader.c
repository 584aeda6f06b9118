/*
 * reader.c — the byte reader of file sources: plain files, pipes, and LZ4 frames found by their
 * magic number (see reader.h).
 *
 * The first four bytes decide: 04 22 4D 18 (an LZ4 frame) or 5x 2A 4D 18 (a skippable frame)
 * make the reader an LZ4F decompressor; anything else, or an input shorter than four bytes, is
 * passed through as it is. Compressed bytes go through a 64 KiB buffer into LZ4F_decompress,
 * which writes straight into the caller's buffer. `off` counts the compressed bytes handed to
 * liblz4, so an error names the offset at which it was detected.
 */
#include <errno.h>
#include <fcntl.h>
#include <lz4frame.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "reader.h"

#define IN_SIZE (64 * 1024)

enum { M_DETECT = 0, M_PLAIN, M_LZ4 };

struct sl_reader {
  int fd;
  bool owns_fd;       /* opened here (closed by sl_reader_free) */
  bool regular;       /* a regular file: reads never wait */
  char name[300];     /* for messages */
  int mode;           /* M_* */
  char *in;           /* raw bytes read and not yet used: in[start, end) */
  size_t start, end;
  bool eof;           /* the descriptor reported the end */
  uint64_t off;       /* raw bytes used so far (the offset of in[start]) */
  LZ4F_dctx *dctx;    /* M_LZ4 */
  size_t hint;        /* LZ4F's last return: 0 when the last frame is complete */
};

static int open_fd(int fd, bool owns, const char *name, sl_reader **out, sl_error_t *err) {
  sl_reader *r = sl__xcalloc(1, sizeof *r);
  r->fd = fd;
  r->owns_fd = owns;
  snprintf(r->name, sizeof r->name, "%s", name);
  struct stat sb;
  r->regular = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode);
  r->in = sl__trymalloc(IN_SIZE);
  if (!r->in) {
    sl_reader_free(r);
    return sl_error_set(err, SL_ENOMEM, NULL, "out of memory opening %s", name);
  }
  *out = r;
  return 0;
}

int sl_reader_open(const char *path, sl_reader **out, sl_error_t *err) {
  *out = NULL;
  if (!path || strcmp(path, "-") == 0) return open_fd(STDIN_FILENO, false, "standard input", out, err);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return sl_error_set(err, SL_EIO, NULL, "cannot open '%s': %s", path, strerror(e));
  }
  char name[300];
  snprintf(name, sizeof name, "'%s'", path);
  int rc = open_fd(fd, true, name, out, err);
  if (rc) close(fd);
  return rc;
}

int sl_reader_from_fd(int fd, const char *name, sl_reader **out, sl_error_t *err) {
  *out = NULL;
  return open_fd(fd, false, name, out, err);
}

void sl_reader_free(sl_reader *r) {
  if (!r) return;
  if (r->owns_fd && r->fd >= 0) close(r->fd);
  if (r->dctx) LZ4F_freeDecompressionContext(r->dctx);
  sl__free(r->in);
  sl__free(r);
}

int sl_reader_fd(const sl_reader *r) { return r->fd; }
const char *sl_reader_name(const sl_reader *r) { return r->name; }
bool sl_reader_lz4(const sl_reader *r) { return r->mode == M_LZ4; }

/* One read(2) into dst: > 0 bytes, 0 at the end, SL_EAGAIN when a pipe has nothing now, or SL_EIO. */
static long read_fd(sl_reader *r, char *dst, size_t cap, sl_error_t *err) {
  if (!r->regular) {
    struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
    int ready;
    while ((ready = poll(&pfd, 1, 0)) < 0 && errno == EINTR) {}
    if (ready == 0) return SL_EAGAIN;
  }
  for (;;) {
    ssize_t n = read(r->fd, dst, cap);
    if (n >= 0) return (long)n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return SL_EAGAIN;
    int e = errno;
    return sl_error_set(err, SL_EIO, NULL, "cannot read %s: %s", r->name, strerror(e));
  }
}

/* Reads more raw bytes into in[] (compacting it first). 0 or SL_EAGAIN / SL_EIO. */
static int fill(sl_reader *r, sl_error_t *err) {
  if (r->start > 0) {
    memmove(r->in, r->in + r->start, r->end - r->start);
    r->end -= r->start;
    r->start = 0;
  }
  long n = read_fd(r, r->in + r->end, IN_SIZE - r->end, err);
  if (n < 0) return (int)n;
  if (n == 0) r->eof = true;
  r->end += (size_t)n;
  return 0;
}

bool sl_reader_regular(const sl_reader *r) { return r->regular; }

bool sl_lz4_magic(const unsigned char *p) {
  if (p[2] != 0x4D || p[3] != 0x18) return false;
  return (p[0] == 0x04 && p[1] == 0x22) || ((p[0] & 0xF0) == 0x50 && p[1] == 0x2A); /* frame, skippable */
}

static int detect(sl_reader *r, sl_error_t *err) {
  while (r->end - r->start < 4 && !r->eof) {
    int rc = fill(r, err);
    if (rc) return rc;
  }
  r->mode = M_PLAIN;
  if (r->end - r->start >= 4 && sl_lz4_magic((const unsigned char *)r->in + r->start)) {
    LZ4F_errorCode_t e = LZ4F_createDecompressionContext(&r->dctx, LZ4F_VERSION);
    if (LZ4F_isError(e)) return sl_error_set(err, SL_ENOMEM, NULL, "cannot read %s: %s", r->name, LZ4F_getErrorName(e));
    r->mode = M_LZ4;
    r->hint = 1; /* a frame has begun */
  }
  return 0;
}

static long read_lz4(sl_reader *r, char *buf, size_t cap, sl_error_t *err) {
  for (;;) {
    if (r->start == r->end) {
      if (r->eof) {
        if (r->hint == 0) return 0;
        return sl_error_set(err, SL_EDATA, NULL,
                            "truncated lz4 frame in %s: the input ends at byte %llu inside a frame",
                            r->name, (unsigned long long)r->off);
      }
      int rc = fill(r, err);
      if (rc) return rc;
      continue;
    }
    if (r->hint == 0) { /* a frame ended: only another frame may follow */
      if (r->end - r->start < 4 && !r->eof) {
        int rc = fill(r, err);
        if (rc) return rc;
        continue;
      }
      if (r->end - r->start < 4 || !sl_lz4_magic((const unsigned char *)r->in + r->start))
        return sl_error_set(err, SL_EDATA, NULL,
                            "corrupt lz4 data in %s at byte %llu: what follows the frame that ends there is not an lz4 frame",
                            r->name, (unsigned long long)r->off);
      r->hint = 1;
    }
    size_t src = r->end - r->start, dst = cap;
    size_t ret = LZ4F_decompress(r->dctx, buf, &dst, r->in + r->start, &src, NULL);
    if (LZ4F_isError(ret))
      return sl_error_set(err, SL_EDATA, NULL, "corrupt lz4 data in %s at byte %llu: %s", r->name,
                          (unsigned long long)(r->off + src), LZ4F_getErrorName(ret));
    r->start += src;
    r->off += src;
    r->hint = ret;
    if (dst > 0) return (long)dst;
  }
}

long sl_reader_read(sl_reader *r, char *buf, size_t cap, sl_error_t *err) {
  if (cap == 0) return sl_error_set(err, SL_EINVAL, NULL, "sl_reader_read: no room");
  if (r->mode == M_DETECT) {
    int rc = detect(r, err);
    if (rc) return rc;
  }
  if (r->mode == M_LZ4) return read_lz4(r, buf, cap, err);
  if (r->start < r->end) { /* what detection read first */
    size_t n = r->end - r->start < cap ? r->end - r->start : cap;
    memcpy(buf, r->in + r->start, n);
    r->start += n;
    r->off += n;
    return (long)n;
  }
  if (r->eof) return 0;
  long n = read_fd(r, buf, cap, err);
  if (n > 0) r->off += (uint64_t)n;
  if (n == 0) r->eof = true;
  return n;
}

int sl_reader_fill(sl_reader *r, sl_stage *st, char *buf, size_t *start, size_t *end, size_t cap, bool *eof) {
  if (*start > 0) {
    memmove(buf, buf + *start, *end - *start);
    *end -= *start;
    *start = 0;
  }
  sl_error_t err;
  long n = *end < cap ? sl_reader_read(r, buf + *end, cap - *end, &err) : 0;
  if (*end == cap) return sl_stage_fail(st, "reading %s: the buffer is full", r->name);
  if (n == SL_EAGAIN) {
    if (sl_stage_watch_fd(st, r->fd, false, 0) != 0) return sl_stage_fail(st, "cannot watch %s for input", r->name);
    return SL_PARKED;
  }
  if (n < 0) return sl_stage_fail(st, "%s", err.msg);
  if (n == 0) *eof = true;
  *end += (size_t)n;
  return 0;
}
