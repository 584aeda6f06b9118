/*
 * loop.c — timers and fd readiness on one thread per engine (see loop.h).
 *
 * Timers live in a slot table (id = generation << 32 | slot + 1, so a stale id never cancels a
 * newer timer) and a binary min-heap of slot indices ordered by (deadline, sequence number).
 * Cancel is O(log n): every slot knows its heap position.
 */
#include "loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "sched.h"

typedef struct tslot {
  int64_t deadline;  /* engine clock, ns */
  uint64_t seqno;    /* tie-break: order of creation */
  uint32_t gen;      /* bumped when the slot is reused */
  int32_t heap_idx;  /* position in the heap, -1 when free */
  void *owner;       /* for cancel_owner */
  sl_loop_cb cb;
  void *arg;
  uint64_t token;
  uint32_t next_free; /* free list link (slot index + 1, 0 = end) */
} tslot;

typedef struct watch {
  struct watch *next;
  uint64_t id;       /* epoll data: looked up again when the event arrives */
  int fd;
  void *owner;
  sl_loop_cb cb;
  void *arg;
  uint64_t token;
} watch;

typedef struct ioslot {
  int fd;            /* -1 when free */
  int events;        /* SL_LOOP_* */
  uint32_t gen;      /* bumped when the slot is freed */
  void *owner;
  sl_loop_io_cb cb;
  void *arg;
  uint32_t next_free; /* free list link (slot index + 1, 0 = end) */
} ioslot;

struct sl_loop {
  pthread_mutex_t mu;       /* heap, slots, watches */
  pthread_mutex_t dispatch; /* held while callbacks run */
  pthread_t thread;
  int epfd, evfd, tfd;
  bool virtual_time;
  atomic_bool stopping;
  atomic_llong vnow;        /* virtual clock, ns */
  _Atomic(sl_sched *) sched; /* idleness moves the virtual clock */
  tslot *slots;
  uint32_t nslots, free_head;
  uint32_t *heap;           /* slot indices */
  int32_t heap_len;
  uint64_t seqno;
  watch *watches;
  uint64_t watch_ids;
  ioslot *ios;              /* persistent watches, by slot */
  uint32_t nios, io_free;
  atomic_int holds;         /* sl_loop_hold: the virtual clock waits while > 0 */
};

#define EV_WAKE 1ULL
#define EV_TIMER 2ULL
#define EV_WATCH_BASE 16ULL /* watch ids start here */
#define EV_IO (1ULL << 63)  /* persistent watches: EV_IO | gen << 32 | slot + 1 */

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t sl_loop_now(const sl_loop *l) {
  return l->virtual_time ? (int64_t)atomic_load(&((sl_loop *)l)->vnow) : mono_ns();
}

bool sl_loop_virtual(const sl_loop *l) { return l->virtual_time; }

static void poke(sl_loop *l) {
  uint64_t one = 1;
  ssize_t r = write(l->evfd, &one, sizeof one);
  (void)r; /* the counter cannot overflow in practice; a full eventfd is still readable */
}

static void fire_due(sl_loop *l, int64_t now);
static bool advance_virtual(sl_loop *l);

/* Every worker is idle: on the virtual clock, the last worker to go idle moves the clock and
 * fires the due timers itself (under the dispatch lock, like the loop thread), which saves two
 * thread wake-ups per timer. */
void sl_loop_notify_idle(void *loop) {
  sl_loop *l = loop;
  if (!l->virtual_time) return;
  pthread_mutex_lock(&l->dispatch);
  do fire_due(l, atomic_load(&l->vnow));
  while (!atomic_load(&l->stopping) && advance_virtual(l));
  pthread_mutex_unlock(&l->dispatch);
}

/* ---- heap ---- */

static bool before(const sl_loop *l, uint32_t a, uint32_t b) {
  const tslot *x = &l->slots[a], *y = &l->slots[b];
  return x->deadline < y->deadline || (x->deadline == y->deadline && x->seqno < y->seqno);
}

