"""What bench.py and overhead.py share: interleaved timing, memory peaks, the machine stamp.

Not a public module; the scripts import it from their own directory.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# Before torch is imported: keeps Kineto's "gpuGetDeviceCount failed" noise out of the output.
os.environ.setdefault("KINETO_LOG_LEVEL", "5")

import torch  # noqa: E402
from torch.utils.benchmark import Timer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    """Progress goes to stderr, so stdout carries only the tables."""
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Timing

@dataclass
class Timing:
    """Per-call seconds of one side: the median of each round, and their median."""

    rounds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)

    @property
    def spread(self) -> float:
        """(max - min) / median of the round medians: how much the machine moved under us."""
        if len(self.rounds) < 2:
            return 0.0
        return (max(self.rounds) - min(self.rounds)) / self.median


def interleaved(sides: dict[str, tuple[str, dict]], rounds: int, min_run_time: float,
                what: str, timer: Callable[[], float] | None = None) -> dict[str, Timing]:
    """Times each side's statement, alternating sides every round (a, b, a, b, ...).

    On a shared, noisy machine a slow spell then hits both sides instead of one. Each round is
    a ``blocked_autorange`` of at least ``min_run_time`` seconds (its first, untimed call is the
    warm-up); its median per-call time is the round's number. Timers run with the process's
    thread count, not ``Timer``'s default of one thread.

    Args:
        sides: label -> (statement, globals).
        what: for the progress line, e.g. ``"resnet fwd"``.
        timer: the clock, ``Timer``'s default (wall time) unless given; ``time.process_time``
            measures CPU time, which on one thread ignores time spent waiting for a core.
    """
    threads = torch.get_num_threads()
    clock = {} if timer is None else {"timer": timer}
    timers = {label: Timer(stmt=stmt, globals=g, num_threads=threads, label=what,
                           description=label, **clock)
              for label, (stmt, g) in sides.items()}
    out = {label: Timing() for label in sides}
    for r in range(rounds):
        for label, timer in timers.items():
            m = timer.blocked_autorange(min_run_time=min_run_time)
            out[label].rounds.append(m.median)
            log(f"  {what:<28} round {r + 1}/{rounds}  {label:<10} {fmt_time(m.median):>10}"
                f"  ({m.number_per_run * len(m.raw_times)} calls)")
    return out


def fmt_time(seconds: float | None) -> str:
    """A time with its own unit (µs, ms or s), three significant digits."""
    if seconds is None:
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale or unit == "µs":
            v = seconds / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    raise AssertionError


# --------------------------------------------------------------------------------------------
# Memory

@contextlib.contextmanager
def _quiet_fd2():
    """Silences file descriptor 2 (Kineto prints profiler start/stop lines from C++)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@dataclass
class Memory:
    peak: int   # most bytes live at once, counting only what the call allocated
    final: int  # bytes the call allocated and still holds at its end: its outputs

    @property
    def extra(self) -> int:
        """Transient memory: the peak beyond what the call returns."""
        return self.peak - self.final


def memory_of(fn: Callable[[], object]) -> Memory:
    """Peak and final bytes allocated by ``fn()``, through c10's CPU allocator.

    The profiler (``profile_memory=True``) records every allocation and free of the c10 CPU
    allocator, which backs every tensor's storage; a running sum of those events over the call
    gives the live bytes at each moment. Not seen: ``malloc``/``new``/``std::vector`` inside
    kernels (our per-task row buffers, a few KiB) and buffers MKL or oneDNN allocate by
    themselves. ``fn``'s result is held until the profiler stops, so its outputs count as live
    at the end.
    """
    from torch.profiler import ProfilerActivity, profile

    fn()  # warm-up: one-time allocations (oneDNN primitive caches and the like) don't count
    with _quiet_fd2():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            result = fn()
        events = prof.profiler.kineto_results.events()
    del result
    mem = sorted((e.start_ns(), e.nbytes()) for e in events
                 if e.name() == "[memory]" and str(e.device_type()).endswith("CPU"))
    live = peak = 0
    for _, nbytes in mem:
        live += nbytes
        peak = max(peak, live)
    return Memory(peak=peak, final=live)


def fmt_mib(nbytes: int | None) -> str:
    if nbytes is None:
        return "—"
    return f"{nbytes / 2**20:.2f}" if nbytes < 100 * 2**20 else f"{nbytes / 2**20:.0f}"


# --------------------------------------------------------------------------------------------
# The machine

def _cpuinfo() -> dict[str, object]:
    info: dict[str, object] = {"model": platform.processor() or "unknown", "mhz": [],
                               "flags": set(), "vendor": "", "family": "?", "cpu_model": "?"}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name":
            info["model"] = value
        elif key == "cpu MHz":
            info["mhz"].append(float(value))
        elif key == "flags":
            info["flags"] = set(value.split())
        elif key == "vendor_id":
            info["vendor"] = value
        elif key == "cpu family":
            info["family"] = value
        elif key == "model":
            info["cpu_model"] = value
    return info


