/*
 * redis.h — what the Redis stream stages share (sl_redis_ prefix): the server address from a
 * redis:// URL, connecting (AUTH, SELECT) with hiredis, and the I/O thread each redis stage
 * runs its blocking hiredis calls on, so no worker ever waits on Redis.
 *
 * Threading: an sl_redis_io is a thread plus a mutex and a condition variable. The stage's task
 * and the thread exchange work under `mu`; the thread waits on `cv` (sl_redis_io_wait), which
 * the task signals when it hands over work and sl_redis_io_stop signals to end it. The hiredis
 * context belongs to the thread alone.
 */
#ifndef SL_REDIS_H
#define SL_REDIS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "sluice.h"

/* Where the server is: redis://host[:port][/db] (the password comes from an environment
 * variable, never the URL). */
typedef struct sl_redis_addr {
  char host[256];
  int port;        /* default 6379 */
  int db;          /* default 0 */
  char *password;  /* malloc'd, or NULL */
} sl_redis_addr;

/* The url and password_env options of a redis stage, as stored in its context. */
#define SL_REDIS_OPTIONS(T)                                                                                  \
  {SL_OPT_STRING, "url", "redis://127.0.0.1:6379/0", offsetof(T, url), "the server: redis://host:port/db", NULL, 0}, \
      {SL_OPT_STRING, "password_env", NULL, offsetof(T, password_env),                                       \
       "the environment variable holding the password (AUTH), if the server needs one", NULL, 0}

/* Parses url and reads the password from the environment variable password_env (may be NULL).
 * errors: config (msg says what is wrong) */
int sl_redis_addr_parse(const char *url, const char *password_env, sl_redis_addr *out, char *msg, size_t n);
void sl_redis_addr_free(sl_redis_addr *a);

/* Connects, authenticates and selects the database; timeout_ns bounds the connect and every
 * later read or write (0: 5 s). NULL on failure, with the reason in msg. */
redisContext *sl_redis_connect(const sl_redis_addr *a, int64_t timeout_ns, char *msg, size_t n);

/* A command's reply with the error reason in msg (an I/O error, or the server's error reply):
 * 0 and *out (free with freeReplyObject), SL_EIO (the connection is broken: drop it) or
 * SL_EFAILED (the server answered with an error). */
int sl_redis_reply(redisContext *c, redisReply **out, char *msg, size_t n);

/* Whether a server error reply is one that passes (the server is loading its data, busy with a
 * script, failing over): the command is tried again later, like after a lost connection. */
bool sl_redis_transient(const char *err);

/* The I/O thread of a redis stage. */
typedef struct sl_redis_io {
  pthread_t th;
  bool started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stop;          /* under mu: the thread should end */
} sl_redis_io;

void sl_redis_io_init(sl_redis_io *io);
/* Starts fn(arg) on a new thread. errors: io */
int sl_redis_io_start(sl_redis_io *io, void *(*fn)(void *), void *arg);
/* Asks the thread to end, wakes it, and joins it (no-op if it never started); then frees. */
void sl_redis_io_close(sl_redis_io *io);
/* Called with mu held: waits until signalled, stopped, or timeout_ns passed (< 0: no limit). */
void sl_redis_io_wait(sl_redis_io *io, int64_t timeout_ns);
/* The stop flag (locks mu). */
bool sl_redis_io_stopping(sl_redis_io *io);
/* Sleeps for the backoff of failed connection attempt `attempt` (1, 2, ...: 100 ms doubling to
 * 5 s), returning early when stopped. Returns false when stopped. */
bool sl_redis_io_backoff(sl_redis_io *io, int attempt);

/* Stream IDs "ms-seq". Returns false when text is not one. */
bool sl_redis_parse_id(const char *text, size_t len, uint64_t *ms, uint64_t *seq);

#endif