static void heap_set(sl_loop *l, int32_t i, uint32_t slot) {
  l->heap[i] = slot;
  l->slots[slot].heap_idx = i;
}

static void sift_up(sl_loop *l, int32_t i) {
  uint32_t s = l->heap[i];
  while (i > 0) {
    int32_t p = (i - 1) / 2;
    if (!before(l, s, l->heap[p])) break;
    heap_set(l, i, l->heap[p]);
    i = p;
  }
  heap_set(l, i, s);
}

static void sift_down(sl_loop *l, int32_t i) {
  uint32_t s = l->heap[i];
  for (;;) {
    int32_t c = 2 * i + 1;
    if (c >= l->heap_len) break;
    if (c + 1 < l->heap_len && before(l, l->heap[c + 1], l->heap[c])) c++;
    if (!before(l, l->heap[c], s)) break;
    heap_set(l, i, l->heap[c]);
    i = c;
  }
  heap_set(l, i, s);
}

/* Makes a timer's slot free; its id goes stale. mu held. */
static void free_slot(sl_loop *l, uint32_t slot) {
  tslot *t = &l->slots[slot];
  t->heap_idx = -1;
  t->gen = t->gen >= 0x7fffffff ? 1 : t->gen + 1; /* ids stay positive */
  t->next_free = l->free_head;
  l->free_head = slot + 1;
}

/* Removes heap entry i and frees its slot. mu held. */
static void heap_remove(sl_loop *l, int32_t i) {
  uint32_t slot = l->heap[i];
  l->heap_len--;
  if (i < l->heap_len) {
    heap_set(l, i, l->heap[l->heap_len]);
    sift_down(l, i);
    sift_up(l, l->slots[l->heap[i]].heap_idx);
  }
  free_slot(l, slot);
}

int64_t sl_loop_timer(sl_loop *l, int64_t deadline, void *owner, sl_loop_cb cb, void *arg,
                      uint64_t token) {
  pthread_mutex_lock(&l->mu);
  if (!l->free_head) { /* grow the slot table and the heap together */
    uint32_t n = l->nslots ? l->nslots * 2 : 64;
    l->slots = sl__xrealloc(l->slots, n * sizeof *l->slots);
    l->heap = sl__xrealloc(l->heap, n * sizeof *l->heap);
    for (uint32_t i = l->nslots; i < n; i++) {
      l->slots[i].gen = 1;
      l->slots[i].heap_idx = -1;
      l->slots[i].next_free = i + 1 < n ? i + 2 : l->free_head;
    }
    l->free_head = l->nslots + 1;
    l->nslots = n;
  }
  uint32_t slot = l->free_head - 1;
  tslot *t = &l->slots[slot];
  l->free_head = t->next_free;
  t->deadline = deadline;
  t->seqno = l->seqno++;
  t->owner = owner;
  t->cb = cb;
  t->arg = arg;
  t->token = token;
  l->heap[l->heap_len] = slot;
  t->heap_idx = l->heap_len++;
  sift_up(l, t->heap_idx);
  bool first = l->heap[0] == slot;
  int64_t id = ((int64_t)t->gen << 32) | (int64_t)(slot + 1);
  pthread_mutex_unlock(&l->mu);
  if (first) poke(l); /* the earliest deadline changed: re-arm */
  return id;
}

void sl_loop_timer_cancel(sl_loop *l, int64_t id) {
  if (id <= 0) return;
  uint32_t slot = (uint32_t)(id & 0xffffffff) - 1;
  uint32_t gen = (uint32_t)(id >> 32);
  pthread_mutex_lock(&l->mu);
  if (slot < l->nslots && l->slots[slot].gen == gen && l->slots[slot].heap_idx >= 0)
    heap_remove(l, l->slots[slot].heap_idx);
  pthread_mutex_unlock(&l->mu);
}

/* ---- fd watches ---- */

