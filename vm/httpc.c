/*
 * httpc.c — libcurl's multi-socket interface on the engine's event loop (see httpc.h).
 *
 * curl tells us which sockets to watch for what (sock_cb) and when to call it back (timer_cb);
 * we keep one persistent loop watch per socket (in `fds`, by socket) and a timerfd on the real
 * clock per multi handle, and hand every readiness and timeout back with
 * curl_multi_socket_action. Finished transfers are collected after each action (done()).
 * Requests are spread over NSHARD multi handles (pick()), each with its own connection cache.
 *
 * A kept-alive connection goes back to curl's pool after each response and curl stops watching
 * it (CURL_POLL_REMOVE), to watch it again when the next request reuses it: its epoll
 * registration stays meanwhile ("parked", read readiness only: a server closing it wakes us
 * once and the watch is emptied), which saves two epoll_ctl calls per request. The watch goes
 * when curl closes the socket (close_cb, our CURLOPT_CLOSESOCKETFUNCTION), so a socket number
 * reused by a new connection never finds a stale registration.
 *
 * A new connection is tried for writability at once (try_fresh) instead of after a turn of the
 * loop: a connect to a near server (loopback, the same network) has mostly completed when
 * connect() returns, so its request goes out in the same turn. Without that, a burst of new
 * requests (the first wave of a fan-out) opened every connection before any request went out:
 * 500 connections took ~40 ms, and every call of the first wave waited for all of them.
 */
#include "httpc.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"

#define MAX_BODY (256u << 20) /* a response body larger than this fails the request */
#define POOL_MAX 1024         /* easy handles kept for reuse (an init+cleanup per request was the client's main cost) */

/* What a request set beyond the options every request shares (base_opts): undone before its easy
 * handle goes back to the pool, so that a pooled handle is ready for the next request without a
 * curl_easy_reset and a dozen options set again (a sixth of the worker's instructions per GET). */
enum { X_NOBODY = 1, X_CUSTOM = 2, X_BODY = 4, X_HEADERS = 8, X_TIMEOUT = 16, X_TLS = 32 };
#define START_CHUNK 32   /* requests start_queued starts at a time: a burst of new connections (~80 us each to
                                 open and send on) would otherwise keep the answers that come in meanwhile waiting */
#define NSHARD 8              /* multi handles: curl looks for an idle connection by walking every connection
                                 to the host, in use or not (a quarter of the loop thread's instructions with
                                 500 connections in one multi handle) */

enum { R_NEW, R_QUEUED, R_RUNNING, R_DONE, R_CANCELLED };

typedef struct shard shard;

struct sl_httpc_req {
  sl_httpc *h;
  shard *sh;               /* the multi handle it runs in */
  CURL *easy;
  unsigned extras;         /* X_*: options set beyond base_opts */
  struct curl_slist *hdrs; /* request headers */
  char *url, *method;
  CURLU *uh;               /* the URL parsed on the worker (CURLOPT_CURLU), or NULL: CURLOPT_URL */
  char *body;              /* request body (owned copy) */
  _Atomic int state;       /* R_*: changes under h->mu while queued or running */
  sl_httpc_req *qnext;     /* the start queue */
  void *owner;
  sl_httpc_cb cb;
  void *arg;
  uint64_t token;
  sl_httpc_req *prev, *next; /* running requests */
  /* the outcome */
  int kind;                /* SL_HTTPC_* */
  long status;
  sl_buf resp;             /* response body */
  sl_buf hraw;             /* response headers: "name\0value\0" each, names lower-cased */
  size_t nh;
  bool too_big;
  char err[CURL_ERROR_SIZE];
};

/* One multi handle with its connection cache and its timer. */
struct shard {
  sl_httpc *h;
  CURLM *multi;
  int tfd;                 /* curl's timer (real clock) */
  int64_t tfd_watch;
  int64_t due;             /* when the timerfd fires (ns, monotonic), or -1: disarmed */
  bool starting;           /* in start_queued, which runs curl's due work itself */
  bool added;              /* start_queued added requests to it */
  int nconns;              /* its sockets (connections) */
  int nrunning;            /* its requests in flight */
};

