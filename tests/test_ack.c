/*
 * test_ack.c — end-to-end acknowledgement through the real stages, as the redis_stream_in
 * source relies on it (docs/scaling.md): a unit is acknowledged only after every record derived
 * from it reached every sink it goes to (or the dead letter), through fan-out, filters that
 * drop, Lua maps with retries, chunks, flat_map, buffer_unordered, throttle and reduce.
 *
 * The source emits 0..N-1, one ack token per record. The sink marks what it receives (ints, the
 * ints inside arrays, the record inside a dead-letter map). When a token comes back OK, the
 * source checks that its record was seen by as many sinks as the case expects (or, for reduce,
 * that the sink received anything at all): an early acknowledgement is a violation.
 */
#include <stdatomic.h>

#include "test.h"

#define N 1000

static atomic_int seen[N];        /* how many sink deliveries carried record i */
static atomic_int any_seen;       /* records the sinks received */
static atomic_int violations;     /* tokens acknowledged too early */
static atomic_int acked_ok, acked_dropped;
static int want_seen[N];          /* deliveries record i needs before its ack (set by the case) */
static bool want_any;             /* reduce: the ack needs some output */

/* ---- the source: record i with token i ---- */

typedef struct asrc {
  int64_t next;
} asrc;

static int asrc_produce(void *ctx, sl_emitter *em) {
  asrc *s = ctx;
  uint32_t room = sl_emitter_room(em);
  for (uint32_t k = 0; k < room && s->next < N; k++, s->next++)
    sl_emit_acked(em, sl_int(s->next), sl_ack_new(sl_emitter_stage(em), (uint64_t)s->next));
  return s->next < N ? 0 : SL_DONE;
}

static void asrc_acked(void *ctx, uint64_t id, int status) {
  if (status != SL_ACK_OK) {
    atomic_fetch_add(&acked_dropped, 1);
    return;
  }
  atomic_fetch_add(&acked_ok, 1);
  if (atomic_load(&seen[id]) < want_seen[id] || (want_any && atomic_load(&any_seen) == 0)) {
    if (atomic_fetch_add(&violations, 1) == 0)
      fprintf(stderr, "    record %d acknowledged after %d of %d deliveries\n", (int)id, atomic_load(&seen[id]), want_seen[id]);
  }
}

static const sl_stage_kind asrc_kind = {
    .abi = SL_STAGE_ABI, .name = "acksrc", .doc = "test: 0..N-1, a token each",
    .ctx_size = sizeof(asrc), .flags = SL_STAGE_SOURCE, .produce = asrc_produce, .acked = asrc_acked,
};

/* ---- the sink: marks what it receives ---- */

static void mark(const sl_value *v) {
  if (v->type == SL_TINT && v->u.i >= 0 && v->u.i < N) atomic_fetch_add(&seen[v->u.i], 1);
  if (v->type == SL_TARRAY)
    for (size_t k = 0; k < sl_array_len(v); k++) mark(sl_array_get(v, k));
  if (v->type == SL_TMAP && sl_map_getc(v, "record")) mark(sl_map_getc(v, "record"));
}

static int asink_process(void *ctx, sl_batch *in, sl_emitter *em) {
  for (uint32_t i = 0; i < in->len; i++) {
    mark(&in->recs[i]);
    atomic_fetch_add(&any_seen, 1);
  }
  return 0;
}

static const sl_stage_kind asink_kind = {
    .abi = SL_STAGE_ABI, .name = "acksink", .doc = "test: marks the records it receives",
    .ctx_size = 0, .flags = SL_STAGE_SINK, .process = asink_process,
};

/* ---- cases ---- */

typedef struct step {
  const char *kind, *json;
} step;

/* Runs acksrc -> steps (with Lua code lua) on a virtual-clock engine and checks the acks:
 * want_ok tokens OK, want_dropped dropped, no violation. */