int sl_loop_watch(sl_loop *l, int fd, bool write, void *owner, sl_loop_cb cb, void *arg,
                  uint64_t token) {
  watch *w = sl__xcalloc(1, sizeof *w);
  w->fd = fd;
  w->owner = owner;
  w->cb = cb;
  w->arg = arg;
  w->token = token;
  pthread_mutex_lock(&l->mu);
  w->id = EV_WATCH_BASE + l->watch_ids++;
  struct epoll_event ev = {.events = (write ? EPOLLOUT : EPOLLIN) | EPOLLONESHOT, .data.u64 = w->id};
  int rc = epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev); /* EEXIST: one watch per fd at a time */
  if (rc < 0) {
    int e = errno;
    pthread_mutex_unlock(&l->mu);
    sl__free(w);
    return -e;
  }
  w->next = l->watches;
  l->watches = w;
  pthread_mutex_unlock(&l->mu);
  return 0;
}

/* Unlinks the watch with this id (or NULL). mu held. */
static watch *take_watch(sl_loop *l, uint64_t id) {
  for (watch **pp = &l->watches; *pp; pp = &(*pp)->next) {
    if ((*pp)->id == id) {
      watch *w = *pp;
      *pp = w->next;
      epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
      return w;
    }
  }
  return NULL;
}

/* ---- persistent fd watches ---- */

static uint32_t epoll_events(int events) {
  return (events & SL_LOOP_READ ? EPOLLIN : 0) | (events & SL_LOOP_WRITE ? EPOLLOUT : 0);
}

/* The slot of a live id, or NULL. mu held. */
static ioslot *io_slot(sl_loop *l, uint64_t id) {
  uint32_t slot = (uint32_t)(id & 0xffffffff) - 1, gen = (uint32_t)((id >> 32) & 0x7fffffff);
  if (slot >= l->nios || l->ios[slot].fd < 0 || l->ios[slot].gen != gen) return NULL;
  return &l->ios[slot];
}

static void io_free_slot(sl_loop *l, ioslot *s) {
  epoll_ctl(l->epfd, EPOLL_CTL_DEL, s->fd, NULL); /* ENOENT/EBADF when already closed: fine */
  s->fd = -1;
  s->gen = s->gen >= 0x7fffffff ? 1 : s->gen + 1;
  s->next_free = l->io_free;
  l->io_free = (uint32_t)(s - l->ios) + 1;
}

int64_t sl_loop_io_start(sl_loop *l, int fd, int events, void *owner, sl_loop_io_cb cb, void *arg) {
  pthread_mutex_lock(&l->mu);
  if (!l->io_free) {
    uint32_t n = l->nios ? l->nios * 2 : 64;
    l->ios = sl__xrealloc(l->ios, n * sizeof *l->ios);
    for (uint32_t i = l->nios; i < n; i++)
      l->ios[i] = (ioslot){.fd = -1, .gen = 1, .next_free = i + 1 < n ? i + 2 : l->io_free};
    l->io_free = l->nios + 1;
    l->nios = n;
  }
  uint32_t slot = l->io_free - 1;
  ioslot *s = &l->ios[slot];
  uint64_t id = EV_IO | ((uint64_t)s->gen << 32) | (slot + 1);
  struct epoll_event ev = {.events = epoll_events(events), .data.u64 = id};
  if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
    int e = errno;
    pthread_mutex_unlock(&l->mu);
    return -e;
  }
  l->io_free = s->next_free;
  *s = (ioslot){.fd = fd, .events = events, .gen = s->gen, .owner = owner, .cb = cb, .arg = arg};
  pthread_mutex_unlock(&l->mu);
  return (int64_t)(id & ~EV_IO);
}

int sl_loop_io_modify(sl_loop *l, int64_t id, int events) {
  int rc = 0;
  pthread_mutex_lock(&l->mu);
  ioslot *s = io_slot(l, (uint64_t)id);
  if (s && s->events != events) {
    struct epoll_event ev = {.events = epoll_events(events), .data.u64 = EV_IO | (uint64_t)id};
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, s->fd, &ev) < 0) rc = -errno;
    else s->events = events;
  }
  pthread_mutex_unlock(&l->mu);
  return rc;
}

