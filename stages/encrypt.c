/* encrypt — seals chunk records into an authenticated encrypted stream (AES-256-GCM): a header
 * record, then one record per chunk (vm/crypt.h; byte layout in docs/formats.md).
 *
 * Input: the chunk records of `read` — maps with the bytes in `field` (default data), their
 * `index` (0, 1, ...) and `last: true` on the final chunk. The chunk's own index and last flag
 * seal it, so chunks are sealed in parallel on every instance, and the header is emitted right
 * before chunk 0 by the instance that seals it (the stage is ordered: it comes out first).
 *
 * Shared state. Instance 0's init loads the secret, draws the salt and nonce prefix, runs the
 * KDF once and builds the header; every instance then makes its own AES-GCM context from the
 * derived key, and the last one to do so wipes it. Instance 0's context also keeps, under its
 * mutex, which indexes were sealed: an index sealed twice would reuse a nonce, so it fails the
 * pipeline before sealing; the last instance to flush checks that every index up to the last
 * chunk was sealed, so a stream with a hole is never left looking complete. */
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "crypt.h"
#include "sluice.h"

typedef struct encrypt encrypt;
struct encrypt {
  char *field;            /* option */
  char *key_file;         /* option */
  char *key_env;          /* option */
  char *passphrase_env;   /* option */
  int64_t kdf_memory;     /* option: bytes */
  int64_t kdf_iterations; /* option */
  int64_t kdf_lanes;      /* option */
  sl_stage *st;
  encrypt *first;         /* instance 0, which holds what the instances share */
  sl_crypt_aead *aead;    /* this instance's cipher */
  /* instance 0 only */
  bool mu_ready;
  pthread_mutex_t mu;     /* guards the fields below */
  sl_crypt_header h;
  sl_crypt_keys keys;     /* wiped once every instance made its cipher */
  int ciphers;            /* instances that made their cipher */
  uint8_t header[SL_CRYPT_HEADER_LEN];
  uint8_t *seen;          /* bitmap of sealed indexes */
  size_t seen_bytes;
  uint64_t sealed;        /* chunks sealed */
  int64_t max_index;      /* highest index sealed, -1 */
  int64_t last_index;     /* the chunk marked last, -1 */
  int flushed;            /* instances that reached their flush */
};

static const sl_option options[] = {
    {SL_OPT_STRING, "field", "data", offsetof(encrypt, field), "the field of a chunk record holding its bytes", NULL, 0},
    {SL_OPT_STRING, "key_file", NULL, offsetof(encrypt, key_file), "a file holding the 32-byte key as 64 hex digits", NULL, 0},
    {SL_OPT_STRING, "key_env", NULL, offsetof(encrypt, key_env), "an environment variable holding the 32-byte key as 64 hex digits", NULL, 0},
    {SL_OPT_STRING, "passphrase_env", NULL, offsetof(encrypt, passphrase_env), "an environment variable holding a passphrase (through Argon2id)", NULL, 0},
    {SL_OPT_SIZE, "kdf_memory", "64MiB", offsetof(encrypt, kdf_memory), "Argon2id memory cost (with passphrase_env)", NULL, 0},
    {SL_OPT_INT, "kdf_iterations", "3", offsetof(encrypt, kdf_iterations), "Argon2id passes over the memory (with passphrase_env)", NULL, 0},
    {SL_OPT_INT, "kdf_lanes", "4", offsetof(encrypt, kdf_lanes), "Argon2id lanes, computed on as many threads (with passphrase_env)", NULL, 0},
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  encrypt *e = ctx;
  e->st = st;
  e->first = sl_stage_sibling(st, 0);
  encrypt *f = e->first;
  char msg[300];
  if (e == f) {
    if (e->kdf_memory < 8192 || e->kdf_memory / 1024 > SL_CRYPT_MAX_MEMORY_KIB)
      return sl_error_set(err, SL_ECONFIG, NULL, "kdf_memory must be from 8KiB to 4GiB");
    if (e->kdf_iterations < 1 || e->kdf_iterations > SL_CRYPT_MAX_ITERATIONS)
      return sl_error_set(err, SL_ECONFIG, NULL, "kdf_iterations must be from 1 to %u", SL_CRYPT_MAX_ITERATIONS);
    if (e->kdf_lanes < 1 || e->kdf_lanes > SL_CRYPT_MAX_LANES || e->kdf_memory / 1024 < 8 * e->kdf_lanes)
      return sl_error_set(err, SL_ECONFIG, NULL, "kdf_lanes must be from 1 to %u, with at least 8KiB of kdf_memory each", SL_CRYPT_MAX_LANES);
    sl_crypt_secret s;
    int rc = sl_crypt_secret_load(&s, e->key_file, e->key_env, e->passphrase_env, err);
    if (!rc) {
      rc = sl_crypt_header_new(&s, (uint32_t)e->kdf_iterations, (uint32_t)(e->kdf_memory / 1024), (uint32_t)e->kdf_lanes,
                               &e->h, &e->keys, e->header, msg, sizeof msg);
      if (rc) sl_error_set(err, rc, NULL, "%s", msg);
    }
    sl_crypt_secret_wipe(&s);
    if (rc) return rc;
    pthread_mutex_init(&e->mu, NULL);
    e->mu_ready = true;
    e->max_index = e->last_index = -1;
  }
  if (sl_crypt_aead_new(&f->keys, &f->h, &e->aead) != 0) return SL_ENOMEM;
  if (++f->ciphers == sl_stage_parallelism(st)) sl_crypt_keys_wipe(&f->keys); /* inits run one after another */
  return 0;
}

