/* decrypt — opens a stream that encrypt sealed: the header record, then the chunks, each
 * verified with AES-256-GCM, in parallel on every instance, and checked to form the whole
 * stream in order: nothing modified, reordered, dropped, duplicated or cut off.
 *
 * Input: string records (or maps with the bytes in `field`), as the `file` source reads them
 * back with `codec: frames`. Output: each chunk's plaintext in place of its bytes; the header
 * gives no output.
 *
 * How the instances cooperate (everything shared lives in instance 0's context, under its mutex):
 * - The header is the first record of the stream. The instance whose batch starts with it
 *   derives the keys (the KDF runs once, outside the mutex) and publishes them. An instance
 *   handed chunks before that parks its batch (SL_PARKED) and is woken by a timer the publisher
 *   arms for it at the current time. If every instance is parked or done and no header came,
 *   the stream does not start with one: the pipeline fails instead of waiting for ever.
 * - Each chunk states its index and last flag, which its nonce and authenticated data bind, so
 *   an instance opens a chunk without knowing where it sits in the stream. Where it sits is
 *   checked apart: inside a batch the indexes must follow each other; across batches each
 *   instance records (batch order from sl_emitter_seq, first index, count, header, last) and
 *   the last instance to flush walks them in order: the header first, indexes 0, 1, ... with no
 *   gap or repeat, the last chunk last. A failure there fails the pipeline before any sink
 *   flushes, so a `file` sink leaves no output behind.
 * - A chunk whose tag does not match is a failed record (on_error decides); the walk counts it
 *   at the index where it was expected.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt.h"
#include "sluice.h"

enum { H_NONE = 0, H_DERIVING, H_READY, H_FAILED };
#define WAKE_TOKEN 1

/* What one batch held, for the walk at the end. */
typedef struct run {
  uint64_t seq;      /* the batch's order */
  int64_t first;     /* index of its first chunk */
  uint32_t count;    /* chunks */
  bool header;       /* it started with the header */
  bool last;         /* its final chunk is the last one */
} run;

typedef struct decrypt decrypt;
struct decrypt {
  char *field;            /* option */
  char *key_file;         /* option */
  char *key_env;          /* option */
  char *passphrase_env;   /* option */
  sl_stage *st;
  decrypt *first;         /* instance 0 */
  sl_crypt_aead *aead;    /* this instance's cipher, made at its first chunk */
  bool parked;            /* its batch waits for the header */
  uint64_t nbatches;      /* batches seen (the order of batches with one instance) */
  /* instance 0 only: shared */
  bool mu_ready;
  pthread_mutex_t mu;
  sl_crypt_secret secret; /* wiped once the header was opened */
  int state;              /* H_* */
  sl_crypt_header h;
  sl_crypt_keys keys;     /* wiped when every instance has its cipher, or at destroy */
  int ciphers;
  int nparked, nflushed;
  run *runs;
  size_t nruns, capruns;
};

static const sl_option options[] = {
    {SL_OPT_STRING, "field", "data", offsetof(decrypt, field), "the field of a map record holding the bytes (a string record is used whole)", NULL, 0},
    {SL_OPT_STRING, "key_file", NULL, offsetof(decrypt, key_file), "a file holding the 32-byte key as 64 hex digits", NULL, 0},
    {SL_OPT_STRING, "key_env", NULL, offsetof(decrypt, key_env), "an environment variable holding the 32-byte key as 64 hex digits", NULL, 0},
    {SL_OPT_STRING, "passphrase_env", NULL, offsetof(decrypt, passphrase_env), "an environment variable holding the passphrase", NULL, 0},
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  decrypt *d = ctx;
  d->st = st;
  d->first = sl_stage_sibling(st, 0);
  if (d != d->first) return 0;
  int rc = sl_crypt_secret_load(&d->secret, d->key_file, d->key_env, d->passphrase_env, err);
  if (rc) return rc;
  pthread_mutex_init(&d->mu, NULL);
  d->mu_ready = true;
  return 0;
}

/* True when no header came and no instance can bring one any more (under f->mu). */
static bool stuck(const decrypt *f, const sl_stage *st) {
  return f->state == H_NONE && f->nparked + f->nflushed == sl_stage_parallelism(st);
}

static int fail_stuck(sl_stage *st) {
  return sl_stage_fail(st, "the stream does not start with an encryption header (is it what encrypt wrote, read with codec: frames?)");
}

