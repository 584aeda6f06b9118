#!/usr/bin/env bash
# Lua pipeline scripts through the CLI: run (script arguments, summary, --stats), check and graph
# (p:run() checks or draws instead of running), configuration and run-time errors, and SIGINT
# on a pipeline slowed by a Lua map that calls sluice.sleep.
. "$(dirname "$0")/lib.bash"

cat >p.lua <<'LUA'
local sluice = require "sluice"
local out = arg[1] or "out.txt"
local p = sluice.pipeline { workers = 2, name = "doubler" }
p:generate(50)
 :map(function(r) return r * 2 end)
 :filter("r % 4 == 0")
 :file { path = out, name = "save" }
local stats = p:run()
print("script saw", stats.stages.save["in"], arg[2])
LUA
expect 0 "$S" run p.lua mine.txt -- --flag --stats x
out_has "script saw	25	--flag"
err_has "pipeline 'doubler' completed"
cmp -s mine.txt <(seq 4 4 100) || fail "run: mine.txt"
expect 0 "$S" run --stats stats.json --quiet p.lua
[ "$(stats_get stats.json save out)" -eq 25 ] || fail "--stats of a script"
[ ! -s "$T/err" ] || fail "--quiet printed: $(cat "$T/err")"

rm -f out.txt
expect 0 "$S" check p.lua
out_has "p.lua: ok (4 stages)"
[ ! -e out.txt ] || fail "check ran the pipeline"

expect 0 "$S" graph p.lua
out_has 'digraph "doubler"' 'fn=r % 4 == 0' 'save\nfile\npath=out.txt'
grep -q "script saw" "$T/out" && fail "the script's print went into the graph"
grep -q "script saw" "$T/err" || fail "the script's print was lost"
if command -v dot >/dev/null; then dot -Tsvg "$T/out" >/dev/null || fail "dot cannot render the script's graph"; fi
[ ! -e out.txt ] || fail "graph ran the pipeline"

# configuration errors name the script line: exit 2
printf 'local sluice = require "sluice"\nlocal p = sluice.pipeline {}\np:generate(3)\n  :mapp(function(r) return r end)\n' >bad.lua
for verb in run check graph; do
  expect 2 "$S" $verb bad.lua
  err_has "bad.lua:3:1: unknown stage kind 'mapp': did you mean 'map'?"
done
printf 'local x = \n' >syntax.lua
expect 2 "$S" run syntax.lua
err_has "syntax.lua:"
expect 2 "$S" run nosuch.lua
err_has "nosuch.lua"

# a failure at run time: exit 1, reported once
cat >fails.lua <<'LUA'
local sluice = require "sluice"
local p = sluice.pipeline {}
p:generate(3):map('error("boom")', { on_error = "fail" }):null()
p:run()
print("not reached")
LUA
expect 1 "$S" run fails.lua
err_has "boom" "failed"
[ "$(grep -c boom "$T/err")" -eq 1 ] || fail "the failure is reported more than once: $(cat "$T/err")"
grep -q "not reached" "$T/out" && fail "the script went on after a failed run"

# a script error outside any pipeline: exit 1 with Lua's message
printf 'error("bad script")\n' >raise.lua
expect 1 "$S" run raise.lua
err_has "bad script"

# SIGINT while a Lua map sleeps: drained, exit 130, the first K lines with K = what was read
seq 200000 >in.txt
cat >slow.lua <<'LUA'
local sluice = require "sluice"
local p = sluice.pipeline { name = "slow" }
p:lines { path = "in.txt", name = "read" }
 :map(function(r) sluice.sleep(0.001) return r end)
 :file { path = "out.txt", name = "save" }
p:run()
print("not reached")
LUA
rm -f out.txt
"$S" run slow.lua --stats sigstats.json >run.out 2>run.err &
pid=$!
cleanup_pids+=("$pid")
wait_for 60 bash -c 'ls -a | grep -q "^\.out\.txt\.sluice-"'
sleep 0.5
kill -INT "$pid"
set +e
wait "$pid"
rc=$?
set -e
[ "$rc" -eq 130 ] || fail "Lua SIGINT: exit $rc: $(cat run.err)"
k=$(stats_get sigstats.json read out)
[ "$k" -gt 0 ] && [ "$k" -lt 200000 ] || fail "Lua SIGINT: read $k"
cmp -s out.txt <(seq 1 "$k") || fail "Lua SIGINT: out.txt is not the first $k lines"
grep -q "not reached" run.out && fail "Lua SIGINT: the script went on"
grep -q "interrupted (drained)" run.err || fail "Lua SIGINT: summary: $(cat run.err)"
[ "$(grep -c interrupted run.err)" -le 2 ] || fail "Lua SIGINT: noisy: $(cat run.err)"
echo "cli_lua: ok"
