/*
 * json.c — sl_value to and from JSON text (RFC 8259).
 *
 * The writer is iterative (an explicit stack of open containers), so any value it is given can
 * be written, however deep. The parser is recursive descent, bounded by JSON_MAX_DEPTH, and
 * builds sl_values directly; on any error it frees what it built and reports the byte offset.
 * Numbers have fast paths of their own; the slow paths use snprintf/strtod and so assume the
 * "C" LC_NUMERIC locale (a '.' decimal point).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "value.h"

#define JSON_MAX_DEPTH 1000

/* The length of the valid UTF-8 sequence at p (n > 0 bytes available), or 0 when it is
 * ill-formed; then *bad is the number of bytes to replace by one U+FFFD: the maximal subpart
 * (Unicode's recommended practice). Overlongs, surrogates and code points past U+10FFFF are
 * ill-formed. */
static size_t utf8_seq(const unsigned char *p, size_t n, size_t *bad) {
  unsigned c = p[0], lo = 0x80, hi = 0xBF;
  size_t need;
  if (c < 0x80) return 1;
  if (c < 0xC2 || c > 0xF4) {
    *bad = 1;
    return 0;
  }
  if (c < 0xE0) {
    need = 1;
  } else if (c < 0xF0) {
    need = 2;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else {
    need = 3;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  }
  for (size_t k = 1; k <= need; k++) {
    if (k >= n || p[k] < lo || p[k] > hi) {
      *bad = k;
      return 0;
    }
    lo = 0x80;
    hi = 0xBF;
  }
  return need + 1;
}

/* ---------------------------------------------------------------------------------------------
 * Writer
 * ------------------------------------------------------------------------------------------- */

/* Room for n more bytes and the NUL at the end of b, without a call while there is some. */
static inline int room(sl_buf *b, size_t n) { return b->cap - b->len > n ? SL_OK : sl__buf_reserve(b, n); }

static inline int append(sl_buf *b, const void *p, size_t n) {
  int rc = room(b, n);
  if (rc) return rc;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return SL_OK;
}

static inline int put(sl_buf *b, char c) { return append(b, &c, 1); }

/* The bytes of x (8 of them) that need care in a JSON string: a control character, '"', '\\' or
 * a byte >= 0x80, each flagged by its high bit in the result. Each test sets a byte's high bit
 * when that byte matches (the "has a zero byte" / "has a byte less than n" bit tricks); a borrow
 * may also flag bytes above a match, never below one, so "none" is exact and the lowest flag
 * (on a little-endian load, the first byte) is a true match. */
static inline uint64_t special8(uint64_t x) {
  const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
  uint64_t ctl = (x - ones * 0x20) & ~x;
  uint64_t q = x ^ (ones * '"'), bs = x ^ (ones * '\\');
  q = (q - ones) & ~q;
  bs = (bs - ones) & ~bs;
  return (x | ctl | q | bs) & high;
}

/* True when none of the 8 bytes of x needs care in a JSON string. */
static inline bool plain8(uint64_t x) { return special8(x) == 0; }

/* 1 for the bytes a JSON string holds as they are: printable ASCII but '"' and '\\'. */
static const unsigned char plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* The end of the run of bytes from p that a JSON string holds as they are (before end): eight
 * bytes at a time while eight remain, the first byte to look at found from the word test, then
 * one at a time. */
static inline const unsigned char *plain_run(const unsigned char *p, const unsigned char *end) {
  while (end - p >= 8) {
    uint64_t x;
    memcpy(&x, p, 8);
    uint64_t hits = special8(x);
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (hits) return p + (__builtin_ctzll(hits) >> 3);
#else
    if (hits) break;
#endif
    p += 8;
  }
  while (p < end && plain[*p]) p++;
  return p;
}

/* Input bytes written per reservation: each becomes at most 6 output bytes. */
#define STRING_STEP 4096

/* Writes s as a JSON string straight into the buffer, 8 plain bytes at a time. A string with
 * ill-formed UTF-8 adds 1 to *bad (when bad is not NULL); each maximal ill-formed subpart is
 * written as U+FFFD. */
static int write_string(sl_buf *b, const char *s, size_t n, uint64_t *bad_strings) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  bool counted = false;
  int rc;
  if ((rc = put(b, '"'))) return rc;
  while (i < n) {
    size_t end = n - i > STRING_STEP ? i + STRING_STEP : n;
    /* 6 per byte, and a UTF-8 sequence started before end may run 3 bytes past it */
    if ((rc = room(b, 6 * (end - i) + 8))) return rc;
    char *o = b->data + b->len;
    while (i < end) {
      uint64_t x;
      if (end - i >= 8) {
        memcpy(&x, p + i, 8);
        if (plain8(x)) {
          memcpy(o, &x, 8);
          o += 8;
          i += 8;
          continue;
        }
      } else { /* the last 1 to 7 bytes (most keys and short values are only that), padded */
        x = 0x6161616161616161u;
        memcpy(&x, p + i, end - i);
        if (plain8(x)) {
          memcpy(o, &x, 8); /* the room covers 8 */
          o += end - i;
          i = end;
          continue;
        }
      }
      unsigned c = p[i];
      if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
        *o++ = (char)c;
        i++;
        continue;
      }
      if (c >= 0x80) {
        size_t bad = 1, seq = utf8_seq(p + i, n - i, &bad);
        if (seq) {
          memcpy(o, p + i, seq);
          o += seq;
          i += seq;
        } else { /* ill-formed: U+FFFD */
          memcpy(o, "\xEF\xBF\xBD", 3);
          o += 3;
          i += bad;
          if (bad_strings && !counted) (*bad_strings)++;
          counted = true;
        }
        continue;
      }
      *o++ = '\\';
      switch (c) {
      case '"': *o++ = '"'; break;
      case '\\': *o++ = '\\'; break;
      case '\b': *o++ = 'b'; break;
      case '\f': *o++ = 'f'; break;
      case '\n': *o++ = 'n'; break;
      case '\r': *o++ = 'r'; break;
      case '\t': *o++ = 't'; break;
      default:
        memcpy(o, "u00", 3);
        o[3] = hex[c >> 4];
        o[4] = hex[c & 15];
        o += 5;
      }
      i++;
    }
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
  }
  return put(b, '"');
}

