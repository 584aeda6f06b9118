#!/usr/bin/env bash
# `sluice run x.yaml | head -1`: the reader goes away; sluice ends at once and quietly with
# exit 0 (the stdout sink stops reading and upstream is cancelled, as after take).
. "$(dirname "$0")/lib.bash"

printf 'stages:\n  - generate: {}\n  - stdout: {}\n' >endless.yaml
set +e
first=$(timeout 30 "$S" run endless.yaml 2>err.txt | head -1)
rcs=("${PIPESTATUS[@]}")
set -e
[ "$first" = "1" ] || fail "first line '$first'"
[ "${rcs[0]}" -eq 0 ] || fail "exit ${rcs[0]} (124: it did not end): $(cat err.txt)"
grep -qi "sluice: error\|sluice: warning\|broken pipe\|EPIPE\|failed" err.txt && fail "error output: $(cat err.txt)"
grep -q "completed" err.txt || fail "no summary: $(cat err.txt)"

seq 1000000 >in.txt
printf 'stages:\n  - lines: in.txt\n  - stdout: {}\n' >lines.yaml
set +e
first=$(timeout 30 "$S" run lines.yaml --quiet | head -1)
rcs=("${PIPESTATUS[@]}")
set -e
[ "$first" = "1" ] && [ "${rcs[0]}" -eq 0 ] || fail "lines | head -1: '$first', exit ${rcs[0]}"
echo "cli_pipe: ok"
