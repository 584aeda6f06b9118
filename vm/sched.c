/*
 * sched.c — the worker pool (see sched.h for the model and the lock rules).
 *
 * Per-worker FIFO queues with stealing. Tasks move records in batches of up to 256, so a queue
 * operation is amortised over hundreds of records. Workers spin for a short while before they
 * sleep because waking a sleeping thread costs ~30 us on this class of machine.
 *
 * No lost wake-ups: a pusher increments `nqueued` and then reads `nsleeping`; a sleeper
 * increments `nsleeping` (under the pool mutex) and then reads `nqueued`. Both are sequentially
 * consistent atomics, so at least one of them sees the other, and the pusher signals under the
 * pool mutex.
 */
#include "sched.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "alloc.h"
#include "lock.h"
#include "queue.h"

enum { T_IDLE = 0, T_SCHEDULED, T_RUNNING, T_NOTIFIED, T_DEAD };

#define SPIN_NS 50000 /* how long an idle worker looks for work before sleeping */

typedef struct worker {
  sl_sched *s;
  int id;
  pthread_t thread;
  pthread_mutex_t qmu;  /* guards head/tail */
  sl_task *head, *tail; /* this worker's run queue */
  atomic_int n;         /* tasks in it (peeked without the lock) */
  char pad[64];         /* keep workers' queue locks on separate cache lines */
} worker;

struct sl_sched {
  pthread_mutex_t mu;       /* guards nidle, stopping, the condition variable */
  pthread_cond_t cv;        /* sleeping workers wait here */
  atomic_int nqueued;       /* tasks in all queues */
  atomic_int nsleeping;     /* workers waiting on cv */
  int nworkers;             /* threads */
  int nidle;                /* workers with nothing to run (spinning or sleeping) */
  atomic_bool stopping;     /* sl_sched_free was called */
  sl_sched_idle_cb on_idle; /* every worker idle and no task queued */
  void *idle_ud;
  atomic_uint rr;           /* spreads tasks woken from outside the pool */
  const sl__mem *mem;       /* the engine allocator (workers cache its batches) */
  worker *workers;
};

static _Thread_local sl_sched *tl_sched; /* the pool the current thread works for */
static _Thread_local int tl_worker = -1;

void sl_task_init(sl_task *t, sl_task_run_cb run, sl_task_dead_cb dead) {
  atomic_init(&t->state, T_IDLE);
  atomic_init(&t->home, -1);
  t->next = NULL;
  t->run = run;
  t->dead = dead;
}

static void qpush(worker *w, sl_task *t) {
  pthread_mutex_lock(&w->qmu);
  t->next = NULL;
  if (w->tail) w->tail->next = t; else w->head = t;
  w->tail = t;
  atomic_fetch_add_explicit(&w->n, 1, memory_order_release);
  pthread_mutex_unlock(&w->qmu);
}

static sl_task *qpop(worker *w) {
  if (atomic_load_explicit(&w->n, memory_order_acquire) == 0) return NULL;
  pthread_mutex_lock(&w->qmu);
  sl_task *t = w->head;
  if (t) {
    w->head = t->next;
    if (!w->head) w->tail = NULL;
    t->next = NULL;
    atomic_fetch_sub_explicit(&w->n, 1, memory_order_relaxed);
  }
  pthread_mutex_unlock(&w->qmu);
  return t;
}

/* Queues t on its home worker (or the calling worker, or round-robin) and wakes a sleeper. */
static void push(sl_sched *s, sl_task *t) {
  int home = tl_sched == s ? tl_worker : atomic_load_explicit(&t->home, memory_order_relaxed);
  if (home < 0) home = (int)(atomic_fetch_add(&s->rr, 1) % (unsigned)s->nworkers);
  atomic_fetch_add(&s->nqueued, 1); /* before the task is visible: all_idle never misses it */
  qpush(&s->workers[home], t);
  if (atomic_load(&s->nsleeping) > 0) {
    pthread_mutex_lock(&s->mu);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
  }
}

void sl_sched_wake(sl_sched *s, sl_task *t) {
  int st = atomic_load_explicit(&t->state, memory_order_acquire);
  for (;;) {
    switch (st) {
    case T_IDLE:
      if (atomic_compare_exchange_weak(&t->state, &st, T_SCHEDULED)) {
        push(s, t);
        return;
      }
      break;
    case T_RUNNING:
      if (atomic_compare_exchange_weak(&t->state, &st, T_NOTIFIED)) return;
      break;
    default: /* already scheduled, notified, or dead */
      return;
    }
  }
}

