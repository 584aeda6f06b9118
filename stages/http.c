/*
 * http.c — the `http` sink: sends each record (or each chunk of records, from `chunks`) as the
 * body of an HTTP request on the engine's HTTP client (vm/httpc.h), up to `concurrency` requests
 * in flight, with the function stages' timeout, retry and circuit breaker options (vm/policy.h).
 * A request succeeds with a status below 400. Connection errors, timeouts, 429 and 5xx are
 * retried; other 4xx go to the dead letter at once, unless retry_on(r, e) decides (e: {status,
 * kind, message}). A record is acknowledged when its request succeeded, or when it failed for
 * good (then it is a dead letter). Bodies follow `codec` (vm/codec.h): json writes the record
 * as JSON (a chunk, an array record from `chunks`, is a JSON array); jsonl, lines and csv write
 * one line per record, so a chunk becomes one line per element (csv: an array of arrays or maps
 * is a chunk, an array of scalars one row; with `header` every body starts with the header);
 * raw and frames write string records, a chunk's strings one after the other. The Content-Type
 * follows the codec unless `headers` names one.
 *
 * Slots: a request in flight or waiting to be retried holds one of `concurrency` slots; records
 * beyond that wait in a backlog, and input pauses while the backlog is not empty. Tokens name a
 * slot and its generation (a slot reused later ignores the stale token of its previous record).
 */
#include <lauxlib.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "codec.h"
#include "httpc.h"
#include "lua.h"
#include "luafn.h"
#include "pipeline.h"
#include "policy.h"

enum { S_FREE, S_RUNNING, S_BACKOFF };
enum { TAG_DONE = 1, TAG_RETRY = 2 };

typedef struct slot {
  sl_value rec;
  sl_ack *ack;
  sl_httpc_req *req;   /* S_RUNNING */
  int state;
  uint32_t gen;
  int attempt;         /* 1 = first try */
  int64_t first_start, start, prev_wait;
} slot;

typedef struct pend {
  sl_value rec;
  sl_ack *ack;
} pend;

typedef struct ctx {
  char *url;             /* option */
  char *method;          /* option */
  sl_value headers;      /* option: map of name -> value */
  sl_codec_opts codec;   /* options: codec, header, columns, delimiter */
  int64_t concurrency;   /* option */
  char *ca_file;         /* option */
  sl_policy_opts policy; /* options: timeout, retry, circuit_breaker */
  sl_stage *st;
  sl_policy pol;
  bool ready;
  sl_breaker *cb;
  sl_lua *lua;           /* for retry_on */
  int retry_on;          /* registry ref, or LUA_NOREF */
  const char **lines;    /* request headers as "Name: value" */
  size_t nlines;
  slot *slots;
  int64_t busy;
  pend *backlog;
  size_t bhead, blen, bcap;
  uint64_t rng;
  uint64_t bad_utf8;     /* strings written with U+FFFD, over all bodies */
  uint64_t warned;
} ctx;

static const sl_option options[] = {
    {SL_OPT_STRING, "url", NULL, offsetof(ctx, url), "where to send the records (http:// or https://; HTTPS is verified)", NULL, SL_OPT_REQUIRED | SL_OPT_PRIMARY},
    {SL_OPT_STRING, "method", "POST", offsetof(ctx, method), "HTTP method of the requests", NULL, 0},
    {SL_OPT_VALUE, "headers", NULL, offsetof(ctx, headers), "request headers, a map of name to value (Content-Type defaults to the codec's)", NULL, 0},
    SL_CODEC_OPTIONS(ctx, codec, "json",
                     "the body: json (the record; a chunk as a JSON array), jsonl, lines or csv (a line per record of a chunk), raw or frames (strings)", 0),
    {SL_OPT_INT, "concurrency", "16", offsetof(ctx, concurrency), "requests in flight at most", NULL, 0},
    {SL_OPT_STRING, "ca_file", NULL, offsetof(ctx, ca_file), "extra CA certificates (PEM) to verify the server with", NULL, 0},
    SL_POLICY_OPTIONS(ctx),
    SL_OPTIONS_END,
};

static uint64_t token(ctx *x, size_t i, int tag) {
  return ((((uint64_t)x->slots[i].gen << 32) | i) << 3) | (uint64_t)tag;
}

static int init(void *c, sl_stage *st, sl_error_t *err) {
  ctx *x = c;
  x->st = st;
  if (sl_codec_check(&x->codec, false, err) != 0) return SL_ECONFIG;
  x->retry_on = LUA_NOREF;
  if (x->concurrency < 1) x->concurrency = 1;
  x->slots = sl__xcalloc((size_t)x->concurrency, sizeof *x->slots);
  x->rng = (uint64_t)(uintptr_t)x ^ 0x9E3779B97F4A7C15ull;
  return 0;
}

