/*
 * decompress_fuzz.c — libFuzzer target for the per-record lz4 decompress stage (make fuzz): the
 * bytes are one record, decoded as one lz4 frame with a 1 MiB limit. Seeds in
 * fuzz/corpus/decompress are frames the compress stage wrote. A corrupt frame must fail its
 * record (skipped here), never crash or leak.
 */
#include <stdint.h>
#include <stdlib.h>

#include "sluice.h"

static sl_engine *engine;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  sl_engine_config cfg;
  sl_engine_config_init(&cfg);
  cfg.workers = 1;
  if (sl_engine_new(&cfg, &engine, NULL) != 0) abort();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sl_value recs = sl_array(1);
  sl_array_push(&recs, sl_str((const char *)data, size));
  sl_pipeline *p = NULL;
  sl_error_t err;
  if (sl_pipeline_new(engine, "fuzz", &p, &err) != 0) abort();
  sl_value opts = sl_map(1);
  sl_map_setc(&opts, "records", recs);
  int rc = sl_pipeline_add(p, "values", opts, &err);
  if (!rc) rc = sl_pipeline_add_json(p, "decompress", "{\"on_error\": \"skip\", \"max_size\": \"1MiB\"}", &err);
  if (!rc) rc = sl_pipeline_add_json(p, "null", NULL, &err);
  if (rc || sl_pipeline_run(p, &err) != SL_OK) abort(); /* skipped records never fail the run */
  sl_pipeline_free(p);
  return 0;
}