void sl_loop_io_stop(sl_loop *l, int64_t id) {
  pthread_mutex_lock(&l->mu);
  ioslot *s = io_slot(l, (uint64_t)id);
  if (s) io_free_slot(l, s);
  pthread_mutex_unlock(&l->mu);
}

void sl_loop_hold(sl_loop *l, int delta) {
  if (atomic_fetch_add(&l->holds, delta) + delta == 0 && l->virtual_time) poke(l); /* may move now */
}

/* Runs the callback of persistent watch id for epoll events `got`. dispatch held. */
static void io_dispatch(sl_loop *l, uint64_t id, uint32_t got) {
  pthread_mutex_lock(&l->mu);
  ioslot *s = io_slot(l, id);
  ioslot copy = s ? *s : (ioslot){.fd = -1};
  pthread_mutex_unlock(&l->mu);
  if (copy.fd < 0) return;
  int ready = (got & EPOLLIN ? SL_LOOP_READ : 0) | (got & EPOLLOUT ? SL_LOOP_WRITE : 0);
  if (got & (EPOLLERR | EPOLLHUP)) ready |= SL_LOOP_READ | SL_LOOP_WRITE;
  copy.cb(copy.arg, copy.fd, ready);
}

/* Removing entries one by one while walking the heap could miss some: a removal sifts entries
 * not yet visited past the walk. So: free the owner's slots, compact the rest, and rebuild. */
void sl_loop_cancel_timers(sl_loop *l, void *owner) {
  pthread_mutex_lock(&l->mu);
  int32_t kept = 0;
  for (int32_t i = 0; i < l->heap_len; i++) {
    uint32_t slot = l->heap[i];
    if (l->slots[slot].owner == owner) free_slot(l, slot);
    else heap_set(l, kept++, slot);
  }
  l->heap_len = kept;
  for (int32_t i = kept / 2 - 1; i >= 0; i--) sift_down(l, i);
  pthread_mutex_unlock(&l->mu);
}

void sl_loop_cancel_owner(sl_loop *l, void *owner) {
  pthread_mutex_lock(&l->dispatch);
  sl_loop_cancel_timers(l, owner);
  pthread_mutex_lock(&l->mu);
  for (uint32_t i = 0; i < l->nios; i++)
    if (l->ios[i].fd >= 0 && l->ios[i].owner == owner) io_free_slot(l, &l->ios[i]);
  for (watch **pp = &l->watches; *pp;) {
    watch *w = *pp;
    if (w->owner == owner) {
      *pp = w->next;
      epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
      sl__free(w);
    } else {
      pp = &w->next;
    }
  }
  pthread_mutex_unlock(&l->mu);
  pthread_mutex_unlock(&l->dispatch);
}

/* ---- the loop thread ---- */

/* Fires every timer due at `now`, earliest first. Takes mu for each pop so callbacks may add
 * timers. dispatch held. */
static void fire_due(sl_loop *l, int64_t now) {
  for (;;) {
    pthread_mutex_lock(&l->mu);
    if (l->heap_len == 0 || l->slots[l->heap[0]].deadline > now) {
      pthread_mutex_unlock(&l->mu);
      return;
    }
    tslot t = l->slots[l->heap[0]];
    heap_remove(l, 0);
    pthread_mutex_unlock(&l->mu);
    t.cb(t.arg, t.token);
  }
}

