/*
 * test_codecs.c — codecs, the byte reader and the file source and sink, end to end through the
 * embedding API: frames, lz4 (transparent reading, corrupt and truncated frames, the sink's
 * compress: lz4), JSON corpora from RFC 8259, CSV corpora from RFC 4180, jsonl round trips,
 * encode/decode and parse.
 */
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include "codec.h"
#include "reader.h"
#include "test.h"

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

static sl_value json(const char *text) {
  sl_value v;
  sl_error_t err;
  if (sl_value_from_json(text, strlen(text), &v, &err) != 0) {
    fprintf(stderr, "bad test JSON %s: %s\n", text, err.msg);
    abort();
  }
  return v;
}

/* Runs source(kind, opts) [-> mid(kind, opts)] -> collect; *out gets the records (an array). */
static int run_read2(sl_engine *e, const char *kind, const char *opts, const char *mid, const char *mid_opts,
                     sl_value *out, sl_error_t *err) {
  sl_pipeline *p;
  sl_error_init(err);
  sl_pipeline_new(e, "read", &p, NULL);
  int rc = sl_pipeline_add_json(p, kind, opts, err);
  if (!rc && mid) rc = sl_pipeline_add_json(p, mid, mid_opts, err);
  if (!rc) rc = sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", err);
  if (!rc) rc = sl_pipeline_start(p, err);
  *out = sl_array(0);
  sl_collect *c = sl_pipeline_collect(p, "out");
  sl_value v;
  while (!rc && c && sl_collect_pull(c, &v, -1) == SL_OK) sl_array_push(out, v);
  if (!rc) rc = sl_pipeline_wait(p, -1, err);
  sl_pipeline_free(p);
  return rc;
}

static int run_read(sl_engine *e, const char *kind, const char *opts, sl_value *out, sl_error_t *err) {
  return run_read2(e, kind, opts, NULL, NULL, out, err);
}

/* values(records, consumed) [-> mid] -> sink(kind, opts). */
static int run_write2(sl_engine *e, sl_value records, const char *mid, const char *mid_opts, const char *kind,
                      const char *opts, sl_error_t *err) {
  sl_pipeline *p;
  sl_error_init(err);
  sl_pipeline_new(e, "write", &p, NULL);
  sl_value o = sl_map(1);
  sl_map_setc(&o, "records", records);
  int rc = sl_pipeline_add(p, "values", o, err);
  if (!rc && mid) rc = sl_pipeline_add_json(p, mid, mid_opts, err);
  if (!rc) rc = sl_pipeline_add_json(p, kind, opts, err);
  if (!rc) rc = sl_pipeline_run(p, err);
  sl_pipeline_free(p);
  return rc;
}

static int run_write(sl_engine *e, sl_value records, const char *kind, const char *opts, sl_error_t *err) {
  return run_write2(e, records, NULL, NULL, kind, opts, err);
}

/* Asserts two values are equal, printing both as JSON when not. */
#define ASSERT_VALUE(a, b)                                                                          \
  do {                                                                                              \
    if (!sl_value_equal((a), (b))) {                                                                \
      sl_buf ba, bb;                                                                                \
      sl_buf_init(&ba);                                                                             \
      sl_buf_init(&bb);                                                                             \
      sl_value_to_json((a), &ba);                                                                   \
      sl_value_to_json((b), &bb);                                                                   \
      fprintf(stderr, "    %s:%d: values differ:\n      %.400s\n      %.400s\n", __FILE__, __LINE__, \
              ba.data ? ba.data : "", bb.data ? bb.data : "");                                      \
      sl_buf_close(&ba);                                                                            \
      sl_buf_close(&bb);                                                                            \
      sl_test_failed = 1;                                                                           \
      return;                                                                                       \
    }                                                                                               \
  } while (0)

/* ---------------------------------------------------------------------------------------------
 * frames
 * ------------------------------------------------------------------------------------------- */

