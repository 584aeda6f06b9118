/*
 * value.c — sl_value: strings, arrays, maps, reference counting and copy-on-write (value.h).
 *
 * Invariants the fast paths rely on:
 * - a string of <= SL_STR_INLINE_MAX bytes is always inline (so equal short strings have equal
 *   slen, and key scans compare slen before bytes);
 * - scalars and inline strings have no heap part: ref/free look at the struct only;
 * - an array or map value may have u.o == NULL (empty, nothing allocated yet).
 */
#include "value.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"

_Static_assert(offsetof(sl_value, sbuf) == 2, "inline string bytes start at offset 2");
_Static_assert(offsetof(sl_value, u) == 8, "the union must continue sbuf contiguously");
_Static_assert(sizeof(sl_value) == 16, "sl_value is 16 bytes");
_Static_assert(SL_STR_INLINE_MAX + 1 == 16 - offsetof(sl_value, sbuf),
               "inline strings fill the struct after type and slen");

#define NOTFOUND SL__MAP_NOTFOUND

/* The bytes of an inline string: sbuf and, contiguously, the union. */
static inline char *inline_data(sl_value *v) { return (char *)v + offsetof(sl_value, sbuf); }

static inline void obj_retain(struct sl_obj *o) {
  atomic_fetch_add_explicit(&o->rc, 1, memory_order_relaxed);
}

/* A count of 1 means we hold the only reference, so nobody else can change it: the plain load
 * saves an atomic read-modify-write on the common unshared case. The acquire pairs with the
 * release half of other holders' decrements, so their reads happen before we free or modify. */
static inline bool obj_unique(struct sl_obj *o) {
  return atomic_load_explicit(&o->rc, memory_order_acquire) == 1;
}

static inline void obj_release(struct sl_obj *o) {
  if (obj_unique(o) || atomic_fetch_sub_explicit(&o->rc, 1, memory_order_acq_rel) == 1)
    sl__obj_destroy(o);
}

/* header + n elements of size sz, or SIZE_MAX on overflow (the allocation then fails). */
static size_t obj_bytes(size_t header, size_t n, size_t sz) {
  return n > (SIZE_MAX - header) / sz ? SIZE_MAX : header + n * sz;
}

/* The capacity to grow to for need items: at least double, at least 4. */
static size_t grow_cap(size_t cap, size_t need) {
  size_t c = cap <= SIZE_MAX / 2 ? cap * 2 : SIZE_MAX;
  if (c < need) c = need;
  return c < 4 ? 4 : c;
}