static void ack_case(const char *lua, const step *steps, size_t n, const char *dead_letter, int want_ok, int want_dropped) {
  for (int i = 0; i < N; i++) atomic_store(&seen[i], 0);
  atomic_store(&any_seen, 0);
  atomic_store(&violations, 0);
  atomic_store(&acked_ok, 0);
  atomic_store(&acked_dropped, 0);
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  ASSERT_OK(sl_engine_register(e, &asrc_kind, &err), &err);
  ASSERT_OK(sl_engine_register(e, &asink_kind, &err), &err);
  sl_pipeline *p;
  sl_pipeline_new(e, "acks", &p, NULL);
  if (lua) ASSERT_OK(sl_pipeline_add_lua(p, lua, strlen(lua), "test.lua", 1, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "acksrc", "{\"name\": \"src\"}", &err), &err);
  for (size_t k = 0; k < n; k++) ASSERT_OK(sl_pipeline_add_json(p, steps[k].kind, steps[k].json, &err), &err);
  if (dead_letter) ASSERT_OK(sl_pipeline_set_dead_letter(p, dead_letter, &err), &err);
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  ASSERT_EQ(atomic_load(&violations), 0);
  ASSERT_EQ(atomic_load(&acked_ok), want_ok);
  ASSERT_EQ(atomic_load(&acked_dropped), want_dropped);
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* A filter that drops the odd records (their tokens come back at once), a Lua map that fails the
 * first try of every 7th record (retried after a backoff), chunks of 10, then a fan-out to two
 * sinks: an even record is acknowledged only once its chunk reached both. */
TEST(ack_filter_retry_chunks_fanout) {
  for (int i = 0; i < N; i++) want_seen[i] = i % 2 ? 0 : 2;
  want_any = false;
  const char *lua = "tries = {}\n"
                    "function flaky(r)\n"
                    "  tries[r] = (tries[r] or 0) + 1\n"
                    "  if r % 7 == 0 and tries[r] == 1 then error('flaky') end\n"
                    "  return r\n"
                    "end\n";
  step steps[] = {
      {"filter", "{\"fn\": \"r % 2 == 0\"}"},
      {"map", "{\"fn\": \"flaky\", \"parallelism\": 1, \"retry\": {\"attempts\": 3, \"initial\": \"1s\", \"backoff\": \"constant\"}}"},
      {"chunks", "{\"size\": 10, \"name\": \"chunks\"}"},
      {"acksink", "{\"input\": \"chunks\"}"},
      {"acksink", "{\"input\": \"chunks\"}"},
  };
  ack_case(lua, steps, sizeof steps / sizeof *steps, NULL, N, 0);
}

/* Failed records: retries exhausted into the dead letter (acknowledged once it is written), or
 * skipped (acknowledged as dropped). */
TEST(ack_dead_letter_and_skip) {
  for (int i = 0; i < N; i++) want_seen[i] = 1;
  want_any = false;
  const char *lua = "function bad100(r) if r % 100 == 0 then error('bad') end return r end\n";
  step dl[] = {
      {"map", "{\"fn\": \"bad100\", \"retry\": {\"attempts\": 2, \"initial\": \"10ms\"}}"},
      {"acksink", ""},
      {"acksink", "{\"name\": \"dl\", \"input\": []}"},
  };
  ack_case(lua, dl, sizeof dl / sizeof *dl, "dl", N, 0);
  for (int i = 0; i < N; i++) want_seen[i] = i % 100 ? 1 : 0;
  step skip[] = {
      {"map", "{\"fn\": \"bad100\", \"on_error\": \"skip\"}"},
      {"acksink", ""},
  };
  ack_case(lua, skip, sizeof skip / sizeof *skip, NULL, N - N / 100, N / 100);
}

/* flat_map (two records from one: both must arrive), buffer_unordered (records held while
 * their calls sleep), throttle (records held until their time). */
TEST(ack_flat_map_async_throttle) {
  for (int i = 0; i < N; i++) want_seen[i] = 2;
  want_any = false;
  const char *lua = "function slow(r) sluice.sleep(0.01 * (r % 5)) return r end\n";
  step steps[] = {
      {"flat_map", "{\"fn\": \"function(r) sluice.emit(r) sluice.emit(r) end\"}"},
      {"buffer_unordered", "{\"concurrency\": 16, \"fn\": \"slow\"}"},
      {"throttle", "{\"rate\": 1000}"},
      {"acksink", ""},
  };
  ack_case(lua, steps, sizeof steps / sizeof *steps, NULL, N, 0);
}

/* reduce emits at the end of the stream: a record is acknowledged only after the sum it went
 * into reached the sink. */
TEST(ack_reduce_holds_until_output) {
  for (int i = 0; i < N; i++) want_seen[i] = 0;
  want_any = true;
  step steps[] = {
      {"reduce", "{\"fn\": \"function(acc, r) return acc + r end\", \"init\": 0}"},
      {"acksink", ""},
  };
  ack_case(NULL, steps, sizeof steps / sizeof *steps, NULL, N, 0);
  step keyed[] = {
      {"reduce", "{\"fn\": \"function(acc, r) return acc + 1 end\", \"init\": 0, \"key\": \"r % 3\"}"},
      {"acksink", ""},
  };
  ack_case(NULL, keyed, sizeof keyed / sizeof *keyed, NULL, N, 0);
}

/* A partial chunk at the end of the stream: the source, which waits for its tokens before it
 * ends, first sends the end of stream on, so chunks flushes the last 6 records and their tokens
 * come back (before, the two waited for each other). */
TEST(ack_partial_chunk_at_end) {
  for (int i = 0; i < N; i++) want_seen[i] = 1;
  want_any = false;
  step steps[] = {
      {"chunks", "{\"size\": 7}"},
      {"acksink", ""},
  };
  ack_case(NULL, steps, sizeof steps / sizeof *steps, NULL, N, 0);
}

/* A stage holding tokens stops reading early (take below it is satisfied) after a stage above it
 * ended normally: the source does not wait for the tokens held there. */
TEST(ack_held_below_a_finished_stage) {
  for (int i = 0; i < N; i++) want_seen[i] = 0;
  want_any = false;
  step steps[] = {
      {"filter", "{\"fn\": \"r >= 0\"}"},
      {"chunks", "{\"size\": 7}"},
      {"take", "{\"count\": 1}"},
      {"acksink", ""},
  };
  sl_engine *e = sl_test_engine(2, true);
  sl_error_t err;
  sl_error_init(&err);
  ASSERT_OK(sl_engine_register(e, &asrc_kind, &err), &err);
  ASSERT_OK(sl_engine_register(e, &asink_kind, &err), &err);
  sl_pipeline *p;
  sl_pipeline_new(e, "acks", &p, NULL);
  ASSERT_OK(sl_pipeline_add_json(p, "acksrc", "", &err), &err);
  for (size_t k = 0; k < sizeof steps / sizeof *steps; k++) ASSERT_OK(sl_pipeline_add_json(p, steps[k].kind, steps[k].json, &err), &err);
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  ASSERT_OK(sl_pipeline_wait(p, 30 * (int64_t)1000000000, &err), &err); /* a hang guard, not a timing */
  sl_pipeline_free(p);
  sl_engine_free(e);
}
