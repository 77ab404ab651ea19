#!/usr/bin/env bash
# Cross-compiles the extension's C++ sources for aarch64 (`make cross-aarch64`, run by CI), so
# that a build break off x86 (an x86 intrinsic outside the x86 files, a NEON typo in the files
# nobody here can run) fails CI on an x86 host. Compile and link only: nothing is run.
#
#   sources   the list setup.py builds on aarch64 (its cpp_sources("aarch64")): the op
#             registration, the portable kernels, the planner, dispatch, the generic
#             instantiations and isa/neon.cpp; never the AVX files
#   compiler  Debian's aarch64-linux-gnu-g++, apt-installed when missing (needs root)
#   torch     the headers of an aarch64 torch wheel (torch/include only) of the version the
#             Python below has (else 2.9.1), downloaded once with pip and kept in
#             $CORR2D_CROSS_DIR (default /tmp/corr2d-aarch64)
#   Python    this host's own CPython headers. They are the same for every little-endian LP64
#             Linux; the only architecture-specific macros in pyconfig.h (HAVE_GCC_ASM_FOR_X87,
#             HAVE_GCC_ASM_FOR_X64) are read by CPython's internal headers alone, which
#             Python.h does not include (checked below, so a future CPython that changes this
#             fails here rather than compiling against wrong assumptions).
#   flags     what that torch's cpp_extension passes (its -std=c++17 or c++20, read from its
#             cpp_extension.py), with setup.py's -fopenmp; linked as a shared object with torch's
#             and Python's symbols left unresolved, which catches duplicate definitions
#             between translation units.
#
# Environment: CORR2D_CROSS_DIR (cache folder), CORR2D_CROSS_TORCH (torch version),
# CORR2D_CROSS_JOBS (parallel compiles, default: the number of CPUs), CORR2D_CROSS_PYTHON (the
# interpreter whose pip downloads the wheel and whose headers are used; default .venv/bin/python,
# else python3). Any error stops the script with a non-zero status.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${CORR2D_CROSS_DIR:-/tmp/corr2d-aarch64}
JOBS=${CORR2D_CROSS_JOBS:-$(nproc)}
if [[ -n ${CORR2D_CROSS_PYTHON:-} ]]; then
  :
elif [[ -x .venv/bin/python ]]; then
  CORR2D_CROSS_PYTHON=.venv/bin/python
else
  CORR2D_CROSS_PYTHON=python3
fi
CXX=aarch64-linux-gnu-g++
start=$SECONDS

fail() { echo "cross_compile_aarch64: $*" >&2; exit 1; }

# Two runs at once (two checkouts' CI on one machine) would share the cache and the build folder.
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

# --- the cross compiler -------------------------------------------------------------------
if ! command -v "$CXX" >/dev/null; then
  command -v apt-get >/dev/null || fail "$CXX is missing and there is no apt-get to install it"
  [[ $(id -u) == 0 ]] || fail "$CXX is missing; install g++-aarch64-linux-gnu (needs root)"
  echo "cross_compile_aarch64: installing g++-aarch64-linux-gnu"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++-aarch64-linux-gnu >/dev/null
fi

