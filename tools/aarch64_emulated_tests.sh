#!/usr/bin/env bash
# Runs tests on aarch64 under emulation: the extension cross-compiled by
# tools/cross_compile_aarch64.sh, linked against an aarch64 torch wheel, imported by an arm64
# Debian Python under qemu-user. Not part of CI (slow: importing torch alone takes about a
# minute emulated); for checking the NEON instantiation by hand on an x86 machine.
#
#   tools/aarch64_emulated_tests.sh [PYTEST ARGS...]     (default: tests/test_cpu_paths.py)
#
# Needs root (apt-get install qemu-user-static debootstrap) and network once; everything is
# cached in $CORR2D_CROSS_DIR (default /tmp/corr2d-aarch64). No binfmt_misc and no chroot:
# qemu-aarch64-static -L points the loader and every file lookup at the arm64 root first.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${CORR2D_CROSS_DIR:-/tmp/corr2d-aarch64}
TORCH_VERSION=${CORR2D_CROSS_TORCH:-2.9.1}
ROOT=$CACHE/arm64-root
if [[ -z ${CORR2D_CROSS_PYTHON:-} ]]; then
  CORR2D_CROSS_PYTHON=python3
  if [[ -x .venv/bin/python ]]; then CORR2D_CROSS_PYTHON=.venv/bin/python; fi
fi
export CORR2D_CROSS_DIR=$CACHE CORR2D_CROSS_TORCH=$TORCH_VERSION CORR2D_CROSS_PYTHON

fail() { echo "aarch64_emulated_tests: $*" >&2; exit 1; }

# Debian bookworm's python3 is 3.11: the objects must be compiled against 3.11's headers.
[[ $("$CORR2D_CROSS_PYTHON" -c 'import sys; print(sys.version_info[:2] == (3, 11))') == True ]] \
  || fail "$CORR2D_CROSS_PYTHON must be Python 3.11, as the arm64 root's (bookworm) is"

bash tools/cross_compile_aarch64.sh  # the objects, in $CACHE/build

for tool in qemu-aarch64-static debootstrap; do
  if ! command -v "$tool" >/dev/null; then
    [[ $(id -u) == 0 ]] || fail "$tool is missing; apt-get install qemu-user-static debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static debootstrap >/dev/null
  fi
done

if [[ ! -f $ROOT/.complete ]]; then
  rm -rf "$ROOT"
  debootstrap --foreign --arch=arm64 --variant=minbase --include=python3,libgomp1 \
    bookworm "$ROOT" http://deb.debian.org/debian
  # The second stage would run arm64 maintainer scripts in a chroot; unpacking every package
  # it downloaded is all Python needs.
  for deb in "$ROOT"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done
  # torch's own requirements are read with this host's markers (x86-64: the CUDA wheels), so
  # it is installed alone and its pure-Python requirements are named here.
  "$CORR2D_CROSS_PYTHON" -m pip install -q --target "$ROOT/opt/site" --no-deps \
    --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_aarch64 \
    --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
    "torch==$TORCH_VERSION" filelock typing-extensions sympy mpmath networkx jinja2 markupsafe \
    fsspec numpy pytest pluggy iniconfig packaging pygments hypothesis attrs sortedcontainers
  touch "$ROOT/.complete"
fi

# A copy of the package and its tests, with the aarch64 extension linked as cpp_extension
# would link it (torch's libraries by name; Python's symbols come from the interpreter).
RUN=$CACHE/run
rm -rf "$RUN"
mkdir -p "$RUN"
cp -r corr2d_ext tests pyproject.toml "$RUN"/
rm -f "$RUN"/corr2d_ext/_C*.so
aarch64-linux-gnu-g++ -shared -fopenmp "$CACHE"/build/*.o -L"$ROOT/opt/site/torch/lib" \
  -lc10 -ltorch -ltorch_cpu -ltorch_python -o "$RUN/corr2d_ext/_C.cpython-311-aarch64-linux-gnu.so"
printf '"""Written by tools/aarch64_emulated_tests.sh."""\n\nSUMMARY = %s\nVERSION = %s\n' \
  "'CPU kernels only (aarch64 cross build, torch $TORCH_VERSION, under qemu)'" \
  "'$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml)'" > "$RUN/corr2d_ext/_build_info.py"

cd "$RUN"
(($# > 0)) || set -- tests/test_cpu_paths.py
PYTHONPATH=/opt/site exec qemu-aarch64-static -L "$ROOT" "$ROOT/usr/bin/python3" \
  -m pytest -q -p no:cacheprovider "$@"
