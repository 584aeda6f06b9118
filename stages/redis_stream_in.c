/*
 * redis_stream_in — reads a Redis stream as a member of a consumer group, and acknowledges each
 * entry (XACK) only once every record derived from it reached a sink or the dead letter.
 *
 * Many sluice processes on many machines share one stream through one group: each entry goes to
 * one of them. An entry a consumer read but never acknowledged (it crashed, or was stopped
 * before finishing it) stays pending in the group; after `claim_idle` another consumer takes it
 * over with XAUTOCLAIM. The guarantee is at-least-once (docs/scaling.md).
 *
 * Threading: the blocking hiredis calls run on the stage's own I/O thread (redis.h), never on a
 * worker. The thread reads entries into `ready`; produce() (the stage's task) emits them, each
 * with an ack token whose id is the entry's address; acked() (the task) moves completed entries
 * to `done`, which the thread acknowledges with XACK and frees. Both lists are under io.mu.
 * The set of entries the process holds (`known`: ready, in the pipeline, or waiting for their
 * XACK) belongs to the thread: entries read again — this consumer's pending history re-read
 * after a reconnect, or its own entries returned by XAUTOCLAIM — are skipped when known.
 *
 * While it holds entries (they wait in a slow stage), the thread resets their idle time every
 * claim_idle / 3 (XCLAIM ... JUSTID to itself), so only the entries of a consumer that died or
 * lost its server for longer than claim_idle are taken over.
 *
 * After a lost connection the thread reconnects with backoff, sends the XACKs not yet
 * confirmed, and re-reads this consumer's pending entries (entries whose XREADGROUP reply was
 * lost are delivered then): nothing is lost, and entries still in the pipeline are not read
 * twice.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "redis.h"

enum { START_NEW = 0, START_ALL };

typedef struct rent {     /* one entry of the stream */
  uint64_t ms, seq;       /* its ID */
  sl_value rec;           /* the record, until emitted */
  bool bad;               /* `fields` names a field it lacks: the record fails */
  bool ack;               /* acknowledge it (false: the pipeline was aborted) */
  struct rent *next;      /* link in ready, done or the thread's XACK list */
  struct rent *hnext;     /* link in the known set */
} rent;

typedef struct src {
  char *url;              /* options */
  char *password_env;
  char *stream;
  char *group;
  char *consumer;
  int start;
  int64_t batch;
  int64_t block;
  int64_t claim_idle;
  char *fields;
  char *id_field;
  sl_stage *st;
  sl_redis_addr addr;
  char name[300];         /* the consumer name used */
  sl_redis_io io;
  /* under io.mu */
  rent *ready, *ready_tail;
  size_t nready;
  rent *done;             /* completed entries (LIFO) */
  char fatal[600];        /* a failure the thread cannot recover from, or "" */
  /* the I/O thread's own */
  redisContext *c;
  rent **known;           /* hash set of held entries */
  size_t kcap, klen;
  rent *xack;             /* entries to acknowledge (or free) */
} src;

static const sl_option options[] = {
    SL_REDIS_OPTIONS(src),
    {SL_OPT_STRING, "stream", NULL, offsetof(src, stream), "the stream key to read", NULL, SL_OPT_REQUIRED | SL_OPT_PRIMARY},
    {SL_OPT_STRING, "group", NULL, offsetof(src, group), "the consumer group (created with MKSTREAM when missing)", NULL, SL_OPT_REQUIRED},
    {SL_OPT_ENUM, "start", "$", offsetof(src, start), "where a new group starts: $ (entries added from now on) or 0 (the whole stream)", "$|0", 0},
    {SL_OPT_STRING, "consumer", NULL, offsetof(src, consumer), "this process's name in the group (default hostname-pid); a fixed name re-reads its own pending entries when restarted", NULL, 0},
    {SL_OPT_INT, "batch", "256", offsetof(src, batch), "entries per XREADGROUP (COUNT)", NULL, 0},
    {SL_OPT_DURATION, "block", "200ms", offsetof(src, block), "how long one XREADGROUP waits for new entries (BLOCK); acknowledgements wait for it too", NULL, 0},
    {SL_OPT_DURATION, "claim_idle", "1m", offsetof(src, claim_idle), "take over entries another consumer left pending longer than this (XAUTOCLAIM); 0: never. A live consumer keeps the entries it holds from looking idle", NULL, 0},
    {SL_OPT_STRING, "fields", "map", offsetof(src, fields), "map: the record is a map of the entry's fields (strings); otherwise the name of the one field whose value is the record", NULL, 0},
    {SL_OPT_STRING, "id_field", NULL, offsetof(src, id_field), "with fields: map, also put the entry ID under this key (for idempotent sinks)", NULL, 0},
    SL_OPTIONS_END,
};

