#!/usr/bin/env bash
# File I/O goes through the engine's I/O thread (vm/bio.h) when the workers leave a CPU free
# (1 worker here), else inline (as many workers as CPUs). Either way:
# - what the file sink writes arrives whole and in order (lines, big raw records written from
#   where they are, one lz4 frame), and a write that fails (a file size limit: EFBIG) fails the
#   run with exit 1, names the stage and the file, and leaves neither the output nor a
#   temporary file behind;
# - big frames read by file_in straight into their strings come back whole and in order, and
#   a frame cut short (in its bytes or its length) or announcing more than max_record fails the
#   run naming the byte, after the frames before it, with the same message as when the same
#   bytes come through a pipe (the buffered decoder).
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
# big frames (6 x 40,000 bytes): straight into their strings; a pipe goes through the buffer
python3 - <<'PY'
import struct
frames = [bytes([65 + k]) * 40000 for k in range(6)]
open("big.frames", "wb").write(b"".join(struct.pack(">I", len(f)) + f for f in frames))
open("big.raw", "wb").write(b"".join(frames))
b = open("big.frames", "rb").read()
open("cut_body.frames", "wb").write(b[:3 * 40004 + 4 + 123])  # inside the 4th frame's bytes
open("cut_len.frames", "wb").write(b[:3 * 40004 + 2])         # inside the 4th frame's length
open("too_big.frames", "wb").write(b[:4 * 40004] + struct.pack(">I", 5 << 20) + b"x" * 10)
PY
cat >frames.yaml <<'YAML'
stages:
  - file_in: { path: "${in}", codec: frames }
    name: src
  - file: { path: back.raw, codec: raw }
YAML
for w in $workers; do
  expect 0 "$S" run --quiet --workers $w frames.yaml --set in=big.frames
  cmp big.raw back.raw || fail "big frames on $w workers differ"
  rm -f back.raw
  for bad in cut_body:3:"truncated frame at byte 120012: 40000 bytes announced, 123 present" \
             cut_len:3:"truncated frame at byte 120012: 2 of the 4 length bytes" \
             too_big:4:"the frame at byte 160016 announces 5242880 bytes, more than max_record"; do
    IFS=: read -r name before msg <<<"$bad"
    expect 1 "$S" run --workers $w --stats stats.json frames.yaml --set in=$name.frames
    err_has "stage 'src'" "'$name.frames': $msg"
    [ "$(stats_get stats.json src out)" = "$before" ] || fail "$name on $w workers: $(stats_get stats.json src out) frames before the error, not $before"
    no_output back.raw "$name"
    cat $name.frames | expect 1 "$S" run --workers $w frames.yaml --set in=- # the buffered decoder
    err_has "standard input: $msg"
  done
done
echo ok
