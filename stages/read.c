/* read — a file (or standard input) as fixed-size byte chunks, the input of binary pipelines.
 *
 * Each record is a map {data, index, offset, last}: `size` bytes of the file (the final chunk
 * may be shorter), the chunk's number from 0, its byte offset, and `last: true` on the final
 * chunk only. An empty file gives one empty chunk with `last: true`, so a stream always has a
 * final chunk (encrypt relies on it to seal the end of the stream). To know that a chunk is
 * the last one, the source reads one chunk ahead. Pipes are read when they are readable (the
 * event loop watches them), so a quiet pipe holds no worker. A regular file read in chunks of
 * ASYNC_AT bytes or more is read on the engine's I/O thread (vm/bio.h; inline when the workers
 * fill the CPUs), READS_AHEAD chunks ahead: the kernel's copy out of the page cache is not the
 * worker's time (protect on 1 worker spent ~8% of it there).
 *
 * Read-ahead. Reading from the page cache is ten times faster than compressing or sealing, so
 * left to the queues the source would read up to 1024 chunks (1 GiB of 1 MiB chunks) ahead of
 * the stages behind it: every chunk a fresh allocation whose pages fault in, cold in the caches
 * by the time a worker gets to it. Instead the source keeps a reference to the bytes of every
 * chunk it emitted and reads a new chunk only while fewer than `window` of them are still
 * referenced downstream (option `ahead`; by default a batch per CPU and one more: every worker
 * has a batch to work on and the next one is ready). A chunk is done when the stage that consumes its bytes let them go
 * (compress replaces them, a sink wrote them): the allocator then hands the same warm memory to
 * the next chunk (protect, 256 MiB on 1 worker: 69,000 page faults down to ~7,000). Nothing
 * tells the source when a chunk is let go, so while the window is full it looks again every
 * POLL_NS. A stage that holds chunks back (chunks, reduce, a collect sink nobody pulls yet)
 * would keep the window shut: when none was let go for STALL_NS, the window doubles. Unlike
 * ack tokens, this never makes the end of the pipeline wait for its sinks. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define POLL_NS 1000000    /* 1 ms: how often a source with a full window looks again */
#define STALL_NS 100000000 /* 100 ms: a full window that long without a chunk let go doubles */
#define MAX_WINDOW (1u << 20)

#include "bio.h"
#include "crypt.h"
#include "sluice.h"

typedef struct readf {
  char *path;       /* option: the file, or "-" for standard input */
  int64_t size;     /* option: bytes per chunk */
  int64_t ahead;    /* option: the window (0: auto) */
  int fd;
  bool owns_fd;     /* we opened it */
  bool regular;     /* a regular file: reads never wait */
  bool eof;         /* the file is exhausted */
  bool done;        /* the last chunk was emitted */
  sl_value next;    /* the chunk being filled (a string of `size` bytes) */
  char *next_data;  /* its bytes */
  size_t fill;      /* bytes of it read so far */
  bool have_next;
  sl_value ready;   /* a complete chunk waiting to learn whether it is the last one */
  bool have_ready;
  int64_t index;    /* index of `ready` */
  int64_t offset;   /* offset of `ready` */
  sl_stage *st;
  sl_bio_file *bio; /* a regular file's reads through the I/O thread (chunks of ASYNC_AT or more) */
  sl_value *held;   /* the bytes of chunks emitted, one reference each (see the top) */
  uint32_t nheld;
  uint32_t window;  /* the most chunks whose bytes are referenced downstream */
  int64_t full_since; /* engine time the window was found full with nothing let go, or -1 */
  bool polling;     /* the poll timer is armed */
} readf;

static const sl_option options[] = {
    {SL_OPT_STRING, "path", "-", offsetof(readf, path), "the file to read; - for standard input", NULL, SL_OPT_PRIMARY},
    {SL_OPT_SIZE, "size", "1MiB", offsetof(readf, size), "bytes per chunk (the last chunk may be shorter)", NULL, 0},
    {SL_OPT_INT, "ahead", "0", offsetof(readf, ahead),
     "the most chunks read ahead of the stages that use their bytes (0: a batch of chunks per CPU and one more; grows when a stage holds chunks back)", NULL, 0},
    SL_OPTIONS_END,
};

#define MAX_SIZE (1LL << 30)

/* Bytes of chunks per batch at most: batches are the unit parallel stages share out, so big
 * chunks go a few at a time (1 MiB chunks: 4 a batch) and every worker gets some. */
