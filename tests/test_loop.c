/*
 * test_loop.c — the event loop's persistent fd watches (read and write readiness on one fd,
 * level-triggered, changed and stopped from callbacks and from other threads) and the hold that
 * stops the virtual clock while outside work is in flight.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "loop.h"
#include "sched.h"
#include "test.h"

typedef struct io_probe {
  sl_loop *l;
  int64_t id;
  atomic_int reads, writes; /* callbacks that saw each */
  int stop_after_reads;     /* the callback stops its own watch after this many reads (0: never) */
} io_probe;

static void probe_cb(void *arg, int fd, int ready) {
  io_probe *p = arg;
  (void)fd;
  if (ready & SL_LOOP_WRITE) {
    atomic_fetch_add(&p->writes, 1);
    sl_loop_io_modify(p->l, p->id, SL_LOOP_READ); /* writable once is enough */
  }
  if (ready & SL_LOOP_READ) {
    int n = atomic_fetch_add(&p->reads, 1) + 1;
    if (p->stop_after_reads && n >= p->stop_after_reads) sl_loop_io_stop(p->l, p->id);
  }
}

/* Polls cond for up to 5 s of real time (the loop thread runs on its own). */
static bool wait_until(atomic_int *v, int at_least) {
  for (int i = 0; i < 5000 && atomic_load(v) < at_least; i++) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  return atomic_load(v) >= at_least;
}

TEST(loop_io_level_and_modify) {
  sl_loop *l;
  ASSERT(sl_loop_new(false, &l) == 0);
  int sv[2];
  ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  io_probe p = {.l = l, .stop_after_reads = 3};
  /* read interest first (nothing to read yet): the callback, which modifies the watch by its
   * id, cannot run before p.id is set; then write interest, which fires at once */
  p.id = sl_loop_io_start(l, sv[0], SL_LOOP_READ, &p, probe_cb, &p);
  ASSERT(p.id > 0);
  ASSERT(sl_loop_io_modify(l, p.id, SL_LOOP_READ | SL_LOOP_WRITE) == 0);
  ASSERT(wait_until(&p.writes, 1));
  /* level-triggered: unread data keeps reporting readable until the callback stops the watch */
  ASSERT(write(sv[1], "x", 1) == 1);
  ASSERT(wait_until(&p.reads, 3));
  struct timespec ts = {0, 20000000};
  nanosleep(&ts, NULL);
  ASSERT(atomic_load(&p.reads) == 3);  /* stopped: no more callbacks */
  ASSERT(atomic_load(&p.writes) == 1); /* write interest was dropped by modify */
  sl_loop_io_stop(l, p.id);            /* stale id: no effect */
  /* the fd can be watched again; a second watch on the same fd fails while the first lives */
  io_probe q = {.l = l};
  q.id = sl_loop_io_start(l, sv[0], SL_LOOP_READ, &q, probe_cb, &q);
  ASSERT(q.id > 0 && q.id != p.id);
  ASSERT(sl_loop_io_start(l, sv[0], SL_LOOP_READ, &q, probe_cb, &q) < 0);
  ASSERT(wait_until(&q.reads, 1));
  sl_loop_cancel_owner(l, &q); /* removes it; no callback after it returns */
  int seen = atomic_load(&q.reads);
  nanosleep(&ts, NULL);
  ASSERT(atomic_load(&q.reads) == seen);
  close(sv[0]);
  close(sv[1]);
  sl_loop_free(l);
}

static atomic_int fired;
static void timer_cb(void *arg, uint64_t token) {
  (void)arg;
  (void)token;
  atomic_fetch_add(&fired, 1);
}

static void *test_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

/* The virtual clock jumps to the next timer when every worker is idle, unless held: then it
 * waits for the hold to go. */
TEST(loop_hold_stops_virtual_clock) {
  sl_loop *l;
  sl_sched *s;
  sl__mem mem = {.fn = test_alloc};
  ASSERT(sl_loop_new(true, &l) == 0);
  ASSERT(sl_sched_new(1, &mem, sl_loop_notify_idle, l, &s) == 0);
  sl_loop_set_sched(l, s);
  atomic_store(&fired, 0);
  sl_loop_hold(l, 1);
  sl_loop_timer(l, 1000000000, &fired, timer_cb, NULL, 0);
  sl_loop_notify_idle(l);
  struct timespec ts = {0, 20000000};
  nanosleep(&ts, NULL);
  ASSERT(sl_loop_now(l) == 0 && atomic_load(&fired) == 0);
  sl_loop_hold(l, -1); /* released: the loop moves the clock and fires the timer */
  ASSERT(wait_until(&fired, 1));
  ASSERT(sl_loop_now(l) == 1000000000);
  sl_loop_set_sched(l, NULL);
  sl_sched_free(s);
  sl_loop_free(l);
}

/* Cancelling one owner's timers (as a stage that ends does) leaves every other timer, in
 * deadline order: 300 timers of three owners with scattered deadlines, the middle owner's
 * cancelled, then the virtual clock runs them all. */
static atomic_int fired_by[3];
static atomic_llong last_fire, out_of_order;
static sl_loop *order_loop;
static void order_cb(void *arg, uint64_t token) {
  (void)arg;
  atomic_fetch_add(&fired_by[token], 1);
  long long now = sl_loop_now(order_loop);
  if (now < atomic_exchange(&last_fire, now)) atomic_fetch_add(&out_of_order, 1);
}

TEST(loop_cancel_timers_keeps_the_others) {
  sl_loop *l;
  sl_sched *s;
  sl__mem mem = {.fn = test_alloc};
  ASSERT(sl_loop_new(true, &l) == 0);
  order_loop = l;
  int owners[3];
  for (int k = 0; k < 3; k++) atomic_store(&fired_by[k], 0);
  atomic_store(&last_fire, 0);
  atomic_store(&out_of_order, 0);
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 300; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int k = (int)(x % 3);
    ASSERT(sl_loop_timer(l, 1000 + (int64_t)(x % 100000), &owners[k], order_cb, NULL, (uint64_t)k) > 0);
  }
  int per[3] = {0};
  x = 88172645463325252ull;
  for (int i = 0; i < 300; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    per[x % 3]++;
  }
  sl_loop_cancel_timers(l, &owners[1]);
  ASSERT(sl_sched_new(1, &mem, sl_loop_notify_idle, l, &s) == 0); /* the clock moves from now on */
  sl_loop_set_sched(l, s);
  sl_loop_notify_idle(l);
  ASSERT(wait_until(&fired_by[0], per[0]) && wait_until(&fired_by[2], per[2]));
  ASSERT_EQ(atomic_load(&fired_by[1]), 0);
  ASSERT_EQ(atomic_load(&out_of_order), 0);
  sl_loop_set_sched(l, NULL);
  sl_sched_free(s);
  sl_loop_free(l);
}
