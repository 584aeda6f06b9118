/*
 * protect.c — protect and restore throughput (issue 6): a file of access-log text is read in
 * 1 MiB chunks → compress → encrypt → frames, and back (frames → decrypt → decompress → raw),
 * at workers 1 and 2, against what the libraries reach alone on the same chunks (LZ4F + OpenSSL
 * AES-256-GCM on one core, no engine: the libraries the stages use) and against `lz4 -1 -c | openssl enc -aes-256-ctr -pbkdf2`
 * (and back) in the same run.
 *
 *   bench_protect [MiB] [--runs R] [--dir D]     (default 256 MiB, 1 run; 1024 for the real run)
 *   bench_protect --make FILE MiB                 writes the access-log text (what bench/run uses)
 *   bench_protect --libs FILE seal|open           the libraries alone on FILE's chunks: one
 *                                                 "BENCH {json}" line with the seconds of that half
 *                                                 and the MB/s of plaintext of lz4 and of GCM apart
 *
 * Prints MB/s of input (plaintext) bytes per second; medians of R runs. The key comes from
 * key_env (no KDF: the passphrase's Argon2id is a one-time ~0.3 s, not throughput).
 */
#include <fcntl.h>
#include <lz4frame.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sluice.h"

#define CHUNK (1 << 20)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Access-log lines (~100 bytes, the mix of a busy web server) into path, mib MiB. */
static void make_log(const char *path, size_t mib) {
  static const char *const paths[] = {"/index.html", "/api/v1/users", "/api/v1/orders?page=2", "/static/app.js",
                                      "/static/style.css", "/login", "/images/logo.png", "/api/v1/search?q=boots"};
  static const char *const agents[] = {"Mozilla/5.0 (X11; Linux x86_64)", "curl/7.88.1", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)",
                                       "python-requests/2.31"};
  static const int status[] = {200, 200, 200, 200, 304, 404, 500, 503};
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  uint64_t x = 88172645463325252ull, bytes = 0, want = (uint64_t)mib << 20;
  char line[512];
  for (uint64_t i = 0; bytes < want; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int n = snprintf(line, sizeof line, "10.%u.%u.%u - - [21/Nov/2026:%02u:%02u:%02u +0000] \"GET %s HTTP/1.1\" %d %u \"%s\"\n",
                     (unsigned)(x >> 8 & 255), (unsigned)(x >> 16 & 255), (unsigned)(x >> 24 & 255), (unsigned)(i / 3600000 % 24),
                     (unsigned)(i / 60000 % 60), (unsigned)(i / 1000 % 60), paths[x >> 32 & 7], status[x >> 40 & 7],
                     (unsigned)(x >> 44 & 0xffff), agents[x >> 60 & 3]);
    if (bytes + (uint64_t)n > want) n = (int)(want - bytes);
    fwrite(line, 1, (size_t)n, f);
    bytes += (uint64_t)n;
  }
  fclose(f);
}

/* CPU seconds (user + system) of this process (who = RUSAGE_SELF: the engine's threads count)
 * or of its waited-for children (RUSAGE_CHILDREN: the shell pipelines). Load from other
 * programs on the machine stretches wall time but hardly CPU time. */
