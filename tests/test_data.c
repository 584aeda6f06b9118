/*
 * test_data.c — the data stages through the embedding API: read (chunks, index, offset, last),
 * compress/decompress (round trips, corrupt frames), hash (known digests, verify), and
 * encrypt/decrypt (round trips with a key and a passphrase on 1 and 2 workers; every kind of
 * tampering fails with an error naming the chunk).
 */
#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include <mbedtls/gcm.h>

#include "crypt.h"
#include "test.h"

/* ---- helpers ---- */

typedef struct step {
  const char *kind;
  const char *json; /* options, or NULL */
} step;

/* One engine per worker count, shared by the many small runs of a test (engines_free at its end). */
static sl_engine *engines[3];

static void engines_free(void) {
  for (int i = 0; i < 3; i++) {
    if (engines[i]) sl_engine_free(engines[i]);
    engines[i] = NULL;
  }
}

/* Runs values(in) -> steps... -> collect, on `workers` (1 or 2) workers; *out gets the collected
 * records (an array). Returns the run's result; err says why it failed. */
static int run_steps(int workers, sl_value in, const step *steps, size_t n, sl_value *out, sl_error_t *err) {
  if (!engines[workers]) engines[workers] = sl_test_engine(workers, false);
  sl_engine *e = engines[workers];
  sl_pipeline *p = NULL;
  sl_pipeline_new(e, "data", &p, NULL);
  sl_value opts = sl_map(1);
  sl_map_setc(&opts, "records", in);
  int rc = sl_pipeline_add(p, "values", opts, err);
  for (size_t i = 0; i < n && !rc; i++) rc = sl_pipeline_add_json(p, steps[i].kind, steps[i].json, err);
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

/* Deterministic bytes: a pseudo-random mix with runs, so lz4 has something to find. */
static char *make_bytes(size_t n, unsigned seed) {
  char *b = malloc(n ? n : 1);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    x = x * 1103515245u + 12345u;
    b[i] = (i / 16) % 3 == 0 ? (char)('a' + i % 7) : (char)(x >> 24);
  }
  return b;
}

/* Chunk records as read makes them: {data, index, offset, last}. */
static sl_value chunks_of(const char *b, size_t n, size_t size) {
  sl_value a = sl_array(0);
  size_t i = 0, off = 0;
  do {
    size_t len = n - off < size ? n - off : size;
    sl_value m = sl_map(4);
    sl_map_setc(&m, "data", sl_str(b + off, len));
    sl_map_setc(&m, "index", sl_int((int64_t)i));
    sl_map_setc(&m, "offset", sl_int((int64_t)off));
    sl_map_setc(&m, "last", sl_bool(off + len == n));
    sl_array_push(&a, m);
    off += len;
    i++;
  } while (off < n);
  return a;
}

/* The bytes of the collected records (strings, or maps with data) put end to end. */
static bool joined_equal(const sl_value *a, const char *want, size_t n) {
  size_t off = 0;
  for (size_t i = 0; i < sl_array_len(a); i++) {
    const sl_value *r = sl_array_get(a, i);
    if (r->type == SL_TMAP) r = sl_map_getc(r, "data");
    if (!r || r->type != SL_TSTR) return false;
    size_t len = sl_str_len(r);
    if (off + len > n || memcmp(want + off, sl_str_data(r), len) != 0) return false;
    off += len;
  }
  return off == n;
}

static sl_value copy_array(const sl_value *a, size_t from, size_t to) {
  sl_value c = sl_array(0);
  for (size_t i = from; i < to && i < sl_array_len(a); i++) sl_array_push(&c, sl_value_ref(sl_array_get(a, i)));
  return c;
}

#define KEY_HEX "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define KEY2_HEX "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
static const char *const enc_key = "{\"key_env\": \"SL_TEST_KEY\"}";
static const char *const dec_key = "{\"key_env\": \"SL_TEST_KEY\", \"on_error\": \"fail\"}";

/* Seals n bytes in chunks of size with encrypt (options json) on `workers` workers. */
static int seal(int workers, const char *b, size_t n, size_t size, const char *json, sl_value *out, sl_error_t *err) {
  step s[] = {{"compress", NULL}, {"encrypt", json}};
  return run_steps(workers, chunks_of(b, n, size), s, 2, out, err);
}

/* Opens sealed records with decrypt (options json); *out the plaintext chunks. */
static int open_sealed(int workers, const sl_value *sealed, const char *json, sl_value *out, sl_error_t *err) {
  step s[] = {{"decrypt", json}, {"decompress", NULL}};
  return run_steps(workers, sl_value_ref(sealed), s, 2, out, err);
}

/* ---- read ---- */