/* Binary records: empty, NULs, every byte value, one larger than the read buffer. */
static sl_value binary_records(void) {
  sl_value a = sl_array(0);
  sl_array_push(&a, sl_str("", 0));
  sl_array_push(&a, sl_str("a\0b", 3));
  char all[256];
  for (int i = 0; i < 256; i++) all[i] = (char)i;
  sl_array_push(&a, sl_str(all, 256));
  size_t big = 300 * 1024;
  char *b = malloc(big);
  for (size_t i = 0; i < big; i++) b[i] = (char)(i * 7 + i / 251);
  sl_array_push(&a, sl_str(b, big));
  free(b);
  sl_array_push(&a, sl_cstr("last"));
  return a;
}

TEST(codec_frames_roundtrip) {
  char dir[64], path[128], opts[300];
  sl_test_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/out.frames", dir);
  for (int workers = 1; workers <= 2; workers++) {
    sl_engine *e = sl_test_engine(workers, false);
    sl_error_t err;
    sl_value want = binary_records(), got;
    snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"codec\": \"frames\"}", path);
    ASSERT_OK(run_write(e, sl_value_ref(&want), "file", opts, &err), &err);
    size_t n;
    char *data = sl_test_read_file(path, &n);
    ASSERT_EQ(n, 5 * 4 + 0 + 3 + 256 + 300 * 1024 + 4);
    ASSERT(memcmp(data, "\0\0\0\0\0\0\0\3a\0b\0\0\1\0", 15) == 0); /* big-endian lengths */
    free(data);
    ASSERT_OK(run_read(e, "file_in", opts, &got, &err), &err);
    ASSERT_VALUE(&got, &want);
    sl_value_free(got);
    sl_value_free(want);
    /* a record that is not a string fails alone (on_error), the others are written */
    snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"codec\": \"frames\"}", path);
    ASSERT_OK(run_write(e, json("[\"a\", {\"k\": 1}, \"b\"]"), "file", opts, &err), &err);
    ASSERT_OK(run_read(e, "file_in", opts, &got, &err), &err);
    want = json("[\"a\", \"b\"]");
    ASSERT_VALUE(&got, &want);
    sl_value_free(got);
    sl_value_free(want);
    sl_engine_free(e);
  }
  sl_test_rmtree(dir);
}

TEST(codec_frames_truncated) {
  char dir[64], path[128], opts[300];
  sl_test_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/in.frames", dir);
  snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"codec\": \"frames\"}", path);
  sl_engine *e = sl_test_engine(1, false);
  sl_error_t err;
  const char data[] = "\0\0\0\3abc\0\0\0\0\0\0\0\2xy"; /* "abc", "", "xy": frames end at 7, 11, 17 */
  size_t full = sizeof data - 1;
  for (size_t cut = 0; cut <= full; cut++) {
    sl_test_write_file(path, data, cut);
    sl_value got;
    int rc = run_read(e, "file_in", opts, &got, &err);
    bool boundary = cut == 0 || cut == 7 || cut == 11 || cut == 17;
    if (boundary) {
      ASSERT_OK(rc, &err);
      ASSERT_EQ(sl_array_len(&got), cut == 0 ? 0 : cut == 7 ? 1 : cut == 11 ? 2 : 3);
    } else {
      ASSERT_EQ(rc, SL_EFAILED);
      ASSERT(strstr(err.msg, "truncated frame at byte "));
      ASSERT(strstr(err.msg, "in.frames"));
    }
    sl_value_free(got);
  }
  /* a length beyond max_record: the input is not frames (or max_record is too small) */
  sl_test_write_file(path, "\x7f\0\0\0abc", 7);
  sl_value got;
  ASSERT_EQ(run_read(e, "file_in", opts, &got, &err), SL_EFAILED);
  ASSERT(strstr(err.msg, "the frame at byte 0 announces 2130706432 bytes, more than max_record"));
  sl_value_free(got);
  sl_engine_free(e);
  sl_test_rmtree(dir);
}

