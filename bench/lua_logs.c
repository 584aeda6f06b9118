/*
 * lua_logs.c — a Lua pipeline against plain Lua: parse access-log lines into records.
 *
 * Writes N synthetic access-log lines (~90 bytes each) to a temporary file (unlinked at once and
 * read through /proc/PID/fd, so an interrupted run leaves nothing behind), then runs the same
 * Lua code (bench/lua_logs.lua, byte for byte) four ways:
 *   - plain `lua5.4 bench/lua_logs.lua FILE` (io.lines -> parse -> keep), spawned and timed
 *     from here, its peak RSS from wait4's rusage;
 *   - sluice with workers = 1: lines(FILE) -> map(parse) -> filter(keep) -> null;
 *   - the same with workers = 2 (map and filter run fused, as two instances);
 *   - for reference, workers = 1 with one filter_map(parse_keep) stage: parse and keep in one
 *     Lua call, so no record is converted to a sluice value and back between them (what a
 *     Lua-to-Lua hand-off between fused Lua stages would save).
 * parse splits a line into a 6-field table with string.match; keep is r.status >= 500.
 * Prints seconds, records/s and peak RSS of each, and the ratios to plain Lua (targets: w=1
 * within 10% of plain lua5.4; w=2 >= 1.8x faster than plain lua5.4).
 *
 * Peak RSS of a sluice run: VmHWM after resetting it (/proc/self/clear_refs = 5) before the run;
 * the generated file is never held in memory. The baseline is started with posix_spawn (vfork
 * semantics), so its ru_maxrss is lua5.4's own and not a copy of this process.
 *
 * usage: bench_lua_logs [--quick] [N] [--runs R] [--only lua|1|2|f] [--file PATH] [--keep] [--lua BIN]
 *   N        lines (default 10000000; --quick 1000000)
 *   --runs   repeat each configuration R times, print every run and the median (default 1)
 *   --only   run one configuration (for profiling: perf record bench_lua_logs --only 1)
 *   --file   use an existing log file instead of generating one (N is then its line count)
 *   --keep   keep the generated file (its name is printed) for later --file runs
 *   --lua    the plain interpreter (default lua5.4)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sluice.h"

extern char **environ;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long status_kib(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  size_t n = strlen(key);
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, key, n) == 0) kib = atol(line + n);
  if (f) fclose(f);
  return kib;
}

/* Resets VmHWM to the current RSS (Linux >= 4.0); false if it cannot. */
static bool reset_hwm(void) {
  FILE *f = fopen("/proc/self/clear_refs", "w");
  if (!f) return false;
  bool ok = fputs("5", f) >= 0;
  return fclose(f) == 0 && ok;
}

/* CPU seconds of each thread of this process, written into buf (diagnostics). */
static void thread_cpu(char *buf, size_t len) {
  buf[0] = 0;
  char path[64], line[1024];
  size_t at = 0;
  DIR *d = opendir("/proc/self/task");
  struct dirent *de;
  while (d && (de = readdir(d)) && at + 16 < len) {
    if (de->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "/proc/self/task/%.20s/stat", de->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    if (fgets(line, sizeof line, f)) {
      char *p = strrchr(line, ')');
      unsigned long ut = 0, stt = 0;
      if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stt) == 2)
        at += (size_t)snprintf(buf + at, len - at, " %.2f", (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK));
    }
    fclose(f);
  }
  if (d) closedir(d);
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* ---- the data ---------------------------------------------------------------------------- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) { /* xorshift64* */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return (uint32_t)((rng * 0x2545F4914F6CDD1Dull) >> 32);
}

/* Writes n lines to fd; returns how many have status >= 500 (what keep() lets through) and the
 * bytes written in *bytes. */
