/* parse — native parsers for text records, so the common cases need no Lua call per record.
 *
 * format (the stage's shorthand: `parse: logfmt`):
 *   split   fields cut at `separator` (default one space; `collapse: true` takes runs of it as
 *           one, as awk does); with `quote` (one byte, e.g. '"') a field may be quoted and hold
 *           separators, with \<quote> and \\ as escapes inside. With `names` the record becomes
 *           a map (the line must have exactly that many fields), else an array of strings.
 *   regex   a PCRE2 `pattern` (compiled with the JIT); named groups become fields (a group that
 *           did not take part is left out); a pattern without named groups gives the array of
 *           its groups. The whole text need not match (anchor with ^...$).
 *   logfmt  key=value pairs separated by spaces; values may be "quoted" (with \" \\ \n \t escapes);
 *           a key alone is true.
 *   kv      pairs cut at `pair_separator` (default one space), key and value at `kv_separator`
 *           (default "="); spaces around them are trimmed; a pair without it is skipped.
 *   json    the text is one JSON value.
 * `types` converts fields: a map of field name to int, double, bool, string, json or auto (int
 * if it reads as an integer, double if a number, else the string); for arrays, a list by position.
 * The text is the record itself (a string), or with `field` a string field of a map record: the
 * parsed fields are then merged into the record (json replaces the field with its value).
 * A record that does not parse fails with the reason and follows on_error. Stateless: runs on
 * every worker, in order. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <math.h>
#include <pcre2.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice.h"
#include "value.h"

enum { F_SPLIT = 0, F_REGEX, F_LOGFMT, F_KV, F_JSON };
enum { T_STRING = 0, T_INT, T_DOUBLE, T_BOOL, T_JSON, T_AUTO, T_NONE };

typedef struct parse {
  int format;          /* option */
  char *field;         /* option: the map field holding the text, or NULL: the record */
  char *separator;     /* option (split): NULL means " " */
  bool collapse;       /* option (split) */
  char *quote;         /* option (split) */
  sl_value names;      /* option (split): field names */
  sl_value types;      /* option: name -> type, or a list */
  char *pattern;       /* option (regex) */
  char *pair_sep;      /* option (kv) */
  char *kv_sep;        /* option (kv) */
  /* prepared */
  const char *sep;     /* the separator in use */
  size_t seplen;
  char q;              /* quote byte, or 0 */
  size_t nnames;
  int *ntypes;         /* types by position of names (split), or NULL */
  pcre2_code *re;
  pcre2_match_data *md;
  uint32_t ngroups;    /* capture groups of re */
  sl_value gnames;     /* regex: group number -> name (array, nil entries for unnamed), or nil */
  bool gnamed;         /* the pattern has named groups */
  sl_buf scratch;
} parse;

static const sl_option options[] = {
    {SL_OPT_ENUM, "format", NULL, offsetof(parse, format), "split, regex, logfmt, kv or json", "split|regex|logfmt|kv|json", SL_OPT_PRIMARY | SL_OPT_REQUIRED},
    {SL_OPT_STRING, "field", NULL, offsetof(parse, field), "parse this string field of a map record (results merged into it) instead of the record itself", NULL, 0},
    {SL_OPT_STRING, "separator", NULL, offsetof(parse, separator), "split: the field separator (default one space)", NULL, 0},
    {SL_OPT_BOOL, "collapse", "false", offsetof(parse, collapse), "split: runs of the separator count as one (and leading ones are skipped), as in awk", NULL, 0},
    {SL_OPT_STRING, "quote", NULL, offsetof(parse, quote), "split: a quote byte (e.g. '\"'): quoted fields may hold separators; \\ escapes inside", NULL, 0},
    {SL_OPT_VALUE, "names", NULL, offsetof(parse, names), "split: the names of the fields, in order (the record becomes a map)", NULL, 0},
    {SL_OPT_VALUE, "types", NULL, offsetof(parse, types), "field -> int, double, bool, string, json or auto (a list by position for arrays)", NULL, 0},
    {SL_OPT_STRING, "pattern", NULL, offsetof(parse, pattern), "regex: a PCRE2 pattern; named groups become fields", NULL, 0},
    {SL_OPT_STRING, "pair_separator", NULL, offsetof(parse, pair_sep), "kv: what separates pairs (default one space)", NULL, 0},
    {SL_OPT_STRING, "kv_separator", NULL, offsetof(parse, kv_sep), "kv: what separates a key from its value (default =)", NULL, 0},
    SL_OPTIONS_END,
};

