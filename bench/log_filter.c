/*
 * log_filter.c — the log-filter workload through the embedding API, with a C predicate.
 *
 * lines(IN) -> parse(split 6 fields: host method path status bytes ms, typed) ->
 * c_filter(status < 500) -> file(OUT, jsonl), at the given worker count. It is the YAML
 * pipeline of bench/codecs.sh with the Lua filter replaced by a C function, so the two runs
 * show what the native parse, the engine and the jsonl writer cost without a Lua call per record.
 * usage: bench_log_filter IN OUT WORKERS   (bench/codecs.sh runs it and prints the figures)
 */
#include <stdio.h>
#include <stdlib.h>

#include "sluice.h"

static int keep(void *ud, sl_value *rec, char *errbuf, size_t errlen) {
  const sl_value *s = sl_map_getc(rec, "status");
  return s && s->type == SL_TINT && s->u.i < 500;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s IN OUT WORKERS\n", argv[0]);
    return 2;
  }
  sl_engine_config cfg;
  sl_engine_config_init(&cfg);
  cfg.workers = atoi(argv[3]);
  sl_engine *e;
  sl_pipeline *p;
  sl_error_t err;
  if (sl_engine_new(&cfg, &e, &err) != 0 || sl_pipeline_new(e, "log_filter", &p, &err) != 0) goto fail;
  sl_value o = sl_map(1);
  sl_map_setc(&o, "path", sl_cstr(argv[1]));
  if (sl_pipeline_add(p, "lines", o, &err) != 0) goto fail;
  if (sl_pipeline_add_json(p, "parse",
                           "{\"format\": \"split\", \"names\": [\"host\", \"method\", \"path\", \"status\", \"bytes\", \"ms\"],"
                           " \"types\": {\"status\": \"int\", \"bytes\": \"int\", \"ms\": \"double\"}}",
                           &err) != 0)
    goto fail;
  if (sl_pipeline_add_fn(p, "c_filter", keep, NULL, sl_nil(), &err) != 0) goto fail;
  o = sl_map(2);
  sl_map_setc(&o, "path", sl_cstr(argv[2]));
  sl_map_setc(&o, "codec", sl_cstr("jsonl"));
  if (sl_pipeline_add(p, "file", o, &err) != 0) goto fail;
  if (sl_pipeline_run(p, &err) != 0) goto fail;
  sl_pipeline_free(p);
  sl_engine_free(e);
  return 0;
fail:
  fprintf(stderr, "bench_log_filter: %s\n", err.msg);
  return 1;
}
