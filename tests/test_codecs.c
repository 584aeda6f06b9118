/*
 * test_codecs.c — codecs, the byte reader and the file source and sink, end to end through the
 * embedding API: frames, lz4 (transparent reading, corrupt and truncated frames, the sink's
 * compress: lz4), JSON corpora from RFC 8259, CSV corpora from RFC 4180, jsonl round trips,
 * encode/decode and parse.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <unistd.h>

#include <dirent.h>
#include <pthread.h>
#include <unistd.h>

#include "codec.h"
#include "pipeline.h"
#include "reader.h"
#include "test.h"
#include "value.h"

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
    /* raw: the bytes end to end. Records of 64 KiB and more go to the file from where they are
     * (writev after what is pending), two of them in a row too */
    want = binary_records();
    sl_array_push(&want, sl_value_ref(sl_array_get(&want, 3)));
    sl_array_push(&want, sl_value_ref(sl_array_get(&want, 3)));
    snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"codec\": \"raw\"}", path);
    ASSERT_OK(run_write(e, sl_value_ref(&want), "file", opts, &err), &err);
    data = sl_test_read_file(path, &n);
    size_t off = 0;
    for (size_t i = 0; i < sl_array_len(&want); i++) {
      const sl_value *r = sl_array_get(&want, i);
      ASSERT(off + sl_str_len(r) <= n && memcmp(data + off, sl_str_data(r), sl_str_len(r)) == 0);
      off += sl_str_len(r);
    }
    ASSERT_EQ(off, n);
    free(data);
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

/* ---------------------------------------------------------------------------------------------
 * JSON (RFC 8259): the corpus in fuzz/corpus/json, y_* valid and n_* invalid texts
 * ------------------------------------------------------------------------------------------- */

/* An engine whose warnings are kept in a buffer (for counted warnings). */
typedef struct logbuf {
  pthread_mutex_t mu;
  sl_buf text;
} logbuf;

static void log_to_buf(void *ud, int level, const char *stage, const char *msg) {
  logbuf *l = ud;
  pthread_mutex_lock(&l->mu);
  sl_buf_printf(&l->text, "%d %s: %s\n", level, stage ? stage : "-", msg);
  pthread_mutex_unlock(&l->mu);
}

static sl_engine *logging_engine(int workers, logbuf *l) {
  pthread_mutex_init(&l->mu, NULL);
  sl_buf_init(&l->text);
  sl_engine_config cfg;
  sl_engine_config_init(&cfg);
  cfg.workers = workers;
  cfg.log = log_to_buf;
  cfg.log_ud = l;
  cfg.log_level = SL_LOG_WARN;
  sl_engine *e = NULL;
  if (sl_engine_new(&cfg, &e, NULL) != 0) abort();
  return e;
}

static void logbuf_close(logbuf *l) {
  sl_buf_close(&l->text);
  pthread_mutex_destroy(&l->mu);
}

TEST(codec_json_corpus) {
  char dir[400], path[700], opts[800];
  snprintf(dir, sizeof dir, "%s/fuzz/corpus/json", SL_SOURCE_DIR);
  DIR *d = opendir(dir);
  ASSERT(d);
  sl_engine *e = sl_test_engine(1, false);
  struct dirent *de;
  int valid = 0, invalid = 0;
  while ((de = readdir(d))) {
    bool y = strncmp(de->d_name, "y_", 2) == 0, n = strncmp(de->d_name, "n_", 2) == 0;
    if (!y && !n) continue;
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    size_t len;
    char *text = sl_test_read_file(path, &len);
    sl_value v, back;
    sl_error_t err;
    int rc = sl_value_from_json(text, len, &v, &err);
    if (y) {
      valid++;
      if (rc) SL__FAIL("%s: %s", de->d_name, err.msg);
      sl_buf b;
      sl_buf_init(&b);
      ASSERT_OK(sl_value_to_json(&v, &b), NULL);
      ASSERT_OK(sl_value_from_json(b.data, b.len, &back, &err), &err);
      if (!sl_value_equal(&v, &back)) SL__FAIL("%s: does not survive a round trip: %s", de->d_name, b.data);
      sl_buf_close(&b);
      sl_value_free(back);
      /* through the file source: one record, the same value */
      snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"codec\": \"json\"}", path);
      sl_value got;
      ASSERT_OK(run_read(e, "file_in", opts, &got, &err), &err);
      ASSERT_EQ(sl_array_len(&got), 1);
      if (!sl_value_equal(sl_array_get(&got, 0), &v)) SL__FAIL("%s: file_in read another value", de->d_name);
      sl_value_free(got);
      sl_value_free(v);
    } else {
      invalid++;
      if (rc != SL_EDATA) SL__FAIL("%s: accepted (rc %d)", de->d_name, rc);
      if (!strstr(err.msg, "invalid JSON at byte ")) SL__FAIL("%s: %s", de->d_name, err.msg);
    }
    free(text);
  }
  closedir(d);
  sl_engine_free(e);
  ASSERT(valid >= 25 && invalid >= 30);
}

