# Helpers of the tests that need a Redis server (sourced after lib.bash; not a test itself).
# redis_start runs Debian's redis-server (installed by `make deps`) on a free loopback port with
# its files in $T/redis and AOF on; the EXIT trap of lib.bash stops it (kill -9 of a pid in
# cleanup_pids), and redis_stop stops it cleanly. $RPORT is the port, $RURL the url for stages.
command -v redis-server >/dev/null || fail "redis-server is missing: run make deps (Makefile DEPS installs it)"
command -v redis-cli >/dev/null || fail "redis-cli is missing: run make deps (Makefile DEPS installs it)"

RPORT=
RPID=
rcli() { redis-cli -p "$RPORT" --no-raw "$@"; }
rraw() { redis-cli -p "$RPORT" --raw "$@"; }

# Starts redis-server on a free port ($RPORT). Tries other ports when one is taken.
redis_run() { # runs the server on $RPORT in the background ($RPID)
  redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$T/redis" --appendonly yes --appendfsync always \
    --save '' --daemonize no --logfile "$T/redis/log" >/dev/null 2>&1 &
  RPID=$!
  cleanup_pids+=("$RPID")
}
redis_up_or_dead() { ! kill -0 "$RPID" 2>/dev/null || [ "$(redis-cli -p "$RPORT" ping 2>/dev/null)" = PONG ]; }
redis_start() {
  mkdir -p "$T/redis"
  local tries
  for tries in 1 2 3 4 5 6 7 8 9 10; do
    RPORT=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    redis_run
    wait_for 10 redis_up_or_dead
    if kill -0 "$RPID" 2>/dev/null; then RURL="redis://127.0.0.1:$RPORT/0"; return 0; fi
  done
  cat "$T/redis/log" 2>/dev/null
  fail "could not start redis-server"
}

# Stops the server the way an operator does (SIGTERM: it writes the AOF and exits); waits for it.
redis_stop() {
  kill -TERM "$RPID" 2>/dev/null || true
  wait "$RPID" 2>/dev/null || true
}

# Starts the server again on the same port and folder (its AOF brings the data back).
redis_restart() {
  local tries
  for tries in $(seq 50); do
    redis_run
    wait_for 10 redis_up_or_dead
    kill -0 "$RPID" 2>/dev/null && return 0
    sleep 0.1 # the port is still being released
  done
  fail "redis-server did not restart on port $RPORT"
}