/* ---- the known set (I/O thread) ---- */

static size_t khash(uint64_t ms, uint64_t seq, size_t cap) {
  uint64_t h = (ms * 0x9E3779B97F4A7C15ULL) ^ (seq * 0xC2B2AE3D27D4EB4FULL);
  return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

static rent *known_find(src *s, uint64_t ms, uint64_t seq) {
  if (!s->kcap) return NULL;
  for (rent *r = s->known[khash(ms, seq, s->kcap)]; r; r = r->hnext)
    if (r->ms == ms && r->seq == seq) return r;
  return NULL;
}

static void known_add(src *s, rent *r) {
  if (s->klen >= s->kcap) {
    size_t ncap = s->kcap ? s->kcap * 2 : 1024;
    rent **nk = sl__xcalloc(ncap, sizeof *nk);
    for (size_t i = 0; i < s->kcap; i++)
      for (rent *e = s->known[i], *next; e; e = next) {
        next = e->hnext;
        size_t h = khash(e->ms, e->seq, ncap);
        e->hnext = nk[h];
        nk[h] = e;
      }
    sl__free(s->known);
    s->known = nk;
    s->kcap = ncap;
  }
  size_t h = khash(r->ms, r->seq, s->kcap);
  r->hnext = s->known[h];
  s->known[h] = r;
  s->klen++;
}

static void known_del(src *s, rent *r) {
  for (rent **pp = &s->known[khash(r->ms, r->seq, s->kcap)]; *pp; pp = &(*pp)->hnext)
    if (*pp == r) {
      *pp = r->hnext;
      s->klen--;
      return;
    }
}

/* ---- the I/O thread ---- */

static void set_fatal(src *s, const char *msg) {
  pthread_mutex_lock(&s->io.mu);
  if (!s->fatal[0]) snprintf(s->fatal, sizeof s->fatal, "%s", msg);
  pthread_mutex_unlock(&s->io.mu);
  sl_stage_wake(s->st);
}

static void drop_conn(src *s, const char *why) {
  sl_stage_log(s->st, SL_LOG_WARN, "redis %s:%d: %s; reconnecting", s->addr.host, s->addr.port, why);
  redisFree(s->c);
  s->c = NULL;
}

/* Sends XACK for every entry in s->xack (and frees those not to acknowledge). Returns false when
 * the connection broke (the list is kept for the next connection). */
static bool send_acks(src *s) {
  enum { PER_CMD = 1000 };
  const char *argv[3 + PER_CMD];
  size_t lens[3 + PER_CMD];
  char ids[PER_CMD][48];
  while (s->xack) {
    int n = 0;
    rent *r = s->xack;
    argv[0] = "XACK";
    argv[1] = s->stream;
    argv[2] = s->group;
    for (; r && n < PER_CMD; r = r->next) {
      if (!r->ack) continue;
      int len = snprintf(ids[n], sizeof ids[n], "%llu-%llu", (unsigned long long)r->ms, (unsigned long long)r->seq);
      argv[3 + n] = ids[n];
      lens[3 + n] = (size_t)len;
      n++;
    }
    if (n) {
      for (int k = 0; k < 3; k++) lens[k] = strlen(argv[k]);
      redisReply *rep = redisCommandArgv(s->c, 3 + n, argv, lens);
      if (!rep) return false;
      if (rep->type == REDIS_REPLY_ERROR && sl_redis_transient(rep->str)) {
        freeReplyObject(rep);
        return false;
      }
      if (rep->type == REDIS_REPLY_ERROR)
        sl_stage_log(s->st, SL_LOG_ERROR, "XACK %s %s: %s (the entries stay pending)", s->stream, s->group, rep->str);
      freeReplyObject(rep);
    }
    while (s->xack != r) { /* confirmed (or not to acknowledge): forget them */
      rent *e = s->xack;
      s->xack = e->next;
      known_del(s, e);
      sl_value_free(e->rec);
      sl__free(e);
    }
  }
  return true;
}

/* Moves completed entries from `done` to the XACK list. */
static void take_done(src *s) {
  pthread_mutex_lock(&s->io.mu);
  rent *d = s->done;
  s->done = NULL;
  pthread_mutex_unlock(&s->io.mu);
  while (d) {
    rent *next = d->next;
    d->next = s->xack;
    s->xack = d;
    d = next;
  }
}

/* The record of an entry's field list (an array of field, value, ...). */
static int make_record(src *s, rent *e, const redisReply *fv) {
  bool one = strcmp(s->fields, "map") != 0;
  sl_value m = sl_map(fv->elements / 2 + 1);
  for (size_t k = 0; k + 1 < fv->elements; k += 2) {
    const redisReply *f = fv->element[k], *v = fv->element[k + 1];
    if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
    sl_value sv;
    if (sl_str_try(v->str, v->len, &sv) != 0) {
      sl_value_free(m);
      return SL_ENOMEM;
    }
    if (one && f->len == strlen(s->fields) && memcmp(f->str, s->fields, f->len) == 0) {
      sl_value_free(m);
      e->rec = sv;
      return 0;
    }
    sl_map_set(&m, f->str, f->len, sv);
  }
  if (one) e->bad = true;
  if (!one && s->id_field) sl_map_setc(&m, s->id_field, sl_strf("%llu-%llu", (unsigned long long)e->ms, (unsigned long long)e->seq));
  e->rec = m;
  return 0;
}

/* Takes the entries of an XREADGROUP/XAUTOCLAIM entry list into `ready` (known ones are
 * skipped; deleted ones, with no fields, are acknowledged). Returns how many entries the list
 * had, or < 0 when a reply is malformed. *last gets the last ID seen. */
static long take_entries(src *s, const redisReply *list, char *last, size_t lastn) {
  if (list->type != REDIS_REPLY_ARRAY) return -1;
  rent *head = NULL, *tail = NULL;
  size_t added = 0;
  for (size_t i = 0; i < list->elements; i++) {
    const redisReply *ent = list->element[i];
    if (ent->type == REDIS_REPLY_NIL) continue;
    if (ent->type != REDIS_REPLY_ARRAY || ent->elements < 2 || ent->element[0]->type != REDIS_REPLY_STRING) return -1;
    const redisReply *id = ent->element[0];
    uint64_t ms, seq;
    if (!sl_redis_parse_id(id->str, id->len, &ms, &seq)) return -1;
    snprintf(last, lastn, "%.*s", (int)id->len, id->str);
    if (known_find(s, ms, seq)) continue;
    rent *e = sl__xcalloc(1, sizeof *e);
    e->ms = ms;
    e->seq = seq;
    known_add(s, e);
    if (ent->element[1]->type != REDIS_REPLY_ARRAY) { /* deleted from the stream meanwhile */
      e->ack = true;
      e->next = s->xack;
      s->xack = e;
      continue;
    }
    if (make_record(s, e, ent->element[1]) != 0) {
      known_del(s, e);
      sl__free(e);
      set_fatal(s, "out of memory reading an entry");
      return -1;
    }
    if (tail) tail->next = e;
    else head = e;
    tail = e;
    added++;
  }
  if (head) {
    pthread_mutex_lock(&s->io.mu);
    if (s->ready_tail) s->ready_tail->next = head;
    else s->ready = head;
    s->ready_tail = tail;
    s->nready += added;
    pthread_mutex_unlock(&s->io.mu);
    sl_stage_wake(s->st);
  }
  return (long)list->elements;
}

/* Connects and makes sure the group exists. false: not now (retry later). */
static bool connect_group(src *s) {
  char msg[600];
  s->c = sl_redis_connect(&s->addr, s->block + 5000000000LL, msg, sizeof msg);
  if (!s->c) {
    sl_stage_log(s->st, SL_LOG_WARN, "%s; retrying", msg);
    return false;
  }
  const char *argv[] = {"XGROUP", "CREATE", s->stream, s->group, s->start == START_ALL ? "0" : "$", "MKSTREAM"};
  redisReply *r = redisCommandArgv(s->c, 6, argv, NULL);
  if (!r) {
    drop_conn(s, s->c->errstr);
    return false;
  }
  if (r->type == REDIS_REPLY_ERROR && sl_redis_transient(r->str)) {
    drop_conn(s, r->str);
    freeReplyObject(r);
    return false;
  }
  if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
    snprintf(msg, sizeof msg, "XGROUP CREATE %s %s: %s", s->stream, s->group, r->str);
    set_fatal(s, msg);
  }
  freeReplyObject(r);
  return true;
}

