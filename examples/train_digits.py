"""LeNet-5 on scikit-learn's handwritten digits, with corr2d_ext.Conv2d next to nn.Conv2d.

    python examples/train_digits.py               # 10 epochs, 1 thread (or a GPU when there is one)
    python examples/train_digits.py --epochs 30 --out-dir /tmp/digits

The data set ships with scikit-learn (sklearn.datasets.load_digits: 1797 images of 8x8, 16 gray
levels), so nothing is downloaded. The images are scaled up to 28x28 and padded to 32x32, the
input LeNet-5 was made for, and split 80/20 (stratified, fixed seed) into training and test.

Two copies of LeNet-5 (ReLU and max pooling) start from the same weights (one state_dict, loaded
into both) and see the same batches in the same order: one with corr2d_ext.Conv2d layers, one
with nn.Conv2d. Each epoch trains one, then the other, so that both are timed under the same
load. The script prints test accuracy and seconds per epoch for both and saves, in --out-dir
(default examples/results/), digits.png (loss and accuracy curves) and digits.md (the figures).

Needs the examples extra: pip install 'corr2d_ext[examples]' (matplotlib, scikit-learn; tqdm
draws the progress bar when installed).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import corr2d_ext

RESULTS = Path(__file__).resolve().parent / "results"

#: The two models, by the name the figures use.
CONVS = {"corr2d_ext.Conv2d": corr2d_ext.Conv2d, "nn.Conv2d": nn.Conv2d}


def load_data(dtype=torch.float32, seed: int = 0):
    """scikit-learn's digits as ``(x_train, y_train, x_test, y_test)``: images ``(N, 1, 32, 32)``
    (bilinear 8 -> 28, then 2 pixels of zero padding, then standardized with the training
    images' mean and deviation), labels ``(N,)`` in 0..9; 1437 training and 360 test images,
    each class split 80/20."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float64)[:, None] / 16
    images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    images = F.pad(images, [2, 2, 2, 2])
    labels = torch.tensor(digits.target)
    train, test = train_test_split(torch.arange(len(labels)).numpy(), test_size=0.2,
                                   random_state=seed, stratify=labels.numpy())
    train, test = torch.from_numpy(train), torch.from_numpy(test)
    mean, std = images[train].mean(), images[train].std()
    images = (images - mean) / std
    return images[train].to(dtype), labels[train], images[test].to(dtype), labels[test]


def lenet(conv=corr2d_ext.Conv2d) -> nn.Sequential:
    """LeNet-5 for ``(N, 1, 32, 32)`` images, its two convolutions made by `conv` (a class with
    nn.Conv2d's constructor), with ReLU and max pooling as is usual now. Output ``(N, 10)``."""
    return nn.Sequential(
        conv(1, 6, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),   # 6 x 28 x 28 -> 6 x 14 x 14
        conv(6, 16, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),  # 16 x 10 x 10 -> 16 x 5 x 5
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )


class TextBar:
    """A progress bar for when tqdm is not installed: ``desc [#####.....] 12/23`` on stderr."""

    def __init__(self, total: int, desc: str = "", width: int = 30):
        self.total, self.desc, self.width, self.n = total, desc, width, 0
        self._draw()

    def update(self, n: int = 1):
        self.n += n
        self._draw()

    def _draw(self):
        filled = self.width * self.n // max(1, self.total)
        sys.stderr.write(f"\r{self.desc} [{'#' * filled}{'.' * (self.width - filled)}] "
                         f"{self.n}/{self.total}")
        sys.stderr.flush()

    def close(self):
        sys.stderr.write("\r" + " " * (len(self.desc) + self.width + 20) + "\r")
        sys.stderr.flush()


def progress_bar(total: int, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return TextBar(total, desc)
    return tqdm(total=total, desc=desc, leave=False, unit="batch")


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Percentage of `x` that `model` classifies as `y`."""
    model.eval()
    with torch.no_grad():
        correct = sum((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
                      for i in range(0, len(x), batch_size))
    model.train()
    return 100 * correct / len(x)


def run(
    *,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 3e-3,
    train_subset: int | None = None,
    seed: int = 0,
    dtype=torch.float32,
    device: str = "cpu",
    progress: bool = True,
    log=print,
) -> dict:
    """Trains both LeNets (same initial weights, same batches, Adam with the learning rate
    falling to 0 along a cosine) and returns, by model name,
    ``{"losses": per step, "accuracy": test % per epoch, "seconds": training s per epoch,
    "model": the trained model}``, plus ``"config"``.

    `train_subset` trains on the first that many training images only (for quick tests).
    """
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    x_train, y_train, x_test, y_test = load_data(dtype, seed)
    if train_subset is not None:
        x_train, y_train = x_train[:train_subset], y_train[:train_subset]
    x_train, y_train, x_test, y_test = (t.to(device) for t in (x_train, y_train, x_test, y_test))

    torch.manual_seed(seed)
    models = {name: lenet(conv).to(dtype=dtype, device=device) for name, conv in CONVS.items()}
    first, *others = models.values()
    for model in others:
        model.load_state_dict(first.state_dict())  # the same initial weights
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=lr) for name, m in models.items()}
    steps = len(x_train) // batch_size
    # The learning rate falls to 0 along a cosine: the last epochs settle instead of jumping
    # about by a percent, so two runs that differ in rounding end where they can be compared.
    schedules = {name: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=epochs * steps)
                 for name, o in optimizers.items()}
    results = {name: {"losses": [], "accuracy": [], "seconds": [], "model": m}
               for name, m in models.items()}
    order = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        permutation = torch.randperm(len(x_train), generator=order).to(device)
        for name, model in models.items():
            optimizer, record = optimizers[name], results[name]
            bar = progress_bar(steps, f"epoch {epoch + 1}/{epochs} {name}") if progress else None
            if device != "cpu":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            for step in range(steps):
                batch = permutation[step * batch_size:(step + 1) * batch_size]
                loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedules[name].step()
                record["losses"].append(loss.item())
                if bar is not None:
                    bar.update()
            if device != "cpu":
                torch.cuda.synchronize(device)
            record["seconds"].append(time.perf_counter() - start)
            if bar is not None:
                bar.close()
            record["accuracy"].append(accuracy(model, x_test, y_test))
        log(f"epoch {epoch + 1:2d}/{epochs}: " + " | ".join(
            f"{name} loss {statistics.fmean(r['losses'][-steps:]):.4f}, "
            f"test {r['accuracy'][-1]:.1f}%, {r['seconds'][-1]:.2f} s"
            for name, r in results.items()))
    results["config"] = dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                             train_images=len(x_train), test_images=len(x_test),
                             dtype=str(dtype).replace("torch.", ""), device=device,
                             machine=machine(device), load=load)
    return results


def machine(device: str) -> str:
    """One line: the processor (or GPU), the thread count and the torch version."""
    if device != "cpu":
        what = torch.cuda.get_device_name(device)
    else:
        what = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                what = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
        except (OSError, StopIteration):
            pass
    threads = torch.get_num_threads()
    return f"{what}, {threads} thread{'s' if threads > 1 else ''}, torch {torch.__version__}"


def save_figure(results: dict, path: Path) -> Path:
    """Training loss per step (averaged over each 10 steps) and test accuracy per epoch of both
    models, in one small PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in results if n != "config"]
    steps = len(results[names[0]]["losses"]) // len(results[names[0]]["accuracy"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), constrained_layout=True)
    for name, style in zip(names, ("-", "--")):
        losses = torch.tensor(results[name]["losses"])
        window = min(10, len(losses))
        smooth = losses[: len(losses) // window * window].view(-1, window).mean(1)
        left.plot((torch.arange(len(smooth)) + 0.5) * window / steps, smooth, style, label=name)
        accuracy = results[name]["accuracy"]
        right.plot(range(1, len(accuracy) + 1), accuracy, style, marker="o", markersize=3,
                   label=f"{name}: {accuracy[-1]:.1f}%")
    left.set(xlabel="epoch", ylabel="training loss", yscale="log",
             title="loss (mean of 10 steps)")
    right.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    left.legend()
    right.legend(loc="lower right")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle("LeNet-5 on scikit-learn's digits: the same model and batches, two Conv2d's",
                 fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def summary(results: dict, command: str = "python examples/train_digits.py") -> str:
    """The figures as markdown: how they were made, a table of both models, the picture."""
    c = results["config"]
    names = [n for n in results if n != "config"]
    steps = len(results[names[0]]["losses"]) // c["epochs"]
    lines = [
        "# LeNet-5 on scikit-learn's digits",
        "",
        f"`{command}`: {c['epochs']} epochs of {c['train_images']} training images (32x32), "
        f"tested on {c['test_images']}; batch {c['batch_size']}, Adam lr {c['lr']} falling to 0 "
        f"along a cosine, {c['dtype']}, on {c['machine']} (load average {c['load']:.1f} when it "
        "started). Both models start from the same weights and see the same batches. Seconds "
        "are training time per epoch (forward, backward, step; no evaluation).",
        "",
        "| convolution | test accuracy | final training loss | s / epoch (median) | "
        "s / epoch (first) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in names:
        r = results[name]
        lines.append(f"| `{name}` | {r['accuracy'][-1]:.2f}% | "
                     f"{statistics.fmean(r['losses'][-steps:]):.4f} | "
                     f"{statistics.median(r['seconds']):.3f} | {r['seconds'][0]:.3f} |")
    lines += ["", "![loss and accuracy](digits.png)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available()
                        and corr2d_ext.cuda_built else "cpu")
    # One thread by default: LeNet on 32x32 images is too small for intra-op threads to pay
    # much, and they make timings erratic (tenfold slower epochs) when other work shares the
    # cores, which is the common case on a small machine.
    parser.add_argument("--threads", type=int, default=1,
                        help="torch's intra-op threads (default 1; 0: torch's default, one per "
                        "core)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS,
                        help=f"where digits.png and digits.md go (default {RESULTS})")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    print(f"LeNet-5 on scikit-learn's digits, {args.epochs} epochs on {machine(args.device)}")
    results = run(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                  device=args.device)
    options = sys.argv[1:] if argv is None else argv
    text = summary(results, " ".join(["python examples/train_digits.py", *options]))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "digits.md").write_text(text)
    png = save_figure(results, args.out_dir / "digits.png")
    print("\n" + text.split("\n", 2)[2].split("\n![")[0])
    print(f"saved {png} and {args.out_dir / 'digits.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