# --- aarch64 torch headers, cached ----------------------------------------------------------
# By default the version this host builds against: the headers' API (autograd's Node, say)
# changes between torch releases, and this check is for the architecture, not the version.
TORCH_VERSION=${CORR2D_CROSS_TORCH:-$("$CORR2D_CROSS_PYTHON" -c \
  'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || echo 2.9.1)}
PY_TAG=$("$CORR2D_CROSS_PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
TORCH_DIR=$CACHE/torch-$TORCH_VERSION-py$PY_TAG
if [[ ! -f $TORCH_DIR/.complete || ! -f $TORCH_DIR/torch/utils/cpp_extension.py ]]; then
  rm -rf "$TORCH_DIR"
  mkdir -p "$TORCH_DIR/wheel"
  echo "cross_compile_aarch64: downloading the aarch64 torch $TORCH_VERSION wheel (~100 MB)"
  "$CORR2D_CROSS_PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_TAG" \
    --platform manylinux_2_28_aarch64 "torch==$TORCH_VERSION" -d "$TORCH_DIR/wheel"
  wheel=$(ls "$TORCH_DIR"/wheel/torch-*.whl)
  unzip -q "$wheel" 'torch/include/*' torch/utils/cpp_extension.py -d "$TORCH_DIR"
  rm -f "$wheel"  # only the headers are needed: 60 MB instead of 160
  touch "$TORCH_DIR/.complete"
fi
TORCH_INCLUDE=$TORCH_DIR/torch/include

# --- Python headers -------------------------------------------------------------------------
PY_INCLUDE=$("$CORR2D_CROSS_PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[[ -f $PY_INCLUDE/Python.h ]] || fail "no Python.h in $PY_INCLUDE (install the Python headers)"
if grep -rlE 'HAVE_GCC_ASM_FOR_X(87|64)|__x86_64__|__i386__' "$PY_INCLUDE" \
    --include='*.h' --exclude=pyconfig.h --exclude=pymacconfig.h --exclude-dir=internal; then
  fail "the Python headers above read x86-specific macros: they cannot stand in for aarch64's"
fi

# --- the sources setup.py builds on aarch64 ---------------------------------------------------
mapfile -t SOURCES < <("$CORR2D_CROSS_PYTHON" - <<'EOF'
import ast
from pathlib import Path

# setup.py imports torch and calls setup() when run, so its one self-contained function is
# read out of it instead of importing it.
tree = ast.parse(Path("setup.py").read_text(), "setup.py")
(fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "cpp_sources"]
scope = {}
exec(compile(ast.Module(body=[fn], type_ignores=[]), "setup.py", "exec"), scope)
print("\n".join(scope["cpp_sources"]("aarch64")))
EOF
)
((${#SOURCES[@]} > 0)) || fail "setup.py's cpp_sources('aarch64') is empty"

# --- compile, then link ---------------------------------------------------------------------
OBJ=$CACHE/build
rm -rf "$OBJ"
mkdir -p "$OBJ"
# The C++ standard that torch's cpp_extension passes (C++17 up to torch 2.9, C++20 after).
STD=$(grep -o -m1 "common_cflags += \['-std=c++[0-9]*'" "$TORCH_DIR/torch/utils/cpp_extension.py" \
      | grep -o 'c++[0-9]*' || true)
[[ -n $STD ]] || fail "cannot read the C++ standard from torch $TORCH_VERSION's cpp_extension.py"
CXXFLAGS=(-std=$STD -O2 -fopenmp -fPIC -Wall -DNDEBUG
          -DTORCH_API_INCLUDE_EXTENSION_H -DTORCH_EXTENSION_NAME=_C
          -isystem "$TORCH_INCLUDE" -isystem "$TORCH_INCLUDE/torch/csrc/api/include"
          -isystem "$PY_INCLUDE")
export CXX OBJ
# One compile per source, JOBS at a time; each prints its own errors, every one runs to the end,
# and xargs exits non-zero if any failed.
if ! printf '%s\n' "${SOURCES[@]}" | xargs -P "$JOBS" -I{} bash -c '
    src=$1; shift
    "$CXX" "$@" -c "$src" -o "$OBJ/${src//\//_}.o" || { echo "FAILED: $src" >&2; exit 1; }
  ' _ {} "${CXXFLAGS[@]}"; then
  fail "compiling for aarch64 failed (errors above)"
fi
"$CXX" -shared -fopenmp -Wl,--unresolved-symbols=ignore-all -o "$OBJ/_C.so" "$OBJ"/*.o \
  || fail "linking the aarch64 objects failed (errors above)"
file_arch=$(LC_ALL=C readelf -h "$OBJ/_C.so" | sed -n 's/^ *Machine: *//p')
[[ $file_arch == AArch64 ]] || fail "$OBJ/_C.so is for '$file_arch', not AArch64"
# The NEON instantiation must be in it: dispatch lists it only under __aarch64__.
aarch64-linux-gnu-nm -C "$OBJ/_C.so" | grep -c 'corr2d_ext::cpu::isa::neon()' \
  >/dev/null || fail "$OBJ/_C.so has no corr2d_ext::cpu::isa::neon()"

echo "cross_compile_aarch64: OK: ${#SOURCES[@]} sources compiled and linked for aarch64" \
  "(torch $TORCH_VERSION headers, $("$CXX" -dumpfullversion)) in $((SECONDS - start)) s:" \
  "$OBJ/_C.so"
