/* crypt.c — the encrypted stream format and the data stages' byte helpers (see crypt.h). */
#include "crypt.h"

#include <argon2.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <mbedtls/hkdf.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>

#include <openssl/evp.h>

#include "alloc.h"
#include "value.h"

/* AES-256-GCM of the chunks comes from OpenSSL's libcrypto (already in the process through
 * libcurl): its AES-NI/VAES + carry-less multiply code seals ~5.6 GB/s on the build machine, where
 * mbedtls 2.28 (one block at a time) reaches ~0.4 GB/s and was a third of protect's and restore's
 * time. The bytes are the same AES-256-GCM: streams sealed by either open with the other. mbedtls
 * still does HKDF, HMAC and the wiping. */
struct sl_crypt_aead {
  EVP_CIPHER_CTX *ctx; /* AES-256-GCM with the payload key set; the nonce is set per chunk */
  uint8_t prefix[7];   /* the stream's nonce prefix */
  uint8_t hmac[32];    /* the header's MAC: the start of every chunk's authenticated data */
};

/* ---- secrets ---- */

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* 64 hex digits (surrounding white space allowed) into key[32]. The text is never quoted in
 * messages: it is the secret. */
static bool parse_hex_key(const char *s, size_t n, uint8_t key[32]) {
  while (n && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) s++, n--;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
  if (n != 64) return false;
  for (size_t i = 0; i < 32; i++) {
    int hi = hexval((unsigned char)s[2 * i]), lo = hexval((unsigned char)s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    key[i] = (uint8_t)(hi << 4 | lo);
  }
  return true;
}

static bool given(const char *s) { return s && *s; }

int sl_crypt_secret_load(sl_crypt_secret *s, const char *key_file, const char *key_env,
                         const char *passphrase_env, sl_error_t *err) {
  memset(s, 0, sizeof *s);
  int n = given(key_file) + given(key_env) + given(passphrase_env);
  if (n != 1)
    return sl_error_set(err, SL_ECONFIG, NULL, "give exactly one of key_file, key_env or passphrase_env (%s)",
                        n ? "several were given" : "none was given");
  if (given(key_env)) {
    const char *v = getenv(key_env);
    if (!v) return sl_error_set(err, SL_ECONFIG, NULL, "environment variable '%s' (key_env) is not set", key_env);
    if (!parse_hex_key(v, strlen(v), s->key))
      return sl_error_set(err, SL_ECONFIG, NULL, "environment variable '%s' (key_env) must hold a 32-byte key as 64 hex digits", key_env);
    return 0;
  }
  if (given(key_file)) {
    char buf[256];
    int fd = open(key_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sl_error_set(err, SL_EIO, NULL, "cannot open key_file '%s': %s", key_file, strerror(errno));
    ssize_t got = 0, r;
    while (got < (ssize_t)sizeof buf && (r = read(fd, buf + got, sizeof buf - (size_t)got)) != 0) {
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) break;
      got += r;
    }
    close(fd);
    bool ok = got > 0 && got < (ssize_t)sizeof buf && parse_hex_key(buf, (size_t)got, s->key);
    mbedtls_platform_zeroize(buf, sizeof buf);
    if (!ok) return sl_error_set(err, SL_ECONFIG, NULL, "key_file '%s' must hold a 32-byte key as 64 hex digits", key_file);
    return 0;
  }
  const char *v = getenv(passphrase_env);
  if (!v) return sl_error_set(err, SL_ECONFIG, NULL, "environment variable '%s' (passphrase_env) is not set", passphrase_env);
  if (!*v) return sl_error_set(err, SL_ECONFIG, NULL, "environment variable '%s' (passphrase_env) is empty", passphrase_env);
  s->kind = SL_CRYPT_KDF_ARGON2ID;
  s->passlen = strlen(v);
  s->pass = sl__xmalloc(s->passlen + 1);
  memcpy(s->pass, v, s->passlen + 1);
  return 0;
}

void sl_crypt_secret_wipe(sl_crypt_secret *s) {
  if (s->pass) {
    mbedtls_platform_zeroize(s->pass, s->passlen);
    sl__free(s->pass);
  }
  mbedtls_platform_zeroize(s, sizeof *s);
}

void sl_crypt_keys_wipe(sl_crypt_keys *k) { mbedtls_platform_zeroize(k, sizeof *k); }

/* ---- header ---- */

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}
static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Bytes 0..47 of the header (what its MAC covers). */
static void header_body(const sl_crypt_header *h, uint8_t *out) {
  memcpy(out, SL_CRYPT_MAGIC, 8);
  out[8] = 1; /* version */
  out[9] = 1; /* algorithm: AES-256-GCM */
  out[10] = h->kdf;
  out[11] = 0;
  put32(out + 12, h->t_cost);
  put32(out + 16, h->m_cost);
  put32(out + 20, h->lanes);
  memcpy(out + 24, h->salt, 16);
  memcpy(out + 40, h->prefix, 7);
  out[47] = 0;
}