TEST(data_read_chunks) {
  char dir[] = "/tmp/sluice-data-XXXXXX", path[64];
  ASSERT(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/in.bin", dir);
  /* chunks of 4 bytes live inside the value, chunks of 20 on the heap, chunks of 64 KiB are
   * read on the engine's I/O thread (ends of file inside a chunk and on a chunk boundary) */
  static const size_t sizes[] = {0, 1, 4, 8, 10, 0, 1, 20, 40, 50, 0, 1, 65536, 65537, 262144, 300000};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k], cs = k < 5 ? 4 : k < 10 ? 20 : 65536;
    char *b = make_bytes(n, 7);
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
    sl_engine *e = sl_test_engine(2, false);
    sl_pipeline *p;
    sl_error_t err;
    sl_pipeline_new(e, "read", &p, NULL);
    char json[200];
    snprintf(json, sizeof json, "{\"path\": \"%s\", \"size\": %d}", path, (int)cs);
    ASSERT_OK(sl_pipeline_add_json(p, "read", json, &err), &err);
    ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", &err), &err);
    ASSERT_OK(sl_pipeline_run(p, &err), &err);
    sl_value a = sl_array(0), v;
    while (sl_collect_pull(sl_pipeline_collect(p, "out"), &v, 0) == SL_OK) sl_array_push(&a, v);
    sl_pipeline_free(p);
    sl_engine_free(e);
    size_t want = n ? (n + cs - 1) / cs : 1;
    ASSERT_EQ(sl_array_len(&a), want);
    for (size_t i = 0; i < want; i++) {
      const sl_value *r = sl_array_get(&a, i);
      ASSERT_EQ(sl_map_getc(r, "index")->u.i, i);
      ASSERT_EQ(sl_map_getc(r, "offset")->u.i, cs * i);
      ASSERT_EQ(sl_map_getc(r, "last")->u.b, i == want - 1);
      ASSERT_EQ(sl_str_len(sl_map_getc(r, "data")), i < want - 1 || n % cs == 0 ? (n ? cs : 0) : n % cs);
    }
    ASSERT(joined_equal(&a, b, n));
    sl_value_free(a);
    free(b);
  }
  unlink(path);
  /* a missing file is an error at start that names it */
  sl_engine *e = sl_test_engine(1, false);
  sl_pipeline *p;
  sl_error_t err;
  sl_error_init(&err);
  sl_pipeline_new(e, "read", &p, NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "read", "{\"path\": \"/nonexistent/x.bin\"}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "null", NULL, &err), &err);
  ASSERT(sl_pipeline_run(p, &err) != 0);
  ASSERT(strstr(err.msg, "cannot open '/nonexistent/x.bin'"));
  sl_pipeline_free(p);
  sl_engine_free(e);
  rmdir(dir);
}

/* A "hold" transform: keeps every record it gets (so the bytes of a read chunk stay referenced,
 * as by a stage that holds chunks back) unless the record has no `data` (compress took it), and
 * emits [index, engine clock in ms] for each. */
typedef struct hold {
  sl_stage *st;
  sl_value kept; /* array */
} hold;

static int hold_init(void *ctx, sl_stage *st, sl_error_t *err) {
  hold *h = ctx;
  h->st = st;
  h->kept = sl_array(0);
  return 0;
}

static int hold_process(void *ctx, sl_batch *in, sl_emitter *em) {
  hold *h = ctx;
  for (uint32_t i = 0; i < in->len; i++) {
    sl_value a = sl_array(2);
    sl_array_push(&a, sl_value_ref(sl_map_getc(&in->recs[i], "index")));
    sl_array_push(&a, sl_int(sl_stage_now(h->st) / 1000000));
    sl_array_push(&h->kept, sl_batch_take(in, i));
    sl_emit(em, SL_NO_ORIGIN, a);
  }
  return 0;
}

static void hold_destroy(void *ctx) { sl_value_free(((hold *)ctx)->kept); }

static const sl_stage_kind hold_kind = {
    .abi = SL_STAGE_ABI, .name = "hold", .doc = "test: keeps its records, emits [index, ms]",
    .ctx_size = sizeof(hold), .init = hold_init, .process = hold_process, .destroy = hold_destroy,
};

/* read with ahead 2 over 10 chunks of 100 bytes, then (compress and) hold, on the virtual clock:
 * the [index, ms] pairs hold collected. */
static char *read_ahead_run(const char *path, bool compress) {
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  if (sl_engine_register(e, &hold_kind, &err)) return NULL;
  sl_pipeline *p;
  sl_pipeline_new(e, "ahead", &p, NULL);
  char json[300];
  snprintf(json, sizeof json, "{\"path\": \"%s\", \"size\": 100, \"ahead\": 2}", path);
  int rc = sl_pipeline_add_json(p, "read", json, &err);
  if (!rc && compress) rc = sl_pipeline_add_json(p, "compress", "{\"parallelism\": 1}", &err);
  if (!rc) rc = sl_pipeline_add_json(p, "hold", NULL, &err);
  if (!rc) rc = sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", &err);
  if (!rc) rc = sl_pipeline_run(p, &err);
  sl_buf b;
  sl_buf_init(&b);
  sl_value a = sl_array(0), v;
  while (!rc && sl_collect_pull(sl_pipeline_collect(p, "out"), &v, 0) == SL_OK) sl_array_push(&a, v);
  if (rc) fprintf(stderr, "    %s\n", err.msg);
  else sl_value_to_json(&a, &b);
  sl_value_free(a);
  sl_pipeline_free(p);
  sl_engine_free(e);
  return b.data;
}

/* The read-ahead window: read emits a new chunk only while fewer than `ahead` chunks' bytes are
 * still referenced downstream. A stage that keeps them all shuts the window until no chunk was
 * let go for 100 ms (virtual), then the window doubles (2, 4, 8, 16): the pipeline never waits
 * for ever. When compress lets every chunk's bytes go, the source reads on at its 1 ms look
 * (no growth: two chunks at a time). */
