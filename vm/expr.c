/*
 * expr.c — simple Lua predicates evaluated in C (expr.h has the subset and its rules).
 *
 * The text is parsed once, by recursive descent, into a small array of nodes; a node's
 * children are indices into it. Evaluation walks the tree and yields pointers to values: into
 * the record, to a literal of the expression, or to the constants below. It never allocates.
 */
#include "expr.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

enum { N_LIT, N_PATH, N_NOT, N_AND, N_OR, N_CMP };
enum { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE };

#define MAX_NODES 64
#define MAX_DEPTH 32
#define MAX_PATH 8

typedef struct node {
  int kind;
  int op;      /* N_CMP */
  int a, b;    /* children (N_NOT: a) */
  sl_value v;  /* N_LIT */
  int nnames;  /* N_PATH: r.names[0].names[1]... */
  struct {
    const char *s;
    size_t n;
  } names[MAX_PATH];
} node;

struct sl_expr {
  char *text; /* path names point into it */
  int root;
  int n;
  node nodes[MAX_NODES];
};

static const sl_value v_nil = {0};
static const sl_value v_true = {.type = SL_TBOOL, .u.b = true};
static const sl_value v_false = {.type = SL_TBOOL, .u.b = false};

/* ---- parsing ------------------------------------------------------------------------------ */

typedef struct parser {
  sl_expr *x;
  const char *p;
  int depth;
  bool bad;
} parser;

static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static void skip(parser *ps) {
  while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r') ps->p++;
}

/* Length of the name at the cursor (0 if none). */
static size_t name_len(const char *p) {
  if (!is_alpha(*p)) return 0;
  size_t n = 1;
  while (is_alpha(p[n]) || is_digit(p[n])) n++;
  return n;
}

/* Takes keyword kw if it is the next token. */
static bool keyword(parser *ps, const char *kw) {
  skip(ps);
  size_t n = name_len(ps->p);
  if (n != strlen(kw) || memcmp(ps->p, kw, n) != 0) return false;
  ps->p += n;
  return true;
}

static int add(parser *ps, node nd) {
  if (ps->x->n == MAX_NODES) {
    ps->bad = true;
    sl_value_free(nd.v);
    return 0;
  }
  ps->x->nodes[ps->x->n] = nd;
  return ps->x->n++;
}

static int parse_or(parser *ps);

/* A decimal numeral as Lua reads it (hexadecimal ones are left to Lua). */
static int parse_number(parser *ps) {
  const char *s = ps->p, *q = s;
  bool flt = false;
  while (is_digit(*q)) q++;
  if (*q == '.') {
    flt = true;
    q++;
    while (is_digit(*q)) q++;
  }
  if (q == s || (q == s + 1 && *s == '.')) return ps->bad = true, 0;
  if (*q == 'e' || *q == 'E') {
    flt = true;
    q++;
    if (*q == '+' || *q == '-') q++;
    if (!is_digit(*q)) return ps->bad = true, 0;
    while (is_digit(*q)) q++;
  }
  if (is_alpha(*q) || *q == '.') return ps->bad = true, 0; /* 5x, 1.2.3: Lua's error */
  char buf[64];
  if ((size_t)(q - s) >= sizeof buf) return ps->bad = true, 0;
  memcpy(buf, s, (size_t)(q - s));
  buf[q - s] = 0;
  ps->p = q;
  node nd = {.kind = N_LIT};
  if (flt) {
    nd.v = sl_double(strtod(buf, NULL));
  } else {
    /* an integer numeral too big for int64 is a float in Lua: leave those to it */
    if (q - s > 18) return ps->bad = true, 0;
    nd.v = sl_int(strtoll(buf, NULL, 10));
  }
  return add(ps, nd);
}