struct sl_httpc {
  sl_loop *loop;
  shard shards[NSHARD];
  pthread_mutex_t mu;
  sl_httpc_req *running;   /* list of requests in flight */
  pthread_mutex_t qmu;     /* the start queue and the pool; a leaf, never held while curl runs */
  sl_httpc_req *qhead, *qtail; /* requests started by workers, for the loop thread to add */
  bool poked;              /* efd written since the last start_queued */
  int efd;                 /* eventfd: requests are queued */
  int64_t efd_watch;
  CURL *pool[POOL_MAX];    /* easy handles to reuse, with base_opts set and nothing else */
  int npool;
  struct fdwatch *fds;     /* by socket: its loop watch */
  int nfds;
  int *fresh;              /* sockets curl just opened and waits to see writable (connecting) */
  int nfresh, capfresh;
  bool no_proxy_env;       /* no proxy variable was set when the client started */
};

/* A socket's loop watch: events as registered; parked while curl does not watch it. */
typedef struct fdwatch {
  int64_t id;              /* loop watch, or 0: none */
  int shard;               /* whose socket it is */
  int events;              /* SL_LOOP_* registered */
  bool parked;             /* curl said CURL_POLL_REMOVE; the registration stays */
} fdwatch;

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;
static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

const char *sl_httpc_kind_name(int kind) {
  static const char *const names[] = {"ok", "dns", "connect", "tls", "timeout", "connection", "url", "http"};
  return kind >= 0 && kind <= SL_HTTPC_OTHER ? names[kind] : "http";
}

static int classify(CURLcode c) {
  switch (c) {
  case CURLE_OK: return SL_HTTPC_OK;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY: return SL_HTTPC_DNS;
  case CURLE_COULDNT_CONNECT: return SL_HTTPC_CONNECT;
  case CURLE_OPERATION_TIMEDOUT: return SL_HTTPC_TIMEOUT;
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_USE_SSL_FAILED: return SL_HTTPC_TLS;
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE: return SL_HTTPC_CONNECTION;
  case CURLE_URL_MALFORMAT:
  case CURLE_UNSUPPORTED_PROTOCOL: return SL_HTTPC_URL;
  default: return SL_HTTPC_OTHER;
  }
}

/* ---- curl -> loop ---------------------------------------------------------------------- */

static void io_cb(void *arg, int fd, int ready);

/* Collects finished transfers: their outcome goes into the request, its callback runs. mu held. */
static void done(shard *sh) {
  sl_httpc *h = sh->h;
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(sh->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    sl_httpc_req *r = NULL;
    CURL *easy = m->easy_handle;
    CURLcode code = m->data.result;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
    curl_multi_remove_handle(sh->multi, easy);
    sh->nrunning--;
    if (!r || atomic_load(&r->state) != R_RUNNING) continue;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r->status);
    r->kind = classify(code);
    if (code != CURLE_OK && !r->err[0]) snprintf(r->err, sizeof r->err, "%s", curl_easy_strerror(code));
    if (r->too_big) snprintf(r->err, sizeof r->err, "the response body is larger than %u bytes", MAX_BODY);
    if (r->prev) r->prev->next = r->next;
    else h->running = r->next;
    if (r->next) r->next->prev = r->prev;
    atomic_store(&r->state, R_DONE);
    r->cb(r->arg, r->token);
    sl_loop_hold(h->loop, -1); /* after the post: the stage is runnable (sl_sched_all_idle) */
  }
}

/* Hands each socket curl just opened (sock_cb) to curl as writable right away: curl checks
 * the connect itself (a poll with no wait) and, when it is done, sends the request now; when
 * not, it keeps waiting for the loop's watch. mu held. */
