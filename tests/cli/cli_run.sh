#!/usr/bin/env bash
# `sluice run` on YAML files: output files, --set, --stats (JSON checked with python3),
# --workers, --virtual-time, --quiet, and failures at run time (exit 1).
. "$(dirname "$0")/lib.bash"

cat >p.yaml <<'YAML'
pipeline: numbers
stages:
  - generate: 100
    name: gen
  - skip: 10
  - file: { path: out.txt }
    name: save
YAML
expect 0 "$S" run p.yaml
cmp -s out.txt <(seq 11 100) || fail "out.txt is not 11..100"
err_has "pipeline 'numbers' completed" "gen" "save"
grep -Eq '^  save +file +90 +90 +0 +0$' "$T/err" || fail "summary line of save: $(cat "$T/err")"
[ ! -s "$T/out" ] || fail "run printed on stdout"

# --set changes an option of a named stage; --stats writes the JSON stats
expect 0 "$S" run p.yaml --set gen.count=25 --set=skip#2.count=5 --stats stats.json --workers 1
cmp -s out.txt <(seq 6 25) || fail "--set: out.txt is not 6..25"
python3 - stats.json <<'PY' || fail "--stats content: $(cat stats.json)"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["elapsed_s"] >= 0, d
s = d["stages"]
assert list(s) == ["gen", "skip#2", "save"], list(s)
assert s["gen"]["out"] == 25 and s["skip#2"]["in"] == 25 and s["skip#2"]["out"] == 20, s
assert s["save"]["in"] == 20 and s["save"]["errors"] == 0 and s["save"]["dropped"] == 0, s
for st in s.values():
    for k in ("in", "out", "errors", "dropped", "retries", "dead_letter"):
        assert isinstance(st[k], int), (k, st)
PY

# --workers: any count gives the same result
for w in 1 2 4; do
  rm -f out.txt
  expect 0 "$S" run p.yaml --workers $w --quiet
  cmp -s out.txt <(seq 11 100) || fail "--workers $w"
done

# --virtual-time: 20 records at 5 per second (burst 1) take exactly 3.8 s of engine time, at once
cat >slow.yaml <<'YAML'
stages:
  - generate: 20
  - throttle: { rate: 5, per: 1s }
    name: slow
  - file: out.txt
YAML
start=$SECONDS
expect 0 "$S" run slow.yaml --virtual-time --stats vstats.json
[ $((SECONDS - start)) -lt 3 ] || fail "--virtual-time waited for real"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["elapsed_s"] == 3.8, d' vstats.json ||
  fail "virtual elapsed: $(cat vstats.json)"
cmp -s out.txt <(seq 1 20) || fail "throttled output"

# --quiet prints nothing on success
expect 0 "$S" run p.yaml --quiet
[ ! -s "$T/err" ] || fail "--quiet printed: $(cat "$T/err")"

# a pipeline that fails at run time: exit 1, the stage named, no partial output file
rm -f out.txt
printf 'a\n%s\nb\n' "$(head -c 3000 /dev/zero | tr '\0' x)" >long.txt
cat >fails.yaml <<'YAML'
stages:
  - lines: { path: long.txt, max_line: 100 }
    name: read
  - file: out.txt
YAML
expect 1 "$S" run fails.yaml
err_has "read" "failed"
[ ! -e out.txt ] || fail "a failed run left out.txt"
ls -a | grep -q sluice- && fail "a failed run left a temporary file" || true
[ "$(grep -c 'max_line\|longer' "$T/err")" -le 2 ] || fail "the failure is repeated: $(cat "$T/err")"
expect 1 "$S" run fails.yaml --quiet
err_has "failed"

# an input file that is not there: the run cannot start (exit 1)
printf 'stages:\n  - lines: nonexistent.txt\n  - file: out.txt\n' >missing.yaml
expect 1 "$S" run missing.yaml
err_has "nonexistent.txt"
echo "cli_run: ok"
