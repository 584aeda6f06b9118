/*
 * yaml_fuzz.c — libFuzzer target for the YAML front end (make fuzz).
 *
 * Loads arbitrary bytes with sl_config_load_text and, when that succeeds, builds the pipeline on
 * an engine and frees everything; nothing runs. Besides crashes and leaks (ASan, UBSan), it
 * checks the error contract: a failed call says why.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "sluice.h"

/* One engine for the whole run: an engine per input would spend the time making threads. */
static sl_engine *engine;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  sl_engine_config cfg;
  sl_engine_config_init(&cfg);
  cfg.workers = 1;
  cfg.virtual_time = true;
  if (sl_engine_new(&cfg, &engine, NULL) != 0) abort();
  return 0;
}

/* A failed call must set a code and a message. */
static void check_error(int rc, const sl_error_t *err) {
  if (rc != 0 && (err->code != rc || !err->msg[0])) {
    fprintf(stderr, "rc %d but err {code %d, msg \"%s\"}\n", rc, err->code, err->msg);
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sl_config *c = NULL;
  sl_error_t err;
  sl_error_init(&err);
  int rc = sl_config_load_text((const char *)data, size, "fuzz.yaml", NULL, &c, &err);
  check_error(rc, &err);
  if (rc) return 0;
  sl_pipeline *p = NULL;
  sl_error_init(&err);
  rc = sl_config_build(c, engine, &p, &err);
  check_error(rc, &err);
  sl_pipeline_free(p);
  sl_config_free(c);
  return 0;
}