/* One XREADGROUP (id ">" for new entries, else this consumer's pending history after id) or
 * XAUTOCLAIM from cursor. Returns the number of entries in the reply, or < 0 when the
 * connection broke (or failed: s->fatal). cursor/next get the position to go on from. */
static long read_cmd(src *s, bool claim, const char *id, bool block, char *next, size_t nextn) {
  char count[24], blk[24], idle[24];
  snprintf(count, sizeof count, "%lld", (long long)s->batch);
  snprintf(blk, sizeof blk, "%lld", (long long)(s->block / 1000000));
  snprintf(idle, sizeof idle, "%lld", (long long)(s->claim_idle / 1000000));
  const char *argv[12];
  int n = 0;
  if (claim) {
    const char *a[] = {"XAUTOCLAIM", s->stream, s->group, s->name, idle, id, "COUNT", count};
    for (size_t k = 0; k < sizeof a / sizeof *a; k++) argv[n++] = a[k];
  } else {
    const char *a[] = {"XREADGROUP", "GROUP", s->group, s->name, "COUNT", count};
    for (size_t k = 0; k < sizeof a / sizeof *a; k++) argv[n++] = a[k];
    if (block) {
      argv[n++] = "BLOCK";
      argv[n++] = blk;
    }
    argv[n++] = "STREAMS";
    argv[n++] = s->stream;
    argv[n++] = id;
  }
  redisReply *r = redisCommandArgv(s->c, n, argv, NULL);
  if (!r) {
    drop_conn(s, s->c->errstr[0] ? s->c->errstr : "connection lost");
    return -1;
  }
  long got = 0;
  if (r->type == REDIS_REPLY_ERROR) {
    if (strncmp(r->str, "NOGROUP", 7) == 0 || sl_redis_transient(r->str)) { /* NOGROUP: the server lost
                                                   the group (restarted without persistence) */
      drop_conn(s, r->str);
      freeReplyObject(r);
      return -1;
    }
    char msg[600];
    snprintf(msg, sizeof msg, "%s %s: %s", argv[0], s->stream, r->str);
    set_fatal(s, msg);
    got = -1;
  } else if (claim) { /* [next cursor, entries, deleted IDs] */
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || r->element[0]->type != REDIS_REPLY_STRING) got = -2;
    else {
      snprintf(next, nextn, "%s", r->element[0]->str);
      char last[48];
      got = take_entries(s, r->element[1], last, sizeof last);
    }
  } else if (r->type == REDIS_REPLY_ARRAY) { /* [[stream, entries]] */
    if (r->elements < 1 || r->element[0]->type != REDIS_REPLY_ARRAY || r->element[0]->elements < 2) got = -2;
    else got = take_entries(s, r->element[0]->element[1], next, nextn);
  } else if (r->type != REDIS_REPLY_NIL) {
    got = -2;
  }
  freeReplyObject(r);
  if (got == -2) set_fatal(s, "unexpected reply from the server (is it Redis 6.2 or newer?)");
  return got;
}