static long generate(int fd, long n, long *bytes) {
  static const char *methods[] = {"GET", "GET", "GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE"};
  static const char *months = "Nov";
  FILE *f = fdopen(dup(fd), "w");
  if (!f) {
    perror("fdopen");
    exit(1);
  }
  setvbuf(f, NULL, _IOFBF, 1 << 20);
  long kept = 0, total = 0;
  for (long i = 0; i < n; i++) {
    uint32_t r = rnd();
    long sec = 10 * 3600 + i / 100; /* 100 lines a second from 21/Nov/2026:10:00:00 */
    int day = 21 + (int)(sec / 86400), hh = (int)(sec / 3600 % 24), mm = (int)(sec / 60 % 60), ss = (int)(sec % 60);
    int status;
    uint32_t s = r % 1000;
    if (s < 880) status = 200;
    else if (s < 900) status = 304;
    else if (s < 960) status = 404;
    else if (s < 985) status = 500;
    else status = 503;
    if (status >= 500) kept++;
    char path[64];
    uint32_t p = rnd();
    switch (p % 5) {
    case 0: case 1: snprintf(path, sizeof path, "/api/v1/items/%u", p % 100000); break;
    case 2: snprintf(path, sizeof path, "/api/v1/users/%u/orders", p % 10000); break;
    case 3: snprintf(path, sizeof path, "/static/app.%x.js", p % 4096); break;
    default: snprintf(path, sizeof path, "/search?q=%u", p % 1000); break;
    }
    uint32_t h = rnd();
    int w = fprintf(f, "10.%u.%u.%u - - [%02d/%s/2026:%02d:%02d:%02d +0000] \"%s %s HTTP/1.1\" %d %u\n",
                    h % 4, (h >> 8) % 256, (h >> 16) % 256, day, months, hh, mm, ss, methods[(h >> 24) % 10],
                    path, status, status == 304 ? 0 : rnd() % 60000);
    total += w;
  }
  if (fclose(f) != 0) {
    perror("writing the log file");
    exit(1);
  }
  *bytes = total;
  return kept;
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  sl_buf b;
  sl_buf_init(&b);
  char tmp[65536];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) sl_buf_append(&b, tmp, n);
  fclose(f);
  *len = b.len;
  return b.data;
}

/* bench/lua_logs.lua: next to this source file, else relative to the working directory. */
static const char *find_lua_file(void) {
  static char path[4096];
  const char *here = __FILE__;
  const char *slash = strrchr(here, '/');
  if (slash) {
    snprintf(path, sizeof path, "%.*s/lua_logs.lua", (int)(slash - here), here);
    if (access(path, R_OK) == 0) return path;
  }
  if (access("bench/lua_logs.lua", R_OK) == 0) return "bench/lua_logs.lua";
  return NULL;
}

/* ---- the runs ---------------------------------------------------------------------------- */

typedef struct result {
  double s;      /* wall seconds */
  double cpu;    /* CPU seconds (user + system) */
  long rss_kib;  /* peak RSS */
  long rss0_kib; /* RSS when the run started (sluice runs: this process before the engine) */
  long lines, kept;
} result;

/* plain lua5.4 FILE: wall time around spawn..wait4; rusage of the child. */
static result run_plain(const char *lua, const char *script, const char *data) {
  int pfd[2];
  if (pipe(pfd) != 0) {
    perror("pipe");
    exit(1);
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pfd[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&fa, pfd[0]);
  posix_spawn_file_actions_addclose(&fa, pfd[1]);
  char *argv[] = {(char *)lua, (char *)script, (char *)data, NULL};
  pid_t pid;
  double t0 = now_s();
  int rc = posix_spawnp(&pid, lua, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(pfd[1]);
  if (rc != 0) { /* no interpreter: the caller skips the baseline */
    close(pfd[0]);
    fprintf(stderr, "cannot run %s: %s (install lua5.4, or pass --lua BIN); no plain-Lua baseline\n", lua, strerror(rc));
    return (result){.s = -1};
  }
  char out[256] = "";
  size_t got = 0;
  ssize_t n;
  while (got < sizeof out - 1 && (n = read(pfd[0], out + got, sizeof out - 1 - got)) > 0) got += (size_t)n;
  out[got] = 0;
  close(pfd[0]);
  int status;
  struct rusage ru;
  while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {}
  result r = {.s = now_s() - t0};
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "%s %s failed (status %d)\n", lua, script, status);
    exit(1);
  }
  r.cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
  r.rss_kib = ru.ru_maxrss;
  if (sscanf(out, "%ld %ld", &r.lines, &r.kept) != 2) {
    fprintf(stderr, "unexpected output from %s: %s\n", lua, out);
    exit(1);
  }
  return r;
}

static void die(const char *what, const sl_error_t *err) {
  fprintf(stderr, "%s: %s\n", what, err->msg);
  exit(1);
}

