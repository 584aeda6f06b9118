/*
 * lz4_fuzz.c — libFuzzer target for the lz4 frame reader (make fuzz).
 *
 * The bytes are a file read through sl_reader (from a memfd): LZ4 frames are decompressed,
 * anything else passed through. Every read must end in data, the end, or an error with a
 * message; an input that is not an LZ4 frame must come back unchanged.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int fd = memfd_create("lz4-fuzz", 0);
  if (fd < 0) abort();
  if (size && write(fd, data, size) != (ssize_t)size) abort();
  lseek(fd, 0, SEEK_SET);
  sl_reader *r;
  sl_error_t err;
  sl_error_init(&err);
  if (sl_reader_from_fd(fd, "fuzz input", &r, &err) != 0) abort();
  char *out = malloc(1 << 16);
  size_t total = 0, cap = size ? (size_t)data[0] % 61 + 1 : 7; /* odd read sizes */
  bool same = true;
  for (;;) {
    long n = sl_reader_read(r, out, cap, &err);
    if (n == 0) break;
    if (n < 0) {
      if (!err.msg[0] || n == SL_EAGAIN) abort();
      same = false;
      break;
    }
    if ((size_t)n > cap) abort();
    if (total + (size_t)n > size || memcmp(out, data + total, (size_t)n) != 0) same = false;
    total += (size_t)n;
    if (total > ((size_t)64 << 20)) break; /* a frame may announce much; enough */
  }
  if (!sl_reader_lz4(r) && (!same || total != size)) {
    fprintf(stderr, "plain input changed by the reader\n");
    abort();
  }
  sl_reader_free(r);
  free(out);
  close(fd);
  return 0;
}
