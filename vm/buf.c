/* buf.c — sl_buf: a growable, NUL-terminated byte buffer (sluice.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "sluice.h"
#include "value.h"

void sl_buf_init(sl_buf *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void sl_buf_close(sl_buf *b) {
  sl__free(b->data);
  sl_buf_init(b);
}

/* Makes room for n more bytes and the NUL, growing geometrically so appends are amortized
 * O(1). Buffers hold data-sized text (JSON of records), so growth uses the try allocator. */
int sl__buf_reserve(sl_buf *b, size_t n) {
  if (b->cap - b->len > n) return SL_OK;
  if (n >= SIZE_MAX - b->len) return SL_ENOMEM;
  size_t need = b->len + n + 1;
  size_t cap = b->cap < 64 ? 64 : b->cap;
  while (cap < need) cap = cap <= SIZE_MAX / 2 ? cap * 2 : need;
  char *p = sl__tryrealloc(b->data, cap);
  if (!p) return SL_ENOMEM;
  b->data = p;
  b->cap = cap;
  return SL_OK;
}

int sl_buf_append(sl_buf *b, const void *p, size_t n) {
  int rc = sl__buf_reserve(b, n);
  if (rc) return rc;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return SL_OK;
}

/* Formats straight into the free space; only when that is too small is the text formatted a
 * second time after growing. */
int sl_buf_printf(sl_buf *b, const char *fmt, ...) {
  va_list ap, ap2;
  int rc = SL_OK;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  size_t room = b->cap - b->len;
  int r = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
  if (r < 0) {
    rc = SL_EINVAL;
    goto done;
  }
  if ((size_t)r >= room) {
    if ((rc = sl__buf_reserve(b, (size_t)r))) goto done;
    vsnprintf(b->data + b->len, (size_t)r + 1, fmt, ap2);
  }
  b->len += (size_t)r;
done:
  if (b->data && b->len < b->cap) b->data[b->len] = '\0';
  va_end(ap2);
  va_end(ap);
  return rc;
}
