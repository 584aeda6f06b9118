/* jsonc.c — the json-c half of bench_json_libs (bench/json_libs.c): json-c's header and
 * jansson's declare the same names, so each library has its own file. */
#include <json-c/json.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "sluice.h"

double bench_jsonc(const char *text, const size_t *off, const size_t *len, size_t n, bool convert);

/* json-c tree -> sl_value */
static sl_value from_jsonc(struct json_object *j) {
  switch (json_object_get_type(j)) {
  case json_type_object: {
    sl_value m = sl_map((size_t)json_object_object_length(j));
    json_object_object_foreach(j, k, v) sl_map_setc(&m, k, from_jsonc(v));
    return m;
  }
  case json_type_array: {
    size_t n = json_object_array_length(j);
    sl_value a = sl_array(n);
    for (size_t i = 0; i < n; i++) sl_array_push(&a, from_jsonc(json_object_array_get_idx(j, i)));
    return a;
  }
  case json_type_string: return sl_str(json_object_get_string(j), (size_t)json_object_get_string_len(j));
  case json_type_int: return sl_int(json_object_get_int64(j));
  case json_type_double: return sl_double(json_object_get_double(j));
  case json_type_boolean: return sl_bool(json_object_get_boolean(j));
  default: return sl_nil();
  }
}

/* Parses every line with json-c (and turns each tree into an sl_value when convert is set);
 * returns the seconds it took. */
double bench_jsonc(const char *text, const size_t *off, const size_t *len, size_t n, bool convert) {
  struct timespec a, b;
  json_tokener *tok = json_tokener_new();
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (size_t i = 0; i < n; i++) {
    json_tokener_reset(tok);
    struct json_object *j = json_tokener_parse_ex(tok, text + off[i], (int)len[i]);
    if (!j) abort();
    if (convert) sl_value_free(from_jsonc(j));
    json_object_put(j);
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  json_tokener_free(tok);
  return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}
