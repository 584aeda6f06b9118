/*
 * policy.h — what happens around a call of a stage function (sl_policy_ prefix): its timeout,
 * its retries with backoff, and the circuit breaker that stops calling a failing function
 * (DESIGN section 6, docs/flow.md). The options live in the function stages' options tables
 * (SL_POLICY_OPTIONS) and in the `timeout`, `retry` and `circuit_breaker` stage kinds; the Lua call
 * driver (luafn.c) applies them. Everything waits on engine timers, so it runs on the virtual
 * clock too.
 */
#ifndef SL_POLICY_H
#define SL_POLICY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "sluice.h"

enum { SL_BACKOFF_CONSTANT, SL_BACKOFF_LINEAR, SL_BACKOFF_EXPONENTIAL };
enum { SL_JITTER_NONE, SL_JITTER_FULL, SL_JITTER_EQUAL, SL_JITTER_DECORRELATED };
enum { SL_CB_CLOSED, SL_CB_OPEN, SL_CB_HALF_OPEN };

typedef struct sl_retry {
  int64_t attempts;    /* total tries, >= 1 */
  int backoff;         /* SL_BACKOFF_* */
  int64_t initial;     /* ns: the first wait */
  double multiplier;   /* exponential growth */
  int64_t max;         /* ns: cap on one wait (0: none) */
  int jitter;          /* SL_JITTER_* */
  int64_t max_elapsed; /* ns: no retry would start later than this after the first try (0: none) */
  char *retry_on;      /* Lua predicate over the error message, or NULL: every error */
} sl_retry;

typedef struct sl_breaker_opts {
  int64_t window;          /* calls in the count window */
  int64_t window_time;     /* ns: a time window instead (0: count window) */
  int64_t min_calls;       /* calls in the window before it can open */
  double failure_rate;     /* percent of failed calls that opens it */
  int64_t slow_duration;   /* ns: a call at least this long is slow (0: no slow-call rule) */
  double slow_rate;        /* percent of slow calls that opens it */
  int64_t open_for;        /* ns: how long it stays open */
  int64_t half_open_calls; /* trial calls when half-open */
} sl_breaker_opts;

typedef struct sl_breaker sl_breaker; /* shared by the instances of a stage */

/* The policy options of a function stage, as stored in its context. */
typedef struct sl_policy_opts {
  int64_t timeout;      /* ns, 0: none */
  sl_value retry;       /* map of retry options, or nil */
  sl_value breaker;     /* map of circuit breaker options, or nil */
  /* The `retry` and `circuit_breaker` stage kinds take these options flat, in their own table:
   * parsed already, instead of the maps (NULL: none). */
  const sl_retry *retry_set;
  const sl_breaker_opts *breaker_set;
} sl_policy_opts;

/* The three entries of a function stage's options table; T is its context type, with an
 * sl_policy_opts member named `policy`. */
#define SL_POLICY_OPTIONS(T)                                                                                       \
  {SL_OPT_DURATION, "timeout", NULL, offsetof(T, policy.timeout),                                                 \
   "deadline of each call: a call still waiting then is cancelled and the record fails with \"timeout after <d>\"", \
   NULL, 0},                                                                                                      \
      {SL_OPT_VALUE, "retry", NULL, offsetof(T, policy.retry),                                                     \
       "retry failed calls, a map: attempts, backoff, initial, multiplier, max, jitter, max_elapsed, retry_on (docs/lua.md)", NULL, 0},                          \
      {SL_OPT_VALUE, "circuit_breaker", NULL, offsetof(T, policy.breaker),                                       \
       "stop calling a failing function, a map: window or window_time, min_calls, failure_rate, slow_call, slow_rate, open_for, half_open_calls (docs/lua.md)", \
       NULL, 0}

/* The entries of the retry and circuit breaker maps, at offset B of a struct holding an sl_retry
 * / sl_breaker_opts there: the tables below (B = 0), and the options of the `retry` and
 * `circuit_breaker` stage kinds (stages/retry.c, stages/circuit_breaker.c), which take them flat. */
