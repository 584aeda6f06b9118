#!/usr/bin/env bash
# The redis_stream sink and redis_stream_in source one option at a time, against a real
# redis-server: configuration errors, fields, id_field, the database of the url, maxlen, a
# password, the dead letter for retries that ran out, and a drained SIGINT acknowledging a
# partial chunk once it is written.
. "$(dirname "$0")/lib.bash"
. "$ROOT/tests/cli/redis.bash"

# ---- configuration errors: file:line:col, the stage, what to do (exit 2)
cat >bad.yaml <<'EOF'
stages:
  - redis_stream_in: { url: "http://x", stream: s, group: g }
  - redis_stream: { stream: "" }
EOF
expect 2 "$S" check bad.yaml
err_has "bad.yaml:2:5" "redis_stream_in#1" "is not redis://host:port/db"
cat >bad.yaml <<'EOF'
stages:
  - redis_stream_in: { stream: s }
  - redis_stream: { stream: o, url: "redis://u:pw@h:1/0", retry: { attempts: 0 } }
EOF
expect 2 "$S" check bad.yaml
err_has "group" "bad.yaml:2:5"
cat >bad.yaml <<'EOF'
stages:
  - redis_stream_in: { stream: s, group: g, password_env: SLUICE_NO_SUCH_VAR }
  - redis_stream: { stream: o, url: "redis://h:99999" }
EOF
expect 2 "$S" check bad.yaml
err_has "bad.yaml:3:5" "bad port"
sed -i 's|redis://h:99999|redis://h:1|' bad.yaml
expect 2 "$S" run bad.yaml
err_has "SLUICE_NO_SUCH_VAR" "redis_stream_in#1"

redis_start

# ---- the sink: maps as fields, other records in `field`, database 3, maxlen
cat >w.yaml <<EOF
stages:
  - generate: { count: 1000 }
  - map: "r % 2 == 0 and {n = r, half = r / 2, tags = {'a'}} or ('odd ' .. r)"
  - redis_stream: { url: "redis://127.0.0.1:$RPORT/3", stream: mixed, field: line }
EOF
expect 0 "$S" run w.yaml --quiet
[ "$(redis-cli -p "$RPORT" -n 3 XLEN mixed)" = 1000 ] || fail "XLEN mixed in db 3: $(redis-cli -p "$RPORT" -n 3 XLEN mixed)"
[ "$(rraw XLEN mixed)" = 0 ] || fail "db 0 has the stream too"
redis-cli -p "$RPORT" -n 3 --raw XRANGE mixed - + COUNT 2 >two.txt
grep -qx 'odd 1' two.txt || fail "a string record: $(cat two.txt)"
grep -qx '1.0' two.txt || fail "a float field as JSON: $(cat two.txt)"   # half of 2
grep -qx '\["a"\]' two.txt || fail "an array field as JSON: $(cat two.txt)"
sed -i 's|stream: mixed, field: line|stream: trimmed, maxlen: 100|' w.yaml
expect 0 "$S" run w.yaml --quiet
n=$(redis-cli -p "$RPORT" -n 3 XLEN trimmed)
[ "$n" -ge 100 ] && [ "$n" -lt 1000 ] || fail "maxlen 100 left $n entries"

# ---- timeout: a server that does not answer (writes paused) fails the try after it
rcli CLIENT PAUSE 10000 WRITE >/dev/null
cat >slow.yaml <<EOF
dead_letter: { file: { path: slow.jsonl } }
stages:
  - generate: { count: 3 }
  - redis_stream: { url: "$RURL", stream: paused, timeout: 100ms, retry: { attempts: 1 } }
EOF
expect 0 "$S" run slow.yaml --quiet
rcli CLIENT UNPAUSE >/dev/null
[ "$(grep -c 'timeout after 100ms' slow.jsonl)" = 3 ] || fail "timeout: $(cat slow.jsonl)"

# ---- the source: fields: <name>, a missing field goes to the dead letter, id_field
for i in 1 2 3; do rcli XADD src '*' line "l$i" >/dev/null; done
rcli XADD src '*' other x >/dev/null
cat >r.yaml <<EOF
dead_letter: { file: { path: dl.jsonl } }
stages:
  - redis_stream_in: { url: "$RURL", stream: src, group: g, start: "0", fields: line }
  - take: 3
  - file: { path: lines.txt }
EOF
expect 0 "$S" run r.yaml --quiet
[ "$(cat lines.txt | tr '\n' ' ')" = "l1 l2 l3 " ] || fail "lines: $(cat lines.txt)"
grep -q "has no field 'line'" dl.jsonl || fail "dead letter: $(cat dl.jsonl)"
cat >id.yaml <<EOF
stages:
  - redis_stream_in: { url: "$RURL", stream: src, group: g2, start: "0", id_field: id }
  - take: 1
  - file: { path: ids.jsonl }
EOF
expect 0 "$S" run id.yaml --quiet
first=$(rraw XRANGE src - + COUNT 1 | head -1)
grep -qF "\"id\": \"$first\"" ids.jsonl || grep -qF "\"id\":\"$first\"" ids.jsonl || fail "id_field: $(cat ids.jsonl), want $first"

