/*
 * sched.h — the worker pool: N threads per engine running tasks (sl_sched_ prefix).
 *
 * A task is runnable when something woke it; a worker pops it from the run queue and calls its
 * run function, which returns whether the task is idle (wait for the next wake), wants to run
 * again (yield, it still has work) or is finished. Waking is cheap and idempotent: a task is in
 * the run queue at most once, and a wake that arrives while it runs makes it run once more, so no
 * wake-up is ever lost.
 *
 * Task states (atomic): IDLE -> SCHEDULED (wake) -> RUNNING (a worker took it) -> IDLE | SCHEDULED
 * (yield, or woken while running: NOTIFIED) | DEAD.
 *
 * Each worker has its own run queue. A task woken by a worker joins that worker's queue (its
 * input was just made there, in that core's cache); one woken from outside the pool joins the
 * queue of the worker that last ran it. A worker with nothing of its own steals from the others.
 * Idle workers spin briefly, then sleep on a condition variable (no CPU use while nothing is
 * runnable). When the last worker goes idle, the on_idle hook runs (the event loop then checks
 * that nothing is queued and advances the virtual clock).
 *
 * Locking: each worker queue has a mutex (a leaf). The pool mutex guards the idle and sleeping
 * counts and the condition variable; a queue mutex is never taken while holding it. on_idle
 * runs on the worker that went idle last, with no scheduler lock held (it may wake tasks).
 */
#ifndef SL_SCHED_H
#define SL_SCHED_H

#include <stdatomic.h>
#include <stdbool.h>

typedef struct sl_task sl_task;
typedef struct sl_sched sl_sched;

enum { SL_TASK_IDLE = 0, SL_TASK_YIELD = 1, SL_TASK_DONE = 2 };

/* Runs the task on worker `worker`; returns SL_TASK_IDLE, _YIELD or _DONE. */
typedef int (*sl_task_run_cb)(sl_task *t, int worker);
/* Called once after a task returned SL_TASK_DONE, when no worker touches it any more. */
typedef void (*sl_task_dead_cb)(sl_task *t);

struct sl_task {
  atomic_int state;     /* T_* in sched.c */
  sl_task *next;        /* run queue link */
  sl_task_run_cb run;   /* what the task does */
  sl_task_dead_cb dead; /* after DONE */
  atomic_int home;      /* worker whose queue it joins when woken (the last that ran it) */
};

typedef void (*sl_sched_idle_cb)(void *ud);

struct sl__mem;
/* Starts `workers` threads; mem is the engine allocator whose batches they cache. errors: io */
int sl_sched_new(int workers, const struct sl__mem *mem, sl_sched_idle_cb on_idle, void *idle_ud, sl_sched **out);
/* Stops and joins the threads. Every task must have ended. */
void sl_sched_free(sl_sched *s);
void sl_task_init(sl_task *t, sl_task_run_cb run, sl_task_dead_cb dead);
/* Makes t runnable (no effect if queued, dead, or running: then it runs once more). Thread-safe. */
void sl_sched_wake(sl_sched *s, sl_task *t);
/* True when every worker is idle, nothing is queued and *holds is 0, read together under the
 * pool mutex: no worker can turn busy between the reads, so a worker that started work (and
 * took a hold for it) and went idle again is never seen as "idle, no holds" by a reader that
 * looked at the holds before the work and at the workers after it. A thread other than a
 * worker that drops a hold must make its wake-up (a queued task) visible before it drops it. */
bool sl_sched_all_idle(sl_sched *s, atomic_int *holds);

#endif
