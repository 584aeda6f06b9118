/*
 * value.h — the heap side of sl_value (internal; the public half is in sluice.h).
 *
 * A value is a 16-byte struct passed by value. Strings of up to SL_STR_INLINE_MAX bytes live
 * inside it (slen = length + 1, bytes from offset 2, NUL-terminated); everything larger is a
 * heap object behind u.o with an atomic reference count. Arrays and maps with no room asked for
 * are "lazy": u.o is NULL until the first item arrives, so empty containers cost no allocation.
 * A string that fits inline is always inline (lookups compare slen as the length): make strings
 * only through sl_str*, sl__str_new_try or a parser built on them.
 *
 * Threading: a value may be read by several threads at once. Reference counts are C11 atomics
 * (relaxed increment, acq_rel decrement; a count read as 1 with acquire is ours alone, and is
 * freed without the decrement). An object is modified in place only while its count is 1;
 * mutators copy a shared object first (copy-on-write), so a queued value is frozen.
 */
#ifndef SL_VALUE_H
#define SL_VALUE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice.h"

/* The header every heap object starts with. */
struct sl_obj {
  _Atomic uint32_t rc; /* references; the object is freed when it drops to 0 */
  uint8_t type;        /* SL_TSTR, SL_TARRAY or SL_TMAP */
};

/* A string longer than SL_STR_INLINE_MAX bytes. */
typedef struct sl__str {
  struct sl_obj h; /* type SL_TSTR */
  size_t len;      /* bytes, not counting the trailing NUL */
  char data[];     /* len bytes and a NUL */
} sl__str;

/* An array. Items follow the header, so an array is one allocation. */
typedef struct sl__array {
  struct sl_obj h; /* type SL_TARRAY */
  size_t len;      /* items in use */
  union {
    size_t cap;             /* items allocated (while alive) */
    struct sl_obj *dead;    /* next object on the free worklist (once the count hit 0) */
  } u;
  sl_value items[]; /* cap items, len in use */
} sl__array;

/* One map entry: a string key and its value. */
typedef struct sl__map_entry {
  sl_value key; /* always a string */
  sl_value val;
} sl__map_entry;

/* One slot of a map's hash index. */
typedef struct sl__map_slot {
  uint32_t pos;  /* entry index + 1; 0 = empty */
  uint32_t hash; /* the key's hash, compared before the key */
} sl__map_slot;

/* Maps with more entries than this get a hash index; smaller ones are scanned. */
#define SL__MAP_INDEX_MIN 8

/* An insertion-ordered map. Entries follow the header; the index is a separate allocation. */
typedef struct sl__map {
  struct sl_obj h; /* type SL_TMAP */
  size_t len;      /* entries in use */
  union {
    size_t cap;          /* entries allocated (while alive) */
    struct sl_obj *dead; /* next object on the free worklist (once the count hit 0) */
  } u;
  sl__map_slot *index;  /* open-addressing index (load <= 1/2), NULL while len <= 8 */
  uint32_t index_mask;  /* index slots - 1 (a power of two minus one) */
  sl__map_entry ent[];  /* cap entries, len in use, in insertion order */
} sl__map;

/* The heap object of a value, or NULL (scalars, inline strings, lazy empty containers). Reads
 * only the struct itself. */
static inline struct sl_obj *sl__value_obj(const sl_value *v) {
  return v->type >= SL_TSTR && v->slen == 0 ? v->u.o : NULL;
}

/* The bytes and length of a string value (v->type must be SL_TSTR): inline or on the heap. */
static inline const char *sl__str_view(const sl_value *v, size_t *n) {
  if (v->slen) {
    *n = v->slen - 1u;
    return (const char *)v + offsetof(sl_value, sbuf);
  }
  *n = ((const sl__str *)v->u.o)->len;
  return ((const sl__str *)v->u.o)->data;
}

/* The position of key in m, or SL__MAP_NOTFOUND. Reads only. */
#define SL__MAP_NOTFOUND SIZE_MAX
size_t sl__map_find(const sl__map *m, const char *key, size_t klen);

/* A map of the n entries (keys and values consumed; the keys must be distinct strings), in
 * their order, allocated at exactly n entries, with its index built once. For converters that
 * know their keys are distinct (a Lua table's). Aborts on nomem like sl_map. */
sl_value sl__map_from(sl__map_entry *ents, size_t n);
/* sl__map_from for keys that may repeat (JSON objects): a repeated key keeps its first place and
 * takes its last value, as with sl_map_set. */
sl_value sl__map_from_dups(sl__map_entry *ents, size_t n);

/* Frees an object whose count reached 0, and the children that die with it, without
 * recursion. */
void sl__obj_destroy(struct sl_obj *o);

/* Makes a string of n bytes that the caller fills in through *data before using *out (the NUL
 * is already written). For n <= SL_STR_INLINE_MAX *data points into *out itself. errors: nomem */
int sl__str_new_try(size_t n, sl_value *out, char **data);

/* Consumes key (a string) and v: sets *m[key] = v like sl_map_set, without copying the key.
 * errors: einval (m not a map or key not a string) */
int sl__map_set_kv(sl_value *m, sl_value key, sl_value v);
/* Consumes key (a string) and v: appends them without looking for the key, for a caller that
 * knows it is not in m (a parser's distinct field names). errors: einval */
int sl__map_append(sl_value *m, sl_value key, sl_value v);

/* buf.c: makes room for n more bytes and the NUL after b->len. errors: nomem */
int sl__buf_reserve(sl_buf *b, size_t n);

/* json.c: sl_value_to_json, adding to *bad_utf8 (if not NULL) one per string written with
 * U+FFFD for ill-formed UTF-8. errors: nomem */
int sl__json_write(const sl_value *v, sl_buf *out, uint64_t *bad_utf8);
/* sl_value_from_json, adding to *big_ints (if not NULL) the integers too big for int64 that
 * were read as doubles. errors: data, nomem */
int sl__json_parse(const char *text, size_t n, sl_value *out, sl_error_t *err, uint64_t *big_ints);

#endif