static void try_fresh(sl_httpc *h) {
  while (h->nfresh > 0) {
    int s = h->fresh[--h->nfresh];
    fdwatch *w = &h->fds[s];
    if (w->id <= 0 || w->parked || w->events != SL_LOOP_WRITE) continue; /* closed, or curl moved on */
    shard *sh = &h->shards[w->shard];
    int running;
    curl_multi_socket_action(sh->multi, s, CURL_CSELECT_OUT, &running);
    done(sh);
  }
}

/* The multi handle for the next request: the one with the most idle connections, so that a
 * new connection is only made when no multi handle has an idle one (with one host, the
 * connections stay as many as the requests in flight at most). mu held. */
static shard *pick(sl_httpc *h) {
  shard *best = &h->shards[0];
  for (int i = 1; i < NSHARD; i++)
    if (h->shards[i].nconns - h->shards[i].nrunning > best->nconns - best->nrunning) best = &h->shards[i];
  return best;
}

/* Adds the requests workers queued (sl_httpc_start) to the multi handles and runs them until
 * they wait: the loop thread is the only one that drives curl in the hot path, so a worker
 * starting a request never waits for the loop thread's `mu` (a lock convoy of two threads
 * taking turns through futex waits cost more than the requests). START_CHUNK at a time: when
 * more are queued, the eventfd brings the loop back for them after what else is ready. mu held. */
static void start_queued(sl_httpc *h) {
  pthread_mutex_lock(&h->qmu);
  sl_httpc_req *r = h->qhead, *last = r;
  for (int n = 1; last && last->qnext && n < START_CHUNK; n++) last = last->qnext;
  h->qhead = last ? last->qnext : NULL;
  if (last) last->qnext = NULL;
  if (!h->qhead) h->qtail = NULL;
  bool more = h->qhead != NULL; /* the loop comes back for the rest after serving what is ready */
  h->poked = more;
  pthread_mutex_unlock(&h->qmu);
  if (more) {
    uint64_t one = 1;
    ssize_t w = write(h->efd, &one, sizeof one);
    (void)w;
  }
  if (!r) return;
  for (int i = 0; i < NSHARD; i++) h->shards[i].starting = true;
  while (r) {
    sl_httpc_req *next = r->qnext;
    r->qnext = NULL;
    shard *sh = pick(h);
    if (curl_multi_add_handle(sh->multi, r->easy) == CURLM_OK) {
      r->sh = sh;
      sh->nrunning++;
      sh->added = true;
      atomic_store(&r->state, R_RUNNING);
      r->prev = NULL;
      r->next = h->running;
      if (h->running) h->running->prev = r;
      h->running = r;
    } else { /* it ends at once */
      r->kind = SL_HTTPC_OTHER;
      snprintf(r->err, sizeof r->err, "libcurl refused the request");
      atomic_store(&r->state, R_DONE);
      r->cb(r->arg, r->token);
      sl_loop_hold(h->loop, -1);
    }
    r = next;
  }
  for (int i = 0; i < NSHARD; i++) {
    shard *sh = &h->shards[i];
    sh->starting = false;
    if (!sh->added) continue;
    sh->added = false;
    int running;
    curl_multi_socket_action(sh->multi, CURL_SOCKET_TIMEOUT, 0, &running); /* writes the requests */
    done(sh);
    try_fresh(h);
  }
}

/* Hands readiness of socket s (or a timeout) to its multi handle. mu held. */
static void act(shard *sh, curl_socket_t s, int flags) {
  int running;
  curl_multi_socket_action(sh->multi, s, flags, &running);
  done(sh);
  try_fresh(sh->h);
  start_queued(sh->h); /* what the answers just collected made the workers start, mostly */
}

/* The start queue's eventfd: a worker queued the first request since the last start_queued. */
static void queued_cb(void *arg, int fd, int ready) {
  sl_httpc *h = arg;
  uint64_t n;
  (void)ready;
  ssize_t rd = read(fd, &n, sizeof n);
  (void)rd;
  pthread_mutex_lock(&h->mu);
  start_queued(h);
  pthread_mutex_unlock(&h->mu);
}

