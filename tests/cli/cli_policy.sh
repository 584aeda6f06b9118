#!/usr/bin/env bash
# timeout, retry and circuit_breaker options through the CLI, from YAML and from a Lua script, on
# the virtual clock: exact times, the retries in --stats, the dead letter's attempts, and an
# option typo reported with a suggestion.
. "$(dirname "$0")/lib.bash"

cat >r.yaml <<'YAML'
pipeline: retrying
dead_letter: { file: { path: dead.jsonl, codec: jsonl } }
lua: |
  n = {}
  function flaky(r)
    n[r] = (n[r] or 0) + 1
    if r == 3 then error("always " .. n[r]) end
    if n[r] < 3 then error("flaky " .. n[r]) end
    return {r = r, tries = n[r], t = sluice.now()}
  end
stages:
  - generate: { count: 4 }
  - map:
      name: call
      fn: flaky
      retry: { attempts: 3, initial: 100ms, multiplier: 2 }
  - file: { path: out.jsonl, codec: jsonl }
YAML
expect 0 "$S" run --virtual-time --quiet --stats s.json r.yaml
printf '%s\n' '{"r":1,"t":0.3,"tries":3}' '{"r":2,"t":0.6,"tries":3}' '{"r":4,"t":1.2,"tries":3}' | cmp -s - out.jsonl \
  || fail "retried output: $(cat out.jsonl)"
[ "$(stats_get s.json call retries)" -eq 8 ] || fail "retries in stats: $(cat s.json)"
[ "$(stats_get s.json call errors)" -eq 1 ] || fail "errors in stats: $(cat s.json)"
python3 - <<'PY' || fail "dead letter: $(cat dead.jsonl)"
import json
d = [json.loads(l) for l in open("dead.jsonl")]
assert len(d) == 1 and d[0]["record"] == 3 and d[0]["attempts"] == 3 and d[0]["stage"] == "call", d
assert "always 3" in d[0]["error"], d
PY

cat >t.lua <<'LUA'
local sluice = require "sluice"
local p = sluice.pipeline { name = "timeouts" }
p:generate(3)
 :map(function(r) if r == 2 then sluice.sleep("10s") end return r end, { timeout = "500ms", name = "slow" })
 :file { path = "t.txt" }
p:run()
LUA
expect 0 "$S" run --virtual-time --stats ts.json t.lua
printf '1\n3\n' | cmp -s - t.txt || fail "timeout output: $(cat t.txt)"
err_has "timeout after 500ms"
python3 -c 'import json,sys; e=json.load(open("ts.json"))["elapsed_s"]; sys.exit(0 if abs(e-0.5)<1e-6 else 1)' \
  || fail "elapsed: $(cat ts.json)"

sed 's/initial: 100ms/inital: 100ms/' r.yaml >typo.yaml
expect 2 "$S" check typo.yaml
err_has "typo.yaml:" "stage 'call'" "unknown option 'inital' for retry" "did you mean 'initial'"

# the circuit breaker's state and change count: in --stats, the --progress table and the summary
cat >cb.yaml <<'YAML'
pipeline: breaking
lua: |
  function f(r)
    if sluice.now() < 20 then error("down") end
    return r
  end
stages:
  - generate: 40
  - throttle: { rate: 1, per: 1s }
  - map:
      name: call
      fn: f
      on_error: skip
      circuit_breaker: { window: 4, min_calls: 2, failure_rate: 50, open_for: 10s, half_open_calls: 1 }
  - file: { path: cb.txt }
YAML
expect 0 "$S" run --virtual-time --progress --stats cb.json cb.yaml
# t=0,1 fail: open at 1; half-open at 11: fails, open; half-open at 21: succeeds, closed
[ "$(stats_get cb.json call breaker)" = closed ] || fail "breaker state in stats: $(cat cb.json)"
[ "$(stats_get cb.json call breaker_changes)" -eq 5 ] || fail "breaker changes in stats: $(cat cb.json)"
python3 -c 'import json,sys; s=json.load(open("cb.json"))["stages"]; sys.exit("breaker" in s["generate#1"])' \
  || fail "a stage without a breaker has one in stats: $(cat cb.json)"
err_has "breaker" "closed/0" "circuit breaker closed after 5 state changes" # the first drawing, then the summary
seq 22 40 | cmp -s - cb.txt || fail "breaker output: $(cat cb.txt)"
