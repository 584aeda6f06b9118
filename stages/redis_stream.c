/*
 * redis_stream — writes each record as an entry of a Redis stream (XADD, optionally trimmed with
 * MAXLEN ~), one pipelined round trip per input batch.
 *
 * A map record becomes the entry's fields (strings as they are, other values as JSON); any other
 * record is one field, `field`. The batch stays parked (its records' ack tokens held) until the
 * server confirmed every XADD, so an upstream redis_stream_in acknowledges its entries only once
 * they are written here.
 *
 * `timeout` bounds each read and write of a try (the socket timeout): a server that does not
 * answer in time fails the try with "timeout after <d>", like a lost connection.
 * A lost connection fails the try of the batch: with `retry` the stage waits (an engine timer)
 * and sends again the commands without a reply, and `circuit_breaker` stops trying a
 * failing server, both as on Lua function stages (policy.h). Without `retry` it retries forever
 * (100 ms doubling to 5 s), so a restarted server loses nothing; a command the server rejects
 * (wrong type, ...) fails its record alone (on_error). A reply lost with the connection makes
 * the retry write that entry twice: at-least-once (docs/scaling.md).
 *
 * Threading: the hiredis calls run on the stage's I/O thread (redis.h); process() hands it the
 * batch's commands as a job (own copies of the bytes, so an abort can free the batch), and the
 * thread signals completion through an eventfd the engine's loop watches.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "alloc.h"
#include "policy.h"
#include "redis.h"

enum { TOK_DONE = 1, TOK_RETRY = 2 };

typedef struct job {
  sl_buf data;        /* every argument's bytes, back to back */
  size_t *off, *len;  /* per argument */
  size_t nargs, capargs;
  int *first;         /* per command: its first argument */
  int *argc;          /* per command */
  uint32_t *idx;      /* per command: its record's index in the batch */
  int n, cap;         /* commands */
  /* results, written by the I/O thread */
  bool *done;         /* per command: its reply came (not a passing error): not sent again */
  char **errs;        /* per command: the server's error, or NULL */
  char io_err[768];   /* why the try failed ("" when it did not) */
} job;

typedef struct sink {
  char *url;            /* options */
  char *password_env;
  char *stream;
  int64_t maxlen;
  char *field;
  sl_policy_opts policy;
  sl_stage *st;
  sl_redis_addr addr;
  sl_policy pol;
  sl_breaker *cb;
  int efd;              /* eventfd: the thread finished a job */
  sl_redis_io io;
  job j;                /* the batch being written */
  bool queued;          /* under io.mu: j waits for the thread */
  redisContext *c;      /* the I/O thread's */
  int attempt;          /* try of j (1 = the first) */
  int64_t first_start, start, prev_wait;
  uint64_t rng;
} sink;

static const sl_option options[] = {
    SL_REDIS_OPTIONS(sink),
    {SL_OPT_STRING, "stream", NULL, offsetof(sink, stream), "the stream key to add entries to", NULL, SL_OPT_REQUIRED | SL_OPT_PRIMARY},
    {SL_OPT_INT, "maxlen", "0", offsetof(sink, maxlen), "trim the stream to about this many entries (MAXLEN ~); 0: never", NULL, 0},
    {SL_OPT_STRING, "field", "data", offsetof(sink, field), "the field that holds a record that is not a map", NULL, 0},
    SL_POLICY_OPTIONS(sink),
    SL_OPTIONS_END,
};

/* ---- building a job ---- */

static void job_arg(job *j, const void *p, size_t n) {
  if (j->nargs == j->capargs) {
    j->capargs = j->capargs ? j->capargs * 2 : 64;
    j->off = sl__xrealloc(j->off, j->capargs * sizeof *j->off);
    j->len = sl__xrealloc(j->len, j->capargs * sizeof *j->len);
  }
  j->off[j->nargs] = j->data.len;
  j->len[j->nargs] = n;
  j->nargs++;
  sl_buf_append(&j->data, p, n);
}

