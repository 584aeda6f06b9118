/* bio.c — the engine's blocking-I/O thread (bio.h). */
#include "bio.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "alloc.h"
#include "loop.h"
#include "pipeline.h"
#include "value.h"

enum { OP_WRITE, OP_READ };

typedef struct bio_op {
  struct bio_op *next;
  sl_bio_file *f;
  int kind;       /* OP_* */
  sl_buf buf;     /* write: bytes written first */
  sl_value val;   /* write: a string written after buf (nil: none); read: the destination */
  char *dst;      /* read: val's bytes */
  size_t bytes;   /* write: buf + val; read: wanted */
  int64_t offset; /* read: where (< 0: the file's position) */
  size_t got;     /* read: bytes read */
  int err;        /* errno, 0 ok */
} bio_op;

struct sl_bio {
  pthread_mutex_t mu;
  pthread_cond_t work; /* an operation was queued, or stop */
  pthread_cond_t done; /* an operation finished (sl_bio_close waits for its file's) */
  bio_op *head, *tail; /* queued, oldest first */
  bool stop;
  pthread_t thread;
};

struct sl_bio_file {
  sl_bio *bio;         /* NULL: operations run at once on the caller's thread */
  sl_stage *st;
  sl_loop *loop;
  int fd;
  uint64_t token;
  size_t write_bytes;  /* bytes of writes queued or under way */
  size_t nops;         /* operations queued or under way */
  size_t reads;        /* reads queued, under way, or finished and not taken */
  size_t notify_at;    /* post when write_bytes <= this; SIZE_MAX: nobody waits */
  int err;             /* errno of the first failure */
  bool closing;        /* sl_bio_close: no more posts */
  bio_op *rd_head, *rd_tail; /* finished reads, oldest first */
  sl_buf spare;        /* an emptied write buffer for the next write */
};

static void lock(sl_bio_file *f) {
  if (f->bio) pthread_mutex_lock(&f->bio->mu);
}
static void unlock(sl_bio_file *f) {
  if (f->bio) pthread_mutex_unlock(&f->bio->mu);
}

/* Writes op's buffer and string, all of them (short writes go on). */
static int do_write(int fd, bio_op *op) {
  struct iovec iov[2];
  int cnt = 0;
  if (op->buf.len) iov[cnt++] = (struct iovec){op->buf.data, op->buf.len};
  if (op->val.type == SL_TSTR && sl_str_len(&op->val))
    iov[cnt++] = (struct iovec){(void *)sl_str_data(&op->val), sl_str_len(&op->val)};
  struct iovec *v = iov;
  while (cnt > 0) {
    ssize_t w = writev(fd, v, cnt);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno;
    size_t left = (size_t)w;
    for (; cnt > 0 && left >= v->iov_len; v++, cnt--) left -= v->iov_len;
    if (cnt > 0) {
      v->iov_base = (char *)v->iov_base + left;
      v->iov_len -= left;
    }
  }
  return 0;
}

static int do_read(int fd, bio_op *op) {
  char *p = op->dst;
  while (op->got < op->bytes) {
    ssize_t n = op->offset >= 0 ? pread(fd, p + op->got, op->bytes - op->got, op->offset + (int64_t)op->got)
                                : read(fd, p + op->got, op->bytes - op->got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) break;
    op->got += (size_t)n;
  }
  return 0;
}

/* Under b->mu (b NULL: inline): op of f finished (or was dropped). Releases what a write held,
 * queues a read's result, and posts the stage when it asked for it. */
static void finished(sl_bio *b, bio_op *op) {
  sl_bio_file *f = op->f;
  if (op->err && !f->err) f->err = op->err;
  f->nops--;
  bool post = f->err && op->err;
  if (op->kind == OP_WRITE) {
    f->write_bytes -= op->bytes;
    sl_value_free(op->val);
    if (!f->spare.data && op->buf.data) {
      op->buf.len = 0;
      f->spare = op->buf;
    } else {
      sl_buf_close(&op->buf);
    }
    sl__free(op);
  } else {
    if (!op->err && f->err) op->err = f->err; /* dropped behind a failure */
    op->next = NULL;
    if (f->rd_tail) f->rd_tail->next = op;
    else f->rd_head = op;
    f->rd_tail = op;
    post = true;
  }
  if (f->notify_at != SIZE_MAX && (f->write_bytes <= f->notify_at || f->err)) {
    f->notify_at = SIZE_MAX;
    post = true;
  }
  if (!b) return; /* inline: the stage is the caller, and the virtual clock was not held */
  if (post && !f->closing) sl__stage_post(f->st, f->token);
  if (f->nops == 0) sl_loop_hold(f->loop, -1); /* after the post: the stage is runnable */
  pthread_cond_broadcast(&b->done);
}

static void run_op(bio_op *op) { op->err = op->kind == OP_WRITE ? do_write(op->f->fd, op) : do_read(op->f->fd, op); }

static void *bio_main(void *arg) {
  sl_bio *b = arg;
  pthread_mutex_lock(&b->mu);
  for (;;) {
    while (!b->head && !b->stop) pthread_cond_wait(&b->work, &b->mu);
    bio_op *op = b->head;
    if (!op) break;
    b->head = op->next;
    if (!b->head) b->tail = NULL;
    bool skip = op->f->err != 0; /* a failure stops the file */
    pthread_mutex_unlock(&b->mu);
    if (!skip) run_op(op);
    pthread_mutex_lock(&b->mu);
    finished(b, op);
  }
  pthread_mutex_unlock(&b->mu);
  return NULL;
}

