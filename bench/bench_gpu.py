"""GPU benchmark: corr2d_ext.conv2d against F.conv2d (cuDNN, or whatever kernel torch picks),
with TF32 off and on, forward and forward + backward, timed with CUDA events.

    python bench/bench_gpu.py                              # every case (well under a minute)
    python bench/bench_gpu.py --quick                      # fewer repetitions
    python bench/bench_gpu.py --cases tutorial,image1024
    python bench/bench_gpu.py --md out.md --json out.json  # where to save (default bench/results/)
    python bench/bench_gpu.py --device cpu --quick         # the harness itself, on the CPU

Time per call: each side is warmed up (cuDNN autotunes on its first calls:
``torch.backends.cudnn.benchmark = True``), then timed as a loop of k back-to-back calls between
two CUDA events, with k chosen so one sample takes about 2 ms; the number is the median over many
samples, taken interleaved (ours, F.conv2d fp32, F.conv2d tf32, ours, ...). A loop of calls
measures what a training loop sees: for small problems that is the host-side cost per call
(Python, dispatch, launch), not the kernels. The second table times the same calls replayed
from a CUDA graph, which removes the host cost and leaves GPU time.

Forward + backward is ``torch.autograd.grad(f(x, w, b), (x, w, b), gy)`` with leaf inputs and one
precomputed gy. Before timing, ours is compared with F.conv2d in true float32 (TF32 off):
forward and all three gradients; a mismatch marks the row and makes the exit status 1.

The 1024x1024 case also reports bandwidth: (input bytes + output bytes) / time, against a
device-to-device copy of 512 MiB ((read + written bytes) / time). Its 8 MiB fit in the 50 MiB L2
of an H100, so a fraction above 100% is possible. The depthwise case is also timed against
torch's own depthwise kernel, ``aten::_conv_depthwise2d``, called directly (on a GPU, F.conv2d
itself uses it for float32 depthwise layers).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from _harness import RESULTS, _git_rev, log, md_table

import torch  # noqa: E402  (after _harness, which sets Kineto's log level)
import torch.nn.functional as F  # noqa: E402

import corr2d_ext  # noqa: E402
from bench import Case  # noqa: E402  (the CPU benchmark's problem description)

# The problems of bench.py, except that the 1024x1024 image is padded here ('same' output).
CASES = [
    Case("tutorial", "tutorial 6x8 edge", 1, 1, 1, 6, 8, 1, 2),
    Case("image1024", "1024x1024 image", 1, 1, 1, 1024, 1024, 3, 3, padding=1),
    Case("lenet1", "LeNet conv1", 256, 1, 6, 28, 28, 5, 5, padding=2),
    Case("lenet2", "LeNet conv2", 256, 6, 16, 14, 14, 5, 5),
    Case("resnet", "ResNet 3x3", 8, 64, 64, 56, 56, 3, 3, padding=1),
    Case("depthwise", "depthwise 3x3", 8, 256, 256, 28, 28, 3, 3, padding=1, groups=256),
]

# Targets for time(ours) / time(reference), reference F.conv2d with TF32 off; for depthwise the
# reference is aten::_conv_depthwise2d. image1024 also: >= 50% of copy bandwidth.
GOALS = {"tutorial": 0.7, "image1024": 1.0, "lenet1": 1.5, "lenet2": 1.5, "resnet": 1.5,
         "depthwise": 1.0}
BANDWIDTH_GOAL = 0.5


# --------------------------------------------------------------------------------------------
# Clocks

class CudaClock:
    """Seconds per call of a loop of calls, between two CUDA events on the current stream."""

    def __init__(self):
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def sync(self) -> None:
        torch.cuda.synchronize()

    def per_call(self, fn: Callable[[], object], calls: int) -> float:
        self.start.record()
        for _ in range(calls):
            fn()
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end) * 1e-3 / calls


class CpuClock:
    """The same with time.perf_counter, for the CPU dry run."""

    def sync(self) -> None:
        pass

    def per_call(self, fn: Callable[[], object], calls: int) -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - t0) / calls


@dataclass
class Stat:
    """Per-call seconds of one side: one number per sample, each a loop of `calls` calls."""

    samples: list[float]
    calls: int

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Interquartile range / median: how much the samples moved."""
        if len(self.samples) < 4:
            return 0.0
        q = statistics.quantiles(self.samples, n=4)
        return (q[2] - q[0]) / self.median

    def as_json(self) -> dict:
        return {"median_s": self.median, "min_s": min(self.samples), "spread_iqr": self.spread,
                "calls_per_sample": self.calls, "samples_s": self.samples}


