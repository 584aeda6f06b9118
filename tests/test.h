/*
 * test.h — the unit test harness: ASSERT_* macros and the TEST() declaration.
 * Every test is listed once in tests/test_list.h; tests/main.c runs them all (or those whose
 * name contains argv[1]) and ends with the line "N passed, N failed".
 * A test must tear down everything it created, so leak checkers stay quiet.
 */
#ifndef SL_TEST_H
#define SL_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

/* Set by a failing assertion; the test function returns at once. */
extern int sl_test_failed;

/* A new engine for a test (aborts the run if it cannot be made). */
sl_engine *sl_test_engine(int workers, bool virtual_time);

/* Files for tests: a fresh folder under /tmp (out gets its name), removed with its files by
 * sl_test_rmtree; whole files written and read (read: malloc'd, NUL-terminated, NULL if absent). */
void sl_test_tmpdir(char *out, size_t n);
void sl_test_rmtree(const char *dir);
void sl_test_write_file(const char *path, const char *data, size_t n);
char *sl_test_read_file(const char *path, size_t *n);

/* The message of an error ("" for NULL). */
static inline const char *sl_test_errmsg(const sl_error_t *e) { return e ? e->msg : ""; }

#define TEST(name)         \
  void test_##name(void); \
  void test_##name(void)

#define SL__FAIL(...)                                                     \
  do {                                                                    \
    fprintf(stderr, "    %s:%d: ", __FILE__, __LINE__);                   \
    fprintf(stderr, __VA_ARGS__);                                         \
    fputc('\n', stderr);                                                  \
    sl_test_failed = 1;                                                   \
    return;                                                               \
  } while (0)

#define ASSERT(cond)                                                      \
  do {                                                                    \
    if (!(cond)) SL__FAIL("assertion failed: %s", #cond);                 \
  } while (0)

#define ASSERT_EQ(a, b)                                                   \
  do {                                                                    \
    long long sl__a = (long long)(a), sl__b = (long long)(b);             \
    if (sl__a != sl__b)                                                   \
      SL__FAIL("%s == %s: %lld != %lld", #a, #b, sl__a, sl__b);           \
  } while (0)

#define ASSERT_STR(a, b)                                                  \
  do {                                                                    \
    const char *sl__a = (a), *sl__b = (b);                                \
    if (!sl__a || !sl__b || strcmp(sl__a, sl__b) != 0)                   \
      SL__FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, sl__a ? sl__a : "(null)", \
               sl__b ? sl__b : "(null)");                                 \
  } while (0)

/* Asserts an sl_* call returned SL_OK, printing the error message otherwise. */
#define ASSERT_OK(call, errp)                                             \
  do {                                                                    \
    int sl__rc = (call);                                                  \
    if (sl__rc != 0)                                                      \
      SL__FAIL("%s: %s (%s)", #call, sl_strerror(sl__rc), sl_test_errmsg(errp)); \
  } while (0)

#endif
