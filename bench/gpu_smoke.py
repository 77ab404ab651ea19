"""Every CUDA kernel path of corr2d_ext, forward and backward, checked twice: the workload that
compute-sanitizer runs in bench/gpu_check.sh.

    python bench/gpu_smoke.py                        # all cases (seconds on a GPU)
    python bench/gpu_smoke.py --small                # one small float32 case per path (racecheck)
    python bench/gpu_smoke.py --list                 # which case takes which path; runs nothing
    python bench/gpu_smoke.py --device cpu --small   # the same logic on the CPU kernels
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 1 \\
        python bench/gpu_smoke.py

Each case runs ``corr2d_ext.conv2d`` forward, then ``autograd.grad`` for input, weight and bias,
and compares the four results with

  * ``F.conv2d`` on the same device (cuDNN on a GPU, TF32 off), in float32 for float32 and half
    precision inputs (the same rounded values, upcast) and in float64 for float64; and
  * our own op on the CPU in float64, an independent implementation of the same sums.

Before each case on a GPU, the caching allocator's free memory is filled with 0xFF bytes (NaN in
every float dtype), so an output element that no thread writes reads as NaN and fails the
comparison. (Under compute-sanitizer the caching is off and memcheck watches instead.)

Which path a case takes is worked out here from the geometry with the launchers' own rules in
csrc/cuda/corr2d_kernel.cu and corr2d_cuda.h: the forward's and the stride-1 input gradient's
tile shape and shared-memory fit, and the input gradient's stride phases, come from
tools/emulate_cuda.py's transliteration of the launcher (so they change with it), and so
does the weight gradient's plan. The run exits 2 when the chosen list no longer
covers every path, and 1, naming the case and the tensor, on any mismatch.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import corr2d_ext

# --------------------------------------------------------------------------------------------
# The launchers' rules, in Python (see the module docstring).

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import emulate_cuda as em  # noqa: E402  (the launchers' host logic, transliterated)


def pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


@dataclass(frozen=True)
class Case:
    """input (N, C, H, W), weight (O, C / groups, kH, kW), the options, and the dtypes to run."""

    name: str
    input: tuple
    weight: tuple
    bias: bool = True
    stride: tuple | int = 1
    padding: tuple | int = 0
    dilation: tuple | int = 1
    groups: int = 1
    dtypes: tuple = (torch.float32,)

    @property
    def options(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)

    def output_shape(self) -> tuple[int, int, int, int]:
        (n, _, h, w), (o, _, kh, kw) = self.input, self.weight
        (sh, sw), (ph, pw), (dh, dw) = pair(self.stride), pair(self.padding), pair(self.dilation)
        return (n, o, (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1,
                (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1)


def geometry(case: Case) -> "em.Geometry":
    (n, cin, h, w), (o, cin_g, kh, kw) = case.input, case.weight
    return em.make_geometry(case.input, case.weight, case.output_shape(), pair(case.stride),
                            pair(case.padding), pair(case.dilation), case.groups)


def tiled_path(g: "em.Geometry", dtype: torch.dtype, wl=None) -> str | None:
    """correlate()'s choice: "tiled OCBxPW" when the tiled kernel takes g (with weight layout
    wl, the forward's unless given), else None (the direct kernel)."""
    wl = wl if wl is not None else em.forward_weight_layout(g)
    ocb, pw = em.forward_variant(g)
    shape = em.tile_shape_for(g, ocb, pw)
    acc_bytes = 8 if dtype == torch.float64 else 4
    if em.tiled_fits_int32(g) and \
            em.tiled_shared_bytes(g, shape, ocb, pw, acc_bytes) <= em.kSharedBytes and \
            em.block_weights_fit_int32(g, shape, ocb, wl):
        return f"tiled {ocb}x{pw}"
    return None


def forward_path(case: Case, dtype: torch.dtype) -> str:
    """launch_forward: the tiled kernel <OCB, PW> if it takes the geometry, else direct."""
    tiled = tiled_path(geometry(case), dtype)
    return f"forward {tiled}" if tiled else "forward direct"


def input_grad_paths(case: Case, dtype: torch.dtype) -> list[str]:
    """launch_input_grad: each stride phase (forward_form.h) through the tiled or the direct
    forward kernel; zero_unreached_kernel for the phases no tap reaches."""
    g = geometry(case)
    phases = em.input_grad_phases(g)
    out = {"input grad one phase" if len(phases) == 1 else "input grad several phases"}
    for p in phases:
        if not p.taps:
            out.add("input grad zero phase")
        elif tiled_path(p.g, dtype, p.wl):
            out.add("input grad phase tiled")
        else:
            out.add("input grad phase direct")
    return sorted(out)