static const char *const type_names[] = {"string", "int", "double", "bool", "json", "auto"};

static int type_of(const sl_value *v) {
  if (!v || v->type != SL_TSTR) return -1;
  for (int t = 0; t < T_NONE; t++)
    if (strcmp(sl_str_data(v), type_names[t]) == 0) return t;
  if (strcmp(sl_str_data(v), "number") == 0) return T_DOUBLE;
  return -1;
}

/* Converts s[0, n) to type t. Returns 0, or -1 with msg set. */
/* The common numbers without strtoll/strtod (which cost more than the rest of a field): an
 * optional '-' and digits, with at most one '.', at most 15 digits in all (so the digits m
 * are exact in a double). An integer is m; a decimal with k digits after the point is
 * m / 10^k, both exact and the division correctly rounded, so the same double as strtod's.
 * Returns 1 (an integer: in *i, and as a double in *d), 2 (a decimal: *d), or 0: not such a
 * number, ask the C library. */
static int fast_number(const char *s, size_t n, int64_t *i, double *d) {
  static const double p10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
  size_t k = 0, digits = 0, point = 0;
  bool neg = n > 0 && s[0] == '-';
  int64_t m = 0;
  for (k = neg; k < n; k++) {
    char c = s[k];
    if (c >= '0' && c <= '9') {
      if (++digits > 15) return 0;
      m = m * 10 + (c - '0');
    } else if (c == '.' && !point) {
      point = k + 1;
    } else {
      return 0;
    }
  }
  if (digits == 0) return 0;
  double v = point ? (double)m / p10[n - point] : (double)m;
  *d = neg ? -v : v; /* "-0" is -0.0 as a double */
  *i = neg ? -m : m;
  return point ? 2 : 1;
}

static int convert(int t, const char *s, size_t n, sl_value *out, char *msg, size_t msglen) {
  char buf[64];
  char *end;
  int64_t fi;
  double fd;
  int fast = t == T_INT || t == T_AUTO || t == T_DOUBLE ? fast_number(s, n, &fi, &fd) : 0;
  if (fast == 1) {
    *out = t == T_DOUBLE ? sl_double(fd) : sl_int(fi);
    return 0;
  }
  if (fast == 2 && t != T_INT) {
    *out = sl_double(fd);
    return 0;
  }
  switch (t) {
  case T_INT:
  case T_AUTO:
    if (n > 0 && n < sizeof buf) {
      memcpy(buf, s, n);
      buf[n] = 0;
      errno = 0;
      long long i = strtoll(buf, &end, 10);
      if (*end == 0 && errno == 0 && !(buf[0] == ' ' || buf[0] == '\t' || buf[0] == '+')) {
        *out = sl_int(i);
        return 0;
      }
    }
    if (t == T_INT) {
      snprintf(msg, msglen, "'%.*s' is not an integer", (int)(n > 40 ? 40 : n), s);
      return -1;
    }
    __attribute__((fallthrough));
  case T_DOUBLE:
    if (n > 0 && n < sizeof buf) {
      memcpy(buf, s, n);
      buf[n] = 0;
      double d = strtod(buf, &end);
      if (*end == 0 && !(buf[0] == ' ' || buf[0] == '\t') && isfinite(d)) {
        *out = sl_double(d);
        return 0;
      }
    }
    if (t == T_DOUBLE) {
      snprintf(msg, msglen, "'%.*s' is not a number", (int)(n > 40 ? 40 : n), s);
      return -1;
    }
    return sl_str_try(s, n, out) ? (snprintf(msg, msglen, "out of memory"), -1) : 0;
  case T_BOOL:
    if (n == 4 && memcmp(s, "true", 4) == 0) *out = sl_bool(true);
    else if (n == 5 && memcmp(s, "false", 5) == 0) *out = sl_bool(false);
    else {
      snprintf(msg, msglen, "'%.*s' is not true or false", (int)(n > 40 ? 40 : n), s);
      return -1;
    }
    return 0;
  case T_JSON: {
    sl_error_t e;
    if (sl_value_from_json(s, n, out, &e) == 0) return 0;
    snprintf(msg, msglen, "%.300s", e.msg);
    return -1;
  }
  default: return sl_str_try(s, n, out) ? (snprintf(msg, msglen, "out of memory"), -1) : 0;
  }
}

