#!/usr/bin/env bash
# generate's fn option through the CLI, in YAML and in a Lua script: fn(i) for i = 1..count, the
# expression forms over i, nil emitting nothing for that i, errors under on_error (skip, dead
# letter with i as the record, fail), a function that waits (sluice.sleep) on the virtual clock
# with a rate, configuration errors with file:line, and `sluice help generate`.
. "$(dirname "$0")/lib.bash"

cat >p.yaml <<'YAML'
lua: |
  function user(i)
    if i % 3 == 0 then return nil end
    return { id = i, name = "user" .. i }
  end
stages:
  - generate: { count: 7, fn: user }
  - stdout: { codec: jsonl }
YAML
expect 0 "$S" run --quiet p.yaml
cat >want <<'OUT'
{"id":1,"name":"user1"}
{"id":2,"name":"user2"}
{"id":4,"name":"user4"}
{"id":5,"name":"user5"}
{"id":7,"name":"user7"}
OUT
diff "$T/out" want || fail "generate fn: named function"

# an expression over i, and a body with return
printf 'stages:\n  - generate: { count: 4, fn: "i * i" }\n  - stdout: {}\n' >expr.yaml
expect 0 "$S" run --quiet expr.yaml
[ "$(tr '\n' ' ' <"$T/out")" = "1 4 9 16 " ] || fail "generate fn expression: $(cat "$T/out")"
printf 'stages:\n  - generate:\n      count: 3\n      fn: |\n        local s = "x"\n        return s:rep(i)\n  - stdout: {}\n' >body.yaml
expect 0 "$S" run --quiet body.yaml
[ "$(tr '\n' ' ' <"$T/out")" = "x xx xxx " ] || fail "generate fn body: $(cat "$T/out")"

# errors follow on_error: skip (counted), dead letter (the record is i), fail (exit 1)
cat >err.yaml <<'YAML'
dead_letter: { file: { path: dl.jsonl, codec: jsonl } }
stages:
  - generate: { name: g, count: 5, fn: "function(i) if i == 2 then error('no two') end if i == 4 then return print end return i end" }
  - file: { path: out.txt }
YAML
expect 0 "$S" run --quiet --stats s.json err.yaml
[ "$(tr '\n' ' ' <out.txt)" = "1 3 5 " ] || fail "generate fn errors: $(cat out.txt)"
[ "$(stats_get s.json g errors)" -eq 2 ] || fail "generate fn errors: not counted"
python3 - <<'PY' || fail "generate fn dead letters: $(cat dl.jsonl)"
import json
rows = [json.loads(l) for l in open("dl.jsonl")]
assert [r["record"] for r in rows] == [2, 4], rows
assert "no two" in rows[0]["error"] and rows[0]["stage"] == "g", rows[0]
assert "cannot be a record" in rows[1]["error"], rows[1]
PY
sed -i 's/^dead_letter.*$/on_error: fail/' err.yaml
expect 1 "$S" run --quiet err.yaml
err_has "no two"
sed -i 's/^on_error: fail$/on_error: skip/' err.yaml
expect 0 "$S" run --quiet err.yaml
[ "$(tr '\n' ' ' <out.txt)" = "1 3 5 " ] || fail "generate fn skip: $(cat out.txt)"

# a function that waits, at a rate, on the virtual clock: in order, with the clock's times
cat >wait.yaml <<'YAML'
stages:
  - generate: { count: 4, rate: 2, fn: "function(i) sluice.sleep(0.1 * i) return { i = i, t = sluice.now() } end" }
  - stdout: { codec: jsonl }
YAML
expect 0 "$S" run --quiet --virtual-time wait.yaml
python3 - "$T/out" <<'PY' || fail "generate fn waiting: $(cat "$T/out")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["i"] for r in rows] == [1, 2, 3, 4], rows
# i is called no earlier than (i - 1) / rate and returns 0.1 * i later
for r in rows:
    assert r["t"] >= (r["i"] - 1) / 2 + 0.1 * r["i"] - 1e-9, rows
PY

# a Lua script: positional count and function
cat >p.lua <<'LUA'
local sluice = require "sluice"
local base = 100
local p = sluice.pipeline {}
p:generate(3, function(i) return { n = base + i } end):stdout { codec = "jsonl" }
p:generate { count = 2, fn = "i * 10", name = "tens" }:stdout()
p:run()
LUA
expect 0 "$S" run --quiet p.lua
out_has '{"n":101}' '{"n":102}' '{"n":103}'
grep -qx 10 "$T/out" && grep -qx 20 "$T/out" || fail "generate fn in Lua (string): $(cat "$T/out")"

# configuration errors: file:line:column and exit 2
printf 'stages:\n  - generate: { count: 2, fn: "i +" }\n  - stdout: {}\n' >bad.yaml
expect 2 "$S" check bad.yaml
err_has "bad.yaml:2:" "Lua syntax error"
printf 'stages:\n  - generate: { count: 2, fn: nosuch }\n  - stdout: {}\n' >bad2.yaml
expect 2 "$S" run bad2.yaml
err_has "bad2.yaml:2:" "no function named 'nosuch'"

expect 0 "$S" help generate
out_has "fn" "nil emits nothing for that i"
printf 'stages:\n  - generate: { count: 3, fn: "r" }\n  - stdout: {}\n' >r.yaml
expect 2 "$S" run r.yaml
err_has "r.yaml:2:5: stage 'generate#1': there is no function named 'r'" "or write an expression over i"
