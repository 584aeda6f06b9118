#!/usr/bin/env bash
# bench/http_fanout.sh BUILD [N] [C] [DELAY_MS] — the fan-out workload of issue 10: N requests
# (default 20,000), C in flight (default 500), against the test server (tests/httpd/httpd.c)
# answering after DELAY_MS (default 20) on a loopback port. Runs
#   1. sluice: generate(N) -> buffer_unordered{concurrency: C, fn: sluice.http.get} -> null, workers 1
#   2. the same with plain Python asyncio streams (no aiohttp): bench/peers/fanout.py, bench/run's
#      peer, with C kept-alive connections (Content-Length framing)
#   3. bench_http_floor (bench/http_floor.c): the barest client, one epoll thread in C, the floor
#      the machine and the server allow (what any client's figure is to be read against)
# and prints wall time, CPU seconds and the fraction of the ideal N * DELAY / C each took, with the
# most connections the server saw at once and how many it accepted, and what the server measured
# (tests/httpd/httpd.c /_stats): its own CPU, the client's turnaround on a kept-alive connection
# (answer written -> next request read, median and mean) and when the first requests of new
# connections arrived (mean, last; ms after the first accept). Prints figures only (bench/README.md).
set -euo pipefail
B=$(cd "${1:?usage: http_fanout.sh BUILD [N] [C] [DELAY_MS]}" && pwd)
N=${2:-20000}
C=${3:-500}
D=${4:-20}
T=$(mktemp -d)
srv=
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$T"' EXIT
start_server() {
  [ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null || true
  rm -f "$T/port"
  "$B/sluice_test_httpd" --port-file "$T/port" --delay "$D" &
  srv=$!
  for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.05; done
  URL="http://127.0.0.1:$(cat "$T/port")"
}
# the server's connections: most at once / accepted in all (more accepted than at once: not reused)
max_conns() { python3 -c 'import json,sys,urllib.request; d=json.load(urllib.request.urlopen(sys.argv[1]+"/_stats")); print("%d/%d" % (d["max_conns"], d["accepts"]))' "$URL"; }
server() { python3 -c 'import json,sys,urllib.request; d=json.load(urllib.request.urlopen(sys.argv[1]+"/_stats")); t=d["turn_us"]; f=d["first_us"]; print("server CPU %.2f s, turnaround %.2f / %.2f ms, first requests %.1f / %.1f ms" % (d["cpu_ms"] / 1000, t[0] / 1000, t[4] / 1000, f[0] / 1000, f[1] / 1000))' "$URL"; }
ideal=$(python3 -c "print($N * $D / 1000 / $C)")
echo "http fan-out: $N requests, $C in flight, server delay $D ms; ideal $ideal s; $(uptime | sed 's/.*load/load/')"

start_server
cat >"$T/fan.yaml" <<YAML
pipeline: http_fanout
lua: |
  function call(r)
    local resp = sluice.http.get("$URL/item/" .. r)
    if resp.body ~= "/item/" .. r then error("wrong answer for " .. r) end
    return r
  end
stages:
  - generate: { count: $N }
  - buffer_unordered: { concurrency: $C, fn: call }
  - null: {}
YAML
# row NAME RESULTS WALL USER SYS: one line of figures, then what the server measured
row() {
  printf '%-16s %6.2f s  %5.2f CPU s  %5.1f%% of ideal  results/errors %s  server conns at once/accepted %s\n' \
    "$1" "$3" "$(python3 -c "print($4 + $5)")" "$(python3 -c "print(100 * $ideal / $3)")" "$2" "$(max_conns)"
  echo "        $(server)"
}
/usr/bin/time -f "%e %U %S" -o "$T/t1" "$B/sluice" run --quiet --workers 1 --stats "$T/s.json" "$T/fan.yaml"
read -r wall user sys <"$T/t1"
ok=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["stages"]; print(d["buffer_unordered#2"]["out"], d["buffer_unordered#2"]["errors"])' "$T/s.json")
row "sluice  w=1" "$ok" "$wall" "$user" "$sys"

start_server # bench/run's asyncio peer, with C connections (it fails on a wrong answer)
/usr/bin/time -f "%e %U %S" -o "$T/t2" python3 "$(dirname "$0")/peers/fanout.py" http "$N" "$T/py.out" "${URL##*:}" "$C"
read -r wall2 user2 sys2 <"$T/t2"
row asyncio "$(wc -l <"$T/py.out") 0" "$wall2" "$user2" "$sys2"
if [ -x "$B/bench_http_floor" ]; then
  start_server
  /usr/bin/time -f "%e %U %S" -o "$T/t3" "$B/bench_http_floor" "${URL##*:}" "$N" "$C" >"$T/floor.out"
  read -r wall3 user3 sys3 <"$T/t3"
  row "bare C client" "$(cut -d' ' -f1,3 "$T/floor.out")" "$wall3" "$user3" "$sys3"
fi
printf 'sluice / asyncio: %.2f x the speed\n' "$(python3 -c "print($wall2 / $wall)")"
