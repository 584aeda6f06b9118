/* http_in — an HTTP ingestion endpoint: clients POST records (JSON lines, a JSON array or plain
 * lines) and hear back only once the records are in the pipeline (ack: accepted) or reached
 * their sinks (ack: end_to_end). The `http` kind is the client's sink; this is its source.
 *
 * Threads. libmicrohttpd runs the server: a listening thread and one thread per connection
 * (at most max_connections). A connection thread reads and parses the body, queues the request
 * here and waits on `cv`; it is the only thread that ever blocks, and never an engine worker.
 * The source's produce() (on a worker) moves queued records into the pipeline; a request is
 * answered 200 when its last record was emitted, or, with end_to_end, when the ack token its
 * records carry completes (acked(), on the source's task). Everything shared is under `mu`;
 * produce and acked hold it only to move records and flip states (no waiting under it).
 *
 * Bounds. A request is admitted only while the records held for clients (queued, or emitted and
 * not yet acknowledged with end_to_end) stay within max_pending — otherwise 429 with
 * Retry-After, and nothing of it enters the pipeline; a request alone may exceed max_pending so
 * that a big batch is not refused forever. Bodies are capped by max_body (413, checked against
 * Content-Length before the body is read), connections by max_connections. Memory therefore stays
 * within about max_pending records plus max_connections bodies whatever clients send.
 *
 * End. With `count`, the stream ends once that many records were emitted. Otherwise it runs
 * until the pipeline stops: requests not yet (fully) in the pipeline get 503, and the server
 * stops accepting. destroy() answers whoever still waits (503), lets responses go out, then
 * stops the server. */
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sluice.h"

#define POLL_NS (50 * 1000000L)  /* how often a waiting handler looks whether the pipeline stops */
#define LINGER_NS (2000000000LL) /* how long destroy lets answered requests finish sending */

enum { FMT_AUTO, FMT_JSONL, FMT_JSON, FMT_LINES };
enum { ACK_ACCEPTED, ACK_END_TO_END };

/* One POST being ingested, from its first byte to its answer. */
typedef struct req {
  sl_buf body;        /* the body read so far */
  bool too_large;     /* the body passed max_body: read on, keep nothing, answer 413 */
  sl_value *recs;     /* parsed records; recs[next..n) still to emit */
  uint32_t n, next;
  uint64_t id;        /* the ack token's id (end_to_end) */
  sl_ack *ack;        /* the token its records carry, held until all are emitted */
  int status;         /* 0 while waiting; then the HTTP status to answer */
  char why[1200];     /* the reason given with a non-200 status */
  bool queued;        /* in the emit queue */
  bool waiting_ack;   /* emitted, its token not back yet (end_to_end) */
  struct req *qnext;  /* emit queue / list of requests waiting for their ack */
} req;

typedef struct http_in {
  char *host;          /* option */
  int64_t port;        /* option */
  int format;          /* option: FMT_* */
  int ack;             /* option: ACK_* */
  int64_t max_pending; /* option: records */
  int64_t max_body;    /* option: bytes */
  int64_t max_conns;   /* option */
  int64_t count;       /* option: records, then end of stream (0: none) */
  sl_stage *st;
  struct MHD_Daemon *d;
  pthread_mutex_t mu;
  pthread_cond_t cv;   /* a request's status was set, or closing */
  bool mu_ready;
  req *head, *tail;    /* requests whose records wait to be emitted, oldest first */
  req *acking;         /* requests waiting for their token (end_to_end) */
  int64_t pending;     /* records held for clients (see Bounds) */
  int64_t admitted;    /* records taken in all (for count) */
  int64_t emitted;     /* records emitted */
  uint64_t next_id;
  int active;          /* requests begun and not completed by the server */
  bool closing;        /* destroy runs: answer everyone 503 */
} http_in;

static const sl_option options[] = {
    {SL_OPT_INT, "port", NULL, offsetof(http_in, port), "the TCP port to listen on", NULL, SL_OPT_PRIMARY | SL_OPT_REQUIRED},
    {SL_OPT_STRING, "host", "127.0.0.1", offsetof(http_in, host), "the address to listen on (0.0.0.0 or :: for every interface)", NULL, 0},
    {SL_OPT_ENUM, "format", "auto", offsetof(http_in, format), "the body: auto (by Content-Type, else by its first character), jsonl (a JSON value per line), json (a value, or an array of records), lines (a string per line)", "auto|jsonl|json|lines", 0},
    {SL_OPT_ENUM, "ack", "accepted", offsetof(http_in, ack), "when to answer 200: accepted (the records are in the pipeline) or end_to_end (they reached their sinks)", "accepted|end_to_end", 0},
    {SL_OPT_INT, "max_pending", "10000", offsetof(http_in, max_pending), "records held for clients (not yet in the pipeline, or not yet acknowledged) beyond which a request gets 429", NULL, 0},
    {SL_OPT_SIZE, "max_body", "8MiB", offsetof(http_in, max_body), "the largest body accepted (413 above it)", NULL, 0},
    {SL_OPT_INT, "max_connections", "64", offsetof(http_in, max_conns), "connections served at once", NULL, 0},
    {SL_OPT_INT, "count", "0", offsetof(http_in, count), "end the stream after this many records (0: run until the pipeline is stopped)", NULL, 0},
    SL_OPTIONS_END,
};