def paths(case: Case, dtype: torch.dtype) -> list[str]:
    plan = em.plan_weight_grad(geometry(case))  # corr2d_cuda.h's plan_weight_grad
    out = [forward_path(case, dtype),
           f"weight grad tiled {plan.tile.ocb}x{plan.tile.tb}" if plan.tiled
           else "weight grad per filter",
           "weight grad slices > 1" if plan.slices > 1 else "weight grad slices = 1"]
    if plan.tap_chunks > 1:
        out.append("weight grad > 1 tap chunk")
    out += input_grad_paths(case, dtype)
    return out


REQUIRED_PATHS = ["forward tiled 8x4", "forward tiled 1x8", "forward direct",
                  "weight grad tiled 8x3", "weight grad tiled 1x9", "weight grad per filter",
                  "weight grad slices > 1", "weight grad slices = 1", "weight grad > 1 tap chunk",
                  "input grad one phase", "input grad several phases",
                  "input grad phase tiled", "input grad phase direct", "input grad zero phase"]

f32, f64, f16, bf16 = torch.float32, torch.float64, torch.float16, torch.bfloat16
ALL_DTYPES = (f32, f64, f16, bf16)

CASES = [
    # Tiled 8x2 (several input and output channels per group).
    Case("6->8 3x3 pad 1", (2, 6, 13, 17), (8, 6, 3, 3), padding=1, dtypes=ALL_DTYPES),
    Case("6->8 3x3 stride 2", (2, 6, 19, 23), (8, 6, 3, 3), stride=2, padding=1),
    Case("6->8 dilation 2 groups 2", (2, 6, 20, 21), (8, 3, 3, 3), padding=2, dilation=2,
         groups=2, dtypes=(f32, f16)),
    Case("6->12 2x3 stride (2,1) pad (1,0) dil (1,2) groups 2, 2 column tiles, no bias",
         (2, 6, 15, 150), (12, 3, 2, 3), bias=False, stride=(2, 1), padding=(1, 0),
         dilation=(1, 2), groups=2, dtypes=(f32, f64)),
    Case("3->10 (a partial block of 8 output channels)", (1, 3, 40, 140), (10, 3, 3, 3),
         padding=1),
    Case("8->16 depthwise multiplier 2, stride 2", (2, 8, 20, 20), (16, 1, 3, 3), stride=2,
         groups=8),
    Case("4->4 2x2 stride 3 (inputs no window reads: zero input-gradient phases)",
         (2, 4, 17, 19), (4, 4, 2, 2), stride=3),
    Case("8->16 1x1 stride 2 (a downsample: 3 of 4 input-gradient phases zero)", (2, 8, 14, 15),
         (16, 8, 1, 1), stride=2, dtypes=(f32, bf16)),
    Case("3->8 7x7 stride 2 pad 3 (the stem: 4 phases of 4x4 to 3x3 taps)", (2, 3, 30, 29),
         (8, 3, 7, 7), stride=2, padding=3, dtypes=(f32, f64)),
    Case("3->4 11x1", (2, 3, 30, 20), (4, 3, 11, 1), padding=(5, 0)),
    Case("4->8 5x5 (25 taps: 2 tap chunks of the 8x3 weight gradient)", (2, 4, 20, 20),
         (8, 4, 5, 5), padding=2),
    # Tiled 1x8 (one output channel per group).
    Case("1->1 3x3 pad 1, 3 column tiles", (2, 1, 37, 300), (1, 1, 3, 3), padding=1,
         dtypes=ALL_DTYPES),
    Case("depthwise 8 ch 5x5 pad 2", (2, 8, 30, 33), (8, 1, 5, 5), padding=2, groups=8,
         dtypes=(f32, f16)),
    # 36 KiB of shared memory in float32 (tiled), 72 KiB in float64 (direct).
    Case("1->1 stride 3 (tiled in float32, direct in float64)", (1, 1, 50, 400), (1, 1, 3, 3),
         stride=3, dtypes=(f32, f64)),
    # Direct: the staged patch would exceed 48 KiB.
    Case("6->8 stride 40 (tiled in float32: the tile fits the 3x4 output; direct in float64)", (2, 6, 100, 130), (8, 6, 3, 3), stride=40, padding=1,
         dtypes=(f32, f64)),
    Case("2->4 dilation 100 (direct)", (1, 2, 210, 215), (4, 2, 3, 3), dilation=100,
         dtypes=(f32, f16)),
    Case("depthwise 4 ch stride 40 (tiled: a 3x3 output)", (1, 4, 90, 90), (4, 1, 3, 3), stride=40,
         groups=4),
    # Weight gradient: slices > 1 (a long sum, few filters; the last slice shorter) ...
    Case("1->1 3x3 on 253x251 (32 slices)", (1, 1, 253, 251), (1, 1, 3, 3), padding=1,
         dtypes=(f32, f64, bf16)),
    Case("1->1 5x5 on 256x256 (1x9 weight gradient, sliced)", (1, 1, 256, 256), (1, 1, 5, 5),
         padding=2),
    # ... and slices = 1 because there are many filters.
    Case("32->32 3x3 on 48x48 (1024 filters, 1 slice)", (2, 32, 48, 48), (32, 32, 3, 3),
         padding=1, dtypes=(f32, f16)),
]