static void io_cb(void *arg, int fd, int ready) {
  shard *sh = arg;
  sl_httpc *h = sh->h;
  pthread_mutex_lock(&h->mu);
  fdwatch *w = fd < h->nfds ? &h->fds[fd] : NULL;
  if (w && w->id > 0 && w->parked) { /* an idle pooled connection: closed by the server, most likely */
    if (w->events) sl_loop_io_modify(h->loop, w->id, 0);
    w->events = 0;                  /* curl finds it dead when it next reuses or prunes it */
  } else {
    act(sh, fd, (ready & SL_LOOP_READ ? CURL_CSELECT_IN : 0) | (ready & SL_LOOP_WRITE ? CURL_CSELECT_OUT : 0));
  }
  pthread_mutex_unlock(&h->mu);
}

static void timer_fired(void *arg, int fd, int ready) {
  uint64_t n;
  (void)ready;
  ssize_t rd = read(fd, &n, sizeof n);
  (void)rd;
  shard *sh = arg;
  pthread_mutex_lock(&sh->h->mu);
  sh->due = -1; /* fired: the next timer_cb re-arms it */
  act(sh, CURL_SOCKET_TIMEOUT, 0);
  pthread_mutex_unlock(&sh->h->mu);
}

/* curl: watch socket s for `what` (or stop). mu held (curl runs inside our calls). */
static int sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
  shard *sh = userp;
  sl_httpc *h = sh->h;
  (void)easy, (void)socketp;
  if (s < 0) return -1;
  if (s >= h->nfds) {
    int n = h->nfds ? h->nfds : 64;
    while (n <= s) n *= 2;
    h->fds = sl__xrealloc(h->fds, (size_t)n * sizeof *h->fds);
    memset(h->fds + h->nfds, 0, (size_t)(n - h->nfds) * sizeof *h->fds);
    h->nfds = n;
  }
  fdwatch *w = &h->fds[s];
  if (what == CURL_POLL_REMOVE) { /* park: keep the registration, reading only */
    if (w->id > 0 && (w->events & SL_LOOP_WRITE) && sl_loop_io_modify(h->loop, w->id, SL_LOOP_READ) == 0)
      w->events = SL_LOOP_READ;
    w->parked = true;
    return 0;
  }
  int ev = (what & CURL_POLL_IN ? SL_LOOP_READ : 0) | (what & CURL_POLL_OUT ? SL_LOOP_WRITE : 0);
  w->parked = false;
  if (w->id > 0) {
    if (w->events == ev) return 0;
    if (sl_loop_io_modify(h->loop, w->id, ev) != 0) return -1;
    w->events = ev;
    return 0;
  }
  int64_t id = sl_loop_io_start(h->loop, s, ev, h, io_cb, sh);
  if (id < 0) return -1;
  *w = (fdwatch){.id = id, .events = ev, .shard = (int)(sh - h->shards)};
  sh->nconns++;
  if (ev == SL_LOOP_WRITE) { /* connecting: try_fresh */
    if (h->nfresh == h->capfresh) {
      h->capfresh = h->capfresh ? h->capfresh * 2 : 64;
      h->fresh = sl__xrealloc(h->fresh, (size_t)h->capfresh * sizeof *h->fresh);
    }
    h->fresh[h->nfresh++] = s;
  }
  return 0;
}

/* curl closes socket s (CURLOPT_CLOSESOCKETFUNCTION): its watch goes first. mu held. */
static int close_cb(void *userp, curl_socket_t s) {
  sl_httpc *h = userp;
  if (s >= 0 && s < h->nfds && h->fds[s].id > 0) {
    sl_loop_io_stop(h->loop, h->fds[s].id);
    h->shards[h->fds[s].shard].nconns--;
  }
  if (s >= 0 && s < h->nfds) h->fds[s] = (fdwatch){0};
  return close(s) == 0 ? 0 : 1;
}

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* curl: call socket_action(TIMEOUT) in ms milliseconds (-1: never). curl asks after nearly
 * every action, mostly for the deadline it already has: the timerfd is only re-armed when the
 * deadline moves by a millisecond or more (a syscall each time was a quarter of the client's
 * time). mu held. */