# ---- the pipeline docs/scaling.md shows, as it is written there
awk '/<!-- scaling.yaml:/ {on = 1; next} on && /^```yaml/ {inb = 1; next} inb && /^```/ {exit} inb' "$ROOT/docs/scaling.md" >scaling.yaml
grep -q "group: enrich" scaling.yaml || fail "no pipeline found in docs/scaling.md"
# entries added before the group exists are not read (start: $): only the second ten count
for i in 1 2 3 4 5 6 7 8 9 10; do rcli XADD events '*' body "hello$i" >/dev/null; done
REDIS_URL=$RURL "$S" run scaling.yaml >sc.out 2>sc.err &
pid=$!
cleanup_pids+=("$pid")
enriched() { [ "$(rraw XLEN enriched)" = 10 ] && [ "$(rraw XPENDING events enrich | head -1)" = 0 ]; }
registered() { rraw XINFO GROUPS events 2>/dev/null | grep -qx enrich; }
wait_for 30 registered
for i in 1 2 3 4 5 6 7 8 9 10; do rcli XADD events '*' body "hello$i" >/dev/null; done # the group starts at $
wait_for 30 enriched
kill -INT $pid
rc=0; wait $pid || rc=$?
[ $rc -eq 130 ] || { cat sc.err; fail "scaling.yaml: exit $rc after SIGINT"; }
grep -q "redis_stream_in" sc.err || fail "the first redis_stream did not read: $(cat sc.err)"
# it had a default name (hostname-pid) and nothing pending: it left the group when it stopped
[ -z "$(rraw XINFO CONSUMERS events enrich)" ] || fail "a stopped default-named consumer stays in the group"
rraw XRANGE enriched - + COUNT 1 | grep -qx 6 || fail "scaling.yaml: no size field: $(rraw XRANGE enriched - + COUNT 1)"

# ---- a key that is not a stream: the run fails (exit 1) with the server's reason
rcli SET notastream x >/dev/null
cat >wrong.yaml <<EOF
stages:
  - redis_stream_in: { url: "$RURL", stream: notastream, group: g }
  - null: {}
EOF
expect 1 "$S" run wrong.yaml --quiet
err_has "wrong.yaml:2:5" "WRONGTYPE"

# ---- a drained SIGINT: chunks of 1000 over 2500 entries. Two chunks are written and their
# entries acknowledged; the last 500 wait in the partial chunk until the drain writes it.
for i in $(seq 2500); do echo "XADD ch * n $i"; done | rcli >/dev/null
cat >ch.yaml <<EOF
stages:
  - redis_stream_in: { url: "$RURL", stream: ch, group: g, start: "0" }
  - chunks: { size: 1000 }
  - file: { path: chunks.jsonl }
EOF
"$S" run ch.yaml --quiet >ch.out 2>ch.err &
pid=$!
cleanup_pids+=("$pid")
two_chunks() { [ "$(rraw XPENDING ch g | head -1)" = 500 ] && [ "$(rraw XINFO GROUPS ch | grep -A1 -x lag | tail -1)" = 0 ]; }
wait_for 30 two_chunks
kill -INT $pid
rc=0; wait $pid || rc=$?
[ $rc -eq 130 ] || { cat ch.err; fail "exit $rc after SIGINT"; }
[ "$(wc -l <chunks.jsonl)" = 3 ] || fail "$(wc -l <chunks.jsonl) chunks written"
[ "$(rraw XPENDING ch g | head -1)" = 0 ] || fail "the partial chunk's entries were not acknowledged"

# ---- retries that run out: the records go to the dead letter with the attempts
redis_stop
cat >down.yaml <<EOF
dead_letter: { file: { path: down.jsonl } }
stages:
  - generate: { count: 3 }
  - redis_stream: { url: "$RURL", stream: x, retry: { attempts: 2, initial: 10ms } }
EOF
expect 0 "$S" run down.yaml --quiet --virtual-time
[ "$(wc -l <down.jsonl)" = 3 ] || fail "dead letters: $(cat down.jsonl)"
grep -q '"attempts": *2' down.jsonl || fail "attempts: $(cat down.jsonl)"
grep -q 'cannot connect' down.jsonl || fail "error: $(cat down.jsonl)"

# ---- the circuit breaker: two failed batches open it; the next ones fail fast (and a retry
# forever, without `retry`, ends when it opens)
cat >cb.yaml <<EOF
dead_letter: { file: { path: cb.jsonl } }
stages:
  - generate: { count: 1024 }
  - redis_stream:
      url: "$RURL"
      stream: x
      retry: { attempts: 1 }
      circuit_breaker: { window: 2, min_calls: 2, failure_rate: 50, open_for: 1h }
EOF
expect 0 "$S" run cb.yaml --quiet --virtual-time
[ "$(wc -l <cb.jsonl)" = 1024 ] || fail "dead letters: $(wc -l <cb.jsonl)"
[ "$(grep -c 'circuit open' cb.jsonl)" = 512 ] || fail "circuit open: $(grep -c 'circuit open' cb.jsonl) of 1024"
sed -i '/retry: { attempts: 1 }/d' cb.yaml
expect 0 "$S" run cb.yaml --quiet --virtual-time
[ "$(grep -c 'circuit open' cb.jsonl)" = 1024 ] || fail "circuit open without retry: $(grep -c 'circuit open' cb.jsonl) of 1024"

# ---- a password: from password_env; without it the server refuses and the run fails (exit 1)
redis_restart
rcli CONFIG SET requirepass s3cret >/dev/null
cat >pw.yaml <<EOF
stages:
  - generate: { count: 5 }
  - redis_stream: { url: "$RURL", stream: pw, password_env: RPASS }
EOF
RPASS=s3cret expect 0 "$S" run pw.yaml --quiet
[ "$(REDISCLI_AUTH=s3cret rraw XLEN pw)" = 5 ] || fail "XLEN pw"
cat >nopw.yaml <<EOF
stages:
  - redis_stream_in: { url: "$RURL", stream: pw, group: g }
  - null: {}
EOF
expect 1 "$S" run nopw.yaml --quiet
err_has "NOAUTH"
echo ok