/* A field's value: strings as they are, integers as digits, the rest as JSON. */
static void job_value(job *j, const sl_value *v) {
  if (v->type == SL_TSTR) {
    job_arg(j, sl_str_data(v), sl_str_len(v));
    return;
  }
  sl_buf b;
  sl_buf_init(&b);
  if (v->type == SL_TINT) sl_buf_printf(&b, "%lld", (long long)v->u.i);
  else sl_value_to_json(v, &b);
  job_arg(j, b.data ? b.data : "", b.len);
  sl_buf_close(&b);
}

static void job_reset(job *j) {
  for (int k = 0; k < j->n; k++) sl__free(j->errs[k]);
  j->data.len = 0;
  j->nargs = 0;
  j->n = 0;
  j->io_err[0] = 0;
}

static void job_free(job *j) {
  job_reset(j);
  sl_buf_close(&j->data);
  sl__free(j->off);
  sl__free(j->len);
  sl__free(j->first);
  sl__free(j->argc);
  sl__free(j->idx);
  sl__free(j->errs);
  sl__free(j->done);
}

/* Adds the XADD of record i; false when the record cannot be an entry (it failed). */
static bool job_add(sink *s, const sl_value *rec, uint32_t i, sl_emitter *em) {
  job *j = &s->j;
  if (rec->type == SL_TMAP && sl_map_len(rec) == 0) {
    sl_emit_error(em, i, "an empty map cannot be a stream entry (it needs at least one field)");
    return false;
  }
  if (j->n == j->cap) {
    j->cap = j->cap ? j->cap * 2 : 64;
    j->first = sl__xrealloc(j->first, (size_t)j->cap * sizeof *j->first);
    j->argc = sl__xrealloc(j->argc, (size_t)j->cap * sizeof *j->argc);
    j->idx = sl__xrealloc(j->idx, (size_t)j->cap * sizeof *j->idx);
    j->errs = sl__xrealloc(j->errs, (size_t)j->cap * sizeof *j->errs);
    j->done = sl__xrealloc(j->done, (size_t)j->cap * sizeof *j->done);
  }
  size_t first = j->nargs;
  job_arg(j, "XADD", 4);
  job_arg(j, s->stream, strlen(s->stream));
  if (s->maxlen > 0) {
    char ml[24];
    int n = snprintf(ml, sizeof ml, "%lld", (long long)s->maxlen);
    job_arg(j, "MAXLEN", 6);
    job_arg(j, "~", 1);
    job_arg(j, ml, (size_t)n);
  }
  job_arg(j, "*", 1);
  if (rec->type == SL_TMAP) {
    for (size_t k = 0; k < sl_map_len(rec); k++) {
      const sl_value *key = sl_map_key(rec, k);
      job_arg(j, sl_str_data(key), sl_str_len(key));
      job_value(j, sl_map_val(rec, k));
    }
  } else {
    job_arg(j, s->field, strlen(s->field));
    job_value(j, rec);
  }
  j->first[j->n] = (int)first;
  j->argc[j->n] = (int)(j->nargs - first);
  j->idx[j->n] = i;
  j->errs[j->n] = NULL;
  j->done[j->n] = false;
  j->n++;
  return true;
}

/* ---- the I/O thread ---- */

/* Sends the job's commands that are not done, pipelined, and reads their replies. A passing
 * error (the server is loading, ...) fails the try like a lost connection. */
