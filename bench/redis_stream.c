/*
 * redis_stream.c — throughput of the Redis stream stages against the server's own rates.
 * Starts Debian's redis-server on a free loopback port (no persistence) unless --port names a
 * running one, then prints entries/s of:
 *   1. baseline XADD: N entries {n = i} in pipelined batches of 256 (hiredis, one connection);
 *   2. baseline XREADGROUP + XACK: the same N entries read in a group, COUNT 256, each batch
 *      acknowledged (hiredis, one connection) — what a consumer costs the server at best;
 *   3. sluice: redis_stream_in (a new group over the same entries) → map (Lua: r.m = n * 2) →
 *      redis_stream (another stream), at workers 1 and 2, timed from start until the sink wrote N.
 * Prints figures only. usage: bench_redis_stream [N (default 200000)] [--port P]
 */
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sluice.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &len)) return -1;
  close(fd);
  return ntohs(a.sin_port);
}

static redisContext *connect_wait(int port) {
  for (int i = 0; i < 500; i++) {
    redisContext *c = redisConnect("127.0.0.1", port);
    if (c && !c->err) return c;
    if (c) redisFree(c);
    usleep(10000);
  }
  return NULL;
}

static void cmd(redisContext *c, const char *fmt, const char *a) {
  redisReply *r = redisCommand(c, fmt, a);
  if (r) freeReplyObject(r);
}

/* 1: N XADDs, pipelined in batches of 256. */
static double bench_xadd(redisContext *c, const char *stream, long n) {
  double t0 = now_s();
  for (long i = 1; i <= n;) {
    long b = 0;
    for (; b < 256 && i <= n; b++, i++) redisAppendCommand(c, "XADD %s * n %ld", stream, i);
    for (; b > 0; b--) {
      void *r;
      if (redisGetReply(c, &r) != REDIS_OK) return -1;
      freeReplyObject(r);
    }
  }
  return n / (now_s() - t0);
}

/* 2: read everything in a group, COUNT 256, acknowledging each batch. */
static double bench_read(redisContext *c, const char *stream, long n) {
  cmd(c, "XGROUP CREATE %s base 0", stream);
  double t0 = now_s();
  long got = 0;
  while (got < n) {
    redisReply *r = redisCommand(c, "XREADGROUP GROUP base c COUNT 256 STREAMS %s >", stream);
    if (!r || r->type != REDIS_REPLY_ARRAY) return -1;
    redisReply *ents = r->element[0]->element[1];
    const char **argv = malloc((3 + ents->elements) * sizeof *argv);
    argv[0] = "XACK";
    argv[1] = stream;
    argv[2] = "base";
    for (size_t k = 0; k < ents->elements; k++) argv[3 + k] = ents->element[k]->element[0]->str;
    redisReply *a = redisCommandArgv(c, 3 + (int)ents->elements, argv, NULL);
    if (a) freeReplyObject(a);
    free(argv);
    got += (long)ents->elements;
    freeReplyObject(r);
  }
  return n / (now_s() - t0);
}

/* 3: the pipeline at `workers`, from start until its sink wrote n records. */
static double bench_sluice(int port, int workers, long n) {
  sl_engine_config cfg;
  sl_engine_config_init(&cfg);
  cfg.workers = workers;
  sl_engine *e;
  sl_error_t err;
  if (sl_engine_new(&cfg, &e, &err)) return fprintf(stderr, "%s\n", err.msg), -1;
  char src[256], sink[256];
  snprintf(src, sizeof src, "{\"url\": \"redis://127.0.0.1:%d/0\", \"stream\": \"in\", \"group\": \"w%d\", \"start\": \"0\", \"name\": \"src\"}", port, workers);
  snprintf(sink, sizeof sink, "{\"url\": \"redis://127.0.0.1:%d/0\", \"stream\": \"out%d\", \"name\": \"sink\"}", port, workers);
  sl_pipeline *p;
  sl_pipeline_new(e, "bench", &p, NULL);
  if (sl_pipeline_add_json(p, "redis_stream_in", src, &err) ||
      sl_pipeline_add_json(p, "map", "{\"fn\": \"function(r) r.m = tonumber(r.n) * 2 return r end\"}", &err) ||
      sl_pipeline_add_json(p, "redis_stream", sink, &err) || sl_pipeline_start(p, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    return -1;
  }
  double t0 = now_s();
  sl_stage_stats s;
  do {
    usleep(1000);
    sl_pipeline_stats(p, 2, &s);
  } while (s.out < (uint64_t)n && !sl_pipeline_done(p));
  double t = now_s() - t0;
  sl_pipeline_stop(p);
  sl_pipeline_wait(p, -1, NULL);
  sl_pipeline_free(p);
  sl_engine_free(e);
  return s.out >= (uint64_t)n ? n / t : -1;
}

int main(int argc, char **argv) {
  long n = 200000;
  int port = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
    else n = atol(argv[i]);
  }
  pid_t server = 0;
  char dir[] = "/tmp/sluice-bench-redis-XXXXXX";
  if (!port) {
    port = free_port();
    if (!mkdtemp(dir) || port <= 0) return fprintf(stderr, "no port or folder\n"), 1;
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    server = fork();
    if (server == 0) {
      execlp("redis-server", "redis-server", "--port", ports, "--bind", "127.0.0.1", "--dir", dir, "--save", "",
             "--appendonly", "no", "--logfile", "/dev/null", (char *)NULL);
      _exit(127);
    }
  }
  redisContext *c = connect_wait(port);
  if (!c) return fprintf(stderr, "no redis-server on port %d (install redis-server: make deps)\n", port), 1;
  cmd(c, "DEL %s", "in");
  for (int w = 1; w <= 2; w++) {
    char k[16];
    snprintf(k, sizeof k, "out%d", w);
    cmd(c, "DEL %s", k);
  }
  printf("redis_stream, %ld entries, redis-server on 127.0.0.1:%d\n", n, port);
  double xadd = bench_xadd(c, "in", n);
  printf("  baseline XADD (pipelined 256)             %10.0f entries/s\n", xadd);
  double rd = bench_read(c, "in", n);
  printf("  baseline XREADGROUP COUNT 256 + XACK      %10.0f entries/s\n", rd);
  double both = 1 / (1 / xadd + 1 / rd); /* one server doing both, one after the other */
  printf("  baseline both (read + ack, then XADD)     %10.0f entries/s\n", both);
  for (int w = 1; w <= 2; w++) {
    double r = bench_sluice(port, w, n);
    printf("  sluice in -> map (Lua) -> out, workers %d  %10.0f entries/s  (%.2f x both)\n", w, r, r / both);
  }
  redisFree(c);
  if (server > 0) {
    kill(server, SIGTERM);
    waitpid(server, NULL, 0);
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (system(rm) != 0) fprintf(stderr, "could not remove %s\n", dir);
  }
  return 0;
}