@dataclass
class Settings:
    reps: int         # samples per side
    target_s: float   # the length of one sample
    warmup: int       # untimed calls before the first sample


def measure(clock, sides: dict[str, Callable[[], object]], cfg: Settings,
            what: str) -> dict[str, Stat]:
    """Times each side, interleaving the sides sample by sample (a, b, c, a, b, c, ...)."""
    calls = {}
    for label, fn in sides.items():
        for _ in range(cfg.warmup):
            fn()
        clock.sync()
        once = min(clock.per_call(fn, 1) for _ in range(3))
        calls[label] = max(1, min(1000, math.ceil(cfg.target_s / max(once, 1e-7))))
    samples: dict[str, list[float]] = {label: [] for label in sides}
    for _ in range(cfg.reps):
        for label, fn in sides.items():
            samples[label].append(clock.per_call(fn, calls[label]))
    out = {label: Stat(samples[label], calls[label]) for label in sides}
    log(f"  {what:<22} " + "  ".join(f"{label} {out[label].median * 1e3:.4g} ms"
                                       for label in sides))
    return out


def graph_measure(fn: Callable[[], object], calls: int, reps: int) -> Stat:
    """GPU seconds per call: `calls` calls captured in one CUDA graph, replayed `reps` times."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the default stream, as torch.cuda.graph asks
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    clock = CudaClock()
    samples = [clock.per_call(graph.replay, 1) / calls for _ in range(reps)]
    del graph
    return Stat(samples, calls)


def copy_bandwidth(clock, device: str, nbytes: int, cfg: Settings) -> float:
    """Bytes per second of a device-to-device copy, counting bytes read plus bytes written."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    stat = measure(clock, {"copy": lambda: dst.copy_(src)},
                   Settings(reps=max(5, cfg.reps // 2), target_s=cfg.target_s * 5, warmup=2),
                   f"copy {nbytes >> 20} MiB")
    return 2 * nbytes / stat["copy"].median


# --------------------------------------------------------------------------------------------
# One case

def mismatch(what: str, ours: torch.Tensor, ref: torch.Tensor) -> str | None:
    """bench.py's float32 rule: |ours - ref| <= 1e-4 |ref| + 1e-4 max|ref|."""
    if ours.shape != ref.shape:
        return f"{what}: shape {list(ours.shape)}, expected {list(ref.shape)}"
    scale = ref.abs().max().item() if ref.numel() else 0.0
    atol = 1e-4 * max(scale, 1e-6)
    if torch.allclose(ours, ref, rtol=1e-4, atol=atol):
        return None
    err = (ours - ref).abs().max().item()
    return f"{what}: max abs error {err:.3g} (max abs reference {scale:.3g})"  # no '|': a table cell


def check(ours, ref, x, w, b, gy) -> list[str]:
    """Forward and the three gradients of ours against ref, which runs with TF32 off."""
    results = []
    for f in (ours, ref):
        leaves = [t.clone().requires_grad_() for t in (x, w, b)]
        y = f(*leaves)
        results.append([y.detach(), *torch.autograd.grad(y, leaves, gy)])
    names = ("forward", "grad input", "grad weight", "grad bias")
    return [m for n, a, e in zip(names, *results) if (m := mismatch(n, a, e))]


def tf32(fn: Callable, on: bool) -> Callable:
    """fn with cuDNN's TF32 switch set on every call (every side pays the same few ns)."""
    def call(*args):
        torch.backends.cudnn.allow_tf32 = on
        return fn(*args)
    return call


@dataclass
class Result:
    case: Case
    problems: list[str] = field(default_factory=list)
    fwd: dict[str, Stat] = field(default_factory=dict)
    fb: dict[str, Stat] = field(default_factory=dict)
    graph_fwd: dict[str, Stat] = field(default_factory=dict)
    graph_fb: dict[str, Stat] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    bandwidth: dict[str, float] = field(default_factory=dict)  # fraction of copy, by timing


def run_case(case: Case, device: str, clock, cfg: Settings, graphs: bool,
             copy_bw: float) -> Result:
    res = Result(case)
    kw = dict(padding=case.padding, groups=case.groups)
    ours = tf32(lambda x, w, b: corr2d_ext.conv2d(x, w, b, **kw), False)
    ref32 = tf32(lambda x, w, b: F.conv2d(x, w, b, **kw), False)
    sides = {"ours": ours, "F fp32": ref32}
    if device == "cuda":
        sides["F tf32"] = tf32(lambda x, w, b: F.conv2d(x, w, b, **kw), True)
        if case.groups == case.cin == case.cout:
            ks, pad = [case.kh, case.kw], [case.padding] * 2
            sides["native dw"] = tf32(lambda x, w, b: torch.ops.aten._conv_depthwise2d(
                x, w, ks, b, [1, 1], pad, [1, 1]), False)
    x, w, b = (t.to(device) for t in case.tensors())

    log(f"[{case.key}] {case.problem}: checking against F.conv2d (TF32 off)")
    gy = torch.randn(ref32(x, w, b).shape, generator=torch.Generator().manual_seed(1)).to(device)
    res.problems = check(ours, ref32, x, w, b, gy)
    for p in res.problems:
        log(f"  WRONG: {p}")
    if "native dw" in sides:
        try:
            bad = check(sides["native dw"], ref32, x, w, b, gy)
        except Exception as e:  # noqa: BLE001  (then it is left out, with the reason)
            bad = [f"raised {type(e).__name__}: {str(e).splitlines()[0][:120]}"]
            del sides["native dw"]
        if bad:
            res.notes.append("native depthwise vs F.conv2d: " + "; ".join(bad))

    res.fwd = measure(clock, {k: (lambda f=f: f(x, w, b)) for k, f in sides.items()}, cfg,
                      f"{case.key} fwd")
    xg, wg, bg = (t.clone().requires_grad_() for t in (x, w, b))

    def fwd_bwd(f):
        return lambda: torch.autograd.grad(f(xg, wg, bg), (xg, wg, bg), gy)

    res.fb = measure(clock, {k: fwd_bwd(f) for k, f in sides.items()}, cfg, f"{case.key} fwd+bwd")

    if graphs and device == "cuda":
        graph_sides = {k: f for k, f in sides.items() if k != "F tf32"}
        for name, table, make in (("fwd", res.graph_fwd, lambda f: (lambda: f(x, w, b))),
                                  ("fwd+bwd", res.graph_fb, fwd_bwd)):
            for k, f in graph_sides.items():
                calls = max(1, min(200, res.fwd[k].calls if name == "fwd" else res.fb[k].calls))
                try:
                    table[k] = graph_measure(make(f), calls, cfg.reps)
                except Exception as e:  # noqa: BLE001  (a capture failure is a finding, not a crash)
                    res.notes.append(f"graph {name} {k}: capture failed: "
                                     f"{type(e).__name__}: {str(e).splitlines()[0][:120]}")
                    torch.cuda.synchronize()
            if table:
                log(f"  {case.key + ' graph ' + name:<22} " + "  ".join(
                    f"{k} {s.median * 1e3:.4g} ms" for k, s in table.items()))

    if case.key == "image1024":
        nbytes = (x.numel() + gy.numel()) * x.element_size()  # input read, output written
        res.bandwidth["eager"] = nbytes / res.fwd["ours"].median / copy_bw
        if "ours" in res.graph_fwd:
            res.bandwidth["graph"] = nbytes / res.graph_fwd["ours"].median / copy_bw
    return res


# --------------------------------------------------------------------------------------------
# Reporting

def ms(stat: Stat | None) -> str:
    return "—" if stat is None else f"{stat.median * 1e3:.3g}"


def ratio(a: Stat | None, b: Stat | None) -> float | None:
    return None if a is None or b is None else a.median / b.median


def fmt_ratio(r: float | None, goal: float | None = None) -> str:
    if r is None:
        return "—"
    if goal is None:
        return f"{r:.3g}"
    return f"{r:.3g} ({'met' if r <= goal else 'MISSED'} ≤{goal:g})"


def row_notes(r: Result) -> str:
    notes = []
    if r.problems:
        notes.append("**WRONG vs F.conv2d: " + "; ".join(r.problems) + "**")
    if "native dw" in r.fwd:
        goal = GOALS.get(r.case.key)
        notes.append(f"native depthwise fwd {ms(r.fwd['native dw'])} ms, ours/native "
                     f"{fmt_ratio(ratio(r.fwd.get('ours'), r.fwd['native dw']), goal)}; "
                     f"fwd+bwd {ms(r.fb.get('native dw'))} ms, ours/native "
                     f"{fmt_ratio(ratio(r.fb.get('ours'), r.fb.get('native dw')))}")
    if r.bandwidth:
        notes.append("bandwidth " + ", ".join(
            f"{how} {100 * frac:.0f}%" for how, frac in r.bandwidth.items())
            + f" of copy ({'met' if max(r.bandwidth.values()) >= BANDWIDTH_GOAL else 'MISSED'}"
            f" ≥{100 * BANDWIDTH_GOAL:.0f}%)")
    noisy = [f"{k} {100 * s.spread:.0f}%" for t in (r.fwd, r.fb) for k, s in t.items()
             if s.spread > 0.1]
    if noisy:
        notes.append("noisy (IQR/median): " + ", ".join(noisy))
    notes += r.notes
    return "; ".join(notes)


def main_table(results: list[Result], device: str) -> str:
    rows = []
    for r in results:
        goal = None if r.case.key == "depthwise" else GOALS.get(r.case.key)
        rows.append([
            f"{r.case.title} ({r.case.problem})" + (" ✗" if r.problems else ""),
            ms(r.fwd.get("ours")), ms(r.fwd.get("F fp32")),
            fmt_ratio(ratio(r.fwd.get("ours"), r.fwd.get("F fp32")), goal),
            ms(r.fwd.get("F tf32")), fmt_ratio(ratio(r.fwd.get("ours"), r.fwd.get("F tf32"))),
            ms(r.fb.get("ours")), ms(r.fb.get("F fp32")),
            fmt_ratio(ratio(r.fb.get("ours"), r.fb.get("F fp32")), goal),
            row_notes(r),
        ])
    ref = "F.conv2d" if device == "cpu" else "cuDNN"
    return md_table(["case", "fwd ours ms", f"{ref} fp32 ms", "ratio", f"{ref} tf32 ms", "ratio",
                     "fwd+bwd ours ms", f"{ref} fp32 ms", "ratio", "notes"], rows,
                    align="lrrrrrrrrl")


def graph_table(results: list[Result]) -> str:
    rows = []
    for r in results:
        if not r.graph_fwd and not r.graph_fb:
            continue
        extra = ""
        if "native dw" in r.graph_fwd:
            extra = (f"native depthwise fwd {ms(r.graph_fwd['native dw'])} ms, ours/native "
                     f"{fmt_ratio(ratio(r.graph_fwd.get('ours'), r.graph_fwd['native dw']))}")
        rows.append([r.case.title, ms(r.graph_fwd.get("ours")), ms(r.graph_fwd.get("F fp32")),
                     fmt_ratio(ratio(r.graph_fwd.get("ours"), r.graph_fwd.get("F fp32"))),
                     ms(r.graph_fb.get("ours")), ms(r.graph_fb.get("F fp32")),
                     fmt_ratio(ratio(r.graph_fb.get("ours"), r.graph_fb.get("F fp32"))), extra])
    return md_table(["case", "fwd ours ms", "cuDNN fp32 ms", "ratio", "fwd+bwd ours ms",
                     "cuDNN fp32 ms", "ratio", "notes"], rows, align="lrrrrrrl")


def goal_rows(results: list[Result]) -> list[dict]:
    out = []
    for r in results:
        key, goal = r.case.key, GOALS.get(r.case.key)
        if goal is None:
            continue
        ref = "native dw" if key == "depthwise" else "F fp32"
        for phase, table in (("fwd", r.fwd), ("fwd+bwd", r.fb)):
            value = ratio(table.get("ours"), table.get(ref))
            if value is not None:
                out.append({"case": key, "measure": f"{phase} ours / "
                            f"{'aten::_conv_depthwise2d' if ref == 'native dw' else 'F.conv2d fp32'}"
                            f" (eager)", "value": value, "goal": f"<= {goal:g}",
                            "met": value <= goal})
        for how, frac in r.bandwidth.items():
            out.append({"case": key, "measure": f"bandwidth / copy bandwidth ({how})",
                        "value": frac, "goal": f">= {BANDWIDTH_GOAL:g}",
                        "met": frac >= BANDWIDTH_GOAL})
    return out


def stamp(device: str, copy_bw: float, cfg: Settings, quick: bool) -> list[str]:
    lines = [f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}"]
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        driver = "unknown"
        try:
            driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                                     "--format=csv,noheader"], capture_output=True, text=True,
                                    timeout=20).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            pass
        lines += [f"- device: {p.name}, compute capability {p.major}.{p.minor}, "
                  f"{p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB, "
                  f"driver {driver}",
                  f"- torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
                  f"{torch.backends.cudnn.version()}, cudnn.benchmark=True"]
    else:
        lines += [f"- device: CPU ({platform.processor() or platform.machine()}), "
                  f"{torch.get_num_threads()} threads; **CPU dry run of the GPU harness: "
                  f"perf_counter timing, no TF32, no CUDA graphs**",
                  f"- torch {torch.__version__}"]
    lines += [f"- Python {platform.python_version()}; corr2d_ext {corr2d_ext.__version__}: "
              f"{corr2d_ext.build_info}; git {_git_rev()}",
              f"- copy bandwidth (read + write): {copy_bw / 1e9:.0f} GB/s",
              f"- {cfg.reps} samples per side of about {cfg.target_s * 1e3:g} ms each, "
              f"interleaved; median" + ("  **QUICK RUN: numbers are rough**" if quick else "")]
    return lines


