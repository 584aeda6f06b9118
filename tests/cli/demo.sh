#!/usr/bin/env bash
# `make demo`'s program end to end: its stdout, its output file and its stats agree with the
# input it generated (status >= 500 lines, parsed into records).
set -euo pipefail
B=$1
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$B/example_demo" "$d" >"$d/stdout" 2>"$d/stderr"
want=$(awk '$4 >= 500' "$d/access.log" | wc -l)
[ "$want" -gt 0 ] || { echo "FAIL: the generated log has no server errors"; exit 1; }
[ "$(wc -l <"$d/stdout")" -eq "$want" ] || { echo "FAIL: stdout has $(wc -l <"$d/stdout") records, want $want"; exit 1; }
cmp -s <(sort "$d/stdout") <(sort "$d/errors.jsonl") || { echo "FAIL: stdout and errors.jsonl differ"; exit 1; }
# the records are the parsed lines, in input order
awk '$4 >= 500 {printf "{\"host\":\"%s\",\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,\"bytes\":%d,\"ms\":%s}\n", $1, $2, $3, $4, $5, ($6 ~ /\./ ? $6 : $6 ".0")}' "$d/access.log" >"$d/want"
cmp -s "$d/want" "$d/errors.jsonl" || { echo "FAIL: records differ from the input"; diff "$d/want" "$d/errors.jsonl" | head; exit 1; }
grep -Eq "^save +file +$want +$want +0$" "$d/stderr" || { echo "FAIL: stats"; cat "$d/stderr"; exit 1; }
ls -a "$d" | grep -q sluice- && { echo "FAIL: a temporary file was left"; exit 1; }
echo "demo: ok"
