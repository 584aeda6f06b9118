#!/usr/bin/env bash
# Scale-out through a Redis consumer group (docs/scaling.md): three sluice processes share a
# stream of 100,000 entries written by a fourth.
# 1. No failure: every entry is processed exactly once, and each of the three did part of it.
# 2. One of the three is killed (kill -9) while it holds unacknowledged entries: the survivors
#    claim them (XAUTOCLAIM after claim_idle), nothing is lost, and the only entries processed
#    twice are among the dead one's unacknowledged entries. Once with the victim stalled on
#    purpose (it holds thousands), once killed at a random point of a running stream (3).
. "$(dirname "$0")/lib.bash"
. "$ROOT/tests/cli/redis.bash"

N=100000
redis_start

# writer.yaml: N entries {n = 1..N} into stream `in`
cat >writer.yaml <<EOF
stages:
  - generate: { count: $N }
  - map: "{n = r}"
  - redis_stream: { url: "$RURL", stream: in }
EOF
# consumer.yaml: each entry of `in` becomes "<entry id> <n> <consumer>" in stream `out`.
# STALL > 0 makes the consumer stop for good after that many records per worker.
cat >consumer.yaml <<EOF
stages:
  - redis_stream_in: { url: "$RURL", stream: in, group: g, consumer: "\${C}", id_field: _id, claim_idle: 1s }
  - map: |
      function(r)
        seen = (seen or 0) + 1
        if \${STALL:-0} > 0 and seen > \${STALL:-0} then sluice.sleep(3600) end
        return r._id .. " " .. r.n .. " \${C}"
      end
  - redis_stream: { url: "$RURL", stream: out }
EOF

declare -A cpid
consumer() { # NAME [STALL]: starts a consumer
  C=$1 STALL=${2:-0} "$S" run consumer.yaml --quiet >"$1.out" 2>"$1.err" &
  cpid[$1]=$!
  cleanup_pids+=("$!")
}
registered() { for c in "$@"; do rraw XINFO CONSUMERS in g 2>/dev/null | grep -qx "$c" || return 1; done; }
pending() { rraw XPENDING in g | head -1; }        # entries read and not acknowledged, all consumers
pending_of() { echo $(($(rraw XPENDING in g - + 1000000 "$1" | wc -l) / 4)); }
outlen() { rraw XLEN out; }
values() { rraw XRANGE out - + | awk 'NR % 3 == 0'; } # "<id> <n> <consumer>" per output entry
stop_consumer() { # NAME: SIGINT drains it; it must exit 130
  kill -INT "${cpid[$1]}"
  local rc=0
  wait "${cpid[$1]}" || rc=$?
  [ $rc -eq 130 ] || { cat "$1.err"; fail "consumer $1 exited $rc after SIGINT, not 130"; }
}
write_all() {
  expect 0 "$S" run writer.yaml --quiet
  [ "$(rraw XLEN in)" = $N ] || fail "the writer added $(rraw XLEN in) entries, not $N"
}

# ---- 1. three consumers, no failure: exactly once, shared
consumer c1; consumer c2; consumer c3
wait_for 60 registered c1 c2 c3 # all three wait in XREADGROUP before the first entry exists
write_all
done1() { [ "$(outlen)" -ge $N ] && [ "$(pending)" = 0 ]; }
wait_for 120 done1
for c in c1 c2 c3; do stop_consumer $c; done
values >v1.txt
[ "$(wc -l <v1.txt)" = $N ] || fail "$(wc -l <v1.txt) entries written, not $N"
[ "$(cut -d' ' -f1 v1.txt | sort -u | wc -l)" = $N ] || fail "some entry was processed twice"
[ "$(cut -d' ' -f2 v1.txt | sort -n | uniq | wc -l)" = $N ] || fail "not every n made it"
[ "$(cut -d' ' -f2 v1.txt | sort -n | tail -1)" = $N ] || fail "the values are not 1..$N"
for c in c1 c2 c3; do
  k=$(grep -c " $c\$" v1.txt || true)
  echo "consumer $c: $k entries"
  [ "$k" -gt 0 ] || fail "consumer $c did none of the work"
