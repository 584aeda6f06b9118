#!/usr/bin/env bash
# Codecs and files through the command line: frames and lz4 interoperate with the lz4 tool,
# compressed standard input, errors that name the file and the byte offset.
. "$(dirname "$0")/lib.bash"
command -v lz4 >/dev/null || skip "no lz4 tool (make deps installs it)"

# frames: binary records written and read back byte for byte
head -c 100000 /dev/urandom >rand.bin
cat >frames.yaml <<'Y'
stages:
  - file_in: { path: rand.bin, codec: raw, max_record: 7KiB }
    name: src
  - file: { path: out.frames, codec: frames }
Y
expect 0 "$S" run --quiet frames.yaml
[ "$(stat -c %s out.frames)" -eq $((100000 + 4 * 14)) ] || fail "frames size $(stat -c %s out.frames)"
cat >back.yaml <<'Y'
stages:
  - file_in: { path: out.frames, codec: frames }
  - file: { path: back.bin, codec: raw }
Y
expect 0 "$S" run --quiet back.yaml
cmp rand.bin back.bin || fail "frames round trip differs"

# lz4: our frame is read by the lz4 tool, and the tool's files by every source, whatever the name
seq 1 200000 >n.txt
cat >z.yaml <<'Y'
stages:
  - lines: n.txt
  - file: { path: n.out, compress: lz4 }
Y
expect 0 "$S" run --quiet z.yaml
lz4 -t n.out 2>/dev/null || fail "lz4 -t rejects our frame"
lz4 -dc n.out | cmp - n.txt || fail "lz4 -d differs"
lz4 -q -c n.txt >n.txt.any
printf 'stages:\n  - lines: n.txt.any\n  - stdout: {}\n' >l.yaml
expect 0 "$S" run --quiet l.yaml
cmp "$T/out" n.txt || fail "lines of an lz4 file"
# compressed standard input, several frames in a row (lz4 -c of two files concatenated)
printf 'stages:\n  - file_in: {path: "-"}\n  - stdout: {}\n' >stdin.yaml
(lz4 -q -c n.txt; lz4 -q -c n.txt) | "$S" run --quiet stdin.yaml >both.txt
[ "$(wc -l <both.txt)" -eq 400000 ] || fail "two frames on stdin: $(wc -l <both.txt) lines"

# `file` first in a pipeline reads (it is file_in); later it writes, also as the dead letter sink
printf 'dead_letter:\n  file: {path: dl.jsonl}\nstages:\n  - file: {path: n.txt.any}\n  - file: {path: copy.txt}\n' >ff.yaml
expect 0 "$S" run --quiet ff.yaml
cmp copy.txt n.txt || fail "file as the source, then file as the sink"
"$S" graph ff.yaml | grep -q 'file#1\\nfile_in' || fail "the first file stage is not file_in: $("$S" graph ff.yaml)"

# a truncated and a corrupt file: exit 1, the file and the byte offset named, no output file
head -c 5000 n.txt.any >cut.lz4
printf 'stages:\n  - lines: cut.lz4\n  - file: cut.out\n' >cut.yaml
expect 1 "$S" run --quiet cut.yaml
err_has "truncated lz4 frame in 'cut.lz4': the input ends at byte 5000 inside a frame"
[ ! -e cut.out ] || fail "partial output left behind"
python3 -c 'import sys; b=bytearray(open("n.txt.any","rb").read()); b[3000]^=0xff; open("bad.lz4","wb").write(b)'
printf 'stages:\n  - file_in: bad.lz4\n  - null: {}\n' >bad.yaml
expect 1 "$S" run --quiet bad.yaml
err_has "corrupt lz4 data in 'bad.lz4' at byte"
echo "codecs: ok"

# With 2 workers the sinks encode ahead, on every worker (docs/codecs.md): the text on stdout and
# in a file is the same as with 1 worker, in order, for records of every type.
cat >ahead.yaml <<'Y'
lua: |
  function shape(s)
    local i = tonumber(s)
    if i % 4 == 0 then return s .. " \"q\"" end
    if i % 4 == 1 then return { i = i, s = "v" .. s, a = { i / 8, i % 3 == 0 } } end
    if i % 4 == 2 then return i end
    return i / 4
  end
stages:
  - lines: n.txt
  - map: shape
  - stdout: jsonl
Y
expect 0 "$S" run --quiet --workers 1 ahead.yaml && mv "$T/out" ahead1.txt
expect 0 "$S" run --quiet --workers 2 ahead.yaml && mv "$T/out" ahead2.txt
[ "$(wc -l <ahead1.txt)" -eq 200000 ] || fail "stdout jsonl: $(wc -l <ahead1.txt) lines"
cmp ahead1.txt ahead2.txt || fail "stdout jsonl differs between 1 and 2 workers"
sed -i 's/  - stdout: jsonl/  - file: { path: ahead.out }/' ahead.yaml
expect 0 "$S" run --quiet --workers 2 --stats st.json ahead.yaml
python3 -c 'import json,sys; s=json.load(open("st.json"))["stages"]["file#3"]; sys.exit(0 if s["in"] == s["out"] == 200000 else 1)' || fail "file stats: $(cat st.json)"
expect 0 "$S" run --quiet --workers 1 ahead.yaml && cp ahead.out ahead1.out
cmp ahead.out ahead1.out || fail "file auto differs between 1 and 2 workers"