TEST(codec_json_semantics) {
  sl_value v;
  sl_error_t err;
  uint64_t big = 0;
  /* surrogate pairs become one 4-byte UTF-8 sequence; a lone surrogate U+FFFD */
  ASSERT_OK(sl_value_from_json("\"\\ud83d\\ude00|\\udc00\"", 21, &v, &err), &err);
  ASSERT_EQ(sl_str_len(&v), 4 + 1 + 3);
  ASSERT(memcmp(sl_str_data(&v), "\xF0\x9F\x98\x80|\xEF\xBF\xBD", 8) == 0);
  sl_value_free(v);
  /* duplicate keys: the last value wins, in the first one's place */
  ASSERT_OK(sl_value_from_json("{\"a\":1,\"b\":2,\"a\":3}", 19, &v, &err), &err);
  ASSERT_EQ(sl_map_len(&v), 2);
  ASSERT_STR(sl_str_data(sl_map_key(&v, 0)), "a");
  ASSERT_EQ(sl_map_getc(&v, "a")->u.i, 3);
  sl_value_free(v);
  /* integers: int64 stays integer; beyond it a double, counted */
  const char *t = "[9223372036854775807,-9223372036854775808,9223372036854775808,-1e2,100000000000000000000000]";
  ASSERT_OK(sl__json_parse(t, strlen(t), &v, &err, &big), &err);
  ASSERT_EQ(sl_array_get(&v, 0)->type, SL_TINT);
  ASSERT_EQ(sl_array_get(&v, 0)->u.i, INT64_MAX);
  ASSERT_EQ(sl_array_get(&v, 1)->u.i, INT64_MIN);
  ASSERT_EQ(sl_array_get(&v, 2)->type, SL_TDOUBLE);
  ASSERT(sl_array_get(&v, 2)->u.d == 9223372036854775808.0);
  ASSERT_EQ(sl_array_get(&v, 3)->type, SL_TDOUBLE); /* an exponent makes a number, not a big integer */
  ASSERT_EQ(big, 2);
  sl_value_free(v);
  /* errors name the line and column when the text has several lines */
  ASSERT_EQ(sl_value_from_json("{\n  \"a\": 1,\n  \"b\" 2\n}", 21, &v, &err), SL_EDATA);
  ASSERT_STR(err.msg, "invalid JSON at byte 18 (line 3, column 7): expected ':'");
  /* through the file source: a counted warning names how many were read as doubles */
  char dir[64], path[128], opts[300];
  sl_test_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/big.jsonl", dir);
  const char *big_text = "{\"id\": 18446744073709551615}\n{\"id\": 1}\n[1e400, 99999999999999999999]\n";
  sl_test_write_file(path, big_text, strlen(big_text));
  logbuf lb;
  sl_engine *e = logging_engine(1, &lb);
  snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"codec\": \"jsonl\"}", path);
  sl_value got;
  ASSERT_OK(run_read(e, "file_in", opts, &got, &err), &err);
  ASSERT_EQ(sl_array_len(&got), 3);
  ASSERT_EQ(sl_map_getc(sl_array_get(&got, 0), "id")->type, SL_TDOUBLE);
  ASSERT_EQ(sl_map_getc(sl_array_get(&got, 1), "id")->type, SL_TINT);
  sl_value_free(got);
  sl_engine_free(e);
  ASSERT(lb.text.data && strstr(lb.text.data, "2 integer(s) too big for 64 bits were read as doubles"));
  logbuf_close(&lb);
  sl_test_rmtree(dir);
}

/* Records with every int64 edge and strings of every kind survive jsonl -> jsonl unchanged, and
 * the second file is byte for byte the first. */
TEST(codec_jsonl_roundtrip) {
  char dir[64], a[128], b[128], opts[300];
  sl_test_tmpdir(dir, sizeof dir);
  snprintf(a, sizeof a, "%s/a.jsonl", dir);
  snprintf(b, sizeof b, "%s/b.jsonl", dir);
  sl_value recs = sl_array(0);
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 3000; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    sl_value m = sl_map(4);
    int64_t edge[] = {0, 1, -1, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1, 9007199254740993};
    sl_map_setc(&m, "i", sl_int(i < 8 ? edge[i] : (int64_t)x));
    char s[40];
    size_t n = 0;
    for (int k = 0; k < 1 + i % 30; k++) { /* ASCII incl. controls, quotes and backslashes, and UTF-8 */
      unsigned c = (unsigned)((x >> (k % 8 * 8)) & 0x7f);
      s[n++] = (char)(k % 7 == 3 ? '"' : k % 11 == 5 ? '\\' : c);
    }
    sl_value str = sl_str(s, n);
    sl_map_setc(&m, "s", str);
    sl_map_setc(&m, "u", sl_cstr(i % 2 ? "\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80" : "\x7f\x01\n\t"));
    sl_value arr = sl_array(2);
    sl_array_push(&arr, sl_int(-(int64_t)i));
    sl_array_push(&arr, sl_strf("%d", i));
    sl_map_setc(&m, "a", arr);
    sl_array_push(&recs, m);
  }
  for (int workers = 1; workers <= 2; workers++) {
    sl_engine *e = sl_test_engine(workers, false);
    sl_error_t err;
    snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"codec\": \"jsonl\"}", a);
    ASSERT_OK(run_write(e, sl_value_ref(&recs), "file", opts, &err), &err);
    sl_value got;
    ASSERT_OK(run_read(e, "file_in", opts, &got, &err), &err);
    ASSERT_VALUE(&got, &recs);
    snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"codec\": \"jsonl\"}", b);
    ASSERT_OK(run_write(e, got, "file", opts, &err), &err);
    size_t na, nb;
    char *da = sl_test_read_file(a, &na), *db = sl_test_read_file(b, &nb);
    ASSERT(na == nb && memcmp(da, db, na) == 0);
    free(da);
    free(db);
    sl_engine_free(e);
  }
  sl_value_free(recs);
  sl_test_rmtree(dir);
}

/* Splitting behind (vm/cut.c): with 2 workers a `lines` source, or a jsonl file_in source, cuts
 * runs of lines and a hidden node splits (and parses) them on every worker. Records, failed
 * records and their messages, the warning and the stats are those of 1 worker, over blank and
 * CRLF lines, bad lines, big integers, a line longer than a run, no final line break; a line too
 * long fails the same. */
