"""CPU benchmark: corr2d_ext against torch.nn.functional.conv2d, side by side in one process.

    python bench/bench.py                      # every case, 5 rounds (a few minutes)
    python bench/bench.py --quick              # smoke test of the harness (seconds; noisy)
    python bench/bench.py --cases tutorial,resnet
    python bench/bench.py --isa avx512,avx2     # two CPU instantiations, each against torch
    python bench/bench.py --dtype bfloat16      # both sides in bfloat16

For each case: forward, and forward + backward (gradients of input, weight and bias), timed
interleaved with F.conv2d; GFLOP/s and fraction of the machine's peak; the transient memory of
each side. The tutorial case adds the tutorial's Python-loop ``corr2d`` and the module path
(``corr2d_ext.Conv2d`` against ``nn.Conv2d``). Prints markdown tables on stdout, progress on
stderr, and saves the tables (and a PNG of the ratios when matplotlib is present) under
``bench/results/``. See bench/README.md for how to read them.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import sys
from dataclasses import dataclass, field

from _harness import (Memory, Timing, fmt_mib, fmt_time, interleaved, load_report, log,
                      machine_stamp, md_table, memory_of, nominal_peak_gflops, save,
                      sgemm_gflops)

import torch  # noqa: E402  (after _harness, which sets Kineto's log level)
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import corr2d_ext  # noqa: E402
from corr2d_ext import _C  # noqa: E402

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
          "float16": torch.float16}


# --------------------------------------------------------------------------------------------
# The cases

@dataclass(frozen=True)
class Case:
    """One convolution problem: input (n, cin, h, w), weight (cout, cin / groups, kh, kw)."""

    key: str
    title: str
    n: int
    cin: int
    cout: int
    h: int
    w: int
    kh: int
    kw: int
    padding: int = 0
    groups: int = 1

    @property
    def out_hw(self) -> tuple[int, int]:
        return self.h + 2 * self.padding - self.kh + 1, self.w + 2 * self.padding - self.kw + 1

    @property
    def flops(self) -> int:
        """Forward FLOPs: one multiply and one add per tap, 2*N*Cout*Hout*Wout*(Cin/g)*kH*kW."""
        ho, wo = self.out_hw
        return 2 * self.n * self.cout * ho * wo * (self.cin // self.groups) * self.kh * self.kw

    @property
    def problem(self) -> str:
        s = (f"N={self.n} {self.cin}->{self.cout} {self.kh}x{self.kw} on {self.h}x{self.w}")
        if self.padding:
            s += f" pad {self.padding}"
        if self.groups > 1:
            s += f" groups {self.groups}"
        return s

    @property
    def macs(self) -> int:
        return self.flops // 2

    def kernels(self) -> str:
        """Which CPU kernels our side runs: the selected instantiation, or the portable loops
        for problems below the fast path's threshold (csrc/cpu/dispatch.cpp)."""
        return _C.cpu_isa() if self.macs >= _C.cpu_fast_path_min_macs() else "portable"

    def tensors(self, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(t.to(dtype) for t in self._tensors())

    def _tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.key == "tutorial":
            # The tutorial's image (ones, columns 2:6 black) and edge kernel [[1, -1]]. The bias
            # is not the tutorial's zero so that the correctness check sees it added.
            x = torch.ones(6, 8)
            x[:, 2:6] = 0
            return (x.reshape(1, 1, 6, 8), torch.tensor([[1.0, -1.0]]).reshape(1, 1, 1, 2),
                    torch.tensor([0.5]))
        g = torch.Generator().manual_seed(0)
        return (torch.randn(self.n, self.cin, self.h, self.w, generator=g),
                torch.randn(self.cout, self.cin // self.groups, self.kh, self.kw, generator=g),
                torch.randn(self.cout, generator=g))


CASES = [
    Case("tutorial", "tutorial 6x8 edge", 1, 1, 1, 6, 8, 1, 2),
    Case("image1024", "1024x1024 image", 1, 1, 1, 1024, 1024, 3, 3),
    Case("lenet1", "LeNet conv1", 256, 1, 6, 28, 28, 5, 5, padding=2),
    Case("lenet2", "LeNet conv2", 256, 6, 16, 14, 14, 5, 5),
    Case("resnet", "ResNet 3x3", 8, 64, 64, 56, 56, 3, 3, padding=1),
    Case("depthwise", "depthwise 3x3", 8, 256, 256, 28, 28, 3, 3, padding=1, groups=256),
]


def tutorial_corr2d_loop(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """The tutorial's corr2d, verbatim: a Python double loop over output pixels."""
    h, w = K.shape
    Y = torch.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()
    return Y


# --------------------------------------------------------------------------------------------
# Correctness first

#: Relative tolerance of the correctness check, by dtype (see _close).
CHECK_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9, torch.bfloat16: 3e-2,
                   torch.float16: 5e-3}


def _close(name: str, what: str, ours: torch.Tensor, ref: torch.Tensor) -> None:
    """Agreement with the float64 reference, scaled for long sums.

    A weight gradient of a 1024x1024 image sums a million products; summed in a different order
    the two sides differ by ~1e-5 of the largest value in float32. So: |ours - ref| <= tol *
    |ref| + tol * max|ref|, tol by dtype (CHECK_TOLERANCE). A wrong index or a missed tap gives
    errors of order max|ref|.
    """
    tol = CHECK_TOLERANCE[ours.dtype]
    ours, ref = ours.double(), ref.double()
    if ours.shape != ref.shape:
        sys.exit(f"bench: ABORT: {name}: {what} has shape {list(ours.shape)}, F.conv2d gives "
                 f"{list(ref.shape)}; not timing a wrong result")
    scale = ref.abs().max().item() if ref.numel() else 0.0
    atol = tol * max(scale, 1e-6)
    if not torch.allclose(ours, ref, rtol=tol, atol=atol):
        err = (ours - ref).abs().max().item()
        sys.exit(f"bench: ABORT: {name}: {what} differs from the reference: max |error| = "
                 f"{err:.3g}, max |reference| = {scale:.3g}, atol = {atol:.3g}, rtol = {tol}; "
                 f"not timing a wrong result")


def check_conv(case: Case, ours, ref, x, w, b) -> torch.Tensor:
    """Compares forward and the three gradients with the reference run in float64 on the same
    numbers; returns the upstream gradient gy to time with."""
    leaves64 = [t.detach().double().requires_grad_() for t in (x, w, b)]
    y_ref = ref(*leaves64)
    gy = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(1)).to(x.dtype)
    grads_ref = torch.autograd.grad(y_ref, leaves64, gy.double())
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    y = ours(*leaves)
    grads = torch.autograd.grad(y, leaves, gy)
    _close(case.key, "forward", y, y_ref)
    for name, g, g_ref in zip(("grad input", "grad weight", "grad bias"), grads, grads_ref):
        _close(case.key, name, g, g_ref)
    return gy


# --------------------------------------------------------------------------------------------
# Measuring

@dataclass
class Row:
    title: str
    problem: str
    vs: str
    fwd: dict[str, Timing]
    fb: dict[str, Timing] | None = None
    flops: int | None = None
    memory: dict[str, Memory] = field(default_factory=dict)  # "ours fwd", "torch f+b", ...
    kernels: str = ""  # the CPU instantiation our side ran (or "portable")


def run_conv(case: Case, rounds: int, min_time: float, measure_memory: bool,
             dtype=torch.float32) -> Row:
    kw = dict(padding=case.padding, groups=case.groups)
    ours = functools.partial(corr2d_ext.conv2d, **kw)
    ref = functools.partial(F.conv2d, **kw)
    x, w, b = case.tensors(dtype)

    log(f"[{case.key}] {case.problem}: checking against F.conv2d")
    gy = check_conv(case, ours, ref, x, w, b)

    # Forward: inputs without requires_grad, so neither side records a graph.
    fwd = interleaved({side: ("f(x, w, b)", {"f": f, "x": x, "w": w, "b": b})
                       for side, f in (("ours", ours), ("torch", ref))},
                      rounds, min_time, f"{case.key} fwd")

    # Forward + backward: leaves that require grad and one precomputed gy; autograd.grad
    # returns fresh gradients instead of accumulating into .grad, the same for both sides.
    xg, wg, bg = (t.clone().requires_grad_() for t in (x, w, b))
    g = {"x": xg, "w": wg, "b": bg, "gy": gy, "grad": torch.autograd.grad}
    fb = interleaved({side: ("grad(f(x, w, b), (x, w, b), gy)", {**g, "f": f})
                      for side, f in (("ours", ours), ("torch", ref))},
                     rounds, min_time, f"{case.key} fwd+bwd")

    memory = {}
    if measure_memory:
        log(f"[{case.key}] memory")
        for side, f in (("ours", ours), ("torch", ref)):
            memory[f"{side} fwd"] = memory_of(lambda f=f: f(x, w, b))
            memory[f"{side} f+b"] = memory_of(
                lambda f=f: (lambda y: (y, torch.autograd.grad(y, (xg, wg, bg), gy)))(
                    f(xg, wg, bg)))
    return Row(case.title, case.problem, "F.conv2d", fwd, fb, case.flops, memory,
               case.kernels())


def run_tutorial_extras(rounds: int, min_time: float) -> list[Row]:
    x4, _, _ = CASES[0].tensors()
    X, K = x4[0, 0], torch.tensor([[1.0, -1.0]])
    rows = []

    log("[tutorial] corr2d(X, K) on 2-D tensors: checking against the Python loop")
    if not torch.equal(corr2d_ext.corr2d(X, K), tutorial_corr2d_loop(X, K)):
        sys.exit("bench: ABORT: corr2d_ext.corr2d(X, K) differs from the tutorial's loop")
    t = interleaved({"ours": ("f(X, K)", {"f": corr2d_ext.corr2d, "X": X, "K": K}),
                     "loop": ("f(X, K)", {"f": tutorial_corr2d_loop, "X": X, "K": K})},
                    rounds, min_time, "tutorial corr2d vs loop")
    rows.append(Row("tutorial corr2d(X, K)", "2-D 6x8, kernel 1x2", "Python loop", t,
                    kernels="portable"))

    log("[tutorial] module path: checking corr2d_ext.Conv2d against nn.Conv2d")
    torch.manual_seed(0)
    m_ref = nn.Conv2d(1, 1, kernel_size=(1, 2))
    m_ours = corr2d_ext.Conv2d(1, 1, kernel_size=(1, 2))
    m_ours.load_state_dict(m_ref.state_dict())
    for m in (m_ref, m_ours):
        m.requires_grad_(False)  # forward only, no graph: as the functional forward rows
    _close("tutorial module", "Conv2d forward", m_ours(x4), m_ref(x4))
    t = interleaved({"ours": ("m(x)", {"m": m_ours, "x": x4}),
                     "torch": ("m(x)", {"m": m_ref, "x": x4})},
                    rounds, min_time, "tutorial Conv2d module")
    rows.append(Row("tutorial Conv2d module", "(1,1,6,8), kernel (1,2)", "nn.Conv2d", t,
                    kernels="portable"))
    return rows


# --------------------------------------------------------------------------------------------
# Reporting

def _ratio(t: dict[str, Timing] | None) -> float | None:
    if t is None:
        return None
    ours, ref = (v.median for v in t.values())
    return ours / ref


def _fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.3g}"