/* Resets the idle time of every entry this consumer holds (XCLAIM ... 0 ... JUSTID), so that
 * other consumers do not claim entries of a live consumer that is only slow. Returns false when
 * the connection broke. */
static bool heartbeat(src *s) {
  enum { PER_CMD = 1000 };
  const char *argv[6 + PER_CMD];
  char ids[PER_CMD][48];
  size_t b = 0;
  rent *e = NULL;
  for (;;) {
    int n = 0;
    while (n < PER_CMD) {
      while (!e && b < s->kcap) e = s->known[b++];
      if (!e) break;
      snprintf(ids[n], sizeof ids[n], "%llu-%llu", (unsigned long long)e->ms, (unsigned long long)e->seq);
      argv[5 + n] = ids[n];
      n++;
      e = e->hnext;
    }
    if (!n) return true;
    argv[0] = "XCLAIM";
    argv[1] = s->stream;
    argv[2] = s->group;
    argv[3] = s->name;
    argv[4] = "0";
    argv[5 + n] = "JUSTID";
    redisReply *r = redisCommandArgv(s->c, 6 + n, argv, NULL);
    if (!r) return false;
    freeReplyObject(r);
  }
}

/* A default-named consumer (hostname-pid) that holds no pending entry removes itself from the
 * group when it stops, so restarts do not pile up dead names. One with pending entries stays:
 * removing it would drop them (another consumer claims them after claim_idle). */