/* Opens the header (bytes p[0..n)) and publishes the keys, waking parked instances. */
static int open_header(decrypt *d, const uint8_t *p, size_t n) {
  decrypt *f = d->first;
  char msg[300];
  pthread_mutex_lock(&f->mu);
  int state = f->state;
  if (state == H_NONE) f->state = H_DERIVING;
  pthread_mutex_unlock(&f->mu);
  if (state != H_NONE) return sl_stage_fail(d->st, "a second encryption header: the input holds more than one stream");
  sl_crypt_header h;
  sl_crypt_keys k;
  int rc = sl_crypt_header_parse(p, n, &h, msg, sizeof msg);
  if (!rc) rc = sl_crypt_header_open(&f->secret, &h, &k, msg, sizeof msg); /* the KDF: slow, outside the mutex */
  sl_crypt_secret_wipe(&f->secret);
  pthread_mutex_lock(&f->mu);
  if (rc) {
    f->state = H_FAILED;
  } else {
    f->h = h;
    f->keys = k;
    f->state = H_READY;
    int par = sl_stage_parallelism(d->st);
    for (int i = 0; i < par; i++) {
      decrypt *o = sl_stage_sibling(d->st, i);
      if (o->parked) sl_stage_timer(o->st, sl_stage_now(o->st), WAKE_TOKEN);
    }
  }
  pthread_mutex_unlock(&f->mu);
  sl_crypt_keys_wipe(&k);
  if (rc) return sl_stage_fail(d->st, "cannot open the encryption header: %s", msg);
  return 0;
}

/* This instance's cipher, made from the published keys. */
static int cipher(decrypt *d) {
  if (d->aead) return 0;
  decrypt *f = d->first;
  pthread_mutex_lock(&f->mu);
  int rc = sl_crypt_aead_new(&f->keys, &f->h, &d->aead);
  if (!rc && ++f->ciphers == sl_stage_parallelism(d->st)) sl_crypt_keys_wipe(&f->keys);
  pthread_mutex_unlock(&f->mu);
  return rc;
}

static int record_run(decrypt *f, const run *r) {
  pthread_mutex_lock(&f->mu);
  if (f->nruns == f->capruns) {
    size_t n = f->capruns ? f->capruns * 2 : 64;
    run *nr = realloc(f->runs, n * sizeof *nr);
    if (!nr) {
      pthread_mutex_unlock(&f->mu);
      return SL_ENOMEM;
    }
    f->runs = nr;
    f->capruns = n;
  }
  f->runs[f->nruns++] = *r;
  pthread_mutex_unlock(&f->mu);
  return 0;
}

/* The batch: header (if first), then chunks opened in place. Parks when the keys are not known. */
static int handle(decrypt *d, sl_batch *in, sl_emitter *em) {
  decrypt *f = d->first;
  char msg[300];
  run r = {.first = -1};
  if (!sl_emitter_seq(em, &r.seq)) {
    if (sl_stage_parallelism(d->st) > 1)
      return sl_stage_fail(d->st, "decrypt runs as %d instances but its output is unordered (a stage fused after it?): chunk order cannot be checked",
                           sl_stage_parallelism(d->st));
    r.seq = d->nbatches;
  }
  uint32_t i = 0;
  if (in->len == 0) return 0;
  const sl_value *b0 = sl_bytes_of(&in->recs[0], d->field, msg, sizeof msg);
  if (b0 && sl_crypt_is_header((const uint8_t *)sl_str_data(b0), sl_str_len(b0))) {
    int rc = open_header(d, (const uint8_t *)sl_str_data(b0), sl_str_len(b0));
    if (rc) return rc;
    r.header = true;
    i = 1;
  } else {
    pthread_mutex_lock(&f->mu);
    int state = f->state;
    bool none = false;
    if (state != H_READY && state != H_FAILED) {
      d->parked = true;
      f->nparked++;
      none = stuck(f, d->st);
    }
    pthread_mutex_unlock(&f->mu);
    if (none) return fail_stuck(d->st);
    if (state == H_FAILED) return SL_EFAILED;
    if (state != H_READY) return SL_PARKED;
  }
  d->nbatches++;
  if (i < in->len && cipher(d) != 0) return SL_ENOMEM;
  int64_t expect = r.header ? 0 : -1; /* the index the next chunk must have (-1: any, for now) */
  for (; i < in->len; i++) {
    const sl_value *b = sl_bytes_of(&in->recs[i], d->field, msg, sizeof msg);
    uint32_t index;
    bool last;
    if (b && sl_crypt_is_header((const uint8_t *)sl_str_data(b), sl_str_len(b)))
      return sl_stage_fail(d->st, "a second encryption header after chunk %lld: the input holds more than one stream", (long long)expect - 1);
    if (!b || sl_crypt_chunk_peek((const uint8_t *)sl_str_data(b), sl_str_len(b), &index, &last, msg, sizeof msg) != 0) {
      if (expect < 0) return sl_stage_fail(d->st, "not an encrypted chunk: %s", msg);
      sl_emit_error(em, i, "chunk %lld: not an encrypted chunk: %s", (long long)expect, msg);
      expect++;
      continue;
    }
    size_t n = sl_str_len(b);
    sl_value out;
    char *dst;
    if (sl_bytes_new(n - SL_CRYPT_CHUNK_OVERHEAD, &out, &dst) != 0) return SL_ENOMEM;
    if (sl_crypt_open(d->aead, (const uint8_t *)sl_str_data(b), n, (uint8_t *)dst) != 0) {
      sl_value_free(out);
      if (expect < 0) expect = index; /* the best guess at where it sits */
      sl_emit_error(em, i, "chunk %lld: authentication failed: the chunk was modified, or belongs to another stream or key", (long long)expect);
      if (r.first < 0) r.first = expect;
      r.count++;
      expect++;
      continue;
    }
    if (r.last || (expect >= 0 && index != expect)) {
      sl_value_free(out);
      if (r.last)
        return sl_stage_fail(d->st, "chunk %u follows the last chunk (%lld): chunks were reordered or duplicated", index, (long long)expect - 1);
      return sl_stage_fail(d->st, "chunk %u found where chunk %lld belongs: chunks were reordered, dropped or duplicated", index, (long long)expect);
    }
    if (r.first < 0) r.first = index;
    r.count++;
    r.last = last;
    expect = (int64_t)index + 1;
    sl_value rec = sl_batch_take(in, i);
    sl_bytes_put(&rec, d->field, out);
    sl_emit(em, i, rec);
  }
  return record_run(f, &r);
}

