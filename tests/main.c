/* The unit test runner: runs every test of test_list.h, or those whose name contains argv[1]. */
#include <dirent.h>
#include <signal.h>
#include <unistd.h>
#include <time.h>

#include "test.h"

int sl_test_failed;

/* A fresh temporary folder for one test; removed (with its files) by rmtree. */
void sl_test_tmpdir(char *out, size_t n) {
  snprintf(out, n, "/tmp/sluice-test-XXXXXX");
  if (!mkdtemp(out)) abort();
}

void sl_test_rmtree(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *de;
  char path[512];
  while (d && (de = readdir(d))) {
    if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2]))) continue;
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    unlink(path);
  }
  if (d) closedir(d);
  rmdir(dir);
}

void sl_test_write_file(const char *path, const char *data, size_t n) {
  FILE *f = fopen(path, "wb");
  fwrite(data, 1, n, f);
  fclose(f);
}

char *sl_test_read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)len + 1);
  *n = fread(buf, 1, (size_t)len, f);
  buf[*n] = 0;
  fclose(f);
  return buf;
}

sl_engine *sl_test_engine(int workers, bool virtual_time) {
  sl_engine_config cfg;
  sl_engine_config_init(&cfg);
  cfg.workers = workers;
  cfg.virtual_time = virtual_time;
  sl_engine *e = NULL;
  sl_error_t err;
  if (sl_engine_new(&cfg, &e, &err) != 0) {
    fprintf(stderr, "cannot make an engine: %s\n", err.msg);
    abort();
  }
  return e;
}

#define X(name) void test_##name(void);
#include "test_list.h"
#undef X

static const struct {
  const char *name;
  void (*fn)(void);
} tests[] = {
#define X(name) {#name, test_##name},
#include "test_list.h"
#undef X
};

int main(int argc, char **argv) {
  const char *filter = argc > 1 ? argv[1] : NULL;
  int passed = 0, failed = 0;
  signal(SIGPIPE, SIG_IGN);
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    if (filter && !strstr(tests[i].name, filter)) continue;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sl_test_failed = 0;
    tests[i].fn();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("%-4s %s (%.0f ms)\n", sl_test_failed ? "FAIL" : "ok", tests[i].name, ms);
    fflush(stdout);
    if (sl_test_failed) failed++; else passed++;
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