static int parse_primary(parser *ps) {
  skip(ps);
  char c = *ps->p;
  if (c == '(') {
    ps->p++;
    if (++ps->depth > MAX_DEPTH) return ps->bad = true, 0;
    int e = parse_or(ps);
    ps->depth--;
    skip(ps);
    if (*ps->p != ')') return ps->bad = true, 0;
    ps->p++;
    return e;
  }
  if (c == '"' || c == '\'') {
    const char *s = ++ps->p;
    while (*ps->p && *ps->p != c && *ps->p != '\\' && *ps->p != '\n') ps->p++;
    if (*ps->p != c) return ps->bad = true, 0; /* escapes and unfinished strings: Lua's */
    node nd = {.kind = N_LIT, .v = sl_str(s, (size_t)(ps->p - s))};
    ps->p++;
    return add(ps, nd);
  }
  if (is_digit(c) || (c == '.' && is_digit(ps->p[1]))) return parse_number(ps);
  if (c == '-' && (is_digit(ps->p[1]) || (ps->p[1] == '.' && is_digit(ps->p[2])))) { /* -5 (but --: a comment) */
    ps->p++;
    int k = parse_number(ps);
    if (ps->bad) return 0;
    sl_value *v = &ps->x->nodes[k].v;
    if (v->type == SL_TINT) v->u.i = -v->u.i;
    else v->u.d = -v->u.d;
    return k;
  }
  size_t n = name_len(ps->p);
  if (n == 0) return ps->bad = true, 0;
  if (keyword(ps, "true")) return add(ps, (node){.kind = N_LIT, .v = sl_bool(true)});
  if (keyword(ps, "false")) return add(ps, (node){.kind = N_LIT, .v = sl_bool(false)});
  if (keyword(ps, "nil")) return add(ps, (node){.kind = N_LIT});
  if (n != 1 || *ps->p != 'r') return ps->bad = true, 0; /* other names: globals, upvalues */
  ps->p++;
  node nd = {.kind = N_PATH};
  while (*ps->p == '.' && ps->p[1] != '.') {
    const char *s = ps->p + 1;
    size_t k = name_len(s);
    if (k == 0 || nd.nnames == MAX_PATH) return ps->bad = true, 0;
    nd.names[nd.nnames].s = s;
    nd.names[nd.nnames].n = k;
    nd.nnames++;
    ps->p = s + k;
  }
  return add(ps, nd);
}

static int parse_unary(parser *ps) {
  if (keyword(ps, "not")) {
    if (++ps->depth > MAX_DEPTH) return ps->bad = true, 0;
    int a = parse_unary(ps);
    ps->depth--;
    return add(ps, (node){.kind = N_NOT, .a = a});
  }
  return parse_primary(ps);
}

/* The comparison operator at the cursor, taken, or -1. */
static int cmp_op(parser *ps) {
  skip(ps);
  const char *p = ps->p;
  int op = -1, len = 2;
  if (p[0] == '=' && p[1] == '=') op = OP_EQ;
  else if (p[0] == '~' && p[1] == '=') op = OP_NE;
  else if (p[0] == '<' && p[1] == '=') op = OP_LE;
  else if (p[0] == '>' && p[1] == '=') op = OP_GE;
  else if (p[0] == '<' && p[1] != '<') op = OP_LT, len = 1;
  else if (p[0] == '>' && p[1] != '>') op = OP_GT, len = 1;
  if (op >= 0) ps->p += len;
  return op;
}

static int parse_cmp(parser *ps) {
  int a = parse_unary(ps);
  for (int op; !ps->bad && (op = cmp_op(ps)) >= 0;) {
    int b = parse_unary(ps);
    a = add(ps, (node){.kind = N_CMP, .op = op, .a = a, .b = b});
  }
  return a;
}

static int parse_and(parser *ps) {
  int a = parse_cmp(ps);
  while (!ps->bad && keyword(ps, "and")) {
    int b = parse_cmp(ps);
    a = add(ps, (node){.kind = N_AND, .a = a, .b = b});
  }
  return a;
}

static int parse_or(parser *ps) {
  int a = parse_and(ps);
  while (!ps->bad && keyword(ps, "or")) {
    int b = parse_and(ps);
    a = add(ps, (node){.kind = N_OR, .a = a, .b = b});
  }
  return a;
}

void sl_expr_free(sl_expr *x) {
  if (!x) return;
  for (int i = 0; i < x->n; i++) sl_value_free(x->nodes[i].v);
  sl__free(x->text);
  sl__free(x);
}

sl_expr *sl_expr_compile(const char *text) {
  if (!text) return NULL;
  sl_expr *x = sl__xcalloc(1, sizeof *x);
  x->text = sl__xstrdup(text);
  parser ps = {.x = x, .p = x->text};
  x->root = parse_or(&ps);
  skip(&ps);
  if (ps.bad || *ps.p) {
    sl_expr_free(x);
    return NULL;
  }
  return x;
}

/* ---- evaluation --------------------------------------------------------------------------- */