TEST(data_read_ahead) {
  char dir[64], path[96];
  sl_test_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/in.bin", dir);
  char *b = make_bytes(1000, 3);
  sl_test_write_file(path, b, 1000);
  free(b);
  char *held = read_ahead_run(path, false);
  ASSERT(held);
  ASSERT_STR(held, "[[0,0],[1,0],[2,100],[3,100],[4,200],[5,200],[6,200],[7,200],[8,300],[9,300]]");
  free(held);
  char *let_go = read_ahead_run(path, true);
  ASSERT(let_go);
  ASSERT_STR(let_go, "[[0,0],[1,0],[2,1],[3,1],[4,2],[5,2],[6,3],[7,3],[8,4],[9,4]]");
  free(let_go);
  sl_test_rmtree(dir);
}

/* ---- the engine's I/O thread (vm/bio.h): at 1 worker (with a CPU to spare), or inline ---- */

/* Big strings written as frames by the file sink and read back by file_in (straight into their
 * strings), a file read in 64 KiB chunks, and a run aborted while its writes wait: one engine
 * runs them all, then is freed (its I/O thread joined). */
TEST(data_io_thread) {
  char dir[64], frames[96], bin[96], big[96];
  sl_test_tmpdir(dir, sizeof dir);
  snprintf(frames, sizeof frames, "%s/recs.frames", dir);
  snprintf(bin, sizeof bin, "%s/in.bin", dir);
  snprintf(big, sizeof big, "%s/big.out", dir);
  char *b = make_bytes(1 << 20, 5);
  sl_test_write_file(bin, b, 1 << 20);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int counts[] = {1, cpus > 1 ? (int)cpus : 2};
  for (int k = 0; k < 2; k++) {
    sl_engine *e = sl_test_engine(counts[k], false);
    sl_error_t err;
    for (int round = 0; round < 2; round++) { /* the thread outlives a pipeline */
      sl_pipeline *p;
      sl_pipeline_new(e, "write", &p, NULL);
      sl_value recs = sl_array(40);
      for (int i = 0; i < 40; i++) sl_array_push(&recs, sl_str(b + i * 20000, 20000 + (size_t)i));
      sl_value opts = sl_map(1);
      sl_map_setc(&opts, "records", sl_value_ref(&recs));
      ASSERT_OK(sl_pipeline_add(p, "values", opts, &err), &err);
      char json[200];
      snprintf(json, sizeof json, "{\"path\": \"%s\", \"codec\": \"frames\"}", frames);
      ASSERT_OK(sl_pipeline_add_json(p, "file", json, &err), &err);
      ASSERT_OK(sl_pipeline_run(p, &err), &err);
      sl_pipeline_free(p);
      sl_pipeline_new(e, "read back", &p, NULL);
      ASSERT_OK(sl_pipeline_add_json(p, "file_in", (snprintf(json, sizeof json, "{\"path\": \"%s\", \"codec\": \"frames\"}", frames), json), &err), &err);
      ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", &err), &err);
      ASSERT_OK(sl_pipeline_start(p, &err), &err);
      sl_value got = sl_array(0), v;
      while (sl_collect_pull(sl_pipeline_collect(p, "out"), &v, -1) == SL_OK) sl_array_push(&got, v);
      ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
      sl_pipeline_free(p);
      ASSERT(sl_value_equal(&got, &recs));
      sl_value_free(got);
      sl_value_free(recs);
    }
    sl_pipeline *p;
    sl_pipeline_new(e, "chunks", &p, NULL);
    char json[200];
    snprintf(json, sizeof json, "{\"path\": \"%s\", \"size\": \"64KiB\"}", bin);
    ASSERT_OK(sl_pipeline_add_json(p, "read", json, &err), &err);
    ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\"}", &err), &err);
    ASSERT_OK(sl_pipeline_start(p, &err), &err);
    sl_value chunks = sl_array(0), v;
    while (sl_collect_pull(sl_pipeline_collect(p, "out"), &v, -1) == SL_OK) sl_array_push(&chunks, v);
    ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
    sl_pipeline_free(p);
    ASSERT_EQ(sl_array_len(&chunks), 16);
    ASSERT(joined_equal(&chunks, b, 1 << 20));
    sl_value_free(chunks);
    /* aborted while writes wait: neither the output nor its temporary file is left */
    sl_pipeline_new(e, "aborted", &p, NULL);
    sl_value recs = sl_array(200);
    for (int i = 0; i < 200; i++) sl_array_push(&recs, sl_str(b, 1 << 19));
    sl_value opts = sl_map(1);
    sl_map_setc(&opts, "records", recs);
    ASSERT_OK(sl_pipeline_add(p, "values", opts, &err), &err);
    snprintf(json, sizeof json, "{\"path\": \"%s\", \"codec\": \"raw\"}", big);
    ASSERT_OK(sl_pipeline_add_json(p, "file", json, &err), &err);
    ASSERT_OK(sl_pipeline_start(p, &err), &err);
    sl_pipeline_abort(p);
    sl_pipeline_wait(p, -1, NULL);
    sl_pipeline_free(p);
    ASSERT(access(big, F_OK) != 0);
    sl_engine_free(e);
    unlink(frames);
    DIR *d = opendir(dir); /* in.bin alone */
    ASSERT(d);
    int n = 0;
    for (struct dirent *de; (de = readdir(d));) n += de->d_name[0] != '.';
    closedir(d);
    ASSERT_EQ(n, 1);
  }
  free(b);
  sl_test_rmtree(dir);
}

