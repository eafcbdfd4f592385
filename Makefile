# Convenience targets; the README names `make run` and `make test`.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: deps build run test asan valgrind bench install kernelspec clean

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

# A short training run under valgrind (valgrind cannot run -march=native AVX-512 code,
# hence a separate build without it).
valgrind: deps
	cmake -S . -B build-vg -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMILE_NATIVE=OFF -DMILE_BUILD_TESTS=OFF
	cmake --build build-vg -j $(JOBS)
	valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=1 \
	  build-vg/mile scripts/cli/train.lua scripts/configs/lunarlander.lua --set rounds=1 \
	  --set episodes_per_round=1 --set epochs=1 --set eval_episodes=1 --set progress=false --out build-vg/runs

bench: build
	for f in bench/*.lua; do $(BUILD)/mile $$f; done

# Installs the kernelspec in <prefix>/share/jupyter/kernels/mile and, when jupyter is
# on the PATH, registers it for this user too (a prefix Jupyter does not search), as
# KERNEL_NAME (default: mile), never replacing another mile's kernel of that name.
install: build
	cmake --install $(BUILD)
	@if command -v jupyter >/dev/null 2>&1; then \
	  scripts/register_kernel.sh $(or $(KERNEL_NAME),mile) \
	    "$$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' $(BUILD)/CMakeCache.txt)/share/jupyter/kernels/mile"; \
	else echo "jupyter not found: the mile kernel is not registered (docs/notebooks.md)"; fi

# The Jupyter kernel of this build tree ($(BUILD)/mile --kernel), for the current user,
# named after the checkout and the build (mile-<checkout>-<build>) unless KERNEL_NAME=
# names it; a kernel of that name that runs another mile is not replaced.
KERNEL_DEFAULT_NAME = mile-$(shell printf '%s-%s' '$(notdir $(CURDIR))' '$(notdir $(abspath $(BUILD)))' | tr 'A-Z' 'a-z' | tr -c 'a-z0-9._\n-' '-')
kernelspec: build
	@scripts/register_kernel.sh $(or $(KERNEL_NAME),$(KERNEL_DEFAULT_NAME)) $(BUILD)/share/jupyter/kernels/mile

clean:
	rm -rf $(BUILD) build-asan build-vg