static bool truthy(const sl_value *v) { return !(v->type == SL_TNIL || (v->type == SL_TBOOL && !v->u.b)); }
static bool is_number(const sl_value *v) { return v->type == SL_TINT || v->type == SL_TDOUBLE; }
static bool is_table(const sl_value *v) { return v->type == SL_TMAP || v->type == SL_TARRAY; }

/* Lua's ==, or -1 (two tables: identity, which the C side cannot know). */
static int equal(const sl_value *a, const sl_value *b) {
  if (is_number(a) && is_number(b)) {
    if (a->type == SL_TINT && b->type == SL_TINT) return a->u.i == b->u.i;
    if (a->type == SL_TDOUBLE && b->type == SL_TDOUBLE) return a->u.d == b->u.d;
    /* an integer equals a float only if the float is exactly that integer */
    long double x = a->type == SL_TINT ? (long double)a->u.i : (long double)a->u.d;
    long double y = b->type == SL_TINT ? (long double)b->u.i : (long double)b->u.d;
    return x == y;
  }
  if (is_table(a) && is_table(b)) return -1;
  if (a->type != b->type) return 0;
  switch (a->type) {
  case SL_TNIL: return 1;
  case SL_TBOOL: return a->u.b == b->u.b;
  case SL_TSTR: {
    size_t n = sl_str_len(a);
    return n == sl_str_len(b) && memcmp(sl_str_data(a), sl_str_data(b), n) == 0;
  }
  default: return 0;
  }
}

/* Lua's < (le: <=) on numbers or on strings (bytewise: the C locale's collation), or -1 where
 * Lua would raise an error or call a metamethod. */
static int less(const sl_value *a, const sl_value *b, bool le) {
  if (is_number(a) && is_number(b)) {
    if (a->type == SL_TINT && b->type == SL_TINT) return le ? a->u.i <= b->u.i : a->u.i < b->u.i;
    /* exact: every int64 and every double is a long double (NaN compares false) */
    long double x = a->type == SL_TINT ? (long double)a->u.i : (long double)a->u.d;
    long double y = b->type == SL_TINT ? (long double)b->u.i : (long double)b->u.d;
    return le ? x <= y : x < y;
  }
  if (a->type == SL_TSTR && b->type == SL_TSTR) {
    size_t na = sl_str_len(a), nb = sl_str_len(b);
    int c = memcmp(sl_str_data(a), sl_str_data(b), na < nb ? na : nb);
    if (c == 0) c = na < nb ? -1 : na > nb;
    return le ? c <= 0 : c < 0;
  }
  return -1;
}

/* The value of node i for record r, or NULL when Lua must decide. */
static const sl_value *eval(const sl_expr *x, int i, const sl_value *r) {
  const node *nd = &x->nodes[i];
  switch (nd->kind) {
  case N_LIT: return &nd->v;
  case N_PATH: {
    const sl_value *v = r;
    for (int k = 0; k < nd->nnames; k++) {
      if (v->type != SL_TMAP) return NULL; /* nil: an error; strings, arrays: Lua's indexing */
      v = sl_map_get(v, nd->names[k].s, nd->names[k].n);
      if (!v) v = &v_nil;
    }
    return v;
  }
  case N_NOT: {
    const sl_value *a = eval(x, nd->a, r);
    return !a ? NULL : truthy(a) ? &v_false : &v_true;
  }
  case N_AND: {
    const sl_value *a = eval(x, nd->a, r);
    return !a || !truthy(a) ? a : eval(x, nd->b, r);
  }
  case N_OR: {
    const sl_value *a = eval(x, nd->a, r);
    return !a || truthy(a) ? a : eval(x, nd->b, r);
  }
  default: { /* N_CMP */
    const sl_value *a = eval(x, nd->a, r);
    const sl_value *b = a ? eval(x, nd->b, r) : NULL;
    if (!b) return NULL;
    int t;
    switch (nd->op) {
    case OP_EQ: t = equal(a, b); break;
    case OP_NE: t = equal(a, b); t = t < 0 ? t : !t; break;
    case OP_LT: t = less(a, b, false); break;
    case OP_LE: t = less(a, b, true); break;
    case OP_GT: t = less(b, a, false); break;
    default: t = less(b, a, true); break;
    }
    return t < 0 ? NULL : t ? &v_true : &v_false;
  }
  }
}

int sl_expr_test(const sl_expr *x, const sl_value *r) {
  const sl_value *v = eval(x, x->root, r);
  return !v ? SL_EXPR_ASK_LUA : truthy(v) ? SL_EXPR_TRUE : SL_EXPR_FALSE;
}