static int timer_cb(CURLM *multi, long ms, void *userp) {
  shard *sh = userp;
  (void)multi;
  if (ms == 0 && sh->starting) return 0; /* start_queued acts right away */
  int64_t due = ms < 0 ? -1 : mono_ns() + (int64_t)ms * 1000000;
  if (due < 0 ? sh->due < 0 : sh->due >= 0 && llabs(due - sh->due) < 1000000) return 0;
  sh->due = due;
  struct itimerspec its = {0};
  if (due >= 0) {
    its.it_value.tv_sec = due / 1000000000;
    its.it_value.tv_nsec = due % 1000000000;
  }
  return timerfd_settime(sh->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0 ? 0 : -1;
}

/* ---- the client ------------------------------------------------------------------------ */

/* Cleans up a client sl_httpc_new made in part or in whole. */
static void client_close(sl_httpc *h) {
  pthread_mutex_lock(&h->mu);
  while (h->npool > 0) curl_easy_cleanup(h->pool[--h->npool]);
  for (int i = 0; i < NSHARD; i++) /* closes the pooled connections (their watches stop) */
    if (h->shards[i].multi) curl_multi_cleanup(h->shards[i].multi);
  pthread_mutex_unlock(&h->mu);
  for (int i = 0; i < NSHARD; i++)
    if (h->shards[i].tfd_watch > 0) sl_loop_io_stop(h->loop, h->shards[i].tfd_watch);
  if (h->efd_watch > 0) sl_loop_io_stop(h->loop, h->efd_watch);
  sl_loop_cancel_owner(h->loop, h); /* waits out a callback in progress */
  for (int i = 0; i < NSHARD; i++)
    if (h->shards[i].tfd >= 0) close(h->shards[i].tfd);
  if (h->efd >= 0) close(h->efd);
  sl__free(h->fds);
  sl__free(h->fresh);
  pthread_mutex_destroy(&h->mu);
  pthread_mutex_destroy(&h->qmu);
  sl__free(h);
}

int sl_httpc_new(sl_loop *loop, int max_per_host, sl_httpc **out) {
  pthread_once(&global_once, global_init);
  if (global_rc != CURLE_OK) return SL_EIO;
  sl_httpc *h = sl__xcalloc(1, sizeof *h);
  h->loop = loop;
  pthread_mutex_init(&h->mu, NULL);
  pthread_mutex_init(&h->qmu, NULL);
  h->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  h->efd_watch = h->efd < 0 ? -1 : sl_loop_io_start(loop, h->efd, SL_LOOP_READ, h, queued_cb, h);
  bool ok = h->efd_watch > 0;
  long per_shard = (max_per_host + NSHARD - 1) / NSHARD;
  for (int i = 0; i < NSHARD; i++) {
    shard *sh = &h->shards[i];
    *sh = (shard){.h = h, .due = -1, .tfd_watch = -1};
    sh->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    sh->multi = curl_multi_init();
    if (sh->tfd < 0 || !sh->multi) {
      ok = false;
      continue;
    }
    sh->tfd_watch = sl_loop_io_start(loop, sh->tfd, SL_LOOP_READ, h, timer_fired, sh);
    if (sh->tfd_watch < 0) ok = false;
    curl_multi_setopt(sh->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(sh->multi, CURLMOPT_SOCKETDATA, sh);
    curl_multi_setopt(sh->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(sh->multi, CURLMOPT_TIMERDATA, sh);
    curl_multi_setopt(sh->multi, CURLMOPT_MAX_HOST_CONNECTIONS, per_shard);
    /* curl's default keeps at most 4 idle connections per easy handle in the multi: when a
     * burst of answers is collected before the next requests are added, that drops to a few
     * and the rest are closed, so a fan-out opened three times its concurrency in connections */
    curl_multi_setopt(sh->multi, CURLMOPT_MAXCONNECTS, per_shard);
  }
  if (!ok) {
    client_close(h);
    return SL_EIO;
  }
  /* curl looks for proxy variables in the environment at every request (five getenv scans);
   * when none is set now, requests say "no proxy" and skip that */
  static const char *const proxy_vars[] = {"http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
  h->no_proxy_env = true;
  for (size_t i = 0; i < sizeof proxy_vars / sizeof *proxy_vars; i++)
    if (getenv(proxy_vars[i])) h->no_proxy_env = false;
  *out = h;
  return 0;
}

void sl_httpc_free(sl_httpc *h) {
  if (h) client_close(h);
}

/* ---- requests -------------------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  sl_httpc_req *r = ud;
  size_t len = size * n;
  if (r->resp.len + len > MAX_BODY || sl_buf_append(&r->resp, p, len) != 0) {
    r->too_big = true;
    return 0;
  }
  return len;
}

static char *dup_n(const char *p, size_t n) {
  char *s = sl__xmalloc(n + 1);
  memcpy(s, p, n);
  s[n] = 0;
  return s;
}

/* One header line of the response ("HTTP/..." starts a new response: a redirect or 100). It
 * goes into one buffer (no allocation per header on the loop thread, no cross-thread frees). */
static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  sl_httpc_req *r = ud;
  size_t len = size * n, end = len;
  while (end > 0 && (p[end - 1] == '\r' || p[end - 1] == '\n')) end--;
  if (end >= 5 && memcmp(p, "HTTP/", 5) == 0) {
    r->hraw.len = 0;
    r->nh = 0;
    return len;
  }
  const char *colon = memchr(p, ':', end);
  if (!colon || r->nh >= 1000) return len;
  size_t nl = (size_t)(colon - p), at = r->hraw.len;
  const char *v = colon + 1;
  while (v < p + end && (*v == ' ' || *v == '\t')) v++;
  size_t vl = (size_t)(p + end - v);
  if (sl_buf_append(&r->hraw, p, nl) != 0 || sl_buf_append(&r->hraw, "", 1) != 0 || sl_buf_append(&r->hraw, v, vl) != 0 ||
      sl_buf_append(&r->hraw, "", 1) != 0) {
    r->hraw.len = at; /* out of memory: the header is left out */
    return len;
  }
  for (char *c = r->hraw.data + at; *c; c++) *c = (char)tolower((unsigned char)*c);
  r->nh++;
  return len;
}

/* The options every request of client h sets alike; a pooled handle keeps them. */
static CURLcode base_opts(sl_httpc *h, CURL *e) {
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_cb);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, h);
  if (h->no_proxy_env) {
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_NOPROXY, "");
  }
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  return curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
}

