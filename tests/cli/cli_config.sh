#!/usr/bin/env bash
# Configuration errors through `sluice check` and `sluice run`: exit 2, and the message names
# file:line:col and the stage. Nothing runs, no output file appears.
. "$(dirname "$0")/lib.bash"

# bad FILE 'where' 'message': check and run both exit 2 and say "where message"
bad() {
  local file=$1 where=$2 msg=$3
  for verb in check run; do
    expect 2 "$S" $verb "$file"
    err_has "$file:$where" "$msg"
  done
  [ ! -e out.txt ] || fail "$file: an output file appeared"
  ls -a | grep -q sluice- && fail "$file: a temporary file was left" || true
}

printf 'stages:\n  - generate: 3\n  - nul: {}\n' >kind.yaml
bad kind.yaml "3:5:" "unknown stage kind 'nul': did you mean 'null'?"

printf 'stages:\n  - generate: 3\n  - take: {cuont: 1}\n  - file: out.txt\n' >option.yaml
bad option.yaml "3:5:" "stage 'take#2': unknown option 'cuont' for take; did you mean 'count'?"

printf 'stages:\n  - generate: 3\n  - take: many\n  - file: out.txt\n' >type.yaml
bad type.yaml "3:11:" "stage 'take#2': option 'count' expects an integer"

printf 'stages:\n  - generate: 3\n  - throttle: {rate: 5, per: soon}\n    name: slow\n  - file: out.txt\n' >duration.yaml
bad duration.yaml "3:5:" "stage 'slow': option 'per' expects a duration"

printf 'stages:\n  - generate: 3\n    name: gen\n  - file: out.txt\n    input: gne\n' >input.yaml
bad input.yaml "4:11:" "stage 'file#2': input 'gne' names no stage; did you mean 'gen'?"

printf 'stages:\n  - generate: 3\n  - skip: 0\n    name: a\n    input: [generate#1, b]\n  - skip: 0\n    name: b\n    input: a\n  - file: out.txt\n' >cycle.yaml
bad cycle.yaml "6:11:" "stage 'b' reads from 'a', which depends on 'b': the graph has a cycle"

printf 'stages:\n  - generate: 3\n - file: out.txt\n' >syntax.yaml
bad syntax.yaml "3:2:" "YAML syntax error"

printf 'drain_timeout: soon\nstages:\n  - generate: 3\n  - file: out.txt\n' >setting.yaml
bad setting.yaml "1:16:" "drain_timeout"

# several problems at once, one per line
printf 'stages:\n  - generate: 3\n  - take: {cuont: 1}\n  - nul: {}\n' >two.yaml
expect 2 "$S" check two.yaml
[ "$(grep -c '^two.yaml:' "$T/err")" -ge 2 ] || fail "not every problem reported: $(cat "$T/err")"

# --set errors are config errors too
printf 'stages:\n  - generate: 3\n    name: gen\n  - file: out.txt\n' >good.yaml
expect 2 "$S" run good.yaml --set gne.count=4
err_has "no stage is named 'gne'"
expect 2 "$S" run good.yaml --set workers
err_has "expected path=value"

# the good file checks fine
expect 0 "$S" check good.yaml
out_has "good.yaml: ok (2 stages)"
[ ! -e out.txt ] || fail "check wrote the output"
echo "cli_config: ok"
