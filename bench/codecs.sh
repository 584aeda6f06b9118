#!/usr/bin/env bash
# codecs.sh — codec throughput against the usual tools, on files it generates (bench/README.md).
#   1. jsonl decode -> encode: `sluice` (file_in jsonl -> file jsonl) against `jq -c .` and
#      `mlr --ijson --ojson cat` (and --ojsonl) on the same file; MB/s of input.
#   2. the log filter: split 6 fields, keep status < 500, write jsonl: `parse` + `filter` at
#      workers = 1 and 2, against mawk doing the same; the output of each is checked to agree.
# usage: bench/codecs.sh BUILD_DIR [--quick]   (needs jq, miller, mawk: make deps installs them)
set -euo pipefail
B=$(cd "${1:-build-release}" && pwd)
quick=0
[ "${2:-}" = "--quick" ] && quick=1
S="$B/sluice"
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
cd "$d"
runs=3
n_json=$((quick ? 100000 : 500000))
n_log=$((quick ? 1000000 : 5000000))

# t CMD...: wall seconds of CMD (median of $runs), output to /dev/null unless CMD redirects
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
t() {
  for _ in $(seq $runs); do
    local s e
    s=$(date +%s.%N)
    "$@" >/dev/null
    e=$(date +%s.%N)
    echo "$e - $s" | bc
  done | median
}
mbs() { echo "scale=1; $1 / 1000000 / $2" | bc; }

echo "== codecs: load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
# 1. jsonl: records like an API's event log (nested objects, arrays, strings with escapes, numbers)
awk -v n=$n_json 'BEGIN { srand(3); for (i = 1; i <= n; i++)
  printf "{\"id\":%d,\"ts\":%.3f,\"user\":{\"name\":\"user%d\",\"tags\":[\"a\",\"b%d\"],\"score\":%d},\"msg\":\"GET /api/v1/items/%d \\\"ok\\\"\\tdone\",\"ok\":%s,\"n\":null}\n",
    i, 1700000000 + i / 7, i % 1000, i % 13, int(rand() * 100000), i, (i % 3 ? "true" : "false") }' >events.jsonl
size=$(stat -c %s events.jsonl)
printf 'stages:\n  - file_in: {path: events.jsonl, codec: jsonl}\n  - file: {path: out.jsonl, codec: jsonl}\n' >rt.yaml
echo "jsonl decode -> encode, $n_json records, $((size / 1000000)) MB (median of $runs):"
for w in 1 2; do
  s=$(t "$S" run --quiet --workers $w rt.yaml)
  echo "  sluice w=$w                     $s s  $(mbs "$size" "$s") MB/s"
done
cmp -s out.jsonl events.jsonl && echo "  (sluice's output is byte for byte its input)"
s=$(t jq -c . events.jsonl); echo "  jq -c .                         $s s  $(mbs "$size" "$s") MB/s"
if command -v mlr >/dev/null; then
  s=$(t mlr --ijson --ojson cat events.jsonl); echo "  mlr --ijson --ojson cat         $s s  $(mbs "$size" "$s") MB/s"
  s=$(t mlr --ijson --ojsonl cat events.jsonl); echo "  mlr --ijson --ojsonl cat        $s s  $(mbs "$size" "$s") MB/s"
fi

# 2. the log filter: "host method path status bytes ms" (the demo's access log)
awk -v n=$n_log 'BEGIN { srand(7); split("GET POST PUT", m, " "); split("/ /api/items /api/orders /login /static/app.js", p, " ");
  for (i = 1; i <= n; i++) { r = rand(); s = r < 0.9 ? 200 : (r < 0.96 ? 404 : (r < 0.99 ? 500 : 503));
    printf "10.0.%d.%d %s %s %d %d %.1f\n", i % 7, i % 250, m[1 + i % 3], p[1 + i % 5], s, 100 + (i * 37) % 9000, (i % 900) / 10 } }' >access.log
size=$(stat -c %s access.log)
cat >filter.yaml <<'Y'
stages:
  - lines: access.log
  - parse: { format: split, names: [host, method, path, status, bytes, ms], types: { status: int, bytes: int, ms: double } }
  - filter: "r.status < 500"
  - file: { path: kept.jsonl, codec: jsonl }
Y
cat >filter.awk <<'A'
$4 < 500 { printf "{\"host\":\"%s\",\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,\"bytes\":%d,\"ms\":%s}\n", $1, $2, $3, $4, $5, ($6 ~ /\./ ? $6 : $6 ".0") }
A
echo "log filter (split 6 fields, keep status < 500, write jsonl), $n_log lines, $((size / 1000000)) MB (median of $runs):"
m=$(t mawk -f filter.awk access.log)
echo "  mawk                            $m s  $(echo "scale=2; $n_log / $m / 1000000" | bc) M lines/s"
for w in 1 2; do
  s=$(t "$S" run --quiet --workers $w filter.yaml)
  echo "  sluice parse + filter (Lua) w=$w $s s  $(echo "scale=2; $n_log / $s / 1000000" | bc) M lines/s  $(echo "scale=2; $m / $s" | bc)x mawk"
done
mawk -f filter.awk access.log >kept.awk
cmp -s kept.awk kept.jsonl && echo "  (sluice and mawk wrote the same bytes)" || echo "  WARNING: sluice and mawk outputs differ"
if [ -x "$B/bench_log_filter" ]; then
  for w in 1 2; do
    s=$(t "$B/bench_log_filter" access.log kept.c.jsonl $w)
    echo "  sluice parse + c_filter (C API) w=$w $s s  $(echo "scale=2; $n_log / $s / 1000000" | bc) M lines/s  $(echo "scale=2; $m / $s" | bc)x mawk"
  done
fi
