/* redis.c — server addresses, connecting, and the I/O thread of the redis stages (redis.h). */
#include "redis.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"

int sl_redis_addr_parse(const char *url, const char *password_env, sl_redis_addr *out, char *msg, size_t n) {
  memset(out, 0, sizeof *out);
  out->port = 6379;
  const char *p = url ? url : "";
  if (strncmp(p, "redis://", 8) != 0) {
    snprintf(msg, n, "url '%s' is not redis://host:port/db", p);
    return SL_ECONFIG;
  }
  p += 8;
  if (strchr(p, '@')) {
    snprintf(msg, n, "url '%s' holds credentials: give the password in password_env instead", url);
    return SL_ECONFIG;
  }
  size_t hl = strcspn(p, ":/");
  if (hl == 0 || hl >= sizeof out->host) {
    snprintf(msg, n, "url '%s' has no host (redis://host:port/db)", url);
    return SL_ECONFIG;
  }
  memcpy(out->host, p, hl);
  out->host[hl] = 0;
  p += hl;
  if (*p == ':') {
    char *end;
    long port = strtol(p + 1, &end, 10);
    if (end == p + 1 || port < 1 || port > 65535 || (*end && *end != '/')) {
      snprintf(msg, n, "url '%s' has a bad port (1..65535)", url);
      return SL_ECONFIG;
    }
    out->port = (int)port;
    p = end;
  }
  if (*p == '/' && p[1]) {
    char *end;
    long db = strtol(p + 1, &end, 10);
    if (end == p + 1 || *end || db < 0 || db > 1000000) {
      snprintf(msg, n, "url '%s' has a bad database number", url);
      return SL_ECONFIG;
    }
    out->db = (int)db;
  }
  if (password_env && *password_env) {
    const char *pw = getenv(password_env);
    if (!pw || !*pw) {
      snprintf(msg, n, "password_env names '%s', which is not set: export it with the server's password", password_env);
      return SL_ECONFIG;
    }
    out->password = sl__xstrdup(pw);
  }
  return 0;
}

void sl_redis_addr_free(sl_redis_addr *a) {
  sl__free(a->password);
  a->password = NULL;
}

static struct timeval tv_of(int64_t ns) {
  if (ns <= 0) ns = 5000000000LL;
  return (struct timeval){.tv_sec = ns / 1000000000, .tv_usec = (ns % 1000000000) / 1000};
}

/* One command on a fresh connection; false (and msg) unless the reply is not an error. */
static bool setup_cmd(redisContext *c, int argc, const char **argv, char *msg, size_t n) {
  redisReply *r = redisCommandArgv(c, argc, argv, NULL);
  if (!r) {
    snprintf(msg, n, "%s", c->errstr[0] ? c->errstr : "connection lost");
    return false;
  }
  bool ok = r->type != REDIS_REPLY_ERROR;
  if (!ok) snprintf(msg, n, "%s: %s", argv[0], r->str);
  freeReplyObject(r);
  return ok;
}

redisContext *sl_redis_connect(const sl_redis_addr *a, int64_t timeout_ns, char *msg, size_t n) {
  struct timeval tv = tv_of(timeout_ns);
  redisContext *c = redisConnectWithTimeout(a->host, a->port, tv);
  if (!c || c->err) {
    snprintf(msg, n, "cannot connect to %s:%d: %s", a->host, a->port, c ? c->errstr : "out of memory");
    if (c) redisFree(c);
    return NULL;
  }
  redisSetTimeout(c, tv);
  redisEnableKeepAlive(c);
  if (a->password && !setup_cmd(c, 2, (const char *[]){"AUTH", a->password}, msg, n)) goto fail;
  if (a->db) {
    char db[16];
    snprintf(db, sizeof db, "%d", a->db);
    if (!setup_cmd(c, 2, (const char *[]){"SELECT", db}, msg, n)) goto fail;
  }
  return c;
fail:
  redisFree(c);
  return NULL;
}

