#!/usr/bin/env bash
# sluice.http against the test server (tests/httpd/httpd.c) on a loopback port it picks: fan-out
# through buffer_unordered with the server's connection count checked (at once and in all: kept-
# alive connections reused), retry on 503 (retry_on reading e.status), 404 to the dead letter
# without retry, a resetting server tripping the circuit
# breaker and the half-open probe closing it, a timeout cancelling a request (the server sees the
# connection close), a pipeline ending with requests in flight, and the error kinds.
. "$(dirname "$0")/lib.bash"

start_httpd port
URL="http://127.0.0.1:$(cat port)"

# ---- fan-out: every result right, never more connections than concurrency
cat >fan.yaml <<YAML
pipeline: fanout
lua: |
  function call(r)
    local resp = sluice.http.get("$URL/item/" .. r .. "?delay=2")
    return {r = r, status = resp.status, body = resp.body}
  end
stages:
  - generate: { count: 600 }
  - buffer_unordered: { concurrency: 50, fn: call }
  - file: { path: fan.jsonl, codec: jsonl }
YAML
expect 0 "$S" run --quiet --workers 1 fan.yaml
python3 - <<'PY' || fail "fan-out results: $(head -3 fan.jsonl)"
import json
rows = [json.loads(l) for l in open("fan.jsonl")]
assert len(rows) == 600, len(rows)
assert sorted(r["r"] for r in rows) == list(range(1, 601))
assert all(r["status"] == 200 and r["body"] == "/item/%d?delay=2" % r["r"] for r in rows), rows[:3]
PY
[ "$(httpd_stat max_conns)" -le 50 ] || fail "the server saw $(httpd_stat max_conns) connections at once (concurrency 50)"
# kept-alive connections are reused: 50 for the fan-out, one for each stats query (this one too)
[ "$(httpd_stat accepts)" -le 52 ] || fail "the server accepted $(httpd_stat accepts) connections for 50 in flight (not reused)"

# ---- retry on 503 then success; 404 to the dead letter without a retry (virtual clock: exact waits)
cat >retry.yaml <<YAML
pipeline: retrying
dead_letter: { file: { path: dead.jsonl, codec: jsonl } }
lua: |
  function call(r)
    local path = r == 2 and "/missing?status=404" or ("/flaky/" .. r .. "?status=503&fail=2")
    local resp = sluice.http.request { url = "$URL" .. path, raise = true }
    return {r = r, tries = tonumber(resp.headers["x-count"]), t = sluice.now()}
  end
stages:
  - generate: { count: 3 }
  - map:
      name: call
      fn: call
      retry: { attempts: 4, initial: 100ms, multiplier: 2, retry_on: "function(r, e) return e.status == 503 end" }
  - file: { path: retry.jsonl, codec: jsonl }
YAML
expect 0 "$S" run --virtual-time --quiet --stats rs.json retry.yaml
printf '%s\n' '{"r":1,"t":0.3,"tries":3}' '{"r":3,"t":0.6,"tries":3}' | cmp -s - retry.jsonl || fail "retried output: $(cat retry.jsonl)"
[ "$(stats_get rs.json call retries)" -eq 4 ] || fail "retries: $(cat rs.json)"
python3 - <<'PY' || fail "dead letter: $(cat dead.jsonl)"
import json
d = [json.loads(l) for l in open("dead.jsonl")]
assert len(d) == 1 and d[0]["record"] == 2 and d[0]["attempts"] == 1, d
assert "sluice.http: GET http://127.0.0.1:" in d[0]["error"] and "/missing?status=404: status 404" in d[0]["error"], d
PY

# ---- a server that resets connections trips the breaker; after open_for a probe closes it.
# Also at 8 workers (more than this machine's CPUs): the virtual clock must not move while a
# request is in flight even when the worker that started it goes idle at once (a race that let
# record 4 in before record 3's failure was counted).
for w in 1 8; do
cat >cb.yaml <<YAML
pipeline: breaker
lua: |
  function call(r)
    local ok, e = pcall(sluice.http.get, "$URL/cb$w?reset=1&fail=3")
    if not ok then error(e) end
    return {r = r, t = sluice.now()}
  end
stages:
  - generate: { count: 8, rate: 1 }
  - map:
      name: call
      fn: call
      circuit_breaker: { window: 4, min_calls: 3, failure_rate: 50, open_for: 3500ms, half_open_calls: 1 }
  - file: { path: cb.jsonl, codec: jsonl }
YAML
expect 0 "$S" run --workers $w --virtual-time --stats cbs.json cb.yaml
# records 1-3 reach the resetting server (connection errors), 4-6 find the breaker open (t=3..5 <
# 2+3.5), 7 is the half-open probe (t=6): it succeeds and closes the breaker, so 8 runs too
printf '%s\n' '{"r":7,"t":6.0}' '{"r":8,"t":7.0}' | cmp -s - cb.jsonl || fail "breaker output at $w workers: $(cat cb.jsonl) $(cat err)"
err_has "sluice.http: GET $URL/cb$w?reset=1&fail=3: connection error: " "circuit open"
[ "$(grep -c 'circuit open' err)" -eq 3 ] || fail "circuit open 3 times at $w workers: $(cat err)"
done

# ---- a timeout cancels the request in flight: the server sees its connection closed
cat >tmo.yaml <<YAML
pipeline: timeouts
lua: |
  function call(r)
    if r == 2 then return sluice.http.get("$URL/hang?hang=1").status end
    return sluice.http.get("$URL/fast").status
  end