static int type_by_name(const parse *p, const char *k, size_t klen) {
  if (p->types.type != SL_TMAP) return T_STRING;
  const sl_value *t = sl_map_get(&p->types, k, klen);
  return t ? type_of(t) : T_STRING;
}

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  parse *p = ctx;
  sl_buf_init(&p->scratch);
  if (p->format != F_SPLIT && (p->separator || p->collapse || p->quote || p->names.type != SL_TNIL))
    return sl_error_set(err, SL_ECONFIG, NULL, "separator, collapse, quote and names are options of format split");
  if (p->format != F_REGEX && p->pattern) return sl_error_set(err, SL_ECONFIG, NULL, "pattern is an option of format regex");
  if (p->format != F_KV && (p->pair_sep || p->kv_sep))
    return sl_error_set(err, SL_ECONFIG, NULL, "pair_separator and kv_separator are options of format kv");
  if (p->format == F_JSON && p->types.type != SL_TNIL) return sl_error_set(err, SL_ECONFIG, NULL, "format json takes no types");
  if (p->field && !*p->field) return sl_error_set(err, SL_ECONFIG, NULL, "field is empty");
  /* types: a map of known type names, or (split without names, regex without names) a list */
  if (p->types.type == SL_TMAP) {
    for (size_t i = 0; i < sl_map_len(&p->types); i++)
      if (type_of(sl_map_val(&p->types, i)) < 0)
        return sl_error_set(err, SL_ECONFIG, NULL, "types: '%s' must be int, double, bool, string, json or auto",
                            sl_str_data(sl_map_key(&p->types, i)));
  } else if (p->types.type == SL_TARRAY) {
    for (size_t i = 0; i < sl_array_len(&p->types); i++)
      if (type_of(sl_array_get(&p->types, i)) < 0)
        return sl_error_set(err, SL_ECONFIG, NULL, "types: item %zu must be int, double, bool, string, json or auto", i + 1);
  } else if (p->types.type != SL_TNIL) {
    return sl_error_set(err, SL_ECONFIG, NULL, "types must be a map of field name to type (or a list of types by position)");
  }
  switch (p->format) {
  case F_SPLIT:
    p->sep = p->separator ? p->separator : " ";
    p->seplen = strlen(p->sep);
    if (!p->seplen) return sl_error_set(err, SL_ECONFIG, NULL, "separator is empty");
    if (p->quote && strlen(p->quote) != 1) return sl_error_set(err, SL_ECONFIG, NULL, "quote must be one byte");
    p->q = p->quote ? p->quote[0] : 0;
    if (p->names.type != SL_TNIL) {
      if (p->names.type != SL_TARRAY || !sl_array_len(&p->names))
        return sl_error_set(err, SL_ECONFIG, NULL, "names must be a non-empty list of field names");
      p->nnames = sl_array_len(&p->names);
      p->ntypes = calloc(p->nnames, sizeof *p->ntypes);
      if (!p->ntypes) return SL_ENOMEM;
      for (size_t i = 0; i < p->nnames; i++) {
        const sl_value *n = sl_array_get(&p->names, i);
        if (n->type != SL_TSTR) return sl_error_set(err, SL_ECONFIG, NULL, "names: item %zu is not a string", i + 1);
        for (size_t k = 0; k < i; k++)
          if (sl_value_equal(n, sl_array_get(&p->names, k)))
            return sl_error_set(err, SL_ECONFIG, NULL, "names: '%s' is named twice (items %zu and %zu); give each field its own name", sl_str_data(n), k + 1, i + 1);
        p->ntypes[i] = type_by_name(p, sl_str_data(n), sl_str_len(n));
      }
      if (p->types.type == SL_TARRAY) return sl_error_set(err, SL_ECONFIG, NULL, "with names, types is a map of name to type");
    } else if (p->types.type == SL_TMAP) {
      return sl_error_set(err, SL_ECONFIG, NULL, "without names, types is a list of types by position");
    }
    break;
  case F_REGEX: {
    if (!p->pattern) return sl_error_set(err, SL_ECONFIG, NULL, "format regex needs a pattern");
    int ec;
    PCRE2_SIZE eo;
    p->re = pcre2_compile((PCRE2_SPTR)p->pattern, PCRE2_ZERO_TERMINATED, 0, &ec, &eo, NULL);
    if (!p->re) {
      PCRE2_UCHAR m[200];
      pcre2_get_error_message(ec, m, sizeof m);
      return sl_error_set(err, SL_ECONFIG, NULL, "pattern: %s at offset %zu", (char *)m, (size_t)eo);
    }
    pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE); /* without JIT support it still matches, slower */
    p->md = pcre2_match_data_create_from_pattern(p->re, NULL);
    if (!p->md) return SL_ENOMEM;
    pcre2_pattern_info(p->re, PCRE2_INFO_CAPTURECOUNT, &p->ngroups);
    uint32_t count = 0, size = 0;
    PCRE2_SPTR table = NULL;
    pcre2_pattern_info(p->re, PCRE2_INFO_NAMECOUNT, &count);
    pcre2_pattern_info(p->re, PCRE2_INFO_NAMEENTRYSIZE, &size);
    pcre2_pattern_info(p->re, PCRE2_INFO_NAMETABLE, &table);
    p->gnamed = count > 0;
    if (p->gnamed) {
      p->gnames = sl_array(p->ngroups + 1);
      for (uint32_t g = 0; g <= p->ngroups; g++) sl_array_push(&p->gnames, sl_nil());
      for (uint32_t k = 0; k < count; k++) {
        const unsigned char *e = table + (size_t)k * size;
        uint32_t g = (uint32_t)e[0] << 8 | e[1];
        sl_array_set(&p->gnames, g, sl_cstr((const char *)e + 2));
      }
      if (p->types.type == SL_TARRAY) return sl_error_set(err, SL_ECONFIG, NULL, "with named groups, types is a map of name to type");
    } else if (p->types.type == SL_TMAP) {
      return sl_error_set(err, SL_ECONFIG, NULL, "without named groups, types is a list of types by group");
    }
    break;
  }
  case F_KV:
    if (p->pair_sep && !*p->pair_sep) return sl_error_set(err, SL_ECONFIG, NULL, "pair_separator is empty");
    if (p->kv_sep && !*p->kv_sep) return sl_error_set(err, SL_ECONFIG, NULL, "kv_separator is empty");
    break;
  default: break;
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The parsers: text -> *out, or -1 with msg
 * ------------------------------------------------------------------------------------------- */

