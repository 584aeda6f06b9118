#!/usr/bin/env bash
# partition_by (issue 5): a stateful stage runs one instance per key. Per-key order is kept under
# parallelism 2 through route and partitioned take, from YAML and from Lua: 1,000,000 records over
# 100 keys in the normal build, 50,000 under the sanitizers (each record a Lua call or three, and
# TSan is ~10x slower); a Lua checker fails the run on the first record out of order. Per-key
# timers (throttle) on the virtual clock; configuration errors.
. "$(dirname "$0")/lib.bash"

N=1000000 TAKE=5000
if grep -qE '^SL_(A|T)SAN:BOOL=ON' "$B/CMakeCache.txt" 2>/dev/null; then N=50000 TAKE=250; fi

cat >order.yaml <<'YAML'
# route and partition_by keep per-key order under parallelism 2
workers: 2
lua: |
  local last, keys = {}, 0
  -- records of key k are k, k + 100, k + 200, ... (100 for key 0): anything else is out of order
  function check(acc, r)
    local k = r % 100
    local want = last[k] and last[k] + 100 or (k == 0 and 100 or k)
    if r ~= want then error(string.format("key %d: got %d, wanted %d", k, r, want)) end
    if not last[k] then keys = keys + 1 end
    last[k] = r
    return { n = acc.n + 1, keys = keys }
  end
stages:
  - generate:
      count: ${N:-1000000}
  - route: { outputs: { low: "r % 100 < 50" } }
    name: route
    parallelism: 2
  - take: ${TAKE:-5000}
    name: first_low
    input: route.low
    partition_by: r % 100
    parallelism: 2
  - take: ${TAKE:-5000}
    name: first_high
    input: route
    partition_by: r % 100
    parallelism: 2
  - reduce: { fn: check, init: { n: 0, keys: 0 } }
    input: [first_low, first_high]
    on_error: fail
  - stdout: jsonl
YAML
N=$N TAKE=$TAKE expect 0 "$S" run --quiet --stats order.json order.yaml
[ "$(cat out)" = "{\"keys\":100,\"n\":$((TAKE * 100))}" ] || fail "yaml order: $(cat out)"
[ "$(stats_get order.json first_low in)" -eq $((N / 2)) ] || fail "stats: $(cat order.json)"
python3 -c 'import json,sys; s=json.load(open("order.json"))["stages"]; sys.exit(0 if len(s) == 6 else 1)' \
  || fail "the key stages are not stages of their own: $(cat order.json)"
# the checker fails when a key is split (a key function that is not the checker's)
sed 's/partition_by: r % 100/partition_by: r % 7/' order.yaml >split.yaml
N=20000 TAKE=50 expect 1 "$S" run --quiet split.yaml
err_has "stage 'reduce#5'" "got "

cat >order.lua <<'LUA'
local sluice = require "sluice"
local N, TAKE = tonumber(arg[1]), tonumber(arg[2])
local last, keys = {}, 0
local function check(acc, r)
  local k = r % 100
  local want = last[k] and last[k] + 100 or (k == 0 and 100 or k)
  if r ~= want then error(string.format("key %d: got %d, wanted %d", k, r, want)) end
  if not last[k] then keys = keys + 1 end
  last[k] = r
  return { n = acc.n + 1, keys = keys }
end
local key = function(r) return r % 100 end
local p = sluice.pipeline { workers = 2 }
p:generate(N)
 :route({ { low = function(r) return r % 100 < 50 end } }, { name = "route", parallelism = 2 })
 :take(TAKE, { name = "first_high", partition_by = key, parallelism = 2 })
p:take(TAKE, { name = "first_low", input = "route.low", partition_by = key, parallelism = 2 })
p:reduce(check, { n = 0, keys = 0 }, { input = { "first_low", "first_high" }, on_error = "fail" })
 :stdout { codec = "jsonl" }
p:run()
LUA
expect 0 "$S" run --quiet order.lua $N $TAKE
[ "$(cat out)" = "{\"keys\":100,\"n\":$((TAKE * 100))}" ] || fail "lua order: $(cat out)"

# per-key timers: throttle 1 per second for each key on its own; chunks per key
cat >thr.yaml <<'YAML'
stages:
  - generate: 6
  - throttle: { rate: 1, per: 1s }
    partition_by: "r % 2 == 0 and 'even' or 'odd'"
  - map: "{ n = r, t = sluice.now() }"
  - stdout: jsonl
YAML
expect 0 "$S" run --virtual-time --quiet --workers 2 thr.yaml
python3 - "$T/out" <<'PY' || fail "per-key throttle: $(cat "$T/out")"
import json, sys
recs = sorted((json.loads(l) for l in open(sys.argv[1])), key=lambda r: r["n"])
assert [(r["n"], r["t"]) for r in recs] == [(1, 0), (2, 0), (3, 1), (4, 1), (5, 2), (6, 2)], recs
PY
cat >ch.yaml <<'YAML'
stages:
  - generate: 10
  - chunks: { size: 2, timeout: 1s }
    partition_by: r % 3
    parallelism: 1
  - stdout: jsonl
YAML
expect 0 "$S" run --virtual-time --quiet ch.yaml
printf '%s\n' '[3,6]' '[1,4]' '[2,5]' '[9]' '[7,10]' '[8]' | sort >want
sort out | cmp -s - want || fail "per-key chunks: $(cat out)"

# a key function that fails, or gives no key: the record follows on_error, naming the stage
cat >bad.yaml <<'YAML'
stages:
  - generate: 4
  - take: 10
    name: t
    partition_by: "r ~= 2 and r or nil"
  - stdout: {}
YAML
expect 0 "$S" run --stats bad.json bad.yaml
[ "$(sort out | tr '\n' ' ')" = "1 3 4 " ] || fail "nil key: $(cat out)"
err_has "record skipped: partition_by: the key must be a string, a number or a boolean (got nil)"
[ "$(stats_get bad.json t errors)" -eq 1 ] || fail "key errors: $(cat bad.json)"

# configuration errors: where, which stage, what to do
cat >e1.yaml <<'YAML'
stages:
  - generate: 4
  - map: "r"
    partition_by: r % 2
  - stdout: {}
YAML
expect 2 "$S" check e1.yaml
err_has "e1.yaml:4:19: stage 'map#2': partition_by applies to stages that keep state" "remove partition_by"
cat >e2.yaml <<'YAML'
stages:
  - generate: 4
  - take: 2
    partition_by: "r %% 2"
  - stdout: {}
YAML
expect 2 "$S" check e2.yaml
err_has "e2.yaml:4:" "stage 'take#2'"
cat >e3.yaml <<'YAML'
stages:
  - generate: 4
  - take: 2
    parallelism: 2
  - stdout: {}
YAML
expect 2 "$S" check e3.yaml
err_has "stage 'take#2'" "give partition_by to run one instance per key"
echo ok