static double cpu_s(int who) {
  struct rusage ru;
  getrusage(who, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc(*n ? *n : 1);
  if (fread(b, 1, *n, f) != *n) abort();
  fclose(f);
  return b;
}

/* Seconds of each library call in libs_alone (lz4 and AES-GCM apart, for bench/run). */
static double lz4_s, lz4d_s, gcm_s, gcmd_s;

static void prime(const char *out, size_t bytes);

/* Where libs_alone reads and writes when it does the file I/O too: the plain input, the sealed
 * file it writes and reads back, the restored file (each written to path.tmp, then renamed, as
 * the file sink does). */
typedef struct {
  const char *in, *sealed, *back;
} file_io;

static int open_tmp(const char *path, char *tmp, size_t cap) {
  snprintf(tmp, cap, "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) abort();
  return fd;
}

static void write_all(int fd, const void *p, size_t n) {
  for (size_t off = 0; off < n;) {
    ssize_t w = write(fd, (const char *)p + off, n - off);
    if (w <= 0) abort();
    off += (size_t)w;
  }
}

static void read_all(int fd, void *p, size_t n) {
  for (size_t off = 0; off < n;) {
    ssize_t r = read(fd, (char *)p + off, n - off);
    if (r <= 0) abort();
    off += (size_t)r;
  }
}

/* The libraries alone, one core, the same chunks and settings as the stages. Returns seconds
 * for compress+seal (*seal_s) and open+decompress (*open_s), and their CPU seconds in cpu[0]
 * and cpu[1]. With io, the same loop also reads
 * its input from a file and writes its output to one, with plain read(2)/write(2) on the same
 * thread: what any one-core program that protects or restores a file cannot do without. */
static void libs_alone(const char *data, size_t n, const file_io *io, double *seal_s, double *open_s, double cpu[2]) {
  LZ4F_cctx *cctx;
  LZ4F_dctx *dctx;
  LZ4F_createCompressionContext(&cctx, LZ4F_VERSION);
  LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION);
  LZ4F_preferences_t prefs = {0};
  prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
  prefs.frameInfo.blockSizeID = LZ4F_max1MB;
  size_t cap = LZ4F_HEADER_SIZE_MAX + LZ4F_compressBound(CHUNK, &prefs);
  size_t nchunks = (n + CHUNK - 1) / CHUNK;
  char **z = calloc(nchunks, sizeof *z);
  size_t *zl = calloc(nchunks, sizeof *zl);
  char *tmp = malloc(cap), *plain = malloc(CHUNK), *sealed = malloc(cap + 16), tmpname[600];
  unsigned char key[32] = {1}, iv[12] = {2};
  EVP_CIPHER_CTX *gcm = EVP_CIPHER_CTX_new();
  EVP_CipherInit_ex(gcm, EVP_aes_256_gcm(), NULL, key, NULL, 1);
  int len, ifd = -1, ofd = -1;
  if (io) prime(io->sealed, n / 4);
  double t0 = now(), c0 = cpu_s(RUSAGE_SELF);
  if (io) ifd = open(io->in, O_RDONLY), ofd = open_tmp(io->sealed, tmpname, sizeof tmpname);
  for (size_t i = 0; i < nchunks; i++) {
    size_t clen = n - i * CHUNK < CHUNK ? n - i * CHUNK : CHUNK;
    const char *src = data + i * CHUNK;
    if (io) read_all(ifd, plain, clen), src = plain;
    prefs.frameInfo.contentSize = clen;
    double t1 = now();
    size_t h = LZ4F_compressBegin(cctx, tmp, cap, &prefs);
    h += LZ4F_compressUpdate(cctx, tmp + h, cap - h, src, clen, NULL);
    h += LZ4F_compressEnd(cctx, tmp + h, cap - h, NULL);
    z[i] = io ? sealed : malloc(h + 16);
    iv[11] = (unsigned char)i;
    double t2 = now();
    EVP_CipherInit_ex(gcm, NULL, NULL, NULL, iv, 1);
    EVP_CipherUpdate(gcm, (unsigned char *)z[i], &len, (unsigned char *)tmp, (int)h);
    EVP_CipherFinal_ex(gcm, (unsigned char *)z[i] + h, &len);
    EVP_CIPHER_CTX_ctrl(gcm, EVP_CTRL_GCM_GET_TAG, 16, z[i] + h);
    if (io) write_all(ofd, z[i], h + 16), z[i] = NULL;
    else lz4_s += t2 - t1, gcm_s += now() - t2;
    zl[i] = h;
  }
  if (io) close(ifd), close(ofd), rename(tmpname, io->sealed);
  *seal_s = now() - t0;
  cpu[0] = cpu_s(RUSAGE_SELF) - c0;
  if (io) prime(io->back, n);
  t0 = now(), c0 = cpu_s(RUSAGE_SELF);
  if (io) ifd = open(io->sealed, O_RDONLY), ofd = open_tmp(io->back, tmpname, sizeof tmpname);
  for (size_t i = 0; i < nchunks; i++) {
    const char *src = z[i];
    if (io) read_all(ifd, sealed, zl[i] + 16), src = sealed;
    iv[11] = (unsigned char)i;
    double t1 = now();
    EVP_CipherInit_ex(gcm, NULL, NULL, NULL, iv, 0);
    EVP_CipherUpdate(gcm, (unsigned char *)tmp, &len, (const unsigned char *)src, (int)zl[i]);
    EVP_CIPHER_CTX_ctrl(gcm, EVP_CTRL_GCM_SET_TAG, 16, (void *)(src + zl[i]));
    if (EVP_CipherFinal_ex(gcm, (unsigned char *)tmp + zl[i], &len) != 1) abort();
    double t2 = now();
    size_t out = CHUNK, in = zl[i];
    LZ4F_decompress(dctx, plain, &out, tmp, &in, NULL);
    if (io) write_all(ofd, plain, out);
    else gcmd_s += t2 - t1, lz4d_s += now() - t2;
  }
  if (io) close(ifd), close(ofd), rename(tmpname, io->back);
  *open_s = now() - t0;
  cpu[1] = cpu_s(RUSAGE_SELF) - c0;
  for (size_t i = 0; i < nchunks; i++) free(z[i]);
  free(z), free(zl), free(tmp), free(plain), free(sealed);
  EVP_CIPHER_CTX_free(gcm);
  LZ4F_freeCompressionContext(cctx);
  LZ4F_freeDecompressionContext(dctx);
}

/* Before a run that writes `out` (about `bytes` long): writes that much into it, then removes it,
 * so that the run finds as much just-freed page cache as it needs, whatever ran before it. On a
 * VM that hands freed guest memory back to its host (this machine: virtio-balloon free page
 * reporting), writing into pages nobody touched lately costs ~10x the CPU (~2.7 ms per MiB
 * against ~0.25): without this, whether the previous run's output was still there (sluice
 * renames its temporary file over it, so the old pages are freed only after the new ones were
 * taken; `> file` truncates first and reuses them) decided the restore figures. */
static const char *prime_data;
static void prime(const char *out, size_t bytes) {
  int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) abort();
  for (size_t off = 0; off < bytes;) {
    ssize_t w = write(fd, prime_data, bytes - off < CHUNK ? bytes - off : CHUNK);
    if (w <= 0) abort();
    off += (size_t)w;
  }
  close(fd);
  unlink(out);
}