def time_table(rows: list[Row]) -> str:
    out = []
    for r in rows:
        fo, fr = (v.median for v in r.fwd.values())
        bo, br = ((v.median for v in r.fb.values()) if r.fb else (None, None))
        spread = max(v.spread for t in (r.fwd, r.fb) if t for v in t.values())
        out.append([r.title, r.problem, r.kernels, r.vs, fmt_time(fo), fmt_time(fr),
                    _fmt_ratio(_ratio(r.fwd)), fmt_time(bo), fmt_time(br),
                    _fmt_ratio(_ratio(r.fb)), f"{100 * spread:.0f}%"])
    return md_table(["case", "problem", "our kernels", "vs", "fwd ours", "fwd ref", "fwd ratio",
                     "fwd+bwd ours", "fwd+bwd ref", "fwd+bwd ratio", "spread"], out,
                    align="llllrrrrrrr")


def rate_table(rows: list[Row], peak: float) -> str:
    out = []
    for r in rows:
        if r.flops is None:
            continue
        rates = {}
        for side in ("ours", "torch"):
            rates[side] = (r.flops / r.fwd[side].median / 1e9,
                           3 * r.flops / r.fb[side].median / 1e9)
        mem = r.memory

        def pair(vals, fmt):
            return " / ".join(fmt(v) for v in vals)

        out.append([
            r.title, f"{r.flops / 1e9:.3g}" if r.flops >= 1e6 else f"{r.flops:.3g} FLOP",
            pair(rates["ours"], lambda v: f"{v:.3g}"), pair(rates["torch"], lambda v: f"{v:.3g}"),
            pair(rates["ours"], lambda v: f"{100 * v / peak:.2g}%"),
            pair(rates["torch"], lambda v: f"{100 * v / peak:.2g}%"),
            pair((mem.get("ours fwd"), mem.get("ours f+b")),
                 lambda m: fmt_mib(m.extra if m else None)),
            pair((mem.get("torch fwd"), mem.get("torch f+b")),
                 lambda m: fmt_mib(m.extra if m else None)),
        ])
    return md_table(["case", "GFLOP fwd", "ours GFLOP/s fwd / f+b", "torch GFLOP/s fwd / f+b",
                     "ours % peak", "torch % peak", "ours extra MiB fwd / f+b",
                     "torch extra MiB fwd / f+b"], out)


