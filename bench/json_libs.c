/*
 * json_libs.c — our JSON decoder against Debian's C JSON libraries (jansson, json-c).
 *
 * The rule: use a well-kept library unless our own code is at least twice as fast. What
 * a sluice codec needs is JSON text -> sl_value, so each library is timed parsing into its own
 * tree (its best case) and parsing plus turning that tree into an sl_value (what we would run),
 * against sl_value_from_json, which builds sl_values directly. Input: N JSON lines like the
 * events of bench/codecs.sh (nested objects, arrays, escaped strings, integers, doubles, bools,
 * null), parsed one line at a time as the jsonl codec does. Prints MB/s of input, median of R
 * runs, and the ratio of ours to each library.
 * usage: bench_json_libs [N] [R]   (default 200000 lines, 5 runs)
 *        bench_json_libs --one WAY LINES   one way (0 ours, 1 jansson -> sl_value, 2 jansson tree,
 *                                          3 json-c -> sl_value, 4 json-c tree): a "BENCH {json}" line
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct corpus {
  char *text;    /* lines, each followed by '\n' */
  size_t *off;   /* line i starts at text + off[i] */
  size_t *len;
  size_t n, bytes;
} corpus;

static void make_corpus(corpus *c, size_t n) {
  size_t cap = n * 200 + 256, at = 0;
  c->text = malloc(cap);
  c->off = malloc(n * sizeof *c->off);
  c->len = malloc(n * sizeof *c->len);
  unsigned x = 12345;
  for (size_t i = 0; i < n; i++) {
    x = x * 1103515245u + 12345u;
    int k = snprintf(c->text + at, cap - at,
                     "{\"id\":%zu,\"ts\":%.3f,\"user\":{\"name\":\"user%zu\",\"tags\":[\"a\",\"b%zu\"],\"score\":%u},"
                     "\"msg\":\"GET /api/v1/items/%zu \\\"ok\\\"\\tdone \\u00e9\",\"ratio\":%.6f,\"ok\":%s,\"n\":null}",
                     i, 1700000000.0 + (double)i / 7, i % 1000, i % 13, x % 100000, i, (double)(x % 1000) / 997.0,
                     i % 3 ? "true" : "false");
    c->off[i] = at;
    c->len[i] = (size_t)k;
    at += (size_t)k;
    c->text[at++] = '\n';
  }
  c->n = n;
  c->bytes = at;
}

/* jansson tree -> sl_value */
static sl_value from_jansson(json_t *j) {
  switch (json_typeof(j)) {
  case JSON_OBJECT: {
    sl_value m = sl_map(json_object_size(j));
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) sl_map_setc(&m, k, from_jansson(v));
    return m;
  }
  case JSON_ARRAY: {
    sl_value a = sl_array(json_array_size(j));
    for (size_t i = 0; i < json_array_size(j); i++) sl_array_push(&a, from_jansson(json_array_get(j, i)));
    return a;
  }
  case JSON_STRING: return sl_str(json_string_value(j), json_string_length(j));
  case JSON_INTEGER: return sl_int(json_integer_value(j));
  case JSON_REAL: return sl_double(json_real_value(j));
  case JSON_TRUE: return sl_bool(true);
  case JSON_FALSE: return sl_bool(false);
  default: return sl_nil();
  }
}

enum { OURS, JANSSON, JANSSON_TREE, JSONC, JSONC_TREE, NWAYS };
static const char *const names[] = {"sluice sl_value_from_json", "jansson -> sl_value", "jansson (its tree only)",
                                    "json-c -> sl_value", "json-c (its tree only)"};

/* bench/json_libs/jsonc.c (json-c's header cannot share a file with jansson's) */
double bench_jsonc(const char *text, const size_t *off, const size_t *len, size_t n, bool convert);

static double run(const corpus *c, int way) {
  if (way == JSONC || way == JSONC_TREE) return bench_jsonc(c->text, c->off, c->len, c->n, way == JSONC);
  double t0 = now_s();
  for (size_t i = 0; i < c->n; i++) {
    const char *s = c->text + c->off[i];
    size_t n = c->len[i];
    sl_value v = sl_nil();
    if (way == OURS) {
      if (sl_value_from_json(s, n, &v, NULL) != 0) abort();
    } else {
      json_t *j = json_loadb(s, n, 0, NULL);
      if (!j) abort();
      if (way == JANSSON) v = from_jansson(j);
      json_decref(j);
    }
    sl_value_free(v);
  }
  return now_s() - t0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "--one") == 0) { /* bench/run: one way, one "BENCH {json}" line */
    int way = atoi(argv[2]);
    size_t lines = (size_t)atol(argv[3]);
    if (way < 0 || way >= NWAYS || lines < 1) {
      fprintf(stderr, "usage: bench_json_libs --one WAY(0-%d) LINES\n", NWAYS - 1);
      return 2;
    }
    corpus one;
    make_corpus(&one, lines);
    double t = run(&one, way);
    printf("BENCH {\"seconds\": %.6f, \"bytes\": %zu, \"records\": %zu}\n", t, one.bytes, lines);
    free(one.text);
    free(one.off);
    free(one.len);
    return 0;
  }
  size_t n = argc > 1 ? (size_t)atol(argv[1]) : 200000;
  int runs = argc > 2 ? atoi(argv[2]) : 5;
  if (runs < 1 || runs > 99) runs = 5;
  corpus c;
  make_corpus(&c, n);
  printf("== json_libs: %zu JSON lines, %.1f MB, one text per call, median of %d runs\n", n, (double)c.bytes / 1e6, runs);
  double mbs[NWAYS];
  for (int way = 0; way < NWAYS; way++) {
    double t[99];
    for (int r = 0; r < runs; r++) t[r] = run(&c, way);
    qsort(t, (size_t)runs, sizeof t[0], cmp_double);
    mbs[way] = (double)c.bytes / 1e6 / t[runs / 2];
    printf("  %-28s %7.1f MB/s  %6.0f ns/line\n", names[way], mbs[way], t[runs / 2] / (double)n * 1e9);
  }
  printf("  ours / jansson -> sl_value: %.2fx; ours / json-c -> sl_value: %.2fx; ours / the faster library's tree alone: %.2fx\n",
         mbs[OURS] / mbs[JANSSON], mbs[OURS] / mbs[JSONC],
         mbs[OURS] / (mbs[JANSSON_TREE] > mbs[JSONC_TREE] ? mbs[JANSSON_TREE] : mbs[JSONC_TREE]));
  free(c.text);
  free(c.off);
  free(c.len);
  return 0;
}