/* The Content-Type header of a codec's bodies. */
static const char *content_type(int codec) {
  switch (codec) {
  case SL_CODEC_JSONL: return "Content-Type: application/x-ndjson";
  case SL_CODEC_LINES: return "Content-Type: text/plain; charset=utf-8";
  case SL_CODEC_CSV: return "Content-Type: text/csv; charset=utf-8";
  case SL_CODEC_RAW:
  case SL_CODEC_FRAMES: return "Content-Type: application/octet-stream";
  default: return "Content-Type: application/json";
  }
}

/* Resolves the policy, the breaker, retry_on and the header lines on first use. */
static int ready(ctx *x) {
  if (x->ready) return 0;
  sl_error_t err;
  sl_error_init(&err);
  const char *where = x->st->node->where, *name = x->st->node->name;
  if (sl_policy_parse(&x->policy, &x->pol, where, name, &err) != 0) return sl_stage_fail(x->st, "%s", err.msg);
  if (x->pol.has_breaker) x->cb = sl_breaker_get(x->st->p, name, &x->pol.cb);
  if (x->pol.has_retry && x->pol.retry.retry_on) {
    x->lua = sl_lua_get(x->st, &err);
    if (!x->lua || sl_lua_fn(x->lua, x->pol.retry.retry_on, where, name, &x->retry_on, &err) != 0)
      return sl_stage_fail(x->st, "%s", err.msg);
  }
  size_t n = x->headers.type == SL_TMAP ? sl_map_len(&x->headers) : 0;
  x->lines = sl__xcalloc(n + 1, sizeof *x->lines);
  bool ctype = false;
  for (size_t i = 0; i < n; i++) {
    const sl_value *k = sl_map_key(&x->headers, i), *v = sl_map_val(&x->headers, i);
    sl_buf b;
    sl_buf_init(&b);
    if (v->type == SL_TSTR) sl_buf_printf(&b, "%s: %s", sl_str_data(k), sl_str_data(v));
    else sl_buf_printf(&b, "%s: ", sl_str_data(k)), sl_value_to_json(v, &b);
    x->lines[x->nlines++] = b.data; /* owned */
    if (strcasecmp(sl_str_data(k), "content-type") == 0) ctype = true;
  }
  if (!ctype) x->lines[x->nlines++] = sl__xstrdup(content_type(x->codec.codec));
  x->ready = true;
  return 0;
}

/* Whether rec is a chunk of records (one line, row or piece each) rather than one record. */
static bool is_chunk(int codec, const sl_value *rec) {
  if (rec->type != SL_TARRAY || codec == SL_CODEC_JSON) return false;
  if (codec != SL_CODEC_CSV) return true;
  const sl_value *first = sl_array_len(rec) ? sl_array_get(rec, 0) : NULL; /* a row is an array of scalars */
  return !first || first->type == SL_TARRAY || first->type == SL_TMAP;
}

/* The body of a record, encoded with the codec (a fresh encoder: each body is a document of its
 * own, a csv header included). errors: data (msg: the codec cannot write the record), nomem */
static int body_of(ctx *x, const sl_value *rec, sl_buf *b, char *msg, size_t msglen) {
  sl_encoder enc;
  sl_encoder_init(&enc, &x->codec, NULL); /* checked by init */
  bool term = x->codec.codec != SL_CODEC_JSON;
  int rc = 0;
  if (is_chunk(x->codec.codec, rec)) {
    for (size_t i = 0; i < sl_array_len(rec) && rc == 0; i++) rc = sl_encoder_put(&enc, b, sl_array_get(rec, i), term, msg, msglen);
  } else {
    rc = sl_encoder_put(&enc, b, rec, term, msg, msglen);
  }
  if (rc == SL_ENOMEM) snprintf(msg, msglen, "out of memory encoding the body");
  x->bad_utf8 += enc.bad_utf8;
  sl_encoder_close(&enc);
  return rc;
}

static void release(ctx *x, size_t i) {
  slot *s = &x->slots[i];
  sl_httpc_req_free(s->req);
  *s = (slot){.gen = s->gen + 1, .state = S_FREE};
  x->busy--;
}

/* The record of slot i failed for good: a dead letter. */
static void fail_slot(ctx *x, size_t i, sl_emitter *em, const char *msg) {
  slot *s = &x->slots[i];
  sl_emit_error_record_attempts(em, s->rec, s->ack, s->attempt, "%s", msg);
  s->rec = sl_nil();
  s->ack = NULL;
  release(x, i);
}