/* ---- compress / decompress ---- */

TEST(data_compress_roundtrip) {
  static const size_t sizes[] = {0, 1, 13, 14, 1000, 300000};
  for (int workers = 1; workers <= 2; workers++)
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
      size_t n = sizes[k];
      char *b = make_bytes(n, (unsigned)k);
      step s[] = {{"compress", NULL}, {"decompress", NULL}};
      sl_value out;
      sl_error_t err;
      ASSERT_OK(run_steps(workers, chunks_of(b, n, 4096), s, 2, &out, &err), &err);
      ASSERT(joined_equal(&out, b, n));
      sl_value_free(out);
      /* string records work whole, and compression shrinks repetitive text */
      sl_value in = sl_array(1);
      sl_array_push(&in, sl_str(b, n));
      step c[] = {{"compress", "{\"level\": 9}"}};
      ASSERT_OK(run_steps(workers, in, c, 1, &out, &err), &err);
      ASSERT_EQ(sl_array_len(&out), 1);
      ASSERT(sl_str_len(sl_array_get(&out, 0)) > 0);
      sl_value z = out;
      ASSERT_OK(run_steps(workers, z, s + 1, 1, &out, &err), &err);
      ASSERT_EQ(sl_str_len(sl_array_get(&out, 0)), n);
      ASSERT(n == 0 || memcmp(sl_str_data(sl_array_get(&out, 0)), b, n) == 0);
      sl_value_free(out);
      free(b);
    }
  engines_free();
}

TEST(data_decompress_corrupt) {
  size_t n = 300;
  char *b = make_bytes(n, 3);
  sl_value in = sl_array(1), z;
  sl_array_push(&in, sl_str(b, n));
  step c[] = {{"compress", NULL}};
  sl_error_t err;
  ASSERT_OK(run_steps(1, in, c, 1, &z, &err), &err);
  const sl_value *frame = sl_array_get(&z, 0);
  size_t fl = sl_str_len(frame);
  /* every single-byte flip, every truncation and trailing garbage: a failed record, never a crash */
  for (size_t pos = 0; pos <= fl + 1; pos++) {
    char *m = malloc(fl + 1);
    memcpy(m, sl_str_data(frame), fl);
    size_t ml = fl;
    if (pos < fl) m[pos] ^= 0x40;
    else if (pos == fl) ml = fl / 2;
    else m[ml++] = 'x';
    sl_value one = sl_array(1), out;
    sl_array_push(&one, sl_str(m, ml));
    step d[] = {{"decompress", "{\"on_error\": \"fail\"}"}};
    sl_error_init(&err);
    int rc = run_steps(1, one, d, 1, &out, &err);
    /* a flip in the frame descriptor's unused bits may still decode: then it must be exact */
    if (rc == SL_OK) {
      ASSERT(pos < fl);
      ASSERT_EQ(sl_array_len(&out), 1);
      ASSERT_EQ(sl_str_len(sl_array_get(&out, 0)), n);
      ASSERT(memcmp(sl_str_data(sl_array_get(&out, 0)), b, n) == 0);
    } else {
      ASSERT_EQ(rc, SL_EFAILED);
      ASSERT(strstr(err.msg, "cannot decompress"));
    }
    sl_value_free(out);
    free(m);
  }
  /* on_error skip: bad records are counted and the good ones pass */
  sl_value mix = sl_array(3), out;
  sl_array_push(&mix, sl_str("not lz4 at all", 14));
  sl_array_push(&mix, sl_value_ref(frame));
  sl_array_push(&mix, sl_int(5));
  step d[] = {{"decompress", "{\"on_error\": \"skip\"}"}};
  ASSERT_OK(run_steps(2, mix, d, 1, &out, &err), &err);
  ASSERT_EQ(sl_array_len(&out), 1);
  ASSERT_EQ(sl_str_len(sl_array_get(&out, 0)), n);
  sl_value_free(out);
  /* max_size guards against bombs */
  sl_value one = sl_array(1);
  sl_array_push(&one, sl_value_ref(frame));
  step small[] = {{"decompress", "{\"max_size\": 100, \"on_error\": \"fail\"}"}};
  sl_error_init(&err);
  ASSERT_EQ(run_steps(1, one, small, 1, &out, &err), SL_EFAILED);
  ASSERT(strstr(err.msg, "more than max_size"));
  sl_value_free(out);
  sl_value_free(z);
  free(b);
  engines_free();
}

/* ---- hash ---- */

