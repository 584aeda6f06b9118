/*
 * engine.c — the engine object: worker pool, event loop, and the registry of stage kinds.
 * Nothing here is process-global: a program may run several engines side by side.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "bio.h"
#include "httpc.h"
#include "pipeline.h"

static void *default_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

void sl_engine_config_init(sl_engine_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->log_level = SL_LOG_INFO;
}

/* The environment's default first (as tokio's TOKIO_WORKER_THREADS), else the CPUs. */
int sl_engine_default_workers(sl_error_t *err) {
  const char *env = getenv("SLUICE_WORKERS");
  if (!env || !*env) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
  }
  char *end;
  errno = 0;
  long v = strtol(env, &end, 10);
  if (*end || errno || v < 1 || v > 256)
    return sl_error_set(err, SL_EINVAL, NULL, "SLUICE_WORKERS takes an integer from 1 to 256 (got '%s')", env);
  return (int)v;
}

int sl_engine_new(const sl_engine_config *cfg, sl_engine **out, sl_error_t *err) {
  sl_engine *e = sl__xcalloc(1, sizeof *e);
  if (cfg) e->cfg = *cfg;
  else sl_engine_config_init(&e->cfg);
  if (!e->cfg.alloc) e->cfg.alloc = default_alloc;
  e->mem.fn = e->cfg.alloc;
  e->mem.ud = e->cfg.alloc_ud;
  if (e->cfg.workers <= 0) {
    int rc = sl_engine_default_workers(err);
    if (rc < 0) {
      sl__free(e);
      return rc;
    }
    e->cfg.workers = rc;
  }
  if (e->cfg.workers > 256) {
    int w = e->cfg.workers;
    sl__free(e);
    return sl_error_set(err, SL_EINVAL, NULL, "workers must be from 1 to 256 (got %d)", w);
  }
  pthread_mutex_init(&e->mu, NULL);
  e->nbuiltin = e->nkinds = sl__builtin_kind_count;
  e->kinds = sl__xmalloc(e->nkinds * sizeof *e->kinds);
  for (size_t i = 0; i < e->nkinds; i++) e->kinds[i] = sl__builtin_kinds[i];
  if (sl_loop_new(e->cfg.virtual_time, &e->loop) != 0) goto fail;
  if (sl_sched_new(e->cfg.workers, &e->mem, sl_loop_notify_idle, e->loop, &e->sched) != 0) goto fail;
  sl_loop_set_sched(e->loop, e->sched);
  *out = e;
  return 0;
fail:
  sl_loop_free(e->loop);
  sl__free(e->kinds);
  pthread_mutex_destroy(&e->mu);
  sl__free(e);
  return sl_error_set(err, SL_EIO, NULL, "could not start the engine's threads or event loop");
}

void sl_engine_free(sl_engine *e) {
  if (!e) return;
  sl_loop_set_sched(e->loop, NULL); /* the loop lets go of the pool before it is freed */
  sl_httpc_free(e->httpc);          /* its watches are on the loop */
  sl_bio_free(e->bio);
  sl_sched_free(e->sched);
  sl_loop_free(e->loop);
  sl__free(e->kinds);
  pthread_mutex_destroy(&e->mu);
  sl__free(e);
}

int sl_engine_workers(const sl_engine *e) { return e->cfg.workers; }

/* Connections kept per host by the HTTP client: above any sensible `concurrency`, so that the
 * pool bounds a runaway fan-out without throttling an intended one. */
#define HTTPC_MAX_PER_HOST 1024

sl_httpc *sl__engine_httpc(sl_engine *e) {
  pthread_mutex_lock(&e->mu);
  if (!e->httpc && sl_httpc_new(e->loop, HTTPC_MAX_PER_HOST, &e->httpc) != 0) e->httpc = NULL;
  sl_httpc *h = e->httpc;
  pthread_mutex_unlock(&e->mu);
  return h;
}

sl_bio *sl__engine_bio(sl_engine *e) {
  pthread_mutex_lock(&e->mu);
  if (!e->bio) e->bio = sl_bio_new();
  sl_bio *b = e->bio;
  pthread_mutex_unlock(&e->mu);
  return b;
}

int sl_engine_register(sl_engine *e, const sl_stage_kind *kind, sl_error_t *err) {
  if (!kind || kind->abi != SL_STAGE_ABI)
    return sl_error_set(err, SL_EINVAL, NULL, "stage kind has ABI %u, this engine speaks %d",
                        kind ? kind->abi : 0, SL_STAGE_ABI);
  if (!kind->name || !*kind->name)
    return sl_error_set(err, SL_EINVAL, NULL, "stage kind has no name");
  bool src = kind->flags & SL_STAGE_SOURCE;
  if ((src && !kind->produce) || (!src && !kind->process))
    return sl_error_set(err, SL_EINVAL, kind->name, "stage kind '%s' needs %s", kind->name, src ? "produce()" : "process()");
  if (kind->flags & SL_STAGE_PASSIVE)
    return sl_error_set(err, SL_EINVAL, kind->name, "SL_STAGE_PASSIVE is reserved for built-in kinds");
  pthread_mutex_lock(&e->mu);
  int rc = 0;
  for (size_t i = 0; i < e->nkinds; i++)
    if (strcmp(e->kinds[i]->name, kind->name) == 0) rc = SL_EINVAL;
  if (rc == 0) {
    e->kinds = sl__xrealloc(e->kinds, (e->nkinds + 1) * sizeof *e->kinds);
    e->kinds[e->nkinds++] = kind;
  }
  pthread_mutex_unlock(&e->mu);
  if (rc) return sl_error_set(err, rc, kind->name, "a stage kind named '%s' exists already", kind->name);
  return 0;
}

const sl_stage_kind *sl_engine_kind(const sl_engine *e, const char *name) {
  pthread_mutex_lock((pthread_mutex_t *)&e->mu);
  const sl_stage_kind *k = NULL;
  for (size_t i = 0; i < e->nkinds && !k; i++)
    if (strcmp(e->kinds[i]->name, name) == 0) k = e->kinds[i];
  pthread_mutex_unlock((pthread_mutex_t *)&e->mu);
  return k;
}

size_t sl_engine_kind_count(const sl_engine *e) {
  pthread_mutex_lock((pthread_mutex_t *)&e->mu);
  size_t n = e->nkinds;
  pthread_mutex_unlock((pthread_mutex_t *)&e->mu);
  return n;
}

const sl_stage_kind *sl_engine_kind_at(const sl_engine *e, size_t i) {
  pthread_mutex_lock((pthread_mutex_t *)&e->mu);
  const sl_stage_kind *k = i < e->nkinds ? e->kinds[i] : NULL;
  pthread_mutex_unlock((pthread_mutex_t *)&e->mu);
  return k;
}
int64_t sl_engine_now(const sl_engine *e) { return sl_loop_now(e->loop); }
