/*
 * httpd.c — the HTTP/1.1 test server of the HTTP client tests and benchmark (not part of sluice).
 * One thread, epoll, keep-alive; it listens on a free loopback port and writes the port to the
 * file given with --port-file. What it does is chosen per request by query parameters:
 *
 *   delay=MS     answer after MS milliseconds (default: --delay, 0)
 *   status=N     answer with status N (default 200)
 *   reset=1      reset the connection (RST) instead of answering
 *   hang=1       never answer
 *   fail=K       only the first K requests to this path get status/reset; later ones get 200
 *
 * The body of a 2xx/4xx/5xx answer is the request body when there was one, else the request
 * target; header X-Count is how many requests this path has seen. GET /_stats answers
 * {"requests":N,"conns":C,"max_conns":M,"accepts":A,...} (connections open now, at most at once, and
 * accepted in all: more accepts than connections at once means the client did not reuse them),
 * and for the benchmark (bench/http_fanout.sh): "cpu_ms", the server's own CPU time; "turn_us",
 * the client's turnaround on a kept-alive connection (from an answer written to the whole next
 * request read on that connection) as [p50, p90, p99, max, mean] in microseconds; "delay_us", from
 * a request read to its answer written (the delay asked for plus the server's own lateness),
 * the same way; "first_us", from the first accept to the first request on a new connection, as
 * [mean, max] (how long opening the connections took, when they are reused).
 *
 * With --log FILE every request is logged as one line: METHOD TARGET BODY (newlines in the
 * body written as |); with --log-type too, METHOD TARGET TYPE BODY, TYPE the Content-Type
 * header without its spaces (- when there is none).
 *
 * Usage: sluice_test_httpd --port-file FILE [--delay MS] [--log FILE [--log-type]]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXFD 65536

typedef struct conn {
  int fd;
  bool open;
  unsigned gen;   /* bumped by every accept on this fd */
  bool busy;      /* a response is pending (no new request read meanwhile) */
  bool close_after;
  int64_t answered; /* us, monotonic: the last answer written (0: none yet) */
  char *in;       /* request bytes */
  size_t len, cap;
} conn;

typedef struct pend {
  struct pend *prev, *next;
  int64_t due;    /* us, monotonic: answered then to the microsecond (not at the next millisecond,
                     which would answer the requests of each millisecond in one burst) */
  int64_t arrived; /* us, monotonic: when the request was read (for delay_us) */
  int fd;
  unsigned gen;   /* of the connection it answers */
  int status;     /* 0: reset */
  char *body;
  size_t blen;
  long count;
} pend;

typedef struct path_count {
  struct path_count *next;
  char *path;
  long n;
} path_count;

static conn conns[MAXFD];
static pend *phead, *ptail;
#define NBUCKETS 65536
static path_count *paths[NBUCKETS]; /* hash table of request counts by path */
static long nrequests, nconns, max_conns, naccepts;
static int epfd;
static int default_delay;
static FILE *logf_;
static bool log_type;

/* Latency histograms for /_stats: 10 us buckets up to 1 s. */
#define HBUCKETS 100000
typedef struct hist {
  long n[HBUCKETS];
  long count;
} hist;
static hist turn, delays;
static int64_t first_accept_us, last_first_us, sum_first_us, nfirst;

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void hist_add(hist *h, int64_t us) {
  long b = us < 0 ? 0 : us / 10;
  h->n[b < HBUCKETS ? b : HBUCKETS - 1]++;
  h->count++;
}

/* The value at fraction q of h, in us. */
static long hist_q(const hist *h, double q) {
  long want = (long)(q * (double)h->count), seen = 0;
  for (long b = 0; b < HBUCKETS; b++)
    if ((seen += h->n[b]) > want || (seen == h->count && h->n[b])) return b * 10;
  return 0;
}

static int hist_json(char *b, size_t n, const hist *h) {
  double sum = 0;
  for (long i = 0; i < HBUCKETS; i++) sum += (double)h->n[i] * (double)(i * 10 + 5);
  return snprintf(b, n, "[%ld,%ld,%ld,%ld,%.0f]", hist_q(h, 0.5), hist_q(h, 0.9), hist_q(h, 0.99), hist_q(h, 1.0),
                  h->count ? sum / (double)h->count : 0.0);
}


