#!/usr/bin/env bash
# `sluice test`: a file whose tests pass (exit 0), a broken copy (exit 1 with a diff), and a bad
# test (exit 2).
. "$(dirname "$0")/lib.bash"

cat >t.yaml <<'YAML'
stages:
  - lines: access.log
    name: read
  - skip: 1
    name: body
  - take: 2
    name: first
  - file: out.txt
tests:
  - name: skips the header
    input: { stage: body, records: [header, a, b, c] }
    expect: { stage: first, records: [a, b] }
  - name: counts
    input: { stage: body, records: [h, x] }
    expect: { stage: first, count: 1 }
YAML
expect 0 "$S" test t.yaml
out_has "ok   skips the header" "ok   counts" "2 passed, 0 failed"
[ ! -e out.txt ] || fail "a test touched the real sink"

sed 's/records: \[a, b\]/records: [a, c]/' t.yaml >broken.yaml
expect 1 "$S" test broken.yaml
out_has "FAIL skips the header" "ok   counts" "1 passed, 1 failed" '- [1] "c"' '+ [1] "b"'

sed 's/stage: first, count/stage: nosuch, count/' t.yaml >bad.yaml
expect 2 "$S" test bad.yaml
err_has "bad.yaml:"

printf 'stages:\n  - generate: 1\n  - file: out.txt\n' >none.yaml
expect 0 "$S" test none.yaml
out_has "no tests"
echo "cli_test: ok"