#define SL_RETRY_OPTION_LIST(B)                                                                                            \
  {SL_OPT_INT, "attempts", "3", (B) + offsetof(sl_retry, attempts), "total tries of a record, the first included", NULL, 0},  \
      {SL_OPT_ENUM, "backoff", "exponential", (B) + offsetof(sl_retry, backoff), "how the wait grows: constant, linear or exponential", "constant|linear|exponential", 0}, \
      {SL_OPT_DURATION, "initial", "100ms", (B) + offsetof(sl_retry, initial), "the wait before the first retry", NULL, 0},   \
      {SL_OPT_DOUBLE, "multiplier", "2", (B) + offsetof(sl_retry, multiplier), "growth of each wait (exponential)", NULL, 0}, \
      {SL_OPT_DURATION, "max", "0", (B) + offsetof(sl_retry, max), "cap on one wait (0: none)", NULL, 0},                    \
      {SL_OPT_ENUM, "jitter", "none", (B) + offsetof(sl_retry, jitter), "randomness of a wait d: none, full [0,d], equal [d/2,d], decorrelated [initial, 3*previous]", "none|full|equal|decorrelated", 0}, \
      {SL_OPT_DURATION, "max_elapsed", "0", (B) + offsetof(sl_retry, max_elapsed), "give up when a retry would start this long after the first try (0: no limit)", NULL, 0}, \
      {SL_OPT_STRING, "retry_on", NULL, (B) + offsetof(sl_retry, retry_on), "Lua predicate over the error message (e): retry only when it is true", NULL, 0}
#define SL_BREAKER_OPTION_LIST(B)                                                                                          \
  {SL_OPT_INT, "window", "100", (B) + offsetof(sl_breaker_opts, window), "count window: the outcomes of the last N calls", NULL, 0}, \
      {SL_OPT_DURATION, "window_time", "0", (B) + offsetof(sl_breaker_opts, window_time), "time window instead: the calls of the last d", NULL, 0}, \
      {SL_OPT_INT, "min_calls", "10", (B) + offsetof(sl_breaker_opts, min_calls), "calls the window must hold before the breaker can open", NULL, 0}, \
      {SL_OPT_DOUBLE, "failure_rate", "50", (B) + offsetof(sl_breaker_opts, failure_rate), "percent of failed calls that opens the breaker", NULL, 0}, \
      {SL_OPT_DURATION, "slow_call", "0", (B) + offsetof(sl_breaker_opts, slow_duration), "a call that takes at least this long is slow (0: no slow-call rule)", NULL, 0}, \
      {SL_OPT_DOUBLE, "slow_rate", "100", (B) + offsetof(sl_breaker_opts, slow_rate), "percent of slow calls that opens the breaker", NULL, 0}, \
      {SL_OPT_DURATION, "open_for", "30s", (B) + offsetof(sl_breaker_opts, open_for), "how long it stays open (calls fail fast)", NULL, 0}, \
      {SL_OPT_INT, "half_open_calls", "5", (B) + offsetof(sl_breaker_opts, half_open_calls), "trial calls when half-open", NULL, 0}
/* Offsets are into sl_retry / sl_breaker_opts. */
extern const sl_option sl_retry_options[];
extern const sl_option sl_breaker_options[];

/* A stage's resolved policy. */
typedef struct sl_policy {
  int64_t timeout;
  bool has_retry;
  sl_retry retry;
  bool has_breaker;
  sl_breaker_opts cb;
} sl_policy;

/* Reads the options (retry and circuit_breaker maps checked against their tables). errors:
 * config, with where/stage in the message */
int sl_policy_parse(const sl_policy_opts *o, sl_policy *out, const char *where, const char *stage, sl_error_t *err);
void sl_policy_free(sl_policy *p);

/* "timeout after 1s" (250ms, 1.5s), malloc'd. */
char *sl_policy_timeout_msg(int64_t ns);

/* The wait before retry number n (1 = the first retry), given the previous wait (for
 * decorrelated jitter) and a random state. */
int64_t sl_retry_delay(const sl_retry *r, int n, int64_t prev, uint64_t *rng);
/* A uniform draw in [lo, hi] (ns). */
int64_t sl_policy_uniform(uint64_t *rng, int64_t lo, int64_t hi);

/* The breaker of stage `stage` of pipeline p (created on first use; shared by its instances;
 * freed with the pipeline). */
sl_breaker *sl_breaker_get(sl_pipeline *p, const char *stage, const sl_breaker_opts *o);
/* The same for a stage instance's own stage (for stage kinds outside vm/). */
sl_breaker *sl_breaker_of(sl_stage *st, const sl_breaker_opts *o);
/* Counts one retry in the stage's `retries` stat. */
void sl_policy_count_retry(sl_stage *st);
/* Before a call at time now: true when it may run (closed, or a half-open trial slot). */
bool sl_breaker_allow(sl_breaker *b, int64_t now, sl_stage *st);
/* After a call that began at `start`: its outcome. */
void sl_breaker_record(sl_breaker *b, int64_t start, int64_t now, bool failed, sl_stage *st);
/* The current state (SL_CB_*) at time now, and its name. */
int sl_breaker_state(sl_breaker *b);
const char *sl_breaker_state_name(int state);
void sl__breaker_free(sl_breaker *b);

#endif