static int cmp_json(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorts an array of records by their JSON text. */
static void sort_by_json(sl_value *a) {
  size_t n = sl_array_len(a);
  char **t = calloc(n ? n : 1, sizeof *t);
  for (size_t i = 0; i < n; i++) {
    sl_buf b;
    sl_buf_init(&b);
    sl_value_to_json(sl_array_get(a, i), &b);
    t[i] = b.data;
  }
  qsort(t, n, sizeof *t, cmp_json);
  sl_value out = sl_array(n);
  for (size_t i = 0; i < n; i++) {
    sl_value v;
    sl_value_from_json(t[i], strlen(t[i]), &v, NULL);
    sl_array_push(&out, v);
    free(t[i]);
  }
  free(t);
  sl_value_free(*a);
  *a = out;
}

static void read_lines(int workers, const char *kind, const char *path, const char *extra, sl_value *good, sl_value *dead,
                       sl_stage_stats *st, char *warn, size_t warnlen, char *fail, size_t faillen, int *hidden) {
  logbuf lb;
  sl_engine *e = logging_engine(workers, &lb);
  sl_pipeline *p;
  sl_error_t err;
  char opts[400];
  sl_pipeline_new(e, "behind", &p, NULL);
  snprintf(opts, sizeof opts, "{\"path\": \"%s\"%s%s}", path, strcmp(kind, "lines") ? ", \"codec\": \"jsonl\"" : "", extra);
  sl_pipeline_add_json(p, kind, opts, &err);
  sl_pipeline_add_json(p, "collect", "{\"name\": \"good\"}", &err);
  sl_pipeline_add_json(p, "collect", "{\"name\": \"dead\", \"input\": []}", &err);
  sl_pipeline_set_dead_letter(p, "dead", &err);
  int rc = sl_pipeline_start(p, &err);
  *hidden = p->nhidden;
  *good = sl_array(0);
  *dead = sl_array(0);
  sl_value v;
  while (!rc && sl_collect_pull(sl_pipeline_collect(p, "good"), &v, -1) == SL_OK) sl_array_push(good, v);
  if (!rc) rc = sl_pipeline_wait(p, -1, &err);
  while (sl_collect_pull(sl_pipeline_collect(p, "dead"), &v, 0) == SL_OK) {
    sl_map_del(&v, "time", 4);
    sl_array_push(dead, v);
  }
  snprintf(fail, faillen, "%s", rc ? err.msg : "");
  sl_pipeline_stats(p, 0, st);
  sl_pipeline_free(p);
  sl_engine_free(e);
  snprintf(warn, warnlen, "%s", lb.text.data ? lb.text.data : "");
  logbuf_close(&lb);
}

TEST(codec_split_behind) {
  char dir[64], path[128];
  sl_test_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/in.jsonl", dir);
  sl_buf text;
  sl_buf_init(&text);
  for (int i = 0; i < 60000; i++) {
    if (i % 1000 == 7) sl_buf_append(&text, "\n", 1);
    else if (i % 1000 == 8) sl_buf_append(&text, " \t\r\n", 4);
    else if (i % 997 == 5) sl_buf_printf(&text, "{\"bad\": %d,}\n", i);
    else if (i % 5003 == 11) sl_buf_printf(&text, "{\"big\": 99999999999999999999%d}\r\n", i);
    else if (i == 30000) {
      sl_buf_append(&text, "{\"long\": \"", 10);
      for (int k = 0; k < 100000; k++) sl_buf_append(&text, k % 64 ? "x" : "\\n", k % 64 ? 1 : 2);
      sl_buf_append(&text, "\"}\n", 3);
    } else sl_buf_printf(&text, "{\"i\": %d, \"s\": \"v%d\"}%s\n", i, i, i % 3 ? "" : "\r");
  }
  sl_buf_append(&text, "[\"last line, no line break\"]", 28);
  sl_test_write_file(path, text.data, text.len);
  sl_value good[2], dead[2];
  sl_stage_stats st[2];
  char warn[2][2000], fail[2][1100];
  int hidden[2];
  for (int w = 0; w < 2; w++)
    read_lines(w + 1, "file_in", path, "", &good[w], &dead[w], &st[w], warn[w], sizeof warn[w], fail[w], sizeof fail[w], &hidden[w]);
  ASSERT_EQ(hidden[0], 0);
  ASSERT_EQ(hidden[1], 1);
  ASSERT_STR(fail[0], "");
  ASSERT_STR(fail[1], "");
  ASSERT(sl_array_len(&good[0]) > 58000);
  ASSERT_VALUE(&good[1], &good[0]);
  ASSERT(sl_array_len(&dead[0]) > 50);
  for (int w = 0; w < 2; w++) sort_by_json(&dead[w]); /* several instances feed the dead letter */
  ASSERT_VALUE(&dead[1], &dead[0]);
  bool line6 = false;
  for (size_t i = 0; i < sl_array_len(&dead[0]); i++)
    line6 |= strstr(sl_str_data(sl_map_getc(sl_array_get(&dead[0], i), "error")), "in.jsonl', line 6 (byte 102)") != NULL;
  ASSERT(line6);
  ASSERT_STR(warn[1], warn[0]);
  ASSERT(strstr(warn[0], "integer(s) too big for 64 bits were read as doubles"));
  ASSERT_EQ(st[1].out, st[0].out);
  ASSERT_EQ(st[1].errors, st[0].errors);
  ASSERT_EQ(st[0].out, sl_array_len(&good[0]));
  for (int w = 0; w < 2; w++) {
    sl_value_free(good[w]);
    sl_value_free(dead[w]);
  }
  /* a line longer than max_record, past the first runs: the same failure */
  for (int w = 0; w < 2; w++) {
    read_lines(w + 1, "file_in", path, ", \"max_record\": \"64KiB\"", &good[w], &dead[w], &st[w], warn[w], sizeof warn[w], fail[w],
               sizeof fail[w], &hidden[w]);
    sl_value_free(good[w]);
    sl_value_free(dead[w]);
  }
  ASSERT(strstr(fail[0], "is longer than max_record (65536 bytes); raise max_record"));
  ASSERT_STR(fail[1], fail[0]);
  /* one inside the first run (line 12 has 32 bytes) */
  for (int w = 0; w < 2; w++) {
    read_lines(w + 1, "file_in", path, ", \"max_record\": 30", &good[w], &dead[w], &st[w], warn[w], sizeof warn[w], fail[w],
               sizeof fail[w], &hidden[w]);
    sl_value_free(good[w]);
    sl_value_free(dead[w]);
  }
  ASSERT(strstr(fail[0], "in.jsonl': the line at line 12 (byte "));
  ASSERT_STR(fail[1], fail[0]);
  /* the lines source: every line a string (blank ones too, CR removed), the last without a
   * line break, a 100 KB line; with max_line 30, the same failure at line 12 */
  for (int w = 0; w < 2; w++)
    read_lines(w + 1, "lines", path, "", &good[w], &dead[w], &st[w], warn[w], sizeof warn[w], fail[w], sizeof fail[w], &hidden[w]);
  ASSERT_EQ(hidden[1], 1);
  ASSERT_STR(fail[1], "");
  ASSERT_EQ(sl_array_len(&good[0]), 60001u);
  ASSERT_VALUE(&good[1], &good[0]);
  ASSERT_STR(sl_str_data(sl_array_get(&good[0], 7)), "");
  ASSERT_STR(sl_str_data(sl_array_get(&good[0], 8)), " \t");
  ASSERT_STR(sl_str_data(sl_array_get(&good[0], 60000)), "[\"last line, no line break\"]");
  ASSERT_EQ(st[1].out, 60001u);
  for (int w = 0; w < 2; w++) {
    sl_value_free(good[w]);
    sl_value_free(dead[w]);
    read_lines(w + 1, "lines", path, ", \"max_line\": 30", &good[w], &dead[w], &st[w], warn[w], sizeof warn[w], fail[w],
               sizeof fail[w], &hidden[w]);
    sl_value_free(good[w]);
    sl_value_free(dead[w]);
  }
  ASSERT(strstr(fail[0], "line 12 of '"));
  ASSERT_STR(fail[1], fail[0]);
  sl_buf_close(&text);
  sl_test_rmtree(dir);
}

/* Encoding ahead (graph.c add_encoders): with 2 workers a file sink writing JSON gets a hidden
 * encode node in front of it and writes its text as lines. The file is byte for byte what the
 * codec writes record by record (as with 1 worker), in order, for every codec it applies to;
 * csv keeps encoding in the sink. */
TEST(codec_encode_ahead) {
  char dir[64], path[128], opts[300];
  sl_test_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/out", dir);
  sl_value recs = sl_array(0);
  for (int i = 0; i < 5000; i++) {
    switch (i % 5) {
    case 0: sl_array_push(&recs, sl_strf("line %d \"quoted\" \t\xff", i)); break;
    case 1: sl_array_push(&recs, sl_int(i)); break;
    case 2: sl_array_push(&recs, sl_double(i / 8.0)); break;
    default: {
      sl_value m = sl_map(3);
      sl_map_setc(&m, "i", sl_int(i));
      sl_map_setc(&m, "s", sl_strf("v\n%d\xc3", i));
      sl_value a = sl_array(2);
      sl_array_push(&a, sl_nil());
      sl_array_push(&a, sl_bool(i % 2));
      sl_map_setc(&m, "a", a);
      sl_array_push(&recs, m);
    }
    }
  }
  static const char *const codecs[] = {"jsonl", "json", "auto", "lines"};
  sl_engine *e2 = sl_test_engine(2, false);
  for (size_t c = 0; c < sizeof codecs / sizeof codecs[0]; c++) {
    sl_codec_opts co = {0};
    co.codec = c == 0 ? SL_CODEC_JSONL : c == 1 ? SL_CODEC_JSON : c == 2 ? SL_CODEC_AUTO : SL_CODEC_LINES;
    sl_encoder enc;
    ASSERT_EQ(sl_encoder_init(&enc, &co, NULL), 0);
    sl_buf want;
    sl_buf_init(&want);
    char msg[100];
    for (size_t i = 0; i < sl_array_len(&recs); i++) ASSERT_EQ(sl_encoder_put(&enc, &want, sl_array_get(&recs, i), true, msg, sizeof msg), 0);
    sl_encoder_close(&enc);
    snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"codec\": \"%s\"}", path, codecs[c]);
    sl_error_t err;
    ASSERT_OK(run_write(e2, sl_value_ref(&recs), "file", opts, &err), &err);
    size_t n;
    char *got = sl_test_read_file(path, &n);
    if (n != want.len || memcmp(got, want.data, n) != 0) SL__FAIL("codec %s: the file differs from the codec's text", codecs[c]);
    free(got);
    sl_buf_close(&want);
  }
  /* the graph: values -> hidden encode (every worker) -> file (lines); none for csv or 1 worker */
  for (int k = 0; k < 3; k++) {
    sl_engine *e = k == 2 ? sl_test_engine(1, false) : e2;
    sl_pipeline *p;
    sl_error_t err;
    sl_error_init(&err);
    ASSERT_EQ(sl_pipeline_new(e, "g", &p, NULL), 0);
    ASSERT_OK(sl_pipeline_add_json(p, "generate", "{\"count\": 10}", &err), &err);
    snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"codec\": \"%s\"}", path, k == 1 ? "csv" : "jsonl");
    ASSERT_OK(sl_pipeline_add_json(p, "file", opts, &err), &err);
    ASSERT_OK(sl_pipeline_start(p, &err), &err);
    sl_node *f = p->nodes[1];
    if (k == 0) {
      ASSERT_EQ(p->nhidden, 1);
      ASSERT_STR(p->nodes[2]->kind->name, "encode");
      ASSERT_EQ(p->nodes[2]->parallelism, 2);
      ASSERT(f->nin == 1 && f->in[0]->from == p->nodes[2]);
      ASSERT_STR(sl_str_data(sl_map_getc(&f->opts, "codec")), "lines");
      ASSERT_EQ(sl_pipeline_stage_count(p), 2u);
    } else {
      ASSERT_EQ(p->nhidden, 0);
      ASSERT(f->nin == 1 && f->in[0]->from == p->nodes[0]);
    }
    ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
    sl_stage_stats st;
    ASSERT_EQ(sl_pipeline_stats(p, 1, &st), 0);
    ASSERT_EQ(st.in, 10u);
    ASSERT_EQ(st.out, 10u);
    sl_pipeline_free(p);
    if (k == 2) sl_engine_free(e);
  }
  sl_engine_free(e2);
  sl_value_free(recs);
  sl_test_rmtree(dir);
}