sl_httpc_req *sl_httpc_req_new(sl_httpc *h, const sl_httpc_opts *o, char *msg, size_t msglen) {
  sl_httpc_req *r = sl__xcalloc(1, sizeof *r);
  r->h = h;
  sl_buf_init(&r->resp);
  sl_buf_init(&r->hraw);
  pthread_mutex_lock(&h->qmu);
  r->easy = h->npool > 0 ? h->pool[--h->npool] : NULL;
  pthread_mutex_unlock(&h->qmu);
  CURLcode rc = CURLE_OK;
  if (!r->easy && (r->easy = curl_easy_init())) rc = base_opts(h, r->easy);
  if (!r->easy || rc != CURLE_OK) {
    snprintf(msg, msglen, "cannot make a request (libcurl%s%s)", rc != CURLE_OK ? ": " : "", rc != CURLE_OK ? curl_easy_strerror(rc) : "");
    if (r->easy) curl_easy_cleanup(r->easy);
    sl__free(r);
    return NULL;
  }
  const char *method = o->method ? o->method : o->body ? "POST" : "GET";
  r->method = sl__xstrdup(method);
  for (char *c = r->method; *c; c++) *c = (char)toupper((unsigned char)*c);
  r->url = sl__xstrdup(o->url);
  CURL *e = r->easy;
  /* parsed here, on the worker, with the flags libcurl uses for CURLOPT_URL: the loop thread is
   * spared the parse and a rebuild of the URL (~11k of its ~60k instructions per request). A URL
   * this refuses goes to libcurl as text, which fails the request as before. */
  r->uh = curl_url();
  if (r->uh && curl_url_set(r->uh, CURLUPART_URL, r->url, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK) {
    rc = curl_easy_setopt(e, CURLOPT_CURLU, r->uh);
  } else {
    curl_url_cleanup(r->uh);
    r->uh = NULL;
    rc = curl_easy_setopt(e, CURLOPT_URL, r->url);
  }
  curl_easy_setopt(e, CURLOPT_PRIVATE, r);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->err);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  if (strcmp(r->method, "HEAD") == 0) curl_easy_setopt(e, CURLOPT_NOBODY, 1L), r->extras |= X_NOBODY;
  else if (strcmp(r->method, "GET") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method), r->extras |= X_CUSTOM;
  if (o->body) {
    r->body = dup_n(o->body, o->body_len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    r->extras |= X_BODY;
  }
  for (size_t i = 0; i < o->nheaders; i++) r->hdrs = curl_slist_append(r->hdrs, o->headers[i]);
  if (o->body) r->hdrs = curl_slist_append(r->hdrs, "Expect:"); /* no 100-continue round trip */
  if (r->hdrs) curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs), r->extras |= X_HEADERS;
  if (o->timeout > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)((o->timeout + 999999) / 1000000)), r->extras |= X_TIMEOUT;
  if (o->ca_file || o->insecure) r->extras |= X_TLS;
  if (o->ca_file && rc == CURLE_OK) rc = curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file);
  if (o->insecure) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (rc != CURLE_OK) {
    snprintf(msg, msglen, "%s", curl_easy_strerror(rc));
    sl_httpc_req_free(r);
    return NULL;
  }
  return r;
}

