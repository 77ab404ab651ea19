#!/usr/bin/env bash
# The GPU verification of corr2d_ext in one command, for a machine with one NVIDIA GPU and no
# network: the environment, an in-place build for the visible card, the test suite, every CUDA
# kernel path under compute-sanitizer (memcheck, racecheck), and the GPU benchmark.
#
#   bash bench/gpu_check.sh OUTDIR             # the real run: under 9 minutes
#   bash bench/gpu_check.sh --dry-run OUTDIR   # the same logic on a CPU-only machine: builds
#                                              # nothing, runs the smoke test and benchmark on
#                                              # the CPU with the existing in-place build (CI
#                                              # runs this: .ci/run)
#   PYTHON=.venv/bin/python bash bench/gpu_check.sh --dry-run /tmp/gpu-check
#
# It is written for one 10-minute call on a lent machine that may never come again, so nothing
# may cost the report: OUTDIR receives at most these 8 files (flat, no folders), each cut to
# 2 MiB (head and tail kept):
#   env.txt  build.log  tests.log  memcheck.log  racecheck.log  bench_gpu.md  bench_gpu.json
#   summary.md
# summary.md is rewritten after every step (and on SIGTERM/SIGINT), so a run cut off from
# outside still leaves the table of what had finished. A failed step does not stop the others
# (those that need the build are skipped when it failed); no pytest step stops at its first
# failure. Each step runs under `timeout` (SIGINT first, so pytest still prints its tally): its
# own cap, clamped to what is left of the whole budget. A step the budget leaves no time for is
# reported SKIPPED, not FAILED. Order: env, build, every CUDA-marked test (pytest -m cuda:
# tests/test_cuda.py and the CUDA tests of the autocast, convert and memory-format files), the
# tutorial, the smoke test, the benchmark, memcheck, racecheck, then the CPU rest of the suite.
# Exit status: 0 when no step failed, 1 otherwise, 2 on bad usage.
#
# Environment:
#   PYTHON                      interpreter (default python3)
#   GPU_CHECK_BUDGET            seconds for all steps (default 480: the run ends within 9 min)
#   MAX_JOBS                    parallel compile jobs (default 16)
#   CUDA_HOME                   the toolkit; unset (or without bin/nvcc), the first of
#                               /usr/local/cuda, /usr/local/cuda-* (newest first) and the real
#                               path of the `nvcc` on PATH that has bin/nvcc and include/
#   TORCH_CUDA_ARCH_LIST        honoured when set; unset, 9.0 (the lent GPU is an H200: sm_90
#                               machine code only; +PTX would add nothing there)
#   GPU_CHECK_SANITIZER_FILTER  compute-sanitizer kernel filter (default kns=corr2d_ext: only
#                               our kernels are instrumented, cuDNN's run at full speed);
#                               "none" instruments every kernel (much slower)
set -uo pipefail

