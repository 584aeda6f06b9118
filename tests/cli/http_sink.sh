#!/usr/bin/env bash
# The http sink against the test server (tests/httpd/httpd.c, logging what it receives): records
# as JSON bodies with headers and bounded concurrency, the bodies and Content-Type of every codec
# (records and chunks), a record the codec cannot write dead-lettered, 503 retried until it
# succeeds, 404 to the dead letter without a retry, retry_on overriding that, and config errors.
. "$(dirname "$0")/lib.bash"

start_httpd port --log log --log-type --delay 2
URL="http://127.0.0.1:$(cat port)"

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
rows = [l.rstrip("\n").split(" ", 3) for l in open("log")]
assert len(rows) == 40 and all(m == "POST" and t == "/ingest" and ty == "application/json" for m, t, ty, _ in rows), rows[:3]
assert sorted(json.loads(b)["id"] for _, _, _, b in rows) == list(range(1, 41))
PY
[ "$(httpd_stat max_conns)" -le 4 ] || fail "$(httpd_stat max_conns) connections at once (concurrency 4)"

# ---- codecs: a record per request, or a chunk per request (concurrency 1: bodies in order)
# codec(NAME, STAGES, OPTIONS, EXPECTED LOG LINES...): generate 5 records {n, s} -> STAGES -> http
codec() {
  local name=$1 stages=$2 opts=$3; shift 3
  : >log
  cat >codec.yaml <<YAML
pipeline: codec-$name
stages:
  - generate: { count: 5 }
  - map: "{n = r, s = 'x' .. r}"
$stages
  - http: { url: "$URL/c", concurrency: 1, $opts }
YAML
  expect 0 "$S" run --quiet codec.yaml
  printf '%s\n' "$@" | cmp -s - log || fail "codec $name: $(cat log)"
}
codec json-chunk "  - chunks: 3" "codec: json" \
  'POST /c application/json [{"n":1,"s":"x1"},{"n":2,"s":"x2"},{"n":3,"s":"x3"}]' \
  'POST /c application/json [{"n":4,"s":"x4"},{"n":5,"s":"x5"}]'
codec jsonl-chunk "  - chunks: 3" "codec: jsonl" \
  'POST /c application/x-ndjson {"n":1,"s":"x1"}|{"n":2,"s":"x2"}|{"n":3,"s":"x3"}|' \
  'POST /c application/x-ndjson {"n":4,"s":"x4"}|{"n":5,"s":"x5"}|'
codec jsonl-record "  - take: 2" "codec: jsonl" \
  'POST /c application/x-ndjson {"n":1,"s":"x1"}|' 'POST /c application/x-ndjson {"n":2,"s":"x2"}|'
codec lines-record "  - map: r.s
  - take: 2" "codec: lines" 'POST /c text/plain;charset=utf-8 x1|' 'POST /c text/plain;charset=utf-8 x2|'
codec lines-chunk "  - map: r.s
  - chunks: 4" "codec: lines" 'POST /c text/plain;charset=utf-8 x1|x2|x3|x4|' 'POST /c text/plain;charset=utf-8 x5|'
codec csv-chunk "  - chunks: 3" "codec: csv, header: true" \
  'POST /c text/csv;charset=utf-8 n,s|1,x1|2,x2|3,x3|' 'POST /c text/csv;charset=utf-8 n,s|4,x4|5,x5|'
codec csv-row "  - map: \"{r.s, tostring(r.n)}\"
  - take: 2" "codec: csv, delimiter: ';'" 'POST /c text/csv;charset=utf-8 x1;1|' 'POST /c text/csv;charset=utf-8 x2;2|'
codec raw-chunk "  - map: r.s
  - chunks: 2" "codec: raw, headers: { Content-Type: text/x-mine }" \
  'POST /c text/x-mine x1x2' 'POST /c text/x-mine x3x4' 'POST /c text/x-mine x5'

# ---- a record the codec cannot write goes to the dead letter; the others are sent
: >log
cat >rawbad.yaml <<YAML
pipeline: rawbad
dead_letter: { file: { path: rawdead.jsonl, codec: jsonl } }
stages:
  - generate: { count: 3 }
  - map: "r == 2 and {n = r} or 'x' .. r"
  - http: { url: "$URL/r", concurrency: 1, codec: raw }
YAML
expect 0 "$S" run --quiet rawbad.yaml
printf '%s\n' 'POST /r application/octet-stream x1' 'POST /r application/octet-stream x3' | cmp -s - log || fail "raw: $(cat log)"
grep -q '"codec raw writes strings' rawdead.jsonl || fail "raw dead letter: $(cat rawdead.jsonl)"

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
sed -i 's#ftp://x/#http://x/#; s/concurrency: 2/codec: auto/' bad.yaml
expect 2 "$S" check bad.yaml
err_has "bad.yaml:" "codec auto is not for request bodies"
sed -i 's/codec: auto/codec: csv, delimiter: ";;"/' bad.yaml
expect 2 "$S" check bad.yaml
err_has "bad.yaml:" "delimiter"