/* Adds field (k, v text) to map m converted by its type. */
static int put_field(parse *p, sl_value *m, const char *k, size_t klen, int t, const char *s, size_t n, char *msg,
                     size_t msglen) {
  sl_value v;
  if (convert(t, s, n, &v, msg, msglen) != 0) {
    char m2[500];
    snprintf(m2, sizeof m2, "field '%.*s': %.300s", (int)(klen > 60 ? 60 : klen), k, msg);
    snprintf(msg, msglen, "%.*s", (int)msglen - 1, m2);
    return -1;
  }
  sl_map_set(m, k, klen, v);
  return 0;
}

/* put_field for the name at position i of split's names: they are distinct (checked at init),
 * so the field is appended without a lookup, and the key shared with the options. */
static int put_named(parse *p, sl_value *m, size_t i, const char *s, size_t n, char *msg, size_t msglen) {
  const sl_value *k = sl_array_get(&p->names, i);
  sl_value v;
  if (convert(p->ntypes[i], s, n, &v, msg, msglen) != 0) {
    char m2[500];
    snprintf(m2, sizeof m2, "field '%.60s': %.300s", sl_str_data(k), msg);
    snprintf(msg, msglen, "%.*s", (int)msglen - 1, m2);
    return -1;
  }
  sl__map_append(m, sl_value_ref(k), v);
  return 0;
}

