#!/usr/bin/env bash
# Memory safety: builds a CPU-only copy of the extension with AddressSanitizer and
# UndefinedBehaviorSanitizer, away from the in-place build, and runs tests under it.
#
#   bash tools/sanitize.sh                 # `make sanitize`: the default subset below
#   bash tools/sanitize.sh tests/test_x.py # any pytest arguments instead of the subset
#
# The copy lives in $CORR2D_ASAN_DIR (default /tmp/corr2d-asan): the tracked and untracked,
# not-ignored files of this checkout, built there with `setup.py build_ext --inplace` and
# CORR2D_CUDA=0 CORR2D_SANITIZE=1 (see setup.py), so corr2d_ext/_C*.so of this tree and the
# editable install in .venv are left alone. Python itself is not instrumented, so libasan (and
# libubsan) are preloaded, and leak detection is off: the interpreter's own allocations at exit
# are not leaks of ours (tests/test_stress.py measures our leaks instead). Every sanitizer report
# ends the run (exit status 86), so a zero exit status means zero reports.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
DEST="${CORR2D_ASAN_DIR:-/tmp/corr2d-asan}"
case "$DEST" in "$ROOT"|"$ROOT"/*) echo "CORR2D_ASAN_DIR must be outside the checkout" >&2; exit 2;; esac

# Every kernel path, fast: the reference comparisons (both float32 paths, float64, half
# precision, every layout), the fast path against the portable one, autograd and double
# backward, the argument checks and hostile input (the gradient ops on inconsistent shapes
# included), the property tests, NaN/Inf propagation, determinism and the threaded calls.
DEFAULT_TESTS=(
  tests/test_against_conv2d.py tests/test_cpu_paths.py tests/test_autograd.py
  tests/test_errors.py tests/test_hostile_input.py tests/test_properties.py
  tests/test_numerics.py tests/test_stress.py tests/test_index_helpers.py
  tests/test_tutorial.py
  # Resident memory is no measure of our leaks under ASan, whose quarantine holds freed blocks.
  --deselect tests/test_stress.py::test_ten_thousand_calls_do_not_grow_resident_memory
)

start=$(date +%s)
mkdir -p "$DEST"
# A fresh copy of the sources; the build folder is kept, so a rerun recompiles only what changed.
find "$DEST" -mindepth 1 -maxdepth 1 ! -name build -exec rm -rf {} +
(cd "$ROOT" && git ls-files -z -co --exclude-standard \
  | xargs -0 sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done' _ \
  | tar --null -T - -cf -) | tar -xf - -C "$DEST"

echo "== building a sanitized copy in $DEST"
(cd "$DEST" && CORR2D_CUDA=0 CORR2D_SANITIZE=1 MAX_JOBS="${MAX_JOBS:-2}" \
  "$PY" setup.py -q build_ext --inplace >"$DEST/build.log" 2>&1) \
  || { tail -n 40 "$DEST/build.log"; echo "sanitized build failed" >&2; exit 1; }
built=$(date +%s)

LIBASAN="$(gcc -print-file-name=libasan.so)"
LIBUBSAN="$(gcc -print-file-name=libubsan.so)"
for lib in "$LIBASAN" "$LIBUBSAN"; do
  [ -e "$lib" ] || { echo "no $lib: install gcc's sanitizer runtimes (libasan, libubsan)" >&2; exit 1; }
done
# A report ends the process with this status, so that it reads apart from failed tests.
SANITIZER_EXIT=86
run() {
  (cd "$DEST" && env LD_PRELOAD="$LIBASAN $LIBUBSAN" PYTHONPATH="$DEST" \
    ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:exitcode=$SANITIZER_EXIT:detect_stack_use_after_return=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=$SANITIZER_EXIT" \
    "$PY" "$@")
}

# The copy, not the in-place build, must be what the tests import.
run -c "
import corr2d_ext, sys
assert corr2d_ext.__file__.startswith('$DEST/'), corr2d_ext.__file__
assert 'Sanitizer' in corr2d_ext.build_info, corr2d_ext.build_info
print('== testing', corr2d_ext.__file__, '(' + corr2d_ext.build_info + ')')
"
if [ $# -eq 0 ]; then set -- "${DEFAULT_TESTS[@]}"; fi
tests=()
for t in "$@"; do
  # Test files that this checkout does not have (yet) are left out of the default subset.
  case "$t" in tests/*.py) [ -e "$DEST/$t" ] || { echo "(no $t here)"; continue; };; esac
  tests+=("$t")
done
status=0
# -s: pytest's capture would otherwise swallow a report written as the process dies.
run -m pytest -q -s -p no:cacheprovider "${tests[@]}" || status=$?
end=$(date +%s)
case $status in
  0) verdict="passed, no sanitizer reports" ;;
  "$SANITIZER_EXIT") verdict="FAILED: a sanitizer report, above" ;;
  *) verdict="FAILED: tests failed, no sanitizer report" ;;
esac
echo "== sanitize: build $((built - start)) s, tests $((end - built)) s: $verdict"
exit $status