#define BATCH_BYTES (4 << 20)
#define POLL_TOKEN 1 /* the poll timer's token (fd watches use 0) */
#define BIO_TOKEN 2  /* a read finished */
#define ASYNC_AT (64 * 1024) /* chunks this big are read on the I/O thread */
#define READS_AHEAD 2        /* reads queued there, or finished and not taken yet */

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  readf *r = ctx;
  r->st = st;
  r->fd = -1;
  if (r->size < 1 || r->size > MAX_SIZE)
    return sl_error_set(err, SL_ECONFIG, NULL, "size must be from 1 byte to 1GiB (got %lld)", (long long)r->size);
  if (r->ahead < 0 || r->ahead > MAX_WINDOW) return sl_error_set(err, SL_ECONFIG, NULL, "ahead must be from 0 (auto) to %u chunks", MAX_WINDOW);
  if (strcmp(r->path, "-") == 0) {
    r->fd = STDIN_FILENO;
  } else {
    r->fd = open(r->path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
      int e = errno;
      return sl_error_set(err, SL_EIO, NULL, "cannot open '%s': %s", r->path, strerror(e));
    }
    r->owns_fd = true;
  }
  struct stat sb;
  r->regular = fstat(r->fd, &sb) == 0 && S_ISREG(sb.st_mode);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int64_t per_batch = r->size >= BATCH_BYTES ? 1 : BATCH_BYTES / r->size;
  if (per_batch > 256) per_batch = 256; /* a batch holds at most 256 records */
  int64_t w = r->ahead ? r->ahead : ((cpus > 1 ? cpus : 1) + 1) * per_batch;
  r->window = (uint32_t)(w < MAX_WINDOW ? w : MAX_WINDOW);
  r->held = malloc(r->window * sizeof *r->held);
  r->full_since = -1;
  if (r->regular && r->size >= ASYNC_AT) r->bio = sl_bio_open(st, r->fd, BIO_TOKEN);
  return r->held ? 0 : SL_ENOMEM;
}

static const char *name_of(const readf *r) { return r->owns_fd ? r->path : "standard input"; }

/* The record of chunk `ready`. */
static int emit_ready(readf *r, sl_emitter *em, bool last) {
  if (sl_bytes_heap(&r->ready)) { /* short chunks live inside their value: nothing to hold */
    if (r->nheld == r->window) { /* the last chunk may pass the window by one */
      sl_value *h = realloc(r->held, (r->window + 1) * sizeof *h);
      if (!h) return SL_ENOMEM;
      r->held = h;
    }
    r->held[r->nheld++] = sl_value_ref(&r->ready);
  }
  sl_value m = sl_map(4);
  sl_map_setc(&m, "data", r->ready);
  sl_map_setc(&m, "index", sl_int(r->index));
  sl_map_setc(&m, "offset", sl_int(r->offset));
  sl_map_setc(&m, "last", sl_bool(last));
  r->have_ready = false;
  r->ready = sl_nil();
  return sl_emit(em, SL_NO_ORIGIN, m);
}

/* Fills `next` from the I/O thread, which keeps READS_AHEAD chunks read ahead of us. Returns
 * 0 (full, or eof), SL_PARKED (its post runs produce again) or < 0. */
static int fill_behind(readf *r) {
  while (!r->eof && sl_bio_reads(r->bio) < READS_AHEAD) {
    sl_value v;
    char *data;
    if (sl_bytes_new((size_t)r->size, &v, &data) != 0) return SL_ENOMEM;
    sl_bio_read(r->bio, v, data, (size_t)r->size, -1);
  }
  size_t got;
  int e;
  if (!sl_bio_take_read(r->bio, &r->next, &got, &e)) return SL_PARKED;
  r->have_next = true;
  r->next_data = (char *)sl_str_data(&r->next);
  r->fill = got;
  if (e) return sl_stage_fail(r->st, "cannot read %s: %s", name_of(r), strerror(e));
  if (got < (size_t)r->size) r->eof = true;
  return 0;
}

/* Fills `next` up to `size` bytes or the end of the file. Returns 0 (full, or eof), SL_PARKED
 * (a pipe has nothing yet, or the I/O thread's read is not done) or < 0. */
static int fill(readf *r) {
  if (r->bio && !r->have_next) return fill_behind(r);
  if (!r->have_next) {
    if (sl_bytes_new((size_t)r->size, &r->next, &r->next_data) != 0) return SL_ENOMEM;
    r->have_next = true;
    r->fill = 0;
  }
  while (r->fill < (size_t)r->size && !r->eof) {
    if (!r->regular) {
      struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
      int ready;
      while ((ready = poll(&pfd, 1, 0)) < 0 && errno == EINTR) {}
      if (ready == 0) {
        if (sl_stage_watch_fd(r->st, r->fd, false, 0) != 0) return sl_stage_fail(r->st, "cannot watch %s for input", name_of(r));
        return SL_PARKED;
      }
    }
    ssize_t n = read(r->fd, r->next_data + r->fill, (size_t)r->size - r->fill);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (sl_stage_watch_fd(r->st, r->fd, false, 0) != 0) return sl_stage_fail(r->st, "cannot watch %s for input", name_of(r));
      return SL_PARKED;
    }
    if (n < 0) return sl_stage_fail(r->st, "cannot read %s: %s", name_of(r), strerror(errno));
    if (n == 0) r->eof = true;
    r->fill += (size_t)n;
  }
  return 0;
}