def main(argv: list[str] | None = None) -> int:
    keys = [c.key for c in CASES]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--quick", action="store_true", help="fewer, shorter samples")
    p.add_argument("--cases", default=",".join(keys), help=f"subset of: {', '.join(keys)}")
    p.add_argument("--reps", type=int, help="samples per side (default 40; quick 8; cpu quick 3)")
    p.add_argument("--no-graphs", action="store_true", help="skip the CUDA graph timings")
    p.add_argument("--md", type=Path, help="markdown output (default bench/results/gpu-*.md)")
    p.add_argument("--json", type=Path, help="raw numbers (default bench/results/gpu-*.json)")
    args = p.parse_args(argv)

    chosen = [k.strip() for k in args.cases.split(",") if k.strip()]
    if not chosen or any(k not in keys for k in chosen):
        p.error(f"unknown case(s) in {chosen}; choose from {keys}")
    device = args.device
    if device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("bench_gpu: no CUDA device visible to torch (use --device cpu for a dry run)")
        if not corr2d_ext.cuda_built:
            sys.exit(f"bench_gpu: corr2d_ext has no CUDA kernels: {corr2d_ext.build_info}")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False
        clock = CudaClock()
    else:
        clock = CpuClock()
    torch.backends.cudnn.allow_tf32 = False
    reps = args.reps or (40 if not args.quick else 8 if device == "cuda" else 3)
    cfg = Settings(reps=reps, target_s=0.002 if not args.quick else 0.001,
                   warmup=5 if not args.quick else 2)

    copy_bw = copy_bandwidth(clock, device, (512 if device == "cuda" else 64) << 20, cfg)
    results = []
    for case in CASES:
        if case.key in chosen:
            try:
                results.append(run_case(case, device, clock, cfg, not args.no_graphs, copy_bw))
            except Exception as e:  # noqa: BLE001  (ours raised: a row that says so, and go on)
                log(f"  FAILED: {type(e).__name__}: {e}")
                results.append(Result(case, problems=[
                    f"raised {type(e).__name__}: {str(e).strip().splitlines()[0][:200]}"]))

    goals = goal_rows(results)
    wrong = [r.case.key for r in results if r.problems]
    title = "corr2d_ext vs F.conv2d on the GPU" if device == "cuda" else \
        "corr2d_ext vs F.conv2d: GPU harness, dry run on the CPU"
    parts = [f"# {title}{' (quick run)' if args.quick else ''}", "",
             *stamp(device, copy_bw, cfg, args.quick), "",
             "## Time per call (eager: a loop of back-to-back calls, timed with "
             + ("CUDA events)" if device == "cuda" else "time.perf_counter)"), "",
             "ms per call, median; ratio = ours / reference, below 1 ours is faster. Goals "
             "(vs TF32 off) in brackets; depthwise's goal is against aten::_conv_depthwise2d "
             "(notes). fwd+bwd = autograd.grad of input, weight and bias."
             + (" cuDNN = F.conv2d, which runs cuDNN except for float32 depthwise layers, where "
                "torch uses its own depthwise kernel." if device == "cuda" else ""), "",
             main_table(results, device), ""]
    if any(r.graph_fwd or r.graph_fb for r in results):
        parts += ["## GPU time per call (CUDA graph replay: host overhead removed)", "",
                  graph_table(results), ""]
    parts += ["## Goals", "",
              md_table(["case", "measure", "value", "goal", "met"],
                       [[g["case"], g["measure"], f"{g['value']:.3g}", g["goal"],
                         "yes" if g["met"] else "**no**"] for g in goals], align="lllll")
              if goals else "(none measured)", ""]
    if wrong:
        parts += [f"**Correctness: ours differs from F.conv2d in {', '.join(wrong)}; "
                  "see the notes column.**", ""]
    text = "\n".join(parts)
    print(text)

    prefix = "gpu" + ("-cpu" if device == "cpu" else "") + ("-quick" if args.quick else "")
    md_path = args.md or RESULTS / f"{prefix}-latest.md"
    json_path = args.json or RESULTS / f"{prefix}-latest.json"
    md_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(text)
    json_path.write_text(json.dumps({
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device == "cuda" else None,
        "build_info": corr2d_ext.build_info, "git": _git_rev(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "quick": args.quick, "copy_bandwidth_Bps": copy_bw,
        "cases": [{"key": r.case.key, "problem": r.case.problem, "flops_fwd": r.case.flops,
                   "correct": not r.problems, "problems": r.problems, "notes": r.notes,
                   "bandwidth_fraction": r.bandwidth,
                   "eager_fwd": {k: s.as_json() for k, s in r.fwd.items()},
                   "eager_fwd_bwd": {k: s.as_json() for k, s in r.fb.items()},
                   "graph_fwd": {k: s.as_json() for k, s in r.graph_fwd.items()},
                   "graph_fwd_bwd": {k: s.as_json() for k, s in r.graph_fb.items()}}
                  for r in results],
        "goals": goals,
    }, indent=1))
    log(f"saved {md_path} and {json_path}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
