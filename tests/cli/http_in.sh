#!/usr/bin/env bash
# The http_in source through the CLI, with real clients on loopback ports the test picks:
# 100,000 records from 8 concurrent clients arrive exactly once (ack: accepted and end_to_end);
# malformed bodies get 400 with a reason and never reach the pipeline; 413 over max_body, 405
# for GET; behind a slow stage the source answers 429 and the process's memory stays bounded;
# an interrupt ends it (drained).
. "$(dirname "$0")/lib.bash"
POST="python3 $ROOT/tests/cli/http_post.py"

# up PORT: waits until the server answers (405 for a GET)
up() { wait_for 10 curl -s -o /dev/null http://127.0.0.1:"$1"/; }
# post PORT BODY [CURL ARGS]: prints the status, the body goes to resp.txt
post() { local p=$1 b=$2; shift 2; curl -s -o resp.txt -w '%{http_code}' -X POST --data-binary "$b" "$@" http://127.0.0.1:"$p"/; }

# exactly once, from 8 clients, both ack modes
for ack in accepted end_to_end; do
  port=$(free_port)
  cat >once.yaml <<YAML
stages:
  - http_in: { port: $port, count: 100000, ack: $ack }
  - file: { path: once.jsonl, codec: jsonl }
YAML
  "$S" run --quiet --stats once.json once.yaml >run.out 2>run.err & pid=$!
  cleanup_pids+=("$pid")
  up "$port"
  $POST "$port" 8 100000 500 >post.json || fail "clients ($ack): $(cat post.json)"
  wait "$pid" || fail "run ($ack) exited $?: $(cat run.err)"
  python3 - <<'PY' || fail "records ($ack) not exactly once"
import json
ns = sorted(json.loads(l)["n"] for l in open("once.jsonl"))
assert ns == list(range(1, 100001)), (len(ns), ns[:5])
assert json.load(open("post.json"))["accepted"] == 100000
PY
  [ "$(stats_get once.json http_in#1 out)" -eq 100000 ] || fail "stats ($ack): $(cat once.json)"
done

# malformed bodies: 400 with a reason, nothing of them in the pipeline; 413; 405
port=$(free_port)
cat >bad.yaml <<YAML
stages:
  - http_in: { port: $port, count: 3, max_body: 100 }
  - file: { path: bad.jsonl, codec: jsonl }
YAML
"$S" run --quiet bad.yaml >run.out 2>run.err & pid=$!
cleanup_pids+=("$pid")
up "$port"
[ "$(post "$port" $'{"n": 1}\n{"n": 2')" = 400 ] || fail "a broken JSON line: $(cat resp.txt)"
grep -q "line 2: invalid JSON" resp.txt || fail "400 without the line: $(cat resp.txt)"
[ "$(post "$port" '[{"n": 1}, {"n": ]' -H 'Content-Type: application/json')" = 400 ] || fail "a broken array"
grep -q '"error": "invalid JSON' resp.txt || fail "400 reason: $(cat resp.txt)"
[ "$(post "$port" "$(printf '%0200d' 0)" -H 'Content-Type: text/plain')" = 413 ] || fail "a body over max_body: $(cat resp.txt)"
grep -q "max_body" resp.txt || fail "413 reason: $(cat resp.txt)"
[ "$(curl -s -o resp.txt -w '%{http_code}' http://127.0.0.1:"$port"/)" = 405 ] || fail "GET"
[ "$(post "$port" $'one\ntwo' -H 'Content-Type: text/plain')" = 200 ] || fail "lines: $(cat resp.txt)"
grep -q '"accepted": 2' resp.txt || fail "lines accepted: $(cat resp.txt)"
[ "$(post "$port" $'{"a": 1}\n{"b": 2}')" = 503 ] || fail "past count: $(cat resp.txt)"
grep -q "1 more" resp.txt || fail "503 reason: $(cat resp.txt)"
[ "$(post "$port" '[{"k": [1, 2]}]')" = 200 ] || fail "an array: $(cat resp.txt)"
wait "$pid" || fail "run exited $?: $(cat run.err)"
printf '%s\n' '"one"' '"two"' '{"k":[1,2]}' | cmp -s - bad.jsonl || fail "what reached the sink: $(cat bad.jsonl)"

# a slow stage: 429 once max_pending records are held; memory stays bounded; an interrupt drains
port=$(free_port)
cat >slow.yaml <<YAML
drain_timeout: 200ms
stages:
  - http_in: { port: $port, max_pending: 400 }
  - throttle: { rate: 10000, per: 1s, burst: 1 }
    queue: { capacity: 16 }
  - "null": {}
YAML
# (AddressSanitizer's quarantine would hold every freed body: kept small here)
ASAN_OPTIONS="${ASAN_OPTIONS:-}:quarantine_size_mb=2" "$S" run --quiet --stats slow.json slow.yaml >run.out 2>run.err & pid=$!
cleanup_pids+=("$pid")
up "$port"
rss() { awk '/^VmRSS/ {print $2}' /proc/"$pid"/status; }
before=$(rss)
# 8 clients try 64,000 records of 1 KiB (64 MiB of JSON; kept whole, they would take twice that) without waiting
$POST "$port" 8 64000 400 --pad 1000 --no-retry >post.json || fail "slow clients: $(cat post.json)"
hwm=$(awk '/^VmHWM/ {print $2}' /proc/"$pid"/status)
kill -INT "$pid"
set +e; wait "$pid"; rc=$?; set -e
[ "$rc" -eq 130 ] || fail "interrupted run exited $rc: $(cat run.err)"
python3 - "$before" "$hwm" <<'PY' || fail "slow: $(cat post.json) $(cat slow.json)"
import json, sys
p = json.load(open("post.json"))
s = json.load(open("slow.json"))["stages"]
assert p["status"].get("429", 0) > 0, "no 429"
out = s["http_in#1"]["out"]
# what went in is what clients were told went in; it is far less than what they sent
assert out == p["accepted"], (out, p["accepted"])
grown = (int(sys.argv[2]) - int(sys.argv[1])) * 1024
# bounded it grows ~10 MiB (~21 under ASan); records and bodies kept would take over 128 MiB
assert grown < 48 * 1024 * 1024, "memory grew by %d bytes" % grown
print("slow: %d of 64000 records in, memory grew %.1f MiB" % (out, grown / 2**20), file=sys.stderr)
PY