static int costs_ok(uint8_t kdf, uint32_t t, uint32_t m, uint32_t lanes, char *msg, size_t msglen) {
  if (kdf == SL_CRYPT_KDF_NONE) {
    if (t || m || lanes) return snprintf(msg, msglen, "KDF costs given without a KDF"), SL_EDATA;
    return 0;
  }
  if (t < 1 || t > SL_CRYPT_MAX_ITERATIONS || lanes < 1 || lanes > SL_CRYPT_MAX_LANES || m < 8 * lanes ||
      m > SL_CRYPT_MAX_MEMORY_KIB)
    return snprintf(msg, msglen, "Argon2id costs out of range (iterations %u, memory %u KiB, lanes %u; allowed: "
                    "1-%u iterations, 1-%u lanes, 8 KiB per lane to %u KiB)", t, m, lanes, SL_CRYPT_MAX_ITERATIONS,
                    SL_CRYPT_MAX_LANES, SL_CRYPT_MAX_MEMORY_KIB), SL_EDATA;
  return 0;
}

/* The master key (the raw key, or Argon2id of the passphrase), then HKDF into the stream's keys. */
static int derive(const sl_crypt_secret *s, const sl_crypt_header *h, sl_crypt_keys *k, char *msg, size_t msglen) {
  uint8_t master[32];
  if (s->kind == SL_CRYPT_KDF_NONE) {
    memcpy(master, s->key, 32);
  } else {
    int rc = argon2id_hash_raw(h->t_cost, h->m_cost, h->lanes, s->pass, s->passlen, h->salt, sizeof h->salt,
                               master, sizeof master);
    if (rc != ARGON2_OK) {
      mbedtls_platform_zeroize(master, sizeof master);
      snprintf(msg, msglen, "Argon2id failed: %s", argon2_error_message(rc));
      return rc == ARGON2_MEMORY_ALLOCATION_ERROR ? SL_ENOMEM : SL_EDATA;
    }
  }
  const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
  static const char ip[] = "sluice encrypt v1 payload", ih[] = "sluice encrypt v1 header";
  int rc = mbedtls_hkdf(md, h->salt, sizeof h->salt, master, sizeof master, (const uint8_t *)ip, sizeof ip - 1,
                        k->payload, sizeof k->payload);
  if (!rc)
    rc = mbedtls_hkdf(md, h->salt, sizeof h->salt, master, sizeof master, (const uint8_t *)ih, sizeof ih - 1,
                      k->mac, sizeof k->mac);
  mbedtls_platform_zeroize(master, sizeof master);
  if (rc) {
    sl_crypt_keys_wipe(k);
    snprintf(msg, msglen, "key derivation failed (mbedtls error %d)", rc);
    return SL_EDATA;
  }
  return 0;
}

static int header_mac(const sl_crypt_keys *k, const sl_crypt_header *h, uint8_t mac[32]) {
  uint8_t body[48];
  header_body(h, body);
  return mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), k->mac, sizeof k->mac, body, sizeof body, mac);
}