/* ---- parsing bodies ------------------------------------------------------------------------ */

typedef struct parsed {
  sl_value *recs;
  uint32_t n, cap;
} parsed;

static void parsed_free(parsed *ps) {
  for (uint32_t i = 0; i < ps->n; i++) sl_value_free(ps->recs[i]);
  free(ps->recs);
  ps->recs = NULL;
  ps->n = ps->cap = 0;
}

/* consumes v */
static int parsed_add(parsed *ps, sl_value v) {
  if (ps->n == ps->cap) {
    uint32_t cap = ps->cap ? ps->cap * 2 : 64;
    sl_value *r = realloc(ps->recs, cap * sizeof *r);
    if (!r) {
      sl_value_free(v);
      return SL_ENOMEM;
    }
    ps->recs = r;
    ps->cap = cap;
  }
  ps->recs[ps->n++] = v;
  return 0;
}

/* The format of a body: the option, else the Content-Type, else its first character. */
static int body_format(int opt, const char *ctype, const char *body, size_t len) {
  if (opt != FMT_AUTO) return opt;
  if (ctype) {
    size_t n = strcspn(ctype, "; \t");
    if (n == 16 && strncasecmp(ctype, "application/json", n) == 0) return FMT_JSON;
    if ((n == 20 && strncasecmp(ctype, "application/x-ndjson", n) == 0) ||
        (n == 17 && strncasecmp(ctype, "application/jsonl", n) == 0) ||
        (n == 22 && strncasecmp(ctype, "application/json-lines", n) == 0))
      return FMT_JSONL;
    if (n == 10 && strncasecmp(ctype, "text/plain", n) == 0) return FMT_LINES;
  }
  size_t i = 0;
  while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n')) i++;
  if (i < len && body[i] == '[') return FMT_JSON;
  if (i < len && body[i] == '{') return FMT_JSONL;
  return FMT_LINES;
}

static bool blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return false;
  return true;
}

/* Parses a body into records. On a malformed body returns SL_EDATA with the reason in why (the
 * line and the JSON error); nothing is kept then. */
static int parse_body(int fmt, const char *body, size_t len, parsed *ps, char *why, size_t whylen) {
  sl_error_t err;
  sl_error_init(&err);
  int rc = 0;
  if (fmt == FMT_JSON) {
    sl_value v;
    rc = sl_value_from_json(body, len, &v, &err);
    if (rc) {
      snprintf(why, whylen, "invalid JSON: %s", err.msg);
      return rc;
    }
    if (sl_typeof(&v) == SL_TARRAY) {
      for (size_t i = 0; i < sl_array_len(&v) && rc == 0; i++) rc = parsed_add(ps, sl_value_ref(sl_array_get(&v, i)));
      sl_value_free(v);
    } else {
      rc = parsed_add(ps, v);
    }
  } else {
    size_t line = 0;
    for (size_t at = 0; at < len && rc == 0;) {
      const char *s = body + at;
      const char *nl = memchr(s, '\n', len - at);
      size_t n = nl ? (size_t)(nl - s) : len - at;
      at += n + (nl != NULL);
      line++;
      if (fmt == FMT_LINES) {
        size_t k = n > 0 && s[n - 1] == '\r' ? n - 1 : n;
        sl_value v;
        rc = sl_str_try(s, k, &v);
        if (rc == 0) rc = parsed_add(ps, v);
        continue;
      }
      if (blank(s, n)) continue;
      sl_value v;
      rc = sl_value_from_json(s, n, &v, &err);
      if (rc) snprintf(why, whylen, "line %zu: invalid JSON: %s", line, err.msg);
      else rc = parsed_add(ps, v);
    }
  }
  if (rc) {
    if (rc == SL_ENOMEM) snprintf(why, whylen, "out of memory");
    parsed_free(ps);
  }
  return rc;
}

