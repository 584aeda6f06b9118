/*
 * lock.h — the short critical sections of the runtime (sl_lock_ prefix).
 *
 * Queues, the reorder buffer and the run queue hold their lock for a few dozen nanoseconds.
 * A plain futex mutex puts a contending thread to sleep, and waking it costs ~30 us, which
 * serialised two workers on the same edge (bench_passthrough: workers=2 no faster than 1).
 * These are glibc's adaptive mutexes: they spin briefly before sleeping, and stay ordinary
 * pthread mutexes for condition variables and the sanitizers.
 */
#ifndef SL_LOCK_H
#define SL_LOCK_H

#include <pthread.h>

static inline void sl_lock_init(pthread_mutex_t *m) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
#ifdef PTHREAD_MUTEX_ADAPTIVE_NP
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
  pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
}

#endif
