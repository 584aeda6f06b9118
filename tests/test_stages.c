/*
 * test_stages.c — the built-in I/O stages on real files: lines (CRLF, last line, long lines,
 * large files, pipes) and file (temporary name, rename on success, removal on failure).
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"


static int count_files(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *de;
  int n = 0;
  while (d && (de = readdir(d)))
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
  if (d) closedir(d);
  return n;
}


/* Runs lines(path, extra options) -> collect and returns the lines as one array value. */
static int run_lines(const char *path, const char *extra, sl_value *out, sl_error_t *err) {
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p;
  sl_pipeline_new(e, "lines", &p, NULL);
  char json[600];
  snprintf(json, sizeof json, "{\"path\": \"%s\"%s%s}", path, extra ? ", " : "", extra ? extra : "");
  int rc = sl_pipeline_add_json(p, "lines", json, err);
  if (!rc) rc = sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", err);
  if (!rc) rc = sl_pipeline_run(p, err);
  *out = sl_array(0);
  sl_collect *c = sl_pipeline_collect(p, "out");
  sl_value v;
  while (c && sl_collect_pull(c, &v, 0) == SL_OK) sl_array_push(out, v);
  sl_pipeline_free(p);
  sl_engine_free(e);
  return rc;
}

static const char *item(const sl_value *a, size_t i) { return sl_str_data(sl_array_get(a, i)); }

TEST(stage_lines_basic) {
  char dir[64], path[128];
  sl_test_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/in.txt", dir);
  const char text[] = "one\r\ntwo\n\nthree\r\nlast without newline";
  sl_test_write_file(path, text, sizeof text - 1);
  sl_value a;
  sl_error_t err;
  ASSERT_OK(run_lines(path, NULL, &a, &err), &err);
  ASSERT_EQ(sl_array_len(&a), 5);
  ASSERT_STR(item(&a, 0), "one");
  ASSERT_STR(item(&a, 1), "two");
  ASSERT_STR(item(&a, 2), "");
  ASSERT_STR(item(&a, 3), "three");
  ASSERT_STR(item(&a, 4), "last without newline");
  sl_value_free(a);
  sl_test_write_file(path, "", 0); /* empty file: no records */
  ASSERT_OK(run_lines(path, NULL, &a, &err), &err);
  ASSERT_EQ(sl_array_len(&a), 0);
  sl_value_free(a);
  sl_test_write_file(path, "a\0b\n", 4); /* binary-safe */
  ASSERT_OK(run_lines(path, NULL, &a, &err), &err);
  ASSERT_EQ(sl_array_len(&a), 1);
  ASSERT_EQ(sl_str_len(sl_array_get(&a, 0)), 3);
  sl_value_free(a);
  sl_test_rmtree(dir);
}

TEST(stage_lines_long) {
  char dir[64], path[128];
  sl_test_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/in.txt", dir);
  sl_test_write_file(path, "short\n0123456789abc\nok\n", 23);
  sl_value a;
  sl_error_t err;
  sl_error_init(&err);
  ASSERT_EQ(run_lines(path, "\"max_line\": 10", &a, &err), SL_EFAILED);
  ASSERT(strstr(err.msg, "line 2 of") && strstr(err.msg, "longer than max_line (10 bytes)"));
  ASSERT_STR(err.stage, "lines#1");
  sl_value_free(a);
  ASSERT_OK(run_lines(path, "\"max_line\": 10, \"long_lines\": \"split\"", &a, &err), &err);
  ASSERT_EQ(sl_array_len(&a), 4);
  ASSERT_STR(item(&a, 1), "0123456789");
  ASSERT_STR(item(&a, 2), "abc");
  ASSERT_STR(item(&a, 3), "ok");
  sl_value_free(a);
  sl_test_rmtree(dir);
}