sl_bio *sl_bio_new(void) {
  sl_bio *b = sl__xcalloc(1, sizeof *b);
  pthread_mutex_init(&b->mu, NULL);
  pthread_cond_init(&b->work, NULL);
  pthread_cond_init(&b->done, NULL);
  sigset_t block, old; /* like the workers, SIGPIPE blocked: a closed pipe is EPIPE, not death */
  sigemptyset(&block);
  sigaddset(&block, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  int rc = pthread_create(&b->thread, NULL, bio_main, b);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->work);
    pthread_cond_destroy(&b->done);
    sl__free(b);
    return NULL;
  }
  return b;
}

void sl_bio_free(sl_bio *b) {
  if (!b) return;
  pthread_mutex_lock(&b->mu);
  b->stop = true;
  pthread_cond_signal(&b->work);
  pthread_mutex_unlock(&b->mu);
  pthread_join(b->thread, NULL);
  pthread_mutex_destroy(&b->mu);
  pthread_cond_destroy(&b->work);
  pthread_cond_destroy(&b->done);
  sl__free(b);
}

static void drop_queued(sl_bio_file *f);

/* The I/O thread pays only when the workers leave it a CPU. With a worker on every CPU the copy
 * would just take turns with them, plus the hand-offs: restore on 2 workers and 2 CPUs made
 * 1,480-1,570 MB/s through the thread against 1,900-1,950 inline (bench_protect). */
static bool spare_cpu(const sl_engine *e) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  return cpus > e->cfg.workers;
}

sl_bio_file *sl_bio_open(sl_stage *st, int fd, uint64_t token) {
  sl_bio_file *f = sl__xcalloc(1, sizeof *f);
  f->bio = spare_cpu(st->p->e) ? sl__engine_bio(st->p->e) : NULL; /* NULL (or no thread): inline */
  f->st = st;
  f->loop = st->p->e->loop;
  f->fd = fd;
  f->token = token;
  f->notify_at = SIZE_MAX;
  sl_buf_init(&f->spare);
  return f;
}

void sl_bio_close(sl_bio_file *f) {
  if (!f) return;
  sl_bio *b = f->bio;
  if (b) drop_queued(f);
  for (bio_op *op = f->rd_head, *next; op; op = next) {
    next = op->next;
    sl_value_free(op->val);
    sl__free(op);
  }
  sl_buf_close(&f->spare);
  sl__free(f);
}

/* Cancels f's operations that were not started and waits for the one under way. */
static void drop_queued(sl_bio_file *f) {
  sl_bio *b = f->bio;
  pthread_mutex_lock(&b->mu);
  f->closing = true;
  bio_op **pp = &b->head, *last = NULL;
  while (*pp) { /* what was not started is dropped */
    bio_op *op = *pp;
    if (op->f != f) {
      last = op;
      pp = &op->next;
      continue;
    }
    *pp = op->next;
    if (!f->err) f->err = ECANCELED;
    finished(b, op);
  }
  b->tail = last;
  while (f->nops) pthread_cond_wait(&b->done, &b->mu);
  pthread_mutex_unlock(&b->mu);
}

static void enqueue(sl_bio_file *f, bio_op *op) {
  sl_bio *b = f->bio;
  op->f = f;
  if (!b) { /* inline */
    f->nops++;
    if (op->kind == OP_WRITE) f->write_bytes += op->bytes;
    else f->reads++;
    if (!f->err) run_op(op);
    finished(NULL, op);
    return;
  }
  pthread_mutex_lock(&b->mu);
  if (f->nops++ == 0) sl_loop_hold(f->loop, 1); /* the virtual clock waits for the file */
  if (op->kind == OP_WRITE) f->write_bytes += op->bytes;
  else f->reads++;
  if (b->tail) b->tail->next = op;
  else b->head = op;
  b->tail = op;
  pthread_cond_signal(&b->work);
  pthread_mutex_unlock(&b->mu);
}

void sl_bio_write(sl_bio_file *f, sl_buf *buf, const sl_value *tail) {
  bio_op *op = sl__xcalloc(1, sizeof *op);
  op->kind = OP_WRITE;
  op->buf = *buf;
  op->val = tail ? sl_value_ref(tail) : sl_nil();
  op->bytes = buf->len + (tail && tail->type == SL_TSTR ? sl_str_len(tail) : 0);
  lock(f);
  *buf = f->spare; /* the emptied buffer of an earlier write, or nothing */
  sl_buf_init(&f->spare);
  unlock(f);
  enqueue(f, op);
}

void sl_bio_read(sl_bio_file *f, sl_value into, char *dst, size_t want, int64_t offset) {
  bio_op *op = sl__xcalloc(1, sizeof *op);
  op->kind = OP_READ;
  op->val = into;
  op->dst = dst;
  op->bytes = want;
  op->offset = offset;
  enqueue(f, op);
}

bool sl_bio_take_read(sl_bio_file *f, sl_value *into, size_t *got, int *err) {
  lock(f);
  bio_op *op = f->rd_head;
  if (op) {
    f->rd_head = op->next;
    if (!f->rd_head) f->rd_tail = NULL;
    f->reads--;
  }
  unlock(f);
  if (!op) return false;
  *into = op->val;
  *got = op->got;
  *err = op->err;
  sl__free(op);
  return true;
}

size_t sl_bio_reads(sl_bio_file *f) {
  lock(f);
  size_t n = f->reads;
  unlock(f);
  return n;
}

bool sl_bio_wait_below(sl_bio_file *f, size_t level) {
  lock(f);
  bool ok = f->write_bytes <= level || f->err;
  f->notify_at = ok ? SIZE_MAX : level;
  unlock(f);
  return ok;
}

int sl_bio_error(sl_bio_file *f) {
  lock(f);
  int e = f->err;
  unlock(f);
  return e;
}
