/* test_value.c — values, JSON, sl_buf, errors, duration and size parsing. */
#include <float.h>
#include <math.h>
#include <pthread.h>

#include "alloc.h"
#include "test.h"
#include "value.h"

/* Prototypes for -Wmissing-prototypes (TEST() defines without declaring). */
#define X(name) void test_##name(void);
#include "test_list.h"
#undef X

/* ASSERT_OK's error argument for calls that take none. */
#define NO_ERR ((sl_error_t *)NULL)

/* The JSON text of v (in a static buffer, so a failing assertion leaks nothing). */
static char jbuf[1 << 16];
static const char *J(const sl_value *v) {
  sl_buf b;
  sl_buf_init(&b);
  if (sl_value_to_json(v, &b) != SL_OK)
    snprintf(jbuf, sizeof jbuf, "<error>");
  else
    snprintf(jbuf, sizeof jbuf, "%s", b.data ? b.data : "");
  sl_buf_close(&b);
  return jbuf;
}

static int P(const char *text, sl_value *out, sl_error_t *err) {
  return sl_value_from_json(text, strlen(text), out, err);
}

/* Parses text, writes it back, and compares with want (text itself when want is NULL). */
static const char *PJ(const char *text) {
  sl_value v;
  sl_error_t err;
  sl_error_init(&err);
  if (P(text, &v, &err)) {
    snprintf(jbuf, sizeof jbuf, "<parse error: %s>", err.msg);
    return jbuf;
  }
  J(&v);
  sl_value_free(v);
  return jbuf;
}

static uint32_t rc_of(const sl_value *v) { return atomic_load(&sl__value_obj(v)->rc); }

TEST(value_scalars) {
  sl_value n = sl_nil(), t = sl_bool(true), f = sl_bool(false), i = sl_int(-42), d = sl_double(2.5);
  ASSERT_EQ(sizeof(sl_value), 16);
  ASSERT_EQ(sl_typeof(&n), SL_TNIL);
  ASSERT_EQ(sl_typeof(&t), SL_TBOOL);
  ASSERT(t.u.b && !f.u.b);
  ASSERT_EQ(sl_typeof(&i), SL_TINT);
  ASSERT_EQ(i.u.i, -42);
  ASSERT_EQ(sl_typeof(&d), SL_TDOUBLE);
  ASSERT(d.u.d == 2.5);
  ASSERT_STR(sl_type_name(SL_TNIL), "nil");
  ASSERT_STR(sl_type_name(SL_TBOOL), "bool");
  ASSERT_STR(sl_type_name(SL_TINT), "int");
  ASSERT_STR(sl_type_name(SL_TDOUBLE), "double");
  ASSERT_STR(sl_type_name(SL_TSTR), "string");
  ASSERT_STR(sl_type_name(SL_TARRAY), "array");
  ASSERT_STR(sl_type_name(SL_TMAP), "map");
  ASSERT_STR(sl_type_name((sl_type)99), "unknown");
  /* scalars have no heap part; ref and free are no-ops */
  ASSERT(sl__value_obj(&i) == NULL);
  sl_value r = sl_value_ref(&i);
  ASSERT_EQ(r.u.i, -42);
  sl_value_free(r);
  sl_value_free(i);
  sl_value_free(n);
  /* accessors of other types answer "nothing" */
  ASSERT(sl_str_data(&i) == NULL);
  ASSERT_EQ(sl_str_len(&i), 0);
  ASSERT_EQ(sl_array_len(&i), 0);
  ASSERT(sl_array_get(&i, 0) == NULL);
  ASSERT_EQ(sl_map_len(&i), 0);
  ASSERT(sl_map_getc(&i, "a") == NULL);
  ASSERT(sl_map_key(&i, 0) == NULL);
  ASSERT_EQ(sl_array_push(&i, sl_cstr("a string long enough for the heap")), SL_EINVAL);
  ASSERT_EQ(sl_array_set(&i, 0, sl_int(1)), SL_EINVAL);
  ASSERT_EQ(sl_map_setc(&i, "k", sl_cstr("a string long enough for the heap")), SL_EINVAL);
  ASSERT_EQ(sl_map_del(&i, "k", 1), SL_EINVAL);
  ASSERT_EQ(i.type, SL_TINT);
  ASSERT_EQ(sl_value_size(&i), 16);
}