/* A bad line fails alone (to the dead letter, with its text, line and byte); blank lines are
 * skipped; CRLF is read; invalid UTF-8 is written as U+FFFD and counted. */
TEST(codec_jsonl_errors) {
  char dir[64], path[128], out[128], json_opts[600];
  sl_test_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/in.jsonl", dir);
  snprintf(out, sizeof out, "%s/out.jsonl", dir);
  const char text[] = "{\"a\":1}\r\n\n   \n{\"a\":2,}\n[3]";
  sl_test_write_file(path, text, sizeof text - 1);
  sl_engine *e = sl_test_engine(1, false);
  sl_pipeline *p;
  sl_error_t err;
  sl_pipeline_new(e, "dl", &p, NULL);
  snprintf(json_opts, sizeof json_opts, "{\"path\": \"%s\", \"codec\": \"jsonl\"}", path);
  ASSERT_OK(sl_pipeline_add_json(p, "file_in", json_opts, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"good\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"dead\", \"input\": []}", &err), &err);
  ASSERT_OK(sl_pipeline_set_dead_letter(p, "dead", &err), &err);
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  sl_value v;
  ASSERT_OK(sl_collect_pull(sl_pipeline_collect(p, "good"), &v, 0), NULL);
  ASSERT_EQ(sl_map_getc(&v, "a")->u.i, 1);
  sl_value_free(v);
  ASSERT_OK(sl_collect_pull(sl_pipeline_collect(p, "good"), &v, 0), NULL);
  ASSERT_EQ(sl_array_get(&v, 0)->u.i, 3);
  sl_value_free(v);
  ASSERT_OK(sl_collect_pull(sl_pipeline_collect(p, "dead"), &v, 0), NULL);
  ASSERT_STR(sl_str_data(sl_map_getc(&v, "record")), "{\"a\":2,}");
  const char *msg = sl_str_data(sl_map_getc(&v, "error"));
  ASSERT(strstr(msg, "in.jsonl', line 4 (byte 14): invalid JSON at byte 7: expected a string key"));
  sl_value_free(v);
  sl_pipeline_free(p);
  sl_engine_free(e);
  /* writing: invalid UTF-8 becomes U+FFFD, and the strings so written are counted */
  logbuf lb;
  e = logging_engine(1, &lb);
  snprintf(json_opts, sizeof json_opts, "{\"path\": \"%s\", \"codec\": \"jsonl\"}", out);
  sl_value recs = sl_array(2);
  sl_array_push(&recs, sl_str("a\xff" "b", 3));
  sl_value m = sl_map(1);
  sl_map_setc(&m, "k\xc3", sl_str("\xed\xa0\x80", 3)); /* a bad key and a UTF-8 surrogate */
  sl_array_push(&recs, m);
  ASSERT_OK(run_write(e, recs, "file", json_opts, &err), &err);
  size_t n;
  char *data = sl_test_read_file(out, &n);
  ASSERT_STR(data, "\"a\xEF\xBF\xBD" "b\"\n{\"k\xEF\xBF\xBD\":\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"}\n");
  free(data);
  sl_engine_free(e);
  ASSERT(lb.text.data && strstr(lb.text.data, "3 string(s) with invalid UTF-8 were written with U+FFFD"));
  logbuf_close(&lb);
  sl_test_rmtree(dir);
}

