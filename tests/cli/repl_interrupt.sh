#!/usr/bin/env bash
# Ctrl-C in `sluice repl` while a long pipeline runs on the real clock: the run drains (what was
# read reaches the file, renamed into place), the summary says so, and the prompt comes back
# working. Waits for visible progress, not for a fixed time. A second run of the same pipeline
# object works too (it is built again), and Ctrl-C stops a Lua loop at the prompt.
. "$(dirname "$0")/lib.bash"
. "$ROOT/tests/cli/tmux.bash"

start
# 50000 records a second for half an hour: only Ctrl-C ends it
line 'p = sluice.pipeline{}'
line 'p:generate(100000000):throttle(50000):file("out.txt")'
line ':run'
# the live table shows records written
written() { screen | awk '$1 == "file#3" && NF == 8 && $4 + 0 > 0 { ok = 1 } END { exit !ok }'; } # 8 columns: the live table, not a summary
until_ok 20 written || { screen; fail "no progress shown"; }
keys C-c
expect_screen "interrupted (drained)"
until_ok 10 at_prompt || { screen; fail "no prompt after the run"; }
line 'n = 6 * 7'
line 'n'
expect_line '42'
# exactly what the file sink received is in the file, in order
line ':stats'
until_ok 10 eval 'screen | grep -q "^  file#3 .*[0-9]"' || { screen; fail "no stats"; }
k=$(screen | awk '$1 == "file#3" { v = $3 } END { print v }')
[ -n "$k" ] && [ "$k" -gt 0 ] || { screen; fail "stats: file#3 in = '$k'"; }
cmp -s out.txt <(seq 1 "$k") || fail "out.txt is not the first $k records (it has $(wc -l <out.txt))"

# the same pipeline object runs again (built again from its steps); Ctrl-C drains again
drained() { screen | grep -c "^sluice: pipeline 'pipeline' interrupted (drained)"; }
before=$(drained)
line ':run'
until_ok 10 written || { screen; fail "no progress in the second run"; }
keys C-c
until_ok 10 eval '[ "$(drained)" -gt "$before" ]' || { screen; fail "the second run did not drain"; }
until_ok 10 at_prompt || { screen; fail "no prompt after the second run"; }

# Ctrl-C stops Lua code at the prompt
line 'while true do end'
stopped() { keys C-c; sleep 0.1; screen | grep -qE '(^|\^C)interrupted$'; } # again, in case the first came early
until_ok 10 stopped || { screen; fail "Ctrl-C did not stop the Lua loop"; }
line '"still here"'
expect_line '"still here"'
echo "repl_interrupt: ok"