static int do_split(parse *p, const char *s, size_t n, sl_value *out, char *msg, size_t msglen) {
  const char *end = s + n, *sep = p->sep;
  size_t seplen = p->seplen, nf = 0;
  bool named = p->nnames > 0;
  sl_value res = named ? sl_map(p->nnames) : sl_array(8);
  const char *at = s;
  if (p->collapse)
    while ((size_t)(end - at) >= seplen && memcmp(at, sep, seplen) == 0) at += seplen;
  for (;;) {
    const char *f = at, *fe;
    bool quoted = p->q && at < end && *at == p->q;
    if (quoted) {
      p->scratch.len = 0;
      const char *c = at + 1;
      for (;;) {
        const char *q = c;
        while (q < end && *q != p->q && *q != '\\') q++;
        if (q >= end) {
          snprintf(msg, msglen, "field %zu: a quoted field is not closed", nf + 1);
          goto fail;
        }
        if (sl_buf_append(&p->scratch, c, (size_t)(q - c))) goto nomem;
        if (*q == '\\' && q + 1 < end) {
          if (sl_buf_append(&p->scratch, q + 1, 1)) goto nomem;
          c = q + 2;
          continue;
        }
        if (*q == '\\') {
          snprintf(msg, msglen, "field %zu: a quoted field is not closed", nf + 1);
          goto fail;
        }
        at = q + 1;
        break;
      }
      f = p->scratch.data ? p->scratch.data : "";
      fe = f + p->scratch.len;
      if (at < end && !((size_t)(end - at) >= seplen && memcmp(at, sep, seplen) == 0)) {
        snprintf(msg, msglen, "field %zu: a separator must follow the closing quote", nf + 1);
        goto fail;
      }
    } else {
      const char *x = seplen == 1 ? memchr(at, sep[0], (size_t)(end - at)) : NULL;
      if (seplen > 1) {
        for (x = at; x + seplen <= end && memcmp(x, sep, seplen) != 0; x++) {}
        if (x + seplen > end) x = NULL;
      }
      fe = x ? x : end;
      at = fe;
    }
    size_t fn = (size_t)(fe - f);
    if (named) {
      if (nf >= p->nnames) {
        snprintf(msg, msglen, "more than the %zu fields named", p->nnames);
        goto fail;
      }
      if (put_named(p, &res, nf, f, fn, msg, msglen)) goto fail;
    } else {
      const sl_value *tv = p->types.type == SL_TARRAY ? sl_array_get(&p->types, nf) : NULL;
      sl_value v;
      if (convert(tv ? type_of(tv) : T_STRING, f, fn, &v, msg, msglen)) goto fail;
      sl_array_push(&res, v);
    }
    nf++;
    if (at >= end) break;
    at += seplen; /* past the separator */
    if (p->collapse) {
      while ((size_t)(end - at) >= seplen && memcmp(at, sep, seplen) == 0) at += seplen;
      if (at >= end) break;
    }
  }
  if (named && nf != p->nnames) {
    snprintf(msg, msglen, "%zu field%s where %zu are named", nf, nf == 1 ? "" : "s", p->nnames);
    goto fail;
  }
  *out = res;
  return 0;
nomem:
  snprintf(msg, msglen, "out of memory");
fail:
  sl_value_free(res);
  return -1;
}

static int do_regex(parse *p, const char *s, size_t n, sl_value *out, char *msg, size_t msglen) {
  int rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, 0, 0, p->md, NULL);
  if (rc < 0) {
    if (rc == PCRE2_ERROR_NOMATCH) snprintf(msg, msglen, "does not match the pattern");
    else {
      PCRE2_UCHAR m[200];
      pcre2_get_error_message(rc, m, sizeof m);
      snprintf(msg, msglen, "pattern: %s", (char *)m);
    }
    return -1;
  }
  PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->md);
  sl_value res = p->gnamed ? sl_map(p->ngroups) : sl_array(p->ngroups);
  for (uint32_t g = 1; g <= p->ngroups; g++) {
    bool set = g < (uint32_t)rc && ov[2 * g] != PCRE2_UNSET;
    const char *f = set ? s + ov[2 * g] : "";
    size_t fn = set ? ov[2 * g + 1] - ov[2 * g] : 0;
    if (p->gnamed) {
      const sl_value *k = sl_array_get(&p->gnames, g);
      if (k->type != SL_TSTR || !set) continue;
      if (put_field(p, &res, sl_str_data(k), sl_str_len(k), type_by_name(p, sl_str_data(k), sl_str_len(k)), f, fn,
                    msg, msglen))
        goto fail;
    } else {
      const sl_value *tv = p->types.type == SL_TARRAY ? sl_array_get(&p->types, g - 1) : NULL;
      sl_value v = sl_nil();
      if (set && convert(tv ? type_of(tv) : T_STRING, f, fn, &v, msg, msglen)) goto fail;
      sl_array_push(&res, v);
    }
  }
  *out = res;
  return 0;