/* Sends the record of slot i (try s->attempt). */
static void send(ctx *x, size_t i, sl_emitter *em) {
  slot *s = &x->slots[i];
  int64_t now = sl_stage_now(x->st);
  if (s->attempt == 1) s->first_start = now;
  s->start = now;
  if (x->cb && !sl_breaker_allow(x->cb, now, x->st)) return fail_slot(x, i, em, "circuit open");
  sl_buf b;
  sl_buf_init(&b);
  char msg[256];
  if (body_of(x, &s->rec, &b, msg, sizeof msg) != 0) {
    sl_buf_close(&b);
    return fail_slot(x, i, em, msg);
  }
  sl_httpc_opts o = {.method = x->method, .url = x->url, .headers = x->lines, .nheaders = x->nlines,
                     .body = b.data ? b.data : "", .body_len = b.len, .timeout = x->pol.timeout, .ca_file = x->ca_file};
  sl_httpc *h = sl__engine_httpc(x->st->p->e);
  s->req = h ? sl_httpc_req_new(h, &o, msg, sizeof msg) : NULL;
  sl_buf_close(&b);
  if (!h) snprintf(msg, sizeof msg, "the HTTP client could not start");
  if (!s->req) return fail_slot(x, i, em, msg);
  s->state = S_RUNNING;
  if (sl_httpc_start(s->req, x->st, sl__stage_post, x->st, token(x, i, TAG_DONE)) != 0) fail_slot(x, i, em, "could not start the request");
}

/* Moves backlog records into free slots and sends them. A record that fails at once (circuit
 * open, a body the codec cannot write) frees its slot again: the same slot takes the next one. */
static void start(ctx *x, sl_emitter *em) {
  for (size_t i = 0; i < (size_t)x->concurrency && x->blen > 0;) {
    if (x->slots[i].state != S_FREE) {
      i++;
      continue;
    }
    pend p = x->backlog[x->bhead];
    x->bhead = (x->bhead + 1) % x->bcap;
    x->blen--;
    slot *s = &x->slots[i];
    s->rec = p.rec;
    s->ack = p.ack;
    s->attempt = 1;
    s->prev_wait = 0;
    x->busy++;
    send(x, i, em);
  }
  sl_stage_pause_input(x->st, x->blen > 0 || x->busy >= x->concurrency);
}

static int process(void *c, sl_batch *in, sl_emitter *em) {
  ctx *x = c;
  int rc = ready(x);
  if (rc) return rc;
  if (x->blen + in->len > x->bcap) { /* grow the ring, keeping its order */
    size_t ncap = x->bcap ? x->bcap : 64;
    while (ncap < x->blen + in->len) ncap *= 2;
    pend *nb = sl__xcalloc(ncap, sizeof *nb);
    for (size_t k = 0; k < x->blen; k++) nb[k] = x->backlog[(x->bhead + k) % x->bcap];
    sl__free(x->backlog);
    x->backlog = nb;
    x->bcap = ncap;
    x->bhead = 0;
  }
  for (uint32_t i = 0; i < in->len; i++) {
    x->backlog[(x->bhead + x->blen++) % x->bcap] = (pend){.ack = sl_batch_hold(in, i), .rec = sl_batch_take(in, i)};
  }
  start(x, em);
  return 0;
}

/* retry_on(r, e) with e = {status, kind, message}; false when it fails (logged). */
static bool ask_retry_on(ctx *x, const sl_value *rec, int kind, long status, const char *msg) {
  sl_lua_call *c = sl_lua_call_new(x->lua, x->st, x->retry_on);
  lua_State *co = c->co;
  sl_lua_push(co, rec);
  lua_createtable(co, 0, 3);
  if (status > 0) lua_pushinteger(co, status), lua_setfield(co, -2, "status");
  lua_pushstring(co, kind == SL_HTTPC_OK ? "status" : sl_httpc_kind_name(kind));
  lua_setfield(co, -2, "kind");
  lua_pushstring(co, msg);
  lua_setfield(co, -2, "message");
  return sl_luafn_retry_answer(x->st, c);
}

