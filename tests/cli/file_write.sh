#!/usr/bin/env bash
# The file sink writes on the engine's I/O thread (vm/bio.h) when the workers leave a CPU free
# (1 worker here), else inline (as many workers as CPUs): either way what it writes arrives
# whole and in order (lines, big raw records written from where they are, one lz4 frame), and
# a write that fails (a file size limit: EFBIG) fails the run with exit 1, names the stage and
# the file, and leaves neither the output nor a temporary file behind.
. "$(dirname "$0")/lib.bash"

no_output() {
  [ ! -e "$1" ] || fail "$2: $1 was left behind"
  ! ls -a | grep -q "sluice-" || fail "$2: a temporary file was left behind: $(ls -a)"
}

workers=$(printf '%s\n' 1 2 "$(nproc)" | sort -un)
# whole and in order
seq 1 300000 >nums.txt
head -c 3000000 /dev/urandom >rand.bin
base64 rand.bin >b64.txt # text that lz4 hardly shrinks
for w in $workers; do
  cat >lines.yaml <<'YAML'
stages:
  - lines: { path: nums.txt }
  - map: "function(r) return r end"
  - file: { path: out.txt }
    name: out
YAML
  expect 0 "$S" run --quiet --workers $w lines.yaml
  cmp nums.txt out.txt || fail "lines on $w workers differ"
  cat >raw.yaml <<'YAML'
stages:
  - read: { path: rand.bin, size: 256KiB }
  - map: "function(r) return r.data end"
  - file: { path: out.bin, codec: raw }
    name: out
YAML
  expect 0 "$S" run --quiet --workers $w raw.yaml
  cmp rand.bin out.bin || fail "raw on $w workers differs"
  cat >lz4.yaml <<'YAML'
stages:
  - lines: { path: b64.txt }
  - file: { path: out.txt.lz4, compress: lz4 }
    name: out
YAML
  expect 0 "$S" run --quiet --workers $w lz4.yaml
  lz4 -d -q -c out.txt.lz4 | cmp - b64.txt || fail "lz4 on $w workers differs"
  rm -f out.txt out.bin out.txt.lz4
done

# a write that fails on the I/O thread: files of at most 512 KiB (EFBIG; SIGXFSZ ignored)
for y in lines raw lz4; do
  for w in $workers; do
    (
      trap '' XFSZ
      ulimit -f 512
      expect 1 "$S" run --workers $w "$y.yaml"
    ) || exit 1
    err_has "stage 'out'" "cannot write" "File too large"
    no_output out.txt "$y"
    no_output out.bin "$y"
    no_output out.txt.lz4 "$y"
  done
done
echo ok
