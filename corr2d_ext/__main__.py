"""The tutorial, end to end, on corr2d_ext's kernels: ``python -m corr2d_ext``.

Edge detection on the 6x8 image, then learning the [1, -1] kernel back from (X, Y). Exits
non-zero if any result is not what the tutorial shows.
"""

from __future__ import annotations

import sys

import torch

import corr2d_ext


def main() -> int:
    device = "cuda" if torch.cuda.is_available() and corr2d_ext.cuda_built else "cpu"
    where = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"corr2d_ext {corr2d_ext.__version__} on {device} ({where}); build: {corr2d_ext.build_info}")
    failures = []

    # 1. Edge detection: a white image with a black band in columns 2..5.
    X = torch.ones((6, 8), device=device)
    X[:, 2:6] = 0
    K = torch.tensor([[1.0, -1.0]], device=device)
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
    if (learned - torch.tensor([[1.0, -1.0]])).abs().max().item() > 0.1:
        failures.append(f"the learned kernel {learned.tolist()} is not within 0.1 of [1, -1]")

    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        return 1
    print("\nAll of the tutorial's results reproduced.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
