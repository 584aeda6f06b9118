#!/usr/bin/env bash
# docs/stages.md is `sluice help --markdown`, generated from the stage kinds' options tables:
# fails when it is stale, so the docs never disagree with the tables.
set -euo pipefail
B=$1
cd "$(dirname "$0")/../.."
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$B/sluice" help --markdown >"$d/stages.md"
if ! cmp -s "$d/stages.md" docs/stages.md; then
  echo "FAIL: docs/stages.md is stale; regenerate it with:"
  echo "  $B/sluice help --markdown > docs/stages.md"
  diff -u docs/stages.md "$d/stages.md" | head -40
  exit 1
fi
# every kind `sluice help` lists has its section
for k in $("$B/sluice" help | sed -n 's/^  \([a-z_0-9]*\)  .*/\1/p'); do
  grep -q "^## $k\$" docs/stages.md || { echo "FAIL: docs/stages.md has no section for $k"; exit 1; }
done
echo "docs: ok"