def nominal_peak_gflops(threads: int) -> tuple[float, str]:
    """Single-precision FMA peak of ``threads`` cores from /proc/cpuinfo, and how it was found.

    Assumes two FMA pipes per core, each as wide as the widest FMA the core executes at full
    rate: 16 fp32 lanes with AVX-512 on Intel; 8 with AVX2 (and with AVX-512 on AMD Zen 4,
    which runs a 512-bit FMA as two 256-bit halves). Clock: the largest 'cpu MHz' listed. A VM
    usually lists its base clock, so a core that boosts can beat this "peak".
    """
    info = _cpuinfo()
    flags = info["flags"]
    if "avx512f" in flags and info["vendor"] == "GenuineIntel":
        lanes, isa = 16, "AVX-512"
    elif "fma" in flags:
        lanes, isa = 8, "AVX2/FMA" + (" (AVX-512 double-pumped)" if "avx512f" in flags else "")
    else:
        lanes, isa = 4, "SSE (no FMA)"
    ghz = max(info["mhz"], default=2000.0) / 1000
    per_core = 2 * lanes * 2 * ghz
    how = (f"{threads} threads x 2 FMA pipes x {lanes} fp32 lanes ({isa}) x 2 flops x "
           f"{ghz:.3f} GHz = {per_core:.1f} GFLOP/s per core")
    return per_core * threads, how


def sgemm_gflops(min_run_time: float) -> float:
    """What MKL's sgemm reaches here with this thread count: a practical ceiling for conv."""
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    m = Timer("torch.mm(a, b)", globals={"torch": torch, "a": a, "b": b},
              num_threads=torch.get_num_threads()).blocked_autorange(min_run_time=min_run_time)
    return 2 * n**3 / m.median / 1e9


def _git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                             capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "csrc", "corr2d_ext",
                                "setup.py"], cwd=REPO, text=True, capture_output=True).stdout
        return rev + (" + uncommitted changes in csrc/corr2d_ext" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


_START_LOAD = os.getloadavg()  # at import, before this process has done any work


def load_report() -> list[str]:
    """The load at the end, and a warning when other processes competed for the cores.

    With more runnable threads than cores, entering an OpenMP parallel region waits for the
    other threads to get a time slice (milliseconds). F.conv2d enters parallel regions even for
    a 6x8 image and several per call on larger ones, so a busy machine inflates torch's times
    far more than a little noise would; the ratios are then not to be trusted.
    """
    end = os.getloadavg()
    cores = os.cpu_count() or 1
    lines = [f"- load average at end: {' '.join(f'{x:.2f}' for x in end)}"]
    if _START_LOAD[0] >= 0.5 * cores or end[0] > cores + 0.5:
        lines.append(
            f"- **WARNING: the machine was busy** (1-min load {_START_LOAD[0]:.2f} at start, "
            f"{end[0]:.2f} at end, on {cores} CPUs). OpenMP parallel regions then wait for time "
            f"slices, which inflates whichever side enters more of them (F.conv2d, on small "
            f"problems, by milliseconds per call). Rerun on a quiet machine, or compare with "
            f"--threads 1.")
    return lines


def machine_stamp() -> list[str]:
    """Markdown bullet lines: what ran, where and when."""
    import corr2d_ext

    info = _cpuinfo()
    flags = info["flags"]
    isa = ", ".join(f for f in ("avx2", "fma", "avx512f") if f in flags) or "none listed"
    return [
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- CPU: {info['model']} ({info['vendor']} family {info['family']} model "
        f"{info['cpu_model']}), {os.cpu_count()} logical CPUs, SIMD flags: {isa}; "
        f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}",
        f"- threads: {torch.get_num_threads()} (torch.get_num_threads(), given to every Timer)",
        f"- load average at start: {' '.join(f'{x:.2f}' for x in _START_LOAD)} "
        f"(1, 5, 15 min)",
        f"- torch {torch.__version__}, Python {platform.python_version()}",
        f"- corr2d_ext {corr2d_ext.__version__}, cuda_built={corr2d_ext.cuda_built}, "
        f"git {_git_rev()}",
    ]


# --------------------------------------------------------------------------------------------
# Output

def md_table(headers: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A markdown table; ``align`` is one letter per column, 'l' or 'r' (default: l then r)."""
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w)
                                 for c, w, a in zip(cells, widths, align)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1))
                         for w, a in zip(widths, align)) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def save(text: str, *names: str) -> list[Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = RESULTS / name
        path.write_text(text)
        paths.append(path)
    return paths