usage() {
  sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

DRY_RUN=0
if [[ ${1:-} == --dry-run ]]; then
  DRY_RUN=1
  shift
fi
[[ $# -eq 1 && $1 != -* ]] || usage

mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
if [[ $PY == */* && $PY != /* ]]; then
  PY="$PWD/$PY"  # a relative path, made absolute before the cd below
fi
cd "$ROOT" || exit 2

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # import corr2d_ext from the in-place build
export MAX_JOBS=${MAX_JOBS:-16}
export PYTHONUNBUFFERED=1
BUDGET=${GPU_CHECK_BUDGET:-480}
DEADLINE=$((SECONDS + BUDGET))
MIN_STEP=15         # a step with less time than this left is skipped, not started
LOG_LIMIT=2097152   # bytes per file in OUT
FILTER=${GPU_CHECK_SANITIZER_FILTER:-kns=corr2d_ext}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# Cut off from outside: the table of what finished is saved before the script goes.
# `timeout` puts each step in a process group of its own, so a signal to ours does not reach it:
# the trap passes it on (timeout forwards it to the step), notes the step, and writes the table.
STEP_PID=
STEP_NAME=
on_signal() {
  say "interrupted: writing the summary"
  if [[ -n $STEP_PID ]]; then
    kill -TERM "$STEP_PID" 2>/dev/null
    STEP_NAMES+=("$STEP_NAME")
    STEP_STATUS+=("FAILED (interrupted from outside while running)")
    STEP_SECS+=("?")
    STEP_LOGS+=("-")
  fi
  write_summary interrupted
  exit 1
}
trap on_signal TERM INT

ENV_TXT=$OUT/env.txt
BUILD_LOG=$OUT/build.log
TESTS_LOG=$OUT/tests.log
MEMCHECK_LOG=$OUT/memcheck.log
RACECHECK_LOG=$OUT/racecheck.log
BENCH_MD=$OUT/bench_gpu.md
BENCH_JSON=$OUT/bench_gpu.json
SUMMARY=$OUT/summary.md
: >"$ENV_TXT"
: >"$BUILD_LOG"
: >"$TESTS_LOG"
rm -f "$BENCH_MD" "$BENCH_JSON"  # a stale benchmark must not pass for this run's
if ((DRY_RUN)); then
  : >"$MEMCHECK_LOG"
  : >"$RACECHECK_LOG"
fi

say() { printf '[gpu_check %s] %s\n' "$(date +%T)" "$*"; }

# ---------------------------------------------------------------------------------------------
# Steps and their record

STEP_NAMES=()
STEP_STATUS=()
STEP_SECS=()
STEP_LOGS=()

record() {  # record NAME STATUS SECONDS LOG
  STEP_NAMES+=("$1")
  STEP_STATUS+=("$2")
  STEP_SECS+=("$3")
  if [[ $4 == "$TMP"/* ]]; then
    STEP_LOGS+=("$(basename "$BENCH_MD")")  # the benchmark's own log: appended there on failure
  else
    STEP_LOGS+=("$(basename "$4")")
  fi
  say "$1: $2 (${3}s)"
  write_summary running
}

status_of() {  # status_of NAME: the recorded status of a step, or nothing
  local i
  for i in "${!STEP_NAMES[@]}"; do
    if [[ ${STEP_NAMES[$i]} == "$1" ]]; then
      printf '%s' "${STEP_STATUS[$i]}"
    fi
  done
}

cap_log() {  # cap_log FILE: keep the first 256 KiB and the end, LOG_LIMIT bytes in all
  local f=$1 size
  [[ -f $f ]] || return 0
  size=$(stat -c %s "$f")
  ((size > LOG_LIMIT)) || return 0
  {
    head -c 262144 "$f"
    printf '\n\n[... gpu_check cut %d bytes here ...]\n\n' "$((size - LOG_LIMIT + 256))"
    tail -c "$((LOG_LIMIT - 262144 - 256))" "$f"
  } >"$TMP/cut"
  cat "$TMP/cut" >"$f"
}

pytest_tally() {  # pytest_tally < OUTPUT: pytest's summary line, e.g. "193 passed, 1 skipped"
  grep -E '[0-9]+ (passed|failed|error|errors|skipped|deselected)' | tail -n 1 |
    sed -E 's/^=+ //; s/ =+$//; s/ in [0-9.]+s.*$//'
}

# run_step NAME CAP LOG CMD...: CMD under timeout (CAP, clamped to the budget left), output
# appended to LOG; records ok / FAILED / SKIPPED. Returns CMD's status.
run_step() {
  local name=$1 cap=$2 log=$3
  shift 3
  local left=$((DEADLINE - SECONDS))
  local limit=$((cap < left ? cap : left))
  if ((limit < MIN_STEP)); then
    echo "=== $name: SKIPPED: ${left}s left of the ${BUDGET}s budget" >>"$log"
    record "$name" "SKIPPED (time budget spent: ${left}s left)" 0 "$log"
    return 1
  fi
  local cmd="$*"
  cmd=${cmd//$'\n'/ }
  say "$name: running (timeout ${limit}s): ${cmd:0:200}"
  echo "=== $name ($(date +%T), timeout ${limit}s): $*" >>"$log"
  local t0=$SECONDS rc status from
  from=$(($(stat -c %s "$log") + 1))
  # SIGINT first: pytest then stops cleanly and prints what passed and failed so far.
  # In the background and waited for, so that the TERM/INT trap runs at once (bash defers a
  # trap until a foreground command ends).
  timeout -s INT -k 15 "$limit" "$@" >>"$log" 2>&1 &
  STEP_PID=$!
  STEP_NAME=$name
  wait "$STEP_PID"
  rc=$?
  STEP_PID=
  local secs=$((SECONDS - t0))
  case $rc in
    0) status=ok ;;
    124 | 130 | 137)
      if ((limit < cap)); then  # the budget's clamp cut it, not its own cap
        status="INCOMPLETE (cut at ${limit}s by the time budget)"
      else
        status="FAILED (timed out after ${limit}s)"
      fi ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  echo "=== $name: $status (${secs}s)" >>"$log"
  local tally=
  case $name in
    tests*) tally=$(tail -c "+$from" "$log" | pytest_tally) ;;
    memcheck | racecheck)  # e.g. "ERROR SUMMARY: 0 errors"
      tally=$(tail -c "+$from" "$log" | grep -E 'SUMMARY:' | tail -n 2 | sed -E 's/^=+ *//' |
        paste -sd ';' -) ;;
  esac
  [[ -n $tally ]] && status="$status: $tally"
  record "$name" "$status" "$secs" "$log"
  if ((rc != 0)); then
    echo "----- last lines of $(basename "$log") -----"
    tail -n 25 "$log"
    echo "-----"
  fi
  cap_log "$log"
  return "$rc"
}

skip() {  # skip NAME WHY LOG
  echo "=== $1: skipped: $2" >>"$3"
  record "$1" "$2" 0 "$3"
}

# overall: "passed" when every step is ok or skipped, "incomplete" when some step was cut by the
# budget but none failed, else "failed".
overall() {
  local i state=passed
  for i in "${!STEP_NAMES[@]}"; do
    case ${STEP_STATUS[$i]} in
      ok* | skipped* | SKIPPED*) ;;
      INCOMPLETE*) [[ $state == passed ]] && state=incomplete ;;
      *) state=failed ;;
    esac
  done
  echo "$state"
}

