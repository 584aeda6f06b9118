/*
 * sched.c — the worker pool (see sched.h for the model and the lock rules).
 *
 * One FIFO run queue shared by all workers, guarded by one mutex. Tasks move records in batches
 * of up to 256, so a queue operation is amortised over hundreds of records and a shared queue
 * keeps both cores busy without the complexity of per-worker deques. Workers spin for a short
 * while before sleeping because waking a sleeping thread costs ~30 us on this class of machine.
 */
#include "sched.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "alloc.h"

enum { T_IDLE = 0, T_SCHEDULED, T_RUNNING, T_NOTIFIED, T_DEAD };

#define SPIN_NS 50000 /* how long an idle worker looks for work before sleeping */

typedef struct worker {
  sl_sched *s;
  int id;
  pthread_t thread;
} worker;

struct sl_sched {
  pthread_mutex_t mu;       /* guards the queue, nidle, nsleeping, stopping */
  pthread_cond_t cv;        /* sleeping workers wait here */
  sl_task *head, *tail;     /* run queue (FIFO) */
  atomic_int nqueued;       /* tasks in the queue, readable without the lock while spinning */
  int nworkers;             /* threads */
  int nidle;                /* workers with nothing to run (spinning or sleeping) */
  int nsleeping;            /* workers waiting on cv */
  bool stopping;            /* sl_sched_free was called */
  sl_sched_idle_cb on_idle; /* every worker idle and the queue empty */
  void *idle_ud;
  worker *workers;
};

static _Thread_local sl_sched *tl_sched; /* the pool the current thread works for */
static _Thread_local int tl_worker = -1;

void sl_task_init(sl_task *t, sl_task_run_cb run, sl_task_dead_cb dead) {
  atomic_init(&t->state, T_IDLE);
  t->next = NULL;
  t->run = run;
  t->dead = dead;
}

/* Appends t to the run queue and wakes a sleeping worker. */
static void push(sl_sched *s, sl_task *t) {
  pthread_mutex_lock(&s->mu);
  t->next = NULL;
  if (s->tail) s->tail->next = t; else s->head = t;
  s->tail = t;
  atomic_fetch_add_explicit(&s->nqueued, 1, memory_order_release);
  if (s->nsleeping > 0) pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
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

static sl_task *pop_locked(sl_sched *s) {
  sl_task *t = s->head;
  if (t) {
    s->head = t->next;
    if (!s->head) s->tail = NULL;
    atomic_fetch_sub_explicit(&s->nqueued, 1, memory_order_relaxed);
  }
  return t;
}

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Waits for a task: spins, then sleeps; after every wake-up it spins again before sleeping, so
 * a worker woken for a task another worker took first stays ready for the next one instead of
 * paying a full sleep/wake (~30 us) per task. Returns NULL when the pool stops. */
static sl_task *next_task(sl_sched *s) {
  bool idle = false;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    sl_task *t = pop_locked(s);
    if (t || s->stopping) {
      if (idle) s->nidle--;
      pthread_mutex_unlock(&s->mu);
      return t;
    }
    if (!idle) {
      idle = true;
      s->nidle++;
      if (s->nidle == s->nworkers && s->on_idle) s->on_idle(s->idle_ud);
    }
    pthread_mutex_unlock(&s->mu);

    int64_t until = mono_ns() + SPIN_NS;
    while (atomic_load_explicit(&s->nqueued, memory_order_acquire) == 0 && mono_ns() < until)
      sched_yield();
    if (atomic_load_explicit(&s->nqueued, memory_order_acquire) > 0) continue;

    pthread_mutex_lock(&s->mu);
    if (!s->head && !s->stopping) {
      s->nsleeping++;
      pthread_cond_wait(&s->cv, &s->mu);
      s->nsleeping--;
    }
    pthread_mutex_unlock(&s->mu);
  }
}

static void run_task(sl_sched *s, sl_task *t, int id) {
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
  while ((t = next_task(w->s))) run_task(w->s, t, w->id);
  return NULL;
}

int sl_sched_new(int workers, sl_sched_idle_cb on_idle, void *idle_ud, sl_sched **out) {
  sl_sched *s = sl__xcalloc(1, sizeof *s);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  s->nworkers = workers;
  s->on_idle = on_idle;
  s->idle_ud = idle_ud;
  s->workers = sl__xcalloc((size_t)workers, sizeof *s->workers);
  int started = 0;
  for (; started < workers; started++) {
    worker *w = &s->workers[started];
    w->s = s;
    w->id = started;
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) goto fail;
  }
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
  s->stopping = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  for (int i = 0; i < s->nworkers; i++) pthread_join(s->workers[i].thread, NULL);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  sl__free(s->workers);
  sl__free(s);
}

bool sl_sched_all_idle(sl_sched *s) {
  pthread_mutex_lock(&s->mu);
  bool idle = s->nidle == s->nworkers && s->head == NULL;
  pthread_mutex_unlock(&s->mu);
  return idle;
}

int sl_sched_worker_id(sl_sched *s) { return tl_sched == s ? tl_worker : -1; }
int sl_sched_workers(const sl_sched *s) { return s->nworkers; }
