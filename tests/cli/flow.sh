#!/usr/bin/env bash
# Flow control through YAML and Lua pipelines on the virtual clock (issue 5): throttle (exact
# release times, bursts, on_limit: drop), chunks (size, timeout after a pause, unchunk), route
# with named outputs and a default, dead letters in a file sink, merge, memory_limit; and their
# configuration errors.
. "$(dirname "$0")/lib.bash"

# throttle rate 10 per 1s over 100 records: record i leaves at (i-1)*100 ms exactly
cat >thr.yaml <<'YAML'
stages:
  - generate: 100
  - throttle: { rate: 10, per: 1s }
    name: limit
  - map: "{ n = r, ms = math.floor(sluice.now() * 1000 + 0.5) }"
  - stdout: jsonl
YAML
expect 0 "$S" run --virtual-time --quiet thr.yaml
python3 - "$T/out" <<'PY' || fail "throttle times: $(head -3 "$T/out")"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert [r["n"] for r in recs] == list(range(1, 101)), recs[:3]
assert all(r["ms"] == (r["n"] - 1) * 100 for r in recs), [r for r in recs if r["ms"] != (r["n"] - 1) * 100][:3]
PY
# burst 5: the first five at t = 0, then one every 100 ms
expect 0 "$S" run --virtual-time --quiet thr.yaml --set limit.burst=5
python3 - "$T/out" <<'PY' || fail "throttle burst: $(head -7 "$T/out")"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert all(r["ms"] == (0 if r["n"] <= 5 else (r["n"] - 5) * 100) for r in recs), recs[:7]
PY

# on_limit: drop at 10/s over a 100/s source for 10 s keeps 100 and counts 900
cat >shed.yaml <<'YAML'
stages:
  - generate: { count: 1000, rate: 100 }
  - throttle: { rate: 10, on_limit: drop }
    name: shed
  - null: {}
YAML
expect 0 "$S" run --virtual-time --quiet --stats shed.json shed.yaml
[ "$(stats_get shed.json shed out)" -eq 100 ] && [ "$(stats_get shed.json shed dropped)" -eq 900 ] ||
  fail "drop mode: $(cat shed.json)"
# the same in Lua
cat >shed.lua <<'LUA'
local sluice = require "sluice"
local p = sluice.pipeline {}
p:generate { count = 1000, rate = 100 }
 :throttle(10, "1s", { on_limit = "drop", name = "shed" })
 :null()
local s = p:run()
print(s.stages.shed.out, s.stages.shed.dropped)
LUA
expect 0 "$S" run --virtual-time --quiet shed.lua
out_has "100	900"

# chunks: size 3 over 1..10; a partial chunk leaves exactly 1 s after its first record when the
# source pauses (a Lua source that sleeps 5 s after two records)
cat >chunks.yaml <<'YAML'
stages:
  - generate: 10
  - chunks: 3
  - stdout: jsonl
YAML
expect 0 "$S" run --quiet chunks.yaml
[ "$(cat "$T/out" | tr '\n' ' ')" = "[1,2,3] [4,5,6] [7,8,9] [10] " ] || fail "chunks: $(cat "$T/out")"
cat >pause.yaml <<'YAML'
stages:
  - lua: "function(i) if i == 3 then sluice.sleep(5) end if i <= 5 then return i end end"
  - chunks: { size: 3, timeout: 1s }
  - map: "{ r, sluice.now() }"
  - stdout: jsonl
