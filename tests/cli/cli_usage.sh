#!/usr/bin/env bash
# Usage errors exit 2 with a message that says what is wrong; --help works on every verb.
. "$(dirname "$0")/lib.bash"

expect 2 "$S"
err_has "usage: sluice <command>"
expect 2 "$S" frobnicate
err_has "unknown command 'frobnicate'"
expect 2 "$S" chek x.yaml
err_has "did you mean 'check'?"
expect 0 "$S" --help
out_has "run FILE" "check FILE" "graph FILE" "test FILE" "repl [FILE]"

for verb in run check graph test help repl; do
  expect 0 "$S" "$verb" --help
  out_has "usage: sluice $verb"
  expect 0 "$S" help "$verb"
  out_has "usage: sluice $verb"
done
for verb in run check graph test; do
  expect 0 "$S" "$verb" x.yaml -h
  out_has "usage: sluice $verb"
  expect 2 "$S" "$verb"
  err_has "sluice $verb: missing FILE" "usage: sluice $verb" "sluice $verb --help"
  expect 2 "$S" "$verb" x.yaml --no-such-flag
  err_has "sluice $verb: unknown flag '--no-such-flag'"
  expect 2 "$S" "$verb" pipeline.txt
  err_has "'pipeline.txt' is not a pipeline file" ".yaml, .yml or .lua"
done
# repl: FILE is optional; the same flag and file-name errors
expect 2 "$S" repl --no-such-flag </dev/null
err_has "sluice repl: unknown flag '--no-such-flag'"
expect 2 "$S" repl pipeline.txt </dev/null
err_has "'pipeline.txt' is not a pipeline file"
expect 2 "$S" repl a.yaml b.yaml </dev/null
err_has "one FILE at most"
expect 0 "$S" repl </dev/null

expect 2 "$S" run x.yaml --workers
err_has "flag '--workers' needs a value"
expect 2 "$S" run x.yaml --workers 0
err_has "--workers takes an integer from 1 to 256 (got '0')"
expect 2 "$S" run x.yaml --workers=two
err_has "(got 'two')"
expect 2 "$S" run x.yaml --quiet=yes
err_has "flag '--quiet' takes no value"
expect 2 "$S" run x.yaml --quiet --progress
err_has "exclude each other"
expect 2 "$S" run x.yaml extra
err_has "unexpected argument 'extra'"
expect 2 "$S" run x.lua --set a=b
err_has "--set applies to YAML files"
expect 2 "$S" graph x.yaml --format svg
err_has "--format is dot or mermaid (got 'svg')"
expect 2 "$S" check a.yaml b.yaml
err_has "one FILE at a time"
expect 2 "$S" test x.lua
err_has "tests are written in YAML pipeline files"
expect 2 "$S" help --bogus
err_has "unexpected argument '--bogus'"

# a file that is not there: a config error (exit 2) that names it
expect 2 "$S" check missing.yaml
err_has "missing.yaml"
expect 2 "$S" run missing.yaml
err_has "missing.yaml"
echo "cli_usage: ok"