static void run_job(sink *s, job *j) {
  char msg[400];
  if (!s->c) {
    s->c = sl_redis_connect(&s->addr, s->pol.timeout, msg, sizeof msg);
    if (!s->c) {
      snprintf(j->io_err, sizeof j->io_err, "%s", msg);
      return;
    }
  }
  const char *argv[512];
  for (int k = 0; k < j->n; k++) {
    if (j->done[k]) continue;
    int argc = j->argc[k];
    const char **av = argc <= 512 ? argv : sl__xmalloc((size_t)argc * sizeof *av);
    for (int a = 0; a < argc; a++) av[a] = j->data.data + j->off[j->first[k] + a];
    redisAppendCommandArgv(s->c, argc, av, j->len + j->first[k]);
    if (av != argv) sl__free((void *)av);
  }
  for (int k = 0; k < j->n; k++) {
    if (j->done[k]) continue;
    redisReply *r;
    int rc = sl_redis_reply(s->c, &r, msg, sizeof msg);
    if (rc == SL_EIO) {
      if (s->pol.timeout > 0 && strstr(msg, "temporarily unavailable")) { /* the socket timeout: `timeout` */
        char *t = sl_policy_timeout_msg(s->pol.timeout);
        snprintf(msg, sizeof msg, "%s", t);
        sl__free(t);
      }
      snprintf(j->io_err, sizeof j->io_err, "redis %s:%d: %s", s->addr.host, s->addr.port, msg);
      redisFree(s->c);
      s->c = NULL;
      return;
    }
    if (rc == SL_EFAILED && sl_redis_transient(msg)) {
      snprintf(j->io_err, sizeof j->io_err, "redis %s:%d: %s", s->addr.host, s->addr.port, msg);
      continue;
    }
    if (rc == SL_EFAILED) j->errs[k] = sl__xstrdup(msg);
    else freeReplyObject(r);
    j->done[k] = true;
  }
}

static void *io_main(void *arg) {
  sink *s = arg;
  pthread_mutex_lock(&s->io.mu);
  for (;;) {
    while (!s->queued && !s->io.stop) sl_redis_io_wait(&s->io, -1);
    if (s->io.stop) break;
    pthread_mutex_unlock(&s->io.mu);
    run_job(s, &s->j);
    pthread_mutex_lock(&s->io.mu);
    s->queued = false;
    uint64_t one = 1;
    (void)!write(s->efd, &one, sizeof one); /* cannot fail: the counter is far from full */
  }
  pthread_mutex_unlock(&s->io.mu);
  return NULL;
}

/* ---- the stage ---- */

static int submit(sink *s) {
  s->start = sl_stage_now(s->st);
  if (s->attempt == 1) s->first_start = s->start;
  if (sl_stage_watch_fd(s->st, s->efd, false, TOK_DONE) != 0) return sl_stage_fail(s->st, "cannot watch the I/O thread");
  pthread_mutex_lock(&s->io.mu);
  s->j.io_err[0] = 0;
  s->queued = true;
  pthread_cond_signal(&s->io.cv);
  pthread_mutex_unlock(&s->io.mu);
  return SL_PARKED;
}

static int process(void *ctx, sl_batch *in, sl_emitter *em) {
  sink *s = ctx;
  if (!s->io.started && sl_redis_io_start(&s->io, io_main, s) != 0) return sl_stage_fail(s->st, "cannot start the I/O thread");
  if (s->cb && !sl_breaker_allow(s->cb, sl_stage_now(s->st), s->st)) {
    for (uint32_t i = 0; i < in->len; i++) sl_emit_error(em, i, "circuit open");
    return 0;
  }
  job_reset(&s->j);
  for (uint32_t i = 0; i < in->len; i++) job_add(s, &in->recs[i], i, em);
  if (!s->j.n) return 0;
  s->attempt = 1;
  s->prev_wait = 0;
  return submit(s);
}

/* The default without `retry`: forever, 100 ms doubling to 5 s, with jitter. */
static const sl_retry forever = {.attempts = INT64_MAX, .backoff = SL_BACKOFF_EXPONENTIAL, .initial = 100000000,
                                 .multiplier = 2, .max = 5000000000LL, .jitter = SL_JITTER_EQUAL};