/* An inline string (at most SL_STR_INLINE_MAX bytes, inside the value itself): most keys and
 * many values. Its bytes are read as two overlapping 8-byte words that stay inside the value,
 * so a plain one is written without a loop; one that needs care goes to write_string. */
static int write_inline(sl_buf *b, const sl_value *v, uint64_t *bad) {
  const char *d = (const char *)v + offsetof(sl_value, sbuf);
  size_t n = v->slen - 1u;
  _Static_assert(offsetof(sl_value, sbuf) + SL_STR_INLINE_MAX + 1 <= sizeof(sl_value) && SL_STR_INLINE_MAX < 16,
                 "an inline string and its NUL fit in the value");
  uint64_t lo, hi;
  if (n < 8) { /* bytes past n (still inside the value) are masked to a plain 'a' */
    memcpy(&lo, d, 8);
    uint64_t keep = n ? ~(uint64_t)0 >> (64 - 8 * n) : 0;
    lo = (lo & keep) | (0x6161616161616161u & ~keep);
    hi = lo;
  } else {
    memcpy(&lo, d, 8);
    memcpy(&hi, d + n - 8, 8);
  }
  if (!plain8(lo) || !plain8(hi)) return write_string(b, d, n, bad);
  int rc = room(b, 18);
  if (rc) return rc;
  char *o = b->data + b->len;
  o[0] = '"';
  memcpy(o + 1, &lo, 8);
  if (n > 8) memcpy(o + 1 + n - 8, &hi, 8);
  o[1 + n] = '"';
  b->len += n + 2;
  b->data[b->len] = '\0';
  return SL_OK;
}

