/*
 * lz4_handoff.c — what it costs liblz4 to decompress into buffers that another thread reads next
 * (issue 6: why restore at workers=1 stays near 88% of "the libraries alone").
 *
 *   bench_lz4_handoff [FILE] [--runs R]    FILE: text to cut into 1 MiB chunks (default: 256 MiB of
 *                                          access-log text from bench_protect --make, beside this
 *                                          program; removed afterwards)
 *
 * The chunks are compressed once (LZ4F, 1 MiB blocks, content checksum on: the compress stage's
 * settings). Then each variant decompresses all of them, and only the LZ4F_decompress calls are
 * timed (CPU of the decompressing thread, medians of R runs):
 *
 *   one warm buffer            what bench_protect's "libraries alone" row does
 *   6 / 20 buffers in turn     more output buffers than the core's caches keep warm
 *   6 buffers, read by thread  each filled buffer goes to a second thread that reads it (memcpy)
 *                              before it is filled again: the I/O thread's hand-off, without I/O
 *   6 buffers, write() by thread   the same, the second thread write(2)s it to a file, as the
 *                              engine's I/O thread does in a restore at workers=1
 *
 * A buffer the other core read last must be fetched back from that core's cache before it is
 * written again; the variants show how much of lz4's speed that costs on this machine.
 */
#include <fcntl.h>
#include <libgen.h>
#include <lz4frame.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1 << 20)
#define RING 6 /* about what a restore at workers=1 keeps in flight */

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The ring between the decompressing thread and the reader: slot k is full or free. */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  char *buf[RING];
  size_t len[RING];
  bool full[RING];
  size_t nchunks;
  int fd; /* < 0: the reader copies the bytes instead of writing them */
} ring = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void wait_slot(int k, bool full) {
  pthread_mutex_lock(&ring.mu);
  while (ring.full[k] != full) pthread_cond_wait(&ring.cv, &ring.mu);
  pthread_mutex_unlock(&ring.mu);
}

static void set_slot(int k, bool full) {
  pthread_mutex_lock(&ring.mu);
  ring.full[k] = full;
  pthread_cond_broadcast(&ring.cv);
  pthread_mutex_unlock(&ring.mu);
}

static void *reader(void *arg) {
  char *sink = arg;
  for (size_t i = 0; i < ring.nchunks; i++) {
    int k = (int)(i % RING);
    wait_slot(k, true);
    if (ring.fd >= 0) {
      for (size_t off = 0; off < ring.len[k];) {
        ssize_t w = write(ring.fd, ring.buf[k] + off, ring.len[k] - off);
        if (w <= 0) abort();
        off += (size_t)w;
      }
    } else {
      memcpy(sink, ring.buf[k], ring.len[k]);
    }
    set_slot(k, false);
  }
  return NULL;
}

/* FILE's bytes, mapped read-only (NULL on failure). */
static char *map_file(const char *path, size_t *n) {
  int fd = open(path, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0) {
    if (fd >= 0) close(fd);
    return NULL;
  }
  void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  close(fd);
  *n = (size_t)st.st_size;
  return p == MAP_FAILED ? NULL : p;
}

/* Writes `bytes` into path and removes it, so the timed writes find just-freed page cache (as
 * bench_protect's prime does, for the same reason: this VM's fresh pages cost ~10x). */
