# Thin wrapper over CMake. `make run` and `make test` install what is missing first.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build run test unit asan tsan fuzz bench clean format format-check

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/cofferd $(ARGS)

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

unit: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS) -L unit

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer, but for the Terraform
# suites (label "terraform"): they drive the same operations as the boto3 suites and spend their
# time starting the provider, not in cofferd; and for the second runs on PostgreSQL of the AWS
# CLI, Parameter Store and Secrets Manager suites (the KMS boto3 suite's second run covers that
# backend's code under the sanitizers; the services above the store are the same on both).
asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DCOFFER_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --test-dir build-asan --output-on-failure -j $(JOBS) -LE terraform -E '^integration_pg_test_(kms_cli|ssm_parameters|secrets_manager)$$'

# ThreadSanitizer over the unit tests, plus the integration suites that drive cofferd's workers
# concurrently: test_concurrency (parallel clients on the key cache, the
# credentials cache, sessions and the SigV4 cache), test_quota (parallel CreateKey against shared
# buckets), test_security_limits (connection and body limits under parallel clients) and
# test_durability (writers racing a kill). The other suites send one request at a time and the
# cli tests run single-threaded commands; under TSan they take over 20 minutes on 2 cores (mostly
# the AWS CLI waiting on a slowed server), so they run in `make test` and `make asan` only. Every report of any process (cofferd,
# coffer, unit tests) is written to build-tsan/reports/ and fails the target, whatever the exit
# code of that process.
TSAN_SUITES = ^integration_test_(concurrency|quota|security_limits|durability)$$
TSAN_OPTIONS_CI = halt_on_error=0:second_deadlock_stack=1:suppressions=$(CURDIR)/tests/tsan.supp:log_path=$(CURDIR)/build-tsan/reports/tsan
tsan: deps
	@cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DCOFFER_TSAN=ON >/dev/null
	@cmake --build build-tsan -j $(JOBS)
	@rm -rf build-tsan/reports && mkdir -p build-tsan/reports
	@status=0; \
	TSAN_OPTIONS=$(TSAN_OPTIONS_CI) ctest --test-dir build-tsan --output-on-failure -j $(JOBS) -L unit \
		|| status=1; \
	TSAN_OPTIONS=$(TSAN_OPTIONS_CI) ctest --test-dir build-tsan --output-on-failure -j $(JOBS) -R '$(TSAN_SUITES)' \
		|| status=1; \
	if [ -n "$$(ls -A build-tsan/reports)" ]; then \
		cat build-tsan/reports/*; echo "ThreadSanitizer: reports above (build-tsan/reports/)"; status=1; \
	fi; \
	exit $$status

# Builds the libFuzzer targets and runs each for FUZZ_SECONDS (default 20).
fuzz: deps
	@cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DCOFFER_FUZZ=ON >/dev/null
	@cmake --build build-fuzz -j $(JOBS)
	bash tests/fuzz/run.sh build-fuzz/fuzz $${FUZZ_SECONDS:-20}

bench: build
	bash bench/run.sh

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz

# Every C file as .clang-format says; format-check fails (as CI does) on any difference.
# Two passes: clang-format 14 re-wraps a few concatenated string literals only on the second.
format:
	clang-format -i $$(git ls-files '*.c' '*.h')
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check: deps
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')
