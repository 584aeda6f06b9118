/* hash — the SHA-256 or SHA-512 digest of each record (or of one of its fields), attached to
 * the record; with `verify: true`, records whose attached digest does not match fail.
 *
 * What is hashed: the string under `field` (its bytes; another value: its JSON text), or
 * without `field` the whole record: a string's bytes, or another value's JSON text — for a map,
 * without the digest's own key `to`, so that verify hashes what attach hashed. A string record
 * becomes the map {data: <string>, <to>: <digest>}. The digest is written as lowercase hex or
 * as raw bytes (`encoding`); verify accepts hex in either case, or bytes. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <mbedtls/sha256.h>
#include <mbedtls/sha512.h>

#include "sluice.h"

typedef struct hash {
  int algorithm;   /* option: 0 sha256, 1 sha512 */
  char *field;     /* option, or NULL: the whole record */
  char *to;        /* option, or NULL: the algorithm's name */
  int encoding;    /* option: 0 hex, 1 bytes */
  bool verify;     /* option */
  const char *key; /* `to` or the algorithm's name */
  sl_buf json;     /* scratch: JSON text of non-string values */
} hash;

static const sl_option options[] = {
    {SL_OPT_ENUM, "algorithm", "sha256", offsetof(hash, algorithm), "the digest", "sha256|sha512", SL_OPT_PRIMARY},
    {SL_OPT_STRING, "field", NULL, offsetof(hash, field), "the field to hash (default: the whole record)", NULL, 0},
    {SL_OPT_STRING, "to", NULL, offsetof(hash, to), "the field that holds the digest (default: the algorithm's name)", NULL, 0},
    {SL_OPT_ENUM, "encoding", "hex", offsetof(hash, encoding), "how the digest is written", "hex|bytes", 0},
    {SL_OPT_BOOL, "verify", "false", offsetof(hash, verify), "check the digest in `to` instead of attaching one: a record that does not match fails", NULL, 0},
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  hash *h = ctx;
  sl_buf_init(&h->json);
  h->key = h->to ? h->to : h->algorithm ? "sha512" : "sha256";
  if (!*h->key) return sl_error_set(err, SL_ECONFIG, NULL, "to must not be empty");
  if (h->field && !*h->field) return sl_error_set(err, SL_ECONFIG, NULL, "field must not be empty");
  if (h->field && strcmp(h->field, h->key) == 0) return sl_error_set(err, SL_ECONFIG, NULL, "field and to are both '%s': the digest would replace what it hashes", h->key);
  return 0;
}

/* The digest of what rec holds for hashing, into out (32 or 64 bytes). */
static int digest(hash *h, const sl_value *rec, uint8_t *out, char *msg, size_t msglen) {
  const sl_value *v = rec;
  sl_value copy = sl_nil();
  if (h->field) {
    if (rec->type != SL_TMAP) return snprintf(msg, msglen, "expected a map with a field '%s', got %s", h->field, sl_type_name((sl_type)rec->type)), SL_EDATA;
    v = sl_map_getc(rec, h->field);
    if (!v) return snprintf(msg, msglen, "the record has no field '%s'", h->field), SL_EDATA;
  } else if (rec->type == SL_TMAP && sl_map_getc(rec, h->key)) { /* without the digest itself */
    copy = sl_value_ref(rec);
    sl_map_del(&copy, h->key, strlen(h->key));
    v = &copy;
  }
  const uint8_t *p;
  size_t n;
  if (v->type == SL_TSTR) {
    p = (const uint8_t *)sl_str_data(v);
    n = sl_str_len(v);
  } else {
    h->json.len = 0;
    if (sl_value_to_json(v, &h->json) != 0) {
      sl_value_free(copy);
      return snprintf(msg, msglen, "out of memory"), SL_ENOMEM;
    }
    p = (const uint8_t *)h->json.data;
    n = h->json.len;
  }
  int rc = h->algorithm ? mbedtls_sha512_ret(p, n, out, 0) : mbedtls_sha256_ret(p, n, out, 0);
  sl_value_free(copy);
  return rc ? (snprintf(msg, msglen, "digest failed"), SL_EDATA) : 0;
}

static void to_hex(const uint8_t *d, size_t n, char *out) {
  static const char hx[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) out[2 * i] = hx[d[i] >> 4], out[2 * i + 1] = hx[d[i] & 15];
}

/* Does the attached value v hold digest d (n bytes), as hex (any case) or bytes? */
static bool matches(const sl_value *v, const uint8_t *d, size_t n) {
  if (!v || v->type != SL_TSTR) return false;
  const char *s = sl_str_data(v);
  size_t len = sl_str_len(v);
  if (len == n) return memcmp(s, d, n) == 0;
  if (len != 2 * n) return false;
  char hx[128];
  to_hex(d, n, hx);
  for (size_t i = 0; i < len; i++) {
    char c = s[i] >= 'A' && s[i] <= 'F' ? (char)(s[i] - 'A' + 'a') : s[i];
    if (c != hx[i]) return false;
  }
  return true;
}

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  hash *h = ctx;
  size_t dn = h->algorithm ? 64 : 32;
  uint8_t d[64];
  char msg[200], hx[128];
  for (uint32_t i = 0; i < in->len; i++) {
    sl_value *rec = &in->recs[i];
    if (h->verify && rec->type != SL_TMAP) {
      sl_emit_error(em, i, "verify needs a map record holding the digest in '%s', got %s", h->key, sl_type_name((sl_type)rec->type));
      continue;
    }
    if (digest(h, rec, d, msg, sizeof msg) != 0) {
      sl_emit_error(em, i, "cannot hash: %s", msg);
      continue;
    }
    if (h->verify) {
      const sl_value *want = sl_map_getc(rec, h->key);
      if (!matches(want, d, dn)) {
        to_hex(d, dn, hx);
        sl_emit_error(em, i, "%s mismatch: the record's digest in '%s' %s; its content hashes to %.*s", h->algorithm ? "sha512" : "sha256", h->key,
                      !want ? "is missing" : want->type != SL_TSTR ? "is not a string" : "differs", (int)(2 * dn), hx);
        continue;
      }
      sl_emit(em, i, sl_batch_take(in, i));
      continue;
    }
    sl_value dv;
    if (h->encoding == 0) {
      to_hex(d, dn, hx);
      dv = sl_str(hx, 2 * dn);
    } else {
      dv = sl_str((const char *)d, dn);
    }
    sl_value r = sl_batch_take(in, i);
    if (r.type != SL_TMAP) {
      sl_value m = sl_map(2);
      sl_map_setc(&m, "data", r);
      r = m;
    }
    sl_map_setc(&r, h->key, dv);
    sl_emit(em, i, r);
  }
  return 0;
}

static void destroy(void *ctx) {
  hash *h = ctx;
  sl_buf_close(&h->json);
}

const sl_stage_kind sl_stage_hash = {
    .abi = SL_STAGE_ABI,
    .name = "hash",
    .doc = "attaches the SHA-256 (or SHA-512) digest of each record or field; verify: fails records that do not match",
    .options = options,
    .ctx_size = sizeof(hash),
    .flags = SL_STAGE_STATELESS,
    .init = init,
    .process = process,
    .destroy = destroy,
};
