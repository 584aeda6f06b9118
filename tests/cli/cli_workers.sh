#!/usr/bin/env bash
# The worker count: --workers, then the file's workers:, then $SLUICE_WORKERS, then the CPUs.
# Counted as the threads of a running `sluice run` (/proc/PID/task): the workers plus a constant
# (the main thread, the event loop, a sanitizer's own), so only differences are compared.
. "$(dirname "$0")/lib.bash"

printf 'pipeline: w\nstages:\n  - lines: {}\n  - stdout: {}\n' >p.yaml
printf 'pipeline: w2\nworkers: 2\nstages:\n  - lines: {}\n  - stdout: {}\n' >p2.yaml

# threads ENV_WORKERS ARGS...: the thread count of `sluice run ARGS` once it runs (its /metrics
# shows the pipeline; the metrics server has no thread of its own)
threads() {
  local env=$1; shift
  local mp
  mp=$(free_port)
  rm -f fifo
  mkfifo fifo
  SLUICE_WORKERS=$env "$S" run --quiet --metrics "$mp" "$@" <fifo >got.txt 2>err.txt &
  local pid=$!
  cleanup_pids+=("$pid")
  exec 3>fifo
  wait_for 10 sh -c "curl -s http://127.0.0.1:$mp/metrics | grep -q '^sluice_elapsed_seconds'"
  ls /proc/$pid/task | wc -l
  echo hello >&3
  exec 3>&-
  wait "$pid" || fail "sluice run $* exited $? (SLUICE_WORKERS=$env): $(cat err.txt)"
  grep -qx hello got.txt || fail "sluice run $*: the line did not come through: $(cat got.txt)"
}

base=$(threads 1 p.yaml)
[ "$(threads 4 p.yaml)" -eq $((base + 3)) ] || fail "SLUICE_WORKERS=4 did not make 4 workers"
[ "$(threads 4 p2.yaml)" -eq $((base + 1)) ] || fail "the file's workers: 2 did not win over SLUICE_WORKERS"
[ "$(threads 4 --workers 3 p.yaml)" -eq $((base + 2)) ] || fail "--workers 3 did not win over SLUICE_WORKERS"
[ "$(threads '' --workers 1 p.yaml)" -eq "$base" ] || fail "an empty SLUICE_WORKERS is not unset"

# a bad value is a usage error, before anything runs (run and repl)
for bad in 0 257 two 3x; do
  SLUICE_WORKERS=$bad expect 2 "$S" run p.yaml
  grep -q "SLUICE_WORKERS takes an integer from 1 to 256 (got '$bad')" err || fail "run, SLUICE_WORKERS=$bad: $(cat err)"
  SLUICE_WORKERS=$bad expect 2 "$S" repl </dev/null
  grep -q "SLUICE_WORKERS takes an integer from 1 to 256 (got '$bad')" err || fail "repl, SLUICE_WORKERS=$bad: $(cat err)"
done
echo ok
