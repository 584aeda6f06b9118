/*
 * reader.h — the byte reader under every file source (sl_reader_ prefix; for stages).
 *
 * A reader opens a path or standard input ("-") and hands out its content. An input that
 * starts with an LZ4 frame (by its magic number, whatever the file is called) is decompressed
 * on the fly with liblz4's streaming LZ4F API; concatenated frames are read one after another,
 * as the lz4 tool writes them. A corrupt or truncated frame is an error naming the input and
 * the byte offset in the compressed input where it was found.
 *
 * Pipes and terminals are never waited on: a read that would wait returns SL_EAGAIN, and the
 * caller watches sl_reader_fd() (sl_stage_watch_fd) and reads again when it is readable. A
 * reader is used by one thread at a time.
 */
#ifndef SL_READER_H
#define SL_READER_H

#include <stdbool.h>
#include <stdint.h>

#include "sluice.h"

typedef struct sl_reader sl_reader;

/* Opens path ("-" or NULL: standard input, which is not closed by sl_reader_free).
 * errors: io (err names the file and the reason), nomem */
int sl_reader_open(const char *path, sl_reader **out, sl_error_t *err);
/* A reader over an open descriptor it does not own; name is used in messages. */
int sl_reader_from_fd(int fd, const char *name, sl_reader **out, sl_error_t *err);
void sl_reader_free(sl_reader *r);

/* Reads up to cap bytes of content into buf. Returns the number read (> 0), 0 at the end of
 * the input, SL_EAGAIN when a pipe has nothing now, or an error: io (read failed), data (a
 * corrupt or truncated LZ4 frame), nomem; err->msg says what and where. */
long sl_reader_read(sl_reader *r, char *buf, size_t cap, sl_error_t *err);

/* For sources that keep one buffer: moves buf[*start, *end) to the front, then reads into the
 * room after it. Returns 0 (*eof set at the end of the input), SL_PARKED (nothing now: the
 * descriptor is watched, so st runs again when it is readable) or SL_EFAILED (st failed with a
 * message naming the input). */
int sl_reader_fill(sl_reader *r, sl_stage *st, char *buf, size_t *start, size_t *end, size_t cap, bool *eof);

/* The descriptor to watch after SL_EAGAIN. */
int sl_reader_fd(const sl_reader *r);
/* The input's name for messages: "'path'" or "standard input". */
const char *sl_reader_name(const sl_reader *r);
/* True once the input was found to be LZ4-compressed (known after the first read). */
bool sl_reader_lz4(const sl_reader *r);
/* True when the input is a regular file (reads never wait; pread works). */
bool sl_reader_regular(const sl_reader *r);
/* True when the 4 bytes at p start an LZ4 frame or a skippable frame. */
bool sl_lz4_magic(const unsigned char *p);

#endif