/* One sluice run of a pipeline (stages as kind/json pairs) on `workers` writing `out` (about
 * `bytes`; see prime); returns seconds, and the CPU seconds in *cpu. */
static double run(int workers, const char *const *kinds, const char *const *jsons, int n, const char *out, size_t bytes, double *cpu) {
  prime(out, bytes);
  sl_engine_config cfg;
  sl_engine_config_init(&cfg);
  cfg.workers = workers;
  sl_engine *e;
  sl_pipeline *p;
  sl_error_t err;
  if (sl_engine_new(&cfg, &e, &err) || sl_pipeline_new(e, "bench", &p, &err)) abort();
  for (int i = 0; i < n; i++)
    if (sl_pipeline_add_json(p, kinds[i], jsons[i], &err)) {
      fprintf(stderr, "%s: %s\n", kinds[i], err.msg);
      exit(1);
    }
  double t0 = now(), c0 = cpu_s(RUSAGE_SELF);
  if (sl_pipeline_run(p, &err)) {
    fprintf(stderr, "run: %s\n", err.msg);
    exit(1);
  }
  double t = now() - t0;
  *cpu = cpu_s(RUSAGE_SELF) - c0;
  sl_pipeline_free(p);
  sl_engine_free(e);
  return t;
}

/* One shell pipeline writing `out` (about `bytes`; see prime); seconds, and the CPU seconds in *cpu. */
static double shell(const char *cmd, const char *out, size_t bytes, double *cpu) {
  prime(out, bytes);
  double t0 = now(), c0 = cpu_s(RUSAGE_CHILDREN);
  if (system(cmd) != 0) {
    fprintf(stderr, "failed: %s\n", cmd);
    exit(1);
  }
  *cpu = cpu_s(RUSAGE_CHILDREN) - c0;
  return now() - t0;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  return v[n / 2];
}

static bool same_file(const char *a, const char *b) {
  size_t na, nb;
  char *x = slurp(a, &na), *y = slurp(b, &nb);
  bool same = x && y && na == nb && memcmp(x, y, na) == 0;
  free(x), free(y);
  return same;
}

