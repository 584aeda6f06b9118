/*
 * metrics.c — `sluice run --metrics ADDR`: an HTTP server (libmicrohttpd, its own thread) beside a
 * running pipeline, answering
 *   GET /metrics  the stage stats in the Prometheus text format (version 0.0.4)
 *   GET /stats    the JSON of --stats (sl_pipeline_stats_json), the same figures
 *   GET /health   200 "ok" while the pipeline runs, 503 "draining" once it stops
 * Everything is read through the public API while the pipeline runs (the stats calls are
 * thread-safe), so the server never touches the engine's workers. ADDR is PORT or HOST:PORT
 * ([v6]:PORT); the host defaults to 127.0.0.1, the loopback: exposing the stats to the network
 * takes an explicit 0.0.0.0.
 */
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

struct metrics {
  struct MHD_Daemon *d;
  sl_pipeline *p;        /* the pipeline served now, or NULL between runs */
  pthread_mutex_t mu;    /* p, draining */
  bool draining;
  char host[256];
  char port[16];
};

int metrics_parse_addr(const char *addr, char *host, size_t hostlen, char *port, size_t portlen) {
  const char *colon = strrchr(addr, ':');
  const char *p = colon ? colon + 1 : addr;
  size_t hl = colon ? (size_t)(colon - addr) : 0;
  if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']') { /* [::1]:9100 */
    addr++;
    hl -= 2;
  }
  char *end;
  long n = strtol(p, &end, 10);
  if (!*p || *end || n < 1 || n > 65535 || hl >= hostlen || (colon && hl == 0)) return -1;
  if (hl) snprintf(host, hostlen, "%.*s", (int)hl, addr);
  else snprintf(host, hostlen, "127.0.0.1");
  snprintf(port, portlen, "%ld", n);
  return 0;
}

/* A label value with \, " and newline escaped (the text format's rules). */
static void label(sl_buf *b, const char *s) {
  for (; *s; s++) {
    if (*s == '\\') sl_buf_append(b, "\\\\", 2);
    else if (*s == '"') sl_buf_append(b, "\\\"", 2);
    else if (*s == '\n') sl_buf_append(b, "\\n", 2);
    else sl_buf_append(b, s, 1);
  }
}

/* One family: HELP, TYPE and a sample per stage. field picks the figure (or < 0: skip the stage). */
typedef int64_t (*stage_figure)(const sl_stage_stats *s);
static int64_t f_in(const sl_stage_stats *s) { return (int64_t)s->in; }
static int64_t f_out(const sl_stage_stats *s) { return (int64_t)s->out; }
static int64_t f_errors(const sl_stage_stats *s) { return (int64_t)s->errors; }
static int64_t f_dropped(const sl_stage_stats *s) { return (int64_t)s->dropped; }
static int64_t f_retries(const sl_stage_stats *s) { return (int64_t)s->retries; }
static int64_t f_dead(const sl_stage_stats *s) { return (int64_t)s->dead_letter; }
static int64_t f_qlen(const sl_stage_stats *s) { return (int64_t)s->queue_len; }
static int64_t f_qcap(const sl_stage_stats *s) { return (int64_t)s->queue_cap; }
static int64_t f_qhwm(const sl_stage_stats *s) { return (int64_t)s->queue_hwm; }
static int64_t f_changes(const sl_stage_stats *s) { return s->breaker ? (int64_t)s->breaker_changes : -1; }

static void family(sl_buf *b, sl_pipeline *p, const char *name, const char *type, const char *help, stage_figure f) {
  sl_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
  for (size_t i = 0; i < sl_pipeline_stage_count(p); i++) {
    sl_stage_stats s;
    if (sl_pipeline_stats(p, i, &s) != 0 || f(&s) < 0) continue;
    sl_buf_printf(b, "%s{pipeline=\"", name);
    label(b, sl_pipeline_name(p));
    sl_buf_printf(b, "\",stage=\"");
    label(b, s.name);
    sl_buf_printf(b, "\",kind=\"");
    label(b, s.kind);
    sl_buf_printf(b, "\"} %lld\n", (long long)f(&s));
  }
}

