"""The tutorial, end to end, on corr2d_ext's kernels: ``python -m corr2d_ext [--out PNG]``.

1. Edge detection on the tutorial's 6x8 image, then learning the [1, -1] kernel back from
   (X, Y), as the tutorial does.
2. The same on a photograph that scikit-learn ships (``china.jpg``, nothing is downloaded): the
   [1, -1] kernel finds vertical edges, its transpose horizontal ones, and a 3x3 kernel learned
   from (photo, the photo's Laplacian edge map) finds both; one PNG shows the four side by side.
   This part needs the ``examples`` extra (matplotlib, scikit-learn); without it the demo says
   how to get it and runs the rest.

Exits non-zero if any result is not what the tutorial shows, or if an edge map of the photo
differs from ``F.conv2d``'s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

import corr2d_ext

#: The tutorial's edge detector: 1 where white turns black left to right, -1 the other way.
EDGE_KERNEL = ((1.0, -1.0),)

#: The edge map the demo learns a kernel for: the discrete Laplacian, which answers to edges of
#: every direction (and is zero on flat and on linear ramps).
LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))

#: Where the picture goes unless --out says otherwise.
DEFAULT_OUT = Path(tempfile.gettempdir()) / "corr2d_ext" / "edges.png"

MISSING_EXTRA = ("It needs matplotlib and scikit-learn: pip install 'corr2d_ext[examples]' "
                 "(in a checkout, make demo installs them).")


def tutorial(device: str) -> list[str]:
    """The tutorial's sections 3 and 4 on our kernels; returns what did not reproduce."""
    failures = []

    # 1. Edge detection: a white image with a black band in columns 2..5.
    X = torch.ones((6, 8), device=device)
    X[:, 2:6] = 0
    K = torch.tensor(EDGE_KERNEL, device=device)
    print("\nX =", X.cpu(), sep="\n")
    Y = corr2d_ext.corr2d(X, K)
    print("\nY = corr2d(X, K): 1 marks white-to-black, -1 black-to-white", Y.cpu(), sep="\n")
    expected = torch.zeros(6, 7, device=device)
    expected[:, 1] = 1
    expected[:, 5] = -1
    if not torch.equal(Y, expected):
        failures.append("Y is not the tutorial's edge map")

    Yt = corr2d_ext.corr2d(X.t(), K)
    print("\ncorr2d(X.t(), K): the vertical-edge kernel sees no edge in the transposed image",
          Yt.cpu(), sep="\n")
    if Yt.shape != (8, 5) or bool(Yt.any()):
        failures.append("corr2d(X.t(), K) is not all zeros of size 8x5")

    # 2. Learn the kernel from (X, Y) with our Conv2d, as the tutorial does with nn.Conv2d.
    torch.manual_seed(0)
    conv2d = corr2d_ext.Conv2d(1, 1, kernel_size=(1, 2), bias=False).to(device)
    X4 = X.reshape((1, 1, 6, 8))
    Y4 = Y.reshape((1, 1, 6, 7))
    lr = 3e-2
    print(f"\nLearning a 1x2 kernel from (X, Y): 10 steps of gradient descent, lr {lr}")
    for i in range(10):
        Y_hat = conv2d(X4)
        loss = (Y_hat - Y4) ** 2
        conv2d.zero_grad()
        loss.sum().backward()
        conv2d.weight.data[:] -= lr * conv2d.weight.grad
        if (i + 1) % 2 == 0:
            print(f"batch {i + 1}, loss {loss.sum():.3f}")
    learned = conv2d.weight.data.reshape((1, 2)).cpu()
    print("learned kernel:", learned)
    if loss.sum().item() >= 0.1:
        failures.append(f"the loss after 10 steps is {loss.sum().item():.3f}, not < 0.1")
    if (learned - torch.tensor(EDGE_KERNEL)).abs().max().item() > 0.1:
        failures.append(f"the learned kernel {learned.tolist()} is not within 0.1 of [1, -1]")
    return failures


def load_photo() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's sample photograph ``china.jpg`` (a temple, 427 x 640), shipped with the
    package: returns ``(rgb, gray)``, ``(427, 640, 3)`` uint8 and ``(427, 640)`` float32 in
    [0, 1] (ITU-R 601 luma). Raises ImportError without scikit-learn."""
    import numpy as np
    from sklearn.datasets import load_sample_image

    rgb = torch.from_numpy(np.array(load_sample_image("china.jpg")))
    luma = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
    gray = (rgb.double() / 255) @ luma
    return rgb, gray.float()


def learn_kernel(photo: torch.Tensor, target: torch.Tensor, kernel_size, seed: int = 0):
    """A kernel learned from (photo, target) with corr2d_ext.Conv2d: the least-squares fit of
    ``corr2d(photo, kernel)`` to ``target``, by L-BFGS (plain gradient descent, the tutorial's,
    crawls here, because neighbouring pixels of a photo are nearly equal, which makes the
    problem badly conditioned). Returns ``(kernel, final mean squared error)``."""
    torch.manual_seed(seed)
    conv = corr2d_ext.Conv2d(1, 1, kernel_size, bias=False).to(photo.device)
    x, y = photo[None, None], target[None, None]
    optimizer = torch.optim.LBFGS(conv.parameters(), max_iter=100, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-10, tolerance_change=1e-14)

    def closure():
        optimizer.zero_grad()
        loss = ((conv(x) - y) ** 2).mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        loss = ((conv(x) - y) ** 2).mean().item()
    return conv.weight.detach()[0, 0], loss


def reference_conv(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``F.conv2d`` of one ``(H, W)`` image with one kernel, summed in float64 (so that no TF32
    on a GPU blurs the reference) and returned in the image's dtype."""
    out = F.conv2d(image.double()[None, None], kernel.double()[None, None])[0, 0]
    return out.to(image.dtype)


