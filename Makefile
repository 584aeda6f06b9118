# sluice — the two commands: `make demo` and `make test` (see README.md).
# Targets install what is missing (Debian 12 packages), build with CMake, and run.

BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

# Debian packages the build, the tests and the benchmarks need.
DEPS = build-essential cmake pkg-config liblua5.4-dev lua5.4 liblz4-dev libmbedtls-dev libyaml-dev \
       clang libclang-rt-14-dev graphviz lz4 libpcre2-dev

.PHONY: all deps build test sanitize asan tsan fuzz bench demo clean

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
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 bash tests/run build-asan

tsan: deps
	cmake -S . -B build-tsan -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DSL_TSAN=ON -DSL_WERROR=ON >/dev/null
	cmake --build build-tsan -j $(JOBS)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 bash tests/run build-tsan

# The YAML front end under libFuzzer (+ASan/UBSan) for FUZZ_TIME seconds, from the committed seeds
# in fuzz/corpus/yaml; what it learns goes to build-fuzz/corpus-yaml, crashes to build-fuzz/.
FUZZ_TIME ?= 60
fuzz: deps
	cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DSL_FUZZ=ON >/dev/null
	cmake --build build-fuzz -j $(JOBS) --target yaml_fuzz
	mkdir -p build-fuzz/corpus-yaml
	build-fuzz/yaml_fuzz -max_total_time=$(FUZZ_TIME) -dict=fuzz/yaml.dict -artifact_prefix=build-fuzz/ \
	  build-fuzz/corpus-yaml fuzz/corpus/yaml

bench: deps
	cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build-release -j $(JOBS)
	bash bench/run build-release

# An example pipeline end to end: examples/access_errors.yaml on a log the demo generates.
demo: build
	bash examples/demo.sh $(BUILD) $(BUILD)/demo

clean:
	rm -rf build build-asan build-tsan build-fuzz build-release