/* Queues r for the loop thread (start_queued); the first request queued since the loop thread
 * last looked wakes it through the eventfd. */
int sl_httpc_start(sl_httpc_req *r, void *owner, sl_httpc_cb cb, void *arg, uint64_t token) {
  sl_httpc *h = r->h;
  r->owner = owner;
  r->cb = cb;
  r->arg = arg;
  r->token = token;
  r->qnext = NULL;
  sl_loop_hold(h->loop, 1);
  pthread_mutex_lock(&h->qmu);
  atomic_store(&r->state, R_QUEUED);
  if (h->qtail) h->qtail->qnext = r;
  else h->qhead = r;
  h->qtail = r;
  bool poke = !h->poked;
  h->poked = true;
  pthread_mutex_unlock(&h->qmu);
  if (poke) {
    uint64_t one = 1;
    ssize_t w = write(h->efd, &one, sizeof one);
    (void)w; /* a full eventfd is still readable */
  }
  return 0;
}

/* Takes a queued or running request out (its callback will not run). mu held. */
static void cancel_locked(sl_httpc *h, sl_httpc_req *r) {
  int st = atomic_load(&r->state);
  if (st == R_QUEUED) {
    pthread_mutex_lock(&h->qmu);
    sl_httpc_req *prev = NULL;
    for (sl_httpc_req *q = h->qhead; q; prev = q, q = q->qnext) {
      if (q != r) continue;
      if (prev) prev->qnext = r->qnext;
      else h->qhead = r->qnext;
      if (h->qtail == r) h->qtail = prev;
      break;
    }
    pthread_mutex_unlock(&h->qmu);
  } else if (st == R_RUNNING) {
    curl_multi_remove_handle(r->sh->multi, r->easy);
    r->sh->nrunning--;
    if (r->prev) r->prev->next = r->next;
    else h->running = r->next;
    if (r->next) r->next->prev = r->prev;
  } else {
    return;
  }
  atomic_store(&r->state, R_CANCELLED);
  sl_loop_hold(h->loop, -1);
}

