/*
 * httpc.h — the engine's HTTP client on its event loop (sl_httpc_ prefix): libcurl's
 * multi-socket interface driven by persistent fd watches of the loop (vm/loop.h), so any number
 * of requests in flight cost one loop thread, not a thread each. One client per engine (created
 * on first use): its connection pool is shared by every pipeline of the engine and bounded per
 * host. Used by `sluice.http` (vm/lua_http.c) and the `http` sink (stages/http.c).
 *
 * A request is made (sl_httpc_req_new), started with a completion callback, and then belongs to
 * whoever started it until sl_httpc_req_free, which also cancels it when still in flight. The
 * completion callback runs once, on the loop thread, after the response (or the error) is in
 * the request; it must not free the request (it posts a token to a stage, which reads the result
 * on a worker). sl_httpc_cancel_owner cancels every request of an owner (a stage instance being
 * torn down): afterwards none of their callbacks runs.
 *
 * While requests are in flight the client holds the virtual clock (sl_loop_hold): network I/O
 * takes no virtual time. libcurl's own timers (connect and request timeouts) run on the real
 * clock, from a timerfd of the client.
 *
 * Only the loop thread drives curl in the hot path: sl_httpc_start queues the request and the
 * loop thread adds what is queued after every socket action (or when the queue's eventfd wakes
 * it), so workers never wait while the loop thread reads answers. What a worker can do without
 * the multi handle it does itself, in sl_httpc_req_new: the URL is parsed there (CURLOPT_CURLU)
 * and a pooled easy handle keeps the options every request shares.
 *
 * Locks: `mu` guards the multi handle and every request's state; curl callbacks run with it held.
 * `qmu` (a leaf) guards the start queue and the pool of easy handles.
 * Order: loop dispatch -> mu -> qmu | loop mu | the stage's mailbox (the completion callback).
 */
#ifndef SL_HTTPC_H
#define SL_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "sluice.h"

typedef struct sl_httpc sl_httpc;
typedef struct sl_httpc_req sl_httpc_req;

/* Where a request failed (no response): the `kind` of its error. */
enum {
  SL_HTTPC_OK = 0,
  SL_HTTPC_DNS,        /* the host name did not resolve */
  SL_HTTPC_CONNECT,    /* no connection (refused, unreachable) */
  SL_HTTPC_TLS,        /* TLS handshake or certificate verification */
  SL_HTTPC_TIMEOUT,    /* the request's own timeout */
  SL_HTTPC_CONNECTION, /* the connection broke (reset, closed before a whole response) */
  SL_HTTPC_URL,        /* a bad or unsupported URL */
  SL_HTTPC_OTHER,
};
/* "dns", "connect", "tls", "timeout", "connection", "url", "http" */
const char *sl_httpc_kind_name(int kind);

/* What to send. Strings are copied by sl_httpc_req_new. */
typedef struct sl_httpc_opts {
  const char *method;   /* NULL: GET, or POST when there is a body */
  const char *url;
  const char **headers; /* "Name: value" lines */
  size_t nheaders;
  const char *body;     /* NULL: none */
  size_t body_len;
  int64_t timeout;      /* ns, whole request (0: none) */
  const char *ca_file;  /* extra CA bundle for verification, or NULL */
  bool insecure;        /* skip TLS verification (tests against self-signed servers) */
} sl_httpc_opts;

typedef void (*sl_httpc_cb)(void *arg, uint64_t token);

/* The engine's client (created on first use). errors: NULL when libcurl cannot start */
sl_httpc *sl__engine_httpc(sl_engine *e);
/* errors: io, nomem */
int sl_httpc_new(sl_loop *loop, int max_per_host, sl_httpc **out);
/* Every request must have been freed. */
void sl_httpc_free(sl_httpc *h);

/* A request, not started. errors: NULL with msg (nomem, an option libcurl refuses) */
sl_httpc_req *sl_httpc_req_new(sl_httpc *h, const sl_httpc_opts *o, char *msg, size_t msglen);
/* Starts r (queues it for the loop thread); cb(arg, token) runs once it is done, on the loop
 * thread, also when libcurl refuses it (an error result). owner: for cancel_owner. Returns 0. */
int sl_httpc_start(sl_httpc_req *r, void *owner, sl_httpc_cb cb, void *arg, uint64_t token);
/* Cancels r if in flight and frees it. Not from its own callback. */
void sl_httpc_req_free(sl_httpc_req *r);
/* Cancels every request of owner still in flight (their callbacks will not run). */
void sl_httpc_cancel_owner(sl_httpc *h, void *owner);

/* The outcome of a finished request: SL_HTTPC_OK with a status, or an error kind and message. */
int sl_httpc_result(const sl_httpc_req *r, long *status, const char **errmsg);
const char *sl_httpc_body(const sl_httpc_req *r, size_t *len);
/* The response header at *pos (start at 0; *pos moves to the next), names lower-cased; false
 * past the last. */
bool sl_httpc_header(const sl_httpc_req *r, size_t *pos, const char **name, const char **value);
const char *sl_httpc_url(const sl_httpc_req *r);
const char *sl_httpc_method(const sl_httpc_req *r);

#endif