/* Drops the references to chunks nobody else holds any more. Returns how many. */
static uint32_t let_go(readf *r) {
  uint32_t k = 0, n = r->nheld;
  for (uint32_t i = 0; i < n; i++) {
    if (sl_bytes_shared(&r->held[i])) r->held[k++] = r->held[i];
    else sl_value_free(r->held[i]);
  }
  r->nheld = k;
  return n - k;
}

/* Whether a chunk may be read now; if not, the poll timer is armed (or the window grown). */
static int window_open(readf *r) {
  if (let_go(r) > 0) r->full_since = -1;
  if (r->nheld < r->window) return 0;
  int64_t now = sl_stage_now(r->st);
  if (r->full_since < 0) r->full_since = now;
  if (now - r->full_since >= STALL_NS && r->window < MAX_WINDOW) { /* something holds chunks back */
    sl_value *h = realloc(r->held, 2 * (size_t)r->window * sizeof *h);
    if (!h) return SL_ENOMEM;
    r->held = h;
    r->window *= 2;
    r->full_since = -1;
    return 0;
  }
  if (!r->polling) {
    if (sl_stage_timer(r->st, now + POLL_NS, POLL_TOKEN) < 0) return sl_stage_fail(r->st, "cannot arm a timer");
    r->polling = true;
  }
  return SL_PARKED;
}

static int produce(void *ctx, sl_emitter *em) {
  readf *r = ctx;
  int open = window_open(r);
  if (open) return open;
  uint32_t room = sl_emitter_room(em);
  if ((int64_t)room * r->size > BATCH_BYTES) room = r->size >= BATCH_BYTES ? 1 : (uint32_t)(BATCH_BYTES / r->size);
  if (room > r->window - r->nheld) room = r->window - r->nheld;
  for (uint32_t emitted = 0; emitted < room && !r->done;) {
    int rc = fill(r);
    if (rc) return rc;
    if (r->fill == 0 && r->eof) { /* nothing more: `ready` (or an empty chunk) is the last */
      sl_value_free(r->next);
      r->next = sl_nil();
      r->have_next = false;
      if (!r->have_ready) {
        sl_str_try("", 0, &r->ready);
        r->have_ready = true;
      }
      r->done = true;
      return emit_ready(r, em, true) ? SL_ENOMEM : SL_DONE;
    }
    if (r->have_ready) { /* `next` has bytes, so `ready` is not the last */
      if (emit_ready(r, em, false) != 0) return SL_ENOMEM;
      emitted++;
      r->index++;
      r->offset += r->size;
    }
    if (r->fill < (size_t)r->size) { /* a short final chunk: shrink it */
      sl_value v;
      if (sl_str_try(r->next_data, r->fill, &v) != 0) return SL_ENOMEM;
      sl_value_free(r->next);
      r->next = v;
    }
    r->ready = r->next;
    r->have_ready = true;
    r->have_next = false;
    r->next = sl_nil();
    if (r->fill < (size_t)r->size) { /* eof came inside this chunk: it is the last */
      r->done = true;
      return emit_ready(r, em, true) ? SL_ENOMEM : SL_DONE;
    }
  }
  return r->done ? SL_DONE : 0;
}

/* The poll timer (token 1), a readable pipe (token 0) or a finished read (token 2): produce runs
 * next. */
static int event(void *ctx, uint64_t token, sl_emitter *em) {
  readf *r = ctx;
  if (token == POLL_TOKEN) r->polling = false;
  return 0;
}

static void destroy(void *ctx) {
  readf *r = ctx;
  sl_bio_close(r->bio); /* before its fd */
  for (uint32_t i = 0; i < r->nheld; i++) sl_value_free(r->held[i]);
  free(r->held);
  if (r->owns_fd && r->fd >= 0) close(r->fd);
  sl_value_free(r->next);
  sl_value_free(r->ready);
}

const sl_stage_kind sl_stage_read = {
    .abi = SL_STAGE_ABI,
    .name = "read",
    .doc = "reads a file in fixed-size byte chunks: {data, index, offset, last} records",
    .options = options,
    .ctx_size = sizeof(readf),
    .flags = SL_STAGE_SOURCE,
    .init = init,
    .produce = produce,
    .destroy = destroy,
    .event = event,
};
