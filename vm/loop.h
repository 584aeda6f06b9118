/*
 * loop.h — the engine's event loop: timers and fd readiness, real or virtual clock (sl_loop_).
 *
 * One thread per engine waits in epoll for fd readiness, its timerfd (armed at the earliest
 * timer on the real clock) and an eventfd that other threads write to when they add a timer
 * or to stop the loop. Callbacks run with the dispatch lock held — on the loop thread, or, on
 * the virtual clock, on the worker that went idle last — so sl_loop_cancel_owner can wait out a
 * callback in progress before the owner is freed.
 *
 * The virtual clock starts at 0 and only moves when the scheduler reports that every worker is
 * idle: then it jumps to the earliest timer and fires every timer due at that instant, in
 * deadline order (ties in the order they were added). A pipeline that sleeps an hour finishes
 * in milliseconds, and the same input gives the same timings every run.
 *
 * Locks: `mu` guards the heap and the slot table; `dispatch` is held while callbacks run. Order:
 * dispatch -> (callback's own locks, scheduler) and mu is a leaf (never held during callbacks).
 */
#ifndef SL_LOOP_H
#define SL_LOOP_H

#include <stdbool.h>
#include <stdint.h>

typedef struct sl_loop sl_loop;
typedef struct sl_sched sl_sched;

/* A timer or fd callback: runs with the dispatch lock held (see above). */
typedef void (*sl_loop_cb)(void *arg, uint64_t token);

/* errors: io (epoll/eventfd/timerfd), nomem */
int sl_loop_new(bool virtual_time, sl_loop **out);
/* The scheduler whose idleness moves the virtual clock (set before anything runs). */
void sl_loop_set_sched(sl_loop *l, sl_sched *s);
void sl_loop_free(sl_loop *l);
/* Engine clock in ns: CLOCK_MONOTONIC, or the virtual clock. */
int64_t sl_loop_now(const sl_loop *l);
bool sl_loop_virtual(const sl_loop *l);
/* Calls cb(arg, token) at deadline; owner groups timers for sl_loop_cancel_owner. Returns an id
 * (> 0). Thread-safe. */
int64_t sl_loop_timer(sl_loop *l, int64_t deadline, void *owner, sl_loop_cb cb, void *arg,
                      uint64_t token);
/* Removes a timer that has not fired yet. Thread-safe. */
void sl_loop_timer_cancel(sl_loop *l, int64_t id);
/* Calls cb(arg, token) once when fd is readable (or writable). One watch per fd at a time (a
 * second one fails with -EEXIST until the first fired or was cancelled). errors: io. Thread-safe. */
int sl_loop_watch(sl_loop *l, int fd, bool write, void *owner, sl_loop_cb cb, void *arg,
                  uint64_t token);
/* Persistent fd watches (what libcurl's multi-socket interface needs): cb(arg, fd, ready) runs
 * every time fd is ready for one of `events` (SL_LOOP_READ|SL_LOOP_WRITE, level-triggered; an
 * error or hang-up reports both) until sl_loop_io_stop. Independent of the one-shot watches.
 * A callback may start, change or stop watches. A stop from another thread can race with a
 * callback already taken for that watch (it then runs once more); sl_loop_cancel_owner waits
 * callbacks out. */
enum { SL_LOOP_READ = 1, SL_LOOP_WRITE = 2 };
typedef void (*sl_loop_io_cb)(void *arg, int fd, int ready);
/* Returns an id (> 0) or -errno. Thread-safe. */
int64_t sl_loop_io_start(sl_loop *l, int fd, int events, void *owner, sl_loop_io_cb cb, void *arg);
/* Changes the events of a watch (0: none for now, the watch stays). errors: -errno. Thread-safe. */
int sl_loop_io_modify(sl_loop *l, int64_t id, int events);
/* Removes a watch (a stale id has no effect). Thread-safe. */
void sl_loop_io_stop(sl_loop *l, int64_t id);
/* Holds the virtual clock while outside work is in flight (network I/O): with holds > 0 it does
 * not move, so a request takes no virtual time and a timer cannot fire "during" it. delta is +1
 * or -1. No effect on the real clock. Thread-safe. */
void sl_loop_hold(sl_loop *l, int delta);
/* Removes every timer and fd watch of owner, waiting for a callback in progress. Not from a
 * loop callback. */
void sl_loop_cancel_owner(sl_loop *l, void *owner);
/* Removes every timer of owner (a callback in progress may still run once). Thread-safe, also
 * from a loop callback. */
void sl_loop_cancel_timers(sl_loop *l, void *owner);
/* Hook for the scheduler, on the worker that went idle last: moves the virtual clock and fires
 * what is due (no effect on the real clock). Takes the dispatch lock. */
void sl_loop_notify_idle(void *loop);

#endif
