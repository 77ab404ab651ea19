"""Per-call cost of the autograd design, and of the transforms, against F.conv2d.

    python bench/transforms.py                       this build, ours vs F.conv2d
    python bench/transforms.py --before DIR          also a build of the same package in DIR
                                                     (e.g. an older commit built in place),
                                                     alternating processes round by round

Rows: forward (no graph), forward with a graph (inputs require grad, no backward), forward +
backward (``torch.autograd.grad``), on the tutorial's 6x8 image with its 1x2 kernel and on one
mid-size layer; and ``corr2d_ext.corr2d(X, K)`` against the tutorial's Python loop. Each side is
timed interleaved with F.conv2d within a process (torch.utils.benchmark, median of each round);
with ``--before``, the two builds run in separate processes (two builds of one extension
cannot share a process), alternated every round, and the table shows medians over rounds.
Writes bench/results/transforms-latest.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

SHAPES = {
    "tutorial (1,1,6,8) k(1,2)": ((1, 1, 6, 8), (1, 1, 1, 2), {}),
    "mid (8,32,32,32) k3x3 pad 1 -> 32": ((8, 32, 32, 32), (32, 32, 3, 3), {"padding": 1}),
}


def measure(min_time: float, threads: int) -> dict[str, float]:
    """One round in this process: {row label: median seconds per call}."""
    import torch

    torch.set_num_threads(threads)
    import torch.nn.functional as F
    from torch.utils.benchmark import Timer

    import corr2d_ext

    out = {}

    # One thread: every call runs on this thread (the CPU autograd engine too), so its CPU
    # time excludes the time a shared machine spends on other jobs' processes.
    clock = time.thread_time if threads == 1 else time.perf_counter

    def t(label, stmt, g):
        try:
            m = Timer(stmt=stmt, globals=g, num_threads=threads, timer=clock).blocked_autorange(
                min_run_time=min_time)
        except Exception as e:  # an older build without the transforms: no figure
            print(f"{label}: {type(e).__name__}: {str(e)[:120]}", file=sys.stderr)
            return
        out[label] = m.median

    for name, (xs, ws, kw) in SHAPES.items():
        torch.manual_seed(0)
        x, w, b = torch.randn(xs), torch.randn(ws), torch.randn(ws[0])
        gy = torch.ones(F.conv2d(x, w, b, **kw).shape)
        xg, wg, bg = (v.clone().requires_grad_() for v in (x, w, b))
        for side, f in (("ours", lambda x, w, b: corr2d_ext.conv2d(x, w, b, **kw)),
                        ("F.conv2d", lambda x, w, b: F.conv2d(x, w, b, **kw))):
            g = {"f": f, "x": x, "w": w, "b": b, "xg": xg, "wg": wg, "bg": bg, "gy": gy,
                 "grad": torch.autograd.grad}
            t(f"{name} | forward | {side}", "f(x, w, b)", g)
            t(f"{name} | forward with graph | {side}", "f(xg, wg, bg)", g)
            t(f"{name} | forward + backward | {side}", "grad(f(xg, wg, bg), (xg, wg, bg), gy)", g)

    # Transforms: per-sample gradients of a conv layer (vmap of grad), and a jvp.
    from torch.func import functional_call, grad, jvp, vmap

    torch.manual_seed(0)
    ref_layer = torch.nn.Conv2d(3, 8, 3, padding=1)
    our_layer = corr2d_ext.Conv2d(3, 8, 3, padding=1)
    our_layer.load_state_dict(ref_layer.state_dict())
    xs = torch.randn(8, 3, 16, 16)
    name = "per-sample grads, 8 x (3,16,16) k3x3 -> 8"
    for side, layer in (("ours", our_layer), ("nn.Conv2d", ref_layer)):
        params = {k: v.detach() for k, v in layer.named_parameters()}
        loss = lambda p, x, layer=layer: functional_call(layer, p, (x[None],)).square().sum()
        t(f"{name} | vmap(grad(loss)) | {side}", "f(params, xs)",
          {"f": vmap(grad(loss), in_dims=(None, 0)), "params": params, "xs": xs})
    x, w = torch.randn(8, 32, 32, 32), torch.randn(32, 32, 3, 3)
    tx, tw = torch.randn_like(x), torch.randn_like(w)
    for side, f in (("ours", lambda x, w: corr2d_ext.conv2d(x, w, padding=1)),
                    ("F.conv2d", lambda x, w: F.conv2d(x, w, padding=1))):
        if not jvp(f, (x[:1], w), (tx[:1], tw))[1].abs().sum() > 0:
            # An older build without forward AD: a zero tangent, silently; no figure.
            print(f"jvp {side}: zero tangent (no forward-mode AD)", file=sys.stderr)
            continue
        t(f"mid (8,32,32,32) k3x3 pad 1 -> 32 | jvp (tangents in x and w) | {side}",
          "jvp(f, (x, w), (tx, tw))", {"jvp": jvp, "f": f, "x": x, "w": w, "tx": tx, "tw": tw})

    X = torch.ones(6, 8)
    X[:, 2:6] = 0
    K = torch.tensor([[1.0, -1.0]])

    def loop(X, K):
        h, w = K.shape
        Y = torch.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
        for i in range(Y.shape[0]):
            for j in range(Y.shape[1]):
                Y[i, j] = (X[i:i + h, j:j + w] * K).sum()
        return Y

    assert torch.equal(corr2d_ext.corr2d(X, K), loop(X, K))
    t("tutorial corr2d(X, K) 6x8 | forward | ours", "f(X, K)", {"f": corr2d_ext.corr2d, "X": X,
                                                                 "K": K})
    t("tutorial corr2d(X, K) 6x8 | forward | Python loop", "f(X, K)", {"f": loop, "X": X, "K": K})
    return out


def run_child(pythonpath: str | None, min_time: float, threads: int) -> dict[str, float]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    # -P would drop the script's folder; run from the package's folder so that it wins.
    res = subprocess.run([sys.executable, str(Path(__file__)), "--child", str(min_time),
                          "--threads", str(threads)],
                         env=env, capture_output=True, text=True, check=True,
                         cwd=pythonpath or str(HERE.parent))
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", help="folder with an older in-place build of corr2d_ext")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.2)
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads (default 1: per-call cost, and on a shared "
                        "machine a second thread's barrier waits swamp microsecond calls)")
    p.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.threads)))
        return
    builds = {"after": str(HERE.parent)}
    if args.before:
        builds = {"before": str(Path(args.before).resolve()), **builds}
    rounds: dict[str, list[dict[str, float]]] = {k: [] for k in builds}
    for r in range(args.rounds):
        for label, path in builds.items():
            rounds[label].append(run_child(path, args.min_time, args.threads))
            print(f"round {r + 1}/{args.rounds} {label} done", file=sys.stderr, flush=True)
    med = {label: {k: statistics.median(rd[k] for rd in rs) for k in rs[0]}
           for label, rs in rounds.items()}
    spread = {label: {k: (max(rd[k] for rd in rs) - min(rd[k] for rd in rs)) /
                      statistics.median(rd[k] for rd in rs) for k in rs[0]}
              for label, rs in rounds.items()}

    import platform

    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    lines = ["# Per-call cost of the autograd design (CPU)", "",
             f"- CPU: {cpu} ({os.cpu_count()} cores, shared with other jobs: noisy), "
             f"{args.threads} thread(s), torch {torch.__version__}",
             f"- {args.rounds} rounds; each round: a fresh process per build, each row timed "
             f">= {args.min_time} s (torch.utils.benchmark), ours interleaved with F.conv2d; "
             "figures: median over rounds of each round's median"
             + ("; clock: the calling thread's CPU time (time.thread_time)"
                if args.threads == 1 else "; clock: wall time"),
             f"- largest spread (max - min) / median over rounds of any figure: "
             f"{max(v for d in spread.values() for v in d.values()):.0%}", ""]
    rows = sorted({k.rsplit(" | ", 1)[0] for k in med["after"]}, key=list(
        dict.fromkeys(k.rsplit(" | ", 1)[0] for k in med["after"])).index)
    lines.append("— (fails): the older build raises (functorch refused its C++ "
                 "autograd::Function) or, for jvp, returns a zero tangent; no figure.")
    lines.append("")
    header = "| case | call | " + " | ".join(
        [f"ours {b} (µs)" for b in builds] + ["reference (µs)", "ours after / reference"]) + " |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        case, call = row.split(" | ")
        ref_key = next(k for k in med["after"] if k.startswith(row + " | ") and
                       not k.endswith("| ours"))
        ref_name = ref_key.rsplit(" | ", 1)[1]
        ours = [med[b].get(row + " | ours") for b in builds]
        ref = med["after"][ref_key]
        lines.append(f"| {case} | {call} | "
                     + " | ".join("— (fails)" if v is None else f"{v * 1e6:.1f}" for v in ours)
                     + f" | {ref * 1e6:.1f} ({ref_name}) | "
                     + (f"{ours[-1] / ref:.2f}" if ref_name != "Python loop"
                        else f"{ours[-1] / ref:.3f} ({ref / ours[-1]:.0f}x faster)") + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = HERE / "results" / "transforms-latest.md"
    out.write_text(text)
    print(f"saved {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
