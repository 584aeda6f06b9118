#!/usr/bin/env bash
# `sluice run --metrics ADDR`: /metrics passes a strict Prometheus text-format check and its
# counters equal /stats and the --stats file at the end; the breaker state is there; /health is
# 200 while running and 503 while draining; bad ADDRs are usage errors; a strict checker that
# cannot fail is no checker: it rejects broken expositions.
. "$(dirname "$0")/lib.bash"
CHECK="python3 $ROOT/tests/cli/promcheck.py"

get() { curl -s -o "$2" -w '%{http_code}' http://127.0.0.1:"$1""$3"; }

# the checker itself rejects what breaks the format
printf '# TYPE a_total counter\na_total{x="1} 1\n' >bad2.txt  # unterminated label
printf '# TYPE a_total counter\na_total 1\na_total 2\n' >bad3.txt  # repeated series
printf 'a 1\nb 1\na 2\n' >bad4.txt                           # interleaved
printf '# TYPE a_total counter\na_total 1' >bad5.txt           # no final newline
$CHECK bad2.txt >/dev/null 2>&1 && fail "checker took an unterminated label"
$CHECK bad3.txt >/dev/null 2>&1 && fail "checker took a repeated series"
$CHECK bad4.txt >/dev/null 2>&1 && fail "checker took interleaved families"
$CHECK bad5.txt >/dev/null 2>&1 && fail "checker took a missing newline"
printf '# TYPE c counter\nc 1\n' >bad6.txt
$CHECK bad6.txt >/dev/null 2>&1 && fail "checker took a counter without _total"

# records in over HTTP (end to end: all reached the sink), a breaker, a dead letter
in=$(free_port)
mp=$(free_port)
cat >m.yaml <<YAML
pipeline: metered
dead_letter: { file: { path: dead.jsonl, codec: jsonl } }
lua: |
  function f(r)
    if r.n % 10 == 0 then error("tens fail") end
    return r
  end
stages:
  - http_in: { port: $in, ack: end_to_end }
    name: ingest
  - map:
      name: call
      fn: f
      circuit_breaker: { window: 100, min_calls: 50, failure_rate: 90, open_for: 1h }
  - file: { path: m.jsonl, codec: jsonl }
YAML
"$S" run --quiet --metrics "$mp" --stats end.json m.yaml >run.out 2>run.err & pid=$!
cleanup_pids+=("$pid")
wait_for 10 curl -s -o /dev/null http://127.0.0.1:"$mp"/health
[ "$(get "$mp" h.txt /health)" = 200 ] || fail "/health while running: $(cat h.txt)"
grep -q ok h.txt || fail "/health body"
wait_for 10 curl -s -o /dev/null http://127.0.0.1:"$in"/
python3 "$ROOT/tests/cli/http_post.py" "$in" 4 2000 100 >post.json || fail "posting: $(cat post.json)"
[ "$(get "$mp" metrics.txt /metrics)" = 200 ] || fail "/metrics"
[ "$(get "$mp" stats.json /stats)" = 200 ] || fail "/stats"
$CHECK metrics.txt stats.json >check.txt || fail "/metrics: $(cat check.txt) $(head -50 metrics.txt)"
grep -q '^sluice_stage_records_in_total{pipeline="metered",stage="call",kind="map"} 2000$' metrics.txt || fail "call in: $(grep records_in metrics.txt)"
grep -q '^sluice_stage_dead_letter_total{pipeline="metered",stage="call",kind="map"} 200$' metrics.txt || fail "dead letters"
grep -q '^sluice_stage_breaker_state{pipeline="metered",stage="call",state="closed"} 1$' metrics.txt || fail "breaker state"
grep -q '^sluice_lua_memory_bytes{pipeline="metered"} [1-9]' metrics.txt || fail "Lua memory: $(grep lua metrics.txt)"
[ "$(get "$mp" x.txt /nothing)" = 404 ] || fail "an unknown path"
kill -INT "$pid"
set +e; wait "$pid"; rc=$?; set -e
[ "$rc" -eq 130 ] || fail "run exited $rc: $(cat run.err)"
# nothing moved after the POSTs were acknowledged: the final stats are the scraped figures
$CHECK metrics.txt end.json >check.txt || fail "/metrics against the final --stats: $(cat check.txt)"
[ "$(wc -l <m.jsonl)" -eq 1800 ] || fail "sink: $(wc -l <m.jsonl)"

# /health is 503 while draining (a slow stage keeps the drain going until drain_timeout)
mp=$(free_port)
cat >d.yaml <<'YAML'
drain_timeout: 2s
stages:
  - generate: {}
  - throttle: { rate: 5, per: 1s }
  - "null": {}
YAML
"$S" run --quiet --metrics "127.0.0.1:$mp" d.yaml >run.out 2>run.err & pid=$!
cleanup_pids+=("$pid")
wait_for 10 curl -s -o /dev/null http://127.0.0.1:"$mp"/health
[ "$(get "$mp" h.txt /health)" = 200 ] || fail "/health before draining"
kill -INT "$pid"
draining() { [ "$(get "$mp" h.txt /health)" = 503 ] && grep -q draining h.txt; }
wait_for 10 draining
set +e; wait "$pid"; rc=$?; set -e
[ "$rc" -eq 130 ] || fail "drained run exited $rc"

# bad addresses are usage errors; a port in use is a run-time error
expect 2 "$S" run --metrics nope d.yaml
err_has "--metrics 'nope'" "PORT or HOST:PORT"
expect 2 "$S" run --metrics 127.0.0.1:99999 d.yaml
python3 -c 'import socket,time,sys; s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(30)' >busy.txt & busy=$!
cleanup_pids+=("$busy")
wait_for 5 test -s busy.txt
expect 1 "$S" run --metrics "$(cat busy.txt)" d.yaml
err_has "cannot listen"

kill "$busy"; wait "$busy" 2>/dev/null || true
