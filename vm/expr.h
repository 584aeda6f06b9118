/*
 * expr.h — simple Lua predicates evaluated in C, without a Lua call (sl_expr_).
 *
 * A stage predicate such as `r.status < 500 and r.method == "GET"` costs a Lua call and the
 * conversion of the whole record to a table; evaluated here it costs a few field lookups. Only a
 * pure subset of Lua expressions compiles, over the record `r` and literals:
 *
 *   expr    := and {"or" and}          and := cmp {"and" cmp}
 *   cmp     := unary {op unary}        op  := == ~= < <= > >=
 *   unary   := "not" unary | primary
 *   primary := path | ["-"] number | string | true | false | nil | "(" expr ")"
 *   path    := r {"." name}
 *
 * with Lua's precedence and its value semantics (`and`/`or` return an operand, `not` binds
 * tighter than a comparison, 0 and "" are true, int and float compare exactly, strings
 * bytewise as in the C locale). Anything else (calls, arithmetic, other names, escapes in
 * strings, comments, hexadecimal numerals) does not compile, and the stage runs the text as Lua.
 * A record the C side cannot decide with certainty — a comparison Lua would raise an error on
 * (nil < 1, "a" < 1), `==` between tables, indexing something that is not a map — is handed to
 * Lua, so that the outcome, error message included, is Lua's.
 */
#ifndef SL_EXPR_H
#define SL_EXPR_H

#include "sluice.h"

typedef struct sl_expr sl_expr;

/* The compiled predicate, or NULL when text is not in the subset. */
sl_expr *sl_expr_compile(const char *text);
void sl_expr_free(sl_expr *x);

enum { SL_EXPR_FALSE = 0, SL_EXPR_TRUE = 1, SL_EXPR_ASK_LUA = -1 };
/* Truth of the predicate for record r: SL_EXPR_TRUE, SL_EXPR_FALSE, or SL_EXPR_ASK_LUA when
 * only Lua can say (see above). Thread-safe: x is read only. */
int sl_expr_test(const sl_expr *x, const sl_value *r);

#endif