TEST(data_hash) {
  sl_value in = sl_array(2), out;
  sl_array_push(&in, sl_str("abc", 3));
  sl_value m = sl_map(1);
  sl_map_setc(&m, "msg", sl_str("abc", 3));
  sl_array_push(&in, m);
  sl_error_t err;
  step s[] = {{"hash", NULL}, {"hash", "{\"algorithm\": \"sha512\", \"field\": \"data\", \"to\": \"d512\", \"encoding\": \"bytes\"}"}};
  /* the second record has no data: its sha512 fails (skip) */
  ASSERT_OK(run_steps(2, in, s, 2, &out, &err), &err);
  ASSERT_EQ(sl_array_len(&out), 1);
  const sl_value *r = sl_array_get(&out, 0);
  ASSERT_STR(sl_str_data(sl_map_getc(r, "data")), "abc");
  ASSERT_STR(sl_str_data(sl_map_getc(r, "sha256")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const sl_value *d = sl_map_getc(r, "d512");
  ASSERT_EQ(sl_str_len(d), 64);
  ASSERT_EQ((uint8_t)sl_str_data(d)[0], 0xdd);
  ASSERT_EQ((uint8_t)sl_str_data(d)[63], 0x9f);
  /* verify: the digest of field data matches; a modified record fails with the digests */
  sl_value good = sl_value_ref(r), bad = sl_value_ref(r);
  sl_map_setc(&bad, "data", sl_str("abd", 3));
  sl_value two = sl_array(2);
  sl_array_push(&two, good);
  sl_array_push(&two, bad);
  step v[] = {{"hash", "{\"field\": \"data\", \"verify\": true, \"name\": \"check\"}"}};
  sl_value out2;
  ASSERT_OK(run_steps(1, two, v, 1, &out2, &err), &err);
  ASSERT_EQ(sl_array_len(&out2), 1);
  ASSERT_STR(sl_str_data(sl_map_getc(sl_array_get(&out2, 0), "data")), "abc");
  sl_value_free(out2);
  two = sl_array(1);
  sl_value bad2 = sl_value_ref(r);
  sl_map_setc(&bad2, "data", sl_str("abd", 3));
  sl_array_push(&two, bad2);
  step vf[] = {{"hash", "{\"field\": \"data\", \"verify\": true, \"on_error\": \"fail\"}"}};
  sl_error_init(&err);
  ASSERT_EQ(run_steps(1, two, vf, 1, &out2, &err), SL_EFAILED);
  ASSERT(strstr(err.msg, "sha256 mismatch") && strstr(err.msg, "differs"));
  sl_value_free(out2);
  /* a whole map is hashed as JSON without its digest key, so verify agrees with attach */
  two = sl_array(1);
  sl_value mm = sl_map(2);
  sl_map_setc(&mm, "a", sl_int(1));
  sl_map_setc(&mm, "b", sl_str("x", 1));
  sl_array_push(&two, mm);
  step av[] = {{"hash", NULL}, {"hash", "{\"verify\": true, \"on_error\": \"fail\"}"}};
  ASSERT_OK(run_steps(2, two, av, 2, &out2, &err), &err);
  ASSERT_EQ(sl_array_len(&out2), 1);
  /* sha256 of {"a":1,"b":"x"} */
  ASSERT_STR(sl_str_data(sl_map_getc(sl_array_get(&out2, 0), "sha256")), "ecf9e98ec0641e23113ff3ce8bdc78d0ddd249886517fd4a7f68cc83d4e65667");
  sl_value_free(out2);
  sl_value_free(out);
  engines_free();
}

/* ---- encrypt / decrypt ---- */

TEST(data_encrypt_roundtrip) {
  setenv("SL_TEST_KEY", KEY_HEX, 1);
  setenv("SL_TEST_PASS", "correct horse battery staple", 1);
  static const size_t sizes[] = {0, 1, 64, 65, 1000};
  for (int workers = 1; workers <= 2; workers++)
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
      size_t n = sizes[k];
      char *b = make_bytes(n, (unsigned)k + 11);
      sl_value sealed, out;
      sl_error_t err;
      ASSERT_OK(seal(workers, b, n, 64, enc_key, &sealed, &err), &err);
      size_t nchunks = n ? (n + 63) / 64 : 1;
      ASSERT_EQ(sl_array_len(&sealed), nchunks + 1); /* the header, then the chunks */
      ASSERT_EQ(sl_str_len(sl_array_get(&sealed, 0)), 80);
      ASSERT(memcmp(sl_str_data(sl_array_get(&sealed, 0)), "SLUICE.e", 8) == 0);
      ASSERT_OK(open_sealed(workers, &sealed, dec_key, &out, &err), &err);
      ASSERT(joined_equal(&out, b, n));
      sl_value_free(out);
      sl_value_free(sealed);
      /* with a passphrase (a small Argon2id cost keeps the test fast) */
      ASSERT_OK(seal(workers, b, n, 64, "{\"passphrase_env\": \"SL_TEST_PASS\", \"kdf_memory\": \"64KiB\", \"kdf_iterations\": 1, \"kdf_lanes\": 1}",
                     &sealed, &err), &err);
      ASSERT_OK(open_sealed(workers, &sealed, "{\"passphrase_env\": \"SL_TEST_PASS\"}", &out, &err), &err);
      ASSERT(joined_equal(&out, b, n));
      sl_value_free(out);
      sl_value_free(sealed);
      free(b);
    }
  /* two runs never produce the same bytes (random salt and prefix) */
  sl_value s1, s2;
  sl_error_t err;
  ASSERT_OK(seal(1, "same", 4, 64, enc_key, &s1, &err), &err);
  ASSERT_OK(seal(1, "same", 4, 64, enc_key, &s2, &err), &err);
  ASSERT(!sl_value_equal(sl_array_get(&s1, 1), sl_array_get(&s2, 1)));
  sl_value_free(s1);
  sl_value_free(s2);
  engines_free();
}

/* Expects decrypt to fail on `sealed`, with every word of `want` in the message. */
static void expect_fail(int workers, const sl_value *sealed, const char *json, const char *want, const char *what) {
  sl_value out;
  sl_error_t err;
  sl_error_init(&err);
  int rc = open_sealed(workers, sealed, json, &out, &err);
  sl_value_free(out);
  if (rc != SL_EFAILED || !strstr(err.msg, want)) {
    fprintf(stderr, "    %s (workers %d): rc %d, message '%s', want '%s'\n", what, workers, rc, err.msg, want);
    sl_test_failed = 1;
  }
}

TEST(data_decrypt_tamper) {
  setenv("SL_TEST_KEY", KEY_HEX, 1);
  size_t n = 64 * 3 + 10; /* 4 chunks */
  char *b = make_bytes(n, 5);
  sl_value sealed;
  sl_error_t err;
  ASSERT_OK(seal(2, b, n, 64, enc_key, &sealed, &err), &err);
  size_t nrec = sl_array_len(&sealed);
  ASSERT_EQ(nrec, 5);
  for (int workers = 1; workers <= 2 && !sl_test_failed; workers++) {
    /* every byte of every record flipped (on 2 workers: the parallel path) */
    for (size_t r = 0; r < nrec && workers == 2; r++) {
      const sl_value *rec = sl_array_get(&sealed, r);
      for (size_t pos = 0; pos < sl_str_len(rec); pos++) {
        sl_value t = copy_array(&sealed, 0, nrec);
        char *m = malloc(sl_str_len(rec));
        memcpy(m, sl_str_data(rec), sl_str_len(rec));
        m[pos] ^= 0x01;
        sl_array_set(&t, r, sl_str(m, sl_str_len(rec)));
        free(m);
        expect_fail(workers, &t, dec_key, r == 0 ? "header" : "chunk", "flipped byte");
        sl_value_free(t);
        if (sl_test_failed) break;
      }
    }
    /* each chunk dropped; the header dropped */
    for (size_t r = 0; r < nrec; r++) {
      sl_value t = copy_array(&sealed, 0, r), rest = copy_array(&sealed, r + 1, nrec);
      for (size_t i = 0; i < sl_array_len(&rest); i++) sl_array_push(&t, sl_value_ref(sl_array_get(&rest, i)));
      sl_value_free(rest);
      expect_fail(workers, &t, dec_key, r == 0 ? "header" : "chunk", "dropped");
      sl_value_free(t);
    }
    /* two chunks swapped, a chunk duplicated */
    for (size_t r = 1; r + 1 < nrec; r++) {
      sl_value t = copy_array(&sealed, 0, nrec);
      sl_array_set(&t, r, sl_value_ref(sl_array_get(&sealed, r + 1)));
      sl_array_set(&t, r + 1, sl_value_ref(sl_array_get(&sealed, r)));
      expect_fail(workers, &t, dec_key, "chunk", "swapped");
      sl_value_free(t);
      t = copy_array(&sealed, 0, r + 1);
      for (size_t i = r; i < nrec; i++) sl_array_push(&t, sl_value_ref(sl_array_get(&sealed, i)));
      expect_fail(workers, &t, dec_key, "chunk", "duplicated");
      sl_value_free(t);
    }
    /* truncated at every chunk boundary */
    for (size_t r = 0; r < nrec; r++) {
      sl_value t = copy_array(&sealed, 0, r);
      expect_fail(workers, &t, dec_key, r == 0 ? "no encryption header" : "cut short", "truncated");
      sl_value_free(t);
    }
    /* wrong key; a passphrase for a key-sealed stream */
    setenv("SL_TEST_KEY2", KEY2_HEX, 1);
    setenv("SL_TEST_PASS", "pw", 1);
    expect_fail(workers, &sealed, "{\"key_env\": \"SL_TEST_KEY2\"}", "wrong key", "wrong key");
    expect_fail(workers, &sealed, "{\"passphrase_env\": \"SL_TEST_PASS\"}", "protected with a key", "passphrase for a key");
  }
  /* a wrong passphrase */
  setenv("SL_TEST_PASS", "right", 1);
  setenv("SL_TEST_PASS2", "wrong", 1);
  sl_value_free(sealed);
  ASSERT_OK(seal(2, b, n, 64, "{\"passphrase_env\": \"SL_TEST_PASS\", \"kdf_memory\": \"64KiB\", \"kdf_iterations\": 1, \"kdf_lanes\": 1}", &sealed, &err), &err);
  expect_fail(2, &sealed, "{\"passphrase_env\": \"SL_TEST_PASS2\"}", "wrong passphrase", "wrong passphrase");
  /* a chunk with a bad tag and on_error skip: the rest is restored, the stream still verifies */
  sl_value t = copy_array(&sealed, 0, sl_array_len(&sealed));
  const sl_value *c2 = sl_array_get(&sealed, 2);
  char *m = malloc(sl_str_len(c2));
  memcpy(m, sl_str_data(c2), sl_str_len(c2));
  m[10] ^= 1;
  sl_array_set(&t, 2, sl_str(m, sl_str_len(c2)));
  free(m);
  sl_value out;
  ASSERT_OK(open_sealed(2, &t, "{\"passphrase_env\": \"SL_TEST_PASS\", \"on_error\": \"skip\"}", &out, &err), &err);
  ASSERT_EQ(sl_array_len(&out), 3);
  sl_value_free(out);
  sl_value_free(t);
  sl_value_free(sealed);
  free(b);
  engines_free();
}

TEST(data_encrypt_errors) {
  setenv("SL_TEST_KEY", KEY_HEX, 1);
  setenv("SL_TEST_BADKEY", "abc", 1);
  unsetenv("SL_TEST_NOKEY");
  sl_value out;
  sl_error_t err;
  static const struct { const char *json, *want; } cases[] = {
      {"{}", "give exactly one of key_file, key_env or passphrase_env (none was given)"},
      {"{\"key_env\": \"SL_TEST_KEY\", \"passphrase_env\": \"SL_TEST_KEY\"}", "several were given"},
      {"{\"key_env\": \"SL_TEST_NOKEY\"}", "environment variable 'SL_TEST_NOKEY' (key_env) is not set"},
      {"{\"key_env\": \"SL_TEST_BADKEY\"}", "must hold a 32-byte key as 64 hex digits"},
      {"{\"key_file\": \"/nonexistent/key\"}", "cannot open key_file '/nonexistent/key'"},
      {"{\"passphrase_env\": \"SL_TEST_KEY\", \"kdf_memory\": \"1KiB\"}", "kdf_memory must be from 8KiB to 4GiB"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    step s[] = {{"encrypt", cases[i].json}};
    sl_error_init(&err);
    ASSERT(run_steps(1, chunks_of("x", 1, 64), s, 1, &out, &err) != 0);
    if (!strstr(err.msg, cases[i].want)) SL__FAIL("%s: '%s' lacks '%s'", cases[i].json, err.msg, cases[i].want);
    ASSERT(!strstr(err.msg, KEY_HEX)); /* the secret is never in a message */
    sl_value_free(out);
  }
  /* a key file with a newline works */
  char path[] = "/tmp/sluice-key-XXXXXX";
  int fd = mkstemp(path);
  ASSERT(write(fd, KEY_HEX "\n", 65) == 65);
  close(fd);
  char json[200];
  snprintf(json, sizeof json, "{\"key_file\": \"%s\"}", path);
  step s[] = {{"encrypt", json}};
  ASSERT_OK(run_steps(1, chunks_of("x", 1, 64), s, 1, &out, &err), &err);
  ASSERT_EQ(sl_array_len(&out), 2);
  sl_value sealed = out;
  step d[] = {{"decrypt", dec_key}}; /* the same key from the environment */
  ASSERT_OK(run_steps(1, sl_value_ref(&sealed), d, 1, &out, &err), &err);
  ASSERT(joined_equal(&out, "x", 1));
  sl_value_free(out);
  sl_value_free(sealed);
  unlink(path);
  /* stream structure at encryption: a repeated index (nonce reuse), a missing last, a hole, strings */
  sl_value in = chunks_of("abcdefgh", 8, 4);
  sl_array_push(&in, sl_value_ref(sl_array_get(&in, 0)));
  step e[] = {{"encrypt", enc_key}};
  sl_error_init(&err);
  ASSERT_EQ(run_steps(1, in, e, 1, &out, &err), SL_EFAILED);
  ASSERT(strstr(err.msg, "chunk 0 came twice"));
  sl_value_free(out);
  in = chunks_of("abcdefgh", 8, 4);
  sl_value first = copy_array(&in, 0, 1);
  sl_value_free(in);
  sl_error_init(&err);
  ASSERT_EQ(run_steps(2, first, e, 1, &out, &err), SL_EFAILED);
  ASSERT(strstr(err.msg, "without a chunk marked last"));
  sl_value_free(out);
  in = chunks_of("abcdefghijkl", 12, 4);
  sl_value hole = copy_array(&in, 0, 1);
  sl_array_push(&hole, sl_value_ref(sl_array_get(&in, 2)));
  sl_value_free(in);
  sl_error_init(&err);
  ASSERT_EQ(run_steps(2, hole, e, 1, &out, &err), SL_EFAILED);
  ASSERT(strstr(err.msg, "chunk 1 never reached encrypt"));
  sl_value_free(out);
  sl_value strs = sl_array(1);
  sl_array_push(&strs, sl_str("plain", 5));
  step ef[] = {{"encrypt", "{\"key_env\": \"SL_TEST_KEY\", \"on_error\": \"fail\"}"}};
  sl_error_init(&err);
  ASSERT_EQ(run_steps(1, strs, ef, 1, &out, &err), SL_EFAILED);
  ASSERT(strstr(err.msg, "encrypt takes the chunk records of read"));
  sl_value_free(out);
  engines_free();
}

/* Many chunks on 2 workers: batches go to both instances, the header's instance derives the key
 * while the other one parks; the stream still opens, in order. */
/* The chunk bytes do not depend on the AES-GCM library: sl_crypt_seal (OpenSSL's GCM) writes
 * exactly what docs/formats.md describes, computed here with mbedtls's GCM (the library sluice
 * sealed with before), and sl_crypt_open opens those bytes and refuses them with one bit
 * changed: streams sealed by either open with the other. */
TEST(data_crypt_gcm_bytes) {
  sl_crypt_keys k;
  sl_crypt_header h;
  memset(&h, 0, sizeof h);
  for (int i = 0; i < 32; i++) k.payload[i] = (uint8_t)(i * 7 + 1), k.mac[i] = (uint8_t)i, h.mac[i] = (uint8_t)(0xC0 ^ i);
  for (int i = 0; i < 7; i++) h.prefix[i] = (uint8_t)(0xA0 + i);
  sl_crypt_aead *a = NULL;
  ASSERT(sl_crypt_aead_new(&k, &h, &a) == 0);
  mbedtls_gcm_context g;
  mbedtls_gcm_init(&g);
  ASSERT(mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, k.payload, 256) == 0);
  static const size_t sizes[] = {0, 1, 15, 16, 17, 1000, 70000};
  for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
    size_t n = sizes[t];
    uint32_t index = (uint32_t)(t * 1000003u + 5);
    uint8_t flags = t % 2 ? SL_CRYPT_LAST : 0;
    char *p = make_bytes(n, (unsigned)t);
    uint8_t *got = malloc(n + SL_CRYPT_CHUNK_OVERHEAD), *want = malloc(n + SL_CRYPT_CHUNK_OVERHEAD), *back = malloc(n + 1);
    ASSERT(sl_crypt_seal(a, index, flags, (const uint8_t *)p, n, got) == 0);
    uint8_t nonce[12], aad[37], be[4] = {(uint8_t)(index >> 24), (uint8_t)(index >> 16), (uint8_t)(index >> 8), (uint8_t)index};
    memcpy(nonce, h.prefix, 7), memcpy(nonce + 7, be, 4), nonce[11] = flags;
    memcpy(aad, h.mac, 32), aad[32] = flags, memcpy(aad + 33, be, 4);
    want[0] = flags;
    memcpy(want + 1, be, 4);
    ASSERT(mbedtls_gcm_crypt_and_tag(&g, MBEDTLS_GCM_ENCRYPT, n, nonce, 12, aad, 37, (const uint8_t *)p, want + 5, 16, want + 5 + n) == 0);
    ASSERT(memcmp(got, want, n + SL_CRYPT_CHUNK_OVERHEAD) == 0);
    ASSERT(sl_crypt_open(a, want, n + SL_CRYPT_CHUNK_OVERHEAD, back) == 0);
    ASSERT(n == 0 || memcmp(back, p, n) == 0);
    for (size_t bit = 0; bit < (n + SL_CRYPT_CHUNK_OVERHEAD) * 8; bit += n > 100 ? 997 : 1) { /* every bit of small chunks */
      want[bit / 8] ^= (uint8_t)(1u << bit % 8);
      ASSERT(sl_crypt_open(a, want, n + SL_CRYPT_CHUNK_OVERHEAD, back) != 0);
      want[bit / 8] ^= (uint8_t)(1u << bit % 8);
    }
    free(p), free(got), free(want), free(back);
  }
  mbedtls_gcm_free(&g);
  sl_crypt_aead_free(a);
}

