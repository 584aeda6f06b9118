#!/usr/bin/env bash
# Progress: on a terminal (a pseudo-terminal made by util-linux `script`) `sluice run` redraws a
# table on stderr; piped, it prints only the summary; --progress forces the table, --quiet none.
. "$(dirname "$0")/lib.bash"
command -v script >/dev/null || skip "util-linux script is not installed"

cat >slow.yaml <<'YAML'
stages:
  - generate: 30
    name: gen
  - throttle: { rate: 20, burst: 1 }
    name: slow
  - file: out.txt
    name: save
YAML
esc=$(printf '\033')

# on a terminal: the header, the stages, redraws (cursor up), then the summary
script -q -e -c "'$S' run slow.yaml" /dev/null >tty.txt </dev/null || fail "run under script failed: $(cat tty.txt)"
grep -q "rate/s" tty.txt || fail "no progress table on a terminal: $(cat -v tty.txt)"
grep -q "queue" tty.txt || fail "no queue column"
grep -q "${esc}\[[0-9]*A" tty.txt || fail "the table is never redrawn in place: $(cat -v tty.txt | head)"
[ "$(grep -c 'stage  ' tty.txt)" -ge 3 ] || fail "fewer than 3 drawings in 1.5 s: $(cat -v tty.txt)"
grep -q "pipeline 'pipeline' completed" tty.txt || fail "no summary"
cmp -s out.txt <(seq 1 30) || fail "output under a terminal"

# piped: no table, no escape sequences, the summary
expect 0 "$S" run slow.yaml
grep -q "rate/s" "$T/err" && fail "progress table on a pipe"
grep -q "$esc" "$T/err" && fail "escape sequences on a pipe: $(cat -v "$T/err")"
err_has "completed" "slow"

# --progress forces it; --quiet on a terminal shows nothing
expect 0 "$S" run slow.yaml --progress
err_has "rate/s"
script -q -e -c "'$S' run slow.yaml --quiet" /dev/null >tty.txt </dev/null || fail "--quiet under script failed"
[ ! -s tty.txt ] || fail "--quiet printed on a terminal: $(cat -v tty.txt)"
echo "cli_progress: ok"
