#!/usr/bin/env bash
# The benchmark harness's own logic, without benchmarking: bench/compare on two canned results
# (bench/testdata), and bench/run's measuring and output check on tiny commands (a peer whose
# output differs must fail the run).
. "$(dirname "$0")/lib.bash"
command -v python3 >/dev/null || skip "no python3 (make deps installs it)"

# compare: speed of B against A, marks beyond the threshold, variants in one file only, targets
expect 0 python3 "$ROOT/bench/compare" "$ROOT/bench/testdata/a.json" "$ROOT/bench/testdata/b.json"
grep -E '^logs +sluice lua w=2 +2\.000 +1\.000 +2\.00x .*faster' out >/dev/null || fail "lua row: $(cat out)"
grep -E '^logs +lua5\.4 +3\.000 +3\.100 +0\.97x' out | grep -qv 'SLOWER\|faster' || fail "lua5.4 row: $(cat out)"
grep -E '^logs +mawk .* 0\.67x .*SLOWER' out >/dev/null || fail "mawk row: $(cat out)"
grep -E '^passthrough +K=1 w=1 .*only in A' out >/dev/null || fail "only in A: $(cat out)"
grep -E '^fanout +sluice sleep w=1 .*only in B' out >/dev/null || fail "only in B: $(cat out)"
grep -E '^logs +sluice lua w=2 vs lua5\.4 +1\.5 +3\.1 +>= +1\.8 +no / met' out >/dev/null || fail "target: $(cat out)"
expect 0 python3 "$ROOT/bench/compare" --threshold 60 "$ROOT/bench/testdata/a.json" "$ROOT/bench/testdata/b.json"
grep -q 'SLOWER' out && fail "threshold 60%: $(cat out)"
echo '{"meta": {}}' >bad.json
expect 2 python3 "$ROOT/bench/compare" bad.json "$ROOT/bench/testdata/b.json"
err_has "bad.json is not a bench/run result"

# bench/run's Ctx.measure: medians, BENCH figures, peak RSS, the output check
cat >h.py <<'PY'
import importlib.machinery, importlib.util, os, sys, types
loader = importlib.machinery.SourceFileLoader("bench_run", sys.argv[1])
run = importlib.util.module_from_spec(importlib.util.spec_from_loader("bench_run", loader))
loader.exec_module(run)
args = types.SimpleNamespace(build=sys.argv[2], quick=True, big=False, runs=3, keep_data=False)
ctx = run.Ctx(args)
ctx.wl = "smoke"
o = ctx.out
same = [run.Variant("a", "printf 'x\\ny\\n' > %s" % o("a"), out=o("a")),
        run.Variant("b", ["sh", "-c", "printf 'x\\ny\\n' > %s; echo 'BENCH {\"seconds\": 0.25, \"k\": 7}'" % o("b")],
                    kind="peer", out=o("b"))]
rows = ctx.measure(same, records=10)
assert not ctx.failed, ctx.failed
assert rows["b"]["median_s"] == 0.25 and rows["b"]["figures"]["k"] == 7, rows["b"]
assert rows["b"]["records_per_s"] == 40, rows["b"]
assert len(rows["a"]["runs"]) == 3 and 0 < rows["a"]["median_s"] < 5 and rows["a"]["peak_rss_kib"] > 0, rows["a"]
assert rows["a"]["check"] == {"lines": 2, "md5": "1b5bb282b8f8792875e3c4203cfa9c57"}, rows["a"]
ctx.target("b faster than a", ctx.speedup(rows, "b", "a"), 1000.0)
assert ctx.targets[-1]["met"] is False
diff = [run.Variant("a", "echo x > %s" % o("c"), out=o("c")), run.Variant("peer", "echo y > %s" % o("d"), kind="peer", out=o("d"))]
ctx.measure(diff, runs=1)
assert len(ctx.failed) == 1 and "OUTPUT DIFFERS: smoke / peer" in ctx.failed[0], ctx.failed
try:
    ctx.measure([run.Variant("bad", "exit 3")], runs=1)
    raise AssertionError("a failing command must raise")
except run.BenchError as e:
    assert "exit 3" in str(e), e
try:
    ctx.measure([run.Variant("gone", "no-such-peer-tool --x > %s" % o("e"), kind="peer", out=o("e"))], runs=1)
    raise AssertionError("a missing peer must raise")
except run.BenchError as e:
    assert "no-such-peer-tool is not installed" in str(e), e
print("harness ok")
PY
expect 0 python3 h.py "$ROOT/bench/run" "$B"
grep -q "harness ok" out || fail "harness: $(cat out err)"

# bench_protect: --help prints the usage (no run with 0 MB and nan figures); bad arguments exit 2
expect 0 "$B/bench_protect" --help
out_has "usage: bench_protect [MiB]" "--make FILE MiB"
expect 2 "$B/bench_protect" --bogus
err_has "usage: bench_protect"
expect 2 "$B/bench_protect" 0
err_has "usage: bench_protect"

# bench_protect on 2 MiB: every row runs, and the libraries' own file round trip (read, seal,
# write; read, open, write) gives back the input, as the sluice runs must (it exits 1 if not)
expect 0 "$B/bench_protect" 2 --dir "$PWD"
out_has "libraries alone, 1 core" "+ file read/write, same thread" "sluice workers=2" "workers=1 / (libraries + file I/O, 1 core): "
[ -z "$(ls sluice-bench-log-* 2>/dev/null)" ] || fail "bench_protect left files: $(ls sluice-bench-log-*)"

# bench_lz4_handoff on a 3 MiB file: the five variants, each with its figures
python3 -c 'import random, sys; r = random.Random(7); sys.stdout.write("".join("10.0.%d.%d GET /item/%d 200\n" % (r.randrange(256), r.randrange(256), r.randrange(10**6)) for _ in range(120000))[:3 << 20])' >text.bin
expect 0 "$B/bench_lz4_handoff" text.bin --runs 1
out_has "3 chunks of 1 MiB" "one warm buffer" "20 buffers in turn" "each read by a second thread" "each write()n by a second thread"
[ "$(grep -cE ' [0-9]+\.[0-9]{3} s +[0-9]+ MB/s +[0-9]+%$' out)" -eq 5 ] || fail "bench_lz4_handoff rows: $(cat out)"
expect 2 "$B/bench_lz4_handoff" --bogus
err_has "usage: bench_lz4_handoff"
