"""Per-call overhead of corr2d_ext's autograd design, in microseconds.

    python bench/overhead.py            # 5 interleaved rounds (about a minute)
    python bench/overhead.py --quick    # smoke test (seconds; noisy)

The op's autograd is a C++ ``torch::autograd::Function`` registered at the Autograd key. This
puts it next to the alternatives, on the tutorial's 6x8 image (where overhead is everything)
and on a medium problem (where the kernel starts to dominate):

  (a)  ``torch.ops.corr2d_ext.corr2d`` called directly: the C++ autograd kernel, then the CPU
       kernel. Even with inputs that need no grad the call passes through the Autograd kernel.
  (a') the same op below the Autograd key (``torch._C._AutoDispatchBelowAutograd``): dispatch
       and the CPU kernel only, the floor for any wrapper. Forward only.
  (b)  a Python ``torch.autograd.Function`` around the same kernels: forward calls the op
       below the Autograd key, backward calls ``corr2d_input_grad`` / ``corr2d_weight_grad``
       below it too, so none of the C++ autograd kernel's cost is paid.
  (c)  ``corr2d_ext.conv2d``: the public function, Python argument normalization + (a).
  (d)  ``F.conv2d``.

Columns: forward with inputs that need no grad; forward with leaf inputs that require grad
(records the graph); forward + backward as ``torch.autograd.grad(y, (x, w, b), gy)``.
"""

from __future__ import annotations

import argparse
import sys

from _harness import fmt_time, interleaved, load_report, log, machine_stamp, md_table, save

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import corr2d_ext  # noqa: E402

op = torch.ops.corr2d_ext.corr2d
input_grad_op = torch.ops.corr2d_ext.corr2d_input_grad
weight_grad_op = torch.ops.corr2d_ext.corr2d_weight_grad
below_autograd = torch._C._AutoDispatchBelowAutograd