const char *sl_type_name(sl_type t) {
  static const char *const names[] = {"nil", "bool", "int", "double", "string", "array", "map"};
  return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

/* ---------------------------------------------------------------------------------------------
 * Strings
 * ------------------------------------------------------------------------------------------- */

static inline const sl__str *as_str(const struct sl_obj *o) { return (const sl__str *)o; }


static sl_value str_inline(const char *s, size_t n) {
  sl_value v = {0};
  v.type = SL_TSTR;
  v.slen = (uint8_t)(n + 1);
  if (n) memcpy(inline_data(&v), s, n);
  return v;
}

/* Wraps a freshly allocated heap string of n bytes, copying s unless it is NULL. */
static sl_value str_heap(sl__str *o, const char *s, size_t n) {
  sl_value v = {0};
  atomic_init(&o->h.rc, 1);
  o->h.type = SL_TSTR;
  o->len = n;
  if (s) memcpy(o->data, s, n);
  o->data[n] = '\0';
  v.type = SL_TSTR;
  v.u.o = &o->h;
  return v;
}

sl_value sl_str(const char *s, size_t n) {
  if (n <= SL_STR_INLINE_MAX) return str_inline(s, n);
  return str_heap(sl__xmalloc(obj_bytes(sizeof(sl__str) + 1, n, 1)), s, n);
}

sl_value sl_cstr(const char *s) { return sl_str(s, strlen(s)); }

int sl__str_new_try(size_t n, sl_value *out, char **data) {
  if (n <= SL_STR_INLINE_MAX) {
    *out = str_inline(NULL, 0);
    out->slen = (uint8_t)(n + 1);
    *data = inline_data(out); /* zeroed, so the NUL at n is there */
    return SL_OK;
  }
  size_t bytes = obj_bytes(sizeof(sl__str) + 1, n, 1);
  sl__str *o = bytes == SIZE_MAX ? NULL : sl__trymalloc(bytes);
  if (!o) {
    *out = sl_nil();
    *data = NULL;
    return SL_ENOMEM;
  }
  *out = str_heap(o, NULL, n);
  *data = o->data;
  return SL_OK;
}

int sl_str_try(const char *s, size_t n, sl_value *out) {
  char *data;
  int rc = sl__str_new_try(n, out, &data);
  if (rc == SL_OK && n) memcpy(data, s, n);
  return rc;
}

/* Formats into a stack buffer first; only long results are formatted twice. */
sl_value sl_strf(const char *fmt, ...) {
  char buf[256];
  va_list ap, ap2;
  sl_value v;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int r = vsnprintf(buf, sizeof buf, fmt, ap);
  if (r < 0) {
    v = str_inline(NULL, 0);
  } else if ((size_t)r < sizeof buf) {
    v = sl_str(buf, (size_t)r);
  } else {
    sl__str *o = sl__xmalloc(obj_bytes(sizeof(sl__str) + 1, (size_t)r, 1));
    vsnprintf(o->data, (size_t)r + 1, fmt, ap2);
    v = str_heap(o, NULL, (size_t)r);
  }
  va_end(ap2);
  va_end(ap);
  return v;
}

const char *sl_str_data(const sl_value *v) {
  size_t n;
  return v->type == SL_TSTR ? sl__str_view(v, &n) : NULL;
}

size_t sl_str_len(const sl_value *v) {
  size_t n = 0;
  if (v->type == SL_TSTR) sl__str_view(v, &n);
  return n;
}

/* ---------------------------------------------------------------------------------------------
 * Arrays
 * ------------------------------------------------------------------------------------------- */

static sl__array *array_alloc(size_t cap) {
  sl__array *a = sl__xmalloc(obj_bytes(sizeof(sl__array), cap, sizeof(sl_value)));
  atomic_init(&a->h.rc, 1);
  a->h.type = SL_TARRAY;
  a->len = 0;
  a->u.cap = cap;
  return a;
}

/* The array of *a made writable with room for need items: allocated if still lazy, copied if
 * shared (copy-on-write: the copy references every item and our reference to the original is
 * dropped), grown if too small. *a is updated. */
static sl__array *array_mut(sl_value *a, size_t need) {
  sl__array *o = (sl__array *)a->u.o;
  if (!o) {
    o = array_alloc(need < 4 ? 4 : need);
  } else if (!obj_unique(&o->h)) {
    sl__array *c = array_alloc(need > o->len ? grow_cap(o->len, need) : o->len);
    for (size_t i = 0; i < o->len; i++) c->items[i] = sl_value_ref(&o->items[i]);
    c->len = o->len;
    obj_release(&o->h);
    o = c;
  } else if (need > o->u.cap) {
    size_t cap = grow_cap(o->u.cap, need);
    o = sl__xrealloc(o, obj_bytes(sizeof(sl__array), cap, sizeof(sl_value)));
    o->u.cap = cap;
  }
  a->u.o = &o->h;
  return o;
}

sl_value sl_array(size_t cap) {
  sl_value v = {0};
  v.type = SL_TARRAY;
  if (cap) v.u.o = &array_alloc(cap)->h;
  return v;
}

size_t sl_array_len(const sl_value *a) {
  if (a->type != SL_TARRAY || !a->u.o) return 0;
  return ((const sl__array *)a->u.o)->len;
}

const sl_value *sl_array_get(const sl_value *a, size_t i) {
  if (a->type != SL_TARRAY || !a->u.o) return NULL;
  const sl__array *o = (const sl__array *)a->u.o;
  return i < o->len ? &o->items[i] : NULL;
}

int sl_array_push(sl_value *a, sl_value v) {
  if (a->type != SL_TARRAY) {
    sl_value_free(v);
    return SL_EINVAL;
  }
  sl__array *o = array_mut(a, sl_array_len(a) + 1);
  o->items[o->len++] = v;
  return SL_OK;
}

int sl_array_set(sl_value *a, size_t i, sl_value v) {
  if (a->type != SL_TARRAY || i >= sl_array_len(a)) {
    sl_value_free(v);
    return SL_EINVAL;
  }
  sl__array *o = array_mut(a, 0);
  sl_value old = o->items[i];
  o->items[i] = v;
  sl_value_free(old);
  return SL_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Maps: entries in insertion order; maps of more than SL__MAP_INDEX_MIN entries also keep an
 * open-addressing index (linear probing, load <= 1/2) of positions and key hashes.
 * ------------------------------------------------------------------------------------------- */

/* FNV-1a with a final mix, since the index uses the low bits. */
static uint32_t hash_key(const char *p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 16777619u;
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  return h ^ (h >> 13);
}

/* Entries are limited to UINT32_MAX - 1 by the index's 32-bit positions. */
static size_t map_bytes(size_t cap) {
  return cap >= UINT32_MAX ? SIZE_MAX : obj_bytes(sizeof(sl__map), cap, sizeof(sl__map_entry));
}

static sl__map *map_alloc(size_t cap) {
  sl__map *m = sl__xmalloc(map_bytes(cap));
  atomic_init(&m->h.rc, 1);
  m->h.type = SL_TMAP;
  m->len = 0;
  m->u.cap = cap;
  m->index = NULL;
  m->index_mask = 0;
  return m;
}

static inline bool key_is(const sl_value *k, const char *key, size_t klen) {
  size_t n;
  const char *p = sl__str_view(k, &n);
  return n == klen && (klen == 0 || memcmp(p, key, klen) == 0);
}

/* The position of key (whose hash is h) in m's index, or NOTFOUND. */
static size_t index_find(const sl__map *m, uint32_t h, const char *key, size_t klen) {
  for (uint32_t s = h & m->index_mask;; s = (s + 1) & m->index_mask) {
    const sl__map_slot *slot = &m->index[s];
    if (!slot->pos) return NOTFOUND;
    if (slot->hash == h && key_is(&m->ent[slot->pos - 1].key, key, klen)) return slot->pos - 1;
  }
}

/* The position of key in m, or NOTFOUND. Small maps are scanned: inline keys compare slen
 * first, which holds the length. */
size_t sl__map_find(const sl__map *m, const char *key, size_t klen) {
  if (!m->index) {
    if (klen <= SL_STR_INLINE_MAX) {
      uint8_t slen = (uint8_t)(klen + 1);
      for (size_t i = 0; i < m->len; i++) {
        const sl_value *k = &m->ent[i].key;
        if (k->slen == slen && (klen == 0 || memcmp((const char *)k + 2, key, klen) == 0))
          return i;
      }
    } else {
      for (size_t i = 0; i < m->len; i++)
        if (m->ent[i].key.slen == 0 && key_is(&m->ent[i].key, key, klen)) return i;
    }
    return NOTFOUND;
  }
  return index_find(m, hash_key(key, klen), key, klen);
}

static void index_put(sl__map_slot *index, uint32_t mask, uint32_t h, size_t pos) {
  uint32_t s = h & mask;
  while (index[s].pos) s = (s + 1) & mask;
  index[s].pos = (uint32_t)(pos + 1);
  index[s].hash = h;
}

/* Builds the index anew with room for twice the entries. With an old index, the entries it
 * holds are moved with their stored hashes (a new last entry is then for the caller to put);
 * without one, every key is hashed. */
static void index_rebuild(sl__map *m) {
  size_t slots = 32;
  while (slots / 2 < m->len) slots *= 2;
  sl__map_slot *index = sl__xcalloc(slots, sizeof *index);
  uint32_t mask = (uint32_t)(slots - 1);
  if (m->index) {
    for (uint32_t s = 0; s <= m->index_mask; s++)
      if (m->index[s].pos) index_put(index, mask, m->index[s].hash, m->index[s].pos - 1u);
    sl__free(m->index);
  } else {
    for (size_t i = 0; i < m->len; i++) {
      size_t n;
      const char *p = sl__str_view(&m->ent[i].key, &n);
      index_put(index, mask, hash_key(p, n), i);
    }
  }
  m->index = index;
  m->index_mask = mask;
}

/* Removes entry pos from the index (backward-shift deletion, so probes need no tombstones),
 * then renumbers the entries after it, which move down by one. */
static void index_remove(sl__map *m, size_t pos) {
  size_t n;
  const char *p = sl__str_view(&m->ent[pos].key, &n);
  uint32_t mask = m->index_mask, i = hash_key(p, n) & mask;
  while (m->index[i].pos != pos + 1) i = (i + 1) & mask;
  for (uint32_t j = i;;) {
    j = (j + 1) & mask;
    if (!m->index[j].pos) break;
    uint32_t k = m->index[j].hash & mask; /* where j's entry would like to be */
    bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (stays) continue;
    m->index[i] = m->index[j];
    i = j;
  }
  m->index[i].pos = 0;
  for (uint32_t s = 0; s <= mask; s++)
    if (m->index[s].pos > pos + 1) m->index[s].pos--;
}

/* The map of *m made writable with room for need entries; see array_mut. */
static sl__map *map_mut(sl_value *m, size_t need) {
  sl__map *o = (sl__map *)m->u.o;
  if (!o) {
    o = map_alloc(need < 4 ? 4 : need);
  } else if (!obj_unique(&o->h)) {
    sl__map *c = map_alloc(need > o->len ? grow_cap(o->len, need) : o->len);
    for (size_t i = 0; i < o->len; i++) {
      c->ent[i].key = sl_value_ref(&o->ent[i].key);
      c->ent[i].val = sl_value_ref(&o->ent[i].val);
    }
    c->len = o->len;
    if (o->index) {
      size_t slots = (size_t)o->index_mask + 1;
      c->index = memcpy(sl__xmalloc(slots * sizeof *o->index), o->index, slots * sizeof *o->index);
      c->index_mask = o->index_mask;
    }
    obj_release(&o->h);
    o = c;
  } else if (need > o->u.cap) {
    size_t cap = grow_cap(o->u.cap, need);
    o = sl__xrealloc(o, map_bytes(cap));
    o->u.cap = cap;
  }
  m->u.o = &o->h;
  return o;
}

sl_value sl_map(size_t cap) {
  sl_value v = {0};
  v.type = SL_TMAP;
  if (cap) v.u.o = &map_alloc(cap)->h;
  return v;
}

size_t sl_map_len(const sl_value *m) {
  if (m->type != SL_TMAP || !m->u.o) return 0;
  return ((const sl__map *)m->u.o)->len;
}

const sl_value *sl_map_get(const sl_value *m, const char *key, size_t klen) {
  if (m->type != SL_TMAP || !m->u.o) return NULL;
  const sl__map *o = (const sl__map *)m->u.o;
  size_t i = sl__map_find(o, key, klen);
  return i == NOTFOUND ? NULL : &o->ent[i].val;
}

const sl_value *sl_map_getc(const sl_value *m, const char *key) {
  return sl_map_get(m, key, strlen(key));
}

/* Appends entry (k, v), both consumed, keeping the index up to date. */
static void map_append(sl_value *m, sl_value k, sl_value v) {
  size_t pos = sl_map_len(m), klen;
  sl__map *o = map_mut(m, pos + 1);
  o->ent[pos].key = k;
  o->ent[pos].val = v;
  o->len = pos + 1;
  if (o->len > SL__MAP_INDEX_MIN) {
    if (!o->index) {
      index_rebuild(o); /* hashes every key, the new one too */
    } else {
      if (o->len > ((size_t)o->index_mask + 1) / 2) index_rebuild(o); /* the old entries */
      const char *key = sl__str_view(&o->ent[pos].key, &klen);
      index_put(o->index, o->index_mask, hash_key(key, klen), pos);
    }
  }
}

/* Sets key to v (consumed). key_v, when not NULL, is the key as a string value (consumed);
 * otherwise one is made only if the key is new. */
static int map_set(sl_value *m, const char *key, size_t klen, sl_value *key_v, sl_value v) {
  size_t pos = m->u.o ? sl__map_find((const sl__map *)m->u.o, key, klen) : NOTFOUND;
  if (pos != NOTFOUND) {
    sl__map *o = map_mut(m, 0);
    sl_value old = o->ent[pos].val;
    o->ent[pos].val = v;
    sl_value_free(old);
    if (key_v) sl_value_free(*key_v);
    return SL_OK;
  }
  /* the key is made before the entries may move: it may point into one of them */
  map_append(m, key_v ? *key_v : sl_str(key, klen), v);
  return SL_OK;
}

int sl_map_set(sl_value *m, const char *key, size_t klen, sl_value v) {
  if (m->type != SL_TMAP) {
    sl_value_free(v);
    return SL_EINVAL;
  }
  return map_set(m, key, klen, NULL, v);
}

int sl_map_setc(sl_value *m, const char *key, sl_value v) {
  return sl_map_set(m, key, strlen(key), v);
}

int sl__map_set_kv(sl_value *m, sl_value key, sl_value v) {
  if (m->type != SL_TMAP || key.type != SL_TSTR) {
    sl_value_free(key);
    sl_value_free(v);
    return SL_EINVAL;
  }
  size_t klen;
  const char *kp = sl__str_view(&key, &klen); /* points into key (a local) when inline */
  return map_set(m, kp, klen, &key, v);
}

int sl__map_append(sl_value *m, sl_value key, sl_value v) {
  if (m->type != SL_TMAP || key.type != SL_TSTR) {
    sl_value_free(key);
    sl_value_free(v);
    return SL_EINVAL;
  }
  map_append(m, key, v);
  return SL_OK;
}

sl_value sl__map_from(sl__map_entry *ents, size_t n) {
  sl_value v = sl_map(n);
  if (!n) return v;
  sl__map *o = (sl__map *)v.u.o;
  memcpy(o->ent, ents, n * sizeof *ents);
  o->len = n;
  if (n > SL__MAP_INDEX_MIN) index_rebuild(o);
  return v;
}

/* Like sl__map_from, looking for each key among those before it: through an index made at its
 * final size from the start when there are more than SL__MAP_INDEX_MIN entries. */
sl_value sl__map_from_dups(sl__map_entry *ents, size_t n) {
  sl_value v = sl_map(n);
  if (!n) return v;
  sl__map *o = (sl__map *)v.u.o;
  if (n > SL__MAP_INDEX_MIN) {
    size_t slots = 32;
    while (slots / 2 < n) slots *= 2;
    o->index = sl__xcalloc(slots, sizeof *o->index);
    o->index_mask = (uint32_t)(slots - 1);
  }
  for (size_t i = 0; i < n; i++) {
    size_t klen;
    const char *k = sl__str_view(&ents[i].key, &klen);
    uint32_t h = o->index ? hash_key(k, klen) : 0;
    size_t pos = o->index ? index_find(o, h, k, klen) : sl__map_find(o, k, klen);
    if (pos != NOTFOUND) { /* a repeated key: its first place, its last value */
      sl_value_free(o->ent[pos].val);
      o->ent[pos].val = ents[i].val;
      sl_value_free(ents[i].key);
      continue;
    }
    o->ent[o->len] = ents[i];
    if (o->index) index_put(o->index, o->index_mask, h, o->len);
    o->len++;
  }
  if (o->index && o->len <= SL__MAP_INDEX_MIN) { /* repeats made it small: no index */
    sl__free(o->index);
    o->index = NULL;
    o->index_mask = 0;
  }
  return v;
}

const sl_value *sl_map_key(const sl_value *m, size_t i) {
  if (i >= sl_map_len(m)) return NULL;
  return &((const sl__map *)m->u.o)->ent[i].key;
}

const sl_value *sl_map_val(const sl_value *m, size_t i) {
  if (i >= sl_map_len(m)) return NULL;
  return &((const sl__map *)m->u.o)->ent[i].val;
}

/* O(n): the entries after key move down to keep the order. */
int sl_map_del(sl_value *m, const char *key, size_t klen) {
  if (m->type != SL_TMAP) return SL_EINVAL;
  size_t pos = m->u.o ? sl__map_find((const sl__map *)m->u.o, key, klen) : NOTFOUND;
  if (pos == NOTFOUND) return SL_ENOTFOUND;
  sl__map *o = map_mut(m, 0);
  sl__map_entry e = o->ent[pos];
  if (o->index) index_remove(o, pos);
  memmove(&o->ent[pos], &o->ent[pos + 1], (o->len - pos - 1) * sizeof *o->ent);
  o->len--;
  if (o->index && o->len <= SL__MAP_INDEX_MIN) {
    sl__free(o->index);
    o->index = NULL;
    o->index_mask = 0;
  }
  sl_value_free(e.key);
  sl_value_free(e.val);
  return SL_OK;
}

/* ---------------------------------------------------------------------------------------------
 * References, freeing, equality, size
 * ------------------------------------------------------------------------------------------- */

sl_value sl_value_ref(const sl_value *v) {
  struct sl_obj *o = sl__value_obj(v);
  if (o) obj_retain(o);
  return *v;
}

void sl_value_free(sl_value v) {
  struct sl_obj *o = sl__value_obj(&v);
  if (o) obj_release(o);
}

/* Drops the reference a dying container held on a child. A child that dies too is freed at
 * once (a string) or put on the worklist (a container), so deep nesting needs no stack. */
static inline void drop_child(const sl_value *v, struct sl_obj **list) {
  struct sl_obj *o = sl__value_obj(v);
  if (!o || !(obj_unique(o) || atomic_fetch_sub_explicit(&o->rc, 1, memory_order_acq_rel) == 1))
    return;
  if (o->type == SL_TSTR) {
    sl__free(o);
    return;
  }
  if (o->type == SL_TARRAY)
    ((sl__array *)o)->u.dead = *list;
  else
    ((sl__map *)o)->u.dead = *list;
  *list = o;
}

/* The worklist is threaded through the dead objects themselves (their cap field, no longer
 * needed), so freeing never allocates and never recurses. */
void sl__obj_destroy(struct sl_obj *o) {
  struct sl_obj *list = NULL;
  for (;;) {
    if (o->type == SL_TARRAY) {
      sl__array *a = (sl__array *)o;
      for (size_t i = 0; i < a->len; i++) drop_child(&a->items[i], &list);
    } else if (o->type == SL_TMAP) {
      sl__map *m = (sl__map *)o;
      for (size_t i = 0; i < m->len; i++) {
        drop_child(&m->ent[i].key, &list);
        drop_child(&m->ent[i].val, &list);
      }
      sl__free(m->index);
    }
    sl__free(o);
    if (!list) return;
    o = list;
    list = o->type == SL_TARRAY ? ((sl__array *)o)->u.dead : ((sl__map *)o)->u.dead;
  }
}

/* Deep equality. Doubles compare with ==, except that NaN equals NaN (so every value equals
 * itself); 0.0 equals -0.0. Maps compare as sets of entries: ORDER-INSENSITIVE (same keys,
 * equal values), although they keep and print their insertion order. Recursive: the depth is
 * that of the values (JSON input is limited to 1000). */
bool sl_value_equal(const sl_value *a, const sl_value *b) {
  if (a->type != b->type) return false;
  switch ((sl_type)a->type) {
  case SL_TNIL: return true;
  case SL_TBOOL: return a->u.b == b->u.b;
  case SL_TINT: return a->u.i == b->u.i;
  case SL_TDOUBLE: return a->u.d == b->u.d || (isnan(a->u.d) && isnan(b->u.d));
  case SL_TSTR: {
    size_t na, nb;
    const char *pa = sl__str_view(a, &na), *pb = sl__str_view(b, &nb);
    return na == nb && (na == 0 || memcmp(pa, pb, na) == 0);
  }
  case SL_TARRAY: {
    size_t n = sl_array_len(a);
    if (a->u.o == b->u.o) return true;
    if (n != sl_array_len(b)) return false;
    const sl__array *oa = (const sl__array *)a->u.o, *ob = (const sl__array *)b->u.o;
    for (size_t i = 0; i < n; i++)
      if (!sl_value_equal(&oa->items[i], &ob->items[i])) return false;
    return true;
  }
  case SL_TMAP: {
    size_t n = sl_map_len(a);
    if (a->u.o == b->u.o) return true;
    if (n != sl_map_len(b)) return false;
    const sl__map *oa = (const sl__map *)a->u.o, *ob = (const sl__map *)b->u.o;
    for (size_t i = 0; i < n; i++) {
      size_t klen;
      const char *k = sl__str_view(&oa->ent[i].key, &klen);
      size_t j = sl__map_find(ob, k, klen);
      if (j == NOTFOUND || !sl_value_equal(&oa->ent[i].val, &ob->ent[j].val)) return false;
    }
    return true;
  }
  }
  return false;
}

/* An estimate for memory accounting: 16 bytes per value plus the heap parts (shared parts are
 * counted once per reference; allocator overhead is not counted). */
size_t sl_value_size(const sl_value *v) {
  size_t n = sizeof(sl_value);
  struct sl_obj *o = sl__value_obj(v);
  if (!o) return n;
  if (o->type == SL_TSTR) return n + sizeof(sl__str) + as_str(o)->len + 1;
  if (o->type == SL_TARRAY) {
    const sl__array *a = (const sl__array *)o;
    n += sizeof(sl__array) + (a->u.cap - a->len) * sizeof(sl_value);
    for (size_t i = 0; i < a->len; i++) n += sl_value_size(&a->items[i]);
    return n;
  }
  const sl__map *m = (const sl__map *)o;
  n += sizeof(sl__map) + (m->u.cap - m->len) * sizeof(sl__map_entry);
  if (m->index) n += ((size_t)m->index_mask + 1) * sizeof *m->index;
  for (size_t i = 0; i < m->len; i++)
    n += sl_value_size(&m->ent[i].key) + sl_value_size(&m->ent[i].val);
  return n;
}