int sl_redis_reply(redisContext *c, redisReply **out, char *msg, size_t n) {
  void *r = NULL;
  *out = NULL;
  if (redisGetReply(c, &r) != REDIS_OK || !r) {
    snprintf(msg, n, "connection lost: %s", c->errstr[0] ? c->errstr : "no reply");
    return SL_EIO;
  }
  redisReply *rr = r;
  if (rr->type == REDIS_REPLY_ERROR) {
    snprintf(msg, n, "%s", rr->str);
    freeReplyObject(rr);
    return SL_EFAILED;
  }
  *out = rr;
  return 0;
}

bool sl_redis_transient(const char *err) {
  static const char *const passing[] = {"LOADING", "BUSY ", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", "READONLY", "NOREPLICAS"};
  for (size_t i = 0; i < sizeof passing / sizeof *passing; i++)
    if (strncmp(err, passing[i], strlen(passing[i])) == 0) return true;
  return false;
}

void sl_redis_io_init(sl_redis_io *io) {
  memset(io, 0, sizeof *io);
  pthread_mutex_init(&io->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&io->cv, &ca);
  pthread_condattr_destroy(&ca);
}

int sl_redis_io_start(sl_redis_io *io, void *(*fn)(void *), void *arg) {
  if (pthread_create(&io->th, NULL, fn, arg) != 0) return SL_EIO;
  io->started = true;
  return 0;
}

void sl_redis_io_close(sl_redis_io *io) {
  pthread_mutex_lock(&io->mu);
  io->stop = true;
  pthread_cond_broadcast(&io->cv);
  pthread_mutex_unlock(&io->mu);
  if (io->started) pthread_join(io->th, NULL);
  io->started = false;
  pthread_mutex_destroy(&io->mu);
  pthread_cond_destroy(&io->cv);
}

void sl_redis_io_wait(sl_redis_io *io, int64_t timeout_ns) {
  if (io->stop) return;
  if (timeout_ns < 0) {
    pthread_cond_wait(&io->cv, &io->mu);
    return;
  }
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  int64_t ns = ts.tv_nsec + timeout_ns % 1000000000;
  ts.tv_sec += timeout_ns / 1000000000 + ns / 1000000000;
  ts.tv_nsec = ns % 1000000000;
  pthread_cond_timedwait(&io->cv, &io->mu, &ts);
}

bool sl_redis_io_stopping(sl_redis_io *io) {
  pthread_mutex_lock(&io->mu);
  bool s = io->stop;
  pthread_mutex_unlock(&io->mu);
  return s;
}

bool sl_redis_io_backoff(sl_redis_io *io, int attempt) {
  int64_t wait = 100000000LL;
  for (int i = 1; i < attempt && wait < 5000000000LL; i++) wait *= 2;
  if (wait > 5000000000LL) wait = 5000000000LL;
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pthread_mutex_lock(&io->mu);
  for (int64_t left = wait; left > 0 && !io->stop;) { /* other signals (work handed over) do not end it */
    sl_redis_io_wait(io, left);
    clock_gettime(CLOCK_MONOTONIC, &t);
    left = wait - ((int64_t)(t.tv_sec - t0.tv_sec) * 1000000000 + (t.tv_nsec - t0.tv_nsec));
  }
  bool go_on = !io->stop;
  pthread_mutex_unlock(&io->mu);
  return go_on;
}

bool sl_redis_parse_id(const char *text, size_t len, uint64_t *ms, uint64_t *seq) {
  char buf[48];
  if (len == 0 || len >= sizeof buf) return false;
  memcpy(buf, text, len);
  buf[len] = 0;
  char *end;
  errno = 0;
  *ms = strtoull(buf, &end, 10);
  if (end == buf || *end != '-' || errno) return false;
  char *s = end + 1;
  *seq = strtoull(s, &end, 10);
  return end != s && !*end && !errno;
}