/* Own queue first, then the others'. */
static sl_task *find_task(sl_sched *s, int id) {
  if (atomic_load_explicit(&s->nqueued, memory_order_acquire) == 0) return NULL;
  for (int k = 0; k < s->nworkers; k++) {
    sl_task *t = qpop(&s->workers[(id + k) % s->nworkers]);
    if (t) {
      atomic_fetch_sub(&s->nqueued, 1);
      return t;
    }
  }
  return NULL;
}

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Waits for a task: spins, then sleeps; after every wake-up it spins again before sleeping, so
 * a worker woken for a task another worker took first stays ready for the next one instead of
 * paying a full sleep/wake per task. Returns NULL when the pool stops.
 *
 * An idle worker counts itself busy again (under the pool mutex) before it tries to take a
 * task, so sl_sched_all_idle never reports idle while a worker holds a task it has not run:
 * the virtual clock must not move then. */
static void set_idle(sl_sched *s, bool idle) {
  pthread_mutex_lock(&s->mu);
  bool all = false;
  if (idle) all = ++s->nidle == s->nworkers;
  else s->nidle--;
  pthread_mutex_unlock(&s->mu);
  if (all && s->on_idle) s->on_idle(s->idle_ud); /* the last one to go idle tells the loop */
}

static sl_task *next_task(sl_sched *s, int id) {
  sl_task *t = find_task(s, id);
  if (t) return t;
  set_idle(s, true);
  for (;;) {
    int64_t until = mono_ns() + SPIN_NS;
    while (atomic_load_explicit(&s->nqueued, memory_order_acquire) == 0 && !atomic_load(&s->stopping) &&
           mono_ns() < until)
      sched_yield();
    if (atomic_load(&s->stopping)) break;
    if (atomic_load(&s->nqueued) > 0) {
      set_idle(s, false);
      if ((t = find_task(s, id))) return t;
      set_idle(s, true); /* another worker took it */
      continue;
    }
    pthread_mutex_lock(&s->mu);
    atomic_fetch_add(&s->nsleeping, 1);
    if (atomic_load(&s->nqueued) == 0 && !atomic_load(&s->stopping)) pthread_cond_wait(&s->cv, &s->mu);
    atomic_fetch_sub(&s->nsleeping, 1);
    pthread_mutex_unlock(&s->mu);
  }
  set_idle(s, false);
  return NULL;
}

static void run_task(sl_sched *s, sl_task *t, int id) {
  atomic_store_explicit(&t->home, id, memory_order_relaxed);
  atomic_store_explicit(&t->state, T_RUNNING, memory_order_release);
  int r = t->run(t, id);
  if (r == SL_TASK_DONE) {
    atomic_store_explicit(&t->state, T_DEAD, memory_order_release);
    if (t->dead) t->dead(t);
    return;
  }
  int st = T_RUNNING;
  if (r == SL_TASK_IDLE && atomic_compare_exchange_strong(&t->state, &st, T_IDLE)) return;
  /* yielded, or woken while it ran: run it again later */
  atomic_store_explicit(&t->state, T_SCHEDULED, memory_order_release);
  push(s, t);
}

static void *worker_main(void *arg) {
  worker *w = arg;
  tl_sched = w->s;
  tl_worker = w->id;
  sl_task *t;
  sl_queue_thread_cache(w->s->mem);
  while ((t = next_task(w->s, w->id))) run_task(w->s, t, w->id);
  sl_queue_thread_cache(NULL);
  return NULL;
}

int sl_sched_new(int workers, const sl__mem *mem, sl_sched_idle_cb on_idle, void *idle_ud, sl_sched **out) {
  sl_sched *s = sl__xcalloc(1, sizeof *s);
  s->mem = mem;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  s->nworkers = workers;
  s->on_idle = on_idle;
  s->idle_ud = idle_ud;
  s->workers = sl__xcalloc((size_t)workers, sizeof *s->workers);
  for (int i = 0; i < workers; i++) {
    s->workers[i].s = s;
    s->workers[i].id = i;
    sl_lock_init(&s->workers[i].qmu);
  }
  /* workers block SIGPIPE: a write to a closed pipe returns EPIPE (stdout handles it) instead
   * of killing the embedding program */
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  int started = 0;
  for (; started < workers; started++)
    if (pthread_create(&s->workers[started].thread, NULL, worker_main, &s->workers[started]) != 0) break;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (started < workers) goto fail;
  *out = s;
  return 0;
fail:
  s->nworkers = started;
  sl_sched_free(s);
  return -EAGAIN;
}

void sl_sched_free(sl_sched *s) {
  if (!s) return;
  pthread_mutex_lock(&s->mu);
  atomic_store(&s->stopping, true);
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  for (int i = 0; i < s->nworkers; i++) pthread_join(s->workers[i].thread, NULL);
  for (int i = 0; i < s->nworkers; i++) pthread_mutex_destroy(&s->workers[i].qmu);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  sl__free(s->workers);
  sl__free(s);
}

bool sl_sched_all_idle(sl_sched *s, atomic_int *holds) {
  pthread_mutex_lock(&s->mu);
  /* the holds first: a non-worker that posts and then drops its hold is seen posted */
  bool idle = atomic_load(holds) == 0 && s->nidle == s->nworkers && atomic_load(&s->nqueued) == 0;
  pthread_mutex_unlock(&s->mu);
  return idle;
}