TEST(data_encrypt_many_chunks) {
  setenv("SL_TEST_PASS", "many", 1);
  size_t n = 64 * 1000 + 5;
  char *b = make_bytes(n, 9);
  sl_value sealed, out;
  sl_error_t err;
  const char *pj = "{\"passphrase_env\": \"SL_TEST_PASS\", \"kdf_memory\": \"256KiB\", \"kdf_iterations\": 2, \"kdf_lanes\": 1}";
  ASSERT_OK(seal(2, b, n, 64, pj, &sealed, &err), &err);
  ASSERT_EQ(sl_array_len(&sealed), 1002);
  ASSERT_OK(open_sealed(2, &sealed, "{\"passphrase_env\": \"SL_TEST_PASS\", \"on_error\": \"fail\"}", &out, &err), &err);
  ASSERT(joined_equal(&out, b, n));
  sl_value_free(out);
  /* two whole 256-record batches swapped (the source emits 256 records a batch): each batch is
   * in order inside, so only the walk over the batches sees it */
  sl_value t = copy_array(&sealed, 0, 256);
  for (size_t i = 512; i < 768; i++) sl_array_push(&t, sl_value_ref(sl_array_get(&sealed, i)));
  for (size_t i = 256; i < 512; i++) sl_array_push(&t, sl_value_ref(sl_array_get(&sealed, i)));
  for (size_t i = 768; i < sl_array_len(&sealed); i++) sl_array_push(&t, sl_value_ref(sl_array_get(&sealed, i)));
  expect_fail(2, &t, "{\"passphrase_env\": \"SL_TEST_PASS\"}", "chunk 255 is missing (chunk 511 comes next)", "batches swapped");
  expect_fail(1, &t, "{\"passphrase_env\": \"SL_TEST_PASS\"}", "chunk 255 is missing (chunk 511 comes next)", "batches swapped, one worker");
  sl_value_free(t);
  sl_value_free(sealed);
  free(b);
  engines_free();
}