def plot(rows: list[Row], path, title: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not importable: no PNG")
        return False
    rows = [r for r in rows if r.vs != "Python loop"]  # a different reference: in the table only
    labels = [f"{r.title}\n[{r.kernels}]" for r in rows]
    fwd = [_ratio(r.fwd) for r in rows]
    fb = [_ratio(r.fb) for r in rows]
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(rows) + 2), 4.5))
    width = 0.38
    bars_f = ax.bar([i - width / 2 for i in xs], fwd, width, label="forward")
    fb_x = [i + width / 2 for i, v in zip(xs, fb) if v is not None]
    bars_b = ax.bar(fb_x, [v for v in fb if v is not None], width, label="forward + backward")
    for bars in (bars_f, bars_b):
        ax.bar_label(bars, fmt="%.2g", fontsize=8)
    ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
    ax.set_yscale("log")
    ax.set_ylabel("time ratio ours / torch (lower is better)")
    ax.set_xticks(list(xs), labels, rotation=20, ha="right")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    keys = [c.key for c in CASES]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 2 short rounds; numbers are not meaningful; results go to "
                        "cpu-quick-*.md so real results are not overwritten")
    p.add_argument("--cases", default=",".join(keys),
                   help=f"comma-separated subset of: {', '.join(keys)} (default: all)")
    p.add_argument("--rounds", type=int, help="interleaved rounds per side (default 5; quick 2)")
    p.add_argument("--min-time", type=float,
                   help="seconds of timing per side per round (default 0.25; quick 0.01)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads first (default: torch's)")
    p.add_argument("--peak-gflops", type=float,
                   help="machine fp32 peak for the %% columns (default: from /proc/cpuinfo, "
                        "see the stamp)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    p.add_argument("--isa", default="auto",
                   help="comma-separated CPU kernel sets to run our side on, each against torch "
                        f"(this machine: {', '.join(_C.cpu_isas())}; default: auto, the best)")
    p.add_argument("--dtype", default="float32", choices=list(DTYPES),
                   help="both sides in this dtype (default float32)")
    args = p.parse_args(argv)
    isas = [k.strip() for k in args.isa.split(",") if k.strip()]
    for isa in isas:
        if isa != "auto" and isa not in _C.cpu_isas():
            p.error(f"--isa {isa}: this machine runs {', '.join(_C.cpu_isas())} (or auto)")
    dtype = DTYPES[args.dtype]

    chosen = [k.strip() for k in args.cases.split(",") if k.strip()]
    unknown = [k for k in chosen if k not in keys]
    if unknown or not chosen:
        p.error(f"unknown case(s) {unknown}; choose from {keys}")
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (2 if args.quick else 5)
    min_time = args.min_time or (0.01 if args.quick else 0.25)
    threads = torch.get_num_threads()

    stamp = machine_stamp()
    nominal, how = nominal_peak_gflops(threads)
    log("measuring MKL sgemm for reference")
    sgemm = sgemm_gflops(0.05 if args.quick else 0.5)
    if args.peak_gflops:
        peak, source = args.peak_gflops, f"given with --peak-gflops; nominal: {how}"
    else:
        peak, source = nominal, f"nominal: {how}"
    stamp.append(f"- peak for the % columns: {peak:.0f} GFLOP/s ({source}); for scale, MKL "
                 f"sgemm 1024^3 reaches {sgemm:.0f} GFLOP/s here")
    stamp.append(f"- rounds: {rounds} interleaved per side, >= {min_time} s each"
                 + ("  **QUICK RUN: smoke test, numbers not meaningful**" if args.quick else ""))

    stamp.append(f"- dtype: {args.dtype} on both sides; our CPU kernels: "
                 f"{', '.join(_C.cpu_isa() if i == 'auto' else i for i in isas)} (the "
                 f"'our kernels' column says which ran each case)")

    rows: list[Row] = []
    for isa in isas:
        _C.set_cpu_isa(isa)
        for case in CASES:
            if case.key not in chosen:
                continue
            rows.append(run_conv(case, rounds, min_time, not args.no_memory, dtype))
            if case.key == "tutorial" and dtype == torch.float32:
                rows.extend(run_tutorial_extras(rounds, min_time))
    _C.set_cpu_isa("auto")

    loops = [r for r in rows if r.vs == "Python loop"]
    speedup = ""
    if loops:
        r = loops[0]
        times = r.fwd["loop"].median / r.fwd["ours"].median
        speedup = (f"\ncorr2d_ext.corr2d(X, K) is {times:.0f}x "
                   f"faster than the tutorial's Python-loop corr2d on the 6x8 image "
                   f"({fmt_time(r.fwd['ours'].median)} vs {fmt_time(r.fwd['loop'].median)}).\n")

    date = datetime.date.today().isoformat()
    stamp += load_report()
    text = "\n".join([
        f"# corr2d_ext vs torch on the CPU{' (quick run)' if args.quick else ''}", "",
        *stamp, "",
        "## Time per call", "",
        "Median over rounds of each round's median; ratio = ours / reference (lower is better; "
        "< 1 means corr2d_ext is faster). spread = largest (max - min) / median of the round "
        "medians over both sides: how much the machine moved during the case.", "",
        time_table(rows), speedup,
        "## Throughput and memory", "",
        "GFLOP/s from forward FLOPs 2*N*Cout*Hout*Wout*(Cin/groups)*kH*kW, forward + backward "
        "counted as 3x forward (bias ignored). Extra MiB: the peak of bytes live during the call "
        "beyond the outputs it returns (y; for fwd+bwd y and the three gradients), from the "
        "profiler's record of c10 CPU allocator events (profile_memory=True); allocations made "
        "with malloc/new inside kernels or by MKL/oneDNN themselves are not seen.", "",
        rate_table(rows, peak) if any(r.flops for r in rows) else "(no convolution cases run)",
        "",
        "Method: forward is timed with inputs that do not require grad; forward + backward as "
        "`torch.autograd.grad(f(x, w, b), (x, w, b), gy)` with leaf inputs and one precomputed "
        "gy. Each side is checked against F.conv2d (forward and all three gradients) before it "
        "is timed.", "",
    ])
    print(text)
    prefix = "cpu-quick" if args.quick else "cpu"
    if args.dtype != "float32":
        prefix += f"-{args.dtype}"
    if isas != ["auto"]:
        prefix += "-" + "-".join(isas)
    paths = save(text, f"{prefix}-{date}.md", f"{prefix}-latest.md")
    png = paths[0].parent / f"{prefix}-latest.png"
    if plot(rows, png, f"corr2d_ext / torch, {threads} threads, torch {torch.__version__}, "
                       f"{date}{' (quick)' if args.quick else ''}"):
        paths.append(png)
    log("saved " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
