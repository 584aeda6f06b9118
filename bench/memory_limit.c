/*
 * memory_limit.c — memory_limit under a slow sink: a source of RECORD-byte strings (VOLUME bytes
 * in all) as fast as it may, a Lua map (r -> r: every record is copied into Lua and back), and a
 * sink 100 times slower than the source (it waits on a timer per batch: the time the bytes would
 * take at a hundredth of the speed measured for source -> sink alone). With memory_limit LIMIT the source pauses instead of the queues growing; prints the
 * peak RSS (VmHWM) against the limit, the peak of queued bytes the engine counted, and the time.
 * The figure: LIMIT 64 MiB, 10 GB of records: peak RSS under about 2 × LIMIT + a base.
 * usage: bench_memory_limit [VOLUME (default 256MiB)] [LIMIT (default 64MiB)] [RECORD (default 1MiB)]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long status_kib(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, key, strlen(key)) == 0) v = atol(line + strlen(key));
  if (f) fclose(f);
  return v;
}

static int64_t volume, record;
static char *text;
static double sink_ns_per_byte; /* 0: no wait (and no map: the calibration run) */

typedef struct src {
  int64_t sent;
} src;

static int src_produce(void *ctx, sl_emitter *em) {
  src *s = ctx;
  for (uint32_t i = 0; i < sl_emitter_room(em) && s->sent < volume; i++, s->sent += record)
    sl_emit(em, SL_NO_ORIGIN, sl_str(text, (size_t)record));
  return s->sent < volume ? 0 : SL_DONE;
}

static const sl_option no_options[] = {SL_OPTIONS_END};

static const sl_stage_kind src_kind = {
    .abi = SL_STAGE_ABI, .name = "bigsrc", .doc = "bench: big strings", .options = no_options,
    .ctx_size = sizeof(src), .flags = SL_STAGE_SOURCE, .produce = src_produce,
};

typedef struct slow {
  sl_stage *st;
} slow;

static int slow_init(void *ctx, sl_stage *st, sl_error_t *err) {
  ((slow *)ctx)->st = st;
  return 0;
}

static int slow_process(void *ctx, sl_batch *in, sl_emitter *em) {
  slow *s = ctx;
  if (sink_ns_per_byte == 0) return 0;
  int64_t bytes = 0;
  for (uint32_t i = 0; i < in->len; i++) bytes += (int64_t)sl_str_len(&in->recs[i]);
  sl_stage_timer(s->st, sl_stage_now(s->st) + (int64_t)((double)bytes * sink_ns_per_byte), 1);
  return SL_PARKED; /* the batch is written when the timer fires */
}

static int slow_event(void *ctx, uint64_t token, sl_emitter *em) { return 0; }

static const sl_stage_kind slow_kind = {
    .abi = SL_STAGE_ABI, .name = "slowsink", .doc = "bench: a slow sink", .options = no_options,
    .ctx_size = sizeof(slow), .flags = SL_STAGE_SINK, .init = slow_init, .process = slow_process, .event = slow_event,
};

/* Runs the pipeline; returns the wall time. */
static double run(const char *limit, uint64_t *peak_bytes) {
  sl_engine_config cfg;
  sl_engine_config_init(&cfg);
  sl_engine *e;
  sl_error_t err;
  if (sl_engine_new(&cfg, &e, &err) || sl_engine_register(e, &src_kind, &err) || sl_engine_register(e, &slow_kind, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    exit(1);
  }
  sl_pipeline *p;
  sl_pipeline_new(e, "memory", &p, NULL);
  int rc = limit ? sl_pipeline_set(p, "memory_limit", sl_cstr(limit), NULL, &err) : 0;
  if (!rc) rc = sl_pipeline_add_json(p, "bigsrc", NULL, &err);
  if (!rc && sink_ns_per_byte > 0) rc = sl_pipeline_add_json(p, "map", "{\"fn\": \"r\"}", &err);
  if (!rc) rc = sl_pipeline_add_json(p, "slowsink", NULL, &err);
  double t0 = now_s();
  if (!rc) rc = sl_pipeline_run(p, &err);
  double t = now_s() - t0;
  if (rc) {
    fprintf(stderr, "%s\n", err.msg);
    exit(1);
  }
  sl_pipeline_memory(p, NULL, peak_bytes);
  sl_pipeline_free(p);
  sl_engine_free(e);
  return t;
}

int main(int argc, char **argv) {
  int64_t limit_bytes;
  const char *limit = argc > 2 ? argv[2] : "64MiB";
  if (sl_parse_size(argc > 1 ? argv[1] : "256MiB", &volume) || sl_parse_size(limit, &limit_bytes) ||
      sl_parse_size(argc > 3 ? argv[3] : "1MiB", &record) || volume < 1 || record < 1 || limit_bytes < 1) {
    fprintf(stderr, "usage: bench_memory_limit [VOLUME] [LIMIT] [RECORD] (sizes like 10GB, 64MiB, 1MiB)\n");
    return 2;
  }
  text = malloc((size_t)record);
  memset(text, 'x', (size_t)record);
  /* the source's own speed, into a sink that does not wait (and no limit: nothing is counted) */
  int64_t full = volume;
  volume = full / 8 > 256 * record ? full / 8 : (full < 256 * record ? full : 256 * record);
  uint64_t peak;
  double t = run(NULL, &peak);
  double src_bps = (double)volume / t;
  sink_ns_per_byte = 100.0 * 1e9 / src_bps;
  volume = full;
  FILE *f = fopen("/proc/self/clear_refs", "w");
  bool reset = f && fputs("5", f) >= 0;
  if (f) fclose(f);
  long base = status_kib("VmRSS:");
  t = run(limit, &peak);
  printf("memory_limit %s, %.2f GB in %.0f KiB records, source %.0f MB/s, sink 100x slower (%.1f MB/s): %.1f s\n", limit,
         (double)volume / 1e9, (double)record / 1024, src_bps / 1e6, src_bps / 100 / 1e6, t);
  printf("  peak RSS %.1f MiB (%s; base before the run %.1f MiB), = base + %.2f x the limit; peak queued bytes counted %.1f MiB\n",
         status_kib("VmHWM:") / 1024.0, reset ? "VmHWM reset before the run" : "VmHWM of the whole process", base / 1024.0,
         (status_kib("VmHWM:") - base) * 1024.0 / (double)limit_bytes, (double)peak / 1048576);
  /* the same figures on one line for bench/run (bench/README.md: "BENCH lines") */
  printf("BENCH {\"seconds\": %.6f, \"bytes\": %lld, \"peak_rss_kib\": %ld, \"base_rss_kib\": %ld, \"limit_kib\": %lld, "
         "\"limit_k\": %.3f, \"queued_peak_kib\": %.0f, \"source_mbps\": %.1f}\n",
         t, (long long)volume, status_kib("VmHWM:"), base, (long long)(limit_bytes / 1024),
         (status_kib("VmHWM:") - base) * 1024.0 / (double)limit_bytes, (double)peak / 1024, src_bps / 1e6);
  free(text);
  return 0;
}