tests:
  - name: chunks of three
    input: { stage: chunks#2, records: [1, 2, 3, 4] }
    expect: { stage: map#3, lua: "#records == 2 and #records[1][1] == 3 and records[2][1][1] == 4" }
YAML
expect 0 "$S" run --virtual-time --quiet pause.yaml
[ "$(cat "$T/out" | tr '\n' ' ')" = '[[1,2],1.0] [[3,4,5],5.0] ' ] || fail "chunks timeout: $(cat "$T/out")"
expect 0 "$S" test pause.yaml
cat >unchunk.lua <<'LUA'
local sluice = require "sluice"
local p = sluice.pipeline {}
p:generate(7):chunks(3, "1s"):unchunk():map("r * 10"):stdout()
p:run()
LUA
expect 0 "$S" run --virtual-time --quiet unchunk.lua
[ "$(cat "$T/out" | tr '\n' ' ')" = "10 20 30 40 50 60 70 " ] || fail "unchunk: $(cat "$T/out")"

# route: first match wins, the rest to default; input: <stage>.<output>; dead letters with the
# stage, the error and the attempts
cat >route.yaml <<'YAML'
dead_letter: { file: { path: dl.jsonl, codec: jsonl } }
stages:
  - values: [1, 3, 5, 15, "x", 7]
  - route:
      outputs:
        fizz: "r % 3 == 0"
        buzz: "r % 5 == 0"
    name: by
  - file: rest.txt
  - file: fizz.txt
    input: by.fizz
  - file: buzz.txt
    input: by.buzz
tests:
  - name: fizz first
    input: { stage: by, records: [15, 5] }
    expect: { stage: file#4, records: [15] }
  - name: the rest
    input: { stage: by, records: [15, 5, 1] }
    expect: { stage: file#3, records: [1] }
YAML
expect 0 "$S" run --quiet --stats route.json route.yaml
[ "$(cat rest.txt | tr '\n' ' ')" = "1 7 " ] && [ "$(cat fizz.txt | tr '\n' ' ')" = "3 15 " ] &&
  [ "$(cat buzz.txt)" = "5" ] || fail "route: rest $(cat rest.txt) fizz $(cat fizz.txt) buzz $(cat buzz.txt)"
python3 - dl.jsonl <<'PY' || fail "dead letter: $(cat dl.jsonl)"
import json, sys
[d] = [json.loads(l) for l in open(sys.argv[1])]
assert d["record"] == "x" and d["stage"] == "by" and d["attempts"] == 1, d
assert d["error"].startswith("route output 'fizz': "), d
assert isinstance(d["time"], float), d
PY
[ "$(stats_get route.json by dead_letter)" -eq 1 ] && [ "$(stats_get route.json dead_letter in)" -eq 1 ] || fail "stats: $(cat route.json)"
expect 0 "$S" test route.yaml
out_has "2 passed, 0 failed"
expect 0 "$S" graph route.yaml
out_has 'label="cap 1024, fizz"' 'label="cap 1024, buzz"'
cat >route.lua <<'LUA'
local sluice = require "sluice"
local p = sluice.pipeline {}
p:values { 1, 3, 5, 15, 7 }
 :route({ { fizz = function(r) return r % 3 == 0 end }, { buzz = "r % 5 == 0" } }, { name = "by" })
 :file { path = "rest.txt" }
p:file { input = "by.fizz", path = "fizz.txt" }
p:run()
LUA
rm -f rest.txt fizz.txt # buzz (5) is read by nobody in the script: let go
expect 0 "$S" run --quiet route.lua
[ "$(cat rest.txt | tr "\n" " ")" = "1 7 " ] && [ "$(cat fizz.txt | tr '\n' ' ')" = "3 15 " ] || fail "route.lua"
# errors: an output that does not exist, a Lua map of outputs (no order), a bad predicate
sed 's/input: by.buzz/input: by.buz/' route.yaml >bad.yaml
expect 2 "$S" check bad.yaml
err_has "bad.yaml:" "input 'by.buz': stage 'by' has no output 'buz'; did you mean 'buzz'?"
printf 'local sluice = require "sluice"\nlocal p = sluice.pipeline {}\np:values{records={1}}:route({ a = "r", b = "r" }):null()\np:run()\n' >bad.lua
expect 2 "$S" run bad.lua
err_has "bad.lua:3:1: route outputs are tried in order"
sed 's/fizz: "r % 3 == 0"/fizz: "r %% 3 =="/' route.yaml >bad2.yaml
expect 2 "$S" check bad2.yaml
err_has "bad2.yaml:" "stage 'by'"

# merge: two inputs, both arrive, each in order
cat >merge.yaml <<'YAML'
stages:
  - generate: 500
    name: a
  - values: [x, y, z]
    name: b
  - merge: {}
    input: [a, b]
  - file: merged.txt
YAML
expect 0 "$S" run --quiet merge.yaml
[ "$(wc -l <merged.txt)" -eq 503 ] && [ "$(grep -v '^[xyz]$' merged.txt | sort -n | tr '\n' ' ')" = "$(grep -v '^[xyz]$' merged.txt | tr '\n' ' ')" ] &&
  [ "$(grep '^[xyz]$' merged.txt | tr -d '\n')" = "xyz" ] || fail "merge"

# memory_limit: accepted, nothing dropped
cat >mem.yaml <<'YAML'
memory_limit: 256KiB
stages:
  - generate: 20000
  - map: "string.rep('x', 1000) .. r"
  - filter: "#r > 1000"
  - null: {}
    name: sink
YAML
expect 0 "$S" run --quiet --stats mem.json mem.yaml
[ "$(stats_get mem.json sink in)" -eq 20000 ] || fail "memory_limit lost records"
sed 's/256KiB/lots/' mem.yaml >badmem.yaml
expect 2 "$S" check badmem.yaml
err_has "badmem.yaml:1:15: setting 'memory_limit' expects a size"
echo "flow: ok"
