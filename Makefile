# One entry point. `make demo` and `make test` each set up what they need on a fresh machine:
# a virtual environment in .venv, torch and the build tools, and the compiled extension.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.corr2d-deps
# What the tests need beyond the base packages: installed by DEPS_STAMP on a new .venv, and by
# its own stamp on an older one (without rebuilding the extension, as the examples' stamp).
TEST_DEPS := hypothesis
TEST_STAMP := $(VENV)/.corr2d-test-deps
BUILD_STAMP := $(VENV)/.corr2d-build
# The examples extra of pyproject.toml: the demo's picture, examples/, tests/test_examples.py.
EXAMPLES_DEPS := matplotlib scikit-learn tqdm
EXAMPLES_STAMP := $(VENV)/.corr2d-examples
# The onnx extra of pyproject.toml: ONNX export and onnxruntime, for tests/test_onnx.py.
ONNX_DEPS := onnx onnxscript onnxruntime
ONNX_STAMP := $(VENV)/.corr2d-onnx
# The bench extra: torchvision for bench/bench_models.py and tests/test_bench_models.py. Pinned to
# the release built against torch 2.14.1 and installed without its dependencies, so that pip
# never swaps the torch the extension was compiled against; pillow is the one it imports.
BENCH_DEPS := torchvision==0.29.1
BENCH_STAMP := $(VENV)/.corr2d-bench
SOURCES := setup.py pyproject.toml $(shell find csrc -type f 2>/dev/null)

.PHONY: demo test test-slow test-packaging sanitize cross-aarch64 bench bench-quick bench-models build clean

demo: $(BUILD_STAMP) $(EXAMPLES_STAMP)
	$(PY) -m corr2d_ext

test: $(BUILD_STAMP) $(EXAMPLES_STAMP) $(TEST_STAMP) $(ONNX_STAMP) $(BENCH_STAMP)
	$(PY) -m pytest -q

# The tests marked slow (inductor compile, huge tensors): not part of `make test`.
test-slow: $(BUILD_STAMP) $(TEST_STAMP)
	$(PY) -m pytest -q -m slow

# pip install from a copy of the tree and from a built sdist (CPU-only builds, ~4-6 min): the
# slow tests of tests/test_packaging.py, which CI runs after `make test`.
test-packaging: $(BUILD_STAMP)
	$(PY) -m pytest -q -m slow tests/test_packaging.py

# AddressSanitizer and UndefinedBehaviorSanitizer: a CPU-only copy of the extension built with
# -fsanitize=address,undefined in /tmp/corr2d-asan (not in place), and the tests that reach every
# kernel path run under it; any report fails. tools/sanitize.sh says more.
sanitize: $(TEST_STAMP)
	bash tools/sanitize.sh

# Compiles and links the C++ sources for aarch64 with Debian's cross compiler against an aarch64
# torch wheel's headers (both fetched once, cached in /tmp/corr2d-aarch64), so that a build break
# off x86 fails here. tools/cross_compile_aarch64.sh says more.
cross-aarch64: $(DEPS_STAMP)
	CORR2D_CROSS_PYTHON=$(PY) bash tools/cross_compile_aarch64.sh

bench: $(BUILD_STAMP)
	$(PY) bench/bench.py

bench-quick: $(BUILD_STAMP)
	$(PY) bench/bench.py --quick

# Every conv layer of ResNet-18 and MobileNetV2 and the whole models (33 min on 2 loaded cores);
# BENCH_ARGS passes options, e.g. make bench-models BENCH_ARGS="--quick".
bench-models: $(BUILD_STAMP) $(EXAMPLES_STAMP) $(BENCH_STAMP)
	$(PY) bench/bench_models.py $(BENCH_ARGS)

build: $(BUILD_STAMP)

$(DEPS_STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch numpy pytest hypothesis ninja pybind11 setuptools wheel
	touch $@

$(TEST_STAMP): $(DEPS_STAMP)
	$(PY) -m pip install -q $(TEST_DEPS)
	touch $@

# Its own stamp, so that adding it to an existing .venv does not rebuild the extension.
$(EXAMPLES_STAMP): $(DEPS_STAMP)
	$(PY) -m pip install -q $(EXAMPLES_DEPS)
	touch $@

$(ONNX_STAMP): $(DEPS_STAMP)
	$(PY) -m pip install -q $(ONNX_DEPS)
	touch $@

$(BENCH_STAMP): $(DEPS_STAMP)
	$(PY) -m pip install -q --no-deps $(BENCH_DEPS)
	$(PY) -m pip install -q pillow
	touch $@

# An editable install: compiles corr2d_ext/_C*.so in place (CUDA kernels too when torch has
# CUDA and a toolkit is found; CORR2D_CUDA=0 or 1 decides instead), and prints what it built.
$(BUILD_STAMP): $(DEPS_STAMP) $(SOURCES)
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	$(PY) -c "import corr2d_ext; print('corr2d_ext built:', corr2d_ext.build_info)"
	touch $@

clean:
	rm -rf build dist *.egg-info corr2d_ext/_C*.so corr2d_ext/_build_info.py $(BUILD_STAMP)