/* ---------------------------------------------------------------------------------------------
 * CSV (RFC 4180)
 * ------------------------------------------------------------------------------------------- */

/* text read with codec csv and extra options (JSON members), through a file (file_in) or as
 * one record (decode): the records and the number of failed rows. */
static int run_csv(sl_engine *e, const char *dir, const char *text, size_t n, const char *extra, bool via_file,
                   sl_value *out, uint64_t *errors, sl_error_t *err) {
  char path[200], opts[900];
  snprintf(path, sizeof path, "%s/case.csv", dir);
  sl_pipeline *p;
  sl_error_init(err);
  sl_pipeline_new(e, "csv", &p, NULL);
  int rc;
  if (via_file) {
    sl_test_write_file(path, text, n);
    snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"codec\": \"csv\"%s%s}", path, *extra ? ", " : "", extra);
    rc = sl_pipeline_add_json(p, "file_in", opts, err);
  } else {
    sl_value o = sl_map(1), recs = sl_array(1);
    sl_array_push(&recs, sl_str(text, n));
    sl_map_setc(&o, "records", recs);
    rc = sl_pipeline_add(p, "values", o, err);
    snprintf(opts, sizeof opts, "{\"codec\": \"csv\"%s%s}", *extra ? ", " : "", extra);
    if (!rc) rc = sl_pipeline_add_json(p, "decode", opts, err);
  }
  if (!rc) rc = sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", err);
  if (!rc) rc = sl_pipeline_run(p, err);
  *out = sl_array(0);
  sl_value v;
  sl_collect *c = sl_pipeline_collect(p, "out");
  while (c && sl_collect_pull(c, &v, 0) == SL_OK) sl_array_push(out, v);
  *errors = 0;
  sl_stage_stats st;
  for (size_t i = 0; i < sl_pipeline_stage_count(p); i++)
    if (sl_pipeline_stats(p, i, &st) == 0) *errors += st.errors;
  sl_pipeline_free(p);
  return rc;
}

TEST(codec_csv_rfc4180) {
  static const struct {
    const char *text, *extra, *want;
    int errors;
    const char *want_decode; /* decode stops at a bad row (the record fails); NULL: as want */
  } cases[] = {
      {"a,b,c\n1,2,3\n", "", "[[\"a\",\"b\",\"c\"],[\"1\",\"2\",\"3\"]]", 0, NULL},
      {"a,b\r\n1,2\r\n", "", "[[\"a\",\"b\"],[\"1\",\"2\"]]", 0, NULL},                       /* CRLF (2.1) */
      {"a,b\n1,2", "", "[[\"a\",\"b\"],[\"1\",\"2\"]]", 0, NULL},                            /* no final break (2.2) */
      {"\"a,b\",\"c\"\"d\",\"e\r\nf\"\n", "", "[[\"a,b\",\"c\\\"d\",\"e\\r\\nf\"]]", 0, NULL}, /* 2.6, 2.7 */
      {"\"x\ny\nz\",2\n3,4\n", "", "[[\"x\\ny\\nz\",\"2\"],[\"3\",\"4\"]]", 0, NULL},          /* embedded newlines */
      {",,\n\"\"\n", "", "[[\"\",\"\",\"\"],[\"\"]]", 0, NULL},                              /* empty fields */
      {" a , b \n", "", "[[\" a \",\" b \"]]", 0, NULL},                                     /* spaces are part of a field (2.4) */
      {"x,y\n1,2\n3,4\n", "\"header\": true", "[{\"x\":\"1\",\"y\":\"2\"},{\"x\":\"3\",\"y\":\"4\"}]", 0, NULL}, /* 2.3 */
      {"1,2\n", "\"columns\": [\"p\", \"q\"]", "[{\"p\":\"1\",\"q\":\"2\"}]", 0, NULL},
      {"x,y\n1,2\n", "\"header\": true, \"columns\": [\"p\", \"q\"]", "[{\"p\":\"1\",\"q\":\"2\"}]", 0, NULL},
      {"a;b\t;\"c;d\"\n", "\"delimiter\": \";\"", "[[\"a\",\"b\\t\",\"c;d\"]]", 0, NULL},
      {"a\n\n\r\nb\n", "", "[[\"a\"],[\"b\"]]", 0, NULL},                                    /* blank lines skipped */
      {"a\"b,c\n", "", "[[\"a\\\"b\",\"c\"]]", 0, NULL},                                     /* a bare quote inside: kept */
      {"\"a\"b,c\n1,2\n", "", "[[\"1\",\"2\"]]", 1, "[]"},                             /* text after a closing quote */
      {"ok\n\"abc\n", "", "[[\"ok\"]]", 1, NULL},                                            /* an unclosed quote */
      {"x,y\n1,2\n3\n4,5\n", "\"header\": true", "[{\"x\":\"1\",\"y\":\"2\"},{\"x\":\"4\",\"y\":\"5\"}]", 1,
       "[{\"x\":\"1\",\"y\":\"2\"}]"},
      {"", "", "[]", 0, NULL},
  };
  char dir[64];
  sl_test_tmpdir(dir, sizeof dir);
  sl_engine *e = sl_test_engine(1, false);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    for (int via_file = 0; via_file <= 1; via_file++) {
      sl_value got, want = json(!via_file && cases[i].want_decode ? cases[i].want_decode : cases[i].want);
      uint64_t errors;
      sl_error_t err;
      int rc = run_csv(e, dir, cases[i].text, strlen(cases[i].text), cases[i].extra, via_file, &got, &errors, &err);
      if (rc) SL__FAIL("case %zu (%s): %s", i, via_file ? "file" : "decode", err.msg);
      if (!sl_value_equal(&got, &want) || errors != (uint64_t)cases[i].errors) {
        sl_buf b;
        sl_buf_init(&b);
        sl_value_to_json(&got, &b);
        SL__FAIL("case %zu (%s): got %s with %llu errors", i, via_file ? "file" : "decode", b.data,
                 (unsigned long long)errors);
      }
      sl_value_free(got);
      sl_value_free(want);
    }
  sl_engine_free(e);
  sl_test_rmtree(dir);
}