/* A file larger than the read buffer, streamed: every line, in order. */
TEST(stage_lines_large) {
  char dir[64], path[128];
  sl_test_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/big.txt", dir);
  FILE *f = fopen(path, "w");
  for (int i = 0; i < 300000; i++) fprintf(f, "line number %d of the big file\n", i);
  fclose(f);
  sl_value a;
  sl_error_t err;
  ASSERT_OK(run_lines(path, NULL, &a, &err), &err);
  ASSERT_EQ(sl_array_len(&a), 300000);
  char want[64];
  for (size_t i = 0; i < 300000; i += 997) {
    snprintf(want, sizeof want, "line number %zu of the big file", i);
    ASSERT_STR(item(&a, i), want);
  }
  sl_value_free(a);
  sl_test_rmtree(dir);
}

static void *write_slowly(void *arg) {
  int fd = *(int *)arg;
  char buf[64];
  for (int i = 0; i < 100; i++) {
    int n = snprintf(buf, sizeof buf, "chunk %d\n", i);
    if (write(fd, buf, (size_t)n) != n) break;
    if (i % 10 == 0) usleep(1000); /* the reader must wait for input without a worker */
  }
  close(fd);
  return NULL;
}

/* A pipe (not a regular file) is read through the event loop as data arrives. */
TEST(stage_lines_pipe) {
  int fds[2];
  ASSERT(pipe(fds) == 0);
  char path[64];
  snprintf(path, sizeof path, "/dev/fd/%d", fds[0]);
  pthread_t t;
  pthread_create(&t, NULL, write_slowly, &fds[1]);
  sl_value a;
  sl_error_t err;
  int rc = run_lines(path, NULL, &a, &err);
  pthread_join(t, NULL);
  close(fds[0]);
  ASSERT_OK(rc, &err);
  ASSERT_EQ(sl_array_len(&a), 100);
  ASSERT_STR(item(&a, 99), "chunk 99");
  sl_value_free(a);
}

static int fail_at_500(void *ud, sl_value *rec, char *errbuf, size_t errlen) {
  if (rec->u.i == 500) {
    snprintf(errbuf, errlen, "boom");
    return -1;
  }
  return 0;
}

TEST(stage_file_sink) {
  char dir[64], path[128];
  sl_test_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/out.jsonl", dir);
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p;
  sl_error_t err;
  sl_pipeline_new(e, "file", &p, NULL);
  char json[300];
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 1000}", &err), &err);
  snprintf(json, sizeof json, "{\"path\": \"%s\", \"codec\": \"jsonl\", \"fsync\": true}", path);
  ASSERT_OK(sl_pipeline_add_json(p, "file", json, &err), &err);
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
  size_t n;
  char *data = sl_test_read_file(path, &n);
  ASSERT(data);
  int lines = 0;
  for (char *s = data; *s; s = strchr(s, '\n') + 1) {
    lines++;
    ASSERT_EQ(atoi(s), lines);
  }
  ASSERT_EQ(lines, 1000);
  free(data);
  ASSERT_EQ(count_files(dir), 1); /* no temporary file left */
  sl_pipeline_free(p);

  /* a failing pipeline leaves neither the file nor its temporary */
  unlink(path);
  sl_pipeline_new(e, "file", &p, NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 1000}", &err), &err);
  sl_value o;
  sl_value_from_json("{\"on_error\": \"fail\"}", 20, &o, NULL);
  ASSERT_OK(sl_pipeline_add_fn(p, "c_map", fail_at_500, NULL, o, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "file", json, &err), &err);
  ASSERT_EQ(sl_pipeline_run(p, &err), SL_EFAILED);
  sl_pipeline_free(p);
  ASSERT_EQ(count_files(dir), 0);
  sl_engine_free(e);
  sl_test_rmtree(dir);
}

TEST(stage_file_bad_folder) {
  sl_engine *e = sl_test_engine(1, false);
  sl_pipeline *p;
  sl_error_t err;
  sl_error_init(&err);
  sl_pipeline_new(e, "file", &p, NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 1}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "file", "\"/nonexistent-dir/out.txt\"", &err), &err);
  ASSERT(sl_pipeline_run(p, &err) != 0);
  ASSERT(strstr(err.msg, "cannot create a file next to '/nonexistent-dir/out.txt'"));
  sl_pipeline_free(p);
  sl_engine_free(e);
}