/* Arms the timerfd at the earliest deadline (real clock). */
static void arm(sl_loop *l) {
  struct itimerspec its = {0};
  pthread_mutex_lock(&l->mu);
  if (l->heap_len > 0) {
    int64_t d = l->slots[l->heap[0]].deadline;
    if (d <= 0) d = 1;
    its.it_value.tv_sec = d / 1000000000;
    its.it_value.tv_nsec = d % 1000000000;
  }
  pthread_mutex_unlock(&l->mu);
  timerfd_settime(l->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Virtual clock: when every worker is idle, jump to the earliest timer. */
static bool advance_virtual(sl_loop *l) {
  sl_sched *s = atomic_load(&l->sched);
  if (!s || !sl_sched_all_idle(s, &l->holds)) return false;
  bool moved = false;
  pthread_mutex_lock(&l->mu);
  if (l->heap_len > 0) {
    int64_t d = l->slots[l->heap[0]].deadline;
    if (d > (int64_t)atomic_load(&l->vnow)) atomic_store(&l->vnow, d);
    moved = true;
  }
  pthread_mutex_unlock(&l->mu);
  return moved;
}

static void *loop_main(void *arg) {
  sl_loop *l = arg;
  struct epoll_event evs[64];
  while (!atomic_load(&l->stopping)) {
    if (!l->virtual_time) arm(l);
    int n = epoll_wait(l->epfd, evs, 64, -1);
    if (n < 0) n = 0; /* EINTR; nothing else is expected of a valid epoll fd: keep the timers going */
    pthread_mutex_lock(&l->dispatch);
    for (int i = 0; i < n; i++) {
      uint64_t id = evs[i].data.u64, cnt;
      if (id == EV_WAKE || id == EV_TIMER) {
        ssize_t r = read(id == EV_WAKE ? l->evfd : l->tfd, &cnt, sizeof cnt);
        (void)r;
        continue;
      }
      if (id & EV_IO) {
        io_dispatch(l, id & ~EV_IO, evs[i].events);
        continue;
      }
      pthread_mutex_lock(&l->mu);
      watch *w = take_watch(l, id);
      pthread_mutex_unlock(&l->mu);
      if (w) {
        w->cb(w->arg, w->token);
        sl__free(w);
      }
    }
    if (l->virtual_time) {
      /* fire what is due; while that woke nothing and all is idle, jump to the next timer */
      do fire_due(l, atomic_load(&l->vnow));
      while (!atomic_load(&l->stopping) && advance_virtual(l));
    } else {
      fire_due(l, mono_ns());
    }
    pthread_mutex_unlock(&l->dispatch);
  }
  return NULL;
}

int sl_loop_new(bool virtual_time, sl_loop **out) {
  sl_loop *l = sl__xcalloc(1, sizeof *l);
  pthread_mutex_init(&l->mu, NULL);
  pthread_mutex_init(&l->dispatch, NULL);
  l->virtual_time = virtual_time;
  l->epfd = epoll_create1(EPOLL_CLOEXEC);
  l->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  l->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (l->epfd < 0 || l->evfd < 0 || l->tfd < 0) goto fail;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV_WAKE};
  if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) < 0) goto fail;
  ev.data.u64 = EV_TIMER;
  if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->tfd, &ev) < 0) goto fail;
  if (pthread_create(&l->thread, NULL, loop_main, l) != 0) goto fail;
  *out = l;
  return 0;
fail:
  if (l->epfd >= 0) close(l->epfd);
  if (l->evfd >= 0) close(l->evfd);
  if (l->tfd >= 0) close(l->tfd);
  pthread_mutex_destroy(&l->mu);
  pthread_mutex_destroy(&l->dispatch);
  sl__free(l);
  return -EIO;
}

/* Under the dispatch lock: once it returns (s NULL) the loop thread no longer touches the old
 * scheduler, which may then be freed. */
void sl_loop_set_sched(sl_loop *l, sl_sched *s) {
  pthread_mutex_lock(&l->dispatch);
  atomic_store(&l->sched, s);
  pthread_mutex_unlock(&l->dispatch);
}

void sl_loop_free(sl_loop *l) {
  if (!l) return;
  atomic_store(&l->stopping, true);
  poke(l);
  pthread_join(l->thread, NULL);
  while (l->watches) {
    watch *w = l->watches;
    l->watches = w->next;
    sl__free(w);
  }
  close(l->epfd);
  close(l->evfd);
  close(l->tfd);
  pthread_mutex_destroy(&l->mu);
  pthread_mutex_destroy(&l->dispatch);
  sl__free(l->ios);
  sl__free(l->slots);
  sl__free(l->heap);
  sl__free(l);
}
