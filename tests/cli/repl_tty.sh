#!/usr/bin/env bash
# `sluice repl` on a terminal (a tmux pane on a server of its own): a function over several
# lines, building and running a pipeline and seeing its output, TAB completing sluice.pi, a typo
# in a stage name, Ctrl-C clearing the line at the prompt, Ctrl-D leaving, and the history
# (Up) after a restart. HOME is the test's folder, so ~/.sluice_history is the test's own.
. "$(dirname "$0")/lib.bash"
. "$ROOT/tests/cli/tmux.bash"

start
# a function over several lines: the prompt says the chunk goes on
line 'function sq(x)'
expect_line '>> '
line '  return x * x'
line 'end'
line 'sq(12)'
expect_line '144'

# a pipeline built at the prompt, run, its output on the screen
line 'p = sluice.pipeline{}'
line 'p:generate(3):map(sq):map("r + 1000"):stdout()'
expect_screen "pipeline 'pipeline' (4 stages): generate#1 -> map#2 -> map#3 -> stdout#4"
line ':run'
expect_line '1001'
expect_line '1004'
expect_line '1009'
expect_screen "sluice: pipeline 'pipeline' completed"

# TAB completes sluice.pi to sluice.pipeline
type 'x = sluice.pi'
expect_line '> x = sluice.pi'
keys Tab
expect_line '> x = sluice.pipeline'
keys -l '{}'
keys Enter
line 'x'
expect_line "pipeline 'pipeline' (0 stages)"

# a typo in a stage name: where, what, and a suggestion; the REPL goes on
line 'p:mapp(sq)'
expect_screen "stdin:1:1: unknown stage kind 'mapp': did you mean 'map'?"
line '6 * 7'
expect_line '42'

# Ctrl-C at the prompt drops the line
type 'this is not Lua'
expect_line '> this is not Lua'
keys C-c
until_ok 10 eval 'screen | grep -A1 -x "> this is not Lua" | tail -1 | grep -qx "> *"' || { screen; fail "no new prompt after Ctrl-C"; }
line '"after ctrl-c"'
expect_line '"after ctrl-c"'
shows "syntax error" && { screen; fail "the cleared line ran"; }

# Ctrl-D leaves with 0; the history survives a restart: Up brings back the last line
line 'print("from " .. "history")'
expect_line 'from history'
keys C-d
expect_screen "REPL-EXITED 0"
grep -q 'history' "$T/.sluice_history" || fail "no history file: $(ls -a "$T")"
start
until_ok 10 ready || { screen; fail "no prompt"; }
keys Up
expect_line '> print("from " .. "history")'
keys Enter
expect_line 'from history'
echo "repl_tty: ok"
