/*
 * bio.h — the engine's blocking-I/O thread (sl_bio_ prefix).
 *
 * Reading or writing a regular file never waits for readiness, so the event loop cannot take
 * it off a worker: the call is the kernel copying bytes between the page cache and our buffers,
 * and that copy is CPU time on whichever thread makes the call. Made by a sink on a worker, it
 * is not overlapped with anything: a restore writes as many bytes as it decompresses, and the
 * write took a quarter of its worker's time. A stage hands such operations to an sl_bio_file
 * instead. They run in order on one thread per engine (started on first use) while the worker
 * computes the next batch. Only when the workers leave a CPU free, though: with a worker on
 * every CPU the thread would take turns with them and add its hand-offs, so there the
 * operations run at once, inline, on the caller's thread, through the same calls.
 *
 * Everything an operation needs goes with it: a write owns a buffer (the stage's sl_buf is
 * swapped for an empty one) and a reference to a string; a read owns the string it fills. The
 * I/O thread releases them when done; a write's emptied buffer comes back as the next one the
 * stage swaps in, so the same warm memory goes round.
 *
 * Flow control is the stage's. sl_bio_wait_below says whether the bytes still queued are at most
 * a level, and if not, has the I/O thread post the stage's token (its event callback) when they
 * are: a sink parks its batch (SL_PARKED) until then. Every finished read is posted. A failed
 * operation stops the file: the operations behind it are dropped, its token is posted, and
 * sl_bio_error reports the errno.
 *
 * While a file has operations queued or under way it holds the virtual clock (sl_loop_hold):
 * like network I/O, file I/O takes no virtual time, and a timer cannot fire "during" it.
 *
 * sl_bio_close cancels what was not started and waits for the operation under way: after it, no
 * post reaches the stage. Lock order: the engine's bio mutex -> the stage's mailbox.
 */
#ifndef SL_BIO_H
#define SL_BIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice.h"

typedef struct sl_bio sl_bio;
typedef struct sl_bio_file sl_bio_file;

/* The engine's I/O thread, made on first use (sl__engine_bio, vm/engine.c). NULL when it could
 * not start. */
sl_bio *sl__engine_bio(sl_engine *e);
sl_bio *sl_bio_new(void);
void sl_bio_free(sl_bio *b); /* joins the thread; every file must be closed before */

/* Operations on fd (not closed by this module) for stage instance st; finishes post `token`
 * (not inline: there every operation has finished when its call returns). */
sl_bio_file *sl_bio_open(sl_stage *st, int fd, uint64_t token);
/* Cancels what is queued, waits for the operation under way, frees f. NULL is fine. */
void sl_bio_close(sl_bio_file *f);

/* Queues a write of buf's bytes, then of string `tail` (NULL: none; a reference is taken).
 * buf is taken over: it is left empty (with a spare buffer's capacity when one came back).
 * Cannot fail (an operation is a small fixed-size allocation: sl__xmalloc's rule); a failed
 * write shows later, in sl_bio_error. */
void sl_bio_write(sl_bio_file *f, sl_buf *buf, const sl_value *tail);
/* Queues a read of up to `want` bytes into dst, the bytes of string `into` (taken; a heap string,
 * whose bytes stay put when the value moves), at `offset`, or at the file's position when
 * offset < 0. A read stops short only at the end of the file (or on an error). Cannot fail;
 * the read's own error comes with it from sl_bio_take_read. */
void sl_bio_read(sl_bio_file *f, sl_value into, char *dst, size_t want, int64_t offset);
/* The oldest finished read: true and *into (owned), *got bytes, *err (errno, 0 ok); false when
 * none has finished. */
bool sl_bio_take_read(sl_bio_file *f, sl_value *into, size_t *got, int *err);
/* Reads queued or under way (finished ones not yet taken count too). */
size_t sl_bio_reads(sl_bio_file *f);

/* True when at most `level` bytes of writes are queued or under way; otherwise the token is
 * posted once when that becomes true (or an operation fails), and false is returned. */
bool sl_bio_wait_below(sl_bio_file *f, size_t level);
/* errno of the first failed write or read, or 0. */
int sl_bio_error(sl_bio_file *f);

#endif