static int process(void *ctx, sl_batch *in, sl_emitter *em) { return handle(ctx, in, em); }

/* The wake-up of a parked batch: the header was opened. */
static int event(void *ctx, uint64_t token, sl_emitter *em) {
  decrypt *d = ctx, *f = d->first;
  sl_batch *in = sl_emitter_batch(em);
  if (!in || !d->parked) return 0;
  pthread_mutex_lock(&f->mu);
  d->parked = false;
  f->nparked--;
  pthread_mutex_unlock(&f->mu);
  return handle(d, in, em);
}

static int by_seq(const void *a, const void *b) {
  const run *x = a, *y = b;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The walk over every batch, in stream order (see the top of the file). Writes what is wrong
 * into msg; false then. */
static bool walk(decrypt *f, char *msg, size_t n) {
  if (f->nruns) qsort(f->runs, f->nruns, sizeof *f->runs, by_seq);
  bool header = false, ended = false;
  int64_t next = 0;
  for (size_t i = 0; i < f->nruns; i++) {
    const run *r = &f->runs[i];
    if (!r->header && r->count == 0) continue;
    if (r->header && header) return snprintf(msg, n, "a second encryption header after chunk %lld", (long long)next - 1), false;
    if (!header && !r->header) return snprintf(msg, n, "the stream does not start with its encryption header"), false;
    header = true;
    if (r->count == 0) continue;
    if (ended)
      return snprintf(msg, n, "chunk %lld follows the last chunk (%lld): chunks were reordered or duplicated", (long long)r->first,
                      (long long)next - 1), false;
    if (r->first > next)
      return snprintf(msg, n, "chunk %lld is missing (chunk %lld comes next): chunks were dropped or reordered", (long long)next,
                      (long long)r->first), false;
    if (r->first < next)
      return snprintf(msg, n, "chunk %lld comes again after chunk %lld: chunks were duplicated or reordered", (long long)r->first,
                      (long long)next - 1), false;
    next = r->first + r->count;
    ended = r->last;
  }
  if (!header) return snprintf(msg, n, "no encryption header: the input is empty or not an encrypted stream"), false;
  if (!ended) return snprintf(msg, n, "the stream is cut short after chunk %lld: its last chunk is missing", (long long)next - 1), false;
  return true;
}

static int flush(void *ctx, sl_emitter *em) {
  decrypt *d = ctx, *f = d->first;
  char msg[300];
  bool ok = true, none = false;
  pthread_mutex_lock(&f->mu);
  if (++f->nflushed == sl_stage_parallelism(d->st)) ok = walk(f, msg, sizeof msg);
  else none = stuck(f, d->st);
  pthread_mutex_unlock(&f->mu);
  if (none) return fail_stuck(d->st);
  return ok ? 0 : sl_stage_fail(d->st, "%s", msg);
}

static void destroy(void *ctx) {
  decrypt *d = ctx;
  sl_crypt_aead_free(d->aead);
  if (d->first == d) {
    sl_crypt_secret_wipe(&d->secret);
    sl_crypt_keys_wipe(&d->keys);
    if (d->mu_ready) pthread_mutex_destroy(&d->mu);
    free(d->runs);
  }
}

const sl_stage_kind sl_stage_decrypt = {
    .abi = SL_STAGE_ABI,
    .name = "decrypt",
    .doc = "opens a stream sealed by encrypt, verifying every chunk and their order (a modified, missing or extra chunk fails)",
    .options = options,
    .ctx_size = sizeof(decrypt),
    .flags = SL_STAGE_STATELESS,
    .init = init,
    .process = process,
    .flush = flush,
    .destroy = destroy,
    .event = event,
};