int sl_crypt_header_new(const sl_crypt_secret *s, uint32_t t_cost, uint32_t m_cost_kib, uint32_t lanes,
                        sl_crypt_header *h, sl_crypt_keys *k, uint8_t out[SL_CRYPT_HEADER_LEN],
                        char *msg, size_t msglen) {
  memset(h, 0, sizeof *h);
  h->kdf = (uint8_t)s->kind;
  if (s->kind == SL_CRYPT_KDF_ARGON2ID) {
    h->t_cost = t_cost, h->m_cost = m_cost_kib, h->lanes = lanes;
    int rc = costs_ok(h->kdf, t_cost, m_cost_kib, lanes, msg, msglen);
    if (rc) return rc;
  }
  uint8_t rnd[23];
  size_t got = 0;
  while (got < sizeof rnd) {
    ssize_t r = getrandom(rnd + got, sizeof rnd - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return snprintf(msg, msglen, "no randomness: %s", strerror(errno)), SL_EIO;
    got += (size_t)r;
  }
  memcpy(h->salt, rnd, 16);
  memcpy(h->prefix, rnd + 16, 7);
  int rc = derive(s, h, k, msg, msglen);
  if (rc) return rc;
  if (header_mac(k, h, h->mac) != 0) {
    sl_crypt_keys_wipe(k);
    return snprintf(msg, msglen, "HMAC failed"), SL_EDATA;
  }
  header_body(h, out);
  memcpy(out + 48, h->mac, 32);
  return 0;
}

bool sl_crypt_is_header(const uint8_t *p, size_t n) { return n >= 8 && memcmp(p, SL_CRYPT_MAGIC, 8) == 0; }

int sl_crypt_header_parse(const uint8_t *p, size_t n, sl_crypt_header *h, char *msg, size_t msglen) {
  memset(h, 0, sizeof *h);
  if (!sl_crypt_is_header(p, n)) return snprintf(msg, msglen, "not a sluice encryption header (no magic)"), SL_EDATA;
  if (n < 10) return snprintf(msg, msglen, "the header is cut short (%zu bytes)", n), SL_EDATA;
  if (p[8] != 1) return snprintf(msg, msglen, "unknown format version %u (this sluice reads version 1)", p[8]), SL_EDATA;
  if (p[9] != 1) return snprintf(msg, msglen, "unknown algorithm %u (1 is AES-256-GCM)", p[9]), SL_EDATA;
  if (n != SL_CRYPT_HEADER_LEN)
    return snprintf(msg, msglen, "the header has %zu bytes, not %d", n, SL_CRYPT_HEADER_LEN), SL_EDATA;
  if (p[10] > SL_CRYPT_KDF_ARGON2ID) return snprintf(msg, msglen, "unknown KDF %u", p[10]), SL_EDATA;
  if (p[11] || p[47]) return snprintf(msg, msglen, "reserved header bytes are not zero"), SL_EDATA;
  h->kdf = p[10];
  h->t_cost = get32(p + 12), h->m_cost = get32(p + 16), h->lanes = get32(p + 20);
  int rc = costs_ok(h->kdf, h->t_cost, h->m_cost, h->lanes, msg, msglen);
  if (rc) return rc;
  memcpy(h->salt, p + 24, 16);
  memcpy(h->prefix, p + 40, 7);
  memcpy(h->mac, p + 48, 32);
  return 0;
}

int sl_crypt_header_open(const sl_crypt_secret *s, const sl_crypt_header *h, sl_crypt_keys *k,
                         char *msg, size_t msglen) {
  if (h->kdf != s->kind)
    return snprintf(msg, msglen, h->kdf == SL_CRYPT_KDF_ARGON2ID
                                     ? "the stream was protected with a passphrase: give passphrase_env, not a key"
                                     : "the stream was protected with a key: give key_env or key_file, not a passphrase"),
           SL_EDATA;
  int rc = derive(s, h, k, msg, msglen);
  if (rc) return rc;
  uint8_t mac[32], diff = 0;
  if (header_mac(k, h, mac) != 0) diff = 1;
  for (int i = 0; i < 32; i++) diff |= mac[i] ^ h->mac[i];
  if (diff) {
    sl_crypt_keys_wipe(k);
    return snprintf(msg, msglen, "wrong %s, or the header was modified", s->kind ? "passphrase" : "key"), SL_EDATA;
  }
  return 0;
}

/* ---- chunks ---- */

int sl_crypt_aead_new(const sl_crypt_keys *k, const sl_crypt_header *h, sl_crypt_aead **out) {
  sl_crypt_aead *a = sl__trymalloc(sizeof *a);
  if (!a) return SL_ENOMEM;
  memset(a, 0, sizeof *a);
  a->ctx = EVP_CIPHER_CTX_new();
  if (!a->ctx || EVP_CipherInit_ex(a->ctx, EVP_aes_256_gcm(), NULL, k->payload, NULL, 1) != 1) {
    sl_crypt_aead_free(a);
    return SL_ENOMEM;
  }
  memcpy(a->prefix, h->prefix, 7);
  memcpy(a->hmac, h->mac, 32);
  *out = a;
  return 0;
}

void sl_crypt_aead_free(sl_crypt_aead *a) {
  if (!a) return;
  EVP_CIPHER_CTX_free(a->ctx); /* cleanses the key schedule */
  mbedtls_platform_zeroize(a, sizeof *a);
  sl__free(a);
}

/* nonce = prefix(7) || index(4) || flags(1); aad = header MAC(32) || flags(1) || index(4) */
static void nonce_aad(const sl_crypt_aead *a, uint32_t index, uint8_t flags, uint8_t nonce[12], uint8_t aad[37]) {
  memcpy(nonce, a->prefix, 7);
  put32(nonce + 7, index);
  nonce[11] = flags;
  memcpy(aad, a->hmac, 32);
  aad[32] = flags;
  put32(aad + 33, index);
}

/* One AES-256-GCM pass over n bytes of in into out under nonce and aad (enc: seal, writing the
 * tag; else open, checking it). 0, or SL_EDATA (a tag that does not match, a library failure). */
static int gcm(sl_crypt_aead *a, int enc, const uint8_t nonce[12], const uint8_t *aad, size_t aadlen, const uint8_t *in,
               size_t n, uint8_t *out, uint8_t tag[16]) {
  int len;
  if (EVP_CipherInit_ex(a->ctx, NULL, NULL, NULL, nonce, enc) != 1) return SL_EDATA;
  if (EVP_CipherUpdate(a->ctx, NULL, &len, aad, (int)aadlen) != 1) return SL_EDATA;
  for (size_t off = 0; off < n;) { /* EVP lengths are ints */
    int part = n - off > (1u << 30) ? 1 << 30 : (int)(n - off);
    if (EVP_CipherUpdate(a->ctx, out + off, &len, in + off, part) != 1) return SL_EDATA;
    off += (size_t)part;
  }
  if (!enc && EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1) return SL_EDATA;
  if (EVP_CipherFinal_ex(a->ctx, out + n, &len) != 1) return SL_EDATA; /* open: the tag did not match */
  if (enc && EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1) return SL_EDATA;
  return 0;
}

int sl_crypt_seal(sl_crypt_aead *a, uint32_t index, bool last, const uint8_t *p, size_t n, uint8_t *out) {
  uint8_t nonce[12], aad[37], flags = last ? SL_CRYPT_LAST : 0;
  nonce_aad(a, index, flags, nonce, aad);
  out[0] = flags;
  put32(out + 1, index);
  return gcm(a, 1, nonce, aad, sizeof aad, p, n, out + 5, out + 5 + n);
}

int sl_crypt_chunk_peek(const uint8_t *c, size_t n, uint32_t *index, bool *last, char *msg, size_t msglen) {
  if (n < SL_CRYPT_CHUNK_OVERHEAD)
    return snprintf(msg, msglen, "a chunk of %zu bytes is too short (at least %d)", n, SL_CRYPT_CHUNK_OVERHEAD), SL_EDATA;
  *index = get32(c + 1);
  if (c[0] > SL_CRYPT_LAST) return snprintf(msg, msglen, "chunk %u (as it says) has unknown flags 0x%02x", *index, c[0]), SL_EDATA;
  *last = c[0] == SL_CRYPT_LAST;
  return 0;
}

int sl_crypt_open(sl_crypt_aead *a, const uint8_t *c, size_t n, uint8_t *out) {
  uint8_t nonce[12], aad[37], tag[16];
  nonce_aad(a, get32(c + 1), c[0], nonce, aad);
  size_t len = n - SL_CRYPT_CHUNK_OVERHEAD;
  memcpy(tag, c + 5 + len, 16);
  return gcm(a, 0, nonce, aad, sizeof aad, c + 5, len, out, tag);
}

/* ---- byte helpers ---- */

int sl_bytes_new(size_t n, sl_value *out, char **data) { return sl__str_new_try(n, out, data); }

const sl_value *sl_bytes_of(const sl_value *rec, const char *field, char *msg, size_t msglen) {
  if (rec->type == SL_TSTR) return rec;
  if (rec->type != SL_TMAP) {
    snprintf(msg, msglen, "expected a string or a map with a string '%s', got %s", field, sl_type_name((sl_type)rec->type));
    return NULL;
  }
  const sl_value *v = sl_map_getc(rec, field);
  if (!v || v->type != SL_TSTR) {
    snprintf(msg, msglen, "the record has no string field '%s'%s", field, v ? " (it holds another type)" : "");
    return NULL;
  }
  return v;
}

void sl_bytes_put(sl_value *rec, const char *field, sl_value v) {
  if (rec->type == SL_TMAP) {
    sl_map_setc(rec, field, v);
  } else {
    sl_value_free(*rec);
    *rec = v;
  }
}

bool sl_bytes_heap(const sl_value *v) { return v->type == SL_TSTR && sl__value_obj(v) != NULL; }

bool sl_bytes_shared(const sl_value *v) {
  struct sl_obj *o = sl__value_obj(v);
  return o && atomic_load_explicit(&o->rc, memory_order_acquire) > 1;
}
