#!/usr/bin/env bash
# `make demo`: writes a synthetic access log, then runs examples/access_errors.yaml on it with
# the sluice command line and shows what came out.
# usage: examples/demo.sh BUILD_DIR [WORK_DIR]
set -euo pipefail
B=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
d=${2:-$(mktemp -d)}
mkdir -p "$d"
awk 'BEGIN { srand(7); split("GET POST PUT", m, " "); split("/ /api/items /api/orders /login /static/app.js", p, " ");
             for (i = 1; i <= 200000; i++) {
               r = rand(); s = r < 0.9 ? 200 : (r < 0.96 ? 404 : (r < 0.99 ? 500 : 503));
               printf "10.0.%d.%d %s %s %d %d %.1f\n", i % 7, i % 250, m[1 + i % 3], p[1 + i % 5], s, 100 + (i * 37) % 9000, (i % 900) / 10
             } }' >"$d/access.log"
INPUT="$d/access.log" OUTPUT="$d/errors.jsonl" "$B/sluice" run "$here/access_errors.yaml"
echo "--- $(wc -l <"$d/errors.jsonl") server errors of $(wc -l <"$d/access.log") lines in $d/errors.jsonl; the first three:"
head -3 "$d/errors.jsonl"