static void forget_me(src *s) {
  redisReply *r = redisCommandArgv(s->c, 7, (const char *[]){"XPENDING", s->stream, s->group, "-", "+", "1", s->name}, NULL);
  bool none = r && r->type == REDIS_REPLY_ARRAY && r->elements == 0;
  if (r) freeReplyObject(r);
  if (!none) return;
  r = redisCommandArgv(s->c, 5, (const char *[]){"XGROUP", "DELCONSUMER", s->stream, s->group, s->name}, NULL);
  if (r) freeReplyObject(r);
}

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *io_main(void *arg) {
  src *s = arg;
  int attempt = 0;
  bool history = true;    /* re-read this consumer's pending entries first */
  char hist[48] = "0";    /* where the history read goes on */
  char cursor[48] = "0-0"; /* XAUTOCLAIM's */
  int64_t period = s->claim_idle / 2;
  if (period < 50000000) period = 50000000;
  if (period > 10000000000LL) period = 10000000000LL;
  int64_t next_claim = mono_ns() + period;
  int64_t beat = s->claim_idle / 3; /* a held entry never looks idle for claim_idle */
  int64_t next_beat = mono_ns() + beat;
  if (s->claim_idle > 0 && s->block > beat) s->block = beat > 1000000 ? beat : 1000000;
  for (;;) {
    pthread_mutex_lock(&s->io.mu);
    bool stop = s->io.stop || s->fatal[0];
    pthread_mutex_unlock(&s->io.mu);
    take_done(s);
    if (stop) break;
    if (!s->c) {
      if (attempt && !sl_redis_io_backoff(&s->io, attempt)) break;
      attempt++;
      if (!connect_group(s)) continue;
      if (attempt > 1) sl_stage_log(s->st, SL_LOG_INFO, "redis %s:%d: connected again", s->addr.host, s->addr.port);
      attempt = 0;
      history = true;
      snprintf(hist, sizeof hist, "0");
      continue;
    }
    if (s->xack && !send_acks(s)) {
      drop_conn(s, s->c->errstr[0] ? s->c->errstr : "connection lost");
      continue;
    }
    if (s->claim_idle > 0 && mono_ns() >= next_beat) {
      next_beat = mono_ns() + beat;
      if (!heartbeat(s)) {
        drop_conn(s, s->c->errstr[0] ? s->c->errstr : "connection lost");
        continue;
      }
    }
    pthread_mutex_lock(&s->io.mu);
    bool room = s->nready < (size_t)s->batch;
    if (!room && !s->done && !s->io.stop) sl_redis_io_wait(&s->io, s->block);
    pthread_mutex_unlock(&s->io.mu);
    if (!room) continue;
    long got;
    if (history) {
      got = read_cmd(s, false, hist, false, hist, sizeof hist);
      if (got == 0) history = false;
    } else if (s->claim_idle > 0 && mono_ns() >= next_claim) {
      char next[48] = "0-0";
      got = read_cmd(s, true, cursor, false, next, sizeof next);
      if (got >= 0) {
        snprintf(cursor, sizeof cursor, "%s", next);
        if (strcmp(cursor, "0-0") == 0) next_claim = mono_ns() + period; /* a full pass: rest */
      }
    } else {
      char last[48];
      got = read_cmd(s, false, ">", true, last, sizeof last);
    }
    (void)got;
  }
  /* stopping: acknowledge what completed (one try; what is left stays pending) */
  take_done(s);
  if (s->xack && !s->c && !s->fatal[0]) {
    char msg[600];
    s->c = sl_redis_connect(&s->addr, 2000000000LL, msg, sizeof msg);
  }
  if (s->xack && s->c && !send_acks(s))
    sl_stage_log(s->st, SL_LOG_WARN, "redis: the last acknowledgements were not sent; their entries stay pending");
  if (s->c && !s->xack && !(s->consumer && *s->consumer)) forget_me(s);
  return NULL;
}

/* ---- the stage ---- */

