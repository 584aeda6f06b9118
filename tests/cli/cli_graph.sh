#!/usr/bin/env bash
# `sluice graph`: dot that Graphviz renders (for the test pipelines and every example pipeline
# under examples/), and Mermaid text.
. "$(dirname "$0")/lib.bash"
command -v dot >/dev/null || skip "Graphviz (dot) is not installed: make deps installs it"
EX="$ROOT/examples"

cat >g.yaml <<'YAML'
pipeline: "a \"quoted\" name"
dead_letter: { file: { path: failed.jsonl } }
stages:
  - lines: { path: "in put.txt" }
    name: read
  - skip: 1
    name: body
    on_error: dead_letter
  - throttle: { rate: 100, per: 1s }
    name: slow
    queue: { capacity: 8, on_full: drop_oldest }
  - file: { path: out.txt }
    name: save
  - stdout: {}
    input: [body, slow]
YAML
expect 0 "$S" graph g.yaml
out_has 'digraph "a \"quoted\" name"' 'read\nlines\npath=in put.txt' 'slow\nthrottle\nrate=100\nper=1s' \
  'cap 8, drop_oldest' 'style="rounded,dashed"' 'style=dashed'
cp "$T/out" g.dot
dot -Tsvg g.dot >g.svg || fail "dot cannot render: $(cat g.dot)"
grep -q "<svg" g.svg || fail "no svg"
# edges: read->body, body->slow, slow->save, body->stdout, slow->stdout, and failed records of
# the transforms (body, slow) to the dead letter
[ "$(grep -c -- "->" g.dot)" -eq 7 ] || fail "edges: $(grep -- '->' g.dot)"

expect 0 "$S" graph g.yaml --format mermaid
out_has "flowchart LR" 'read<br/>lines<br/>path=in put.txt' 'cap 8, drop_oldest' '-. failed .->' 'stroke-dasharray'
grep -q '"' <(grep -v '\["\|-- "' "$T/out") && fail "unescaped quote in mermaid: $(cat "$T/out")" || true

# long option values are cut
printf 'stages:\n  - lines: %s\n  - "null": {}\n' "$(printf 'x%.0s' {1..100}).txt" >long.yaml
expect 0 "$S" graph long.yaml
out_has 'path=xxxxxxxxxxxxxxxxxxxxx...'

# a pipeline that does not check: exit 2, no graph
printf 'stages:\n  - generate: 3\n  - file: out.txt\n    input: nosuch\n' >bad.yaml
expect 2 "$S" graph bad.yaml
err_has "bad.yaml:" "input 'nosuch' names no stage"
[ ! -s "$T/out" ] || fail "a graph was printed for a bad pipeline"

# every example pipeline renders
n=0
for f in "$EX"/*.yaml "$EX"/*.yml; do
  [ -e "$f" ] || continue
  expect 0 "$S" graph "$f"
  dot -Tsvg "$T/out" >/dev/null || fail "$f: dot cannot render"
  n=$((n + 1))
done
echo "cli_graph: ok ($n example pipelines)"
