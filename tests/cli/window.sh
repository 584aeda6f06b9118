#!/usr/bin/env bash
# window (issue 5): tumbling windows by count and by time on the virtual clock, per key with
# partition_by, built-in aggregates and a Lua reducer, closed by their timer, their count or the
# end of the stream; exact outputs from YAML and from Lua; configuration errors.
. "$(dirname "$0")/lib.bash"

# count windows per key, every aggregate and a reducer; the last windows close at the end
cat >count.yaml <<'YAML'
stages:
  - generate: 10
  - map: "{ host = r % 2 == 0 and 'a' or 'b', ms = r * 10, tag = r == 3 and 'x' or nil }"
  - window:
      count: 3
      aggregates: { n: count, total: { sum: ms }, lo: { min: ms }, hi: { max: ms }, avg: { mean: ms }, tagged: { count: tag } }
      fn: "function(acc, r) acc[#acc + 1] = r.ms; return acc end"
      init: []
    partition_by: r.host
    parallelism: 1
  - stdout: jsonl
YAML
expect 0 "$S" run --quiet count.yaml
cat >want <<'OUT'
{"key":"b","n":3,"total":90,"lo":10,"hi":50,"avg":30.0,"tagged":1,"value":[10,30,50]}
{"key":"a","n":3,"total":120,"lo":20,"hi":60,"avg":40.0,"tagged":0,"value":[20,40,60]}
{"key":"b","n":2,"total":160,"lo":70,"hi":90,"avg":80.0,"tagged":0,"value":[70,90]}
{"key":"a","n":2,"total":180,"lo":80,"hi":100,"avg":90.0,"tagged":0,"value":[80,100]}
OUT
cmp -s out want || fail "count windows: $(cat out)"

# time windows of 1s over 2 records a second with a pause: each closes at its slot's end (the
# map stamps when it left), the empty slots [2, 3) and [3, 4) emit nothing (records 5 to 7 come
# at 4.5 s, after the sleep), the last one closes at the end of the stream
cat >time.yaml <<'YAML'
lua: |
  function pace(r) if r == 5 then sluice.sleep(2.5) end return r end
stages:
  - generate: { count: 7, rate: 2 }
  - map: pace
  - window:
      time: 1s
      aggregates: { n: count, sum: { sum: . }, max: { max: . } }
  - map: "{ from = r.start, to = r['end'], n = r.n, sum = r.sum, max = r.max, at = sluice.now() }"
  - stdout: jsonl
YAML
expect 0 "$S" run --quiet --virtual-time time.yaml
cat >want <<'OUT'
{"at":1.0,"from":0.0,"max":2,"n":2,"sum":3,"to":1.0}
{"at":2.0,"from":1.0,"max":4,"n":2,"sum":7,"to":2.0}
{"at":4.5,"from":4.0,"max":7,"n":3,"sum":18,"to":5.0}
OUT
cmp -s out want || fail "time windows: $(cat out)"

# the same from Lua, keyed, count and time together (whichever first), aggregates as a list
cat >w.lua <<'LUA'
local sluice = require "sluice"
local p = sluice.pipeline {}
p:generate { count = 12, rate = 4 }
 :map(function(r) return { k = r % 2, v = r } end)
 :window { count = 3, time = "2s", partition_by = function(r) return r.k end, parallelism = 2,
           aggregates = { { n = "count" }, { total = { sum = "v" } } } }
 :map(function(r) return string.format("%d %g-%g n=%d total=%d at=%g", r.key, r.start, r["end"], r.n, r.total, sluice.now()) end)
 :stdout()
p:run()
LUA
expect 0 "$S" run --quiet --virtual-time --workers 2 w.lua
sort out >got
cat >want <<'OUT'
0 0-2 n=1 total=8 at=2
0 0-2 n=3 total=12 at=1.25
0 2-4 n=2 total=22 at=2.75
1 0-2 n=1 total=7 at=2
1 0-2 n=3 total=9 at=1
1 2-4 n=2 total=20 at=2.75
OUT
cmp -s got want || fail "lua windows: $(cat out)"

# a field that is no number fails its record (on_error), the window goes on
cat >bad.yaml <<'YAML'
stages:
  - values: [{ v: 1 }, { v: "x" }, { v: 2 }]
  - window: { aggregates: { total: { sum: v } } }
  - stdout: jsonl
YAML
expect 0 "$S" run bad.yaml
[ "$(cat out)" = '{"total":3}' ] || fail "bad field: $(cat out)"
err_has "window: aggregate 'total': field 'v' is string, not a number"

# configuration errors name the file, the stage and what to write
cat >e.yaml <<'YAML'
stages:
  - generate: 3
  - window: { count: 2, aggregates: { n: coutn } }
    name: w
  - stdout: {}
YAML
expect 2 "$S" check e.yaml
err_has "e.yaml:3:" "stage 'w'" "unknown aggregate 'coutn': did you mean 'count'?"
sed 's/n: coutn/n: { sum }/' e.yaml >e2.yaml
expect 2 "$S" check e2.yaml
err_has "stage 'w'" "aggregate 'n': write count, or one of {sum|min|max|mean|count: <field>}"
sed 's/, aggregates: { n: coutn }//' e.yaml >e3.yaml
expect 2 "$S" check e3.yaml
err_has "stage 'w'" "give aggregates (such as {n: count}), fn (a Lua reducer), or both"
echo ok
