#!/usr/bin/env bash
# The sluice program: --version, help, help STAGE (generated from the options tables), exit codes.
set -euo pipefail
B=$1
S="$B/sluice"
fail() { echo "FAIL: $*"; exit 1; }

"$S" --version | grep -Eq '^sluice [0-9]+\.[0-9]+\.[0-9]+$' || fail "--version"
# The program's malloc is mimalloc (CMakeLists.txt says why), except under the sanitizers.
if grep -Eq '^SL_(ASAN|TSAN|FUZZ):BOOL=ON' "$B/CMakeCache.txt"; then
  "$S" version | grep -qx "malloc: the C library's" || fail "a sanitizer build reports its malloc"
else
  "$S" version | grep -Eqx 'malloc: mimalloc [0-9]+\.[0-9]+\.[0-9]+' || fail "malloc is not mimalloc: $("$S" version)"
fi
out=$("$S" help)
for k in generate lines port take skip c_map c_filter stdout file null collect; do
  grep -q "^  $k " <<<"$out" || fail "help does not list $k" # no pipe: grep -q would SIGPIPE a long echo
done
"$S" help lines | grep -q "max_line .*size.*default: 1MiB" || fail "help lines shows max_line"
"$S" help take | grep -q "count .*integer.*(required)" || fail "help take shows count as required"
set +e
"$S" help nosuchstage 2>/tmp/sluice-help-err.$$; rc=$?
set -e
[ $rc -eq 2 ] || fail "help of an unknown stage exits $rc, not 2"
grep -q "no stage kind named 'nosuchstage'" /tmp/sluice-help-err.$$ || fail "unknown stage message"
rm -f /tmp/sluice-help-err.$$
set +e
"$S" frobnicate 2>/dev/null; rc=$?
"$S" 2>/dev/null; rc2=$?
set -e
[ $rc -eq 2 ] && [ $rc2 -eq 2 ] || fail "usage errors exit 2 (got $rc, $rc2)"
echo "cli_basic: ok"
