# Convenience targets; the README names `make run` and `make test`.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: deps build run test asan bench install clean

deps:
	@scripts/setup-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

# The main job: until the MILE experiment lands, a demo that trains a tiny model.
run: build
	$(BUILD)/mile scripts/main.lua

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The C and Lua tests under AddressSanitizer + UndefinedBehaviorSanitizer.
asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMILE_SANITIZE=ON
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS) -LE nosan

bench: build
	for f in bench/*.lua; do $(BUILD)/mile $$f; done

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) build-asan
