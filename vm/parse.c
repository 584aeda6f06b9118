/*
 * parse.c — durations ("250ms", "1.5s", a bare number of seconds) and sizes ("64KiB", "10MB",
 * a bare number of bytes), as written in options. Strict: no sign, no surrounding whitespace,
 * units are case-sensitive, and the result must fit int64.
 */
#include <math.h>
#include <string.h>

#include "sluice.h"

typedef struct unit {
  const char *name; /* as written after the number */
  int64_t mult;     /* nanoseconds or bytes per unit */
} unit;

static const unit duration_units[] = {
    {"", 1000000000}, /* a bare number: seconds */
    {"ns", 1},
    {"us", 1000},
    {"\xC2\xB5s", 1000}, /* µs (U+00B5) */
    {"ms", 1000000},
    {"s", 1000000000},
    {"m", 60LL * 1000000000},
    {"h", 3600LL * 1000000000},
    {NULL, 0},
};

static const unit size_units[] = {
    {"", 1}, /* a bare number: bytes */
    {"B", 1},
    {"KB", 1000},
    {"MB", 1000000},
    {"GB", 1000000000},
    {"TB", 1000000000000},
    {"KiB", 1LL << 10},
    {"MiB", 1LL << 20},
    {"GiB", 1LL << 30},
    {"TiB", 1LL << 40},
    {NULL, 0},
};

/* A decimal number with a unit of the table: digits, optionally '.' and digits (".5" and "1."
 * are accepted; at least one digit), then optional spaces and a unit (spaces only before a
 * unit). The integer part is exact; the fraction (to 18 digits) is rounded to the nearest
 * unit of the result. frac_ok_at_1: whether a fraction is allowed when the multiplier is 1
 * (a duration of "1.5ns" rounds; a size of "1.5B" is refused). */
static int parse_with_units(const char *text, const unit *units, bool frac_ok_at_1, int64_t *res) {
  const char *p = text;
  uint64_t ip = 0, frac = 0, scale = 1;
  bool digits = false, has_frac = false;
  if (!text) return SL_EINVAL;
  for (; *p >= '0' && *p <= '9'; p++, digits = true) {
    unsigned d = (unsigned)(*p - '0');
    if (ip > (UINT64_MAX - d) / 10) return SL_EINVAL;
    ip = ip * 10 + d;
  }
  if (*p == '.') {
    has_frac = true;
    for (p++; *p >= '0' && *p <= '9'; p++, digits = true) {
      if (scale < 1000000000000000000ULL) {
        frac = frac * 10 + (uint64_t)(*p - '0');
        scale *= 10;
      }
    }
  }
  if (!digits) return SL_EINVAL;
  const char *u = p;
  while (*u == ' ') u++;
  if (u != p && !*u) return SL_EINVAL; /* trailing spaces, no unit */
  const unit *un = units;
  while (un->name && strcmp(un->name, u) != 0) un++;
  if (!un->name) return SL_EINVAL;
  uint64_t mult = (uint64_t)un->mult;
  if (has_frac && mult == 1 && !frac_ok_at_1) return SL_EINVAL;
  if (ip > (uint64_t)INT64_MAX / mult) return SL_EINVAL;
  uint64_t total = ip * mult + (uint64_t)llround((double)frac * (double)mult / (double)scale);
  if (total > (uint64_t)INT64_MAX) return SL_EINVAL;
  *res = (int64_t)total;
  return SL_OK;
}

int sl_parse_duration(const char *text, int64_t *ns) {
  return parse_with_units(text, duration_units, true, ns);
}

int sl_parse_size(const char *text, int64_t *bytes) {
  return parse_with_units(text, size_units, false, bytes);
}