void sl_httpc_cancel_owner(sl_httpc *h, void *owner) {
  if (!h) return;
  pthread_mutex_lock(&h->mu);
  for (sl_httpc_req *r = h->running, *next; r; r = next) {
    next = r->next;
    if (r->owner == owner) cancel_locked(h, r);
  }
  for (;;) { /* queued ones (cancel_locked unlinks them) */
    pthread_mutex_lock(&h->qmu);
    sl_httpc_req *r = h->qhead;
    while (r && r->owner != owner) r = r->qnext;
    pthread_mutex_unlock(&h->qmu);
    if (!r) break;
    cancel_locked(h, r);
  }
  pthread_mutex_unlock(&h->mu);
}

/* Undoes what request r set on its easy handle beyond base_opts (nothing of r stays pointed to),
 * so that the handle can go back to the pool. Options of TLS (a CA file, no verification) are
 * undone by a reset, their defaults being libcurl's own. */
static void unclean(sl_httpc_req *r) {
  CURL *e = r->easy;
  if (r->extras & X_TLS) {
    curl_easy_reset(e);
    if (base_opts(r->h, e) != CURLE_OK) { /* cannot happen: it worked when the handle was made */
      curl_easy_cleanup(e);
      r->easy = NULL;
    }
    return;
  }
  curl_easy_setopt(e, CURLOPT_PRIVATE, NULL);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
  if (r->uh) curl_easy_setopt(e, CURLOPT_CURLU, NULL);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, NULL);
  if (r->extras & X_BODY) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
  }
  if (r->extras & (X_BODY | X_NOBODY)) curl_easy_setopt(e, CURLOPT_HTTPGET, 1L); /* method GET, body wanted */
  if (r->extras & X_CUSTOM) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
  if (r->extras & X_HEADERS) curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
  if (r->extras & X_TIMEOUT) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 0L);
}

void sl_httpc_req_free(sl_httpc_req *r) {
  if (!r) return;
  sl_httpc *h = r->h;
  int st = atomic_load(&r->state); /* done or never started: only its owner touches it now */
  if (st == R_QUEUED || st == R_RUNNING) {
    pthread_mutex_lock(&h->mu);
    cancel_locked(h, r);
    pthread_mutex_unlock(&h->mu);
  }
  unclean(r);
  pthread_mutex_lock(&h->qmu);
  bool keep = r->easy && h->npool < POOL_MAX;
  if (keep) h->pool[h->npool++] = r->easy;
  pthread_mutex_unlock(&h->qmu);
  if (!keep && r->easy) curl_easy_cleanup(r->easy);
  curl_slist_free_all(r->hdrs);
  sl_buf_close(&r->hraw);
  sl_buf_close(&r->resp);
  sl__free(r->body);
  curl_url_cleanup(r->uh);
  sl__free(r->url);
  sl__free(r->method);
  sl__free(r);
}

int sl_httpc_result(const sl_httpc_req *r, long *status, const char **errmsg) {
  *status = r->status;
  *errmsg = r->err;
  return r->kind;
}

const char *sl_httpc_body(const sl_httpc_req *r, size_t *len) {
  *len = r->resp.len;
  return r->resp.len ? r->resp.data : "";
}

bool sl_httpc_header(const sl_httpc_req *r, size_t *pos, const char **name, const char **value) {
  if (*pos >= r->hraw.len) return false;
  *name = r->hraw.data + *pos;
  *value = *name + strlen(*name) + 1;
  *pos = (size_t)(*value + strlen(*value) + 1 - r->hraw.data);
  return true;
}

const char *sl_httpc_url(const sl_httpc_req *r) { return r->url; }
const char *sl_httpc_method(const sl_httpc_req *r) { return r->method; }
