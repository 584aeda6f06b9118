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

# Each error points at the most precise node: the kind key, the option's key (unknown option),
# the option's value (wrong type), the input's value, the Lua line.
printf 'stages:\n  - generate: 3\n  - nul: {}\n' >kind.yaml
bad kind.yaml "3:5:" "stage 'nul#2': unknown stage kind 'nul': did you mean 'null'?"

printf 'stages:\n  - generate: 3\n  - take: {cuont: 1}\n  - file: out.txt\n' >option.yaml
bad option.yaml "3:12:" "stage 'take#2': unknown option 'cuont' for take; did you mean 'count'?"

printf 'stages:\n  - generate: 3\n  - take:\n      count: 1\n      skip: 2\n  - file: out.txt\n' >option2.yaml
bad option2.yaml "5:7:" "stage 'take#2': unknown option 'skip' for take (its options are: count)"

printf 'stages:\n  - generate: 3\n  - take: many\n  - file: out.txt\n' >type.yaml
bad type.yaml "3:11:" "stage 'take#2': option 'count' expects an integer"

printf 'stages:\n  - generate: 3\n  - take:\n      count: "many"\n  - file: out.txt\n' >type2.yaml
bad type2.yaml "4:15:" "stage 'take#2': option 'count' expects an integer (got \"many\")"

printf 'stages:\n  - generate: 3\n  - throttle: {rate: 5, per: soon}\n    name: slow\n  - file: out.txt\n' >duration.yaml
bad duration.yaml "3:30:" "stage 'slow': option 'per' expects a duration"

printf 'stages:\n  - generate: 3\n  - throttle:\n      rate: fast\n    name: slow\n  - file: out.txt\n' >rate.yaml
bad rate.yaml "4:13:" "stage 'slow': option 'rate' expects an integer (got \"fast\")"

printf 'stages:\n  - generate: 3\n  - take: 1\n    queue: {capacity: 0}\n    name: t\n  - file: out.txt\n' >queue.yaml
bad queue.yaml "4:12:" "stage 't': queue capacity must be a positive integer"

printf 'stages:\n  - generate: 3\n  - map: "r + 1"\n    parallelism: lots\n  - file: out.txt\n' >par.yaml
bad par.yaml "4:18:" "stage 'map#2': parallelism must be an integer from 1 to 1024, or auto"

printf 'stages:\n  - generate: 3\n    name: gen\n  - file: out.txt\n    input: gne\n' >input.yaml
bad input.yaml "5:12:" "stage 'file#2': input 'gne' names no stage; did you mean 'gen'?"

printf 'stages:\n  - generate: 3\n    name: gen\n  - file: out.txt\n    input: [gen, gne]\n' >input2.yaml
bad input2.yaml "5:18:" "stage 'file#2': input 'gne' names no stage; did you mean 'gen'?"

printf 'stages:\n  - generate: 3\n  - skip: 0\n    name: a\n    input: [generate#1, b]\n  - skip: 0\n    name: b\n    input: a\n  - file: out.txt\n' >cycle.yaml
bad cycle.yaml "8:12:" "stage 'b' reads from 'a', which depends on 'b': the graph has a cycle"

# a Lua syntax error names the file's own line, in the shorthand and inside a map of options
printf 'stages:\n  - generate: 3\n  - filter: "r >"\n  - file: out.txt\n' >lua1.yaml
bad lua1.yaml "3:14:" "stage 'filter#2': Lua syntax error: lua1.yaml:3:"
printf 'stages:\n  - generate: 3\n  - map:\n      fn: |\n        function(r)\n          return r +\n        end\n    name: m\n  - file: out.txt\n' >lua2.yaml
bad lua2.yaml "3:5:" "stage 'm': Lua syntax error: lua2.yaml:7: unexpected symbol near 'end'"

# ... and so does an error the function raises at run time (exit 1)
printf 'stages:\n  - generate: 3\n  - map:\n      fn: |\n        function(r)\n          error("boom")\n        end\n    name: m\n    on_error: fail\n  - null:\n' >lua3.yaml
expect 1 "$S" run lua3.yaml
err_has "stage 'm': lua3.yaml:6: boom"

printf 'stages:\n  - generate: 3\n - file: out.txt\n' >syntax.yaml
bad syntax.yaml "3:2:" "YAML syntax error"

printf 'drain_timeout: soon\nstages:\n  - generate: 3\n  - file: out.txt\n' >setting.yaml
bad setting.yaml "1:16:" "drain_timeout"

# several problems at once, one per line: across stages and within one stage
printf 'stages:\n  - generate: 3\n  - take: {cuont: 1}\n  - nul: {}\n' >two.yaml
expect 2 "$S" check two.yaml
[ "$(grep -c '^two.yaml:' "$T/err")" -ge 2 ] || fail "not every problem reported: $(cat "$T/err")"
printf 'stages:\n  - generate: 3\n  - throttle:\n      rate: fast\n      per: soon\n      brust: 2\n  - file: out.txt\n' >three.yaml
expect 2 "$S" check three.yaml
err_has "three.yaml:4:13: stage 'throttle#2': option 'rate' expects an integer" \
  "three.yaml:5:12: stage 'throttle#2': option 'per' expects a duration" \
  "three.yaml:6:7: stage 'throttle#2': unknown option 'brust' for throttle; did you mean 'burst'?"

# a bad value given with --set names the argument
printf 'stages:\n  - generate: 3\n  - throttle: 5\n    name: slow\n  - file: out.txt\n' >okset.yaml
expect 2 "$S" run okset.yaml --set slow.per=never
err_has "--set 'slow.per=never': stage 'slow': option 'per' expects a duration"
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
