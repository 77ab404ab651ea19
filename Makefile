# One entry point. `make demo` and `make test` each set up what they need on a fresh machine:
# a virtual environment in .venv, torch and the build tools, and the compiled extension.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.corr2d-deps
BUILD_STAMP := $(VENV)/.corr2d-build
SOURCES := setup.py pyproject.toml $(shell find csrc -type f 2>/dev/null)

.PHONY: demo test test-slow bench bench-quick build clean

demo: $(BUILD_STAMP)
	$(PY) -m corr2d_ext

test: $(BUILD_STAMP)
	$(PY) -m pytest -q

# The tests marked slow (inductor compile, huge tensors): not part of `make test`.
test-slow: $(BUILD_STAMP)
	$(PY) -m pytest -q -m slow

bench: $(BUILD_STAMP)
	$(PY) bench/bench.py

bench-quick: $(BUILD_STAMP)
	$(PY) bench/bench.py --quick

build: $(BUILD_STAMP)

$(DEPS_STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch numpy pytest ninja pybind11 setuptools wheel
	touch $@

# An editable install: compiles corr2d_ext/_C*.so in place (CUDA kernels too when torch has
# CUDA and a toolkit is found; CORR2D_CUDA=0 or 1 decides instead), and prints what it built.
$(BUILD_STAMP): $(DEPS_STAMP) $(SOURCES)
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	$(PY) -c "import corr2d_ext; print('corr2d_ext built:', corr2d_ext.build_info)"
	touch $@

clean:
	rm -rf build dist *.egg-info corr2d_ext/_C*.so corr2d_ext/_build_info.py $(BUILD_STAMP)