/* ---------------------------------------------------------------------------------------------
 * lz4
 * ------------------------------------------------------------------------------------------- */

TEST(codec_lz4_sink_and_source) {
  char dir[64], path[128], opts[300];
  sl_test_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/out.data", dir); /* no .lz4 name: found by magic */
  for (int workers = 1; workers <= 2; workers++) {
    sl_engine *e = sl_test_engine(workers, false);
    sl_error_t err;
    sl_value want = sl_array(0), got;
    for (int i = 0; i < 20000; i++) {
      sl_value m = sl_map(2);
      sl_map_setc(&m, "i", sl_int(i));
      sl_map_setc(&m, "s", sl_strf("record %d of a compressible file", i));
      sl_array_push(&want, m);
    }
    snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"codec\": \"jsonl\", \"compress\": \"lz4\"}", path);
    ASSERT_OK(run_write(e, sl_value_ref(&want), "file", opts, &err), &err);
    size_t n;
    char *data = sl_test_read_file(path, &n);
    ASSERT(n > 15 && memcmp(data, "\x04\x22\x4d\x18", 4) == 0);
    ASSERT((data[4] & 0x04) != 0); /* FLG: content checksum */
    ASSERT(n < 20000 * 30);        /* compressed */
    free(data);
    snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"codec\": \"jsonl\"}", path);
    ASSERT_OK(run_read(e, "file_in", opts, &got, &err), &err);
    ASSERT_VALUE(&got, &want);
    sl_value_free(got);
    /* the lines source reads it too */
    snprintf(opts, sizeof opts, "{\"path\": \"%s\"}", path);
    ASSERT_OK(run_read(e, "lines", opts, &got, &err), &err);
    ASSERT_EQ(sl_array_len(&got), 20000);
    ASSERT_STR(sl_str_data(sl_array_get(&got, 19999)), "{\"i\":19999,\"s\":\"record 19999 of a compressible file\"}");
    sl_value_free(got);
    sl_value_free(want);
    /* an empty file is one empty frame, read back as nothing */
    snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"compress\": \"lz4\"}", path);
    ASSERT_OK(run_write(e, sl_array(0), "file", opts, &err), &err);
    data = sl_test_read_file(path, &n);
    ASSERT(n >= 7 && memcmp(data, "\x04\x22\x4d\x18", 4) == 0);
    free(data);
    snprintf(opts, sizeof opts, "{\"path\": \"%s\"}", path);
    ASSERT_OK(run_read(e, "file_in", opts, &got, &err), &err);
    ASSERT_EQ(sl_array_len(&got), 0);
    sl_value_free(got);
    sl_engine_free(e);
  }
  sl_test_rmtree(dir);
}

/* A small compressed file: every truncation fails (naming the file and the offset), and so does
 * every flipped byte of the frame, or it reads as a different plain file when the magic is hit;
 * nothing crashes. Two frames one after the other read as one stream. */