TEST(value_strings) {
  /* the empty string is inline */
  sl_value e = sl_str("", 0);
  ASSERT_EQ(sl_typeof(&e), SL_TSTR);
  ASSERT_EQ(e.slen, 1);
  ASSERT_EQ(sl_str_len(&e), 0);
  ASSERT_STR(sl_str_data(&e), "");
  sl_value e2 = sl_str(NULL, 0);
  ASSERT_EQ(sl_str_len(&e2), 0);
  /* 13 bytes: inline, bytes at offset 2, NUL-terminated */
  sl_value s13 = sl_cstr("abcdefghijklm");
  ASSERT_EQ(s13.slen, 14);
  ASSERT(sl__value_obj(&s13) == NULL);
  ASSERT(sl_str_data(&s13) == (const char *)&s13 + 2);
  ASSERT_EQ(sl_str_len(&s13), 13);
  ASSERT_STR(sl_str_data(&s13), "abcdefghijklm");
  ASSERT_EQ(sl_str_data(&s13)[13], '\0');
  sl_value c13 = sl_value_ref(&s13); /* a plain copy */
  ASSERT(memcmp(&c13, &s13, sizeof s13) == 0);
  sl_value_free(c13);
  sl_value_free(s13);
  /* 14 bytes: on the heap */
  sl_value s14 = sl_cstr("abcdefghijklmn");
  ASSERT_EQ(s14.slen, 0);
  ASSERT(sl__value_obj(&s14) != NULL);
  ASSERT_EQ(sl_str_len(&s14), 14);
  ASSERT_STR(sl_str_data(&s14), "abcdefghijklmn");
  ASSERT_EQ(rc_of(&s14), 1);
  sl_value r14 = sl_value_ref(&s14);
  ASSERT_EQ(rc_of(&s14), 2);
  ASSERT(sl_str_data(&r14) == sl_str_data(&s14));
  sl_value_free(r14);
  ASSERT_EQ(rc_of(&s14), 1);
  sl_value_free(s14);
  /* binary strings with NULs, inline and on the heap */
  sl_value b3 = sl_str("a\0b", 3);
  ASSERT_EQ(sl_str_len(&b3), 3);
  ASSERT(memcmp(sl_str_data(&b3), "a\0b", 4) == 0);
  sl_value b20 = sl_str("\0\0\0\0\0x\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 20);
  ASSERT_EQ(sl_str_len(&b20), 20);
  ASSERT_EQ(sl_str_data(&b20)[5], 'x');
  ASSERT_EQ(sl_str_data(&b20)[20], '\0');
  sl_value_free(b3);
  sl_value_free(b20);
  /* the try variant, both sides of the boundary */
  sl_value t;
  ASSERT_OK(sl_str_try("hello", 5, &t), NO_ERR);
  ASSERT_EQ(t.slen, 6);
  ASSERT_STR(sl_str_data(&t), "hello");
  sl_value_free(t);
  char big[1000];
  memset(big, 'z', sizeof big);
  ASSERT_OK(sl_str_try(big, sizeof big, &t), NO_ERR);
  ASSERT_EQ(t.slen, 0);
  ASSERT_EQ(sl_str_len(&t), 1000);
  ASSERT(memcmp(sl_str_data(&t), big, 1000) == 0);
  ASSERT(sl_value_size(&t) >= 16 + 1000);
  sl_value_free(t);
}

TEST(value_strf) {
  sl_value s = sl_strf("%d-%s", 42, "x");
  ASSERT_EQ(s.slen, 5);
  ASSERT_STR(sl_str_data(&s), "42-x");
  sl_value_free(s);
  char long_arg[600];
  memset(long_arg, 'q', sizeof long_arg - 1);
  long_arg[sizeof long_arg - 1] = '\0';
  s = sl_strf("<%s>", long_arg);
  ASSERT_EQ(sl_str_len(&s), 601);
  ASSERT_EQ(sl_str_data(&s)[0], '<');
  ASSERT_EQ(sl_str_data(&s)[600], '>');
  ASSERT_EQ(sl_str_data(&s)[601], '\0');
  sl_value_free(s);
  s = sl_strf("%s", "");
  ASSERT_EQ(sl_str_len(&s), 0);
  sl_value_free(s);
}

TEST(value_arrays) {
  sl_value a = sl_array(0);
  ASSERT_EQ(sl_typeof(&a), SL_TARRAY);
  ASSERT_EQ(sl_array_len(&a), 0);
  ASSERT(sl_array_get(&a, 0) == NULL);
  ASSERT_STR(J(&a), "[]");
  for (int i = 0; i < 100; i++) ASSERT_OK(sl_array_push(&a, sl_int(i)), NO_ERR);
  ASSERT_EQ(sl_array_len(&a), 100);
  for (int i = 0; i < 100; i++) ASSERT_EQ(sl_array_get(&a, (size_t)i)->u.i, i);
  ASSERT(sl_array_get(&a, 100) == NULL);
  ASSERT_OK(sl_array_set(&a, 5, sl_cstr("a heap string, not inline")), NO_ERR);
  ASSERT_STR(sl_str_data(sl_array_get(&a, 5)), "a heap string, not inline");
  ASSERT_OK(sl_array_set(&a, 5, sl_cstr("inline")), NO_ERR); /* frees the old one */
  ASSERT_STR(sl_str_data(sl_array_get(&a, 5)), "inline");
  /* out of range: einval, and the value is consumed (no leak) */
  ASSERT_EQ(sl_array_set(&a, 100, sl_cstr("another heap string, consumed")), SL_EINVAL);
  ASSERT_EQ(sl_array_len(&a), 100);
  /* nesting */
  sl_value inner = sl_array(2);
  ASSERT_EQ(sl_array_len(&inner), 0);
  sl_array_push(&inner, sl_bool(true));
  sl_array_push(&inner, sl_nil());
  sl_array_push(&a, inner);
  ASSERT_EQ(sl_array_len(sl_array_get(&a, 100)), 2);
  sl_value_free(a);
  /* an empty array made with room, then freed */
  a = sl_array(1000);
  ASSERT_EQ(sl_typeof(&a), SL_TARRAY);
  ASSERT(sl_value_size(&a) >= 1000 * 16);
  sl_value_free(a);
}

TEST(value_maps) {
  sl_value m = sl_map(0);
  ASSERT_EQ(sl_typeof(&m), SL_TMAP);
  ASSERT_EQ(sl_map_len(&m), 0);
  ASSERT(sl_map_getc(&m, "a") == NULL);
  ASSERT_EQ(sl_map_del(&m, "a", 1), SL_ENOTFOUND);
  ASSERT_STR(J(&m), "{}");
  ASSERT_OK(sl_map_setc(&m, "a", sl_int(1)), NO_ERR);
  ASSERT_OK(sl_map_setc(&m, "b", sl_int(2)), NO_ERR);
  ASSERT_OK(sl_map_setc(&m, "a key longer than thirteen", sl_int(3)), NO_ERR);
  ASSERT_OK(sl_map_setc(&m, "", sl_int(4)), NO_ERR);
  ASSERT_OK(sl_map_set(&m, "x\0y", 3, sl_int(5)), NO_ERR);
  ASSERT_OK(sl_map_set(&m, "x\0z", 3, sl_int(6)), NO_ERR);
  ASSERT_EQ(sl_map_len(&m), 6);
  ASSERT_STR(J(&m), "{\"a\":1,\"b\":2,\"a key longer than thirteen\":3,\"\":4,"
                    "\"x\\u0000y\":5,\"x\\u0000z\":6}");
  ASSERT_EQ(sl_map_getc(&m, "b")->u.i, 2);
  ASSERT_EQ(sl_map_getc(&m, "a key longer than thirteen")->u.i, 3);
  ASSERT_EQ(sl_map_getc(&m, "")->u.i, 4);
  ASSERT_EQ(sl_map_get(&m, "x\0y", 3)->u.i, 5);
  ASSERT_EQ(sl_map_get(&m, "x\0z", 3)->u.i, 6);
  ASSERT(sl_map_get(&m, "x", 1) == NULL); /* "x\0y" is not "x" */
  ASSERT(sl_map_getc(&m, "a key longer than thirteeN") == NULL);
  ASSERT(sl_map_getc(&m, "c") == NULL);
  /* replacing keeps the position */
  ASSERT_OK(sl_map_setc(&m, "a", sl_cstr("replaced with a heap string")), NO_ERR);
  ASSERT_EQ(sl_map_len(&m), 6);
  ASSERT_STR(sl_str_data(sl_map_key(&m, 0)), "a");
  ASSERT_STR(sl_str_data(sl_map_val(&m, 0)), "replaced with a heap string");
  ASSERT_OK(sl_map_setc(&m, "a", sl_int(1)), NO_ERR);
  /* key/val by index */
  ASSERT_STR(sl_str_data(sl_map_key(&m, 2)), "a key longer than thirteen");
  ASSERT_EQ(sl_map_val(&m, 2)->u.i, 3);
  ASSERT(sl_map_key(&m, 6) == NULL);
  ASSERT(sl_map_val(&m, 6) == NULL);
  /* deleting keeps the order of the rest */
  ASSERT_OK(sl_map_del(&m, "b", 1), NO_ERR);
  ASSERT_EQ(sl_map_del(&m, "b", 1), SL_ENOTFOUND);
  ASSERT_STR(J(&m), "{\"a\":1,\"a key longer than thirteen\":3,\"\":4,"
                    "\"x\\u0000y\":5,\"x\\u0000z\":6}");
  ASSERT_OK(sl_map_del(&m, "a", 1), NO_ERR);
  ASSERT_OK(sl_map_del(&m, "x\0z", 3), NO_ERR);
  ASSERT_STR(J(&m), "{\"a key longer than thirteen\":3,\"\":4,\"x\\u0000y\":5}");
  ASSERT(sl_map_getc(&m, "a") == NULL);
  ASSERT_EQ(sl_map_get(&m, "x\0y", 3)->u.i, 5);
  /* a map set re-adds at the end */
  ASSERT_OK(sl_map_setc(&m, "a", sl_int(7)), NO_ERR);
  ASSERT_STR(J(&m), "{\"a key longer than thirteen\":3,\"\":4,\"x\\u0000y\":5,\"a\":7}");
  ASSERT_EQ(sl_map_setc(&m, "k", sl_nil()), SL_OK);
  ASSERT_EQ(sl_typeof(sl_map_getc(&m, "k")), SL_TNIL);
  sl_value_free(m);
  /* a new key taken from the map's own (inline) value, while the map grows and moves */
  for (int i = 0; i < 20; i++) {
    sl_value g = sl_map(0);
    sl_map_setc(&g, "src", sl_cstr("short"));
    for (int j = 0; j < i; j++) sl_map_set(&g, (const char *)&j, sizeof j, sl_int(j));
    const sl_value *src = sl_map_getc(&g, "src");
    ASSERT_OK(sl_map_set(&g, sl_str_data(src), sl_str_len(src), sl_int(-1)), NO_ERR);
    ASSERT_EQ(sl_map_getc(&g, "short")->u.i, -1);
    sl_value_free(g);
  }
  /* the internal key-value setter: einval for non-string keys, values consumed */
  m = sl_map(4);
  ASSERT_EQ(sl__map_set_kv(&m, sl_int(1), sl_cstr("consumed: long enough for heap")), SL_EINVAL);
  ASSERT_OK(sl__map_set_kv(&m, sl_cstr("key long enough for the heap"), sl_int(1)),
            NO_ERR);
  ASSERT_OK(sl__map_set_kv(&m, sl_cstr("key long enough for the heap"), sl_int(2)),
            NO_ERR);
  ASSERT_EQ(sl_map_len(&m), 1);
  ASSERT_EQ(sl_map_getc(&m, "key long enough for the heap")->u.i, 2);
  sl_value_free(m);
}

/* Checks every key k0..k(n-1) except the deleted ones (del[i] != 0) is found in order. */
static int check_keys(const sl_value *m, int n, const char *del) {
  size_t pos = 0;
  for (int i = 0; i < n; i++) {
    char k[32];
    snprintf(k, sizeof k, i % 3 ? "k%d" : "a rather longer key %d", i);
    const sl_value *v = sl_map_getc(m, k);
    if (del && del[i]) {
      if (v) return 0;
      continue;
    }
    if (!v || v->u.i != i) return 0;
    const sl_value *key = sl_map_key(m, pos++);
    if (!key || strcmp(sl_str_data(key), k) != 0) return 0;
  }
  return pos == sl_map_len(m) && !sl_map_getc(m, "missing") && !sl_map_getc(m, "k-1");
}

TEST(value_map_index) {
  sl_value m = sl_map(0);
  char del[40] = {0};
  for (int i = 0; i < 40; i++) {
    char k[32];
    snprintf(k, sizeof k, i % 3 ? "k%d" : "a rather longer key %d", i);
    ASSERT_OK(sl_map_setc(&m, k, sl_int(i)), NO_ERR);
    const sl__map *o = (const sl__map *)m.u.o;
    ASSERT((o->index != NULL) == (i + 1 > SL__MAP_INDEX_MIN));
    ASSERT(check_keys(&m, i + 1, NULL));
  }
  /* replace with an index: position kept */
  ASSERT_OK(sl_map_setc(&m, "k20", sl_int(20)), NO_ERR);
  ASSERT(check_keys(&m, 40, NULL));
  /* deletes from the front, middle and end keep the index right */
  static const int order[] = {0, 39, 20, 21, 1, 38, 10, 11, 12, 13, 14, 2, 3, 4, 5, 30, 31, 32,
                              33, 34, 35, 36, 37, 22, 23, 24, 25, 26, 27, 28, 29};
  for (size_t j = 0; j < sizeof order / sizeof order[0]; j++) {
    char k[32];
    int i = order[j];
    snprintf(k, sizeof k, i % 3 ? "k%d" : "a rather longer key %d", i);
    ASSERT_OK(sl_map_del(&m, k, strlen(k)), NO_ERR);
    del[i] = 1;
    ASSERT(check_keys(&m, 40, del));
    const sl__map *o = (const sl__map *)m.u.o;
    ASSERT((o->index != NULL) == (sl_map_len(&m) > SL__MAP_INDEX_MIN));
  }
  ASSERT_EQ(sl_map_len(&m), 9);
  /* grows an index again */
  for (int i = 0; i < 40; i++) {
    if (!del[i]) continue;
    char k[32];
    snprintf(k, sizeof k, i % 3 ? "k%d" : "a rather longer key %d", i);
    ASSERT_OK(sl_map_setc(&m, k, sl_int(i)), NO_ERR);
  }
  ASSERT_EQ(sl_map_len(&m), 40);
  for (int i = 0; i < 40; i++) {
    char k[32];
    snprintf(k, sizeof k, i % 3 ? "k%d" : "a rather longer key %d", i);
    ASSERT_EQ(sl_map_getc(&m, k)->u.i, i);
  }
  sl_value_free(m);
}

TEST(value_map_10k) {
  enum { N = 10000 };
  sl_value m = sl_map(0);
  for (int i = 0; i < N; i++) {
    char k[32];
    snprintf(k, sizeof k, i % 3 ? "k%d" : "a rather longer key %d", i);
    ASSERT_OK(sl_map_setc(&m, k, sl_int(i)), NO_ERR);
  }
  ASSERT_EQ(sl_map_len(&m), N);
  ASSERT(check_keys(&m, N, NULL));
  /* setting existing keys again changes nothing in size or order */
  for (int i = 0; i < N; i += 7) {
    char k[32];
    snprintf(k, sizeof k, i % 3 ? "k%d" : "a rather longer key %d", i);
    ASSERT_OK(sl_map_setc(&m, k, sl_int(i)), NO_ERR);
  }
  ASSERT_EQ(sl_map_len(&m), N);
  static char del[N];
  memset(del, 0, sizeof del);
  for (int i = 0; i < N; i += 97) {
    char k[32];
    snprintf(k, sizeof k, i % 3 ? "k%d" : "a rather longer key %d", i);
    ASSERT_OK(sl_map_del(&m, k, strlen(k)), NO_ERR);
    del[i] = 1;
  }
  ASSERT(check_keys(&m, N, del));
  sl_value_free(m);
}

TEST(value_cow) {
  /* arrays: push and set on a shared array leave the other reference alone */
  sl_value a = sl_array(0);
  sl_array_push(&a, sl_int(1));
  sl_array_push(&a, sl_cstr("shared heap string item"));
  sl_value b = sl_value_ref(&a);
  ASSERT(a.u.o == b.u.o);
  ASSERT_EQ(rc_of(&a), 2);
  ASSERT_OK(sl_array_push(&b, sl_int(3)), NO_ERR);
  ASSERT(a.u.o != b.u.o);
  ASSERT_EQ(rc_of(&a), 1);
  ASSERT_EQ(rc_of(&b), 1);
  ASSERT_EQ(sl_array_len(&a), 2);
  ASSERT_EQ(sl_array_len(&b), 3);
  ASSERT_EQ(rc_of(sl_array_get(&a, 1)), 2); /* the item is shared, not copied */
  sl_value c = sl_value_ref(&a);
  ASSERT_OK(sl_array_set(&c, 0, sl_int(100)), NO_ERR);
  ASSERT_EQ(sl_array_get(&a, 0)->u.i, 1);
  ASSERT_EQ(sl_array_get(&c, 0)->u.i, 100);
  ASSERT_STR(J(&a), "[1,\"shared heap string item\"]");
  ASSERT_STR(J(&b), "[1,\"shared heap string item\",3]");
  ASSERT_STR(J(&c), "[100,\"shared heap string item\"]");
  ASSERT_EQ(rc_of(sl_array_get(&a, 1)), 3);
  /* unshared: modified in place */
  const void *before = a.u.o;
  ASSERT_OK(sl_array_set(&a, 0, sl_int(5)), NO_ERR);
  ASSERT(a.u.o == before);
  sl_value_free(a);
  sl_value_free(b);
  sl_value_free(c);

  /* maps, small and indexed: set and del */
  for (int n = 3; n <= 30; n += 27) {
    sl_value m = sl_map(0);
    for (int i = 0; i < n; i++) {
      char k[16];
      snprintf(k, sizeof k, "k%d", i);
      sl_map_setc(&m, k, sl_int(i));
    }
    sl_value m2 = sl_value_ref(&m);
    ASSERT_OK(sl_map_setc(&m2, "k1", sl_int(-1)), NO_ERR);
    ASSERT_EQ(sl_map_getc(&m, "k1")->u.i, 1);
    ASSERT_EQ(sl_map_getc(&m2, "k1")->u.i, -1);
    sl_value m3 = sl_value_ref(&m);
    ASSERT_OK(sl_map_setc(&m3, "new", sl_int(9)), NO_ERR);
    ASSERT(sl_map_getc(&m, "new") == NULL);
    ASSERT_EQ(sl_map_len(&m3), (size_t)n + 1);
    sl_value m4 = sl_value_ref(&m);
    ASSERT_OK(sl_map_del(&m4, "k0", 2), NO_ERR);
    ASSERT_EQ(sl_map_len(&m), (size_t)n);
    ASSERT_EQ(sl_map_len(&m4), (size_t)n - 1);
    ASSERT(sl_map_getc(&m4, "k0") == NULL);
    ASSERT_EQ(sl_map_getc(&m, "k0")->u.i, 0);
    for (int i = 1; i < n; i++) {
      char k[16];
      snprintf(k, sizeof k, "k%d", i);
      ASSERT_EQ(sl_map_getc(&m, k)->u.i, i);
      ASSERT_EQ(sl_map_getc(&m4, k)->u.i, i);
      ASSERT_EQ(sl_map_getc(&m3, k)->u.i, i);
    }
    sl_value_free(m);
    sl_value_free(m2);
    sl_value_free(m3);
    sl_value_free(m4);
  }

  /* a value pushed into itself (through a reference) makes no cycle */
  sl_value s = sl_array(0);
  sl_array_push(&s, sl_int(1));
  sl_array_push(&s, sl_value_ref(&s));
  ASSERT_STR(J(&s), "[1,[1]]");
  sl_value_free(s);

  /* lazy empty containers: refs of them are independent too */
  sl_value e = sl_map(0), e2 = sl_value_ref(&e);
  sl_map_setc(&e2, "a", sl_int(1));
  ASSERT_EQ(sl_map_len(&e), 0);
  ASSERT_EQ(sl_map_len(&e2), 1);
  sl_value_free(e);
  sl_value_free(e2);
}

TEST(value_deep_free) {
  /* 1,000,000 nested arrays, freed without recursion */
  sl_value v = sl_array(0);
  for (int i = 0; i < 1000000; i++) {
    sl_value outer = sl_array(1);
    sl_array_push(&outer, v);
    v = outer;
  }
  sl_value_free(v);
  /* nested maps and arrays alternating, with strings at every level */
  v = sl_map(0);
  for (int i = 0; i < 200000; i++) {
    sl_value outer = i % 2 ? sl_map(2) : sl_array(2);
    if (i % 2) {
      sl_map_setc(&outer, "a heap key, long enough", sl_cstr("and a heap value, also long"));
      sl_map_setc(&outer, "child", v);
    } else {
      sl_array_push(&outer, v);
      sl_array_push(&outer, sl_cstr("a heap item, long enough"));
    }
    v = outer;
  }
  sl_value_free(v);
  /* wide: a shared child survives the first parent */
  sl_value child = sl_array(0);
  sl_array_push(&child, sl_cstr("the child's heap string"));
  sl_value p1 = sl_array(0), p2 = sl_array(0);
  for (int i = 0; i < 10000; i++) sl_array_push(&p1, sl_value_ref(&child));
  sl_array_push(&p2, child);
  sl_value_free(p1);
  ASSERT_EQ(rc_of(sl_array_get(&p2, 0)), 1);
  ASSERT_STR(J(&p2), "[[\"the child's heap string\"]]");
  sl_value_free(p2);
}

/* Threads share a frozen value: each takes references, modifies its own (copy-on-write), reads
 * and writes the shared one as JSON, and frees; the shared value never changes (run under TSan
 * in `make tsan`). */
static sl_value shared_v;
static char shared_json[4096];

static void *share_worker(void *arg) {
  long bad = 0;
  for (int i = 0; i < 2000; i++) {
    sl_value r = sl_value_ref(&shared_v);
    sl_map_setc(&r, "k3", sl_int(i));
    sl_map_setc(&r, "new key, long enough for the heap", sl_cstr("a fresh heap string value"));
    sl_map_del(&r, "k7", 2);
    sl_buf b;
    sl_buf_init(&b);
    sl_value_to_json(&shared_v, &b);
    if (strcmp(b.data, shared_json) != 0) bad++;
    sl_buf_close(&b);
    sl_value inner = sl_value_ref(sl_map_getc(&shared_v, "list"));
    sl_array_push(&inner, sl_int(i));
    if (sl_array_len(sl_map_getc(&shared_v, "list")) != 3) bad++;
    sl_value_free(inner);
    sl_value_free(r);
  }
  return (void *)bad;
}

TEST(value_threads) {
  sl_error_t err;
  sl_error_init(&err);
  sl_error_t *ep = &err;
  shared_v = sl_map(0);
  for (int i = 0; i < 20; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%d", i);
    sl_map_setc(&shared_v, k, sl_strf("value number %d, on the heap", i));
  }
  sl_value list;
  ASSERT_OK(P("[1,\"two, a heap string\",{\"three\":[3]}]", &list, &err), ep);
  sl_map_setc(&shared_v, "list", list);
  const char *json = J(&shared_v);
  ASSERT(strlen(json) < sizeof shared_json);
  memcpy(shared_json, json, strlen(json) + 1);
  pthread_t th[4];
  for (int t = 0; t < 4; t++) pthread_create(&th[t], NULL, share_worker, NULL);
  long bad = 0;
  for (int t = 0; t < 4; t++) {
    void *r;
    pthread_join(th[t], &r);
    bad += (long)r;
  }
  ASSERT_EQ(bad, 0);
  ASSERT_STR(J(&shared_v), shared_json);
  ASSERT_EQ(rc_of(&shared_v), 1);
  sl_value_free(shared_v);
}

TEST(value_equal) {
  sl_value i1 = sl_int(1), d1 = sl_double(1.0), i2 = sl_int(2), n = sl_nil(), t = sl_bool(true);
  ASSERT(sl_value_equal(&i1, &i1));
  ASSERT(!sl_value_equal(&i1, &d1)); /* int 1 is not double 1.0 */
  ASSERT(!sl_value_equal(&i1, &i2));
  ASSERT(sl_value_equal(&n, &n));
  ASSERT(!sl_value_equal(&n, &t));
  sl_value f = sl_bool(false);
  ASSERT(!sl_value_equal(&t, &f));
  sl_value nan1 = sl_double(NAN), nan2 = sl_double(-NAN), z = sl_double(0.0), mz = sl_double(-0.0);
  ASSERT(sl_value_equal(&nan1, &nan2));
  ASSERT(sl_value_equal(&z, &mz));
  ASSERT(!sl_value_equal(&nan1, &z));
  /* strings, inline and heap */
  sl_value s1 = sl_cstr("abcdefghijklmnop"), s2 = sl_cstr("abcdefghijklmnop");
  sl_value s3 = sl_cstr("abcdefghijklmnoq"), s4 = sl_cstr("abc"), s5 = sl_str("abc\0", 4);
  ASSERT(sl_value_equal(&s1, &s2));
  ASSERT(!sl_value_equal(&s1, &s3));
  ASSERT(!sl_value_equal(&s1, &s4));
  ASSERT(!sl_value_equal(&s4, &s5));
  sl_value_free(s1);
  sl_value_free(s2);
  sl_value_free(s3);
  /* arrays; lazy empty equals allocated empty */
  sl_value a0 = sl_array(0), a5 = sl_array(5), m0 = sl_map(0);
  ASSERT(sl_value_equal(&a0, &a5));
  ASSERT(!sl_value_equal(&a0, &m0));
  sl_array_push(&a0, sl_int(1));
  ASSERT(!sl_value_equal(&a0, &a5));
  sl_array_push(&a5, sl_int(1));
  ASSERT(sl_value_equal(&a0, &a5));
  sl_array_push(&a5, sl_int(2));
  ASSERT(!sl_value_equal(&a0, &a5));
  sl_value_free(a0);
  sl_value_free(a5);
  /* maps: order-insensitive, values compared deeply */
  sl_value x, y;
  ASSERT_OK(P("{\"a\":1,\"b\":[1,{\"c\":\"a long string value here\"}],\"d\":null}", &x, NULL),
            NO_ERR);
  ASSERT_OK(P("{\"d\":null,\"b\":[1,{\"c\":\"a long string value here\"}],\"a\":1}", &y, NULL),
            NO_ERR);
  ASSERT(sl_value_equal(&x, &y));
  ASSERT_OK(sl_map_setc(&y, "a", sl_double(1)), NO_ERR);
  ASSERT(!sl_value_equal(&x, &y));
  ASSERT_OK(sl_map_setc(&y, "a", sl_int(1)), NO_ERR);
  ASSERT(sl_value_equal(&x, &y));
  ASSERT_OK(sl_map_setc(&y, "e", sl_int(1)), NO_ERR);
  ASSERT(!sl_value_equal(&x, &y));
  ASSERT(!sl_value_equal(&y, &x));
  ASSERT_OK(sl_map_setc(&x, "f", sl_int(1)), NO_ERR);
  ASSERT(!sl_value_equal(&x, &y)); /* same length, different keys */
  sl_value_free(x);
  sl_value_free(y);
  sl_value_free(m0);
  /* large maps (indexed) in different orders */
  x = sl_map(0);
  y = sl_map(0);
  for (int i = 0; i < 50; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%d", i);
    sl_map_setc(&x, k, sl_int(i));
    snprintf(k, sizeof k, "k%d", 49 - i);
    sl_map_setc(&y, k, sl_int(49 - i));
  }
  ASSERT(sl_value_equal(&x, &y));
  sl_value xr = sl_value_ref(&x);
  ASSERT(sl_value_equal(&x, &xr));
  sl_value_free(xr);
  sl_value_free(x);
  sl_value_free(y);
}

TEST(value_size) {
  sl_value i = sl_int(1), s = sl_cstr("short"), h = sl_cstr("a string of thirty-two bytes....");
  ASSERT_EQ(sl_value_size(&i), 16);
  ASSERT_EQ(sl_value_size(&s), 16);
  ASSERT(sl_value_size(&h) >= 16 + 32);
  ASSERT(sl_value_size(&h) < 16 + 32 + 64);
  sl_value a = sl_array(0);
  size_t empty = sl_value_size(&a);
  ASSERT_EQ(empty, 16);
  sl_array_push(&a, h);
  sl_array_push(&a, sl_int(2));
  ASSERT(sl_value_size(&a) >= 16 + 16 + (16 + 32) + 16);
  sl_value m = sl_map(0);
  sl_map_setc(&m, "list", a);
  ASSERT(sl_value_size(&m) > sl_value_size(sl_map_getc(&m, "list")) + 32);
  sl_value_free(m);
}

TEST(value_json_write) {
  sl_value v = sl_nil();
  ASSERT_STR(J(&v), "null");
  v = sl_bool(true);
  ASSERT_STR(J(&v), "true");
  v = sl_bool(false);
  ASSERT_STR(J(&v), "false");
  v = sl_int(0);
  ASSERT_STR(J(&v), "0");
  v = sl_int(-1);
  ASSERT_STR(J(&v), "-1");
  v = sl_int(INT64_MAX);
  ASSERT_STR(J(&v), "9223372036854775807");
  v = sl_int(INT64_MIN);
  ASSERT_STR(J(&v), "-9223372036854775808");
  /* nested, maps in insertion order */
  v = sl_map(0);
  sl_map_setc(&v, "z", sl_int(1));
  sl_value arr = sl_array(0);
  sl_array_push(&arr, sl_int(1));
  sl_array_push(&arr, sl_array(0));
  sl_array_push(&arr, sl_map(0));
  sl_value inner = sl_map(0);
  sl_map_setc(&inner, "b", sl_nil());
  sl_array_push(&arr, inner);
  sl_map_setc(&v, "a", arr);
  sl_map_setc(&v, "m", sl_cstr("x"));
  ASSERT_STR(J(&v), "{\"z\":1,\"a\":[1,[],{},{\"b\":null}],\"m\":\"x\"}");
  /* appends to what the buffer holds */
  sl_buf b;
  sl_buf_init(&b);
  sl_buf_append(&b, "prefix ", 7);
  ASSERT_OK(sl_value_to_json(&v, &b), NO_ERR);
  ASSERT_STR(b.data, "prefix {\"z\":1,\"a\":[1,[],{},{\"b\":null}],\"m\":\"x\"}");
  ASSERT_EQ(b.len, strlen(b.data));
  sl_buf_close(&b);
  sl_value_free(v);
  /* a 1,000,000-deep value is written without recursion */
  v = sl_array(0);
  for (int i = 0; i < 1000000; i++) {
    sl_value outer = sl_array(1);
    sl_array_push(&outer, v);
    v = outer;
  }
  sl_buf_init(&b);
  ASSERT_OK(sl_value_to_json(&v, &b), NO_ERR);
  ASSERT_EQ(b.len, 2000002);
  ASSERT(b.data[0] == '[' && b.data[1000000] == '[' && b.data[1000001] == ']');
  sl_buf_close(&b);
  sl_value_free(v);
}

TEST(value_json_strings_out) {
  struct {
    const char *in;
    size_t n;
    const char *out;
  } cases[] = {
      {"", 0, "\"\""},
      {"plain", 5, "\"plain\""},
      {"\"\\/", 3, "\"\\\"\\\\/\""},
      {"\n\t\r\b\f", 5, "\"\\n\\t\\r\\b\\f\""},
      {"\x01\x1f\x7f", 3, "\"\\u0001\\u001f\x7f\""},
      {"a\0b", 3, "\"a\\u0000b\""},
      {"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80", 9, "\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\""},
      {"\xEF\xBF\xBF\xF4\x8F\xBF\xBF", 7, "\"\xEF\xBF\xBF\xF4\x8F\xBF\xBF\""}, /* U+FFFF, U+10FFFF */
      {"\xff", 1, "\"\xEF\xBF\xBD\""},
      {"a\xC3", 2, "\"a\xEF\xBF\xBD\""},                                  /* truncated at end */
      {"\xC3(", 2, "\"\xEF\xBF\xBD(\""},                                  /* bad continuation */
      {"\xC0\xAF", 2, "\"\xEF\xBF\xBD\xEF\xBF\xBD\""},                    /* overlong '/' */
      {"\xE0\x80\x80", 3, "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""},    /* overlong */
      {"\xED\xA0\x80", 3, "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""},    /* a surrogate */
      {"\xF4\x90\x80\x80", 4,
       "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""},           /* past U+10FFFF */
      {"\xE2\x82x", 3, "\"\xEF\xBF\xBDx\""},                              /* maximal subpart */
      {"\xF0\x9F\x98", 3, "\"\xEF\xBF\xBD\""},
      {"\x80\xBF", 2, "\"\xEF\xBF\xBD\xEF\xBF\xBD\""},                    /* lone continuations */
      {"ok\xFE\"", 4, "\"ok\xEF\xBF\xBD\\\"\""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sl_value s = sl_str(cases[i].in, cases[i].n);
    J(&s);
    sl_value_free(s);
    if (strcmp(jbuf, cases[i].out) != 0) SL__FAIL("case %zu: got %s, want %s", i, jbuf, cases[i].out);
  }
  /* a long string with escapes spread through it */
  char in[3000], want[7000];
  size_t w = 0;
  want[w++] = '"';
  for (int i = 0; i < 3000; i++) {
    in[i] = i % 100 == 0 ? '\n' : (char)('a' + i % 26);
    if (in[i] == '\n') {
      want[w++] = '\\';
      want[w++] = 'n';
    } else {
      want[w++] = in[i];
    }
  }
  want[w++] = '"';
  want[w] = '\0';
  sl_value s = sl_str(in, sizeof in);
  ASSERT_STR(J(&s), want);
  sl_value_free(s);
  /* random strings made of pieces whose JSON is known, so UTF-8 sequences and escapes land on
   * every alignment of the 8-byte fast path and across the writer's 4096-byte steps */
  static const struct {
    const char *in, *out;
  } pieces[] = {{"a", "a"},         {"Z", "Z"},           {"\"", "\\\""},           {"\\", "\\\\"},
                {"\n", "\\n"},     {"\x1f", "\\u001f"}, {"\xC3\xA9", "\xC3\xA9"}, {"\xE2\x82\xAC", "\xE2\x82\xAC"},
                {"\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80"}, {"\xff", "\xEF\xBF\xBD"}, {"0123456789", "0123456789"}};
  uint64_t seed = 42;
  for (int round = 0; round < 200; round++) {
    sl_buf bin, bwant;
    sl_buf_init(&bin);
    sl_buf_init(&bwant);
    sl_buf_append(&bwant, "\"", 1);
    seed = seed * 6364136223846793005u + 1442695040888963407u;
    size_t npieces = (size_t)(seed >> 33) % 3000;
    for (size_t k = 0; k < npieces; k++) {
      seed = seed * 6364136223846793005u + 1442695040888963407u;
      size_t pi = (size_t)(seed >> 33) % (sizeof pieces / sizeof pieces[0]);
      if (round % 2 && pi != 9 && pi != 2) pi = 0; /* half the rounds: long plain runs */
      sl_buf_append(&bin, pieces[pi].in, strlen(pieces[pi].in));
      sl_buf_append(&bwant, pieces[pi].out, strlen(pieces[pi].out));
    }
    sl_buf_append(&bwant, "\"", 1);
    sl_value rs = sl_str(bin.data ? bin.data : "", bin.len);
    uint64_t bad = 0;
    sl_buf got;
    sl_buf_init(&got);
    ASSERT_EQ(sl__json_write(&rs, &got, &bad), SL_OK);
    if (got.len != bwant.len || memcmp(got.data, bwant.data, got.len) != 0)
      SL__FAIL("round %d: %zu bytes in, JSON differs (%zu vs %zu bytes)", round, bin.len, got.len, bwant.len);
    ASSERT_EQ(bad, memchr(bin.data ? bin.data : "", 0xff, bin.len) ? 1u : 0u);
    sl_value_free(rs);
    sl_buf_close(&got);
    sl_buf_close(&bin);
    sl_buf_close(&bwant);
  }
  /* short strings (inline in the value, up to 13 bytes) with one piece that needs care at every
   * position, as values and as map keys */
  for (size_t pi = 2; pi < 10; pi++) {
    size_t plen = strlen(pieces[pi].in);
    for (size_t len = plen; len <= SL_STR_INLINE_MAX; len++)
      for (size_t pos = 0; pos + plen <= len; pos++) {
        char sin[16], swant[64];
        memset(sin, 'x', len);
        memcpy(sin + pos, pieces[pi].in, plen);
        int sw = snprintf(swant, sizeof swant, "\"%.*s%s%.*s\"", (int)pos, sin, pieces[pi].out, (int)(len - pos - plen), sin + pos + plen);
        sl_value sv = sl_str(sin, len);
        ASSERT_STR(J(&sv), swant);
        sl_value km = sl_map(1);
        sl_map_set(&km, sin, len, sl_int(1));
        char wantm[80];
        snprintf(wantm, sizeof wantm, "{%.*s:1}", sw, swant);
        ASSERT_STR(J(&km), wantm);
        sl_value_free(sv);
        sl_value_free(km);
      }
  }
  for (size_t len = 0; len <= 20; len++) { /* plain, every length around the inline limit */
    char sin[24], swant[32];
    for (size_t k = 0; k < len; k++) sin[k] = (char)('a' + k);
    snprintf(swant, sizeof swant, "\"%.*s\"", (int)len, sin);
    sl_value sv = sl_str(sin, len);
    ASSERT_STR(J(&sv), swant);
    sl_value_free(sv);
  }
  /* map keys are escaped the same way */
  sl_value m = sl_map(0);
  sl_map_set(&m, "k\"\n\xff", 4, sl_int(1));
  ASSERT_STR(J(&m), "{\"k\\\"\\n\xEF\xBF\xBD\":1}");
  sl_value_free(m);
}

TEST(value_json_doubles) {
  struct {
    double d;
    const char *out;
  } cases[] = {
      {0.1, "0.1"},
      {1.0, "1.0"},
      {0.0, "0.0"},
      {-0.0, "-0.0"},
      {1.5, "1.5"},
      {-2.25, "-2.25"},
      {1e300, "1e+300"},
      {1e21, "1e+21"},
      {123456789.0, "123456789.0"},
      {9007199254740992.0, "9007199254740992.0"},
      {0.1 + 0.2, "0.30000000000000004"},
      {1.0 / 3.0, "0.3333333333333333"},
      {100.0, "100.0"},
      {NAN, "null"},
      {INFINITY, "null"},
      {-INFINITY, "null"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sl_value v = sl_double(cases[i].d);
    J(&v);
    if (strcmp(jbuf, cases[i].out) != 0) SL__FAIL("case %zu: got %s, want %s", i, jbuf, cases[i].out);
  }
  /* every double written reads back as the same double */
  double ds[] = {DBL_MAX, DBL_MIN, 5e-324, -DBL_MAX, 2.2250738585072009e-308, 1e-7, 123.456,
                 6.02214076e23, 3.141592653589793, 0.7, 1e15, 1e16, 1e17, 4503599627370497.0};
  for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
    sl_value v = sl_double(ds[i]), back;
    J(&v);
    ASSERT_OK(P(jbuf, &back, NULL), NO_ERR);
    ASSERT_EQ(sl_typeof(&back), SL_TDOUBLE);
    if (back.u.d != ds[i]) SL__FAIL("%.17g written as %s reads back as %.17g", ds[i], jbuf, back.u.d);
  }
}

/* The writer's documented rule, done the slow way: the first of %.15g, %.16g, %.17g that reads
 * back, plus ".0" when it looks like an integer. */
static void ref_double(double d, char *s, size_t n) {
  int len = 0;
  if (!isfinite(d)) {
    snprintf(s, n, "null");
    return;
  }
  for (int prec = 15; prec <= 17; prec++) {
    len = snprintf(s, n - 2, "%.*g", prec, d);
    if (prec == 17 || strtod(s, NULL) == d) break;
  }
  if (!strpbrk(s, ".eE")) memcpy(s + len, ".0", 3);
}

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rng(void) { /* xorshift64 */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* Doubles of many shapes: random bits, money-like, short decimals, scaled integers. */
static double some_double(long i) {
  double d;
  uint64_t u = rng();
  switch (i % 5) {
  case 0: memcpy(&d, &u, sizeof d); return d;
  case 1: return (double)(int64_t)(u % 100000000) / 100.0;
  case 2: return (double)(int64_t)(u % 1000000000000LL) / pow(10, (double)(rng() % 16));
  case 3: return ldexp((double)(u >> 11), -(int)(rng() % 80));
  default: return (double)u / 1e3 * (rng() & 1 ? 1 : -1) / pow(10, (double)(rng() % 20));
  }
}

/* The writer's fast path gives the same text as the slow rule; the parser's fast path gives
 * the same double as strtod. */
TEST(value_json_doubles_bulk) {
  sl_buf b;
  sl_buf_init(&b);
  char want[64];
  for (long i = 0; i < 200000; i++) {
    double d = some_double(i);
    sl_value v = sl_double(d), back;
    b.len = 0;
    if (sl_value_to_json(&v, &b) != SL_OK) break;
    ref_double(d, want, sizeof want);
    if (strcmp(b.data, want) != 0) {
      snprintf(jbuf, sizeof jbuf, "%s", b.data);
      sl_buf_close(&b);
      SL__FAIL("%.17g: wrote %s, want %s", d, jbuf, want);
    }
    /* printed forms of all kinds read back as strtod reads them */
    char text[400];
    int prec = (int)(rng() % 18);
    double x = fabs(d) < 1e30 ? d : 1.5;
    if (i % 3 == 0)
      snprintf(text, sizeof text, "%.*g", prec, x);
    else if (i % 3 == 1)
      snprintf(text, sizeof text, "%.*e", prec, x);
    else
      snprintf(text, sizeof text, "%.*f", prec, x);
    if (!strchr(text, '.') && !strchr(text, 'e') && !strchr(text, 'n') && !strchr(text, 'i'))
      strcat(text, ".0"); /* keep it a double */
    if (strchr(text, 'n') || strchr(text, 'i')) continue;
    if (sl_value_from_json(text, strlen(text), &back, NULL) != SL_OK) {
      sl_buf_close(&b);
      SL__FAIL("%s: no parse", text);
    }
    double sd = strtod(text, NULL);
    if (back.type != SL_TDOUBLE || memcmp(&back.u.d, &sd, sizeof sd) != 0) {
      sl_buf_close(&b);
      SL__FAIL("%s: parsed %.17g, strtod %.17g", text, back.u.d, sd);
    }
  }
  sl_buf_close(&b);
}

TEST(value_json_parse) {
  ASSERT_STR(PJ("null"), "null");
  ASSERT_STR(PJ("true"), "true");
  ASSERT_STR(PJ("false"), "false");
  ASSERT_STR(PJ(" \t\r\n 42 \t\r\n "), "42");
  ASSERT_STR(PJ("\"s\""), "\"s\"");
  ASSERT_STR(PJ("[]"), "[]");
  ASSERT_STR(PJ("[ \n ]"), "[]");
  ASSERT_STR(PJ("{ \n }"), "{}");
  ASSERT_STR(PJ("[1,\"two\",[3,[4]],{\"five\":5},null,true,false,-0.5]"),
             "[1,\"two\",[3,[4]],{\"five\":5},null,true,false,-0.5]");
  ASSERT_STR(PJ(" { \"a\" : 1 , \"b\" : [ 1 , 2 ] , \"c\" : { } } "),
             "{\"a\":1,\"b\":[1,2],\"c\":{}}");
  /* duplicate keys: the last value wins, at the first position */
  ASSERT_STR(PJ("{\"a\":1,\"b\":2,\"a\":3}"), "{\"a\":3,\"b\":2}");
  /* the parsed value has the expected types */
  sl_value v;
  sl_error_t err;
  sl_error_init(&err);
  sl_error_t *ep = &err; /* a pointer: ASSERT_OK tests it for NULL */
  ASSERT_OK(P("{\"i\":1,\"d\":1.0,\"s\":\"x\",\"a\":[],\"m\":{},\"n\":null,\"b\":true}", &v, &err),
            ep);
  ASSERT_EQ(sl_typeof(sl_map_getc(&v, "i")), SL_TINT);
  ASSERT_EQ(sl_typeof(sl_map_getc(&v, "d")), SL_TDOUBLE);
  ASSERT_EQ(sl_typeof(sl_map_getc(&v, "s")), SL_TSTR);
  ASSERT_EQ(sl_typeof(sl_map_getc(&v, "a")), SL_TARRAY);
  ASSERT_EQ(sl_typeof(sl_map_getc(&v, "m")), SL_TMAP);
  ASSERT_EQ(sl_typeof(sl_map_getc(&v, "n")), SL_TNIL);
  ASSERT_EQ(sl_typeof(sl_map_getc(&v, "b")), SL_TBOOL);
  sl_value_free(v);
  /* not NUL-terminated: only n bytes are read */
  ASSERT_OK(sl_value_from_json("[1,2]garbage", 5, &v, &err), ep);
  ASSERT_EQ(sl_array_len(&v), 2);
  sl_value_free(v);
  /* an object with many keys gets the map index */
  sl_buf b;
  sl_buf_init(&b);
  sl_buf_append(&b, "{", 1);
  for (int i = 0; i < 1000; i++) sl_buf_printf(&b, "%s\"key%d\":%d", i ? "," : "", i, i);
  sl_buf_append(&b, "}", 1);
  ASSERT_OK(sl_value_from_json(b.data, b.len, &v, &err), ep);
  sl_buf_close(&b);
  ASSERT_EQ(sl_map_len(&v), 1000);
  ASSERT_EQ(sl_map_getc(&v, "key777")->u.i, 777);
  ASSERT(((const sl__map *)v.u.o)->index != NULL);
  sl_value_free(v);
}

TEST(value_json_parse_strings) {
  sl_value v;
  sl_error_t err;
  sl_error_init(&err);
  sl_error_t *ep = &err; /* a pointer: ASSERT_OK tests it for NULL */
  ASSERT_OK(P("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", &v, &err), ep);
  ASSERT_EQ(sl_str_len(&v), 8);
  ASSERT(memcmp(sl_str_data(&v), "\"\\/\b\f\n\r\t", 8) == 0);
  sl_value_free(v);
  struct {
    const char *in, *out;
    size_t n;
  } cases[] = {
      {"\"\\u0041\"", "A", 1},
      {"\"\\u00e9\\u00E9\"", "\xC3\xA9\xC3\xA9", 4},
      {"\"\\u20AC\"", "\xE2\x82\xAC", 3},
      {"\"\\uFFFF\"", "\xEF\xBF\xBF", 3},
      {"\"\\uD83D\\uDE00\"", "\xF0\x9F\x98\x80", 4},  /* a surrogate pair */
      {"\"\\udbff\\udfff\"", "\xF4\x8F\xBF\xBF", 4},  /* U+10FFFF */
      {"\"\\uD800\"", "\xEF\xBF\xBD", 3},             /* lone high surrogate */
      {"\"\\uDC00\"", "\xEF\xBF\xBD", 3},             /* lone low surrogate */
      {"\"\\uD800\\u0041\"", "\xEF\xBF\xBD" "A", 4},   /* high then not-low */
      {"\"\\uD800x\"", "\xEF\xBF\xBDx", 4},
      {"\"\\uDC00\\uD800\"", "\xEF\xBF\xBD\xEF\xBF\xBD", 6},
      {"\"\\uD800\\uD800\\uDC00\"", "\xEF\xBF\xBD\xF0\x90\x80\x80", 7},
      {"\"\\u0000\"", "\0", 1},
      {"\"a\\u0000b\"", "a\0b", 3},
      {"\"\xC3\xA9\xF0\x9F\x98\x80\"", "\xC3\xA9\xF0\x9F\x98\x80", 6}, /* raw UTF-8 */
      {"\"\x7f\"", "\x7f", 1},
      {"\"abcdefghijklm\"", "abcdefghijklm", 13},          /* inline */
      {"\"abcdefghijklmn\"", "abcdefghijklmn", 14},        /* heap */
      {"\"abcdefghijkl\\n\"", "abcdefghijkl\n", 13},       /* escaped, inline */
      {"\"abcdefghijklm\\n\"", "abcdefghijklm\n", 14},     /* escaped, heap */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ASSERT_OK(P(cases[i].in, &v, &err), ep);
    int ok = sl_typeof(&v) == SL_TSTR && sl_str_len(&v) == cases[i].n &&
             memcmp(sl_str_data(&v), cases[i].out, cases[i].n) == 0 &&
             sl_str_data(&v)[cases[i].n] == '\0' &&
             (cases[i].n <= SL_STR_INLINE_MAX) == (v.slen != 0);
    sl_value_free(v);
    if (!ok) SL__FAIL("case %zu: %s", i, cases[i].in);
  }
  /* keys decode the same way */
  ASSERT_OK(P("{\"\\u00e9t\\u00e9\":1,\"a\\u0000b\":2}", &v, &err), ep);
  ASSERT_EQ(sl_map_getc(&v, "\xC3\xA9t\xC3\xA9")->u.i, 1);
  ASSERT_EQ(sl_map_get(&v, "a\0b", 3)->u.i, 2);
  sl_value_free(v);
  /* a long string with many escapes */
  sl_buf b;
  sl_buf_init(&b);
  sl_buf_append(&b, "\"", 1);
  for (int i = 0; i < 500; i++) sl_buf_append(&b, "ab\\n\\u00e9\\uD83D\\uDE00", 22);
  sl_buf_append(&b, "\"", 1);
  ASSERT_OK(sl_value_from_json(b.data, b.len, &v, &err), ep);
  sl_buf_close(&b);
  ASSERT_EQ(sl_str_len(&v), 500 * 9);
  ASSERT(memcmp(sl_str_data(&v) + 9 * 499, "ab\n\xC3\xA9\xF0\x9F\x98\x80", 9) == 0);
  sl_value_free(v);
}

TEST(value_json_parse_numbers) {
  sl_value v;
  sl_error_t err;
  sl_error_init(&err);
  sl_error_t *ep = &err; /* a pointer: ASSERT_OK tests it for NULL */
  struct {
    const char *in;
    int type;
    int64_t i;
    double d;
  } cases[] = {
      {"0", SL_TINT, 0, 0},
      {"-0", SL_TINT, 0, 0},
      {"7", SL_TINT, 7, 0},
      {"-123", SL_TINT, -123, 0},
      {"9223372036854775807", SL_TINT, INT64_MAX, 0},
      {"-9223372036854775808", SL_TINT, INT64_MIN, 0},
      {"9223372036854775808", SL_TDOUBLE, 0, 9223372036854775808.0},
      {"-9223372036854775809", SL_TDOUBLE, 0, -9223372036854775809.0},
      {"100000000000000000000000", SL_TDOUBLE, 0, 1e23},
      {"1.5", SL_TDOUBLE, 0, 1.5},
      {"-0.0", SL_TDOUBLE, 0, -0.0},
      {"0.1", SL_TDOUBLE, 0, 0.1},
      {"1e3", SL_TDOUBLE, 0, 1000.0},
      {"1E+2", SL_TDOUBLE, 0, 100.0},
      {"25e-2", SL_TDOUBLE, 0, 0.25},
      {"1.0e0", SL_TDOUBLE, 0, 1.0},
      {"1e400", SL_TDOUBLE, 0, INFINITY}, /* out of range: strtod's infinity */
      {"1e-400", SL_TDOUBLE, 0, 0.0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ASSERT_OK(P(cases[i].in, &v, &err), ep);
    if (v.type != cases[i].type) SL__FAIL("case %s: type %s", cases[i].in, sl_type_name(v.type));
    if (v.type == SL_TINT && v.u.i != cases[i].i) SL__FAIL("case %s: %" PRId64, cases[i].in, v.u.i);
    if (v.type == SL_TDOUBLE && v.u.d != cases[i].d) SL__FAIL("case %s: %.17g", cases[i].in, v.u.d);
  }
  ASSERT_OK(P("-0.0", &v, &err), ep);
  ASSERT(signbit(v.u.d));
  /* a number longer than the parser's stack copy */
  char longnum[300];
  memset(longnum, '1', sizeof longnum - 1);
  longnum[sizeof longnum - 1] = '\0';
  longnum[1] = '.';
  ASSERT_OK(P(longnum, &v, &err), ep);
  ASSERT_EQ(v.type, SL_TDOUBLE);
  ASSERT(fabs(v.u.d - 1.1111111111111112) < 1e-15);
  longnum[1] = '1';
  ASSERT_OK(P(longnum, &v, &err), ep);
  ASSERT_EQ(v.type, SL_TDOUBLE);
  ASSERT(v.u.d > 1e297);
}

/* Each text must fail with SL_EDATA, a message naming a byte offset, *out nil, nothing leaked. */
TEST(value_json_parse_errors) {
  static const char *bad[] = {
      "", " ", "nul", "tru", "True", "nulL", "[", "[1", "[1,", "[1,]", "[,1]", "[1 2]", "]",
      "{", "{\"a\"", "{\"a\":", "{\"a\":1", "{\"a\":1,}", "{a:1}", "{\"a\" 1}", "{1:2}",
      "{\"a\":1 \"b\":2}", "{\"a\":1,,\"b\":2}", "{,}", "}", "\"abc", "\"", "\"\\", "\"\\x\"",
      "\"\\u12\"", "\"\\u12G4\"", "\"\\U0041\"", "\"\\ud800\\u12\"", "\"a\nb\"", "\"\x01\"",
      "\"\x1f\"", "\"\xff\"", "\"\xc3\"", "\"\xc3(\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"",
      "\"\xf4\x90\x80\x80\"", "\"\xe2\x82\"", "01", "00", "-", "-a", "--1", "1.", ".1", "1.e3",
      "1e", "1e+", "1E-", "+1", "1 2", "0x10", "[1]x", "nullx", "truefalse", "NaN", "Infinity",
      "-Infinity", "\xef\xbb\xbf{}", "/* c */1", "'a'", "[\"a\"]]", "{\"a\":[1,{\"b\":tru}]}",
      "[1,\"a long string that lives on the heap\",{\"key on the heap, too\":[\"x\"]},oops]",
      "{\"a long key that lives on the heap\":\"a long value that lives on the heap\",\"k\"}",
      "{\"a long key that lives on the heap\"", "\"\\uD83D\\uDE0",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    sl_value v = sl_int(99);
    sl_error_t err;
    sl_error_init(&err);
    int rc = P(bad[i], &v, &err);
    if (rc != SL_EDATA) SL__FAIL("case %zu (%s): rc %d", i, bad[i], rc);
    if (err.code != SL_EDATA) SL__FAIL("case %zu (%s): err.code %d", i, bad[i], err.code);
    if (!strstr(err.msg, "invalid JSON at byte ")) SL__FAIL("case %zu: msg %s", i, err.msg);
    if (v.type != SL_TNIL) SL__FAIL("case %zu (%s): out not nil", i, bad[i]);
    /* and without an error struct */
    if (P(bad[i], &v, NULL) != SL_EDATA) SL__FAIL("case %zu (%s): NULL err", i, bad[i]);
  }
  /* a NUL byte in the text */
  sl_value v;
  sl_error_t err;
  sl_error_init(&err);
  ASSERT_EQ(sl_value_from_json("1\0", 2, &v, &err), SL_EDATA);
  ASSERT_STR(err.msg, "invalid JSON at byte 1: unexpected data after the value");
  ASSERT_EQ(sl_value_from_json("\"a\0\"", 4, &v, &err), SL_EDATA);
  ASSERT(strstr(err.msg, "byte 2: control character"));
  /* the messages name the place */
  ASSERT_EQ(P("[1,2 3]", &v, &err), SL_EDATA);
  ASSERT_STR(err.msg, "invalid JSON at byte 5: expected ',' or ']'");
  ASSERT_EQ(P("{\"a\":1,\"b\":2 x}", &v, &err), SL_EDATA);
  ASSERT_STR(err.msg, "invalid JSON at byte 13: expected ',' or '}'");
  ASSERT_EQ(P("{\"a\" 1}", &v, &err), SL_EDATA);
  ASSERT_STR(err.msg, "invalid JSON at byte 5: expected ':'");
  ASSERT_EQ(P("[1,", &v, &err), SL_EDATA);
  ASSERT_STR(err.msg, "invalid JSON at byte 3: expected a value (end of input)");
  ASSERT_EQ(P("\"ab", &v, &err), SL_EDATA);
  ASSERT_STR(err.msg, "invalid JSON at byte 3: unterminated string (end of input)");
  ASSERT_EQ(P("[\"a\\qb\"]", &v, &err), SL_EDATA);
  ASSERT_STR(err.msg, "invalid JSON at byte 3: invalid escape in string");
  ASSERT_EQ(P("  \"\xc3\xa9\xff\"", &v, &err), SL_EDATA);
  ASSERT_STR(err.msg, "invalid JSON at byte 5: invalid UTF-8 in string");
  ASSERT_EQ(P("1.x", &v, &err), SL_EDATA);
  ASSERT_STR(err.msg, "invalid JSON at byte 2: expected a digit after '.'");
  ASSERT_EQ(P("{\"a\":1}}", &v, &err), SL_EDATA);
  ASSERT_STR(err.msg, "invalid JSON at byte 7: unexpected data after the value");
  ASSERT_EQ(err.stage[0], '\0');
  /* a NULL text */
  ASSERT_EQ(sl_value_from_json(NULL, 0, &v, &err), SL_EDATA);
  ASSERT_EQ(sl_value_from_json(NULL, 5, &v, &err), SL_EINVAL);
}

/* depth+1 opening brackets, a value, the closing ones */
static char *nested(int depth, bool objects) {
  sl_buf b;
  sl_buf_init(&b);
  for (int i = 0; i < depth; i++) sl_buf_append(&b, objects ? "{\"a\":" : "[", objects ? 5 : 1);
  sl_buf_append(&b, "1", 1);
  for (int i = 0; i < depth; i++) sl_buf_append(&b, objects ? "}" : "]", 1);
  return b.data;
}

TEST(value_json_deep) {
  sl_value v;
  sl_error_t err;
  sl_error_init(&err);
  for (int objects = 0; objects <= 1; objects++) {
    char *ok = nested(1000, objects), *deep = nested(1001, objects);
    int rc_ok = P(ok, &v, &err);
    sl_value_free(v);
    int rc_deep = P(deep, &v, &err);
    free(ok);
    free(deep);
    ASSERT_EQ(rc_ok, SL_OK);
    ASSERT_EQ(rc_deep, SL_EDATA);
    ASSERT(strstr(err.msg, "nesting deeper than 1000"));
    ASSERT(strstr(err.msg, objects ? "at byte 5000:" : "at byte 1000:"));
  }
  /* far deeper input stops at the limit too (no stack overflow) */
  char *deep = nested(200000, false);
  ASSERT_EQ(P(deep, &v, &err), SL_EDATA);
  free(deep);
}

TEST(value_json_roundtrip) {
  static const char *docs[] = {
      "{\"name\":\"sluice\",\"n\":42,\"pi\":3.141592653589793,\"tags\":[\"a\",\"b\",\"\"],"
      "\"nested\":{\"deep\":[[],{},[null,true,false]],\"e\":\"\\u00e9\\ud83d\\ude00\\n\"},"
      "\"big\":18446744073709551616,\"neg\":-9223372036854775808,\"f\":1.0,\"z\":-0.0}",
      "[0.1,0.2,0.30000000000000004,1e-300,1.7976931348623157e+308,5e-324]",
      "\"\\u0000\\u001f\\\"\\\\\"",
      "[]",
      "7",
  };
  for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
    sl_value a, b;
    sl_error_t err;
    sl_error_init(&err);
    sl_error_t *ep = &err;
    ASSERT_OK(P(docs[i], &a, &err), ep);
    sl_buf out;
    sl_buf_init(&out);
    ASSERT_OK(sl_value_to_json(&a, &out), ep);
    int rc = sl_value_from_json(out.data, out.len, &b, &err);
    /* the second writing is the same text */
    sl_buf out2;
    sl_buf_init(&out2);
    if (rc == SL_OK) sl_value_to_json(&b, &out2);
    int same_text = rc == SL_OK && out.len == out2.len && memcmp(out.data, out2.data, out.len) == 0;
    int equal = rc == SL_OK && sl_value_equal(&a, &b);
    sl_buf_close(&out);
    sl_buf_close(&out2);
    sl_value_free(a);
    sl_value_free(b);
    if (!equal || !same_text) SL__FAIL("doc %zu: rc %d equal %d same %d", i, rc, equal, same_text);
  }
  ASSERT_STR(PJ("{\"f\":1.0,\"z\":-0.0,\"big\":18446744073709551616,\"e\":1E2}"),
             "{\"f\":1.0,\"z\":-0.0,\"big\":1.8446744073709552e+19,\"e\":100.0}");
}

TEST(value_parse_duration) {
  struct {
    const char *in;
    int64_t ns;
  } ok[] = {
      {"250ms", 250000000},
      {"2s", 2000000000},
      {"1.5s", 1500000000},
      {"1m", 60000000000},
      {"1h", 3600000000000},
      {"10us", 10000},
      {"10\xC2\xB5s", 10000},
      {"100ns", 100},
      {"0", 0},
      {"0s", 0},
      {"2", 2000000000},
      {"1.5", 1500000000},
      {"0.1s", 100000000},
      {"0.3s", 300000000},
      {".5s", 500000000},
      {"1.s", 1000000000},
      {"2 s", 2000000000},
      {"1.5h", 5400000000000},
      {"0.000000001s", 1},
      {"9223372036854775807ns", INT64_MAX},
      {"9223372036s", 9223372036000000000},
      {"2562047h", 2562047LL * 3600000000000},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    int64_t ns = -1;
    int rc = sl_parse_duration(ok[i].in, &ns);
    if (rc != SL_OK || ns != ok[i].ns) SL__FAIL("%s: rc %d, %" PRId64, ok[i].in, rc, ns);
  }
  static const char *bad[] = {"", "-1s", "+1s", "-1", "1d", "3d", "1x", "1s ", " 1s", "1 ", "s",
                              ".", ".s", "1.2.3s", "1ss", "1S", "1MS", "1 m s", "1e3s", "abc",
                              "9223372036854775808ns", "9223372037s", "2562048h",
                              "99999999999999999999999s", "1,5s", "1_000ms"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int64_t ns = 12345;
    int rc = sl_parse_duration(bad[i], &ns);
    if (rc != SL_EINVAL || ns != 12345) SL__FAIL("%s: rc %d, %" PRId64, bad[i], rc, ns);
  }
  int64_t ns;
  ASSERT_EQ(sl_parse_duration(NULL, &ns), SL_EINVAL);
}

TEST(value_parse_size) {
  struct {
    const char *in;
    int64_t n;
  } ok[] = {
      {"512", 512},
      {"0", 0},
      {"64KiB", 65536},
      {"1MiB", 1048576},
      {"2GiB", 2147483648LL},
      {"1TiB", 1099511627776LL},
      {"10MB", 10000000},
      {"10KB", 10000},
      {"3GB", 3000000000LL},
      {"2TB", 2000000000000LL},
      {"7B", 7},
      {"1 KiB", 1024},
      {"10 MB", 10000000},
      {"1.5KiB", 1536},
      {"0.5MB", 500000},
      {"8388607TiB", 8388607LL << 40},
      {"9223372036854775807", INT64_MAX},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    int64_t n = -1;
    int rc = sl_parse_size(ok[i].in, &n);
    if (rc != SL_OK || n != ok[i].n) SL__FAIL("%s: rc %d, %" PRId64, ok[i].in, rc, n);
  }
  static const char *bad[] = {"", "1kb", "1k", "1K", "1kB", "1kib", "1KIB", "1mb", "1.5", "1.5B",
                              "-1", "+1", "1 ", "1 KiB ", " 1", "KiB", "1KiBx", "1 2", "1PiB",
                              "1PB", "8388608TiB", "9223372036854775808", "1e3", "ten", "1,5KiB"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int64_t n = 12345;
    int rc = sl_parse_size(bad[i], &n);
    if (rc != SL_EINVAL || n != 12345) SL__FAIL("%s: rc %d, %" PRId64, bad[i], rc, n);
  }
}

TEST(value_buf) {
  sl_buf b;
  sl_buf_init(&b);
  ASSERT(b.data == NULL);
  ASSERT_EQ(b.len, 0);
  ASSERT_EQ(b.cap, 0);
  ASSERT_OK(sl_buf_append(&b, "", 0), NO_ERR);
  ASSERT(b.data != NULL);
  ASSERT_STR(b.data, "");
  ASSERT_OK(sl_buf_append(&b, "abc", 3), NO_ERR);
  ASSERT_OK(sl_buf_printf(&b, "-%d-%s", 42, "x"), NO_ERR);
  ASSERT_STR(b.data, "abc-42-x");
  ASSERT_EQ(b.len, 8);
  ASSERT_OK(sl_buf_append(&b, "\0z", 2), NO_ERR); /* binary-safe */
  ASSERT_EQ(b.len, 10);
  ASSERT_EQ(b.data[9], 'z');
  ASSERT_EQ(b.data[10], '\0');
  /* growth is geometric: few reallocations for many small appends */
  size_t grows = 0, cap = b.cap;
  for (int i = 0; i < 100000; i++) {
    ASSERT_OK(sl_buf_append(&b, "0123456789", 10), NO_ERR);
    if (b.cap != cap) grows++, cap = b.cap;
  }
  ASSERT_EQ(b.len, 1000010);
  ASSERT(grows < 30);
  ASSERT_EQ(b.data[b.len], '\0');
  ASSERT(b.cap > b.len);
  /* a printf larger than the free space */
  char big[5000];
  memset(big, 'y', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  sl_buf_close(&b);
  ASSERT(b.data == NULL && b.len == 0 && b.cap == 0);
  ASSERT_OK(sl_buf_printf(&b, "<%s>", big), NO_ERR);
  ASSERT_EQ(b.len, 5001);
  ASSERT_EQ(strlen(b.data), 5001);
  ASSERT_OK(sl_buf_printf(&b, "%s", ""), NO_ERR);
  ASSERT_EQ(b.len, 5001);
  for (int i = 0; i < 1000; i++) ASSERT_OK(sl_buf_printf(&b, "%d,", i), NO_ERR);
  ASSERT(strncmp(b.data + 5001, "0,1,2,", 6) == 0);
  ASSERT_EQ(strlen(b.data), b.len);
  sl_buf_close(&b);
  sl_buf_close(&b); /* closing twice is harmless */
}

TEST(value_errors) {
#define CHECK_TEXT(name, code, text) ASSERT_STR(sl_strerror(code), text);
  SL_ERROR_LIST(CHECK_TEXT)
#undef CHECK_TEXT
  ASSERT_STR(sl_strerror(SL_EDATA), "invalid data");
  ASSERT_STR(sl_strerror(1), "unknown error");
  ASSERT_STR(sl_strerror(-1000), "unknown error");
  sl_error_t err;
  sl_error_init(&err);
  ASSERT_EQ(err.code, 0);
  ASSERT_STR(err.stage, "");
  ASSERT_STR(err.msg, "");
  ASSERT_EQ(sl_error_set(NULL, SL_EIO, "s", "x %d", 1), SL_EIO);
  ASSERT_EQ(sl_error_set(&err, SL_ECONFIG, "parse#1", "bad option %s=%d", "n", 5), SL_ECONFIG);
  ASSERT_EQ(err.code, SL_ECONFIG);
  ASSERT_STR(err.stage, "parse#1");
  ASSERT_STR(err.msg, "bad option n=5");
  ASSERT_EQ(sl_error_set(&err, SL_EIO, NULL, "%s", "io"), SL_EIO);
  ASSERT_STR(err.stage, "");
  /* long names and messages are truncated */
  char longname[200], longmsg[3000];
  memset(longname, 's', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  memset(longmsg, 'm', sizeof longmsg - 1);
  longmsg[sizeof longmsg - 1] = '\0';
  sl_error_set(&err, SL_EFAILED, longname, "%s", longmsg);
  ASSERT_EQ(strlen(err.stage), sizeof err.stage - 1);
  ASSERT_EQ(strlen(err.msg), sizeof err.msg - 1);
  /* arguments may come from err itself */
  sl_error_set(&err, SL_EFAILED, "stage", "first");
  sl_error_set(&err, SL_EFAILED, err.stage, "wrapped: %s", err.msg);
  ASSERT_STR(err.stage, "stage");
  ASSERT_STR(err.msg, "wrapped: first");
}

TEST(value_alloc_fail) {
  char data[100];
  memset(data, 'd', sizeof data);
  sl_value v = sl_int(1);
  sl__alloc_fail_after(0);
  int rc = sl_str_try(data, sizeof data, &v);
  sl__alloc_fail_after(-1);
  ASSERT_EQ(rc, SL_ENOMEM);
  ASSERT_EQ(v.type, SL_TNIL);
  /* inline strings need no allocation */
  sl__alloc_fail_after(0);
  rc = sl_str_try(data, 13, &v);
  sl__alloc_fail_after(-1);
  ASSERT_EQ(rc, SL_OK);
  ASSERT_EQ(sl_str_len(&v), 13);
  ASSERT_OK(sl_str_try(data, sizeof data, &v), NO_ERR);
  sl_value_free(v);
  /* sl_buf */
  sl_buf b;
  sl_buf_init(&b);
  sl__alloc_fail_after(0);
  rc = sl_buf_append(&b, "abc", 3);
  int rc2 = sl_buf_printf(&b, "%d", 12);
  sl__alloc_fail_after(-1);
  ASSERT_EQ(rc, SL_ENOMEM);
  ASSERT_EQ(rc2, SL_OK); /* the next allocation works again */
  ASSERT_STR(b.data, "12");
  sl_buf_close(&b);
  /* JSON: failing the n-th allocation for each n fails cleanly (no leak) until it succeeds */
  const char *doc = "{\"a long key that lives on the heap\":[\"a long value that lives on the "
                    "heap\",\"\\u00e9scaped string that lives on the heap\","
                    "1.00000000000000000000000000000000000000000000000000000000000000000001,"
                    "{\"k\":\"another long string on the heap\"}]}";
  int n;
  for (n = 0; n < 100; n++) {
    sl_error_t err;
    sl_error_init(&err);
    sl__alloc_fail_after(n);
    rc = P(doc, &v, &err);
    sl__alloc_fail_after(-1);
    if (rc == SL_OK) break;
    if (rc != SL_ENOMEM || v.type != SL_TNIL) SL__FAIL("n=%d: rc %d", n, rc);
    ASSERT(strstr(err.msg, "out of memory"));
  }
  ASSERT_EQ(n, 5); /* the key, 3 strings and the long number: 5 try-allocations */
  /* the writer: out is left as it was */
  sl_buf_init(&b);
  sl_buf_append(&b, "keep", 4);
  for (n = 0; n < 100; n++) {
    sl__alloc_fail_after(n);
    rc = sl_value_to_json(&v, &b);
    sl__alloc_fail_after(-1);
    if (rc == SL_OK) break;
    ASSERT_EQ(rc, SL_ENOMEM);
    ASSERT_STR(b.data, "keep");
  }
  ASSERT(n > 0);
  ASSERT(strncmp(b.data, "keep{\"a long key", 16) == 0);
  sl_buf_close(&b);
  sl_value_free(v);
}

/* The parser's and writer's fast paths: a byte that needs a look at every offset of a string
 * (runs are scanned eight bytes at a time), objects gathered on the parser's stack past its
 * first 32 entries, duplicate keys in small and indexed maps, and no memory for that stack. */
TEST(value_json_fast_paths) {
  sl_error_t err;
  sl_error_init(&err);
  sl_error_t *ep = &err;
  sl_value v;
  sl_buf in, out;
  sl_buf_init(&in);
  sl_buf_init(&out);
  static const struct {
    const char *json;    /* as written in JSON */
    const char *raw;     /* the bytes it stands for */
    size_t rawlen;
  } specials[] = {{"\\\"", "\"", 1}, {"\\\\", "\\", 1}, {"\\n", "\n", 1}, {"\\u0001", "\x01", 1},
                  {"\xC3\xA9", "\xC3\xA9", 2}, {"\x7f", "\x7f", 1}, {"\\u0000", "\0", 1}};
  for (size_t s = 0; s < sizeof specials / sizeof specials[0]; s++)
    for (size_t at = 0; at <= 20; at++) {
      char raw[64];
      in.len = 0;
      sl_buf_append(&in, "\"", 1);
      for (size_t i = 0; i < at; i++) sl_buf_append(&in, "x", 1);
      sl_buf_append(&in, specials[s].json, strlen(specials[s].json));
      sl_buf_append(&in, "yyyyyyyyy\"", 10);
      memset(raw, 'x', at);
      memcpy(raw + at, specials[s].raw, specials[s].rawlen);
      memcpy(raw + at + specials[s].rawlen, "yyyyyyyyy", 9);
      size_t rawlen = at + specials[s].rawlen + 9;
      ASSERT_OK(sl_value_from_json(in.data, in.len, &v, &err), ep);
      bool ok = sl_str_len(&v) == rawlen && memcmp(sl_str_data(&v), raw, rawlen) == 0;
      out.len = 0;
      ASSERT_OK(sl_value_to_json(&v, &out), NO_ERR);
      sl_value_free(v);
      ok = ok && out.len == in.len && memcmp(out.data, in.data, in.len) == 0; /* written back the same */
      if (!ok) SL__FAIL("special %zu at %zu: %s -> %s", s, at, in.data, out.data);
    }
  /* bytes that are errors, at every offset */
  static const char *const bad[] = {"\x01", "\xff", "\xC3"};
  for (size_t s = 0; s < sizeof bad / sizeof bad[0]; s++)
    for (size_t at = 0; at <= 20; at++) {
      in.len = 0;
      sl_buf_append(&in, "\"", 1);
      for (size_t i = 0; i < at; i++) sl_buf_append(&in, "x", 1);
      sl_buf_append(&in, bad[s], strlen(bad[s]));
      sl_buf_append(&in, "yyyyyyyyy\"", 10);
      int rc = sl_value_from_json(in.data, in.len, &v, &err);
      if (rc != SL_EDATA || v.type != SL_TNIL) SL__FAIL("bad %zu at %zu: rc %d", s, at, rc);
      char want[32];
      snprintf(want, sizeof want, "at byte %zu", at + 1);
      if (!strstr(err.msg, want)) SL__FAIL("bad %zu at %zu: %s", s, at, err.msg);
    }
  /* ill-formed UTF-8 in a long string is written as U+FFFD */
  char bin[24];
  memset(bin, 'b', sizeof bin);
  bin[17] = '\xff';
  v = sl_str(bin, sizeof bin);
  out.len = 0;
  ASSERT_OK(sl_value_to_json(&v, &out), NO_ERR);
  sl_value_free(v);
  ASSERT_STR(out.data, "\"bbbbbbbbbbbbbbbbb\xEF\xBF\xBD" "bbbbbb\"");
  /* 40 keys, one repeated: the last value in the first place, with the index */
  in.len = 0;
  sl_buf_append(&in, "{", 1);
  for (int i = 0; i < 40; i++) sl_buf_printf(&in, "\"k%d\":%d,", i, i);
  sl_buf_append(&in, "\"k5\":\"dup\"}", 11);
  ASSERT_OK(sl_value_from_json(in.data, in.len, &v, &err), ep);
  ASSERT_EQ(sl_map_len(&v), 40);
  ASSERT_STR(sl_str_data(sl_map_getc(&v, "k5")), "dup");
  ASSERT_STR(sl_str_data(sl_map_key(&v, 5)), "k5");
  ASSERT_EQ(sl_map_getc(&v, "k39")->u.i, 39);
  sl_value_free(v);
  /* nested objects while the outer ones' entries wait on the stack */
  in.len = 0;
  sl_buf_append(&in, "{", 1);
  for (int i = 0; i < 20; i++) {
    sl_buf_printf(&in, "%s\"o%d\":{", i ? "," : "", i);
    for (int j = 0; j < 20; j++) sl_buf_printf(&in, "%s\"i%d\":%d", j ? "," : "", j, i * 100 + j);
    sl_buf_append(&in, ",\"i3\":-1}", 9);
  }
  sl_buf_append(&in, "}", 1);
  ASSERT_OK(sl_value_from_json(in.data, in.len, &v, &err), ep);
  ASSERT_EQ(sl_map_len(&v), 20);
  for (int i = 0; i < 20; i++) {
    char k[8];
    snprintf(k, sizeof k, "o%d", i);
    const sl_value *o = sl_map_getc(&v, k);
    ASSERT(o && sl_map_len(o) == 20);
    ASSERT_EQ(sl_map_getc(o, "i19")->u.i, i * 100 + 19);
    ASSERT_EQ(sl_map_getc(o, "i3")->u.i, -1);
    ASSERT_STR(sl_str_data(sl_map_key(o, 3)), "i3");
  }
  sl_value_free(v);
  /* no memory to grow the stack: a clean error */
  in.len = 0;
  sl_buf_append(&in, "{", 1);
  for (int i = 0; i < 40; i++) sl_buf_printf(&in, "%s\"k%d\":[%d]", i ? "," : "", i, i);
  sl_buf_append(&in, "}", 1);
  sl__alloc_fail_after(0);
  int rc = sl_value_from_json(in.data, in.len, &v, &err);
  sl__alloc_fail_after(-1);
  ASSERT_EQ(rc, SL_ENOMEM);
  ASSERT_EQ(v.type, SL_TNIL);
  ASSERT(strstr(err.msg, "out of memory"));
  sl_buf_close(&in);
  sl_buf_close(&out);
}