static void prime(const char *path, const char *data, size_t bytes) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) abort();
  for (size_t off = 0; off < bytes; off += CHUNK)
    if (write(fd, data, bytes - off < CHUNK ? bytes - off : CHUNK) <= 0) abort();
  close(fd);
  unlink(path);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  const char *path = NULL;
  int runs = 5;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
    else if (argv[i][0] != '-') path = argv[i];
    else {
      fputs("usage: bench_lz4_handoff [FILE] [--runs R]\n", strcmp(argv[i], "--help") ? stderr : stdout);
      return strcmp(argv[i], "--help") ? 2 : 0;
    }
  }
  if (runs < 1 || runs > 15) runs = 5;
  char made[512] = "", out[512], cmd[1200];
  snprintf(out, sizeof out, "/tmp/sluice-bench-handoff-%d.out", (int)getpid());
  if (!path) {
    char self[512];
    snprintf(self, sizeof self, "%s", argv[0]);
    snprintf(made, sizeof made, "/tmp/sluice-bench-handoff-%d.txt", (int)getpid());
    snprintf(cmd, sizeof cmd, "'%s/bench_protect' --make '%s' 256", dirname(self), made);
    if (system(cmd) != 0) {
      fprintf(stderr, "bench_lz4_handoff: could not run %s (give a FILE instead)\n", cmd);
      return 1;
    }
    path = made;
  }
  size_t n;
  char *data = map_file(path, &n);
  if (!data) {
    fprintf(stderr, "bench_lz4_handoff: cannot read %s (or it is empty)\n", path);
    return 1;
  }
  size_t nchunks = (n + CHUNK - 1) / CHUNK;
  LZ4F_preferences_t prefs = {0};
  prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
  prefs.frameInfo.blockSizeID = LZ4F_max1MB;
  size_t cap = LZ4F_compressFrameBound(CHUNK, &prefs);
  char **z = malloc(nchunks * sizeof *z);
  size_t *zl = malloc(nchunks * sizeof *zl);
  for (size_t i = 0; i < nchunks; i++) {
    size_t clen = n - i * CHUNK < CHUNK ? n - i * CHUNK : CHUNK;
    z[i] = malloc(cap);
    zl[i] = LZ4F_compressFrame(z[i], cap, data + i * CHUNK, clen, &prefs);
    if (LZ4F_isError(zl[i])) abort();
  }
  LZ4F_dctx *dctx;
  LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION);
  char *bufs[20], *sink = malloc(CHUNK);
  for (int k = 0; k < 20; k++) bufs[k] = calloc(1, CHUNK);
  memset(sink, 0, CHUNK);

  static const struct {
    const char *name;
    int nbufs, handoff; /* 0: none, 1: a thread reads, 2: a thread write()s */
  } variants[] = {{"one warm buffer (libraries alone)", 1, 0},
                  {"6 buffers in turn", 6, 0},
                  {"20 buffers in turn", 20, 0},
                  {"6 buffers, each read by a second thread", RING, 1},
                  {"6 buffers, each write()n by a second thread", RING, 2}};
  printf("bench_lz4_handoff: %.0f MB in %zu chunks of 1 MiB, median of %d run(s); CPU s of the decompressing thread\n",
         (double)n / 1e6, nchunks, runs);
  double base = 0;
  for (size_t v = 0; v < sizeof variants / sizeof *variants; v++) {
    double t[15];
    for (int r = 0; r < runs; r++) {
      pthread_t th;
      ring.nchunks = nchunks;
      ring.fd = -1;
      for (int k = 0; k < RING; k++) ring.buf[k] = bufs[k], ring.full[k] = false;
      if (variants[v].handoff == 2) {
        prime(out, data, n);
        ring.fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (ring.fd < 0) abort();
      }
      if (variants[v].handoff) pthread_create(&th, NULL, reader, sink);
      double spent = 0;
      for (size_t i = 0; i < nchunks; i++) {
        int k = (int)(i % (size_t)variants[v].nbufs);
        if (variants[v].handoff) wait_slot(k, false);
        size_t o = CHUNK, in = zl[i];
        double t0 = cpu_now();
        size_t rc = LZ4F_decompress(dctx, bufs[k], &o, z[i], &in, NULL);
        spent += cpu_now() - t0;
        if (LZ4F_isError(rc) || rc != 0) abort();
        ring.len[k] = o;
        if (variants[v].handoff) set_slot(k, true);
      }
      if (variants[v].handoff) pthread_join(th, NULL);
      if (ring.fd >= 0) close(ring.fd), unlink(out);
      t[r] = spent;
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_d);
    double med = t[runs / 2];
    if (v == 0) base = med;
    printf("  %-46s %6.3f s %6.0f MB/s  %4.0f%%\n", variants[v].name, med, (double)n / 1e6 / med, 100 * base / med);
  }
  for (size_t i = 0; i < nchunks; i++) free(z[i]);
  for (int k = 0; k < 20; k++) free(bufs[k]);
  free(z), free(zl), free(sink);
  munmap(data, n);
  LZ4F_freeDecompressionContext(dctx);
  if (made[0]) unlink(made);
  return 0;
}