/* ---- answering --------------------------------------------------------------------------- */

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, const char *json) {
  struct MHD_Response *r = MHD_create_response_from_buffer(strlen(json), (void *)json, MHD_RESPMEM_MUST_COPY);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, "Content-Type", "application/json");
  if (status == MHD_HTTP_TOO_MANY_REQUESTS || status == MHD_HTTP_SERVICE_UNAVAILABLE) MHD_add_response_header(r, "Retry-After", "1");
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(r, "Allow", "POST");
  enum MHD_Result ok = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ok;
}

/* An error answer: {"error": "<why>"} (why JSON-escaped). */
static enum MHD_Result answer_error(struct MHD_Connection *c, unsigned status, const char *why) {
  sl_buf b;
  sl_buf_init(&b);
  sl_value v = sl_cstr(why);
  int rc = sl_buf_printf(&b, "{\"error\": ");
  if (rc == 0) rc = sl_value_to_json(&v, &b);
  if (rc == 0) rc = sl_buf_printf(&b, "}\n");
  sl_value_free(v);
  enum MHD_Result ok = rc == 0 ? answer(c, status, b.data) : MHD_NO;
  sl_buf_close(&b);
  return ok;
}

static void deadline_in(struct timespec *ts, long ns) {
  clock_gettime(CLOCK_REALTIME, ts);
  ts->tv_nsec += ns;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

static void unqueue(http_in *h, req *r) {
  req **pp = &h->head;
  h->tail = NULL;
  for (req *q = h->head; q; q = q->qnext) {
    if (q == r) *pp = q->qnext;
    else {
      pp = &q->qnext;
      h->tail = q;
    }
  }
  r->queued = false;
}

static void unlist_acking(http_in *h, req *r) {
  for (req **pp = &h->acking; *pp; pp = &(*pp)->qnext)
    if (*pp == r) {
      *pp = r->qnext;
      break;
    }
  r->waiting_ack = false;
}

/* Sets r's answer and gives its records back to the budget (under mu). */
static void settle(http_in *h, req *r, int status, const char *why) {
  r->status = status;
  if (why) snprintf(r->why, sizeof r->why, "%s", why);
  h->pending -= r->n;
  pthread_cond_broadcast(&h->cv);
}

/* Admits the parsed records and waits for their answer. Runs on a connection thread. */
static int admit_and_wait(http_in *h, req *r, parsed *ps) {
  pthread_mutex_lock(&h->mu);
  int status = 0;
  if (h->closing || sl_stage_stopping(h->st) || (h->count && h->admitted >= h->count)) {
    status = MHD_HTTP_SERVICE_UNAVAILABLE;
    snprintf(r->why, sizeof r->why, "the pipeline is not taking records any more");
  } else if (h->count && h->admitted + ps->n > h->count) {
    status = MHD_HTTP_SERVICE_UNAVAILABLE;
    snprintf(r->why, sizeof r->why, "the source ends after %lld records: %lld more are taken, this request has %u",
             (long long)h->count, (long long)(h->count - h->admitted), ps->n);
  } else if (h->pending > 0 && h->pending + ps->n > h->max_pending) {
    status = MHD_HTTP_TOO_MANY_REQUESTS;
    snprintf(r->why, sizeof r->why, "the pipeline is backpressured: %lld records pending (max_pending %lld); retry later",
             (long long)h->pending, (long long)h->max_pending);
  }
  if (status) {
    pthread_mutex_unlock(&h->mu);
    parsed_free(ps);
    return status;
  }
  r->recs = ps->recs;
  r->n = ps->n;
  ps->recs = NULL;
  ps->n = ps->cap = 0;
  h->pending += r->n;
  h->admitted += r->n;
  r->queued = true;
  r->qnext = NULL;
  if (h->tail) h->tail->qnext = r;
  else h->head = r;
  h->tail = r;
  pthread_mutex_unlock(&h->mu);
  sl_stage_wake(h->st);

  pthread_mutex_lock(&h->mu);
  while (r->status == 0) {
    if (h->closing || (sl_stage_stopping(h->st) && r->queued)) {
      /* not all of it got in: the client may send it again */
      if (r->queued) unqueue(h, r);
      if (r->ack) { /* the records that went in carry it: they complete it */
        sl_ack_release(r->ack, true);
        r->ack = NULL;
      }
      if (r->waiting_ack) unlist_acking(h, r);
      h->admitted -= r->n - r->next;
      settle(h, r, MHD_HTTP_SERVICE_UNAVAILABLE, NULL);
      snprintf(r->why, sizeof r->why, "the pipeline stopped: %u of the %u records went in", r->next, r->n);
      break;
    }
    struct timespec until;
    deadline_in(&until, POLL_NS);
    pthread_cond_timedwait(&h->cv, &h->mu, &until);
  }
  status = r->status;
  pthread_mutex_unlock(&h->mu);
  return status;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
  (void)url;
  (void)version;
  http_in *h = cls;
  req *r = *con_cls;
  if (!r) { /* the headers are in */
    if (strcmp(method, "POST") != 0) return answer_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "POST records to this endpoint");
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoll(cl, NULL, 10) > h->max_body) {
      char why[96];
      snprintf(why, sizeof why, "the body is larger than max_body (%lld bytes)", (long long)h->max_body);
      return answer_error(c, MHD_HTTP_CONTENT_TOO_LARGE, why);
    }
    r = calloc(1, sizeof *r);
    if (!r) return MHD_NO;
    sl_buf_init(&r->body);
    pthread_mutex_lock(&h->mu);
    h->active++;
    pthread_mutex_unlock(&h->mu);
    *con_cls = r;
    return MHD_YES;
  }
  if (*upload_size) { /* a piece of the body */
    if (!r->too_large && r->body.len + *upload_size > (size_t)h->max_body) {
      r->too_large = true;
      sl_buf_close(&r->body);
      sl_buf_init(&r->body);
    }
    if (!r->too_large && sl_buf_append(&r->body, upload, *upload_size) != 0) return MHD_NO;
    *upload_size = 0;
    return MHD_YES;
  }
  if (r->too_large) {
    char why[96];
    snprintf(why, sizeof why, "the body is larger than max_body (%lld bytes)", (long long)h->max_body);
    return answer_error(c, MHD_HTTP_CONTENT_TOO_LARGE, why);
  }
  pthread_mutex_lock(&h->mu);
  bool full = h->pending >= h->max_pending; /* refused before the work of parsing it */
  pthread_mutex_unlock(&h->mu);
  if (full) {
    snprintf(r->why, sizeof r->why, "the pipeline is backpressured: max_pending (%lld) records pending; retry later", (long long)h->max_pending);
    return answer_error(c, MHD_HTTP_TOO_MANY_REQUESTS, r->why);
  }
  const char *ctype = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
  int fmt = body_format(h->format, ctype, r->body.data, r->body.len);
  parsed ps = {0};
  if (parse_body(fmt, r->body.data ? r->body.data : "", r->body.len, &ps, r->why, sizeof r->why) != 0)
    return answer_error(c, MHD_HTTP_BAD_REQUEST, r->why);
  sl_buf_close(&r->body);
  int status = admit_and_wait(h, r, &ps);
  if (status != MHD_HTTP_OK) return answer_error(c, (unsigned)status, r->why);
  char ok[64];
  snprintf(ok, sizeof ok, "{\"accepted\": %u}\n", r->n);
  return answer(c, MHD_HTTP_OK, ok);
}