/* Written csv (quoting what needs it, a header from the first map) reads back as it was; a big
 * file with multi-line fields crosses the source's buffer boundaries. */
TEST(codec_csv_write_read) {
  char dir[64], path[128], opts[300];
  sl_test_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/out.csv", dir);
  sl_engine *e = sl_test_engine(2, false);
  sl_error_t err;
  sl_value recs = sl_array(0);
  for (int i = 0; i < 20000; i++) {
    sl_value m = sl_map(3);
    sl_map_setc(&m, "id", sl_strf("%d", i));
    sl_map_setc(&m, "text", sl_strf(i % 3 ? "plain %d" : "has \"quotes\", commas\nand a\r\nline break %d", i));
    sl_map_setc(&m, "pad", sl_cstr(i % 5 ? "" : " spaced "));
    sl_array_push(&recs, m);
  }
  snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"codec\": \"csv\", \"header\": true}", path);
  ASSERT_OK(run_write(e, sl_value_ref(&recs), "file", opts, &err), &err);
  size_t n;
  char *data = sl_test_read_file(path, &n);
  ASSERT(n > 256 * 1024);
  ASSERT(strncmp(data, "id,text,pad\n0,\"has \"\"quotes\"\", commas\nand a\r\nline break 0\",\" spaced \"\n1,plain 1,\n", 79) == 0);
  free(data);
  sl_value got;
  ASSERT_OK(run_read(e, "file_in", opts, &got, &err), &err);
  ASSERT_VALUE(&got, &recs);
  sl_value_free(got);
  /* values that are not strings: numbers as JSON, nil empty, nested as JSON text */
  snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"codec\": \"csv\"}", path);
  ASSERT_OK(run_write(e, json("[[1, 2.5, null, true, {\"a\": [1]}], \"solo\"]"), "file", opts, &err), &err);
  data = sl_test_read_file(path, &n);
  ASSERT_STR(data, "1,2.5,,true,\"{\"\"a\"\":[1]}\"\nsolo\n");
  free(data);
  sl_value_free(recs);
  sl_engine_free(e);
  sl_test_rmtree(dir);
}