/* The request of slot i is done: acknowledge, retry later, or dead-letter. */
static void finished(ctx *x, size_t i, sl_emitter *em) {
  slot *s = &x->slots[i];
  long status;
  const char *why;
  int kind = sl_httpc_result(s->req, &status, &why);
  int64_t now = sl_stage_now(x->st);
  if (kind == SL_HTTPC_OK && status < 400) {
    if (x->cb) sl_breaker_record(x->cb, s->start, now, false, x->st);
    sl_ack_release(s->ack, false);
    s->ack = NULL;
    sl_value_free(s->rec);
    s->rec = sl_nil();
    release(x, i);
    return;
  }
  char msg[512];
  if (kind == SL_HTTPC_OK) snprintf(msg, sizeof msg, "http: %s %s: status %ld", x->method, x->url, status);
  else snprintf(msg, sizeof msg, "http: %s %s: %s error: %s", x->method, x->url, sl_httpc_kind_name(kind), why);
  bool transient = (kind != SL_HTTPC_OK && kind != SL_HTTPC_URL) || status == 429 || status >= 500;
  if (x->cb) sl_breaker_record(x->cb, s->start, now, transient, x->st);
  sl_httpc_req_free(s->req);
  s->req = NULL;
  const sl_retry *r = &x->pol.retry;
  if (x->pol.has_retry && s->attempt < r->attempts) {
    int64_t wait = sl_retry_delay(r, s->attempt, s->prev_wait, &x->rng);
    bool in_time = r->max_elapsed <= 0 || now + wait - s->first_start <= r->max_elapsed;
    bool again = x->retry_on != LUA_NOREF ? ask_retry_on(x, &s->rec, kind, status, msg) : transient;
    if (in_time && again) {
      s->prev_wait = wait;
      s->attempt++;
      s->state = S_BACKOFF;
      sl_policy_count_retry(x->st);
      if (sl_stage_timer(x->st, now + wait, token(x, i, TAG_RETRY)) >= 0) return;
      snprintf(msg, sizeof msg, "no timer for a retry");
    }
  }
  fail_slot(x, i, em, msg);
}

static int event(void *c, uint64_t tok, sl_emitter *em) {
  ctx *x = c;
  int tag = (int)(tok & 7);
  size_t i = (size_t)((tok >> 3) & 0xffffffff);
  uint32_t gen = (uint32_t)(tok >> 35);
  if (i >= (size_t)x->concurrency || x->slots[i].gen != gen) return 0; /* stale */
  slot *s = &x->slots[i];
  if (tag == TAG_DONE && s->state == S_RUNNING) finished(x, i, em);
  else if (tag == TAG_RETRY && s->state == S_BACKOFF) send(x, i, em);
  start(x, em);
  return 0;
}

static int flush(void *c, sl_emitter *em) {
  ctx *x = c;
  (void)em;
  if (x->busy > 0 || x->blen > 0) return SL_PARKED;
  sl_encoder e = {.bad_utf8 = x->bad_utf8, .warned = x->warned};
  sl_encoder_report(&e, x->st);
  x->warned = e.warned;
  return 0;
}

static void destroy(void *c) {
  ctx *x = c;
  for (int64_t i = 0; x->slots && i < x->concurrency; i++) {
    slot *s = &x->slots[i];
    if (s->state == S_FREE) continue;
    sl_httpc_req_free(s->req);
    sl_value_free(s->rec);
    sl_ack_release(s->ack, true);
  }
  for (size_t k = 0; k < x->blen; k++) {
    pend *p = &x->backlog[(x->bhead + k) % x->bcap];
    sl_value_free(p->rec);
    sl_ack_release(p->ack, true);
  }
  for (size_t k = 0; k < x->nlines; k++) sl__free((void *)x->lines[k]);
  sl__free(x->lines);
  sl__free(x->backlog);
  sl__free(x->slots);
  sl_policy_free(&x->pol);
}

static int check(void *c, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  ctx *x = c;
  if (x->concurrency < 1 || x->concurrency > 100000)
    return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': concurrency must be from 1 to 100000 (got %lld)", where, stage,
                        (long long)x->concurrency);
  if (strncmp(x->url, "http://", 7) != 0 && strncmp(x->url, "https://", 8) != 0)
    return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': url must start with http:// or https:// (got '%s')", where, stage, x->url);
  if (x->codec.codec == SL_CODEC_AUTO)
    return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': codec auto is not for request bodies: choose json, jsonl, lines, csv, raw or frames",
                        where, stage);
  int rc = sl_codec_check_stage(&x->codec, false, stage, where, err);
  if (rc) return rc;
  if (x->headers.type != SL_TNIL && x->headers.type != SL_TMAP)
    return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': headers must be a map of name to value", where, stage);
  for (size_t i = 0; x->headers.type == SL_TMAP && i < sl_map_len(&x->headers); i++) {
    const sl_value *v = sl_map_val(&x->headers, i);
    if (v->type == SL_TMAP || v->type == SL_TARRAY || v->type == SL_TNIL)
      return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': header '%s' must be a string or a number", where, stage,
                          sl_str_data(sl_map_key(&x->headers, i)));
  }
  return sl_luafn_check_policy(&x->policy, p, stage, where, err);
}

const sl_stage_kind sl_stage_http = {
    .abi = SL_STAGE_ABI,
    .name = "http",
    .doc = "a sink: sends each record (or chunk) as an HTTP request, with retries, a circuit breaker and dead letters",
    .options = options,
    .ctx_size = sizeof(ctx),
    .flags = SL_STAGE_SINK,
    .init = init,
    .process = process,
    .flush = flush,
    .destroy = destroy,
    .event = event,
    .check = check,
};
