/*
 * demo.c — `make demo`: an ETL program embedding sluice through include/sluice.h.
 *
 * It writes a small synthetic access log, then runs the pipeline
 *
 *   lines(access.log) -> c_filter(status >= 500) -> c_map(parse into a record) -> stdout
 *                                                                               -> file (errors.jsonl)
 *
 * on all cores, prints the records, the output file's size and the per-stage stats.
 * usage: example_demo [folder for its files (default: a new temporary folder)]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sluice.h"

/* The HTTP status of an access-log line "host method path status bytes ms", or -1. */
static int status_of(const char *line) {
  const char *s = line;
  for (int field = 0; field < 3; field++) {
    s = strchr(s, ' ');
    if (!s) return -1;
    s++;
  }
  return atoi(s);
}

static int server_errors(void *ud, sl_value *rec, char *errbuf, size_t errlen) {
  if (sl_typeof(rec) != SL_TSTR) {
    snprintf(errbuf, errlen, "expected a line of text");
    return -1;
  }
  return status_of(sl_str_data(rec)) >= 500;
}

/* "host method path status bytes ms" -> {host, method, path, status, bytes, ms} */
static int parse(void *ud, sl_value *rec, char *errbuf, size_t errlen) {
  char host[64], method[16], path[256];
  long long status, bytes;
  double ms;
  if (sscanf(sl_str_data(rec), "%63s %15s %255s %lld %lld %lf", host, method, path, &status, &bytes, &ms) != 6) {
    snprintf(errbuf, errlen, "not an access-log line: %.60s", sl_str_data(rec));
    return -1;
  }
  sl_value m = sl_map(6);
  sl_map_setc(&m, "host", sl_cstr(host));
  sl_map_setc(&m, "method", sl_cstr(method));
  sl_map_setc(&m, "path", sl_cstr(path));
  sl_map_setc(&m, "status", sl_int(status));
  sl_map_setc(&m, "bytes", sl_int(bytes));
  sl_map_setc(&m, "ms", sl_double(ms));
  sl_value_free(*rec);
  *rec = m;
  return 0;
}

static int write_log(const char *path, int n) {
  static const char *hosts[] = {"10.0.0.1", "10.0.0.2", "192.168.1.7", "172.16.4.2"};
  static const char *paths[] = {"/", "/api/orders", "/api/users", "/static/app.js", "/login"};
  static const int statuses[] = {200, 200, 200, 201, 304, 404, 500, 502, 503};
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  unsigned x = 12345;
  for (int i = 0; i < n; i++) {
    x = x * 1103515245u + 12345u;
    fprintf(f, "%s %s %s %d %u %.1f\n", hosts[(x >> 8) % 4], (x >> 12) % 3 ? "GET" : "POST", paths[(x >> 16) % 5],
            statuses[(x >> 20) % 9], (x >> 4) % 5000, (double)((x >> 10) % 900) / 10.0);
  }
  return fclose(f);
}

int main(int argc, char **argv) {
  char dir[256] = "/tmp/sluice-demo-XXXXXX";
  if (argc > 1) snprintf(dir, sizeof dir, "%s", argv[1]), mkdir(dir, 0755);
  else if (!mkdtemp(dir)) return 1;
  char log[300], out[300], json[700];
  snprintf(log, sizeof log, "%s/access.log", dir);
  snprintf(out, sizeof out, "%s/errors.jsonl", dir);
  if (write_log(log, 200) != 0) {
    fprintf(stderr, "demo: cannot write %s\n", log);
    return 1;
  }

  sl_engine *e = NULL;
  sl_pipeline *p = NULL;
  sl_error_t err;
  sl_error_init(&err);
  int rc = sl_engine_new(NULL, &e, &err);
  if (!rc) rc = sl_pipeline_new(e, "access-errors", &p, &err);
  snprintf(json, sizeof json, "{\"name\": \"read\", \"path\": \"%s\"}", log);
  if (!rc) rc = sl_pipeline_add_json(p, "lines", json, &err);
  if (!rc) rc = sl_pipeline_add_fn(p, "c_filter", server_errors, NULL, sl_nil(), &err);
  if (!rc) rc = sl_pipeline_add_fn(p, "c_map", parse, NULL, sl_nil(), &err);
  if (!rc) rc = sl_pipeline_add_json(p, "stdout", "{\"name\": \"show\", \"input\": \"c_map#3\", \"codec\": \"jsonl\"}", &err);
  snprintf(json, sizeof json, "{\"name\": \"save\", \"input\": \"c_map#3\", \"path\": \"%s\"}", out);
  if (!rc) rc = sl_pipeline_add_json(p, "file", json, &err);
  if (!rc) rc = sl_pipeline_run(p, &err);
  if (rc) {
    fprintf(stderr, "demo: %s\n", err.msg);
    sl_pipeline_free(p);
    sl_engine_free(e);
    return 1;
  }
  fflush(stdout);
  struct stat sb;
  stat(out, &sb);
  fprintf(stderr, "\nwrote %s (%lld bytes) on %d workers in %.3f s\n", out, (long long)sb.st_size,
          sl_engine_workers(e), sl_pipeline_elapsed(p));
  fprintf(stderr, "%-10s %-9s %8s %8s %8s\n", "stage", "kind", "in", "out", "errors");
  for (size_t i = 0; i < sl_pipeline_stage_count(p); i++) {
    sl_stage_stats s;
    sl_pipeline_stats(p, i, &s);
    fprintf(stderr, "%-10s %-9s %8llu %8llu %8llu\n", s.name, s.kind, (unsigned long long)s.in,
            (unsigned long long)s.out, (unsigned long long)s.errors);
  }
  sl_pipeline_free(p);
  sl_engine_free(e);
  return 0;
}