# write_summary running|interrupted|final: summary.md from the steps recorded so far. Called
# after every step, so that OUT always holds the table of what finished.
write_summary() {
  local i state=$1 failed=() skipped=() cut=() device total
  for i in "${!STEP_NAMES[@]}"; do
    case ${STEP_STATUS[$i]} in
      ok*) ;;
      skipped*) ;;  # by design: the dry run's steps that need a GPU
      SKIPPED*) skipped+=("${STEP_NAMES[$i]}") ;;
      INCOMPLETE*) cut+=("${STEP_NAMES[$i]}") ;;
      *) failed+=("${STEP_NAMES[$i]}") ;;
    esac
  done
  total=$((SECONDS - DEADLINE + BUDGET))
  device=$(grep -m1 -E '^GPU 0:|cuda:0:' "$ENV_TXT" 2>/dev/null | sed -E 's/^ +//; s/ \(UUID.*//')
  {
    echo "# gpu_check summary$( ((DRY_RUN)) && echo ' (DRY RUN on the CPU)')"
    echo
    case $state in
      running) echo "**Still running** (this table is rewritten after every step)."; echo ;;
      interrupted) echo "**Interrupted from outside** after the steps below."; echo ;;
    esac
    echo "- date: $(date -Is); device: ${device:-none (CPU)}"
    echo "- repo: git $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $PY"
    echo "- toolkit: ${CUDA_HOME_FOUND:-not found}; TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-<unset>}"
    echo "- total: ${total}s of the ${BUDGET}s budget"
    if [[ $state == final && -s $BENCH_JSON ]]; then
      timeout 30 "$PY" - "$BENCH_JSON" <<'EOF' 2>/dev/null
import json, sys
d = json.load(open(sys.argv[1]))
goals = d.get("goals", [])
missed = [f"{g['case']} {g['measure']} = {g['value']:.3g} (goal {g['goal']})"
          for g in goals if not g["met"]]
wrong = [c["key"] for c in d.get("cases", []) if not c["correct"]]
print(f"- benchmark ({d['device']}): {len(goals) - len(missed)} of {len(goals)} goals met"
      + (f"; missed: {'; '.join(missed)}" if missed else "")
      + (f"; **results differ from F.conv2d in {', '.join(wrong)}**" if wrong else
         "; every case matches F.conv2d"))
