#!/usr/bin/env bash
# `sluice repl` with input from a pipe: no prompts, no line editing; the whole output (stdout and
# stderr together) is compared with the expected text. Runs are on the virtual clock with one
# worker, so the summaries are the same every time. Exit status 1 when some input failed.
. "$(dirname "$0")/lib.bash"
export HOME="$T"

# same NAME STATUS ARGS... : runs the REPL on in.txt, compares with want.txt
same() {
  local name=$1 status=$2; shift 2
  set +e
  "$S" repl --virtual-time --workers 1 "$@" <in.txt >got.txt 2>&1
  local rc=$?
  set -e
  diff -u want.txt got.txt >diff.txt || { cat diff.txt; fail "$name: the output differs"; }
  [ "$rc" -eq "$status" ] || fail "$name: exit $rc, not $status"
  [ ! -e "$T/.sluice_history" ] || fail "$name: piped input went into the history"
}

# values, a function over several lines, a pipeline built and run, errors that do not stop it
cat >in.txt <<'IN'
1 + 1
"text", 2.5, 3.0, nil, true
{ n = 1, tags = { "a", "b" }, ok = false }
sluice.array{}, {}
function sq(x)
  return x * x
end
sq(12)
p = sluice.pipeline{}
p:generate(4):map(sq):filter("r % 2 == 0"):stdout()
:run
:stats
p:mapp(sq)
error("boom")
:rnu
print("still", "here")
IN
cat >want.txt <<'OUT'
2
"text"	2.5	3.0	nil	true
{"n": 1, "ok": false, "tags": ["a", "b"]}
[]	{}
144
pipeline 'pipeline' (4 stages): generate#1 -> map#2 -> filter#3 -> stdout#4
4
16
sluice: pipeline 'pipeline' completed in 0.000 s
  stage                kind                 in          out    errors   dropped
  generate#1           generate              0            4         0         0
  map#2                map                   4            4         0         0
  filter#3             filter                4            2         0         0
  stdout#4             stdout                2            2         0         0
sluice: pipeline 'pipeline' completed in 0.000 s
  stage                kind                 in          out    errors   dropped
  generate#1           generate              0            4         0         0
  map#2                map                   4            4         0         0
  filter#3             filter                4            2         0         0
  stdout#4             stdout                2            2         0         0
stdin:1:1: unknown stage kind 'mapp': did you mean 'map'? (sluice help lists them)
stack traceback:
	stdin:1: in main chunk
stdin:1: boom
stack traceback:
	[C]: in function 'error'
	stdin:1: in main chunk
unknown command ':rnu'; did you mean ':run'? (:help lists them)
still	here
OUT
same "session" 1

# a YAML file given at the start is p; :peek shows what passes a stage; :graph draws it
cat >in.txt <<'IN'
:peek square 2
:run
:graph
IN
cat >want.txt <<'OUT'
p = pipeline 'hello' (4 stages): numbers (generate) -> even (filter) -> square (map) -> print (stdout)
the next run shows 2 records passing 'square'
{"n":2,"square":4}
{"n":4,"square":16}
{"n":6,"square":36}
{"n":8,"square":64}
{"n":10,"square":100}
square #1: {"n":2,"square":4}
square #2: {"n":4,"square":16}
sluice: pipeline 'hello' completed in 0.000 s
  stage                kind                 in          out    errors   dropped
  numbers              generate              0           10         0         0
  even                 filter               10            5         0         0
  square               map                   5            5         0         0
  print                stdout                5            5         0         0
square: 2 records shown
+----------------------------------+
| numbers  (generate)              |
|   count=10                       |
+----------------------------------+
                  |
                  v
+----------------------------------+
| even  (filter)                   |
|   fn=r % 2 == 0                  |
+----------------------------------+
                  |
                  v
+----------------------------------+
| square  (map)                    |
|   fn={ n = r, square = r *...    |
+----------------------------------+
                  |
                  v
+----------------------------------+
| print  (stdout)                  |
|   codec=jsonl                    |
+----------------------------------+
OUT
same "yaml file" 0 "$ROOT/examples/hello.yaml"

# :load of a Lua script runs it; its pipeline is p and runs again; a fan-out graph; :graph to a file
cat >in.txt <<'IN'
:load ROOT/examples/hello.lua
q = sluice.pipeline{}
q:generate(2):map("r * 3", {name = "triple"})
q:stdout({input = "generate#1"}):null({input = "triple"})
:graph q
:graph q --format dot q.dot
:quit
print("not reached")
IN
sed -i "s|ROOT|$ROOT|" in.txt
cat >want.txt <<'OUT'
{"n":2,"square":4}
{"n":4,"square":16}
{"n":6,"square":36}
{"n":8,"square":64}
{"n":10,"square":100}
sluice: pipeline 'hello' completed in 0.000 s
  stage                kind                 in          out    errors   dropped
  generate#1           generate              0           10         0         0
  filter#2             filter               10            5         0         0
  map#3                map                   5            5         0         0
  stdout#4             stdout                5            5         0         0
5 records printed
p = pipeline 'hello' (4 stages): generate#1 -> filter#2 -> map#3 -> stdout#4
pipeline 'pipeline' (2 stages): generate#1 -> triple (map)
pipeline 'pipeline' (4 stages): generate#1 -> triple (map), stdout#3, null#4
+----------------------------------+
| generate#1  (generate)           |
|   count=2                        |
|   -> to triple, stdout#3         |
+----------------------------------+
                  |
                  v
+----------------------------------+
| triple  (map)                    |
|   fn=r * 3                       |
|   -> to null#4                   |
+----------------------------------+

+----------------------------------+
| stdout#3  (stdout)               |
|   <- from generate#1             |
+----------------------------------+

+----------------------------------+
| null#4  (null)                   |
|   <- from triple                 |
+----------------------------------+
wrote q.dot
OUT
same "load and graph" 0
grep -q 's0 -> s1' q.dot && dot -Tsvg q.dot >/dev/null 2>&1 || fail "q.dot: $(cat q.dot)"
echo "repl_pipe: ok"