/* The server is done with a request (its answer was sent, or the connection failed). */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
  (void)c;
  (void)why;
  http_in *h = cls;
  req *r = *con_cls;
  if (!r) return;
  *con_cls = NULL;
  pthread_mutex_lock(&h->mu);
  /* a connection that failed while its request waited: that thread has left admit_and_wait */
  h->active--;
  pthread_cond_broadcast(&h->cv);
  pthread_mutex_unlock(&h->mu);
  for (uint32_t i = r->next; i < r->n; i++) sl_value_free(r->recs[i]);
  free(r->recs);
  sl_buf_close(&r->body);
  free(r);
}

__attribute__((format(printf, 2, 0))) static void on_log(void *cls, const char *fmt, va_list ap) {
  http_in *h = cls;
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  msg[strcspn(msg, "\n")] = 0;
  sl_stage_log(h->st, SL_LOG_WARN, "http server: %s", msg);
}

/* ---- the stage --------------------------------------------------------------------------- */

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  http_in *h = ctx;
  h->st = st;
  if (h->port < 0 || h->port > 65535) return sl_error_set(err, SL_ECONFIG, NULL, "port must be from 0 to 65535 (got %lld)", (long long)h->port);
  if (h->max_pending < 1) return sl_error_set(err, SL_ECONFIG, NULL, "max_pending must be at least 1");
  if (h->max_body < 1) return sl_error_set(err, SL_ECONFIG, NULL, "max_body must be at least 1 byte");
  if (h->max_conns < 1 || h->max_conns > 4096) return sl_error_set(err, SL_ECONFIG, NULL, "max_connections must be from 1 to 4096");
  if (h->count < 0) return sl_error_set(err, SL_ECONFIG, NULL, "count must be 0 or more");
  pthread_mutex_init(&h->mu, NULL);
  pthread_cond_init(&h->cv, NULL);
  h->mu_ready = true;
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  struct addrinfo *ai = NULL;
  char port[16];
  snprintf(port, sizeof port, "%lld", (long long)h->port);
  int g = getaddrinfo(h->host, port, &hints, &ai);
  if (g != 0) return sl_error_set(err, SL_ECONFIG, NULL, "cannot resolve host '%s': %s", h->host, gai_strerror(g));
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
  if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
  h->d = MHD_start_daemon(flags, (uint16_t)h->port, NULL, NULL, on_request, h,
                          MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                          MHD_OPTION_CONNECTION_LIMIT, (unsigned)h->max_conns,
                          MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
                          MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                          MHD_OPTION_EXTERNAL_LOGGER, on_log, h,
                          MHD_OPTION_END);
  freeaddrinfo(ai);
  if (!h->d)
    return sl_error_set(err, SL_EIO, NULL, "cannot listen on %s:%lld (in use, or not an address of this host); choose another port or host",
                        h->host, (long long)h->port);
  return 0;
}