static void close_conn(int fd, bool reset) {
  conn *c = &conns[fd];
  if (!c->open) return;
  if (reset) {
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  c->open = false;
  c->len = 0;
  nconns--;
}

static long count_path(const char *path, size_t n) {
  uint32_t hash = 2166136261u;
  for (size_t i = 0; i < n; i++) hash = (hash ^ (unsigned char)path[i]) * 16777619u;
  path_count **bucket = &paths[hash % NBUCKETS];
  for (path_count *p = *bucket; p; p = p->next)
    if (strlen(p->path) == n && memcmp(p->path, path, n) == 0) return ++p->n;
  path_count *p = calloc(1, sizeof *p);
  p->path = strndup(path, n);
  p->n = 1;
  p->next = *bucket;
  *bucket = p;
  return 1;
}

/* The value of query parameter key in target (up to its end), or -1. */
static long param(const char *q, size_t qn, const char *key) {
  size_t kl = strlen(key);
  for (size_t i = 0; i + kl < qn; i++) {
    if ((i == 0 || q[i - 1] == '?' || q[i - 1] == '&') && memcmp(q + i, key, kl) == 0 && q[i + kl] == '=')
      return strtol(q + i + kl + 1, NULL, 10);
  }
  return -1;
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) { /* blocking enough for test responses: retry on EAGAIN */
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      struct timespec ts = {0, 100000};
      nanosleep(&ts, NULL);
      continue;
    }
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

static void respond(int fd, int status, const char *body, size_t blen, long count) {
  char head[256];
  int hn = snprintf(head, sizeof head,
                    "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nContent-Type: text/plain\r\nX-Count: %ld\r\n%s\r\n", status,
                    blen, count, conns[fd].close_after ? "Connection: close\r\n" : "");
  char *buf = malloc((size_t)hn + blen);
  memcpy(buf, head, (size_t)hn);
  memcpy(buf + hn, body, blen);
  write_all(fd, buf, (size_t)hn + blen);
  free(buf);
  conns[fd].answered = now_us();
}

static void process(int fd);

static void fire(pend *p) {
  conn *c = &conns[p->fd];
  if (c->open && c->gen == p->gen) {
    if (p->arrived) hist_add(&delays, now_us() - p->arrived);
    if (p->status == 0) {
      close_conn(p->fd, true);
    } else {
      respond(p->fd, p->status, p->body, p->blen, p->count);
      c->busy = false;
      if (c->close_after) close_conn(p->fd, false);
      else process(p->fd); /* a pipelined request already read */
    }
  }
  free(p->body);
  free(p);
}

/* Queues a response due at `due` (kept sorted; equal delays append at the tail). */
static void schedule(pend *p) {
  pend *at = ptail;
  while (at && at->due > p->due) at = at->prev;
  p->prev = at;
  p->next = at ? at->next : phead;
  if (p->next) p->next->prev = p;
  else ptail = p;
  if (at) at->next = p;
  else phead = p;
}

/* Handles one complete request in the buffer, if there is one. */
static void process(int fd) {
  conn *c = &conns[fd];
  if (!c->open || c->busy) return;
  char *end = memmem(c->in, c->len, "\r\n\r\n", 4);
  if (!end) return;
  size_t hlen = (size_t)(end - c->in) + 4, clen = 0;
  const char *ctype = NULL;
  for (char *l = memchr(c->in, '\n', hlen); l && l < end; l = memchr(l + 1, '\n', (size_t)(end - l))) {
    if (strncasecmp(l + 1, "content-length:", 15) == 0) clen = strtoul(l + 16, NULL, 10);
    if (strncasecmp(l + 1, "content-type:", 13) == 0) ctype = l + 14;
    if (strncasecmp(l + 1, "connection: close", 17) == 0) c->close_after = true;
  }
  if (c->len < hlen + clen) return;
  char *sp1 = memchr(c->in, ' ', hlen);
  char *sp2 = sp1 ? memchr(sp1 + 1, ' ', hlen - (size_t)(sp1 + 1 - c->in)) : NULL;
  if (!sp2) {
    close_conn(fd, false);
    return;
  }
  const char *target = sp1 + 1;
  size_t tn = (size_t)(sp2 - target);
  const char *qm = memchr(target, '?', tn);
  size_t pn = qm ? (size_t)(qm - target) : tn;
  nrequests++;
  pend *p = calloc(1, sizeof *p);
  p->fd = fd;
  p->gen = c->gen;
  if (pn == 7 && memcmp(target, "/_stats", 7) == 0) {
    char b[512], th[100], lh[100];
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long cpu_ms = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
    hist_json(th, sizeof th, &turn);
    hist_json(lh, sizeof lh, &delays);
    int n = snprintf(b, sizeof b,
                     "{\"requests\":%ld,\"conns\":%ld,\"max_conns\":%ld,\"accepts\":%ld,\"cpu_ms\":%ld,\"turn_us\":%s,"
                     "\"delay_us\":%s,\"first_us\":[%ld,%ld]}",
                     nrequests - 1, nconns, max_conns, naccepts, cpu_ms, th, lh,
                     nfirst ? (long)(sum_first_us / nfirst) : -1L, last_first_us ? (long)(last_first_us - first_accept_us) : -1L);
    p->body = strndup(b, (size_t)n);
    p->blen = (size_t)n;
    p->status = 200;
    p->due = now_us();
  } else {
    if (c->answered) hist_add(&turn, now_us() - c->answered);
    else last_first_us = now_us(), sum_first_us += last_first_us - first_accept_us, nfirst++;
    c->answered = 0;
    if (logf_) {
      fprintf(logf_, "%.*s %.*s ", (int)(sp1 - c->in), c->in, (int)tn, target);
      if (log_type) {
        for (const char *t = ctype; t && *t != '\r' && *t != '\n'; t++)
          if (*t != ' ') fputc(*t, logf_);
        fputs(ctype ? " " : "- ", logf_);
      }
      for (size_t k = 0; k < clen; k++) fputc(c->in[hlen + k] == '\n' ? '|' : c->in[hlen + k], logf_);
      fputc('\n', logf_);
      fflush(logf_);
    }
    long count = count_path(target, pn);
    long delay = qm ? param(qm, tn - pn, "delay") : -1;
    long status = qm ? param(qm, tn - pn, "status") : -1;
    long fail = qm ? param(qm, tn - pn, "fail") : -1;
    bool reset = qm && param(qm, tn - pn, "reset") == 1;
    bool hang = qm && param(qm, tn - pn, "hang") == 1;
    if (fail >= 0 && count > fail) status = 200, reset = false;
    p->count = count;
    p->status = reset ? 0 : status > 0 ? (int)status : 200;
    if (clen) p->body = malloc(clen), memcpy(p->body, c->in + hlen, clen), p->blen = clen;
    else p->body = strndup(target, tn), p->blen = tn;
    p->due = hang ? INT64_MAX : now_us() + 1000 * (delay >= 0 ? delay : default_delay);
    if (!hang) p->arrived = now_us();
  }
  memmove(c->in, c->in + hlen + clen, c->len - hlen - clen);
  c->len -= hlen + clen;
  c->busy = true;
  if (p->due <= now_us()) fire(p);
  else schedule(p);
}

static void on_readable(int fd) {
  conn *c = &conns[fd];
  for (;;) {
    if (c->cap - c->len < 4096) {
      c->cap = c->cap ? c->cap * 2 : 8192;
      c->in = realloc(c->in, c->cap);
    }
    size_t room = c->cap - c->len;
    ssize_t n = read(fd, c->in + c->len, room);
    if (n > 0) {
      c->len += (size_t)n;
      if ((size_t)n < room) break; /* drained: no second read for EAGAIN (epoll says when there is more) */
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    close_conn(fd, false); /* EOF or error */
    return;
  }
  process(fd);
}

int main(int argc, char **argv) {
  const char *port_file = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc) port_file = argv[++i];
    else if (strcmp(argv[i], "--delay") == 0 && i + 1 < argc) default_delay = atoi(argv[++i]);
    else if (strcmp(argv[i], "--log") == 0 && i + 1 < argc) logf_ = fopen(argv[++i], "a");
    else if (strcmp(argv[i], "--log-type") == 0) log_type = true;
    else {
      fprintf(stderr, "usage: %s --port-file FILE [--delay MS] [--log FILE [--log-type]]\n", argv[0]);
      return 2;
    }
  }
  if (!port_file) return 2;
  signal(SIGPIPE, SIG_IGN);
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) {
    perror("httpd: listen");
    return 1;
  }
  socklen_t al = sizeof a;
  getsockname(ls, (struct sockaddr *)&a, &al);
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
  FILE *f = fopen(tmp, "w");
  if (!f) return 1;
  fprintf(f, "%d\n", ntohs(a.sin_port));
  fclose(f);
  rename(tmp, port_file); /* appears whole */
  epfd = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
  epoll_ctl(epfd, EPOLL_CTL_ADD, ls, &ev);
  struct epoll_event evs[256];
  for (;;) {
    struct timespec timeout, *tp = NULL;
    if (phead && phead->due != INT64_MAX) {
      int64_t d = phead->due - now_us();
      if (d < 0) d = 0;
      timeout = (struct timespec){.tv_sec = d / 1000000, .tv_nsec = d % 1000000 * 1000};
      tp = &timeout;
    }
    int n = epoll_pwait2(epfd, evs, 256, tp, NULL);
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == ls) {
        int cfd;
        while ((cfd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
          if (cfd >= MAXFD) {
            close(cfd);
            continue;
          }
          setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conns[cfd] = (conn){.fd = cfd, .open = true, .gen = conns[cfd].gen + 1, .in = conns[cfd].in, .cap = conns[cfd].cap};
          if (!naccepts++) first_accept_us = now_us();
          if (++nconns > max_conns) max_conns = nconns;
          struct epoll_event ce = {.events = EPOLLIN, .data.fd = cfd};
          epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &ce);
        }
      } else {
        on_readable(fd);
      }
    }
    int64_t t = now_us();
    while (phead && phead->due <= t) {
      pend *p = phead;
      phead = p->next;
      if (phead) phead->prev = NULL;
      else ptail = NULL;
      fire(p);
    }
  }
}