static int event(void *ctx, uint64_t token, sl_emitter *em) {
  sink *s = ctx;
  if (token == TOK_RETRY) {
    if (!s->cb || sl_breaker_allow(s->cb, sl_stage_now(s->st), s->st)) return submit(s);
    for (int k = 0; k < s->j.n; k++) /* the breaker opened meanwhile: fail fast, no more tries */
      if (!s->j.done[k]) sl_emit_error_attempts(em, s->j.idx[k], s->attempt - 1, "circuit open");
    return 0;
  }
  uint64_t v;
  if (read(s->efd, &v, sizeof v) < 0) /* not done yet: watch again */
    return sl_stage_watch_fd(s->st, s->efd, false, TOK_DONE) == 0 ? SL_PARKED : sl_stage_fail(s->st, "cannot watch the I/O thread");
  pthread_mutex_lock(&s->io.mu); /* the thread's writes to j are visible after this */
  pthread_mutex_unlock(&s->io.mu);
  job *j = &s->j;
  int64_t now = sl_stage_now(s->st);
  if (s->cb) sl_breaker_record(s->cb, s->start, now, j->io_err[0] != 0, s->st);
  if (j->io_err[0]) {
    const sl_retry *r = s->pol.has_retry ? &s->pol.retry : &forever;
    if (s->attempt < r->attempts) {
      int64_t wait = sl_retry_delay(r, s->attempt, s->prev_wait, &s->rng);
      if (r->max_elapsed <= 0 || now + wait - s->first_start <= r->max_elapsed) {
        if (s->attempt == 1 || s->attempt % 20 == 0)
          sl_stage_log(s->st, SL_LOG_WARN, "%s; retrying (try %d)", j->io_err, s->attempt + 1);
        s->prev_wait = wait;
        s->attempt++;
        sl_policy_count_retry(s->st);
        if (sl_stage_timer(s->st, now + wait, TOK_RETRY) < 0) return sl_stage_fail(s->st, "no timer for a retry");
        return SL_PARKED;
      }
    }
    for (int k = 0; k < j->n; k++)
      if (!j->done[k]) sl_emit_error_attempts(em, j->idx[k], s->attempt, "%s", j->io_err);
  }
  for (int k = 0; k < j->n; k++)
    if (j->done[k] && j->errs[k]) sl_emit_error(em, j->idx[k], "XADD %s: %s", s->stream, j->errs[k]);
  return 0;
}

static int check(void *ctx, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  sink *s = ctx;
  char msg[600];
  sl_redis_addr a;
  int rc = sl_redis_addr_parse(s->url, NULL, &a, msg, sizeof msg);
  sl_redis_addr_free(&a);
  if (rc) return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': %s", where, stage, msg);
  if (!*s->stream) return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': stream must not be empty", where, stage);
  if (s->maxlen < 0) return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': maxlen must be 0 (no trimming) or positive", where, stage);
  sl_policy pol;
  rc = sl_policy_parse(&s->policy, &pol, where, stage, err);
  if (rc == 0 && pol.has_retry && pol.retry.retry_on)
    rc = sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': retry_on is not supported here: a redis_stream sink retries lost connections only", where, stage);
  sl_policy_free(&pol);
  return rc;
}

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  sink *s = ctx;
  s->st = st;
  s->efd = -1;
  sl_redis_io_init(&s->io);
  sl_buf_init(&s->j.data);
  char msg[600];
  if (sl_redis_addr_parse(s->url, s->password_env, &s->addr, msg, sizeof msg) != 0)
    return sl_error_set(err, SL_ECONFIG, NULL, "%s", msg);
  int rc = sl_policy_parse(&s->policy, &s->pol, "", sl_stage_name(st), err);
  if (rc) return rc;
  if (s->pol.has_breaker) s->cb = sl_breaker_of(st, &s->pol.cb);
  s->rng = (uint64_t)(uintptr_t)s ^ 0x9E3779B97F4A7C15ULL;
  s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->efd < 0) return sl_error_set(err, SL_EIO, NULL, "cannot make an eventfd");
  return 0;
}

static void destroy(void *ctx) {
  sink *s = ctx;
  if (!s->st) return;
  sl_redis_io_close(&s->io);
  if (s->c) redisFree(s->c);
  if (s->efd >= 0) close(s->efd);
  job_free(&s->j);
  sl_policy_free(&s->pol);
  sl_redis_addr_free(&s->addr);
}

const sl_stage_kind sl_stage_redis_stream = {
    .abi = SL_STAGE_ABI,
    .name = "redis_stream",
    .doc = "writes records as entries of a Redis stream (XADD, pipelined per batch), with retry and circuit breaker",
    .options = options,
    .ctx_size = sizeof(sink),
    .flags = SL_STAGE_SINK,
    .init = init,
    .process = process,
    .event = event,
    .destroy = destroy,
    .check = check,
};