static int check(void *ctx, sl_pipeline *p, const char *stage, const char *where, sl_error_t *err) {
  src *s = ctx;
  char msg[600];
  sl_redis_addr a;
  int rc = sl_redis_addr_parse(s->url, NULL, &a, msg, sizeof msg);
  sl_redis_addr_free(&a);
  if (rc) return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': %s", where, stage, msg);
  if (s->batch < 1) return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': batch must be at least 1", where, stage);
  if (s->block < 1000000) return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': block must be at least 1ms", where, stage);
  if (s->claim_idle != 0 && s->claim_idle < 1000000) return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': claim_idle must be 0 (off) or at least 1ms", where, stage);
  if (!*s->stream || !*s->group) return sl_error_set(err, SL_ECONFIG, stage, "%sstage '%s': stream and group must not be empty", where, stage);
  return 0;
}

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  src *s = ctx;
  s->st = st;
  sl_redis_io_init(&s->io);
  char msg[600];
  if (sl_redis_addr_parse(s->url, s->password_env, &s->addr, msg, sizeof msg) != 0)
    return sl_error_set(err, SL_ECONFIG, NULL, "%s", msg);
  if (s->consumer && *s->consumer) {
    snprintf(s->name, sizeof s->name, "%s", s->consumer);
  } else {
    char host[256] = "sluice";
    gethostname(host, sizeof host - 1);
    snprintf(s->name, sizeof s->name, "%s-%ld", host, (long)getpid());
  }
  return 0;
}

static int produce(void *ctx, sl_emitter *em) {
  src *s = ctx;
  if (!s->io.started && sl_redis_io_start(&s->io, io_main, s) != 0) return sl_stage_fail(s->st, "cannot start the I/O thread");
  uint32_t room = sl_emitter_room(em);
  pthread_mutex_lock(&s->io.mu);
  if (s->fatal[0]) {
    pthread_mutex_unlock(&s->io.mu);
    return sl_stage_fail(s->st, "%s", s->fatal);
  }
  rent *head = s->ready, *tail = NULL;
  uint32_t n = 0;
  for (rent *r = head; r && n < room; r = r->next) {
    tail = r;
    n++;
  }
  if (n) {
    s->ready = tail->next;
    if (!s->ready) s->ready_tail = NULL;
    tail->next = NULL;
    s->nready -= n;
    pthread_cond_signal(&s->io.cv); /* room again */
  }
  pthread_mutex_unlock(&s->io.mu);
  if (!n) return SL_PARKED; /* the thread wakes us when entries arrive */
  for (rent *r = head, *next; r; r = next) {
    next = r->next;
    r->next = NULL;
    sl_ack *a = sl_ack_new(s->st, (uint64_t)(uintptr_t)r);
    sl_value rec = r->rec;
    r->rec = sl_nil();
    if (r->bad) {
      sl_emit_error_record(em, rec, a, "entry %llu-%llu has no field '%s'", (unsigned long long)r->ms, (unsigned long long)r->seq, s->fields);
      continue;
    }
    if (sl_emit_acked(em, rec, a) != 0) return SL_ENOMEM;
  }
  return 0;
}

/* Every record of entry `id` is done: the thread acknowledges it (not when aborted: then it
 * stays pending for another consumer). */
static void acked(void *ctx, uint64_t id, int status) {
  src *s = ctx;
  rent *r = (rent *)(uintptr_t)id;
  r->ack = status != SL_ACK_CANCELLED;
  pthread_mutex_lock(&s->io.mu);
  r->next = s->done;
  s->done = r;
  pthread_cond_signal(&s->io.cv);
  pthread_mutex_unlock(&s->io.mu);
}

static void destroy(void *ctx) {
  src *s = ctx;
  if (!s->st) return;
  sl_redis_io_close(&s->io);
  if (s->c) redisFree(s->c);
  for (size_t i = 0; i < s->kcap; i++) /* every entry still held is in the set */
    for (rent *e = s->known[i], *next; e; e = next) {
      next = e->hnext;
      sl_value_free(e->rec);
      sl__free(e);
    }
  sl__free(s->known);
  sl_redis_addr_free(&s->addr);
}

const sl_stage_kind sl_stage_redis_stream_in = {
    .abi = SL_STAGE_ABI,
    .name = "redis_stream_in",
    .doc = "reads a Redis stream in a consumer group; XACKs an entry once all its records reached a sink",
    .options = options,
    .ctx_size = sizeof(src),
    .flags = SL_STAGE_SOURCE,
    .init = init,
    .produce = produce,
    .destroy = destroy,
    .acked = acked,
    .check = check,
};