class PyCorr2d(torch.autograd.Function):
    """(b): the op's kernels under a Python autograd.Function, the C++ autograd kernel skipped."""

    @staticmethod
    def forward(ctx, input, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(input, weight)
        ctx.params = (stride, padding, dilation, groups)
        with below_autograd():
            return op(input, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None
        with below_autograd():
            if ctx.needs_input_grad[0]:
                grad_input = input_grad_op(grad_output, weight, input.shape[2:], *ctx.params)
            if ctx.needs_input_grad[1]:
                grad_weight = weight_grad_op(input, grad_output, weight.shape[2:], *ctx.params)
            if ctx.needs_input_grad[2]:
                grad_bias = grad_output.sum((0, 2, 3))
        return grad_input, grad_weight, grad_bias, None, None, None, None


def make_variants(padding: int):
    p = [padding, padding]
    one = [1, 1]

    def op_direct(x, w, b):
        return op(x, w, b, one, p, one, 1)

    def op_below(x, w, b):
        with below_autograd():
            return op(x, w, b, one, p, one, 1)

    def py_function(x, w, b):
        return PyCorr2d.apply(x, w, b, one, p, one, 1)

    def public(x, w, b):
        return corr2d_ext.conv2d(x, w, b, padding=padding)

    def reference(x, w, b):
        return F.conv2d(x, w, b, padding=padding)

    return {
        "(a) op, C++ autograd": op_direct,
        "(a') op below Autograd key": op_below,
        "(b) Python autograd.Function": py_function,
        "(c) corr2d_ext.conv2d": public,
        "(d) F.conv2d": reference,
    }


CASES = {
    "tutorial": ("tutorial 6x8, kernel 1x2 (N=1 1->1)", (1, 1, 6, 8), (1, 1, 1, 2), 0),
    "medium": ("medium: N=1 8->8 3x3 on 16x16 pad 1", (1, 8, 16, 16), (8, 8, 3, 3), 1),
}


def check(name, variants, x, w, b, gy) -> None:
    """Every variant must agree with F.conv2d, forward and gradients, before it is timed."""
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    y_ref = F.conv2d(*leaves, padding=variants["padding"])
    g_ref = torch.autograd.grad(y_ref, leaves, gy)
    for label, f in variants["fns"].items():
        y = f(*leaves)
        outs = [("forward", y, y_ref)]
        if y.requires_grad:
            outs += list(zip(("grad input", "grad weight", "grad bias"),
                             torch.autograd.grad(y, leaves, gy), g_ref))
        for what, a, r in outs:
            if not torch.allclose(a, r, rtol=1e-4, atol=1e-5):
                sys.exit(f"overhead: ABORT: {name}: {label}: {what} differs from F.conv2d "
                         f"(max |error| {(a - r).abs().max().item():.3g})")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 short rounds")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 5; quick 2)")
    ap.add_argument("--min-time", type=float,
                    help="seconds per variant per round (default 0.2; quick 0.02)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads first")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (2 if args.quick else 5)
    min_time = args.min_time or (0.02 if args.quick else 0.2)

    sections = []
    for key, (title, xs, ws, padding) in CASES.items():
        if key == "tutorial":
            x = torch.ones(xs)
            x[..., 2:6] = 0
            w = torch.tensor([1.0, -1.0]).reshape(ws)
        else:
            gen = torch.Generator().manual_seed(0)
            x, w = torch.randn(xs, generator=gen), torch.randn(ws, generator=gen)
        b = torch.full((ws[0],), 0.5)
        fns = make_variants(padding)
        gy = torch.randn(F.conv2d(x, w, b, padding=padding).shape,
                         generator=torch.Generator().manual_seed(1))
        log(f"[{key}] checking every variant against F.conv2d")
        check(key, {"fns": fns, "padding": padding}, x, w, b, gy)

        xg, wg, bg = (t.clone().requires_grad_() for t in (x, w, b))
        differentiable = {k: f for k, f in fns.items() if not k.startswith("(a')")}
        cols = {
            "fwd, no grad": interleaved(
                {k: ("f(x, w, b)", {"f": f, "x": x, "w": w, "b": b}) for k, f in fns.items()},
                rounds, min_time, f"{key} fwd no-grad"),
            "fwd, graph": interleaved(
                {k: ("f(x, w, b)", {"f": f, "x": xg, "w": wg, "b": bg})
                 for k, f in differentiable.items()},
                rounds, min_time, f"{key} fwd graph"),
            "fwd+bwd": interleaved(
                {k: ("grad(f(x, w, b), (x, w, b), gy)",
                     {"f": f, "x": xg, "w": wg, "b": bg, "gy": gy, "grad": torch.autograd.grad})
                 for k, f in differentiable.items()},
                rounds, min_time, f"{key} fwd+bwd"),
        }
        rows = []
        for label in fns:
            cells = [label]
            for col in cols.values():
                cells.append(fmt_time(col[label].median) if label in col else "—")
            spread = max(col[label].spread for col in cols.values() if label in col)
            cells.append(f"{100 * spread:.0f}%")
            rows.append(cells)
        sections += [f"### {title}", "",
                     md_table(["variant", *cols, "spread"], rows, align="lrrrr"), ""]

    text = "\n".join([
        f"# corr2d_ext per-call overhead{' (quick run)' if args.quick else ''}", "",
        *machine_stamp(),
        f"- rounds: {rounds} interleaved over all variants, >= {min_time} s each"
        + ("  **QUICK RUN: smoke test, numbers not meaningful**" if args.quick else ""),
        *load_report(),
        "", __doc__.split("\n\n", 2)[2].strip(), "",
        "Median per call over rounds; spread = (max - min) / median of the round medians.",
        "", *sections,
    ])
    print(text)
    name = "overhead-quick-latest.md" if args.quick else "overhead-latest.md"
    log("saved " + ", ".join(str(p) for p in save(text, name)))


if __name__ == "__main__":
    main()