/* encode then decode gives back the records, for every codec that can hold them. */
TEST(codec_encode_decode) {
  sl_engine *e = sl_test_engine(2, false);
  static const struct {
    const char *codec, *records;
  } cases[] = {
      {"json", "[{\"a\": [1, 2.5, null]}, \"s\", 7, {\"b\": {\"c\": true}}]"},
      {"jsonl", "[{\"a\": 1}, [\"x\"]]"},
      {"csv", "[[\"a,b\", \"c\\\"d\", \"e\\nf\"], [\"1\"]]"},
      {"lines", "[\"one\", \"two\"]"},
      {"frames", "[\"\", \"bin\\u0000ary\"]"},
      {"raw", "[\"as it is\"]"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char opts[100];
    snprintf(opts, sizeof opts, "{\"codec\": \"%s\"}", cases[i].codec);
    sl_pipeline *p;
    sl_error_t err;
    sl_value got, o;
    sl_pipeline_new(e, "ed", &p, NULL);
    o = sl_map(1);
    sl_map_setc(&o, "records", json(cases[i].records));
    ASSERT_OK(sl_pipeline_add(p, "values", o, &err), &err);
    ASSERT_OK(sl_pipeline_add_json(p, "encode", opts, &err), &err);
    ASSERT_OK(sl_pipeline_add_json(p, "decode", opts, &err), &err);
    ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", &err), &err);
    ASSERT_OK(sl_pipeline_run(p, &err), &err);
    got = sl_array(0);
    sl_value v;
    while (sl_collect_pull(sl_pipeline_collect(p, "out"), &v, 0) == SL_OK) sl_array_push(&got, v);
    sl_pipeline_free(p);
    sl_value want = json(cases[i].records);
    ASSERT_VALUE(&got, &want);
    sl_value_free(got);
    sl_value_free(want);
  }
  /* encode json gives the text; decode of a non-string or of bad JSON fails the record */
  sl_value got;
  sl_error_t err;
  ASSERT_OK(run_read2(e, "values", "{\"records\": [{\"k\": \"v\"}]}", "encode", "\"json\"", &got, &err), &err);
  ASSERT_STR(sl_str_data(sl_array_get(&got, 0)), "{\"k\":\"v\"}");
  sl_value_free(got);
  ASSERT_OK(run_read2(e, "values", "{\"records\": [1, \"[1,\", \"[2]\"]}", "decode", "{\"on_error\": \"skip\"}", &got, &err), &err);
  sl_value want = json("[[2]]");
  ASSERT_VALUE(&got, &want);
  sl_value_free(want);
  sl_value_free(got);
  /* configuration errors are found when the stage is added */
  sl_pipeline *p;
  sl_pipeline_new(e, "bad", &p, NULL);
  ASSERT_EQ(sl_pipeline_add_json(p, "decode", "{\"codec\": \"json\", \"header\": true}", &err), SL_ECONFIG);
  ASSERT(strstr(err.msg, "stage 'decode#1': header and columns are options of codec csv"));
  ASSERT_EQ(sl_pipeline_add_json(p, "file_in", "{\"codec\": \"csv\", \"delimiter\": \"ab\"}", &err), SL_ECONFIG);
  ASSERT(strstr(err.msg, "delimiter must be one byte"));
  ASSERT_EQ(sl_pipeline_add_json(p, "file", "{\"path\": \"x\", \"codec\": \"csv\", \"columns\": [1]}", &err), SL_ECONFIG);
  ASSERT(strstr(err.msg, "columns must be a list of names (item 1 is a int)"));
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* ---------------------------------------------------------------------------------------------
 * parse
 * ------------------------------------------------------------------------------------------- */

/* records (JSON) through parse(opts) into a collect; failed records are skipped and counted. */
static int run_parse(sl_engine *e, const char *records, const char *opts, sl_value *out, uint64_t *errors,
                     sl_error_t *err) {
  sl_pipeline *p;
  sl_error_init(err);
  sl_pipeline_new(e, "parse", &p, NULL);
  sl_value o = sl_map(1);
  sl_map_setc(&o, "records", json(records));
  int rc = sl_pipeline_add(p, "values", o, err);
  if (!rc) rc = sl_pipeline_add_json(p, "parse", opts, err);
  if (!rc) rc = sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", err);
  if (!rc) rc = sl_pipeline_run(p, err);
  *out = sl_array(0);
  sl_value v;
  sl_collect *c = sl_pipeline_collect(p, "out");
  while (c && sl_collect_pull(c, &v, 0) == SL_OK) sl_array_push(out, v);
  sl_stage_stats st;
  *errors = sl_pipeline_stats(p, 1, &st) == 0 ? st.errors : 99;
  sl_pipeline_free(p);
  return rc;
}

/* parse's own number reading (fast_number) gives what strtoll/strtod give, for every shape of
 * token: signs, leading zeros, points, long digit runs, exponents, junk. */
TEST(codec_parse_numbers) {
  sl_value toks = sl_array(0);
  uint64_t x = 0x9E3779B97F4A7C15u;
  for (int i = 0; i < 20000; i++) {
    char t[64];
    size_t n = 0;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    if (x % 5 == 0) t[n++] = '-';
    if (x % 97 == 1) t[n++] = '+';
    int id = (int)(x >> 8) % (x % 3 == 0 ? 20 : 8), fd = (int)(x >> 16) % (x % 7 == 0 ? 20 : 5);
    for (int k = 0; k < id; k++) t[n++] = (char)('0' + (x >> (k * 3 % 60)) % 10);
    if (x % 4 != 0) t[n++] = '.';
    for (int k = 0; k < fd; k++) t[n++] = (char)('0' + (x >> (k * 5 % 60)) % 10);
    if (x % 53 == 2) t[n++] = 'e', t[n++] = '7';
    if (x % 61 == 3) t[n++] = 'x';
    if (n == 0) t[n++] = '7';
    sl_array_push(&toks, sl_str(t, n));
  }
  sl_buf text;
  sl_buf_init(&text);
  sl_value_to_json(&toks, &text);
  sl_engine *e = sl_test_engine(2, false);
  static const char *const types[] = {"auto", "double", "int"};
  for (int ti = 0; ti < 3; ti++) {
    char opts[200];
    snprintf(opts, sizeof opts, "{\"format\": \"split\", \"names\": [\"x\"], \"types\": {\"x\": \"%s\"}, \"on_error\": \"skip\"}", types[ti]);
    sl_value got;
    uint64_t errors;
    sl_error_t err;
    ASSERT_OK(run_parse(e, text.data, opts, &got, &errors, &err), &err);
    size_t g = 0, nerr = 0;
    for (size_t i = 0; i < sl_array_len(&toks); i++) {
      const char *t = sl_str_data(sl_array_get(&toks, i));
      char *end;
      errno = 0;
      long long li = strtoll(t, &end, 10);
      bool is_int = *end == 0 && errno == 0 && t[0] != '+';
      double d = strtod(t, &end);
      bool is_dbl = *end == 0 && isfinite(d);
      sl_value want;
      if (ti != 1 && is_int) want = sl_int(li);
      else if (ti != 2 && is_dbl) want = sl_double(d);
      else if (ti == 0) want = sl_cstr(t);
      else {
        nerr++;
        continue;
      }
      const sl_value *rec = sl_array_get(&got, g++);
      const sl_value *v = rec ? sl_map_getc(rec, "x") : NULL;
      if (!v || !sl_value_equal(v, &want) || (v->type == SL_TDOUBLE && signbit(v->u.d) != signbit(want.u.d)))
        SL__FAIL("type %s, token '%s': not what the C library reads", types[ti], t);
      sl_value_free(want);
    }
    ASSERT_EQ(g, sl_array_len(&got));
    ASSERT_EQ(errors, nerr);
    sl_value_free(got);
  }
  sl_engine_free(e);
  sl_buf_close(&text);
  sl_value_free(toks);
}

TEST(codec_parse_formats) {
  static const struct {
    const char *records, *opts, *want;
    int errors;
  } cases[] = {
      /* split: names and types; a wrong field count or type fails the record */
      {"[\"h1 GET /x 503 120 2.5\", \"h2 GET / 200 7 0.1\", \"short line\", \"h3 GET / x 1 1\"]",
       "{\"format\": \"split\", \"names\": [\"host\",\"method\",\"path\",\"status\",\"bytes\",\"ms\"], "
       "\"types\": {\"status\": \"int\", \"bytes\": \"int\", \"ms\": \"double\"}, \"on_error\": \"skip\"}",
       "[{\"host\":\"h1\",\"method\":\"GET\",\"path\":\"/x\",\"status\":503,\"bytes\":120,\"ms\":2.5},"
       "{\"host\":\"h2\",\"method\":\"GET\",\"path\":\"/\",\"status\":200,\"bytes\":7,\"ms\":0.1}]", 2},
      /* split without names: an array; a separator of several bytes; collapse; quotes */
      {"[\"a::b::::c\"]", "{\"format\": \"split\", \"separator\": \"::\"}", "[[\"a\",\"b\",\"\",\"c\"]]", 0},
      {"[\"  a   b \"]", "{\"format\": \"split\", \"collapse\": true}", "[[\"a\",\"b\"]]", 0},
      {"[\"1 \\\"GET / HTTP/1.1\\\" \\\"say \\\\\\\"hi\\\\\\\"\\\" 2\"]",
       "{\"format\": \"split\", \"quote\": \"\\\"\", \"types\": [\"int\", \"string\", \"string\", \"auto\"]}",
       "[[1,\"GET / HTTP/1.1\",\"say \\\"hi\\\"\",2]]", 0},
      {"[\"\\\"open a\"]", "{\"format\": \"split\", \"quote\": \"\\\"\", \"on_error\": \"skip\"}", "[]", 1},
      /* regex: named groups are fields, an optional group that did not match is left out */
      {"[\"GET /a 200\", \"POST /b\", \"nope\"]",
       "{\"format\": \"regex\", \"pattern\": \"^(?<method>[A-Z]+) (?<path>\\\\S+)(?: (?<status>\\\\d+))?$\", "
       "\"types\": {\"status\": \"int\"}, \"on_error\": \"skip\"}",
       "[{\"method\":\"GET\",\"path\":\"/a\",\"status\":200},{\"method\":\"POST\",\"path\":\"/b\"}]", 1},
      {"[\"k=v 12\"]", "{\"format\": \"regex\", \"pattern\": \"(\\\\w+)=(\\\\w+) (\\\\d+)\", \"types\": [\"string\", \"string\", \"int\"]}",
       "[[\"k\",\"v\",12]]", 0},
      /* logfmt */
      {"[\"level=info msg=\\\"a \\\\\\\"quoted\\\\\\\" text\\\" n=3 ok\", \"a=\\\"open\"]",
       "{\"format\": \"logfmt\", \"types\": {\"n\": \"int\"}, \"on_error\": \"skip\"}",
       "[{\"level\":\"info\",\"msg\":\"a \\\"quoted\\\" text\",\"n\":3,\"ok\":true}]", 1},
      /* kv with chosen separators, trimmed */
      {"[\"a = 1 ; b=x;; c=2.5 ;noeq\"]",
       "{\"format\": \"kv\", \"pair_separator\": \";\", \"types\": {\"a\": \"int\", \"c\": \"double\"}}",
       "[{\"a\":1,\"b\":\"x\",\"c\":2.5}]", 0},
      /* json: the record, or a field decoded in place */
      {"[\"{\\\"a\\\": [1, 2]}\", \"[1,\"]", "{\"format\": \"json\", \"on_error\": \"skip\"}", "[{\"a\":[1,2]}]", 1},
      {"[{\"msg\": \"{\\\"x\\\": 1}\", \"id\": 7}, {\"id\": 8}, {\"msg\": 5}]",
       "{\"format\": \"json\", \"field\": \"msg\", \"on_error\": \"skip\"}", "[{\"msg\":{\"x\":1},\"id\":7}]", 2},
      /* a field parsed into the record */
      {"[{\"line\": \"a=1\", \"id\": 7}]", "{\"format\": \"logfmt\", \"field\": \"line\"}",
       "[{\"line\":\"a=1\",\"id\":7,\"a\":\"1\"}]", 0},
  };
  sl_engine *e = sl_test_engine(2, false);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sl_value got, want = json(cases[i].want);
    uint64_t errors;
    sl_error_t err;
    int rc = run_parse(e, cases[i].records, cases[i].opts, &got, &errors, &err);
    if (rc) SL__FAIL("case %zu: %s", i, err.msg);
    if (!sl_value_equal(&got, &want) || errors != (uint64_t)cases[i].errors) {
      sl_buf b;
      sl_buf_init(&b);
      sl_value_to_json(&got, &b);
      SL__FAIL("case %zu: got %s with %llu errors", i, b.data, (unsigned long long)errors);
    }
    sl_value_free(got);
    sl_value_free(want);
  }
  sl_engine_free(e);
}

/* The message of a record that does not parse reaches the dead letter; bad options are found
 * when the stage is added. */
TEST(codec_parse_errors) {
  sl_engine *e = sl_test_engine(1, false);
  sl_pipeline *p;
  sl_error_t err;
  sl_pipeline_new(e, "p", &p, NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "values", "{\"records\": [\"a b\"]}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "parse", "{\"format\": \"split\", \"names\": [\"x\", \"y\", \"z\"]}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "null", "{}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"dead\", \"input\": []}", &err), &err);
  ASSERT_OK(sl_pipeline_set_dead_letter(p, "dead", &err), &err);
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  sl_value v;
  ASSERT_OK(sl_collect_pull(sl_pipeline_collect(p, "dead"), &v, 0), NULL);
  ASSERT_STR(sl_str_data(sl_map_getc(&v, "error")), "parse split: 2 fields where 3 are named");
  ASSERT_STR(sl_str_data(sl_map_getc(&v, "record")), "a b");
  sl_value_free(v);
  sl_pipeline_free(p);
  static const struct {
    const char *opts, *msg;
  } bad[] = {
      {"{\"format\": \"regex\", \"pattern\": \"(x\"}", "stage 'parse#1': pattern: missing closing parenthesis at offset 2"},
      {"{\"format\": \"regex\"}", "format regex needs a pattern"},
      {"{\"format\": \"kv\", \"names\": [\"a\"]}", "separator, collapse, quote and names are options of format split"},
      {"{\"format\": \"split\", \"types\": {\"a\": \"float\"}, \"names\": [\"a\"]}", "types: 'a' must be int, double, bool, string, json or auto"},
      {"{\"format\": \"split\", \"quote\": \"ab\"}", "quote must be one byte"},
      {"{\"format\": \"split\", \"names\": [\"a\", \"b\", \"a\"]}", "names: 'a' is named twice (items 1 and 3)"},
      {"{\"format\": \"csv\"}", "split|regex|logfmt|kv|json"},
      {"{}", "format"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    sl_pipeline_new(e, "p", &p, NULL);
    int rc = sl_pipeline_add_json(p, "parse", bad[i].opts, &err);
    if (rc != SL_ECONFIG || !strstr(err.msg, bad[i].msg)) SL__FAIL("case %zu: rc %d: %s", i, rc, err.msg);
    sl_pipeline_free(p);
  }
  sl_engine_free(e);
}