fail:
  sl_value_free(res);
  return -1;
}

/* logfmt: key=value key="quoted value" flag ... */
static int do_logfmt(parse *p, const char *s, size_t n, sl_value *out, char *msg, size_t msglen) {
  const char *at = s, *end = s + n;
  sl_value res = sl_map(8);
  for (;;) {
    while (at < end && (*at == ' ' || *at == '\t')) at++;
    if (at >= end) break;
    const char *k = at;
    while (at < end && *at != '=' && *at != ' ' && *at != '\t' && *at != '"') at++;
    size_t klen = (size_t)(at - k);
    if (klen == 0) {
      snprintf(msg, msglen, "byte %zu: expected a key", (size_t)(at - s));
      goto fail;
    }
    if (at >= end || *at != '=') { /* a key alone */
      if (at < end && *at == '"') {
        snprintf(msg, msglen, "byte %zu: unexpected '\"' in a key", (size_t)(at - s));
        goto fail;
      }
      sl_map_set(&res, k, klen, sl_bool(true));
      continue;
    }
    at++; /* '=' */
    const char *v = at, *ve;
    if (at < end && *at == '"') {
      p->scratch.len = 0;
      const char *c = ++at;
      for (;;) {
        while (at < end && *at != '"' && *at != '\\') at++;
        if (at >= end) {
          snprintf(msg, msglen, "byte %zu: the quoted value of '%.*s' is not closed", (size_t)(v - s), (int)klen, k);
          goto fail;
        }
        if (sl_buf_append(&p->scratch, c, (size_t)(at - c))) goto nomem;
        if (*at == '"') {
          at++;
          break;
        }
        if (at + 1 >= end) continue; /* a backslash at the end: not closed (caught above) */
        char e = at[1];
        char r = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
        if (sl_buf_append(&p->scratch, &r, 1)) goto nomem;
        at += 2;
        c = at;
      }
      if (at < end && *at != ' ' && *at != '\t') {
        snprintf(msg, msglen, "byte %zu: a space must follow the closing quote", (size_t)(at - s));
        goto fail;
      }
      v = p->scratch.data ? p->scratch.data : "";
      ve = v + p->scratch.len;
    } else {
      while (at < end && *at != ' ' && *at != '\t') at++;
      ve = at;
    }
    if (put_field(p, &res, k, klen, type_by_name(p, k, klen), v, (size_t)(ve - v), msg, msglen)) goto fail;
  }
  *out = res;
  return 0;
nomem:
  snprintf(msg, msglen, "out of memory");
fail:
  sl_value_free(res);
  return -1;
}

static const char *find(const char *s, const char *end, const char *x, size_t xn) {
  if (xn == 1) return memchr(s, x[0], (size_t)(end - s));
  for (; s + xn <= end; s++)
    if (memcmp(s, x, xn) == 0) return s;
  return NULL;
}

static void trim(const char **s, const char **e) {
  while (*s < *e && (**s == ' ' || **s == '\t')) (*s)++;
  while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t')) (*e)--;
}