static int produce(void *ctx, sl_emitter *em) {
  http_in *h = ctx;
  uint32_t room = sl_emitter_room(em);
  int rc = 0;
  pthread_mutex_lock(&h->mu);
  while (room && h->head && rc == 0) {
    req *r = h->head;
    if (h->ack == ACK_END_TO_END && !r->ack && r->n) r->ack = sl_ack_new(h->st, r->id = ++h->next_id);
    while (room && r->next < r->n && rc == 0) {
      sl_value v = r->recs[r->next];
      r->recs[r->next++] = sl_nil();
      rc = r->ack ? sl_emit_acked(em, v, sl_ack_ref(r->ack)) : sl_emit(em, SL_NO_ORIGIN, v);
      room--;
    }
    if (r->next < r->n) break;
    h->emitted += r->n;
    h->head = r->qnext;
    if (!h->head) h->tail = NULL;
    r->queued = false;
    if (r->ack) { /* answered when the token comes back */
      r->waiting_ack = true;
      r->qnext = h->acking;
      h->acking = r;
      sl_ack_release(r->ack, false);
      r->ack = NULL;
    } else {
      settle(h, r, MHD_HTTP_OK, NULL);
    }
  }
  bool more = h->head != NULL;
  bool done = h->count && h->emitted >= h->count;
  pthread_mutex_unlock(&h->mu);
  if (rc) return rc;
  return done ? SL_DONE : more ? 0 : SL_PARKED;
}

static void acked(void *ctx, uint64_t id, int status) {
  http_in *h = ctx;
  pthread_mutex_lock(&h->mu);
  for (req *r = h->acking; r; r = r->qnext) {
    if (r->id != id) continue;
    unlist_acking(h, r);
    if (status == SL_ACK_OK) settle(h, r, MHD_HTTP_OK, NULL);
    else if (status == SL_ACK_DROPPED)
      settle(h, r, MHD_HTTP_INTERNAL_SERVER_ERROR, "some records were not delivered: shed by a full queue, skipped after an error, or discarded");
    else settle(h, r, MHD_HTTP_SERVICE_UNAVAILABLE, "the pipeline was aborted before the records reached their sinks");
    break;
  }
  pthread_mutex_unlock(&h->mu);
}

static void destroy(void *ctx) {
  http_in *h = ctx;
  if (h->d) {
    MHD_quiesce_daemon(h->d); /* no new connections */
    pthread_mutex_lock(&h->mu);
    h->closing = true;
    pthread_cond_broadcast(&h->cv);
    /* let answered requests finish sending before the server closes their connections */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += LINGER_NS / 1000000000LL;
    while (h->active > 0 && pthread_cond_timedwait(&h->cv, &h->mu, &until) == 0) {
    }
    pthread_mutex_unlock(&h->mu);
    MHD_stop_daemon(h->d);
  }
  if (h->mu_ready) {
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
  }
}

const sl_stage_kind sl_stage_http_in = {
    .abi = SL_STAGE_ABI,
    .name = "http_in",
    .doc = "an HTTP endpoint taking POSTed records (JSON lines, a JSON array or lines), answering 200 once they are in the pipeline",
    .options = options,
    .ctx_size = sizeof(http_in),
    .flags = SL_STAGE_SOURCE,
    .init = init,
    .produce = produce,
    .destroy = destroy,
    .acked = acked,
};
