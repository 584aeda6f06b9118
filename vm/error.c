/* error.c — error codes and sl_error_t (sluice.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sluice.h"

const char *sl_strerror(int code) {
  switch (code) {
#define SL__ERR_CASE(name, num, text) \
  case num: return text;
    SL_ERROR_LIST(SL__ERR_CASE)
#undef SL__ERR_CASE
  }
  return "unknown error";
}

void sl_error_init(sl_error_t *err) {
  err->code = 0;
  err->stage[0] = '\0';
  err->msg[0] = '\0';
}

/* The message is formatted into a local first, so its arguments may point into *err (an
 * earlier message or stage). Long stage names and messages are truncated. */
int sl_error_set(sl_error_t *err, int code, const char *stage, const char *fmt, ...) {
  if (!err) return code;
  char msg[sizeof err->msg];
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
  } else {
    snprintf(msg, sizeof msg, "%s", sl_strerror(code));
  }
  err->code = code;
  if (stage != err->stage) { /* memmove: stage may point into err->stage */
    size_t n = 0;
    while (stage && n < sizeof err->stage - 1 && stage[n]) n++;
    if (n) memmove(err->stage, stage, n);
    err->stage[n] = '\0';
  }
  memcpy(err->msg, msg, strlen(msg) + 1);
  return code;
}