static int do_kv(parse *p, const char *s, size_t n, sl_value *out, char *msg, size_t msglen) {
  const char *ps = p->pair_sep ? p->pair_sep : " ", *ks = p->kv_sep ? p->kv_sep : "=";
  size_t psn = strlen(ps), ksn = strlen(ks);
  const char *at = s, *end = s + n;
  sl_value res = sl_map(8);
  while (at < end) {
    const char *pe = find(at, end, ps, psn);
    if (!pe) pe = end;
    const char *eq = find(at, pe, ks, ksn);
    if (eq) {
      const char *k = at, *ke = eq, *v = eq + ksn, *ve = pe;
      trim(&k, &ke);
      trim(&v, &ve);
      if (ke > k &&
          put_field(p, &res, k, (size_t)(ke - k), type_by_name(p, k, (size_t)(ke - k)), v, (size_t)(ve - v), msg, msglen)) {
        sl_value_free(res);
        return -1;
      }
    }
    at = pe < end ? pe + psn : end;
  }
  *out = res;
  return 0;
}

static int do_parse(parse *p, const char *s, size_t n, sl_value *out, char *msg, size_t msglen) {
  switch (p->format) {
  case F_SPLIT: return do_split(p, s, n, out, msg, msglen);
  case F_REGEX: return do_regex(p, s, n, out, msg, msglen);
  case F_LOGFMT: return do_logfmt(p, s, n, out, msg, msglen);
  case F_KV: return do_kv(p, s, n, out, msg, msglen);
  default: return convert(T_JSON, s, n, out, msg, msglen);
  }
}

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  parse *p = ctx;
  char msg[400];
  size_t flen = p->field ? strlen(p->field) : 0;
  for (uint32_t i = 0; i < in->len; i++) {
    const sl_value *r = &in->recs[i], *text = r;
    if (p->field) {
      text = r->type == SL_TMAP ? sl_map_get(r, p->field, flen) : NULL;
      if (!text) {
        sl_emit_error(em, i, "parse: the record has no field '%s'", p->field);
        continue;
      }
    }
    if (text->type != SL_TSTR) {
      sl_emit_error(em, i, "parse: %s%s%s is a %s, not a string", p->field ? "field '" : "the record", p->field ? p->field : "",
                    p->field ? "'" : "", sl_type_name((sl_type)text->type));
      continue;
    }
    sl_value v;
    if (do_parse(p, sl_str_data(text), sl_str_len(text), &v, msg, sizeof msg) != 0) {
      sl_emit_error(em, i, "parse %s: %s", (const char *[]){"split", "regex", "logfmt", "kv", "json"}[p->format], msg);
      continue;
    }
    if (!p->field) {
      sl_emit(em, i, v);
      continue;
    }
    sl_value rec = sl_batch_take(in, i);
    if (p->format == F_JSON || v.type != SL_TMAP) {
      sl_map_set(&rec, p->field, flen, v);
    } else {
      for (size_t k = 0; k < sl_map_len(&v); k++) {
        const sl_value *key = sl_map_key(&v, k);
        sl_map_set(&rec, sl_str_data(key), sl_str_len(key), sl_value_ref(sl_map_val(&v, k)));
      }
      sl_value_free(v);
    }
    sl_emit(em, i, rec);
  }
  return 0;
}

static void destroy(void *ctx) {
  parse *p = ctx;
  free(p->ntypes);
  if (p->md) pcre2_match_data_free(p->md);
  if (p->re) pcre2_code_free(p->re);
  sl_value_free(p->gnames);
  sl_buf_close(&p->scratch);
}

/* At add time: what init would reject (a bad pattern, options of another format) is a
 * configuration error naming the file line. */
static int check(void *ctx, sl_pipeline *pl, const char *stage, const char *where, sl_error_t *err) {
  sl_error_t e;
  sl_error_init(&e);
  int rc = init(ctx, NULL, &e);
  destroy(ctx);
  parse *p = ctx;
  p->ntypes = NULL;
  p->md = NULL;
  p->re = NULL;
  p->gnames = sl_nil();
  return rc ? sl_error_set(err, rc, stage, "%sstage '%s': %s", where, stage, e.msg) : 0;
}

const sl_stage_kind sl_stage_parse = {
    .abi = SL_STAGE_ABI,
    .name = "parse",
    .doc = "parses text records natively: split, regex (PCRE2), logfmt, kv or json",
    .options = options,
    .ctx_size = sizeof(parse),
    .flags = SL_STAGE_STATELESS,
    .init = init,
    .process = process,
    .destroy = destroy,
    .check = check,
};
