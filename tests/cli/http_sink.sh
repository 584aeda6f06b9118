#!/usr/bin/env bash
# The http sink against the test server (tests/httpd/httpd.c, logging what it receives): records
# as JSON bodies with headers and bounded concurrency, chunks as ndjson, 503 retried until it
# succeeds, 404 to the dead letter without a retry, retry_on overriding that, and config errors.
. "$(dirname "$0")/lib.bash"

"$B/sluice_test_httpd" --port-file port --log log --delay 2 &
cleanup_pids+=($!)
disown
wait_for 5 test -s port
URL="http://127.0.0.1:$(cat port)"
stats() { python3 -c 'import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]+"/_stats"))[sys.argv[2]])' "$URL" "$1"; }

# ---- every record posted once as JSON, at most `concurrency` connections
cat >post.yaml <<YAML
pipeline: post
stages:
  - generate: { count: 40 }
  - map: "{id = r, name = 'n' .. r}"
  - http: { url: "$URL/ingest", concurrency: 4, headers: { X-Token: abc } }
YAML
expect 0 "$S" run --quiet post.yaml
python3 - <<'PY' || fail "posted: $(head -3 log)"
import json
rows = [l.rstrip("\n").split(" ", 2) for l in open("log")]
assert len(rows) == 40 and all(m == "POST" and t == "/ingest" for m, t, _ in rows), rows[:3]
assert sorted(json.loads(b)["id"] for _, _, b in rows) == list(range(1, 41))
PY
[ "$(stats max_conns)" -le 4 ] || fail "$(stats max_conns) connections at once (concurrency 4)"

# ---- chunks as newline-delimited JSON
: >log
cat >nd.yaml <<YAML
pipeline: ndjson
stages:
  - generate: { count: 7 }
  - chunks: 3
  - http: { url: "$URL/bulk", format: ndjson, concurrency: 1 }
YAML
expect 0 "$S" run --quiet nd.yaml
printf '%s\n' 'POST /bulk 1|2|3|' 'POST /bulk 4|5|6|' 'POST /bulk 7|' | cmp -s - log || fail "ndjson bodies: $(cat log)"

# ---- 503 twice then success (retried, virtual clock); 404 dead-lettered at once; retry_on decides
cat >retry.yaml <<YAML
pipeline: retrying
dead_letter: { file: { path: dead.jsonl, codec: jsonl } }
stages:
  - generate: { count: 3 }
  - route:
      outputs: { missing: "r == 2", picky: "r == 3" }
    name: by
  - http:
      name: flaky
      url: "$URL/flaky?status=503&fail=2"
      concurrency: 1
      retry: { attempts: 5, initial: 100ms }
  - http:
      name: missing
      input: by.missing
      url: "$URL/missing?status=404"
      retry: { attempts: 5, initial: 100ms }
  - http:
      name: picky
      input: by.picky
      url: "$URL/picky?status=404&fail=1"
      retry: { attempts: 5, initial: 100ms, retry_on: "function(r, e) return e.status == 404 and e.kind == 'status' end" }
YAML
expect 0 "$S" run --virtual-time --quiet --stats rs.json retry.yaml
[ "$(stats_get rs.json flaky retries)" -eq 2 ] || fail "flaky retries: $(cat rs.json)"
[ "$(stats_get rs.json flaky errors)" -eq 0 ] || fail "flaky errors: $(cat rs.json)"
[ "$(stats_get rs.json missing retries)" -eq 0 ] || fail "missing retries: $(cat rs.json)"
[ "$(stats_get rs.json picky retries)" -eq 1 ] || fail "picky retries: $(cat rs.json)"
python3 - <<'PY' || fail "dead letter: $(cat dead.jsonl)"
import json
d = [json.loads(l) for l in open("dead.jsonl")]
assert len(d) == 1 and d[0]["record"] == 2 and d[0]["attempts"] == 1 and d[0]["stage"] == "missing", d
assert d[0]["error"].endswith("/missing?status=404: status 404"), d
PY

# ---- configuration errors name the stage
cat >bad.yaml <<'YAML'
pipeline: bad
stages:
  - generate: 1
  - http: { url: "ftp://x/", concurrency: 0 }
YAML
expect 2 "$S" check bad.yaml
err_has "bad.yaml:" "concurrency must be from 1 to 100000"
sed -i 's/concurrency: 0/concurrency: 2/' bad.yaml
expect 2 "$S" check bad.yaml
err_has "url must start with http:// or https://"