static void prometheus(sl_buf *b, sl_pipeline *p, bool draining) {
  family(b, p, "sluice_stage_records_in_total", "counter", "Records a stage received.", f_in);
  family(b, p, "sluice_stage_records_out_total", "counter", "Records a stage emitted (a sink: wrote).", f_out);
  family(b, p, "sluice_stage_errors_total", "counter", "Records that failed in a stage.", f_errors);
  family(b, p, "sluice_stage_dropped_total", "counter", "Records shed by a stage's input queue.", f_dropped);
  family(b, p, "sluice_stage_retries_total", "counter", "Calls a stage retried.", f_retries);
  family(b, p, "sluice_stage_dead_letter_total", "counter", "Failed records a stage sent to the dead letter.", f_dead);
  family(b, p, "sluice_stage_queue_length", "gauge", "Records waiting in a stage's input queues.", f_qlen);
  family(b, p, "sluice_stage_queue_capacity", "gauge", "Capacity of a stage's input queues.", f_qcap);
  family(b, p, "sluice_stage_queue_high_water", "gauge", "Most records seen waiting in a stage's input queues.", f_qhwm);
  sl_buf_printf(b, "# HELP sluice_stage_breaker_state Circuit breaker state of a stage (1 for the current state).\n"
                   "# TYPE sluice_stage_breaker_state gauge\n");
  static const char *const states[] = {"closed", "open", "half_open"};
  for (size_t i = 0; i < sl_pipeline_stage_count(p); i++) {
    sl_stage_stats s;
    if (sl_pipeline_stats(p, i, &s) != 0 || !s.breaker) continue;
    for (int k = 0; k < 3; k++) {
      sl_buf_printf(b, "sluice_stage_breaker_state{pipeline=\"");
      label(b, sl_pipeline_name(p));
      sl_buf_printf(b, "\",stage=\"");
      label(b, s.name);
      sl_buf_printf(b, "\",state=\"%s\"} %d\n", states[k], strcmp(s.breaker, states[k]) == 0);
    }
  }
  family(b, p, "sluice_stage_breaker_changes_total", "counter", "State changes of a stage's circuit breaker.", f_changes);
  uint64_t used, peak;
  sl_pipeline_memory(p, &used, &peak);
  sl_buf_printf(b, "# HELP sluice_lua_memory_bytes Bytes held by the pipeline's Lua states.\n"
                   "# TYPE sluice_lua_memory_bytes gauge\nsluice_lua_memory_bytes{pipeline=\"");
  label(b, sl_pipeline_name(p));
  sl_buf_printf(b, "\"} %llu\n", (unsigned long long)sl_pipeline_lua_memory(p));
  sl_buf_printf(b, "# HELP sluice_queued_bytes Estimated bytes of records queued (with memory_limit).\n"
                   "# TYPE sluice_queued_bytes gauge\nsluice_queued_bytes{pipeline=\"");
  label(b, sl_pipeline_name(p));
  sl_buf_printf(b, "\"} %llu\n", (unsigned long long)used);
  sl_buf_printf(b, "# HELP sluice_elapsed_seconds Seconds on the engine clock since the pipeline started.\n"
                   "# TYPE sluice_elapsed_seconds gauge\nsluice_elapsed_seconds{pipeline=\"");
  label(b, sl_pipeline_name(p));
  sl_buf_printf(b, "\"} %.6f\n", sl_pipeline_elapsed(p));
  sl_buf_printf(b, "# HELP sluice_draining 1 once the pipeline was asked to stop.\n"
                   "# TYPE sluice_draining gauge\nsluice_draining{pipeline=\"");
  label(b, sl_pipeline_name(p));
  sl_buf_printf(b, "\"} %d\n", draining);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type, const char *body, size_t len) {
  struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, "Content-Type", type);
  enum MHD_Result ok = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
  (void)version;
  (void)upload;
  (void)upload_size;
  (void)con_cls;
  metrics *m = cls;
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", "GET only\n", 9);
  sl_buf b;
  sl_buf_init(&b);
  unsigned status = MHD_HTTP_OK;
  const char *type = "text/plain; charset=utf-8";
  /* the pipeline stays while the lock is held: metrics_detach takes it before the run ends */
  pthread_mutex_lock(&m->mu);
  if (!m->p) {
    status = MHD_HTTP_SERVICE_UNAVAILABLE;
    sl_buf_printf(&b, "no pipeline running\n");
  } else if (strcmp(url, "/metrics") == 0) {
    type = "text/plain; version=0.0.4; charset=utf-8";
    prometheus(&b, m->p, m->draining);
  } else if (strcmp(url, "/stats") == 0) {
    type = "application/json";
    sl_pipeline_stats_json(m->p, &b);
    sl_buf_append(&b, "\n", 1);
  } else if (strcmp(url, "/health") == 0) {
    status = m->draining ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK;
    sl_buf_printf(&b, "%s\n", m->draining ? "draining" : "ok");
  } else {
    status = MHD_HTTP_NOT_FOUND;
    sl_buf_printf(&b, "not found: try /metrics, /stats or /health\n");
  }
  pthread_mutex_unlock(&m->mu);
  enum MHD_Result ok = reply(c, status, type, b.data ? b.data : "", b.len);
  sl_buf_close(&b);
  return ok;
}

int metrics_start(const char *addr, metrics **out) {
  metrics *m = calloc(1, sizeof *m);
  if (!m) return -1;
  pthread_mutex_init(&m->mu, NULL);
  if (metrics_parse_addr(addr, m->host, sizeof m->host, m->port, sizeof m->port) != 0) {
    fprintf(stderr, "sluice: --metrics '%s': give PORT or HOST:PORT\n", addr);
    goto fail;
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  struct addrinfo *ai = NULL;
  int g = getaddrinfo(m->host, m->port, &hints, &ai);
  if (g != 0) {
    fprintf(stderr, "sluice: --metrics '%s': cannot resolve '%s': %s\n", addr, m->host, gai_strerror(g));
    goto fail;
  }
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
  if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
  m->d = MHD_start_daemon(flags, (uint16_t)atoi(m->port), NULL, NULL, on_request, m, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                          MHD_OPTION_CONNECTION_LIMIT, 32u, MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
  freeaddrinfo(ai);
  if (!m->d) {
    fprintf(stderr, "sluice: --metrics '%s': cannot listen there (in use?); choose another port\n", addr);
    goto fail;
  }
  *out = m;
  return 0;
fail:
  pthread_mutex_destroy(&m->mu);
  free(m);
  return -1;
}

void metrics_attach(metrics *m, sl_pipeline *p) {
  if (!m) return;
  pthread_mutex_lock(&m->mu);
  m->p = p;
  m->draining = false;
  pthread_mutex_unlock(&m->mu);
}

void metrics_draining(metrics *m) {
  if (!m) return;
  pthread_mutex_lock(&m->mu);
  m->draining = true;
  pthread_mutex_unlock(&m->mu);
}

void metrics_detach(metrics *m) { metrics_attach(m, NULL); }

void metrics_stop(metrics *m) {
  if (!m) return;
  MHD_stop_daemon(m->d);
  pthread_mutex_destroy(&m->mu);
  free(m);
}
