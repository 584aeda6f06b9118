#!/usr/bin/env bash
# Signals: one SIGINT drains (exit 130, the output file holds exactly the first K input lines in
# order, K being what the source read by --stats); two abort (exit 130, no output file left);
# SIGTERM is SIGINT; a drain longer than drain_timeout aborts.
. "$(dirname "$0")/lib.bash"

seq 1000000 >in.txt
# slow.yaml RATE [settings]: lines -> throttle(RATE/s) -> file
slow() {
  printf '%s\nstages:\n  - lines: in.txt\n    name: read\n  - throttle: { rate: %s, burst: 1 }\n    name: slow\n  - file: out.txt\n    name: save\n' \
    "${2:-}" "$1" >slow.yaml
}
tmpfile() { ls -a | grep -q '^\.out\.txt\.sluice-'; }
tmpgrown() { [ -n "$(find . -maxdepth 1 -name '.out.txt.sluice-*' -size +0 2>/dev/null)" ]; }
start() { # runs sluice in the background; pid in $pid
  "$S" run slow.yaml "$@" >run.out 2>run.err &
  pid=$!
  cleanup_pids+=("$pid")
}
finish() { # waits for $pid; its exit status in $rc
  set +e
  wait "$pid"
  rc=$?
  set -e
}

# 1. one SIGINT: a drain. The file sink flushes every 256 KiB: wait until it wrote once.
slow 50000
rm -f out.txt
start --stats stats.json
wait_for 60 tmpgrown
kill -INT "$pid"
finish
[ "$rc" -eq 130 ] || fail "SIGINT: exit $rc, not 130: $(cat run.err)"
[ -e out.txt ] || fail "SIGINT: no output file after a drain: $(cat run.err)"
k=$(stats_get stats.json read out)
[ "$k" -gt 0 ] && [ "$k" -lt 1000000 ] || fail "SIGINT: the source read $k lines"
[ "$(stats_get stats.json save in)" -eq "$k" ] || fail "SIGINT: save got $(stats_get stats.json save in) of $k"
cmp -s out.txt <(seq 1 "$k") || fail "SIGINT: out.txt is not the first $k lines (has $(wc -l <out.txt))"
grep -q "interrupted (drained)" run.err || fail "SIGINT: summary: $(cat run.err)"
tmpfile && fail "SIGINT: a temporary file was left"

# 2. SIGTERM is the same
rm -f out.txt stats.json
start --stats stats.json --quiet
wait_for 60 tmpgrown
kill -TERM "$pid"
finish
[ "$rc" -eq 130 ] || fail "SIGTERM: exit $rc"
k=$(stats_get stats.json read out)
cmp -s out.txt <(seq 1 "$k") || fail "SIGTERM: out.txt is not the first $k lines"
[ ! -s run.err ] || fail "SIGTERM with --quiet printed: $(cat run.err)"

# 3. two SIGINTs: the second aborts the drain (1000/s: the drain of what is queued takes > 1 s)
slow 1000
rm -f out.txt
start
wait_for 60 tmpfile
sleep 0.3
kill -INT "$pid"
sleep 0.2
kill -INT "$pid"
finish
[ "$rc" -eq 130 ] || fail "two SIGINTs: exit $rc: $(cat run.err)"
[ ! -e out.txt ] || fail "two SIGINTs: an aborted run left out.txt"
tmpfile && fail "two SIGINTs: a temporary file was left"
grep -q "interrupted (aborted)" run.err || fail "two SIGINTs: summary: $(cat run.err)"

# 4. drain_timeout: the drain would take seconds; after 300 ms it aborts
slow 100 "drain_timeout: 300ms"
start
wait_for 60 tmpfile
sleep 0.3
t0=$SECONDS
kill -INT "$pid"
finish
[ "$rc" -eq 130 ] || fail "drain_timeout: exit $rc: $(cat run.err)"
[ $((SECONDS - t0)) -lt 10 ] || fail "drain_timeout: the drain was not cut short"
grep -q "drain_timeout" run.err || fail "drain_timeout: no message: $(cat run.err)"
[ ! -e out.txt ] || fail "drain_timeout: an aborted run left out.txt"
echo "cli_signals: ok"
