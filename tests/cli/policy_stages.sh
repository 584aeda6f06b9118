#!/usr/bin/env bash
# The timeout, retry and circuit_breaker stage kinds (DESIGN section 6): a map with that policy,
# its options flat. On the virtual clock, from YAML and Lua: exact results and times, retries in
# --stats, the dead letter's attempts, "circuit open" fast failures, option errors.
. "$(dirname "$0")/lib.bash"

cat >r.yaml <<'YAML'
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
  - generate: 4
  - retry: { fn: flaky, attempts: 3, backoff: exponential, initial: 100ms }
    name: call
  - file: { path: out.jsonl, codec: jsonl }
YAML
expect 0 "$S" run --virtual-time --quiet --stats s.json r.yaml
printf '%s\n' '{"r":1,"t":0.3,"tries":3}' '{"r":2,"t":0.6,"tries":3}' '{"r":4,"t":1.2,"tries":3}' | cmp -s - out.jsonl \
  || fail "retried output: $(cat out.jsonl)"
[ "$(stats_get s.json call retries)" -eq 8 ] && [ "$(stats_get s.json call errors)" -eq 1 ] || fail "stats: $(cat s.json)"
python3 - <<'PY' || fail "dead letter: $(cat dead.jsonl)"
import json
d = [json.loads(l) for l in open("dead.jsonl")]
assert len(d) == 1 and d[0]["record"] == 3 and d[0]["attempts"] == 3 and d[0]["stage"] == "call", d
assert "always 3" in d[0]["error"], d
PY
# constant backoff and retry_on: only "flaky N" errors are retried (e holds the traceback too)
sed 's/backoff: exponential, initial: 100ms/backoff: constant, initial: 1s, retry_on: "e:find(\\"flaky %d\\")"/' r.yaml >r2.yaml
expect 0 "$S" run --virtual-time --quiet --stats s2.json r2.yaml
printf '%s\n' '{"r":1,"t":2.0,"tries":3}' '{"r":2,"t":4.0,"tries":3}' '{"r":4,"t":6.0,"tries":3}' | cmp -s - out.jsonl \
  || fail "constant backoff: $(cat out.jsonl)"
[ "$(stats_get s2.json call retries)" -eq 6 ] || fail "retry_on: $(cat s2.json)"

# timeout: the slow call fails after 500ms; from Lua, with the duration as the shorthand
cat >t.lua <<'LUA'
local sluice = require "sluice"
local p = sluice.pipeline {}
p:generate(3)
 :timeout("500ms", { fn = function(r) if r == 2 then sluice.sleep("10s") end return r * 10 end, name = "slow" })
 :file { path = "t.txt" }
p:run()
LUA
expect 0 "$S" run --virtual-time --stats ts.json t.lua
printf '10\n30\n' | cmp -s - t.txt || fail "timeout output: $(cat t.txt)"
err_has "timeout after 500ms"
[ "$(stats_get ts.json slow errors)" -eq 1 ] || fail "timeout stats: $(cat ts.json)"

# circuit_breaker: 4 failures in a window of 4 open it; the next records fail fast ("circuit
# open") without a call until open_for has passed, then a half-open trial closes it again
cat >cb.yaml <<'YAML'
lua: |
  calls = 0
  function call(r)
    calls = calls + 1
    if r <= 4 then error("down") end
    return { r = r, calls = calls }
  end
stages:
  - generate: { count: 8, rate: 1 }
  - circuit_breaker: { fn: call, window: 4, min_calls: 4, failure_rate: 50, open_for: 2500ms, half_open_calls: 1 }
    name: guarded
    parallelism: 1
  - stdout: jsonl
YAML
expect 0 "$S" run --virtual-time --stats cb.json cb.yaml
printf '%s\n' '{"calls":5,"r":7}' '{"calls":6,"r":8}' | cmp -s - out || fail "breaker output: $(cat out)"
err_has "circuit open"
[ "$(stats_get cb.json guarded errors)" -eq 6 ] || fail "breaker stats: $(cat cb.json)"

# option errors: a typo with a suggestion, a missing fn, a bad duration
cat >e.yaml <<'YAML'
stages:
  - generate: 3
  - retry: { fn: "r", atempts: 3 }
  - stdout: {}
YAML
expect 2 "$S" check e.yaml
err_has "e.yaml:3:" "unknown option 'atempts'" "did you mean 'attempts'"
printf 'stages:\n  - generate: 3\n  - timeout: 1s\n  - stdout: {}\n' >e2.yaml
expect 2 "$S" check e2.yaml
err_has "e2.yaml:3:" "fn"
echo ok