EOF
    fi
    echo
    echo "| step | status | seconds | log |"
    echo "|:--|:--|--:|:--|"
    for i in "${!STEP_NAMES[@]}"; do
      echo "| ${STEP_NAMES[$i]} | ${STEP_STATUS[$i]} | ${STEP_SECS[$i]} | ${STEP_LOGS[$i]} |"
    done
    echo
    if ((${#failed[@]})); then
      echo "**FAILED: ${failed[*]}**"
    elif ((${#cut[@]})); then
      echo "**No step failed; cut short by the time budget: ${cut[*]}**"
    elif ((${#skipped[@]})); then
      echo "**No step failed; not run (the time budget or a missing build): ${skipped[*]}**"
    elif [[ $state == final ]]; then
      echo "**All steps passed.**"
    fi
  } >"$SUMMARY"
}

# ---------------------------------------------------------------------------------------------
# a. The environment

# The toolkit: $CUDA_HOME when it holds bin/nvcc; else /usr/local/cuda, then /usr/local/cuda-*
# (newest version first); else the real path of the nvcc on PATH (which may be a wrapper script
# or a symlink into a toolkit), taken only when that folder also has include/cuda_runtime.h.
# Prints the folder; fails when none is found.
find_cuda_home() {
  local dir nvcc_real
  if [[ -n ${CUDA_HOME:-} && -x $CUDA_HOME/bin/nvcc ]]; then
    echo "$CUDA_HOME"
    return 0
  fi
  for dir in /usr/local/cuda $(ls -d /usr/local/cuda-* 2>/dev/null | sort -rV); do
    if [[ -x $dir/bin/nvcc ]]; then
      echo "$dir"
      return 0
    fi
  done
  if nvcc_real=$(readlink -f "$(command -v nvcc 2>/dev/null)" 2>/dev/null) && [[ -x $nvcc_real ]]; then
    dir=$(dirname "$(dirname "$nvcc_real")")
    if [[ -f $dir/include/cuda_runtime.h ]]; then
      echo "$dir"
      return 0
    fi
  fi
  return 1
}

if CUDA_HOME_FOUND=$(find_cuda_home); then
  export CUDA_HOME=$CUDA_HOME_FOUND
  export PATH="$CUDA_HOME/bin:$PATH"
fi
if ((!DRY_RUN)); then
  # The lent GPU is an H200 (sm_90): its machine code only. setup.py's default adds sm_80 and
  # PTX, which cost build time and run nowhere here.
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
fi

find_tool() {  # find_tool NAME: in the toolkit's bin folders, or on PATH
  local dir
  for dir in ${CUDA_HOME:+"$CUDA_HOME/bin" "$CUDA_HOME/compute-sanitizer"} /usr/local/cuda/bin \
    /usr/local/cuda/compute-sanitizer; do
    if [[ -x $dir/$1 ]]; then
      echo "$dir/$1"
      return 0
    fi
  done
  if command -v "$1" >/dev/null 2>&1; then
    command -v "$1"
    return 0
  fi
  return 1
}

env_report() {
  local failed=0 nvcc sanitizer ncu
  echo "## gpu_check $( ((DRY_RUN)) && echo '--dry-run ')$(date -Is)"
  echo "repo: $ROOT, git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" \
    "($(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) paths changed or untracked)"
  echo "host: $(uname -srm), $(nproc) CPUs, $(free -g 2>/dev/null | awk '/^Mem:/ {print $2 " GiB RAM"}')"
  echo "PYTHON=$PY  MAX_JOBS=$MAX_JOBS  TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-<unset>}" \
    " CUDA_HOME=${CUDA_HOME:-<unset>}  budget ${BUDGET}s"
  if ((DRY_RUN)); then
    echo; echo "## nvidia-smi: skipped (dry run)"
  else
    echo; echo "## nvidia-smi -L"
    timeout 30 nvidia-smi -L || failed=1
    echo; echo "## nvidia-smi --query-gpu"
    timeout 30 nvidia-smi --format=csv \
      --query-gpu=name,driver_version,memory.total,memory.used,pstate,clocks.max.sm,clocks.max.memory,power.limit,compute_mode
  fi
  echo; echo "## torch"
  timeout 60 "$PY" - "$DRY_RUN" <<'EOF' || failed=1
import importlib.metadata as md, platform, sys
import torch
print(f"Python {platform.python_version()} ({sys.executable})")
print(f"torch {torch.__version__}, built with CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}")
for pkg in ("setuptools", "ninja", "pybind11", "pytest", "hypothesis", "numpy"):
    try:
        print(f"  {pkg} {md.version(pkg)}")
    except md.PackageNotFoundError:
        print(f"  {pkg}: not installed")
print(f"torch.cuda.is_available() = {torch.cuda.is_available()}, "
      f"device_count = {torch.cuda.device_count()}")
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        print(f"  cuda:{i}: {p.name}, capability {p.major}.{p.minor}, "
              f"{p.multi_processor_count} SMs, {p.total_memory / 2**30:.1f} GiB")
    print(f"  torch arch list: {torch.cuda.get_arch_list()}")
elif sys.argv[1] != "1":
    sys.exit("torch sees no CUDA device")
EOF
  echo; echo "## nvcc"
  echo "CUDA_HOME: ${CUDA_HOME_FOUND:-not found (looked at \$CUDA_HOME, /usr/local/cuda*, the real path of nvcc on PATH)}"
  if nvcc=$(find_tool nvcc); then
    echo "$nvcc"
    timeout 30 "$nvcc" --version || failed=1
  else
    echo "nvcc: not found in \$CUDA_HOME/bin, /usr/local/cuda/bin or on PATH"
    ((DRY_RUN)) || failed=1
  fi
  echo; echo "## compute-sanitizer, ncu"
  if sanitizer=$(find_tool compute-sanitizer); then
    echo "$sanitizer"
    timeout 30 "$sanitizer" --version | tail -n 2
  else
    echo "compute-sanitizer: not found"
  fi
  if ncu=$(find_tool ncu); then
    echo "$ncu: $(timeout 30 "$ncu" --version | tail -n 1)"
  else
    echo "ncu: not found"
  fi
  return "$failed"
}

# ---------------------------------------------------------------------------------------------
# The steps

if ((DRY_RUN)); then
  say "DRY RUN on the CPU: results in $OUT, budget ${BUDGET}s"
else
  say "results in $OUT, budget ${BUDGET}s"
fi

# a. Environment: its commands have their own timeouts.
t0=$SECONDS
env_report >>"$ENV_TXT" 2>&1
rc=$?
record env "$( ((rc == 0)) && echo ok || echo "FAILED (no GPU or no toolkit: see env.txt)")" \
  "$((SECONDS - t0))" "$ENV_TXT"
cat "$ENV_TXT"
cap_log "$ENV_TXT"

# b. Build in place for the visible card, then import it.
if ((DRY_RUN)); then
  skip build "skipped (dry run: uses the existing in-place build)" "$BUILD_LOG"
  run_step import 60 "$BUILD_LOG" "$PY" -c \
    'import corr2d_ext; print("cuda_built =", corr2d_ext.cuda_built); print(corr2d_ext.build_info)'
else
  run_step build 300 "$BUILD_LOG" env CORR2D_CUDA=1 "$PY" setup.py build_ext --inplace
  if [[ $(status_of build) == ok ]]; then
    run_step import 60 "$BUILD_LOG" "$PY" -c '
import torch, corr2d_ext
print(corr2d_ext.build_info)
assert corr2d_ext.cuda_built, "corr2d_ext was built without its CUDA kernels"
assert torch.cuda.is_available(), "torch sees no CUDA device"
x, k = torch.ones(1, 1, 3, 3, device="cuda"), torch.ones(1, 1, 2, 2, device="cuda")
y = corr2d_ext.conv2d(x, k)
assert y.is_cuda and y.sum().item() == 16.0, y
print("a 3x3 correlation on", torch.cuda.get_device_name(), "gives", y.cpu().tolist())'
  else
    skip import "SKIPPED (the build failed)" "$BUILD_LOG"
  fi
fi
built=0
[[ $(status_of import) == ok ]] && built=1

# c. Tests: every CUDA-marked one first (conftest.py marks `cuda` each test that carries
# requires_cuda, and all of tests/test_cuda.py), wherever it lives; the CPU rest of the suite
# (already run by CI) goes last. The dry run runs the same selection: on the CPU every selected
# test skips, which still shows how many there are.
PYTEST=("$PY" -m pytest -q -rs -p no:cacheprovider)
if ((DRY_RUN)) || ((built)); then
  run_step tests-cuda 180 "$TESTS_LOG" "${PYTEST[@]}" -m cuda tests
fi
if ((DRY_RUN)); then
  :
elif ((built)); then
  # The tutorial end to end on the GPU (python -m corr2d_ext picks CUDA when it can).
  run_step tutorial 60 "$TESTS_LOG" "$PY" -m corr2d_ext
else
  skip tests-cuda "SKIPPED (no build)" "$TESTS_LOG"
fi

# d. Every kernel path, natively (the allocator poisoned with NaN), then under the sanitizer.
if ((DRY_RUN)); then
  run_step smoke 120 "$TESTS_LOG" "$PY" bench/gpu_smoke.py --device cpu --small
elif ((built)); then
  run_step smoke 90 "$TESTS_LOG" "$PY" bench/gpu_smoke.py
else
  skip smoke "SKIPPED (no build)" "$TESTS_LOG"
fi

# e. The benchmark (before the sanitizers, so that a slow sanitizer cannot cost the numbers).
bench_log=$TMP/bench.log
: >"$bench_log"
if ((DRY_RUN)); then
  run_step bench 180 "$bench_log" "$PY" bench/bench_gpu.py --device cpu --quick \
    --md "$BENCH_MD" --json "$BENCH_JSON"
elif ((built)); then
  run_step bench 180 "$bench_log" "$PY" bench/bench_gpu.py --md "$BENCH_MD" --json "$BENCH_JSON"
else
  skip bench "SKIPPED (no build)" "$bench_log"
fi
if [[ $(status_of bench) == FAILED* ]]; then
  # bench_gpu.md may be missing (a crash) or complete (a wrong result): keep the log with it.
  {
    echo
    echo "## bench_gpu.py output ($(status_of bench))"
    echo
    echo '```'
    tail -c 200000 "$bench_log"
    echo '```'
  } >>"$BENCH_MD"
fi

# d'. compute-sanitizer: memcheck over every case, racecheck over the small list.
if ((DRY_RUN)); then
  skip memcheck "skipped (dry run)" "$MEMCHECK_LOG"
  skip racecheck "skipped (dry run)" "$RACECHECK_LOG"
elif ! ((built)); then
  skip memcheck "SKIPPED (no build)" "$MEMCHECK_LOG"
  skip racecheck "SKIPPED (no build)" "$RACECHECK_LOG"
elif ! sanitizer=$(find_tool compute-sanitizer); then
  echo "compute-sanitizer not found on PATH or in /usr/local/cuda/bin" | tee "$MEMCHECK_LOG" >"$RACECHECK_LOG"
  record memcheck "FAILED (compute-sanitizer not found)" 0 "$MEMCHECK_LOG"
  record racecheck "FAILED (compute-sanitizer not found)" 0 "$RACECHECK_LOG"
else
  # API errors are left to the smoke test (our launch checks raise): torch and cuDNN probe the
  # driver with calls that fail on purpose, which the sanitizer would count as errors.
  sanitizer_args=(--error-exitcode 1 --print-limit 50 --report-api-errors no)
  [[ $FILTER != none ]] && sanitizer_args+=(--kernel-name "$FILTER")
  : >"$MEMCHECK_LOG"
  : >"$RACECHECK_LOG"
  # Caps sized to the budget: memcheck's full list took about a minute on smaller cards,
  # racecheck's small list about as long; neither may eat the CPU tests' time entirely.
  run_step memcheck 120 "$MEMCHECK_LOG" env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
    "$sanitizer" --tool memcheck "${sanitizer_args[@]}" \
    "$PY" bench/gpu_smoke.py
  run_step racecheck 90 "$RACECHECK_LOG" env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
    "$sanitizer" --tool racecheck "${sanitizer_args[@]}" \
    "$PY" bench/gpu_smoke.py --small
fi

# c'. The rest of the suite (CPU kernels, errors, autograd): whatever the budget leaves, with
# no -x, so one failure does not hide the others. The dry run only collects it (running it here
# would run this script's own CI test again).
if ((DRY_RUN)); then
  run_step tests-rest 120 "$TESTS_LOG" "${PYTEST[@]}" -q --collect-only -m "not cuda" tests
elif ((built)); then
  run_step tests-rest 600 "$TESTS_LOG" "${PYTEST[@]}" -m "not cuda" tests
else
  skip tests-rest "SKIPPED (no build)" "$TESTS_LOG"
fi

# ---------------------------------------------------------------------------------------------
# f. The summary, printed last

if [[ -s $BENCH_MD ]] && ((built)); then
  echo
  cat "$BENCH_MD"
fi
# The device tool brings back at most 8 files from OUT, none in a folder: check we kept to that.
extra=$(find "$OUT" -mindepth 1 \( -type d -o -type f \) | wc -l)
if ((extra > 8)) || [[ -n $(find "$OUT" -mindepth 1 -type d) ]]; then
  record outdir "FAILED ($extra entries in $OUT: more than 8 files, or a folder)" 0 "$SUMMARY"
fi
write_summary final
echo
cat "$SUMMARY"
[[ $(overall) == passed ]]