static void usage(FILE *f) {
  fputs("usage: bench_protect [MiB] [--runs R] [--dir D]   protect/restore throughput (default 256 MiB, 1 run, /tmp)\n"
        "       bench_protect --make FILE MiB               write the access-log text\n"
        "       bench_protect --libs FILE seal|open         the libraries alone on FILE's chunks (one BENCH line)\n", f);
}

int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "--make")) {
    make_log(argv[2], (size_t)atol(argv[3]));
    return 0;
  }
  if (argc == 4 && !strcmp(argv[1], "--libs")) {
    size_t len;
    char *text = slurp(argv[2], &len);
    if (!text) {
      perror(argv[2]);
      return 1;
    }
    double seal, open;
    libs_alone(text, len, NULL, &seal, &open, (double[2]){0});
    free(text);
    bool seal_half = strcmp(argv[3], "open") != 0;
    printf("BENCH {\"seconds\": %.6f, \"bytes\": %zu, \"lz4_mbps\": %.1f, \"gcm_mbps\": %.1f}\n", seal_half ? seal : open,
           len, (double)len / 1e6 / (seal_half ? lz4_s : lz4d_s), (double)len / 1e6 / (seal_half ? gcm_s : gcmd_s));
    return 0;
  }
  size_t mib = 256;
  int runs = 1;
  const char *dir = "/tmp";
  for (int i = 1; i < argc; i++) {
    char *end;
    if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
      runs = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
      dir = argv[++i];
    } else if (argv[i][0] != '-' && (mib = (size_t)strtoul(argv[i], &end, 10)) > 0 && !*end) {
      continue;
    } else {
      bool help = !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
      usage(help ? stdout : stderr);
      return help ? 0 : 2;
    }
  }
  if (runs < 1 || runs > 15) runs = 1;
  setenv("SL_BENCH_KEY", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", 1);
  char in[400], slc[512], back[512], sh[512], shb[512], cmd[4096];
  snprintf(in, sizeof in, "%s/sluice-bench-log-%d.txt", dir, (int)getpid());
  snprintf(slc, sizeof slc, "%s.slc", in);
  snprintf(back, sizeof back, "%s.back", in);
  snprintf(sh, sizeof sh, "%s.shell", in);
  snprintf(shb, sizeof shb, "%s.shell.back", in);
  make_log(in, mib);
  size_t n;
  char *data = slurp(in, &n);
  double mb = (double)n / 1e6;
  FILE *la = fopen("/proc/loadavg", "r");
  char load[64] = "?";
  if (la && fgets(load, sizeof load, la)) load[strcspn(load, "\n")] = 0;
  if (la) fclose(la);
  printf("bench_protect: %.0f MB of access-log text in 1 MiB chunks, %d run(s), load average %s\n", mb, runs, load);

  /* wall seconds, then CPU seconds, of each variant and run */
  double ls[15], lo[15], fs[15], fo[15], p1[15], p2[15], r1[15], r2[15], s1[15], s2[15];
  double cls[15], clo[15], cfs[15], cfo[15], cp1[15], cp2[15], cr1[15], cr2[15], cs1[15], cs2[15];
  char jin[600], jslc[600], jback[600], jslcin[600];
  snprintf(jin, sizeof jin, "{\"path\": \"%s\", \"size\": \"1MiB\"}", in);
  snprintf(jslc, sizeof jslc, "{\"path\": \"%s\", \"codec\": \"frames\"}", slc);
  snprintf(jslcin, sizeof jslcin, "{\"path\": \"%s\", \"codec\": \"frames\", \"max_record\": \"2MiB\"}", slc);
  snprintf(jback, sizeof jback, "{\"path\": \"%s\", \"codec\": \"raw\"}", back);
  const char *pk[] = {"read", "compress", "encrypt", "file"};
  const char *pj[] = {jin, "{}", "{\"key_env\": \"SL_BENCH_KEY\"}", jslc};
  const char *rk[] = {"file_in", "decrypt", "decompress", "file"}; /* decrypt with queue capacity 4, as restore.yaml */
  const char *rj[] = {jslcin, "{\"key_env\": \"SL_BENCH_KEY\", \"on_error\": \"fail\", \"queue\": {\"capacity\": 4}}", "{\"on_error\": \"fail\"}", jback};
  prime_data = data; /* every output is primed and removed before the run that writes it */
  for (int r = 0; r < runs; r++) {
    double c[2];
    libs_alone(data, n, NULL, &ls[r], &lo[r], c);
    cls[r] = c[0], clo[r] = c[1];
    libs_alone(data, n, &(file_io){in, slc, back}, &fs[r], &fo[r], c);
    cfs[r] = c[0], cfo[r] = c[1];
    if (r == 0 && !same_file(in, back)) { fprintf(stderr, "restored file differs (libraries + file I/O)\n"); return 1; }
    p1[r] = run(1, pk, pj, 4, slc, n / 4, &cp1[r]);
    r1[r] = run(1, rk, rj, 4, back, n, &cr1[r]);
    if (r == 0 && !same_file(in, back)) { fprintf(stderr, "restored file differs (w=1)\n"); return 1; }
    p2[r] = run(2, pk, pj, 4, slc, n / 4, &cp2[r]);
    r2[r] = run(2, rk, rj, 4, back, n, &cr2[r]);
    if (r == 0 && !same_file(in, back)) { fprintf(stderr, "restored file differs (w=2)\n"); return 1; }
    snprintf(cmd, sizeof cmd, "lz4 -1 -q -c '%s' | openssl enc -aes-256-ctr -pbkdf2 -pass pass:bench -out '%s'", in, sh);
    s1[r] = shell(cmd, sh, n / 4, &cs1[r]);
    snprintf(cmd, sizeof cmd, "openssl enc -d -aes-256-ctr -pbkdf2 -pass pass:bench -in '%s' | lz4 -d -q -c > '%s'", sh, shb);
    s2[r] = shell(cmd, shb, n, &cs2[r]);
  }
  free(data);
  struct stat st;
  stat(slc, &st);
  double ratio = (double)n / (double)st.st_size;
  double L = mb / median(ls, runs), LO = mb / median(lo, runs);
  double F = mb / median(fs, runs), FO = mb / median(fo, runs);
  double P1 = mb / median(p1, runs), P2 = mb / median(p2, runs), R1 = mb / median(r1, runs), R2 = mb / median(r2, runs);
  double S1 = mb / median(s1, runs), S2 = mb / median(s2, runs);
  printf("  protected size: %.1f%% of the input (ratio %.2f)\n", 100.0 / ratio, ratio);
  printf("  %-44s %9s %9s   CPU s: %7s %7s\n", "", "protect", "restore", "protect", "restore");
  printf("  %-44s %7.0f MB/s %7.0f MB/s %14.3f %7.3f\n", "libraries alone, 1 core (LZ4F + OpenSSL GCM)", L, LO, median(cls, runs), median(clo, runs));
  printf("  %-44s %7.0f MB/s %7.0f MB/s %14.3f %7.3f\n", "  + file read/write, same thread", F, FO, median(cfs, runs), median(cfo, runs));
  printf("  %-44s %7.0f MB/s %7.0f MB/s %14.3f %7.3f\n", "sluice workers=1", P1, R1, median(cp1, runs), median(cr1, runs));
  printf("  %-44s %7.0f MB/s %7.0f MB/s %14.3f %7.3f\n", "sluice workers=2", P2, R2, median(cp2, runs), median(cr2, runs));
  printf("  %-44s %7.0f MB/s %7.0f MB/s %14.3f %7.3f\n", "lz4 -1 | openssl enc -aes-256-ctr -pbkdf2", S1, S2, median(cs1, runs), median(cs2, runs));
  printf("  workers=1 / libraries: %.0f%% / %.0f%%;  workers=2 / workers=1: %.2fx / %.2fx;  workers=2 / 2 x libraries: %.0f%% / %.0f%%\n",
         100 * P1 / L, 100 * R1 / LO, P2 / P1, R2 / R1, 100 * P2 / (2 * L), 100 * R2 / (2 * LO));
  printf("  workers=2 / shell pipeline: %.2fx / %.2fx\n", P2 / S1, R2 / S2);
  printf("  workers=1 / (libraries + file I/O, 1 core): %.0f%% / %.0f%%\n", 100 * P1 / F, 100 * R1 / FO);
  unlink(in), unlink(slc), unlink(back), unlink(sh), unlink(shb);
  return 0;
}