TEST(codec_lz4_corrupt_truncated) {
  char dir[64], path[128], bad[128], opts[300];
  sl_test_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/good.lz4", dir);
  snprintf(bad, sizeof bad, "%s/bad.lz4", dir);
  sl_engine *e = sl_test_engine(1, false);
  sl_error_t err;
  sl_value recs = sl_array(0), got;
  for (int i = 0; i < 50; i++) sl_array_push(&recs, sl_strf("line %d", i));
  snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"compress\": \"lz4\"}", path);
  ASSERT_OK(run_write(e, sl_value_ref(&recs), "file", opts, &err), &err);
  size_t n;
  char *data = sl_test_read_file(path, &n);
  ASSERT(n > 20 && n < 400);
  snprintf(opts, sizeof opts, "{\"path\": \"%s\"}", bad);
  for (size_t cut = 4; cut < n; cut++) {
    sl_test_write_file(bad, data, cut);
    int rc = run_read(e, "file_in", opts, &got, &err);
    sl_value_free(got);
    if (rc != SL_EFAILED) SL__FAIL("cut at %zu: rc %d", cut, rc);
    if (!strstr(err.msg, "bad.lz4") || !strstr(err.msg, "at byte ") || !strstr(err.msg, "lz4"))
      SL__FAIL("cut at %zu: %s", cut, err.msg);
  }
  int failed = 0;
  for (size_t at = 0; at < n; at++) {
    char *copy = malloc(n);
    memcpy(copy, data, n);
    copy[at] ^= 0x5a;
    sl_test_write_file(bad, copy, n);
    free(copy);
    int rc = run_read(e, "file_in", opts, &got, &err);
    if (rc == SL_EFAILED) {
      failed++;
      if (!strstr(err.msg, "bad.lz4") || !strstr(err.msg, "at byte ")) SL__FAIL("flip at %zu: %s", at, err.msg);
    } else if (at >= 4) { /* past the magic the frame is checked: header checksum, block sizes, content checksum */
      SL__FAIL("flip at %zu was not detected", at);
    }
    sl_value_free(got);
  }
  ASSERT(failed >= (int)n - 4);
  /* two frames in a row */
  char *two = malloc(2 * n);
  memcpy(two, data, n);
  memcpy(two + n, data, n);
  sl_test_write_file(bad, two, 2 * n);
  free(two);
  ASSERT_OK(run_read(e, "file_in", opts, &got, &err), &err);
  ASSERT_EQ(sl_array_len(&got), 100);
  ASSERT_VALUE(sl_array_get(&got, 99), sl_array_get(&recs, 49));
  sl_value_free(got);
  /* a frame followed by bytes that are not a frame */
  char *tail = malloc(n + 5);
  memcpy(tail, data, n);
  memcpy(tail + n, "hello", 5);
  sl_test_write_file(bad, tail, n + 5);
  free(tail);
  ASSERT_EQ(run_read(e, "file_in", opts, &got, &err), SL_EFAILED);
  ASSERT(strstr(err.msg, "corrupt lz4 data in '") && strstr(err.msg, "bad.lz4' at byte "));
  sl_value_free(got);
  free(data);
  sl_value_free(recs);
  sl_engine_free(e);
  sl_test_rmtree(dir);
}

/* The reader over a pipe: SL_EAGAIN while nothing is written, then the bytes, lz4 included. */
TEST(codec_reader_pipe) {
  int fds[2];
  ASSERT(pipe(fds) == 0);
  sl_reader *r;
  sl_error_t err;
  ASSERT_OK(sl_reader_from_fd(fds[0], "the pipe", &r, &err), &err);
  char buf[64];
  ASSERT_EQ(sl_reader_read(r, buf, sizeof buf, &err), SL_EAGAIN);
  ASSERT_EQ(write(fds[1], "ab", 2), 2);
  ASSERT_EQ(sl_reader_read(r, buf, sizeof buf, &err), SL_EAGAIN); /* fewer than 4 bytes: not decided yet */
  ASSERT_EQ(write(fds[1], "cdef", 4), 4);
  ASSERT_EQ(sl_reader_read(r, buf, sizeof buf, &err), 6);
  ASSERT(memcmp(buf, "abcdef", 6) == 0);
  ASSERT(!sl_reader_lz4(r));
  close(fds[1]);
  ASSERT_EQ(sl_reader_read(r, buf, sizeof buf, &err), 0);
  ASSERT_STR(sl_reader_name(r), "the pipe");
  sl_reader_free(r);
  close(fds[0]);
  ASSERT_EQ(sl_reader_open("/nonexistent/x", &r, &err), SL_EIO);
  ASSERT(strstr(err.msg, "cannot open '/nonexistent/x'"));
}