stages:
  - generate: { count: 3 }
  - buffer_unordered: { concurrency: 3, fn: call, timeout: 300ms }
  - file: { path: tmo.txt }
YAML
expect 0 "$S" run tmo.yaml
printf '200\n200\n' | cmp -s - tmo.txt || fail "timeout output: $(cat tmo.txt)"
err_has "timeout after 300ms"
wait_for 5 test "$(httpd_stat conns)" -le 1 # only the connection asking

# ---- the pipeline fails with requests still in flight: they are cancelled, nothing leaks
cat >abort.yaml <<YAML
pipeline: abort
lua: |
  function call(r)
    if r > 1 then return sluice.http.get("$URL/hang2?hang=1").status end
    return sluice.http.get("$URL/fast").status
  end
stages:
  - generate: { count: 20 }
  - buffer_unordered: { concurrency: 20, fn: call }
  - map: { fn: "error('stop here')", on_error: fail }
  - null: {}
YAML
expect 1 "$S" run abort.yaml
err_has "stop here"
wait_for 5 test "$(httpd_stat conns)" -le 1

# ---- error kinds: connect (a closed port), TLS (a self-signed server: verified by default; fine
# with its certificate as ca_file), bad URL; and a POST of a table as JSON, echoed back
openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 1 -subj /CN=127.0.0.1 \
  -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
python3 - <<'PY' &
import http.server, os, ssl
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "6"); self.end_headers(); self.wfile.write(b"secure")
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain("cert.pem", "key.pem")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
open("tls.tmp", "w").write(str(s.server_address[1])); os.rename("tls.tmp", "tls_port")
s.serve_forever()
PY
cleanup_pids+=($!)
disown
wait_for 5 test -s tls_port
cat >kinds.yaml <<YAML
pipeline: kinds
lua: |
  closed = "http://127.0.0.1:" .. CLOSED_PORT
  tls = "https://127.0.0.1:$(cat tls_port)/"
  function call(r)
    local targets = {closed .. "/", tls, "ftp://x/"}
    if r == 4 then
      local resp = sluice.http.post("$URL/echo", {a = 1}, {headers = {["X-T"] = "1"}, json = true})
      return {kind = "ok", echo = resp.json}
    elseif r == 5 then
      return {kind = "ok", body = sluice.http.get(tls, {ca_file = "cert.pem"}).body}
    end
    local ok, e = pcall(sluice.http.get, targets[r], {timeout = "5s"})
    return {kind = e.kind, msg = tostring(e)}
  end
stages:
  - generate: { count: 5 }
  - map: call
  - file: { path: kinds.jsonl, codec: jsonl }
YAML
closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -i "s/CLOSED_PORT/$closed/" kinds.yaml
expect 0 "$S" run --quiet kinds.yaml
python3 - <<'PY' || fail "error kinds: $(cat kinds.jsonl)"
import json
k = [json.loads(l) for l in open("kinds.jsonl")]
assert [x["kind"] for x in k] == ["connect", "tls", "url", "ok", "ok"], k
assert k[0]["msg"].startswith("sluice.http: GET http://127.0.0.1:") and "connect error" in k[0]["msg"], k
assert k[3]["echo"] == {"a": 1} and k[4]["body"] == "secure", k
PY

# ---- requests in turn reuse the client's pooled easy handles: none keeps anything of the request
# before it (method, body, headers, timeout, TLS verification switched off)
start_httpd port2 --log log2 --log-type
URL2="http://127.0.0.1:$(cat port2)"
cat >reuse.yaml <<YAML
pipeline: reuse
lua: |
  tls = "https://127.0.0.1:$(cat tls_port)/"
  function call(r)
    local h = sluice.http
    local function get(path) local x = h.get("$URL2" .. path); return x.status .. " " .. x.body end
    local out = {}
    out[1] = h.post("$URL2/post", "x", {headers = {["Content-Type"] = "text/x-a"}, timeout = "100ms"}).body
    out[2] = get("/after-post?delay=300")
    out[3] = h.request{method = "HEAD", url = "$URL2/head"}.body
    out[4] = get("/after-head")
    out[5] = h.request{method = "DELETE", url = "$URL2/delete"}.body
    out[6] = get("/after-delete")
    out[7] = h.get(tls, {insecure = true}).body
    local ok, e = pcall(h.get, tls)
    out[8] = ok and "verified nothing" or e.kind
    return out
  end
stages:
  - generate: { count: 1 }
  - map: call
  - file: { path: reuse.jsonl, codec: jsonl }
YAML
expect 0 "$S" run --quiet reuse.yaml
printf '%s\n' '["x","200 /after-post?delay=300","","200 /after-head","/delete","200 /after-delete","secure","tls"]' |
  cmp -s - reuse.jsonl || fail "reused handles: $(cat reuse.jsonl)"
printf '%s\n' 'POST /post text/x-a x' 'GET /after-post?delay=300 - ' 'HEAD /head - ' 'GET /after-head - ' \
  'DELETE /delete - ' 'GET /after-delete - ' | cmp -s - log2 || fail "requests the server saw: $(cat log2)"

# ---- outside a stage function, and bad arguments: clear errors
cat >bad.yaml <<YAML
pipeline: bad
stages:
  - generate: { count: 1 }
  - map: "sluice.http.request{ method = 'GET' }"
  - null: {}
YAML
expect 0 "$S" run bad.yaml
err_has "url is missing"