SMALL_CASES = [
    Case("small: 12->4 groups 2 stride (2,1), 2 column tiles", (1, 12, 10, 70), (4, 6, 3, 3),
         stride=(2, 1), padding=1, groups=2),
    Case("small: 1->1 5x5 (1x9 weight gradient, sliced)", (1, 1, 20, 140), (1, 1, 5, 5),
         padding=2),
    Case("small: 3->4 5x5 (2 tap chunks)", (1, 3, 12, 12), (4, 3, 5, 5), padding=2),
    Case("small: 2->4 dilation 100 (direct)", (1, 2, 210, 215), (4, 2, 3, 3), dilation=100),
    Case("small: 8->4 2x2 stride 3 (9 input-gradient phases, 5 of them zero)", (1, 8, 17, 19),
         (4, 8, 2, 2), stride=3),
    Case("small: 16->32 3x3 (512 filters, 1 slice)", (1, 16, 12, 12), (32, 16, 3, 3),
         padding=1),
]

# --------------------------------------------------------------------------------------------
# Running and comparing

# (rtol, atol as a fraction of max |reference|), by the dtype of our result. float32: room for
# sums of 65536 terms added in another order; half precision: one rounding of the output.
TOLERANCES = {f64: (1e-9, 1e-9), f32: (1e-4, 1e-4), f16: (1e-2, 1e-3), bf16: (2e-2, 4e-3)}
NAMES = ("output", "grad_input", "grad_weight", "grad_bias")


def randn(shape, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float64)


def run(conv, input, weight, bias, grad_output, options) -> list[torch.Tensor | None]:
    """conv forward on fresh leaves, then the gradients of input, weight and bias."""
    leaves = [None if t is None else t.detach().clone().requires_grad_()
              for t in (input, weight, bias)]
    y = conv(*leaves, **options)
    grads = torch.autograd.grad(y, [t for t in leaves if t is not None], grad_output)
    return [y.detach(), grads[0], grads[1], grads[2] if bias is not None else None]


def poison_cuda_cache() -> None:
    """Refills the caching allocator with free blocks of 0xFF bytes (NaN in any float dtype).

    empty_cache first returns the free segments to the driver; the new segments are filled and
    freed, so the next allocations of the case (ours included) are carved out of NaN. Blocks
    up to 1 MiB come from the small pool, larger ones from the large pool: poison both.
    """
    if os.environ.get("PYTORCH_NO_CUDA_MEMORY_CACHING") == "1":
        return
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    blocks = [torch.full((512 * 1024,), 255, dtype=torch.uint8, device="cuda")
              for _ in range(32)]
    blocks += [torch.full((32 << 20,), 255, dtype=torch.uint8, device="cuda") for _ in range(2)]
    torch.cuda.synchronize()
    del blocks


def compare(what: str, ours: torch.Tensor | None, ref: torch.Tensor | None,
            dtype: torch.dtype) -> str | None:
    """None when ours matches ref within the dtype's tolerance, else what is wrong."""
    if ref is None:
        return None if ours is None else f"{what}: expected None"
    if ours is None:
        return f"{what}: got None"
    if tuple(ours.shape) != tuple(ref.shape):
        return f"{what}: shape {tuple(ours.shape)}, expected {tuple(ref.shape)}"
    if ours.dtype != dtype:
        return f"{what}: dtype {ours.dtype}, expected {dtype}"
    a, e = ours.detach().cpu().double(), ref.detach().cpu().double()
    rtol, atol_frac = TOLERANCES[dtype]
    scale = e.abs().max().item() if e.numel() else 0.0
    atol = atol_frac * max(scale, 1e-6)
    close = torch.isclose(a, e, rtol=rtol, atol=atol)
    if bool(close.all()):
        return None
    bad = (~close).nonzero()
    first = tuple(bad[0].tolist())
    nans = int(torch.isnan(a).sum())
    return (f"{what}: {len(bad)} of {a.numel()} elements differ, max |error| "
            f"{(a - e).abs().nan_to_num(float('inf')).max().item():.3g} (max |reference| "
            f"{scale:.3g}, rtol {rtol:g}, atol {atol:.3g}); first at {first}: {a[first].item():.6g}"
            f" vs {e[first].item():.6g}" + (f"; {nans} NaN (never written?)" if nans else ""))


