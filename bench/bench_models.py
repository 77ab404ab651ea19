"""CPU benchmark on real networks: every conv layer of ResNet-18 and MobileNetV2, and the models.

    python bench/bench_models.py                   # both models, everything (33 min on 2 loaded cores)
    python bench/bench_models.py --quick           # smoke test: a few layers, 1 short round
    python bench/bench_models.py --model resnet18 --ops wgrad --whole none --no-memory
    python bench/bench_models.py --big-wgrad       # adds the 2048->2048 3x3 weight gradient

Three parts, each against ATen on the same machine, in one process (memory in a child):

1. layers: every distinct convolution geometry of torchvision's model at batch N (default 8,
   224x224 input), found by forward hooks on the real model, and for each the three ops side by
   side: forward ``corr2d_ext.conv2d`` vs ``F.conv2d``, input gradient
   ``torch.ops.corr2d_ext.corr2d_input_grad`` vs ``torch.nn.grad.conv2d_input``, weight gradient
   ``torch.ops.corr2d_ext.corr2d_weight_grad`` vs ``torch.nn.grad.conv2d_weight``; contiguous and
   channels_last; totals weighted by how often each geometry occurs in the model.
2. whole models: ``corr2d_ext.convert(model)`` vs ``model``, inference and one training step,
   contiguous and channels_last.
3. scratch memory of each op: peak RSS growth during one call beyond the output it returns.

Prints markdown on stdout (progress on stderr) and saves it, a JSON of every number and a PNG of
the per-layer ratios under ``bench/results/``. See bench/README.md for how to read them.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from _harness import (REPO, RESULTS, Timing, fmt_time, interleaved, load_report, log,
                      machine_stamp, md_table)

import torch  # noqa: E402  (after _harness, which sets Kineto's log level)
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

# The tree this script lives in, when it is built in place: `python bench/bench_models.py` puts
# bench/ first on sys.path, not the working directory, so an installed corr2d_ext (another
# checkout's editable install) would otherwise be the one measured.
if any((REPO / "corr2d_ext").glob("_C*.so")) and str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
import corr2d_ext  # noqa: E402

MODELS = ("resnet18", "mobilenet_v2")
OPS = ("fwd", "igrad", "wgrad")
OP_TITLES = {"fwd": "forward", "igrad": "input gradient", "wgrad": "weight gradient"}
LAYOUTS = ("contiguous", "channels_last")
WHOLE = ("infer", "train")
WHOLE_TITLES = {"infer": "inference (eval, no_grad)",
                "train": "training step (fwd + loss + bwd, no optimizer step)"}

LAYER_GOAL = 1.5          # every distinct layer, each op
TOTAL_GOAL = 1.0          # weighted totals, each op, both models
WHOLE_GOALS = {"resnet18": 1.0, "mobilenet_v2": 0.8}
SCRATCH_GOAL_MIB = 64     # beyond the output, at 2 threads
NO_WORSE_THAN = 3.0       # "no layer's op may remain more than 3x slower than ATen"

# The large layer: a weight gradient whose weight (144 MiB) dwarfs its images.
BIG_WGRAD = dict(n=4, cin=2048, cout=2048, k=3, hw=7, padding=1)


# --------------------------------------------------------------------------------------------
# Geometries, from the real models

@dataclass(frozen=True)
class Geometry:
    """One convolution as a layer of a network sees it; the batch size is not part of it."""

    cin: int
    cout: int
    kh: int
    kw: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    h: int
    w: int
    bias: bool

    @property
    def out_hw(self) -> tuple[int, int]:
        def one(size, k, s, p, d):
            return (size + 2 * p - d * (k - 1) - 1) // s + 1
        return (one(self.h, self.kh, self.stride[0], self.padding[0], self.dilation[0]),
                one(self.w, self.kw, self.stride[1], self.padding[1], self.dilation[1]))

    def label(self) -> str:
        """``64->128 3x3/2 p1 on 56x56``, with ``dw`` for depthwise, ``g<G>`` for other groups."""
        def pair(t):
            return str(t[0]) if t[0] == t[1] else f"{t[0]},{t[1]}"
        s = f"{self.cin}->{self.cout} {self.kh}x{self.kw}"
        if self.stride != (1, 1):
            s += f"/{pair(self.stride)}"
        if self.padding != (0, 0):
            s += f" p{pair(self.padding)}"
        if self.dilation != (1, 1):
            s += f" d{pair(self.dilation)}"
        if self.groups > 1:
            s += " dw" if self.groups == self.cin == self.cout else f" g{self.groups}"
        if self.bias:
            s += " +b"
        return s + f" on {self.h}x{self.w}"

    def flops(self, n: int) -> int:
        ho, wo = self.out_hw
        return 2 * n * self.cout * ho * wo * (self.cin // self.groups) * self.kh * self.kw


@dataclass
class Layer:
    geometry: Geometry
    count: int
    names: list[str]


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def build_model(name: str) -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None)


def collect_layers(model: nn.Module, size: int = 224) -> list[Layer]:
    """Distinct geometries of the ``nn.Conv2d`` calls in one forward of ``model``, in call order.

    A forward pre-hook on every module whose type is exactly ``nn.Conv2d`` (the ones
    ``corr2d_ext.convert`` replaces) records the input's channels and size with the module's
    arguments; the forward runs once on a (1, 3, size, size) input, since the batch size is not
    part of a geometry. Counts are calls, so a module used twice counts twice.
    """
    found: dict[Geometry, Layer] = {}
    handles = []

    def hook(module, args, name):
        if not isinstance(module.padding, (tuple, int)) or module.padding_mode != "zeros":
            raise ValueError(f"{name}: padding={module.padding!r} padding_mode="
                             f"{module.padding_mode!r}; the benchmark handles zero padding "
                             f"given as numbers")
        x = args[0]
        g = Geometry(cin=x.shape[1], cout=module.out_channels, kh=module.kernel_size[0],
                     kw=module.kernel_size[1], stride=_pair(module.stride),
                     padding=_pair(module.padding), dilation=_pair(module.dilation),
                     groups=module.groups, h=x.shape[2], w=x.shape[3],
                     bias=module.bias is not None)
        layer = found.setdefault(g, Layer(g, 0, []))
        layer.count += 1
        layer.names.append(name)

    for name, m in model.named_modules():
        if type(m) is nn.Conv2d:
            handles.append(m.register_forward_pre_hook(
                lambda mod, args, name=name: hook(mod, args, name)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return list(found.values())


# --------------------------------------------------------------------------------------------
# The three ops, ours and ATen's, on one geometry

def make_tensors(g: Geometry, n: int, layout: str) -> dict[str, object]:
    gen = torch.Generator().manual_seed(0)
    ho, wo = g.out_hw
    t = {"x": torch.randn(n, g.cin, g.h, g.w, generator=gen),
         "w": torch.randn(g.cout, g.cin // g.groups, g.kh, g.kw, generator=gen),
         "gy": torch.randn(n, g.cout, ho, wo, generator=gen)}
    if layout == "channels_last":
        t = {k: v.contiguous(memory_format=torch.channels_last) for k, v in t.items()}
    t["b"] = torch.randn(g.cout, generator=gen) if g.bias else None
    t.update(s=list(g.stride), p=list(g.padding), d=list(g.dilation), g=g.groups,
             hw=[g.h, g.w], khw=[g.kh, g.kw], xs=t["x"].shape, ws=t["w"].shape)
    return t


# Statement and callable of each side of each op, with the names of make_tensors' dict.
SIDES = {
    "fwd": {"ours": ("f(x, w, b, s, p, d, g)", lambda: corr2d_ext.conv2d),
            "torch": ("f(x, w, b, s, p, d, g)", lambda: F.conv2d)},
    "igrad": {"ours": ("f(gy, w, hw, s, p, d, g)",
                       lambda: torch.ops.corr2d_ext.corr2d_input_grad),
              "torch": ("f(xs, w, gy, s, p, d, g)", lambda: torch.nn.grad.conv2d_input)},
    "wgrad": {"ours": ("f(x, gy, khw, s, p, d, g)",
                       lambda: torch.ops.corr2d_ext.corr2d_weight_grad),
              "torch": ("f(x, ws, gy, s, p, d, g)", lambda: torch.nn.grad.conv2d_weight)},
}


def call(op: str, side: str, t: dict[str, object]) -> torch.Tensor:
    stmt, fn = SIDES[op][side]
    return eval(stmt, {"f": fn(), **t})  # the same statement Timer runs


def mismatch(ours: torch.Tensor, ref: torch.Tensor, rtol: float = 1e-4,
             atol_rel: float = 1e-4) -> str | None:
    """None when ``ours`` agrees with ``ref`` (bench.py's float32 rule), else what differs.

    |ours - ref| <= rtol |ref| + atol_rel max|ref|: sums of many products added in another order
    differ by a small fraction of the largest value; a wrong index or a missed tap by its order.
    """
    if ours.shape != ref.shape:
        return f"shape {list(ours.shape)} vs {list(ref.shape)}"
    scale = ref.abs().max().item() if ref.numel() else 0.0
    atol = atol_rel * max(scale, 1e-6)
    if torch.allclose(ours, ref, rtol=rtol, atol=atol):
        return None
    err = (ours - ref).abs().max().item()
    return f"max abs error {err:.3g}, max abs ref {scale:.3g}"  # no pipes: table cells


@dataclass
class OpResult:
    ours: float | None = None    # median seconds per call
    torch: float | None = None
    spread: float = 0.0
    error: str | None = None     # set when ours disagreed with ATen: then not timed
    rounds: dict[str, list[float]] = field(default_factory=dict)  # each round's median

    @property
    def ratio(self) -> float | None:
        return None if self.ours is None or self.torch is None else self.ours / self.torch


def time_layer(g: Geometry, n: int, layout: str, ops: list[str], rounds: int,
               min_time: float, tag: str, clock=None) -> dict[str, OpResult]:
    t = make_tensors(g, n, layout)
    out = {}
    for op in ops:
        err = mismatch(call(op, "ours", t), call(op, "torch", t))
        if err:
            log(f"  {tag} {op}: WRONG ({err}); not timed")
            out[op] = OpResult(error=err)
            continue
        sides = {side: (stmt, {"f": fn(), **t}) for side, (stmt, fn) in SIDES[op].items()}
        tm: dict[str, Timing] = interleaved(sides, rounds, min_time, f"{tag} {op}", clock)
        out[op] = OpResult(tm["ours"].median, tm["torch"].median,
                           max(v.spread for v in tm.values()),
                           rounds={k: v.rounds for k, v in tm.items()})
    return out


# --------------------------------------------------------------------------------------------
# Scratch memory: peak RSS in a child process

_MEMORY_METHOD = (
    "Scratch = growth of the process's peak resident set (VmHWM in /proc/self/status) during "
    "one call, minus the bytes of the tensor the call returns. Measured in a child process "
    "started with MALLOC_MMAP_THRESHOLD_=65536 and MALLOC_TRIM_THRESHOLD_=0, so every block "
    "over 64 KiB is mapped on allocation and unmapped on free (glibc would otherwise keep "
    "freed blocks for reuse and hide the next call's scratch). For each op: inputs made, one "
    "warm-up call (one-time allocations such as thread pools and oneDNN caches are not "
    "counted), then the peak is reset to the current RSS by writing 5 to /proc/self/clear_refs, "
    "and the measured call runs. This sees std::vector and malloc scratch inside kernels, "
    "which the torch profiler does not, and every thread's allocations; resolution is a page, "
    "noise about 0.1-0.5 MiB.")


def _status_bytes(key: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1)) * 1024


def _scratch_of(fn) -> tuple[int, float]:
    """(bytes of peak RSS growth beyond the output, seconds) of one call of ``fn`` after a warm-up."""
    import gc

    fn()
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    base = _status_bytes("VmRSS")
    t0 = time.perf_counter()
    y = fn()
    seconds = time.perf_counter() - t0
    peak = _status_bytes("VmHWM")
    out_bytes = y.untyped_storage().nbytes()
    del y
    return peak - base - out_bytes, seconds


def memory_worker(spec_path: str) -> None:
    """Runs in the child: reads jobs from ``spec_path`` (JSON), prints one JSON object."""
    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    results = []
    for job in spec["jobs"]:
        g = Geometry(**{k: tuple(v) if isinstance(v, list) else v
                        for k, v in job["geometry"].items()})
        t = make_tensors(g, job["n"], job["layout"])
        entry = {"key": job["key"], "op": job["op"], "layout": job["layout"]}
        for side in ("ours", "torch"):
            scratch, seconds = _scratch_of(lambda: call(job["op"], side, t))
            entry[side] = scratch
            entry[f"{side}_s"] = seconds
        results.append(entry)
        print(json.dumps(entry), file=sys.stderr, flush=True)
    print(json.dumps({"results": results, "threads": torch.get_num_threads()}))


def measure_memory(jobs: list[dict], threads: int) -> list[dict]:
    import tempfile

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "jobs.json"
        spec.write_text(json.dumps({"jobs": jobs, "threads": threads}))
        proc = subprocess.run([sys.executable, __file__, "--_memory-worker", str(spec)],
                              env=env, text=True, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["results"]


# --------------------------------------------------------------------------------------------
# Whole models

def _train_step(m: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    for p in m.parameters():
        p.grad = None
    loss = F.cross_entropy(m(x), target)
    loss.backward()
    return loss


def _infer(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return m(x)


@dataclass
class WholeResult:
    model: str
    what: str
    layout: str
    ours: float | None
    torch: float | None
    spread: float
    check: str  # how far ours is from torch's result
    rounds: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return None if self.ours is None or self.torch is None else self.ours / self.torch


def time_whole(name: str, n: int, size: int, layout: str, whats: list[str], rounds: int,
               min_time: float, clock=None) -> list[WholeResult]:
    ref = build_model(name)
    x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 1000, (n,), generator=torch.Generator().manual_seed(1))
    if layout == "channels_last":
        ref = ref.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    ours = corr2d_ext.convert(ref)  # a deep copy: the same parameters, in the same layout
    n_conv = sum(type(m) is corr2d_ext.Conv2d for m in ours.modules())
    log(f"[{name} whole {layout}] {n_conv} layers converted")
    out = []
    for what in whats:
        if what == "infer":
            ref.eval(), ours.eval()
            err = mismatch(_infer(ours, x), _infer(ref, x), rtol=1e-3, atol_rel=1e-3)
            stmt, g_ref, g_ours = "f(m, x)", {"f": _infer, "m": ref, "x": x}, \
                {"f": _infer, "m": ours, "x": x}
        else:
            ref.train(), ours.train()
            # Gradients after one step from equal states; then timing moves the BN statistics
            # of both alike (same input every step). The same seed before each step gives both
            # the same dropout mask (mobilenet_v2's classifier).
            torch.manual_seed(2)
            _train_step(ref, x, target)
            torch.manual_seed(2)
            _train_step(ours, x, target)
            # All gradients as one vector, compared by norm with a float64 step of torch's
            # model: a train-mode BN divides by batch standard deviations, so a deep net at
            # random init amplifies float32 rounding, torch's as much as ours; what matters is
            # whether ours strays further from the exact gradient than torch's float32 does.
            ref64 = copy.deepcopy(ref).double()
            torch.manual_seed(2)
            _train_step(ref64, x.double(), target)
            g64 = torch.cat([p.grad.flatten() for p in ref64.parameters()])
            del ref64

            def rel(m):
                g = torch.cat([p.grad.flatten() for p in m.parameters()]).double()
                return ((g - g64).norm() / g64.norm()).item()

            e_ours, e_ref = rel(ours), rel(ref)
            err = (None if e_ours <= 10 * e_ref + 1e-5 else
                   f"norm(g - g64) / norm(g64) = {e_ours:.2g}, torch's {e_ref:.2g}")
            stmt = "f(m, x, t)"
            g_ref = {"f": _train_step, "m": ref, "x": x, "t": target}
            g_ours = {"f": _train_step, "m": ours, "x": x, "t": target}
        check = ("DIFFERS: " + err if err else "ok, logits: rtol 1e-3, atol 1e-3 max abs(ref)"
                 if what == "infer" else
                 f"ok, norm(g - g64) / norm(g64) = {e_ours:.2g}, torch's {e_ref:.2g}")
        tm = interleaved({"ours": (stmt, g_ours), "torch": (stmt, g_ref)}, rounds, min_time,
                         f"{name} {what} {layout}", clock)
        out.append(WholeResult(name, what, layout, tm["ours"].median, tm["torch"].median,
                               max(v.spread for v in tm.values()), check,
                               {k: v.rounds for k, v in tm.items()}))
    return out


# --------------------------------------------------------------------------------------------
# Reporting

def _mark(ratio: float | None, goal: float) -> str:
    if ratio is None:
        return "—"
    return f"{ratio:.3g} {'✓' if ratio <= goal else '✗'}"


def _op_cells(r: OpResult | None) -> list[str]:
    if r is None:
        return ["", "", ""]
    if r.error:
        return ["WRONG", "", "✗ " + r.error]
    return [fmt_time(r.ours), fmt_time(r.torch), _mark(r.ratio, LAYER_GOAL)]


def weighted_total(layers: list[Layer], res: list[dict[str, OpResult]], op: str
                   ) -> tuple[float | None, float | None]:
    """(sum of count x ours, sum of count x torch) over the layers timed correctly."""
    pairs = [(L.count * r[op].ours, L.count * r[op].torch) for L, r in zip(layers, res)
             if op in r and r[op].ratio is not None]
    if not pairs or len(pairs) < sum(op in r for r in res):
        return None, None  # a wrong layer makes the total meaningless
    return sum(p[0] for p in pairs), sum(p[1] for p in pairs)


def layer_table(layers: list[Layer], res: list[dict[str, OpResult]], ops: list[str]) -> str:
    headers = ["#", "geometry", "n", "first layer"]
    for op in ops:
        headers += [f"{op} ours", f"{op} torch", f"{op} ratio"]
    headers.append("spread")
    rows = []
    for i, (L, r) in enumerate(zip(layers, res)):
        row = [str(i + 1), L.geometry.label(), str(L.count), L.names[0]]
        for op in ops:
            row += _op_cells(r.get(op))
        row.append(f"{100 * max((o.spread for o in r.values()), default=0):.0f}%")
        rows.append(row)
    total = ["", "**weighted by n**", str(sum(L.count for L in layers)), ""]
    for op in ops:
        o, t = weighted_total(layers, res, op)
        total += [fmt_time(o), fmt_time(t),
                  "—" if o is None else f"**{_mark(o / t, TOTAL_GOAL)}**"]
    total.append("")
    rows.append(total)
    return md_table(headers, rows, align="rlrl" + "rrr" * len(ops) + "r")


def goals_line(res: list[dict[str, OpResult]], ops: list[str]) -> str:
    parts = []
    for op in ops:
        rs = [r[op] for r in res if op in r]
        met = sum(1 for x in rs if x.ratio is not None and x.ratio <= LAYER_GOAL)
        over3 = sum(1 for x in rs if x.ratio is not None and x.ratio > NO_WORSE_THAN)
        wrong = sum(1 for x in rs if x.error)
        worst = max((x.ratio for x in rs if x.ratio is not None), default=None)
        parts.append(f"{op} {met}/{len(rs)} met, {over3} over {NO_WORSE_THAN:g}x"
                     + (f", worst {worst:.3g}" if worst is not None else "")
                     + (f", **{wrong} WRONG**" if wrong else ""))
    return "; ".join(parts)


def _mib(nbytes: int, goal: bool) -> str:
    mib = nbytes / 2**20
    return f"{mib:.1f}" + ((" ✓" if mib <= SCRATCH_GOAL_MIB else " ✗") if goal else "")


def memory_table(mem: list[dict], labels: dict[str, str], ops: list[str]) -> str:
    """One row per layer and layout: scratch MiB of each op, ours (with the goal) and torch's."""
    by_row: dict[tuple[str, str], dict[str, dict]] = {}
    for e in mem:
        by_row.setdefault((e["key"], e["layout"]), {})[e["op"]] = e
    headers = ["layer", "layout"]
    for op in ops:
        headers += [f"{op} ours", f"{op} torch"]
    rows = []
    for (key, layout), per_op in by_row.items():
        row = [labels.get(key, key), layout]
        for op in ops:
            e = per_op.get(op)
            row += ["", ""] if e is None else [_mib(e["ours"], True), _mib(e["torch"], False)]
        rows.append(row)
    return md_table(headers, rows, align="ll" + "rr" * len(ops))


def plot(per_model: dict[str, dict], ops: list[str], path: Path, title: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not importable: no PNG")
        return False
    names = [m for m in per_model if per_model[m]["layers"]]
    if not names or not ops:
        return False
    widest = max(len(per_model[m]["layers"]) for m in names)
    fig, axes = plt.subplots(len(names), 1, squeeze=False,
                             figsize=(max(8.0, 0.42 * widest * len(ops) / 3 + 3),
                                      4.6 * len(names)))
    colors = {"fwd": "tab:blue", "igrad": "tab:orange", "wgrad": "tab:green"}
    width = 0.8 / len(ops)
    for ax, name in zip(axes[:, 0], names):
        data = per_model[name]
        layers = data["layers"]
        xs = range(len(layers))
        for j, op in enumerate(ops):
            off = (j - (len(ops) - 1) / 2) * width
            for layout, style in (("contiguous", "bar"), ("channels_last", "dot")):
                res = data["results"].get(layout)
                if not res:
                    continue
                pts = [(i + off, r[op].ratio) for i, r in zip(xs, res)
                       if op in r and r[op].ratio is not None]
                if not pts:
                    continue
                px, py = zip(*pts)
                if style == "bar":
                    ax.bar(px, py, width, color=colors[op], label=f"{OP_TITLES[op]}")
                else:
                    ax.scatter(px, py, marker="_", s=60, color="black", linewidths=1.2,
                               label="channels_last" if j == 0 else None, zorder=3)
        ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
        ax.axhline(LAYER_GOAL, color="tab:red", linewidth=1, linestyle=":",
                   label=f"per-layer goal {LAYER_GOAL}")
        ax.set_yscale("log")
        ax.set_ylabel("ours / ATen (lower is better)")
        ax.set_xticks(list(xs), [f"{L.geometry.label()} (x{L.count})" for L in layers],
                      rotation=90, fontsize=7)
        ax.set_xlim(-0.6, len(layers) - 0.4)
        ax.set_title(f"{name}: per-layer time ratio, bars contiguous, ticks channels_last",
                     fontsize=9)
        ax.legend(fontsize=7, ncol=5, loc="upper left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _jsonable(o):
    if isinstance(o, (OpResult, WholeResult, Layer, Geometry)):
        return asdict(o)
    raise TypeError(type(o))


# --------------------------------------------------------------------------------------------

def summary_section(models, layouts, ops, per_model, whole_res, mem, big) -> list[str]:
    """The goals in one table: a row per model and layout."""
    rows = []
    for name in models:
        for layout in layouts:
            res = per_model[name]["results"].get(layout) or []
            cells = []
            for op in ops:
                o, t = weighted_total(per_model[name]["layers"], res, op) if res else (None, None)
                cells.append("—" if o is None else _mark(o / t, TOTAL_GOAL))
            ratios = [r[op].ratio for r in res for op in ops if op in r]
            met = sum(1 for x in ratios if x is not None and x <= LAYER_GOAL)
            over3 = sum(1 for x in ratios if x is not None and x > NO_WORSE_THAN)
            whole = {w.what: w for w in whole_res if w.model == name and w.layout == layout}
            cells += [f"{met}/{len(ratios)}" if ratios else "—", str(over3) if ratios else "—"]
            cells += [_mark(whole[w].ratio, WHOLE_GOALS[name]) if w in whole else "—"
                      for w in WHOLE]
            rows.append([name, layout, *cells])
    if not rows:
        return []
    lines = ["## Summary", "",
             "Weighted totals per op (goal <= 1.0), per-layer ops within 1.5x of ATen, ops more "
             "than 3x slower, whole-model ratios (goals: resnet18 <= 1.0, mobilenet_v2 <= 0.8). "
             "All ratios ours / ATen.", "",
             md_table(["model", "layout", *(f"{op} total" for op in ops), "layer ops <= 1.5",
                       "over 3x", "inference", "training step"], rows,
                      align="ll" + "r" * (len(ops) + 4)), ""]
    if mem:
        worst = max(mem, key=lambda e: e["ours"])
        over = sum(e["ours"] > SCRATCH_GOAL_MIB * 2**20 for e in mem)
        lines.append(f"Scratch: ours over {SCRATCH_GOAL_MIB} MiB in {over} of {len(mem)} layer "
                     f"ops, largest {worst['ours'] / 2**20:.0f} MiB.")
    if big:
        lines.append(f"2048->2048 3x3 weight gradient on 4x2048x7x7: ours "
                     f"{big[0]['ours'] / 2**20:.0f} MiB scratch, {fmt_time(big[0]['ours_s'])}; "
                     f"torch {big[0]['torch'] / 2**20:.0f} MiB, {fmt_time(big[0]['torch_s'])}.")
    return lines + ([""] if mem or big else [])


def _cpu_pressure() -> str:
    """Linux PSI: the share of the last 60 s in which some runnable task waited for a CPU."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return ""
    m = re.search(r"avg60=([\d.]+)", line)
    return f" (CPU pressure avg60 {m.group(1)}%)" if m else ""


def _csv(value: str, allowed: tuple[str, ...], what: str, p: argparse.ArgumentParser) -> list[str]:
    if value == "none":
        return []
    chosen = list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    if value == "all":
        return list(allowed)
    bad = [v for v in chosen if v not in allowed]
    if bad or not chosen:
        p.error(f"--{what}: unknown {bad or value!r}; choose from {', '.join(allowed)}, all, none")
    return chosen


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke test: the first few geometries of each model, one short round, "
                        "no whole models or big layer unless asked; written as models-quick-*")
    p.add_argument("--model", default="all", help="resnet18, mobilenet_v2 or all (default)")
    p.add_argument("--ops", default="all", help="layers: comma list of fwd, igrad, wgrad; all "
                                                "(default) or none (no layer timing)")
    p.add_argument("--layouts", default="all",
                   help="contiguous, channels_last or all (default) for layers and whole models")
    p.add_argument("--whole", default=None,
                   help="whole models: comma list of infer, train; all (default; quick: none) "
                        "or none")
    p.add_argument("--no-memory", action="store_true", help="skip the scratch memory part")
    p.add_argument("--big-wgrad", action="store_true",
                   help="also the 2048->2048 3x3 weight gradient on 4x2048x7x7 (memory and one "
                        "timed call each side; ours took ~6 s and ~3 GB before issue 10)")
    p.add_argument("--layers", type=int, help="only the first K distinct geometries per model "
                                              "(default all; quick 3)")
    p.add_argument("--batch", type=int, default=8, help="N of every layer and model (default 8)")
    p.add_argument("--size", type=int, default=224, help="input height = width (default 224)")
    p.add_argument("--rounds", type=int, help="interleaved rounds per side (default 3; quick 1)")
    p.add_argument("--min-time", type=float,
                   help="seconds per side per round, layers (default 0.1; quick 0.005)")
    p.add_argument("--whole-min-time", type=float,
                   help="seconds per side per round, whole models (default 0.5; quick 0.005)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads first (default: torch's)")
    p.add_argument("--cpu-time", action="store_true",
                   help="time with the process's CPU time (time.process_time) instead of wall "
                        "time; needs --threads 1, where it leaves out the time spent waiting "
                        "for a core on a loaded machine (with more threads it would count "
                        "OpenMP's spinning)")
    p.add_argument("--tag", default="",
                   help="name part of the saved files: models-<tag>-<date>.* (e.g. baseline), "
                        "and no models-latest.* (written by untagged runs that are not --quick)")
    p.add_argument("--results-dir", type=Path, default=RESULTS, help="where to save")
    p.add_argument("--_memory-worker", dest="memory_worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.memory_worker:
        memory_worker(args.memory_worker)
        return 0

    models = list(MODELS) if args.model == "all" else _csv(args.model, MODELS, "model", p)
    ops = _csv(args.ops, OPS, "ops", p)
    layouts = _csv(args.layouts, LAYOUTS, "layouts", p)
    whole = _csv(args.whole if args.whole is not None else ("none" if args.quick else "all"),
                 WHOLE, "whole", p)
    if args.cpu_time and (args.threads or torch.get_num_threads()) != 1:
        p.error(f"--cpu-time needs --threads 1 (would run {args.threads or torch.get_num_threads()}"
                f" threads): the CPU time of several threads includes their spin-waits")
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else None
    try:
        import torchvision
    except ImportError:
        sys.exit("bench_models: needs torchvision (pip install torchvision==0.29.1 --no-deps "
                 "beside torch 2.14.1, or the bench extra)")
    rounds = args.rounds or (1 if args.quick else 3)
    min_time = args.min_time or (0.005 if args.quick else 0.1)
    whole_min_time = args.whole_min_time or (0.005 if args.quick else 0.5)
    max_layers = args.layers or (3 if args.quick else None)
    threads = torch.get_num_threads()
    n, size = args.batch, args.size
    started = time.perf_counter()

    stamp = machine_stamp()
    stamp.append(f"- corr2d_ext imported from {Path(corr2d_ext.__file__).parent}")
    stamp.append(f"- torchvision {torchvision.__version__}; batch {n}, input {size}x{size}, "
                 f"float32")
    stamp.append("- clock: " + ("**process CPU time** (time.process_time, one thread): time "
                                 "spent waiting for a core is left out" if args.cpu_time else
                                 "wall time (Timer's default)"))
    stamp.append(f"- rounds: {rounds} interleaved per side, >= {min_time} s each (layers), "
                 f">= {whole_min_time} s each (whole models)"
                 + ("  **QUICK RUN: smoke test, numbers not meaningful**" if args.quick else ""))
    loads: list[str] = []

    def note_load(what: str) -> None:
        loads.append(f"{what} at {(time.perf_counter() - started) / 60:.1f} min: "
                     f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}{_cpu_pressure()}")

    per_model: dict[str, dict] = {}
    labels: dict[str, str] = {}
    for name in models:
        layers = collect_layers(build_model(name), size)
        total_convs = sum(L.count for L in layers)
        log(f"[{name}] {total_convs} conv calls, {len(layers)} distinct geometries")
        per_model[name] = {"layers": layers[:max_layers] if max_layers else layers,
                           "distinct": len(layers), "convs": total_convs, "results": {}}
        for i, L in enumerate(per_model[name]["layers"]):
            labels[f"{name}#{i + 1}"] = f"{name} #{i + 1} {L.geometry.label()}"

    # 1. layers
    if ops:
        for name in models:
            for layout in layouts:
                note_load(f"{name} layers {layout} start")
                res = []
                for i, L in enumerate(per_model[name]["layers"]):
                    tag = f"{name}#{i + 1}{' cl' if layout == 'channels_last' else ''}"
                    log(f"[{tag}] {L.geometry.label()} x{L.count}")
                    res.append(time_layer(L.geometry, n, layout, ops, rounds, min_time, tag,
                                          clock))
                per_model[name]["results"][layout] = res

    # 2. whole models
    whole_res: list[WholeResult] = []
    if whole:
        for name in models:
            for layout in layouts:
                note_load(f"{name} whole {layout} start")
                whole_res += time_whole(name, n, size, layout, whole, rounds, whole_min_time,
                                        clock)

    # 3. memory
    mem: list[dict] = []
    big: list[dict] = []
    if not args.no_memory and ops:
        note_load("memory start")
        jobs = [{"key": f"{name}#{i + 1}", "geometry": asdict(L.geometry), "n": n,
                 "layout": layout, "op": op}
                for name in models for i, L in enumerate(per_model[name]["layers"])
                for layout in layouts for op in ops]
        log(f"[memory] {len(jobs)} ops x 2 sides in a child process")
        mem = measure_memory(jobs, threads)
    if args.big_wgrad:
        note_load("big weight gradient start")
        b = BIG_WGRAD
        g = Geometry(b["cin"], b["cout"], b["k"], b["k"], (1, 1), (b["padding"],) * 2, (1, 1), 1,
                     b["hw"], b["hw"], False)
        labels["big"] = f"N={b['n']} {g.label()}"
        log(f"[big] {labels['big']} weight gradient, in a child process (slow)")
        t = make_tensors(g, b["n"], "contiguous")
        err = mismatch(call("wgrad", "ours", t), call("wgrad", "torch", t))
        del t
        big = measure_memory([{"key": "big", "geometry": asdict(g), "n": b["n"],
                               "layout": "contiguous", "op": "wgrad"}], threads)
        big[0]["check"] = "ok" if err is None else f"WRONG: {err}"
    note_load("end")
    elapsed = time.perf_counter() - started

    # Report
    date = datetime.date.today().isoformat()
    out = [f"# corr2d_ext vs ATen on real networks, CPU{' (quick run)' if args.quick else ''}",
           "", *stamp, *load_report(),
           f"- load average (1, 5, 15 min) by part: {'; '.join(loads)}. CPU pressure: the "
           "share of the last minute in which some runnable thread waited for a core "
           "(/proc/pressure/cpu); anything well above 0 means other processes competed.",
           f"- wall time of the run: {elapsed / 60:.1f} min", "",
           "Ratios are ours / ATen: below 1 corr2d_ext is faster. Goals (issue 10): every layer "
           f"and op <= {LAYER_GOAL}, weighted totals <= {TOTAL_GOAL}, whole models resnet18 <= "
           f"{WHOLE_GOALS['resnet18']} and mobilenet_v2 <= {WHOLE_GOALS['mobilenet_v2']}, scratch "
           f"<= {SCRATCH_GOAL_MIB} MiB; ✓ met, ✗ not. Times: median over rounds of each round's "
           "median (torch.utils.benchmark.Timer.blocked_autorange at the process's thread count, "
           "sides alternating every round). spread = largest (max - min) / median of the round "
           "medians: above ~20 % the machine moved under the measurement. This machine is "
           "shared with other jobs: the load averages above say how busy it was.", ""]
    out += summary_section(models, layouts, ops, per_model, whole_res, mem, big)
    if whole_res:
        out += ["## Whole models", "",
                "`corr2d_ext.convert(model)` vs `model` (torchvision, random init, same "
                f"parameters), N={n}, {size}x{size}. Inference: `model.eval()` under "
                "`torch.no_grad()`. Training step: `model.train()`, every `.grad` set to None, "
                "forward, cross-entropy loss, `backward()`; no optimizer step (it is the same "
                "code on both sides). channels_last: model and input converted with "
                "`memory_format=torch.channels_last`. Check before timing: eval logits "
                "elementwise against torch's; after one training step from equal states (same "
                "dropout seed), all parameter gradients as one vector g, by norm against a "
                "float64 step of torch's model (g64), passing if ours is within 10x of torch's "
                "float32 error.", ""]
        rows = [[w.model, WHOLE_TITLES[w.what], w.layout, fmt_time(w.ours), fmt_time(w.torch),
                 _mark(w.ratio, WHOLE_GOALS[w.model]), f"{100 * w.spread:.0f}%", w.check]
                for w in whole_res]
        out += [md_table(["model", "what", "layout", "ours", "torch", "ratio (goal)", "spread",
                          "check"], rows, align="lllrrrrl"), ""]
    if ops:
        out += ["## Layers", "",
                "Each distinct conv geometry of the model (in, out, kernel/stride, padding, "
                "dilation, groups: dw = depthwise; input size), found by forward hooks on every "
                f"nn.Conv2d of the torchvision model, timed at N={n}; n = how many layers have "
                "it. fwd: `corr2d_ext.conv2d` vs `F.conv2d`; igrad: "
                "`torch.ops.corr2d_ext.corr2d_input_grad` vs `torch.nn.grad.conv2d_input`; "
                "wgrad: `torch.ops.corr2d_ext.corr2d_weight_grad` vs "
                "`torch.nn.grad.conv2d_weight`. Inputs need no grad. Each op is checked against "
                "ATen first (|ours - ref| <= 1e-4 |ref| + 1e-4 max|ref|); a WRONG op is not "
                "timed. The last row: sum of n x time over the layers, ours / torch.", ""]
        for name in models:
            d = per_model[name]
            shown = len(d["layers"])
            out += [f"### {name}: {d['convs']} conv layers, {d['distinct']} distinct geometries"
                    + (f" (first {shown} timed)" if shown < d["distinct"] else ""), ""]
            for layout in layouts:
                res = d["results"].get(layout)
                if not res:
                    continue
                out += [f"{layout}: per-layer goals: {goals_line(res, ops)}", "",
                        layer_table(d["layers"], res, ops), ""]
        summary = []
        for name in models:
            for layout in layouts:
                res = per_model[name]["results"].get(layout)
                if not res:
                    continue
                cells = []
                for op in ops:
                    o, t = weighted_total(per_model[name]["layers"], res, op)
                    cells.append("—" if o is None else _mark(o / t, TOTAL_GOAL))
                summary.append([name, layout, *cells])
        out += ["### Weighted totals (ours / torch)", "",
                md_table(["model", "layout", *ops], summary, align="ll" + "r" * len(ops)), ""]
    if mem or big:
        out += ["## Scratch memory per op", "", _MEMORY_METHOD + f" Threads: {threads}.", ""]
        if mem:
            worst = max(mem, key=lambda e: e["ours"])
            over = sum(e["ours"] > SCRATCH_GOAL_MIB * 2**20 for e in mem)
            out += [f"Ours over {SCRATCH_GOAL_MIB} MiB: {over} of {len(mem)}; largest "
                    f"{worst['ours'] / 2**20:.1f} MiB ({labels[worst['key']]} {worst['op']} "
                    f"{worst['layout']}). MiB beyond the output, ours (✓/✗: goal <= "
                    f"{SCRATCH_GOAL_MIB} MiB) and torch's.", "", memory_table(mem, labels, ops),
                    ""]
        if big:
            e = big[0]
            out += [f"### {labels['big']}: weight gradient, once", "",
                    f"Check against ATen: {e['check']}. One call each after one warm-up call, "
                    "in the memory child (every large block freshly mapped, so the times "
                    "include page faults).", "",
                    md_table(["", "scratch MiB", "one call"],
                             [["ours", _mib(e["ours"], True), fmt_time(e["ours_s"])],
                              ["torch", _mib(e["torch"], False), fmt_time(e["torch_s"])]]), ""]
    text = "\n".join(out)
    print(text)

    dest: Path = args.results_dir
    dest.mkdir(parents=True, exist_ok=True)
    stem = "models-quick" if args.quick else "models"
    if args.tag:
        stem += f"-{args.tag}"
    names = [f"{stem}-{date}"] + ([] if args.quick or args.tag else ["models-latest"])
    payload = {"stamp": stamp, "loads": loads, "elapsed_s": elapsed, "batch": n, "size": size,
               "threads": threads, "rounds": rounds, "min_time": min_time,
               "models": {m: {"convs": d["convs"], "distinct": d["distinct"],
                              "layers": d["layers"], "results": d["results"]}
                          for m, d in per_model.items()},
               "whole": whole_res, "memory": mem, "big_wgrad": big}
    saved = []
    for base in names:
        (dest / f"{base}.md").write_text(text)
        (dest / f"{base}.json").write_text(json.dumps(payload, default=_jsonable, indent=1))
        saved += [dest / f"{base}.md", dest / f"{base}.json"]
    png = dest / f"{names[0]}.png"
    if plot(per_model, ops, png, f"corr2d_ext / ATen, {threads} threads, N={n}, "
                                 f"{size}x{size}, torch {torch.__version__}, {date}"
                                 f"{' (quick)' if args.quick else ''}"):
        saved.append(png)
        for base in names[1:]:
            (dest / f"{base}.png").write_bytes(png.read_bytes())
            saved.append(dest / f"{base}.png")
    log(f"saved {', '.join(str(s) for s in saved)} ({elapsed:.0f} s)")
    wrong = (any(r.error for d in per_model.values() for res in d["results"].values()
                 for row in res for r in row.values())
             or any(w.check.startswith("DIFFERS") for w in whole_res)
             or any(not e["check"].startswith("ok") for e in big))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
