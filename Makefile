# sluice — the two commands: `make demo` and `make test` (see README.md).
# Targets install what is missing (Debian 12 packages), build with CMake, and run.

BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

# Debian packages the build, the tests and the benchmarks need (jq, miller, mawk, gawk, luajit,
# jansson and json-c only for bench/: the tools and libraries sluice is measured against;
# redis-server and redis-tools for the redis_stream tests and bench_redis_stream).
DEPS = build-essential cmake pkg-config liblua5.4-dev lua5.4 liblz4-dev libmbedtls-dev libyaml-dev \
       clang libclang-rt-14-dev graphviz lz4 libpcre2-dev libedit-dev tmux \
       jq miller mawk libjansson-dev libjson-c-dev libargon2-dev openssl libmicrohttpd-dev curl libcurl4-openssl-dev \
       libhiredis-dev redis-server redis-tools python3 gawk luajit libmimalloc-dev libssl-dev

.PHONY: all deps build test sanitize asan tsan tsan-wide fuzz bench demo clean

all: build

deps:
	@bash .ci/deps $(DEPS)

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

test: build
	bash tests/run $(BUILD)

# The whole suite under AddressSanitizer+UBSan, then under ThreadSanitizer (clang).
sanitize: asan tsan

asan: deps
	cmake -S . -B build-asan -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DSL_ASAN=ON -DSL_UBSAN=ON -DSL_WERROR=ON >/dev/null
	cmake --build build-asan -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp UBSAN_OPTIONS=print_stacktrace=1 bash tests/run build-asan

tsan: deps
	cmake -S . -B build-tsan -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DSL_TSAN=ON -DSL_WERROR=ON >/dev/null
	cmake --build build-tsan -j $(JOBS)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 bash tests/run build-tsan

# The ThreadSanitizer suite with 8 workers wherever a test leaves the count to the default
# (SLUICE_WORKERS): more threads than CPUs interleave the stages in ways one per CPU rarely does
# on a small machine. Run it after touching the scheduler, the loop or a stage's wake-ups.
tsan-wide: tsan
	SLUICE_WORKERS=8 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 bash tests/run build-tsan

# Every libFuzzer target (+ASan/UBSan) for FUZZ_TIME seconds each, from the committed seeds in
# fuzz/corpus/<name>: the YAML front end, the JSON decoder, the CSV decoder, the lz4 frame reader,
# the decrypting reader (decrypt + decompress) and the per-record lz4 decompress.
# What a target learns goes to build-fuzz/corpus-<name>, crashes to build-fuzz/. Not part of CI.
FUZZ_TIME ?= 60
FUZZ_TARGETS = yaml json csv lz4 decrypt decompress
fuzz: deps
	cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DSL_FUZZ=ON >/dev/null
	cmake --build build-fuzz -j $(JOBS) --target $(addsuffix _fuzz,$(FUZZ_TARGETS))
	set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p build-fuzz/corpus-$$t; \
	  dict=; [ -f fuzz/$$t.dict ] && dict=-dict=fuzz/$$t.dict; \
	  echo "== $${t}_fuzz for $(FUZZ_TIME) s"; \
	  build-fuzz/$${t}_fuzz -max_total_time=$(FUZZ_TIME) $$dict -artifact_prefix=build-fuzz/$$t- \
	    build-fuzz/corpus-$$t fuzz/corpus/$$t; \
	done

# Every workload against its peers, one table, JSON in bench/results/ (bench/README.md).
# make bench QUICK=1: the one-minute version; BENCH_ARGS="--only logs,json_etl" and the like.
bench: deps
	cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build-release -j $(JOBS)
	python3 bench/run build-release --no-build $(if $(QUICK),--quick) $(BENCH_ARGS)

# An example pipeline end to end: examples/access_errors.yaml on a log the demo generates.
demo: build
	bash examples/demo.sh $(BUILD) $(BUILD)/demo

clean:
	rm -rf build build-asan build-tsan build-fuzz build-release