/* Marks index sealed (under the mutex). Returns 0, or fails the pipeline: an index seen twice
 * (its nonce would be reused), a chunk past the last, a second last chunk. */
static int claim(encrypt *f, sl_stage *st, int64_t index, bool last) {
  int rc = 0;
  pthread_mutex_lock(&f->mu);
  size_t byte = (size_t)(index >> 3);
  if (byte >= f->seen_bytes) {
    size_t n = f->seen_bytes ? f->seen_bytes : 64;
    while (n <= byte) n *= 2;
    uint8_t *nb = realloc(f->seen, n);
    if (!nb) {
      rc = SL_ENOMEM;
      goto done;
    }
    memset(nb + f->seen_bytes, 0, n - f->seen_bytes);
    f->seen = nb;
    f->seen_bytes = n;
  }
  uint8_t bit = (uint8_t)(1u << (index & 7));
  if (f->seen[byte] & bit) {
    rc = sl_stage_fail(st, "chunk %lld came twice: each index is sealed once (its nonce must never repeat)", (long long)index);
  } else if (last && f->last_index >= 0) {
    rc = sl_stage_fail(st, "chunk %lld is marked last, but chunk %lld already was", (long long)index, (long long)f->last_index);
  } else if ((f->last_index >= 0 && index > f->last_index) || (last && f->max_index > index)) {
    rc = sl_stage_fail(st, "chunk %lld comes after the last chunk (%lld)", (long long)(last ? f->max_index : index),
                       (long long)(last ? index : f->last_index));
  } else {
    f->seen[byte] |= bit;
    f->sealed++;
    if (index > f->max_index) f->max_index = index;
    if (last) f->last_index = index;
  }
done:
  pthread_mutex_unlock(&f->mu);
  return rc;
}

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  encrypt *e = ctx, *f = e->first;
  char msg[200];
  for (uint32_t i = 0; i < in->len; i++) {
    const sl_value *rec = &in->recs[i];
    const sl_value *b = sl_bytes_of(rec, e->field, msg, sizeof msg);
    const sl_value *iv = rec->type == SL_TMAP ? sl_map_getc(rec, "index") : NULL;
    const sl_value *lv = rec->type == SL_TMAP ? sl_map_getc(rec, "last") : NULL;
    if (!b || rec->type != SL_TMAP) {
      sl_emit_error(em, i, "cannot encrypt: %s; encrypt takes the chunk records of read ({data, index, last})", b ? "the record is not a map" : msg);
      continue;
    }
    if (!iv || iv->type != SL_TINT || iv->u.i < 0 || iv->u.i > (int64_t)SL_CRYPT_MAX_INDEX || (lv && lv->type != SL_TBOOL)) {
      sl_emit_error(em, i, "cannot encrypt: a chunk record needs an integer index from 0 to %u and a boolean last (as read makes them)", SL_CRYPT_MAX_INDEX);
      continue;
    }
    int64_t index = iv->u.i;
    bool last = lv && lv->u.b;
    int rc = claim(f, e->st, index, last);
    if (rc) return rc;
    if (index == 0) sl_emit(em, i, sl_str((const char *)f->header, sizeof f->header));
    size_t n = sl_str_len(b);
    sl_value out;
    char *dst;
    if (sl_bytes_new(n + SL_CRYPT_CHUNK_OVERHEAD, &out, &dst) != 0) {
      sl_emit_error(em, i, "cannot encrypt chunk %lld: out of memory", (long long)index);
      continue;
    }
    if (sl_crypt_seal(e->aead, (uint32_t)index, last, (const uint8_t *)sl_str_data(b), n, (uint8_t *)dst) != 0) {
      sl_value_free(out);
      return sl_stage_fail(e->st, "cannot encrypt chunk %lld: AES-GCM failed", (long long)index);
    }
    sl_emit(em, i, out);
  }
  return 0;
}

/* The last instance to flush checks the stream is whole: every index up to the last chunk. */
static int flush(void *ctx, sl_emitter *em) {
  encrypt *e = ctx, *f = e->first;
  int rc = 0;
  pthread_mutex_lock(&f->mu);
  if (++f->flushed == sl_stage_parallelism(e->st)) {
    if (f->sealed == 0) {
      rc = sl_stage_fail(e->st, "no chunk reached encrypt: nothing to seal (an empty file gives one empty chunk from read)");
    } else if (f->last_index < 0) {
      rc = sl_stage_fail(e->st, "the input ended without a chunk marked last (after chunk %lld); the stream would look cut short",
                         (long long)f->max_index);
    } else if (f->sealed != (uint64_t)f->last_index + 1) {
      int64_t miss = 0;
      while (miss <= f->last_index && (f->seen[miss >> 3] >> (miss & 7) & 1)) miss++;
      rc = sl_stage_fail(e->st, "chunk %lld never reached encrypt (dropped upstream?): the stream would have a hole", (long long)miss);
    }
  }
  pthread_mutex_unlock(&f->mu);
  return rc;
}

static void destroy(void *ctx) {
  encrypt *e = ctx;
  sl_crypt_aead_free(e->aead);
  if (e->first == e) {
    sl_crypt_keys_wipe(&e->keys);
    if (e->mu_ready) pthread_mutex_destroy(&e->mu);
    free(e->seen);
  }
}

const sl_stage_kind sl_stage_encrypt = {
    .abi = SL_STAGE_ABI,
    .name = "encrypt",
    .doc = "seals chunk records with AES-256-GCM into an authenticated stream (a header, then one record per chunk)",
    .options = options,
    .ctx_size = sizeof(encrypt),
    .flags = SL_STAGE_STATELESS,
    .init = init,
    .process = process,
    .flush = flush,
    .destroy = destroy,
};
