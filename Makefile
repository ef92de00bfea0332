# Kovan KV — the two commands a newcomer needs:
#   make run    install what is missing, build Release, start kovan-server on 127.0.0.1:7379
#   make test   install what is missing, build, run the default test suite
# Everything else (bench, asan, tsan, tla, format, clean) is listed by `make help`.

SHELL      := /bin/bash
JOBS       ?= $(shell nproc)
BUILD      ?= build/release
ASAN_BUILD ?= build/asan
TSAN_BUILD ?= build/tsan
CMAKE_GEN  := -G Ninja
# Labels in the default suite; slow suites have their own target.
TEST_LABELS       ?= unit|integration|stress
# Sanitizer runs cover the suites that exercise concurrent code.
ASAN_LABELS       ?= unit|stress|integration
TSAN_LABELS       ?= stress|unit
SERVER_ARGS       ?=
IMAGE             ?= kovan-kv
CTEST_FLAGS       := --output-on-failure --no-tests=error

.PHONY: help deps configure build run test test-slow bench asan tsan tla format clean image test-container

help:
	@echo "make run        install deps, build Release, start kovan-server on 127.0.0.1:7379"
	@echo "make test       install deps, build, run the default suite (labels: $(TEST_LABELS))"
	@echo "make test-slow  the slow suites (label: slow)"
	@echo "make bench      build and run the benchmarks, writing CSV and plots"
	@echo "make asan       ASan+UBSan build in $(ASAN_BUILD), run $(ASAN_LABELS)"
	@echo "make tsan       TSan build in $(TSAN_BUILD), run $(TSAN_LABELS)"
	@echo "make tla        model-check tla/ with TLC (needs tla2tools.jar, see tla/README.md)"
	@echo "make format     clang-format every C++ source in place"
	@echo "make image      build the container image $(IMAGE) (docker, else podman)"
	@echo "make test-container  build the image and run its smoke test (label: container)"
	@echo "make clean      remove build/"

deps:
	@bash scripts/install-deps.sh

$(BUILD)/build.ninja:
	@cmake -S . -B $(BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Release >/dev/null

configure: deps $(BUILD)/build.ninja

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@if [ -x $(BUILD)/server/kovan-server ]; then \
	  exec $(BUILD)/server/kovan-server $(SERVER_ARGS); \
	else \
	  echo "make run: $(BUILD)/server/kovan-server was not built; see the build output above"; \
	  exit 1; \
	fi

test: build
	@cd $(BUILD) && ctest $(CTEST_FLAGS) -j $(JOBS) -L '$(TEST_LABELS)'

test-slow: build
	@cd $(BUILD) && ctest --output-on-failure --no-tests=ignore -L slow

bench: build
	@bash scripts/run-bench.sh $(BUILD)

asan: deps
	@cmake -S . -B $(ASAN_BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKV_SANITIZE=address -DKV_BUILD_BENCH=OFF >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest $(CTEST_FLAGS) -j $(JOBS) -L '$(ASAN_LABELS)'

tsan: deps
	@cmake -S . -B $(TSAN_BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKV_SANITIZE=thread -DKV_BUILD_BENCH=OFF >/dev/null
	@cmake --build $(TSAN_BUILD) -j $(JOBS)
	@cd $(TSAN_BUILD) && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest $(CTEST_FLAGS) -j $(JOBS) -L '$(TSAN_LABELS)'

tla:
	@bash scripts/run-tla.sh

# Container image: docker when its daemon answers, else podman (set up by podman-setup.sh
# when found beside the checkout); see docker/build-image.sh.
image:
	@bash docker/build-image.sh $(IMAGE)

test-container: build image
	@cd $(BUILD) && KOVAN_IMAGE=$(IMAGE) ctest $(CTEST_FLAGS) -L container

format:
	@git ls-files '*.cpp' '*.hpp' '*.cc' '*.h' | xargs -r clang-format -i

clean:
	rm -rf build