static int write_int(sl_buf *b, int64_t i) {
  char s[24], *e = s + sizeof s, *p = e;
  uint64_t u = i < 0 ? 0 - (uint64_t)i : (uint64_t)i;
  do {
    *--p = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (i < 0) *--p = '-';
  return append(b, p, (size_t)(e - p));
}

/* The common doubles without snprintf/strtod (which cost far more than the rest of a record):
 * for 1e-4 <= |d| < 1e15, the fewest decimals k <= 15 such that m / 10^k == |d| with m the
 * rounded |d| * 10^k, of at most 15 digits. m and 10^k are exact and IEEE division is
 * correctly rounded, so that decimal reads back as d; a decimal of <= 15 significant digits
 * that reads back is also what %.15g prints, so the text is the same as the slow path's.
 * Returns the length written to s, or 0 when d is not such a number. */
static int write_fixed(double d, char *s) {
  static const double p10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
  double a = fabs(d);
  if (!(a >= 1e-4 && a < 1e15)) return 0;
  for (int k = 0; k < 16; k++) {
    double x = a * p10[k];
    if (x >= 1e15) return 0; /* 16+ digits: two neighbours may both read back; snprintf picks */
    uint64_t m = (uint64_t)(x + 0.5);
    if ((double)m / p10[k] != a) continue;
    char dig[24], *e = dig + sizeof dig, *p = e;
    do {
      *--p = (char)('0' + m % 10);
      m /= 10;
    } while (m);
    int nd = (int)(e - p), n = 0;
    if (d < 0) s[n++] = '-';
    if (k == 0) {
      memcpy(s + n, p, (size_t)nd);
      memcpy(s + n + nd, ".0", 2);
      return n + nd + 2;
    }
    if (nd <= k) { /* 0.00ddd */
      s[n++] = '0';
      s[n++] = '.';
      memset(s + n, '0', (size_t)(k - nd));
      n += k - nd;
      memcpy(s + n, p, (size_t)nd);
      return n + nd;
    }
    memcpy(s + n, p, (size_t)(nd - k));
    n += nd - k;
    s[n++] = '.';
    memcpy(s + n, p + nd - k, (size_t)k);
    return n + k;
  }
  return 0;
}

/* The shortest of %.15g, %.16g and %.17g that reads back as the same double (%.17g always
 * does), plus ".0" when that looks like an integer, so the type survives a round trip. */
static int write_double(sl_buf *b, double d) {
  char s[40];
  int n = 0;
  if (!isfinite(d)) return append(b, "null", 4);
  if (d == 0) return signbit(d) ? append(b, "-0.0", 4) : append(b, "0.0", 3);
  if ((n = write_fixed(d, s)) > 0) return append(b, s, (size_t)n);
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(s, sizeof s - 2, "%.*g", prec, d);
    if (prec == 17 || strtod(s, NULL) == d) break;
  }
  if (!strpbrk(s, ".eE")) {
    memcpy(s + n, ".0", 3);
    n += 2;
  }
  return append(b, s, (size_t)n);
}

/* An open container of the writer's stack: its items (an array) or entries (a map), how many,
 * and the next one. */
typedef struct frame {
  const sl_value *items;
  const sl__map_entry *ents;
  size_t n, i;
} frame;

/* Writes a scalar, or opens a container (pushing a frame unless it is empty). */
static int write_open(sl_buf *b, const sl_value *v, frame **stack, size_t *depth, size_t *cap,
                      frame *small, uint64_t *bad) {
  frame f = {NULL, NULL, 0, 0};
  size_t n;
  switch ((sl_type)v->type) {
  case SL_TNIL: return append(b, "null", 4);
  case SL_TBOOL: return v->u.b ? append(b, "true", 4) : append(b, "false", 5);
  case SL_TINT: return write_int(b, v->u.i);
  case SL_TDOUBLE: return write_double(b, v->u.d);
  case SL_TSTR: {
    if (v->slen) return write_inline(b, v, bad);
    const char *s = sl__str_view(v, &n);
    return write_string(b, s, n, bad);
  }
  case SL_TARRAY:
    if (v->u.o) {
      f.items = ((const sl__array *)v->u.o)->items;
      f.n = ((const sl__array *)v->u.o)->len;
    }
    if (!f.n) return append(b, "[]", 2);
    break;
  case SL_TMAP:
    if (v->u.o) {
      f.ents = ((const sl__map *)v->u.o)->ent;
      f.n = ((const sl__map *)v->u.o)->len;
    }
    if (!f.n) return append(b, "{}", 2);
    break;
  }
  if (*depth == *cap) {
    size_t ncap = *cap * 2;
    frame *ns = *stack == small ? sl__trymalloc(ncap * sizeof *ns)
                                : sl__tryrealloc(*stack, ncap * sizeof *ns);
    if (!ns) return SL_ENOMEM;
    if (*stack == small) memcpy(ns, small, *cap * sizeof *ns);
    *stack = ns;
    *cap = ncap;
  }
  (*stack)[(*depth)++] = f;
  return put(b, f.items ? '[' : '{');
}