/* lines -> map(parse) -> filter(keep) -> null on an engine of `workers`. */
static result run_sluice(int workers, bool fused, const char *code, size_t code_len, const char *script, const char *data) {
  sl_engine_config cfg;
  sl_engine_config_init(&cfg);
  cfg.workers = workers;
  sl_engine *e = NULL;
  sl_pipeline *p = NULL;
  sl_error_t err;
  sl_error_init(&err);
  if (sl_engine_new(&cfg, &e, &err) || sl_pipeline_new(e, "lua_logs", &p, &err)) die("engine", &err);
  if (sl_pipeline_add_lua(p, code, code_len, script, 1, &err)) die("lua code", &err);
  sl_buf j;
  sl_buf_init(&j);
  sl_buf_append(&j, "{\"path\": ", 9);
  sl_value path = sl_cstr(data);
  sl_value_to_json(&path, &j);
  sl_value_free(path);
  sl_buf_append(&j, "}", 1);
  int rc = sl_pipeline_add_json(p, "lines", j.data, &err);
  if (rc == 0 && fused) rc = sl_pipeline_add_json(p, "filter_map", "{\"fn\": \"parse_keep\", \"on_error\": \"fail\"}", &err);
  if (rc == 0 && !fused) rc = sl_pipeline_add_json(p, "map", "{\"fn\": \"parse\", \"on_error\": \"fail\"}", &err);
  if (rc == 0 && !fused) rc = sl_pipeline_add_json(p, "filter", "{\"fn\": \"keep\", \"on_error\": \"fail\"}", &err);
  if (rc == 0) rc = sl_pipeline_add_json(p, "null", "{\"name\": \"sink\"}", &err);
  if (rc) die("pipeline", &err);
  sl_buf_close(&j);
  bool hwm = reset_hwm();
  long rss0 = status_kib("VmRSS:");
  double c0 = cpu_s(), t0 = now_s();
  if (sl_pipeline_start(p, &err)) die("start", &err);
  long peak = rss0;
  while ((rc = sl_pipeline_wait(p, hwm ? -1 : 100000000, &err)) == SL_ETIMEDOUT) { /* sample if VmHWM cannot be reset */
    long r = status_kib("VmRSS:");
    if (r > peak) peak = r;
  }
  result r = {.s = now_s() - t0, .cpu = cpu_s() - c0};
  if (rc != SL_OK) die("run", &err);
  if (getenv("BENCH_THREADS")) {
    char b[512];
    thread_cpu(b, sizeof b);
    fprintf(stderr, "thread cpu s:%s\n", b);
  }
  r.rss_kib = hwm ? status_kib("VmHWM:") : peak;
  r.rss0_kib = rss0;
  sl_stage_stats s;
  sl_pipeline_stats(p, 1, &s);
  r.lines = (long)s.in;
  sl_pipeline_stats(p, fused ? 2 : 3, &s);
  r.kept = (long)s.in;
  sl_pipeline_free(p);
  sl_engine_free(e);
  return r;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static char *tmp_path;
static void remove_tmp(void) {
  if (tmp_path) unlink(tmp_path);
}

int main(int argc, char **argv) {
  long n = 10000000;
  int runs = 1;
  bool keep = false;
  const char *only = NULL, *file = NULL, *lua = "lua5.4";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) n = 1000000;
    else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) runs = atoi(argv[++i]);
    else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
    else if (strcmp(argv[i], "--file") == 0 && i + 1 < argc) file = argv[++i];
    else if (strcmp(argv[i], "--lua") == 0 && i + 1 < argc) lua = argv[++i];
    else if (strcmp(argv[i], "--keep") == 0) keep = true;
    else if (argv[i][0] >= '0' && argv[i][0] <= '9') n = atol(argv[i]);
    else {
      fprintf(stderr, "usage: bench_lua_logs [--quick] [N] [--runs R] [--only lua|1|2|f] [--file PATH] [--keep] [--lua BIN]\n");
      return 2;
    }
  }
  if (runs < 1) runs = 1;
  if (runs > 15) runs = 15;
  const char *script = find_lua_file();
  size_t code_len;
  char *code = script ? read_file(script, &code_len) : NULL;
  if (!code) {
    fprintf(stderr, "cannot find bench/lua_logs.lua (run from the repository root)\n");
    return 1;
  }

  long kept_expected = -1, bytes = 0;
  bool generated = !file;
  if (!file) {
    const char *dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    static char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/sluice-lua-logs-XXXXXX", dir);
    int fd = mkstemp(tmpl);
    if (fd < 0) {
      perror("mkstemp");
      return 1;
    }
    if (!keep) {
      tmp_path = tmpl;
      atexit(remove_tmp);
    }
    double t0 = now_s();
    kept_expected = generate(fd, n, &bytes);
    file = tmpl;
    if (!keep) { /* unlinked at once, read through /proc (an interrupted run leaves no file) */
      static char proc_path[64];
      snprintf(proc_path, sizeof proc_path, "/proc/%d/fd/%d", (int)getpid(), fd);
      if (access(proc_path, R_OK) == 0 && unlink(tmpl) == 0) {
        tmp_path = NULL;
        file = proc_path;
      }
    } else {
      close(fd);
    }
    printf("lua_logs: %ld access-log lines, %.1f MB (%.1f bytes/line) written to %s in %.1f s\n", n, bytes / 1e6,
           (double)bytes / n, keep ? file : "a deleted temporary file", now_s() - t0);
  } else {
    struct stat sb;
    if (stat(file, &sb) == 0) bytes = sb.st_size;
    printf("lua_logs: %s, %.1f MB\n", file, bytes / 1e6);
  }
  printf("pipeline: lines -> map(parse: string.match into a 6-field table) -> filter(keep: r.status >= 500) -> null\n");
  printf("baseline: %s %s FILE (io.lines, the same parse and keep)\n", lua, script);
  fflush(stdout);

  const char *names[4] = {"plain lua5.4", "sluice w=1", "sluice w=2", "filter_map w=1"};
  double med[4] = {0}, cpu[4] = {0};
  long rss[4] = {0};
  bool ran[4] = {false, false, false, false};
  printf("%-14s %4s %10s %14s %10s %12s %12s %10s\n", "run", "#", "seconds", "records/s", "cpu s", "peak RSS", "RSS before", "kept");
  for (int c = 0; c < 4; c++) {
    static const char *const keys[4] = {"lua", "1", "2", "f"};
    if (only && strcmp(only, keys[c]) != 0) continue;
    double t[15], u[15];
    int k;
    for (k = 0; k < runs; k++) {
      result r = c == 0 ? run_plain(lua, script, file) : run_sluice(c == 2 ? 2 : 1, c == 3, code, code_len, script, file);
      if (r.s < 0) break;
      if (kept_expected < 0) kept_expected = r.kept;
      if (r.kept != kept_expected) {
        fprintf(stderr, "%s kept %ld records, expected %ld\n", names[c], r.kept, kept_expected);
        return 1;
      }
      if (generated && r.lines != n) {
        fprintf(stderr, "%s saw %ld lines, expected %ld\n", names[c], r.lines, n);
        return 1;
      }
      n = r.lines;
      t[k] = r.s;
      u[k] = r.cpu;
      if (r.rss_kib > rss[c]) rss[c] = r.rss_kib;
      char before[32] = "-";
      if (c > 0) snprintf(before, sizeof before, "%ld KiB", r.rss0_kib);
      printf("%-14s %4d %10.3f %14.0f %10.2f %8ld KiB %12s %10ld\n", names[c], k + 1, r.s, r.lines / r.s, r.cpu, r.rss_kib, before, r.kept);
      fflush(stdout);
    }
    if (k < runs) continue; /* skipped */
    med[c] = median(t, runs);
    cpu[c] = median(u, runs);
    ran[c] = true;
  }
  printf("\nmedians of %d run(s), %ld lines:\n", runs, n);
  printf("%-14s %10s %14s %10s %12s %s\n", "run", "seconds", "records/s", "cpu s", "peak RSS", "vs plain lua5.4");
  for (int c = 0; c < 4; c++) {
    if (!ran[c]) continue;
    char vs[96] = "";
    if (c > 0 && ran[0]) {
      if (c == 2) snprintf(vs, sizeof vs, "speed-up %.2fx (target >= 1.8x)", med[0] / med[2]);
      else snprintf(vs, sizeof vs, "time ratio %.2f%s", med[c] / med[0], c == 1 ? " (target <= 1.10)" : " (reference)");
    }
    printf("%-14s %10.3f %14.0f %10.2f %8ld KiB %s\n", names[c], med[c], n / med[c], cpu[c], rss[c], vs);
  }
  if (ran[1] && ran[2]) printf("sluice w=2 vs w=1: %.2fx\n", med[1] / med[2]);
  if (ran[0] || ran[1]) {
    double base = ran[0] ? med[0] : med[1];
    printf("per line: %.0f ns %s\n", base * 1e9 / n, ran[0] ? "(plain lua5.4)" : "(sluice w=1)");
  }
  free(code);
  return 0;
}
