#!/usr/bin/env bash
# examples/protect.yaml and examples/restore.yaml through the command line: byte-identical round
# trips (0 B, 1 B, 1 MiB, 1 MiB + 1; workers 1 and 2), and a restore that fails with exit 1, an
# error naming the chunk and no output file when any byte of a protected file is flipped, a
# chunk is dropped, two are swapped, one is duplicated, the file is cut at a chunk boundary, or
# the key or passphrase is wrong. Small chunks (size 64) give many chunks cheaply; a small
# Argon2id cost keeps the passphrase runs fast (the default cost is the strong one).
. "$(dirname "$0")/lib.bash"
P="$ROOT/examples/protect.yaml"
R="$ROOT/examples/restore.yaml"
export SLUICE_PASSPHRASE="correct horse battery staple"
export SLUICE_KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
cheap=(--set seal.kdf_memory=256KiB --set seal.kdf_iterations=1 --set seal.kdf_lanes=1)
# the same pipelines with a raw key
sed 's/passphrase_env: SLUICE_PASSPHRASE/key_env: SLUICE_KEY/' "$P" >pk.yaml
sed 's/passphrase_env: SLUICE_PASSPHRASE/key_env: SLUICE_KEY/' "$R" >rk.yaml

# no output and no temporary file left in the folder
no_output() {
  [ ! -e "$1" ] || fail "$2: $1 was left behind"
  ! ls -a | grep -q "sluice-" || fail "$2: a temporary file was left behind: $(ls -a)"
}

# round trips
head -c 1048577 /dev/urandom >rand
for n in 0 1 1048576 1048577; do
  head -c $n rand >in.bin
  for w in 1 2; do
    rm -f in.slc back.bin
    expect 0 "$S" run --quiet "$P" --workers $w --set in=in.bin --set out=in.slc "${cheap[@]}"
    expect 0 "$S" run --quiet "$R" --workers $w --set in=in.slc --set out=back.bin
    cmp in.bin back.bin || fail "round trip of $n bytes on $w workers differs"
  done
done
# log text compresses: the protected file is smaller than the input
seq 1 200000 | sed 's/$/ GET \/index.html 200/' >log.txt
expect 0 "$S" run --quiet "$P" --set in=log.txt --set out=log.slc "${cheap[@]}"
[ "$(stat -c %s log.slc)" -lt $(($(stat -c %s log.txt) / 3)) ] || fail "log text did not shrink: $(stat -c %s log.slc)"
expect 0 "$S" run --quiet "$R" --set in=log.slc --set out=log.back
cmp log.txt log.back || fail "log round trip"
rm -f log.*

# a small protected file: 3 chunks of (at most) 64 bytes of text, with a raw key (no KDF per run)
seq 1 60 | head -c 150 >small.bin
expect 0 "$S" run --quiet pk.yaml --workers 2 --set in=small.bin --set out=small.slc --set chunks.size=64
expect 0 "$S" run --quiet rk.yaml --set in=small.slc --set out=back.bin
cmp small.bin back.bin || fail "small round trip"
rm -f back.bin
# verifying without writing: decrypt and decompress into a null sink (fused after them, unordered)
sed 's/^  - file: .*$/  - null: {}/' rk.yaml >verify.yaml
grep -q "null" verify.yaml || fail "verify.yaml has no null sink"
expect 0 "$S" run --quiet verify.yaml --workers 2 --set in=small.slc

# every byte flipped (the copies made by one python run): exit 1, and the error names the
# header, a chunk, or the frame's byte offset when a length prefix was hit
size=$(stat -c %s small.slc)
[ "$size" -lt 400 ] || fail "small.slc has $size bytes"
mkdir flips
python3 - small.slc <<'PY'
import sys
b = open(sys.argv[1], 'rb').read()
for i in range(len(b)):
    c = bytearray(b); c[i] ^= 0x20
    open('flips/%d.slc' % i, 'wb').write(c)
