# Helpers of the CLI shell tests (sourced; not a test itself: tests/run runs tests/cli/*.sh).
# Each test gets the build directory as $1. It works in a fresh temporary folder $T (removed at
# the end) and runs the program as $S (an absolute path).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd) # the source tree
B=$(cd "$1" && pwd)
S="$B/sluice"
T=$(mktemp -d)
cleanup_pids=()
cleanup() {
  for pid in "${cleanup_pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT
cd "$T"

fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "skip: $*"; exit 0; }

# expect RC CMD...: runs CMD with stdout in $T/out and stderr in $T/err; fails unless it exits RC.
expect() {
  local want=$1; shift
  set +e
  "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  set -e
  if [ "$rc" -ne "$want" ]; then
    echo "FAIL: '$*' exited $rc, not $want"
    echo "--- stdout"; head -20 "$T/out"; echo "--- stderr"; head -20 "$T/err"
    exit 1
  fi
}

# err_has TEXT...: stderr of the last expect holds every TEXT (fixed strings).
err_has() {
  for t in "$@"; do
    grep -qF -- "$t" "$T/err" || { echo "FAIL: stderr lacks '$t'"; echo "--- stderr"; cat "$T/err"; exit 1; }
  done
}
out_has() {
  for t in "$@"; do
    grep -qF -- "$t" "$T/out" || { echo "FAIL: stdout lacks '$t'"; echo "--- stdout"; head -40 "$T/out"; exit 1; }
  done
}

# wait_for SECONDS CMD...: polls CMD until it succeeds; fails after SECONDS.
wait_for() {
  local limit=$1; shift
  local end=$((SECONDS + limit))
  until "$@"; do
    [ $SECONDS -lt $end ] || fail "timed out after ${limit}s waiting for: $*"
    sleep 0.05
  done
}

# stats_get FILE STAGE FIELD: a number from a --stats JSON file.
stats_get() {
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["stages"][sys.argv[2]][sys.argv[3]])' "$@"
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on (the kernel's pick, let go at once)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_httpd PORT_FILE [ARGS...]: starts the tests' HTTP server (sluice_test_httpd ARGS) in the
# background, killed at the end, and returns once it listens: its port is in PORT_FILE
start_httpd() {
  local pf=$1; shift
  "$B/sluice_test_httpd" --port-file "$pf" "$@" &
  cleanup_pids+=($!)
  disown
  wait_for 5 test -s "$pf"
}

# httpd_stat NAME: one counter of the server at $URL (its /_stats: conns, max_conns, accepts...)
httpd_stat() { python3 -c 'import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]+"/_stats"))[sys.argv[2]])' "$URL" "$1"; }
