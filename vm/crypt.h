/*
 * crypt.h — the encrypted stream format of the encrypt and decrypt stages (sl_crypt_ prefix), and
 * byte helpers shared by the data stages (read, compress, decompress, hash). docs/formats.md
 * describes the format byte by byte; docs/security.md the choices behind it.
 *
 * A stream is a header record followed by chunk records, each sealed on its own with
 * AES-256-GCM, so chunks can be sealed and opened in parallel:
 *
 *   header  magic, version, algorithm, KDF and its parameters, salt, nonce prefix, HMAC
 *   chunk   flags (last or not), index, ciphertext, tag
 *
 * Keys: a master key (32 bytes given as hex, or Argon2id of a passphrase and the salt) goes
 * through HKDF-SHA256 with the salt into a header MAC key and a payload key, so every stream has
 * its own keys even when the master key is reused. Chunk i is sealed with the nonce
 * prefix || i || flags, and with the header MAC, its flags and its index as authenticated data.
 *
 * Secrets live in sl_crypt_keys and sl_crypt_secret; sl_crypt_*_wipe zeroes them
 * (mbedtls_platform_zeroize). Nothing here logs.
 */
#ifndef SL_CRYPT_H
#define SL_CRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice.h"

#define SL_CRYPT_HEADER_LEN 80   /* bytes of a version 1 header */
#define SL_CRYPT_CHUNK_OVERHEAD 21 /* bytes a chunk adds to its plaintext: flags, index, tag */
#define SL_CRYPT_MAX_INDEX UINT32_MAX
#define SL_CRYPT_MAGIC "SLUICE.e"

enum { SL_CRYPT_KDF_NONE = 0, SL_CRYPT_KDF_ARGON2ID = 1 };
enum { SL_CRYPT_LAST = 1 }; /* chunk flag */

/* Where the master key comes from (the options of encrypt and decrypt). */
typedef struct sl_crypt_secret {
  int kind;              /* SL_CRYPT_KDF_NONE: key[] holds the key; ARGON2ID: pass[] the passphrase */
  uint8_t key[32];
  char *pass;            /* malloc'd, wiped and freed by sl_crypt_secret_wipe */
  size_t passlen;
} sl_crypt_secret;

/* The header's fields. */
typedef struct sl_crypt_header {
  uint8_t kdf;           /* SL_CRYPT_KDF_* */
  uint32_t t_cost;       /* Argon2id iterations (0 without KDF) */
  uint32_t m_cost;       /* Argon2id memory in KiB */
  uint32_t lanes;        /* Argon2id lanes */
  uint8_t salt[16];
  uint8_t prefix[7];     /* nonce prefix */
  uint8_t mac[32];       /* HMAC-SHA256 of bytes 0..47 under the header key */
} sl_crypt_header;

/* A stream's derived keys. */
typedef struct sl_crypt_keys {
  uint8_t payload[32];   /* AES-256-GCM key of the chunks */
  uint8_t mac[32];       /* HMAC-SHA256 key of the header */
} sl_crypt_keys;

/* Reads the secret from exactly one of key_file, key_env or passphrase_env (the others NULL or
 * ""). The message never contains the secret. errors: config, io */
int sl_crypt_secret_load(sl_crypt_secret *s, const char *key_file, const char *key_env,
                         const char *passphrase_env, sl_error_t *err);
void sl_crypt_secret_wipe(sl_crypt_secret *s);

/* Argon2id cost limits: what encrypt accepts and decrypt derives (a header asking for more is
 * refused before any work). */
#define SL_CRYPT_MAX_MEMORY_KIB (4u << 20) /* 4 GiB */
#define SL_CRYPT_MAX_ITERATIONS 1000u
#define SL_CRYPT_MAX_LANES 64u

/* A new header for secret s: random salt and prefix, the given Argon2id costs (ignored for a raw
 * key). Derives the keys into *k and writes the header's bytes into out. errors: data (costs out of range), io (no randomness) */
int sl_crypt_header_new(const sl_crypt_secret *s, uint32_t t_cost, uint32_t m_cost_kib, uint32_t lanes,
                        sl_crypt_header *h, sl_crypt_keys *k, uint8_t out[SL_CRYPT_HEADER_LEN],
                        char *msg, size_t msglen);
/* Parses header bytes (no key needed). errors: data, with the reason in msg */
int sl_crypt_header_parse(const uint8_t *p, size_t n, sl_crypt_header *h, char *msg, size_t msglen);
/* Derives the keys of a parsed header from s and checks its MAC. errors: data (wrong key or
 * passphrase, or a modified header; a key given for a passphrase file and the reverse) */
int sl_crypt_header_open(const sl_crypt_secret *s, const sl_crypt_header *h, sl_crypt_keys *k,
                         char *msg, size_t msglen);
void sl_crypt_keys_wipe(sl_crypt_keys *k);

/* One instance's AES-GCM context for a stream's payload key. */
typedef struct sl_crypt_aead sl_crypt_aead;
/* errors: nomem */
int sl_crypt_aead_new(const sl_crypt_keys *k, const sl_crypt_header *h, sl_crypt_aead **out);
void sl_crypt_aead_free(sl_crypt_aead *a);

/* Seals plaintext p[0..n) as chunk `index` into out[0 .. n + SL_CRYPT_CHUNK_OVERHEAD). */
int sl_crypt_seal(sl_crypt_aead *a, uint32_t index, bool last, const uint8_t *p, size_t n, uint8_t *out);
/* Reads a chunk's flags and index without a key. errors: data (too short, unknown flags) */
int sl_crypt_chunk_peek(const uint8_t *c, size_t n, uint32_t *index, bool *last, char *msg, size_t msglen);
/* Opens chunk c[0..n) into out[0 .. n - SL_CRYPT_CHUNK_OVERHEAD). errors: data (the tag does
 * not match: modified, or from another stream) */
int sl_crypt_open(sl_crypt_aead *a, const uint8_t *c, size_t n, uint8_t *out);

/* True when the bytes start like a header (its magic). */
bool sl_crypt_is_header(const uint8_t *p, size_t n);

/* ---- helpers of the byte-oriented data stages ---- */

/* Makes a string of n bytes for the caller to fill through *data before *out moves (for short
 * strings *data points into *out). errors: nomem */
int sl_bytes_new(size_t n, sl_value *out, char **data);
/* borrows rec: the string a data stage works on — the record itself when it is a string, else
 * the string under `field` of a map. NULL (with why in msg) otherwise. */
const sl_value *sl_bytes_of(const sl_value *rec, const char *field, char *msg, size_t msglen);
/* consumes v: puts it where sl_bytes_of found the bytes (the whole record, or the field). */
void sl_bytes_put(sl_value *rec, const char *field, sl_value v);
/* borrows v: true when v is a string on the heap (longer than fits inside a value). */
bool sl_bytes_heap(const sl_value *v);
/* borrows v: true when a heap string v has other references than the caller's: a source that
 * kept one to its chunk learns whether the stages downstream still hold it. */
bool sl_bytes_shared(const sl_value *v);

#endif
