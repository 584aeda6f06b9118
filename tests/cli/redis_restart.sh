#!/usr/bin/env bash
# The Redis server stops and starts again (AOF on) while a writer and a consumer run: both
# reconnect with backoff and finish with nothing lost (an XADD whose reply was lost with the
# connection may be written twice: at-least-once, so the check is on the set of values).
. "$(dirname "$0")/lib.bash"
. "$ROOT/tests/cli/redis.bash"

N=100000
redis_start
cat >writer.yaml <<EOF
stages:
  - generate: { count: $N }
  - throttle: { rate: 100000, burst: 1000 }
  - map: "{n = r}"
  - redis_stream: { url: "$RURL", stream: in }
EOF
cat >consumer.yaml <<EOF
stages:
  - redis_stream_in: { url: "$RURL", stream: in, group: g, start: "0", fields: n, claim_idle: 0 }
  - redis_stream: { url: "$RURL", stream: out, field: n }
EOF
"$S" run consumer.yaml >c.out 2>c.err &
cpid=$!
cleanup_pids+=("$cpid")
"$S" run writer.yaml >w.out 2>w.err &
wpid=$!
cleanup_pids+=("$wpid")

started() { [ "$(rraw XLEN out 2>/dev/null || echo 0)" -ge 10000 ]; }
wait_for 60 started
redis_stop
[ "$(rraw XLEN in 2>/dev/null)" = "" ] || fail "the server is still up"
redis_restart
echo "restarted with $(rraw XLEN in) entries in, $(rraw XLEN out) out"

rc=0; wait "$wpid" || rc=$?
[ $rc -eq 0 ] || { cat w.err; fail "the writer exited $rc"; }
grep -q "retrying" w.err || grep -q "retrying" c.err || { cat w.err c.err; echo "in: $(rraw XLEN in)"; fail "neither process saw the connection drop"; }
values() { rraw XRANGE out - + | awk 'NR % 3 == 0'; }
done_all() { [ "$(rraw XPENDING in g | head -1)" = 0 ] && [ "$(values | sort -u | wc -l)" -ge $N ]; }
wait_for 120 done_all
kill -INT "$cpid"
rc=0; wait "$cpid" || rc=$?
[ $rc -eq 130 ] || { cat c.err; fail "the consumer exited $rc after SIGINT, not 130"; }
values | sort -n | uniq >got.txt
seq $N >want.txt
cmp -s got.txt want.txt || fail "values lost: $(comm -13 got.txt want.txt | head -5 | tr '\n' ' ')"
echo "written twice: $(( $(rraw XLEN out) - N ))"
echo ok