def edge_maps(photo: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Edge maps of a grayscale photo ``(H, W)`` by ``corr2d_ext.corr2d``, as
    ``{title: (kernel, map)}``: the tutorial's [1, -1] (vertical edges, ``(H, W - 1)``), its
    transpose (horizontal edges, ``(H - 1, W)``), and a 3x3 kernel learned from (photo, the
    photo's Laplacian edge map by ``F.conv2d``) (edges of every direction, ``(H - 2, W - 2)``).

    Example:
        >>> maps = edge_maps(torch.rand(32, 48))
        >>> [tuple(m.shape) for _, m in maps.values()]
        [(32, 47), (31, 48), (30, 46)]
    """
    K = torch.tensor(EDGE_KERNEL, device=photo.device)
    laplacian = torch.tensor(LAPLACIAN, device=photo.device)
    target = reference_conv(photo, laplacian)
    learned, _ = learn_kernel(photo, target, laplacian.shape)
    return {
        "K = [1, -1]: vertical edges": (K, corr2d_ext.corr2d(photo, K)),
        "K.t(): horizontal edges": (K.t(), corr2d_ext.corr2d(photo, K.t())),
        "learned 3x3 kernel: all edges": (learned, corr2d_ext.corr2d(photo, learned)),
    }


def save_figure(rgb: torch.Tensor, maps: dict, path: Path) -> Path:
    """The photo and its edge maps side by side (2 x 2) in one PNG at `path`; returns path.
    Each edge map is drawn gray at 0, white for positive, black for negative, clipped at its
    99.5th percentile of magnitude so that a few strong edges do not wash out the rest."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12.8, 9.4), constrained_layout=True)
    axes = axes.ravel()
    axes[0].imshow(rgb.numpy())
    axes[0].set_title(f"photo (scikit-learn's china.jpg, {rgb.shape[0]} x {rgb.shape[1]})")
    for ax, (title, (kernel, edge)) in zip(axes[1:], maps.items()):
        edge = edge.detach().float().cpu()
        limit = torch.quantile(edge.abs().flatten()[::7], 0.995).item() or 1.0
        ax.imshow(edge.numpy(), cmap="gray", vmin=-limit, vmax=limit)
        # Rounded, with + 0.0 turning -0.0 into 0: the learned kernel's 1e-8s are noise.
        rows = "; ".join(", ".join(f"{round(v, 2) + 0.0:g}" for v in row)
                         for row in kernel.cpu().tolist())
        ax.set_title(f"{title}\ncorr2d(photo, [{rows}])", fontsize=10)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle("Edge detection with corr2d_ext.corr2d. Edge maps: gray 0, white > 0, black < 0 "
                 "(so [1, -1] draws light-then-dark white, the tutorial's 1)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def photo_demo(out: Path, device: str) -> list[str]:
    """Edge detection on the photo, checked against F.conv2d, drawn into `out`; returns what
    failed. Raises ImportError when the examples extra is missing."""
    import matplotlib  # noqa: F401  (fail before the work, not after)

    rgb, gray = load_photo()
    photo = gray.to(device)
    print(f"\nEdge detection on a photograph: {tuple(photo.shape)} grayscale")
    maps = edge_maps(photo)
    failures = []
    for title, (kernel, edge) in maps.items():
        reference = reference_conv(photo, kernel)
        difference = (edge - reference).abs().max().item()
        print(f"  {title:32s} {tuple(edge.shape)}, max |ours - F.conv2d| = {difference:.1e}")
        if difference > 1e-5:
            failures.append(f"the edge map '{title}' differs from F.conv2d's by {difference:.1e}")
    learned = next(kernel for title, (kernel, _) in maps.items() if title.startswith("learned"))
    error = (learned.cpu() - torch.tensor(LAPLACIAN)).abs().max().item()
    print("  learned from (photo, its Laplacian edge map):", learned.cpu(), sep="\n")
    if error > 1e-3:
        failures.append(f"the learned kernel is {error:.1e} from the Laplacian, not within 1e-3")
    path = save_figure(rgb, maps, out)
    print(f"\nThe photo and its edge maps: {path.resolve()}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corr2d_ext",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"the PNG of the photo and its edge maps (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() and corr2d_ext.cuda_built else "cpu"
    where = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"corr2d_ext {corr2d_ext.__version__} on {device} ({where}); "
          f"build: {corr2d_ext.build_info}")

    failures = tutorial(device)
    try:
        failures += photo_demo(args.out, device)
    except ImportError as error:
        print(f"\nSkipped edge detection on a photograph ({error}). {MISSING_EXTRA}")

    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        return 1
    print("\nAll of the tutorial's results reproduced.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