def check(case: Case, dtype: torch.dtype, device: str, seed: int) -> list[str]:
    """Runs one case in one dtype on the device; returns the mismatches (empty when all agree)."""
    gen = torch.Generator().manual_seed(seed)
    # Drawn in float64 on the CPU and rounded to dtype there, so that every reference sees the
    # very values our kernels see (and no GPU kernel of torch's writes our inputs).
    x, w = randn(case.input, gen).to(dtype), randn(case.weight, gen).to(dtype)
    b = randn(case.weight[:1], gen).to(dtype) if case.bias else None
    gy = randn(case.output_shape(), gen).to(dtype)

    def on(t, dt=None):
        return None if t is None else t.to(device=device, dtype=dt or t.dtype)

    if device == "cuda":
        poison_cuda_cache()
    ours = run(corr2d_ext.conv2d, on(x), on(w), on(b), on(gy), case.options)
    if device == "cuda":
        torch.cuda.synchronize()  # a kernel fault surfaces here, attributed to this case

    ref_dtype = f64 if dtype == f64 else f32
    reference = run(F.conv2d, on(x, ref_dtype), on(w, ref_dtype), on(b, ref_dtype),
                    on(gy, ref_dtype), case.options)
    cpu_f64 = run(corr2d_ext.conv2d, x.double(), w.double(),
                  None if b is None else b.double(), gy.double(), case.options)
    problems = []
    for label, ref in ((f"F.conv2d on {device} ({str(ref_dtype)[6:]})", reference),
                       ("corr2d_ext on the CPU (float64)", cpu_f64)):
        for name, a, e in zip(NAMES, ours, ref):
            msg = compare(name, a, e, dtype)
            if msg:
                problems.append(f"vs {label}: {msg}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--small", action="store_true",
                   help="one small float32 case per path (for racecheck, which is slow)")
    p.add_argument("--list", action="store_true", help="print the cases and their paths, run none")
    args = p.parse_args(argv)

    cases = SMALL_CASES if args.small else CASES
    runs = [(case, dtype) for case in cases for dtype in case.dtypes]
    covered = {path for case, dtype in runs for path in paths(case, dtype)}
    missing = [path for path in REQUIRED_PATHS if path not in covered]
    if args.list:
        for case, dtype in runs:
            print(f"{case.name:<78} {str(dtype)[6:]:<9} {', '.join(paths(case, dtype))}")
    if missing:
        print(f"gpu_smoke: FAILED: the case list no longer covers {missing}; add cases",
              file=sys.stderr)
        return 2
    if args.list:
        return 0

    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("gpu_smoke: FAILED: no CUDA device visible to torch", file=sys.stderr)
            return 1
        if not corr2d_ext.cuda_built:
            print(f"gpu_smoke: FAILED: corr2d_ext was built without CUDA kernels "
                  f"({corr2d_ext.build_info})", file=sys.stderr)
            return 1
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        where = torch.cuda.get_device_name()
    else:
        where = "CPU"
    print(f"gpu_smoke: {len(runs)} runs on {args.device} ({where}); torch {torch.__version__}; "
          f"{corr2d_ext.build_info}", flush=True)

    t0 = time.perf_counter()
    failures = 0
    for i, (case, dtype) in enumerate(runs):
        label = f"{case.name} [{str(dtype)[6:]}]"
        try:
            problems = check(case, dtype, args.device, seed=i)
        except RuntimeError as e:  # a launch error or a device fault
            problems = [f"raised {type(e).__name__}: {str(e).strip().splitlines()[0]}"]
            if "CUDA" in str(e) or "cuda" in str(e):
                print(f"FAIL {label}: {problems[0]}\n  the CUDA context is unusable after a "
                      f"device error: stopping", flush=True)
                return 1
        status = "ok  " if not problems else "FAIL"
        print(f"{status} {label:<88} {', '.join(paths(case, dtype))}", flush=True)
        for msg in problems:
            print(f"     {msg}", flush=True)
        failures += bool(problems)

    secs = time.perf_counter() - t0
    if failures:
        print(f"gpu_smoke: FAILED: {failures} of {len(runs)} runs disagree ({secs:.1f} s)",
              flush=True)
        return 1
    print(f"gpu_smoke: all {len(runs)} runs agree with F.conv2d and with the CPU kernels "
          f"({secs:.1f} s); paths covered: {', '.join(REQUIRED_PATHS)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
