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

# a stdout stage on the same terminal: no table (its lines would be erased by the redraws)
printf 'stages:\n  - generate: 5\n  - throttle: { rate: 10, burst: 1 }\n  - stdout: {}\n' >show.yaml
script -q -e -c "'$S' run show.yaml" /dev/null >tty.txt </dev/null || fail "stdout run under script failed"
grep -q "rate/s" tty.txt && fail "table drawn over a terminal stdout: $(cat -v tty.txt)"
[ "$(grep -c '^[1-5]'$'\r''$' tty.txt)" -eq 5 ] || fail "stdout lines lost: $(cat -v tty.txt)"
grep -q "completed" tty.txt || fail "no summary with a stdout stage"

# a table taller than the screen is cut (the cursor cannot move above the top)
{ printf 'stages:\n  - generate: 20\n  - throttle: { rate: 20, burst: 1 }\n'
  for i in $(seq 1 12); do printf '  - skip: 0\n'; done
  printf '  - "null": {}\n'; } >tall.yaml
script -q -e -c "stty rows 10 cols 100; '$S' run tall.yaml" /dev/null >tty.txt </dev/null || fail "tall run failed"
grep -q "more stages" tty.txt || fail "a tall table is not cut: $(cat -v tty.txt | head -30)"
if grep -q "${esc}\[\(1[0-9]\|[2-9][0-9]\)A" tty.txt; then fail "the cursor moves up 10 or more lines on a 10-line screen"; fi
echo "cli_progress: ok"
