# Task names kept from the original design: build, test, fmt, lint, proto, ci,
# clean, dev-controlplane, dev-worker, demo.
SHELL := /bin/bash
JOBS ?= $(shell nproc)
BUILD_DIR := build
ASAN_DIR := build/asan
TSAN_DIR := build/tsan
CMAKE_GEN := -G Ninja
SOURCES = $(shell git ls-files '*.cc' '*.h' 2>/dev/null)

export ASAN_OPTIONS ?= detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=0
export LSAN_OPTIONS ?= suppressions=$(CURDIR)/tests/sanitizers/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS ?= suppressions=$(CURDIR)/tests/sanitizers/tsan.supp:halt_on_error=1:second_deadlock_stack=1

.PHONY: deps build test test-tsan test-tsan-units test-deps fmt fmt-check lint proto ci clean dev-worker dev-controlplane
.PHONY: demo up

deps:
	@scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD_DIR) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD_DIR) -j $(JOBS) --target programs
	@ls $(BUILD_DIR)/bin/flux-* $(BUILD_DIR)/bin/fluxctl 2>/dev/null || true

test-deps: deps
	@cd tests && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund --loglevel=error; }

# The test build carries AddressSanitizer + UndefinedBehaviorSanitizer; then
# the project's own concurrent code runs again under ThreadSanitizer.
# The integration tests leave about a quarter of the CPU idle (they wait on
# processes and sockets): the TSan and fuzz builds run beside ctest at nice
# 19, so they use that and barely slow the tests; then both run.
test: test-deps
	cmake -S . -B $(ASAN_DIR) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DFLUX_SANITIZE=address >/dev/null
	cmake --build $(ASAN_DIR) -j $(JOBS)
	@mkdir -p $(BUILD_DIR); \
	nice -n 19 $(MAKE) --no-print-directory test-side-builds >$(BUILD_DIR)/side-builds.log 2>&1 & side=$$!; \
	status=0; (cd $(ASAN_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 600) || status=$$?; \
	if ! wait $$side; then echo "== TSan/fuzz builds failed:"; cat $(BUILD_DIR)/side-builds.log; exit 1; fi; \
	exit $$status
	$(MAKE) --no-print-directory test-tsan-units
	$(MAKE) --no-print-directory fuzz-ci

.PHONY: test-side-builds
test-side-builds: deps
	cmake -S . -B $(TSAN_DIR) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DFLUX_SANITIZE=thread >/dev/null
	cmake --build $(TSAN_DIR) -j $(JOBS) --target $(TSAN_UNITS)
	scripts/fuzz.sh --build-only

# Unit tests of the concurrent parts (job manager, metrics, logging, retry,
# parallel uploads) under ThreadSanitizer; fast enough for every CI run.
TSAN_UNITS := unit_jobs unit_metrics unit_log unit_retry unit_uploader unit_store unit_cp_events unit_cp_http unit_cp_auth
test-tsan-units:
	cmake -S . -B $(TSAN_DIR) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DFLUX_SANITIZE=thread >/dev/null
	cmake --build $(TSAN_DIR) -j $(JOBS) --target $(TSAN_UNITS)
	@set -e; for t in $(TSAN_UNITS); do echo "== TSan: $$t"; $(TSAN_DIR)/bin/$$t --gtest_brief=1; done

# ThreadSanitizer over the unit and integration tests (the project's own
# concurrent code: job manager, progress fan-out, uploads).
test-tsan: test-deps
	cmake -S . -B $(TSAN_DIR) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DFLUX_SANITIZE=thread >/dev/null
	cmake --build $(TSAN_DIR) -j $(JOBS)
	cd $(TSAN_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 900

# libFuzzer targets of fuzz/ (clang, ASan + UBSan) in build/fuzz: each runs
# FUZZ_SECONDS on a copy of its seed corpus, FUZZ_JOBS (at most 2) targets at
# a time; any crash, leak or timeout fails. `make fuzz` rewrites the Fuzzing
# section of docs/RELIABILITY.md; fuzz-ci is the short pass for make test.
.PHONY: fuzz fuzz-ci
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 1
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) scripts/fuzz.sh --report
fuzz-ci: deps
	FUZZ_SECONDS=5 FUZZ_JOBS=2 scripts/fuzz.sh

# Fault injection and load (issue 5, not part of make test): release builds in
# build/, figures into docs/RELIABILITY.md.
.PHONY: chaos load
chaos: build test-deps
	/usr/bin/python3 bench/chaos/soak.py --jobs 300 --seed 1
load: build
	/usr/bin/python3 bench/chaos/load.py --minutes 5

fmt:
	clang-format -i $(SOURCES)

fmt-check: deps
	@clang-format --dry-run -Werror $(SOURCES)

# The HTTP server's two Asio-coroutine files do not parse under clang 14 with
# Boost 1.74 (its Asio looks for <experimental/coroutine> there): gcc builds
# them with -Wall -Wextra, clang-tidy skips them.
LINT_SKIP := src/controlplane/http/server.cc src/controlplane/http/sse_stream.cc
lint: fmt-check
	cmake -S . -B $(BUILD_DIR) $(CMAKE_GEN) >/dev/null
	cmake --build $(BUILD_DIR) --target flux_proto -j $(JOBS)
	clang-tidy -p $(BUILD_DIR) --quiet $(filter-out $(LINT_SKIP),$(filter %.cc,$(filter src/% cmd/%,$(SOURCES))))

proto:
	cmake -S . -B $(BUILD_DIR) $(CMAKE_GEN) >/dev/null
	cmake --build $(BUILD_DIR) --target flux_proto -j $(JOBS)

ci: fmt-check build test

clean:
	rm -rf $(BUILD_DIR)

# A worker on loopback with local storage under ./.flux, for manual runs.
dev-worker: build
	mkdir -p .flux/output .flux/work
	ENV=development LOG_LEVEL=debug STORAGE_TYPE=local LOCAL_STORAGE_DIR=$(CURDIR)/.flux/output \
	WORK_DIR=$(CURDIR)/.flux/work DISABLE_AUTO_SHUTDOWN=true ALLOW_PRIVATE_INPUTS=true \
	$(BUILD_DIR)/bin/flux-worker

# A control plane on :8080 in development mode (no API key) in front of the
# dev worker on :50051, state under ./.flux, for manual runs.
dev-controlplane: build
	mkdir -p .flux
	ENV=development LOG_LEVEL=debug WORKER_NODES=127.0.0.1:50051 DATABASE_PATH=$(CURDIR)/.flux/dev.db \
	ALLOW_PRIVATE_INPUTS=true $(BUILD_DIR)/bin/flux-controlplane

# The main job end to end on embedded defaults: a control plane and two
# workers on free loopback ports (state under ./.flux), a 720p_h264 and an
# hls_720p_abr job through fluxctl, a summary of each output; then everything
# is stopped. FLUX_BIN_DIR=... runs it against another build.
demo: build
	@scripts/demo.sh

# The same stack in the foreground for manual use (Ctrl-C stops it).
up: build
	@scripts/up.sh

# Every benchmark in bench/ against the release build, each rewriting its own
# section of docs/BENCHMARKS.md (figures as rates or ratios against a baseline
# measured in the same run). Loopback only; each script bounds its own time.
.PHONY: bench
BENCH_SCRIPTS := worker_overhead submissions sse_fanout dispatch_latency selection_cost
bench: build
	@set -e; for b in $(BENCH_SCRIPTS); do echo "== bench/$$b.py"; /usr/bin/python3 bench/$$b.py; done