/* On error the text appended so far is taken back, so out is as it was. */
int sl__json_write(const sl_value *v, sl_buf *out, uint64_t *bad_utf8) {
  frame small[32], *stack = small;
  size_t depth = 0, cap = sizeof small / sizeof small[0], len0 = out->len;
  int rc;
  for (const sl_value *cur = v; cur;) {
    if ((rc = write_open(out, cur, &stack, &depth, &cap, small, bad_utf8))) goto fail;
    /* the next value: a child of the innermost open container; finished ones are closed */
    cur = NULL;
    while (depth && !cur) {
      frame *f = &stack[depth - 1];
      if (f->i < f->n) {
        if (f->i && (rc = put(out, ','))) goto fail;
        if (f->items) {
          cur = &f->items[f->i];
        } else {
          const sl_value *key = &f->ents[f->i].key;
          size_t kn;
          const char *k = key->slen ? NULL : sl__str_view(key, &kn);
          if ((rc = k ? write_string(out, k, kn, bad_utf8) : write_inline(out, key, bad_utf8))) goto fail;
          if ((rc = put(out, ':'))) goto fail;
          cur = &f->ents[f->i].val;
        }
        f->i++;
      } else {
        if ((rc = put(out, f->items ? ']' : '}'))) goto fail;
        depth--;
      }
    }
  }
  rc = SL_OK;
fail:
  if (rc && out->len > len0) {
    out->len = len0;
    out->data[len0] = '\0';
  }
  if (stack != small) sl__free(stack);
  return rc;
}

int sl_value_to_json(const sl_value *v, sl_buf *out) { return sl__json_write(v, out, NULL); }

/* ---------------------------------------------------------------------------------------------
 * Parser
 * ------------------------------------------------------------------------------------------- */

typedef struct parser {
  const unsigned char *start; /* the text, for byte offsets in messages */
  const unsigned char *p;     /* the next byte */
  const unsigned char *end;   /* one past the last byte */
  sl_error_t *err;            /* where errors go (may be NULL) */
  int depth;                  /* open arrays and objects */
  uint64_t big_ints;          /* integers beyond int64 read as doubles */
  sl__map_entry *ents;        /* entries of the open objects, innermost last (then made a map) */
  size_t nents, capents;
  sl__map_entry small[32];    /* ents until more are needed */
} parser;

static int parse_value(parser *ps, sl_value *out);

/* The message names the byte offset, and the line and column (counted in bytes, from 1) when
 * the text has a line break before the error. */
static int syntax_error(parser *ps, const unsigned char *at, const char *what) {
  size_t line = 1;
  const unsigned char *bol = ps->start;
  for (const unsigned char *q = ps->start; q < at && q < ps->end; q++)
    if (*q == '\n') {
      line++;
      bol = q + 1;
    }
  char lc[64] = "";
  if (line > 1) snprintf(lc, sizeof lc, " (line %zu, column %zu)", line, (size_t)(at - bol) + 1);
  return sl_error_set(ps->err, SL_EDATA, NULL, "invalid JSON at byte %zu%s: %s%s", (size_t)(at - ps->start), lc,
                      what, at >= ps->end ? " (end of input)" : "");
}

static int nomem(parser *ps, size_t n) {
  return sl_error_set(ps->err, SL_ENOMEM, NULL,
                      "out of memory parsing JSON (%zu bytes at byte %zu)", n,
                      (size_t)(ps->p - ps->start));
}