PY
for ((i = 0; i < size; i++)); do
  expect 1 "$S" run --quiet rk.yaml --workers 2 --set in=flips/$i.slc --set out=back.bin
  [[ $(<"$T/err") =~ chunk\ [0-9]+|header|offset|byte\ [0-9]+ ]] || fail "flip at $i: the error names no chunk: $(cat "$T/err")"
  [ ! -e back.bin ] && [ -z "$(compgen -G '.back.bin.sluice-*')" ] || fail "flip at $i: output left behind"
done
rm -r flips

# frame surgery: drop, swap, duplicate, truncate at every chunk boundary
cat >frames.py <<'PY'
import struct, sys
def frames(path):
    b, out, i = open(path, 'rb').read(), [], 0
    while i < len(b):
        n = struct.unpack('>I', b[i:i+4])[0]; out.append(b[i:i+4+n]); i += 4 + n
    return out
f = frames(sys.argv[1]); op = sys.argv[3]; k = int(sys.argv[4])
if op == 'drop': f = f[:k] + f[k+1:]
elif op == 'swap': f[k], f[k+1] = f[k+1], f[k]
elif op == 'dup': f = f[:k+1] + f[k:]
elif op == 'cut': f = f[:k]
elif op == 'count': print(len(f)); sys.exit(0)
open(sys.argv[2], 'wb').write(b''.join(f))
PY
nf=$(python3 frames.py small.slc - count 0)
[ "$nf" -eq 4 ] || fail "small.slc has $nf frames, not 4 (a header and 3 chunks)"
check() { # op k want
  python3 frames.py small.slc bad.slc "$1" "$2"
  for w in 1 2; do
    expect 1 "$S" run --quiet rk.yaml --workers $w --set in=bad.slc --set out=back.bin
    err_has "$3"
    no_output back.bin "$1 $2"
  done
}
check drop 0 "does not start with an encryption header"
check drop 1 "chunk 0"
check drop 2 "chunk 1 "
check drop 3 "cut short after chunk 1"
check swap 1 "chunk 1 found where chunk 0 belongs"
check swap 2 "chunk 2 found where chunk 1 belongs"
check dup 1 "chunk 0 found where chunk 1 belongs"
check dup 3 "chunk 2 follows the last chunk"
check cut 0 "no encryption header"
check cut 1 "cut short"
check cut 2 "cut short after chunk 0"
check cut 3 "cut short after chunk 1"

# wrong key, wrong passphrase, a passphrase for a key-protected file
export SLUICE_KEY2=ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
SLUICE_KEY=$SLUICE_KEY2 expect 1 "$S" run --quiet rk.yaml --set in=small.slc --set out=back.bin
err_has "wrong key, or the header was modified"
no_output back.bin "wrong key"
expect 1 "$S" run --quiet "$R" --set in=small.slc --set out=back.bin
err_has "protected with a key: give key_env or key_file"
expect 0 "$S" run --quiet "$P" --set in=small.bin --set out=pw.slc "${cheap[@]}"
SLUICE_PASSPHRASE=wrong expect 1 "$S" run --quiet "$R" --set in=pw.slc --set out=back.bin
err_has "wrong passphrase, or the header was modified"
no_output back.bin "wrong passphrase"
# the passphrase is never printed
grep -q "correct horse" "$T/err" && fail "the passphrase was printed"
# no passphrase at all: a configuration error before anything runs
env -u SLUICE_PASSPHRASE "$S" run --quiet "$P" --set in=small.bin --set out=x.slc >/dev/null 2>"$T/err" && fail "ran without a passphrase"
err_has "environment variable 'SLUICE_PASSPHRASE' (passphrase_env) is not set"
no_output x.slc "no passphrase"
# --set NAME=VALUE that names neither a top-level key nor a ${NAME} of the file
expect 2 "$S" run "$P" --set inn=x
err_has "unknown key 'inn'"
echo "protect: ok"