done
[ "$(pending)" = 0 ] || fail "entries left pending"

# ---- 2. kill -9 one consumer while it holds unacknowledged entries
rcli DEL in out >/dev/null
consumer d1; consumer d2 1000; consumer d3 # d2 stalls after 1000 records per worker
wait_for 60 registered d1 d2 d3
write_all
# Everything was read; d1 and d3 finished theirs; d2 holds the rest, unacknowledged.
stalled() {
  [ "$(pending_of d1)" = 0 ] && [ "$(pending_of d3)" = 0 ] || return 1
  local p2; p2=$(pending_of d2)
  [ "$p2" -gt 0 ] && [ $(($(outlen) + p2)) -eq $N ]
}
wait_for 120 stalled
rraw XPENDING in g - + 1000000 d2 | awk 'NR % 4 == 1' | sort >held.txt
echo "d2 holds $(wc -l <held.txt) unacknowledged entries when killed"
kill -9 "${cpid[d2]}"
wait "${cpid[d2]}" 2>/dev/null || true
done2() { [ "$(pending)" = 0 ] && [ "$(values | cut -d' ' -f1 | sort -u | wc -l)" -ge $N ]; }
wait_for 120 done2
stop_consumer d1; stop_consumer d3
values >v2.txt
[ "$(cut -d' ' -f2 v2.txt | sort -n | uniq | wc -l)" = $N ] || fail "entries were lost"
cut -d' ' -f1 v2.txt | sort | uniq -d >dups.txt
[ -z "$(comm -23 dups.txt held.txt)" ] || fail "entries processed twice that d2 did not hold: $(comm -23 dups.txt held.txt | head -3)"
grep -E ' d[13]$' v2.txt | cut -d' ' -f1 | sort >survivors.txt
[ -z "$(comm -23 held.txt survivors.txt)" ] || fail "entries d2 held were not claimed by the survivors"
echo "duplicates: $(wc -l <dups.txt)"

# ---- 3. kill -9 one consumer at a random point while the writer still writes (100,000/s)
rcli DEL in out >/dev/null
consumer e1; consumer e2; consumer e3
wait_for 60 registered e1 e2 e3
sed -i 's|  - map: "{n = r}"|  - throttle: { rate: 100000, burst: 1000 }\n  - map: "{n = r}"|' writer.yaml
"$S" run writer.yaml --quiet >w.out 2>w.err &
wpid=$!
cleanup_pids+=("$wpid")
under_way() { [ "$(outlen)" -ge 20000 ]; }
wait_for 60 under_way
kill -9 "${cpid[e2]}"
# what e2 held: nobody claims it before it is idle for claim_idle (1 s), and e2 kept it fresh
rraw XPENDING in g - + 1000000 e2 | awk 'NR % 4 == 1' | sort >held3.txt
wait "${cpid[e2]}" 2>/dev/null || true
rc=0; wait "$wpid" || rc=$?
[ $rc -eq 0 ] || { cat w.err; fail "the writer exited $rc"; }
echo "e2 killed at $(grep -c ' e2$' <(values) || true) entries written, holding $(wc -l <held3.txt)"
done3() { [ "$(pending)" = 0 ] && [ "$(values | cut -d' ' -f1 | sort -u | wc -l)" -ge $N ]; }
wait_for 120 done3
stop_consumer e1; stop_consumer e3
values >v3.txt
[ "$(cut -d' ' -f2 v3.txt | sort -n | uniq | wc -l)" = $N ] || fail "entries were lost"
cut -d' ' -f1 v3.txt | sort | uniq -d >dups3.txt
[ -z "$(comm -23 dups3.txt held3.txt)" ] || fail "entries processed twice that e2 did not hold: $(comm -23 dups3.txt held3.txt | head -3)"
grep -E ' e[13]$' v3.txt | cut -d' ' -f1 | sort >survivors3.txt
[ -z "$(comm -23 held3.txt survivors3.txt)" ] || fail "entries e2 held were not claimed by the survivors"
echo "duplicates: $(wc -l <dups3.txt)"
echo ok