static inline void skip_ws(parser *ps) {
  while (ps->p < ps->end && *ps->p <= ' ' && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t'))
    ps->p++;
}

static inline bool at(parser *ps, char c) { return ps->p < ps->end && *ps->p == (unsigned char)c; }

static inline bool is_digit(const parser *ps, const unsigned char *p) {
  return p < ps->end && *p >= '0' && *p <= '9';
}

static int hex_digit(unsigned c) {
  if (c >= '0' && c <= '9') return (int)(c - '0');
  if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
  if (c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
  return -1;
}

/* The four hex digits at p as a code unit, or -1. */
static long hex4(const parser *ps, const unsigned char *p) {
  long u = 0;
  if (ps->end - p < 4) return -1;
  for (int k = 0; k < 4; k++) {
    int d = hex_digit(p[k]);
    if (d < 0) return -1;
    u = u * 16 + d;
  }
  return u;
}

static size_t utf8_put(unsigned long cp, unsigned char *d) {
  if (cp < 0x80) {
    d[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    d[0] = (unsigned char)(0xC0 | cp >> 6);
    d[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    d[0] = (unsigned char)(0xE0 | cp >> 12);
    d[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    d[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  d[0] = (unsigned char)(0xF0 | cp >> 18);
  d[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
  d[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
  d[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Walks a string body from ps->p (after the opening quote) past its closing quote, checking
 * it. The decoded length goes to *n; the bytes go to dst unless it is NULL (the first pass
 * only measures; a second pass decodes, and is then known not to fail). *escaped tells whether
 * there was any escape (if not, the bytes can be copied as they are). A \u escape of a lone
 * surrogate decodes to U+FFFD. */
static int string_body(parser *ps, unsigned char *dst, size_t *n, bool *escaped) {
  const unsigned char *p = ps->p, *end = ps->end;
  unsigned char tmp[4];
  size_t len = 0;
  *escaped = false;
  for (;;) {
    const unsigned char *q = plain_run(p, end);
    if (dst && q > p) memcpy(dst + len, p, (size_t)(q - p));
    len += (size_t)(q - p);
    p = q;
    if (p >= end) return syntax_error(ps, p, "unterminated string");
    unsigned c = *p;
    if (c == '"') break;
    if (c < 0x20) return syntax_error(ps, p, "control character in string (must be escaped)");
    if (c >= 0x80) {
      size_t bad, k = utf8_seq(p, (size_t)(end - p), &bad);
      if (!k) return syntax_error(ps, p, "invalid UTF-8 in string");
      if (dst) memcpy(dst + len, p, k);
      len += k;
      p += k;
      continue;
    }
    /* a backslash */
    *escaped = true;
    if (end - p < 2) return syntax_error(ps, p + 1, "unterminated string");
    unsigned char e = p[1], *d = dst ? dst + len : tmp;
    const char *simple = strchr("\"\\/bfnrt", e);
    if (e && simple) {
      *d = (unsigned char)"\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
      len++;
      p += 2;
      continue;
    }
    if (e != 'u') return syntax_error(ps, p, "invalid escape in string");
    long u = hex4(ps, p + 2);
    if (u < 0) return syntax_error(ps, p, "invalid \\u escape (expected 4 hex digits)");
    p += 6;
    unsigned long cp = (unsigned long)u;
    if (u >= 0xD800 && u <= 0xDBFF && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
      long lo = hex4(ps, p + 2);
      if (lo >= 0xDC00 && lo <= 0xDFFF) {
        cp = 0x10000 + (((unsigned long)u - 0xD800) << 10) + ((unsigned long)lo - 0xDC00);
        p += 6;
      }
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD; /* a lone surrogate */
    len += utf8_put(cp, d);
  }
  ps->p = p + 1;
  *n = len;
  return SL_OK;
}

/* Strings are measured first, then made at their exact size (inline when short); strings
 * without escapes are copied straight from the text. */
static int parse_string(parser *ps, sl_value *out) {
  const unsigned char *body = ++ps->p;
  size_t n;
  bool escaped;
  char *dst;
  const unsigned char *q = plain_run(body, ps->end);
  if (q < ps->end && *q == '"') { /* the common case: nothing to decode or check further */
    n = (size_t)(q - body);
    if (sl__str_new_try(n, out, &dst)) return nomem(ps, n);
    if (n) memcpy(dst, body, n);
    ps->p = q + 1;
    return SL_OK;
  }
  int rc = string_body(ps, NULL, &n, &escaped);
  if (rc) return rc;
  if (sl__str_new_try(n, out, &dst)) return nomem(ps, n);
  if (!escaped) {
    if (n) memcpy(dst, body, n);
  } else {
    const unsigned char *after = ps->p;
    ps->p = body;
    string_body(ps, (unsigned char *)dst, &n, &escaped);
    ps->p = after;
  }
  return SL_OK;
}

/* Decimal digits of a number: at most 15 significant ones are kept in m (below 2^53, exact). */
typedef struct digits {
  uint64_t m; /* the significant digits, while sig <= 15 */
  int sig;    /* significant digits seen (leading zeros are not) */
} digits;

static inline void add_digit(digits *dg, unsigned d) {
  if (dg->sig || d) dg->sig++;
  if (dg->sig <= 15) dg->m = dg->m * 10 + d;
}

/* Integers that fit int64 stay integers (accumulated negatively, so INT64_MIN fits). Other
 * numbers become doubles: with at most 15 significant digits and a decimal exponent within
 * +-22, as m * 10^e or m / 10^-e (both operands exact, one correctly rounded operation:
 * Clinger's fast path, the same result as strtod); otherwise through strtod on a
 * NUL-terminated copy. */
static int parse_number(parser *ps, sl_value *out) {
  static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  const unsigned char *s = ps->p, *p = s;
  bool neg = *p == '-', integral = true;
  digits dg = {0, 0};
  long e = 0, ex = 0; /* the decimal exponent of m; the written exponent (capped) */
  if (neg) p++;
  if (!is_digit(ps, p)) return syntax_error(ps, p, "expected a digit");
  if (*p == '0') {
    p++;
  } else {
    for (; is_digit(ps, p); p++) {
      add_digit(&dg, *p - '0');
      if (dg.sig > 15) e++;
    }
  }
  if (p < ps->end && *p == '.') {
    integral = false;
    if (!is_digit(ps, ++p)) return syntax_error(ps, p, "expected a digit after '.'");
    for (; is_digit(ps, p); p++) {
      add_digit(&dg, *p - '0');
      if (dg.sig <= 15) e--;
    }
  }
  if (p < ps->end && (*p == 'e' || *p == 'E')) {
    bool eneg = false;
    integral = false;
    p++;
    if (p < ps->end && (*p == '+' || *p == '-')) eneg = *p++ == '-';
    if (!is_digit(ps, p)) return syntax_error(ps, p, "expected a digit in the exponent");
    for (; is_digit(ps, p); p++)
      if (ex < 100000) ex = ex * 10 + (*p - '0');
    e += eneg ? -ex : ex;
  }
  ps->p = p;
  if (integral) {
    int64_t acc = 0;
    const unsigned char *q = s + neg;
    for (; q < p; q++) {
      int d = *q - '0';
      if (acc < (INT64_MIN + d) / 10) break;
      acc = acc * 10 - d;
    }
    if (q == p && (neg || acc != INT64_MIN)) {
      *out = sl_int(neg ? acc : -acc);
      return SL_OK;
    }
    ps->big_ints++;
  }
  if (dg.sig <= 15 && e >= -22 && e <= 22) {
    double d = e < 0 ? (double)dg.m / p10[-e] : (double)dg.m * p10[e];
    *out = sl_double(neg ? -d : d);
    return SL_OK;
  }
  char small[64], *buf = small;
  size_t len = (size_t)(p - s);
  if (len >= sizeof small && !(buf = sl__trymalloc(len + 1))) return nomem(ps, len + 1);
  memcpy(buf, s, len);
  buf[len] = '\0';
  *out = sl_double(strtod(buf, NULL));
  if (buf != small) sl__free(buf);
  return SL_OK;
}

static int parse_literal(parser *ps, const char *word, sl_value v, sl_value *out) {
  size_t n = strlen(word);
  if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
    return syntax_error(ps, ps->p, "expected a value");
  ps->p += n;
  *out = v;
  return SL_OK;
}

static int parse_array(parser *ps, sl_value *out) {
  sl_value arr = sl_array(0), item;
  int rc;
  if (++ps->depth > JSON_MAX_DEPTH) {
    rc = syntax_error(ps, ps->p, "nesting deeper than 1000 levels");
    goto fail;
  }
  ps->p++;
  skip_ws(ps);
  if (at(ps, ']')) {
    ps->p++;
  } else {
    for (;;) {
      if ((rc = parse_value(ps, &item))) goto fail;
      sl_array_push(&arr, item);
      skip_ws(ps);
      if (at(ps, ',')) {
        ps->p++;
        continue;
      }
      if (at(ps, ']')) {
        ps->p++;
        break;
      }
      rc = syntax_error(ps, ps->p, "expected ',' or ']'");
      goto fail;
    }
  }
  ps->depth--;
  *out = arr;
  return SL_OK;
fail:
  sl_value_free(arr);
  return rc;
}

/* Room for one more entry on the parser's stack. */
static int ents_room(parser *ps) {
  if (ps->nents < ps->capents) return SL_OK;
  size_t cap = ps->capents * 2;
  sl__map_entry *ne = ps->ents == ps->small ? sl__trymalloc(cap * sizeof *ne) : sl__tryrealloc(ps->ents, cap * sizeof *ne);
  if (!ne) return nomem(ps, cap * sizeof *ne);
  if (ps->ents == ps->small) memcpy(ne, ps->small, ps->nents * sizeof *ne);
  ps->ents = ne;
  ps->capents = cap;
  return SL_OK;
}

/* The entries are gathered on the parser's stack and the map is made at its size at the end. */
static int parse_object(parser *ps, sl_value *out) {
  size_t base = ps->nents;
  sl_value key = sl_nil(), val;
  int rc;
  if (++ps->depth > JSON_MAX_DEPTH) {
    rc = syntax_error(ps, ps->p, "nesting deeper than 1000 levels");
    goto fail;
  }
  ps->p++;
  skip_ws(ps);
  if (at(ps, '}')) {
    ps->p++;
  } else {
    for (;;) {
      if (!at(ps, '"')) {
        rc = syntax_error(ps, ps->p, "expected a string key");
        goto fail;
      }
      if ((rc = parse_string(ps, &key))) goto fail;
      skip_ws(ps);
      if (!at(ps, ':')) {
        rc = syntax_error(ps, ps->p, "expected ':'");
        goto fail;
      }
      ps->p++;
      if ((rc = parse_value(ps, &val))) goto fail;
      if ((rc = ents_room(ps))) {
        sl_value_free(val);
        goto fail;
      }
      ps->ents[ps->nents++] = (sl__map_entry){key, val};
      key = sl_nil();
      skip_ws(ps);
      if (at(ps, ',')) {
        ps->p++;
        skip_ws(ps);
        continue;
      }
      if (at(ps, '}')) {
        ps->p++;
        break;
      }
      rc = syntax_error(ps, ps->p, "expected ',' or '}'");
      goto fail;
    }
  }
  ps->depth--;
  *out = sl__map_from_dups(ps->ents + base, ps->nents - base); /* a duplicate key: the last value wins */
  ps->nents = base;
  return SL_OK;
fail:
  sl_value_free(key);
  for (size_t i = base; i < ps->nents; i++) {
    sl_value_free(ps->ents[i].key);
    sl_value_free(ps->ents[i].val);
  }
  ps->nents = base;
  return rc;
}

/* Skips whitespace, then parses one value into *out (owned); nothing is left owned on error. */
static int parse_value(parser *ps, sl_value *out) {
  skip_ws(ps);
  if (ps->p >= ps->end) return syntax_error(ps, ps->p, "expected a value");
  switch (*ps->p) {
  case '{': return parse_object(ps, out);
  case '[': return parse_array(ps, out);
  case '"': return parse_string(ps, out);
  case 't': return parse_literal(ps, "true", sl_bool(true), out);
  case 'f': return parse_literal(ps, "false", sl_bool(false), out);
  case 'n': return parse_literal(ps, "null", sl_nil(), out);
  case '-': return parse_number(ps, out);
  default:
    if (*ps->p >= '0' && *ps->p <= '9') return parse_number(ps, out);
    return syntax_error(ps, ps->p, "expected a value");
  }
}

int sl_value_from_json(const char *text, size_t n, sl_value *out, sl_error_t *err) {
  return sl__json_parse(text, n, out, err, NULL);
}

int sl__json_parse(const char *text, size_t n, sl_value *out, sl_error_t *err, uint64_t *big_ints) {
  sl_value v;
  *out = sl_nil();
  if (!text) {
    if (n) return sl_error_set(err, SL_EINVAL, NULL, "JSON text is NULL");
    text = "";
  }
  parser ps = {(const unsigned char *)text, (const unsigned char *)text,
               (const unsigned char *)text + n, err, 0, 0, NULL, 0, 0, {{{0}, {0}}}};
  ps.ents = ps.small;
  ps.capents = sizeof ps.small / sizeof ps.small[0];
  int rc = parse_value(&ps, &v);
  if (ps.ents != ps.small) sl__free(ps.ents);
  if (big_ints) *big_ints += ps.big_ints;
  if (rc) return rc;
  skip_ws(&ps);
  if (ps.p < ps.end) {
    sl_value_free(v);
    return syntax_error(&ps, ps.p, "unexpected data after the value");
  }
  *out = v;
  return SL_OK;
}
