#!/usr/bin/env bash
# Every example pipeline: `sluice check` and `sluice test` pass, `sluice graph` renders with dot,
# and each runs end to end. A deliberately broken copy fails `sluice test` with a diff.
set -euo pipefail
B=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
n=0
for f in "$root"/examples/*.yaml "$root"/examples/*.lua; do
  n=$((n + 1))
  "$B/sluice" check "$f" >/dev/null 2>&1 || fail "check $f"
  case $f in *.yaml) "$B/sluice" test "$f" >"$d/test.out" || { cat "$d/test.out"; fail "test $f"; } ;; esac
  if command -v dot >/dev/null; then
    "$B/sluice" graph "$f" 2>/dev/null | dot -Tsvg >/dev/null || fail "graph $f does not render"
  fi
done
[ "$n" -ge 5 ] || fail "only $n examples"
# make demo's run: the errors of a generated log, in order
bash "$root/examples/demo.sh" "$B" "$d/demo" >"$d/demo.out" 2>&1 || { cat "$d/demo.out"; fail "demo"; }
want=$(awk '$4 >= 500' "$d/demo/access.log" | wc -l)
[ "$want" -gt 0 ] && [ "$(wc -l <"$d/demo/errors.jsonl")" -eq "$want" ] || fail "demo wrote $(wc -l <"$d/demo/errors.jsonl") records, want $want"
head -1 "$d/demo/errors.jsonl" | grep -q '"status":50[03]' || fail "demo records: $(head -1 "$d/demo/errors.jsonl")"
# parse_logs: the same log, lz4-compressed, parsed natively; client and server errors as JSON lines
lz4 -q -c "$d/demo/access.log" >"$d/access.lz4"
INPUT="$d/access.lz4" OUTPUT="$d/parsed.jsonl" "$B/sluice" run --quiet "$root/examples/parse_logs.yaml"
want=$(awk '$4 >= 400' "$d/demo/access.log" | wc -l)
[ "$(wc -l <"$d/parsed.jsonl")" -eq "$want" ] || fail "parse_logs wrote $(wc -l <"$d/parsed.jsonl") records, want $want"
head -1 "$d/parsed.jsonl" | grep -q '"status":[45][0-9][0-9],"bytes":[0-9]*,"ms":[0-9.]*}$' || fail "parse_logs records: $(head -1 "$d/parsed.jsonl")"
# the other examples run
(cd "$d" && OUTPUT="$d/squares.jsonl" "$B/sluice" run --quiet "$root/examples/fanout.yaml" >"$d/fan.out")
[ "$(wc -l <"$d/squares.jsonl")" -eq 1000 ] && [ "$(wc -l <"$d/fan.out")" -eq 142 ] || fail "fanout"
"$B/sluice" run --quiet "$root/examples/enrich.yaml" | grep -q '"region":"apac"' || fail "enrich"
"$B/sluice" run --quiet --virtual-time "$root/examples/async_calls.lua" 2>"$d/async.err" | grep -q '"value":667' || fail "async_calls"
grep -q "1000 calls in 5.0 s" "$d/async.err" || fail "async_calls timing: $(cat "$d/async.err")"
"$B/sluice" run --quiet --virtual-time "$root/examples/rate_limited.yaml" >"$d/rate.out"
[ "$(wc -l <"$d/rate.out")" -eq 200 ] && tail -1 "$d/rate.out" | grep -q '"at":3.98' || fail "rate_limited: $(tail -1 "$d/rate.out")"
# synthetic_orders: generate with fn (every 7th i emits nothing), then the big ones
"$B/sluice" run --quiet "$root/examples/synthetic_orders.yaml" >"$d/orders.out"
want=$(awk 'BEGIN { for (i = 1; i <= 1000; i++) if (i % 7 && (i * 37) % 500 + 0.5 >= 100) n++; print n }')
[ "$(wc -l <"$d/orders.out")" -eq "$want" ] && head -1 "$d/orders.out" | grep -qx '{"amount":111.5,"customer":"dave","id":3}' \
  || fail "synthetic_orders: $(wc -l <"$d/orders.out") records, want $want; $(head -1 "$d/orders.out")"
# host_windows: partition_by + window, 6 windows of 10 s for each of 3 hosts, 400 requests each
"$B/sluice" run --quiet --virtual-time "$root/examples/host_windows.yaml" >"$d/hw.out"
[ "$(wc -l <"$d/hw.out")" -eq 18 ] && [ "$(grep -o '"requests":[0-9]*' "$d/hw.out" | cut -d: -f2 | paste -sd+ | bc)" -eq 2400 ] \
  && grep -q "{\"key\":\"api\",\"start\":50.0,\"end\":60.0,\"requests\":134," "$d/hw.out" || fail "host_windows: $(head -3 "$d/hw.out")"
# triage: route + chunks + throttle + dead letter, on 120 generated events
awk 'BEGIN { for (i = 1; i <= 120; i++) { l = i % 4 == 0 ? "ERROR" : (i % 4 == 1 ? "WARN" : "INFO"); printf "%s svc%d event %d\n", l, i % 3, i }
             print "not an event" }' >"$d/events.log"
(cd "$d" && INPUT="$d/events.log" "$B/sluice" run --quiet --virtual-time --stats "$d/triage.json" "$root/examples/triage.yaml" >"$d/counts.out")
[ "$(cat "$d/errors.jsonl")" = '{"count":30,"first":"event 4","service":"svc1"}' ] || fail "triage errors: $(cat "$d/errors.jsonl")"
[ "$(wc -l <"$d/warnings.jsonl")" -eq 30 ] && grep -q '"key":"INFO","value":60' "$d/counts.out" || fail "triage warnings/counts"
grep -q '"record":"not an event","error":".*not an event: not an event' "$d/failed.jsonl" || fail "triage dead letter: $(cat "$d/failed.jsonl")"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["elapsed_s"] == 0.29, d["elapsed_s"]' "$d/triage.json" || fail "triage pace"
# protect and restore, the whole user story with the default (strong) Argon2id cost
head -c 300000 /dev/urandom >"$d/big.bin"
(cd "$d" && SLUICE_PASSPHRASE=pw "$B/sluice" run --quiet "$root/examples/protect.yaml" --set in=big.bin --set out=big.slc &&
  SLUICE_PASSPHRASE=pw "$B/sluice" run --quiet "$root/examples/restore.yaml" --set in=big.slc --set out=back.bin) || fail "protect/restore"
cmp -s "$d/big.bin" "$d/back.bin" || fail "protect/restore: the restored file differs"
# a broken copy: the expected record is wrong, so the test fails with a diff, exit 1
sed 's/status: 503, bytes: 20/status: 503, bytes: 21/' "$root/examples/access_errors.yaml" >"$d/broken.yaml"
set +e
"$B/sluice" test "$d/broken.yaml" >"$d/broken.out" 2>&1
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "broken copy: exit $rc, want 1"
grep -q '^- \[0\].*"bytes":21' "$d/broken.out" && grep -q '^+ \[0\].*"bytes":20' "$d/broken.out" || { cat "$d/broken.out"; fail "no diff"; }
echo "examples: ok ($n)"
