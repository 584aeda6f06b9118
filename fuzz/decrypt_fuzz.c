/*
 * decrypt_fuzz.c — libFuzzer target for the decrypting reader (make fuzz): the bytes are a
 * protected file as examples/protect.yaml writes it (frames: a 4-byte big-endian length before
 * each record), opened by decrypt with a fixed key, then decompressed (lz4, per record).
 *
 * The seeds in fuzz/corpus/decrypt are files protect.yaml made with that key (key_env in place
 * of the passphrase): an empty file, one byte, 150 bytes of text in 64-byte chunks, 300 random
 * bytes in 100-byte chunks, `seq 1 2000` in 1000-byte chunks. So mutations reach the chunk and
 * order checks, not only the header. A header asking for a passphrase is refused before any KDF work (the key is a raw
 * one), so no input makes the target slow. It checks the error contract besides crashes and
 * leaks: a run either succeeds or fails with a message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

#define FUZZ_KEY "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

static sl_engine *engine;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  setenv("SL_FUZZ_KEY", FUZZ_KEY, 1);
  sl_engine_config cfg;
  sl_engine_config_init(&cfg);
  cfg.workers = 2; /* two instances: the parked-batch path and the walk over batches */
  if (sl_engine_new(&cfg, &engine, NULL) != 0) abort();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sl_value recs = sl_array(0);
  size_t i = 0;
  while (i + 4 <= size) { /* frames; a cut last frame becomes a short record */
    size_t n = (size_t)data[i] << 24 | (size_t)data[i + 1] << 16 | (size_t)data[i + 2] << 8 | data[i + 3];
    i += 4;
    if (n > size - i) n = size - i;
    sl_array_push(&recs, sl_str((const char *)data + i, n));
    i += n;
  }
  sl_pipeline *p = NULL;
  sl_error_t err;
  sl_error_init(&err);
  if (sl_pipeline_new(engine, "fuzz", &p, &err) != 0) abort();
  sl_value opts = sl_map(1);
  sl_map_setc(&opts, "records", recs);
  int rc = sl_pipeline_add(p, "values", opts, &err);
  if (!rc) rc = sl_pipeline_add_json(p, "decrypt", "{\"key_env\": \"SL_FUZZ_KEY\", \"on_error\": \"skip\"}", &err);
  if (!rc) rc = sl_pipeline_add_json(p, "decompress", "{\"on_error\": \"skip\", \"max_size\": \"1MiB\"}", &err);
  if (!rc) rc = sl_pipeline_add_json(p, "null", NULL, &err);
  if (rc) abort();
  rc = sl_pipeline_run(p, &err);
  if (rc != SL_OK && (rc != SL_EFAILED || !err.msg[0])) {
    fprintf(stderr, "rc %d (%s) with message \"%s\"\n", rc, sl_strerror(rc), err.msg);
    abort();
  }
  sl_pipeline_free(p);
  return 0;
}
