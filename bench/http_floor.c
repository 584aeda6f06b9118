/*
 * http_floor.c — bench_http_floor PORT N C [OUT]: the fan-out workload of bench/http_fanout.sh done by
 * the barest client there is, to say what the machine and the test server allow: one thread, one
 * epoll, C kept-alive loopback connections opened at once, each sending "GET /item/I" for the
 * next record as soon as its answer is read (Content-Length framing, each body checked). No
 * libcurl, no Lua, no engine: ~2 us of CPU per request, so its wall time less the ideal N * delay
 * / C is what the test server, the kernel and the scheduler cost (the floor of every client).
 *
 * Prints "N done, B bad" (exit 1 when B > 0); with OUT, writes each finished record's number on
 * its own line there, as the other variants of bench/run's fanout workload do (their outputs are
 * compared). bench/http_fanout.sh and bench/run time it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct conn {
  int fd;
  long item;       /* the record its request is for, or 0: none left */
  char buf[4096];  /* answer bytes read so far */
  size_t len;
} conn;

static long next_item = 1, total, ndone, nbad;
static FILE *out; /* the finished records' numbers, or NULL */

/* Sends the request for the next record on c (none when every record has been sent). */
static void send_next(conn *c) {
  c->item = next_item <= total ? next_item++ : 0;
  if (!c->item) return;
  char req[128];
  int n = snprintf(req, sizeof req, "GET /item/%ld HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", c->item);
  if (write(c->fd, req, (size_t)n) != n) { /* a fresh loopback socket has room for one request */
    perror("bench_http_floor: write");
    exit(1);
  }
}

/* Takes every whole answer in c's buffer, each followed by the next request. */
static void take_answers(conn *c) {
  for (;;) {
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end) return;
    size_t hlen = (size_t)(end - c->buf) + 4, blen = 0;
    for (char *l = memchr(c->buf, '\n', hlen); l && l < end; l = memchr(l + 1, '\n', (size_t)(end - l)))
      if (strncasecmp(l + 1, "content-length:", 15) == 0) blen = strtoul(l + 16, NULL, 10);
    if (c->len < hlen + blen) return;
    char want[64];
    int wl = snprintf(want, sizeof want, "/item/%ld", c->item);
    if ((size_t)wl != blen || memcmp(c->buf + hlen, want, blen) != 0) nbad++;
    memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
    c->len -= hlen + blen;
    ndone++;
    if (out) fprintf(out, "%ld\n", c->item);
    send_next(c);
  }
}

int main(int argc, char **argv) {
  if (argc != 4 && argc != 5) {
    fprintf(stderr, "usage: bench_http_floor PORT N C [OUT]\n");
    return 2;
  }
  if (argc == 5 && !(out = fopen(argv[4], "w"))) {
    perror(argv[4]);
    return 1;
  }
  int port = atoi(argv[1]), nconn = atoi(argv[3]);
  total = atol(argv[2]);
  if (port <= 0 || total <= 0 || nconn <= 0) return 2;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  conn *cs = calloc((size_t)nconn, sizeof *cs);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  for (int i = 0; i < nconn; i++) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0) { /* blocking: loopback answers at once */
      perror("bench_http_floor: connect");
      return 1;
    }
    cs[i].fd = s;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    send_next(&cs[i]);
  }
  struct epoll_event evs[256];
  while (ndone < total) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0) {
        fprintf(stderr, "bench_http_floor: the server closed a connection\n");
        return 1;
      }
      c->len += (size_t)r;
      take_answers(c);
    }
  }
  for (int i = 0; i < nconn; i++) close(cs[i].fd);
  free(cs);
  close(ep);
  if (out) fclose(out);
  printf("%ld done, %ld bad\n", ndone, nbad);
  return nbad > 0;
}
