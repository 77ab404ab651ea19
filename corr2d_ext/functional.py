"""The functional API: argument normalization in front of ``torch.ops.corr2d_ext.corr2d``.

Nothing here checks or computes shapes beyond turning Python arguments into the op's form
(ints into pairs, padding strings into numbers, unbatched into batched): the one argument check
lives in the op (``csrc/corr2d.cpp``), so these functions and the raw op fail alike.
"""

from __future__ import annotations

import operator
from typing import Sequence, Union

import torch
import torch.nn.functional as F

from . import _ops

IntOrPair = Union[int, Sequence[int]]

__all__ = ["corr2d", "conv2d"]


def _int(value, name: str, expected: str = "an int or a sequence of 2 ints") -> int:
    """One integer argument, taken as F.conv2d takes it: an int or anything with __index__ (a
    NumPy integer, an integer tensor of one element), but not a bool or a float, which F.conv2d
    rejects with a TypeError too; and within int64, as the op's schema needs."""
    if isinstance(value, torch.SymInt):
        return value
    if not isinstance(value, bool):
        try:
            value = operator.index(value)
        except TypeError:
            pass
        else:
            if not -(2**63) <= value < 2**63:
                raise ValueError(f"expected {name} to fit in 64 bits, but got {name}={value}")
            return value
    raise TypeError(f"expected {name} to be {expected}, but got {type(value).__name__}: {value!r}")


def _pair(value: IntOrPair, name: str) -> list[int]:
    """An int, or a sequence of one or two ints, as two ints (as F.conv2d takes them)."""
    if isinstance(value, (list, tuple, torch.Size)):
        if len(value) == 1:
            return [_int(value[0], name)] * 2
        if len(value) == 2:
            return [_int(v, name) for v in value]
        raise RuntimeError(
            f"expected {name} to be a single integer value or a list of 2 values to match the "
            f"convolution dimensions, but got {name}={list(value)}"
        )
    return [_int(value, name)] * 2


def _same_padding(
    input: torch.Tensor, weight: torch.Tensor, stride: list[int], dilation: list[int]
) -> tuple[torch.Tensor, list[int]]:
    """Padding for padding='same': output size equal to input size.

    The total padding on an axis is dilation * (kernel - 1); when it is odd (an even kernel),
    the extra zero goes after the input, as F.conv2d does. That one extra row or column is
    padded explicitly; the symmetric rest is the op's own padding.
    """
    if any(s != 1 for s in stride):
        raise RuntimeError("padding='same' is not supported for strided convolutions")
    if weight.dim() != 4:
        return input, [0, 0]  # the op's check reports the weight's shape
    totals = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
    padding = [t // 2 for t in totals]
    extra = [t - 2 * p for t, p in zip(totals, padding)]
    if any(extra):
        input = F.pad(input, [0, extra[1], 0, extra[0]])
    return input, padding


def conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair | str = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """2-D cross-correlation, with the signature and semantics of ``F.conv2d``.

    Args:
        input: ``(N, C_in, H, W)``, or ``(C_in, H, W)`` unbatched.
        weight: ``(C_out, C_in / groups, kH, kW)``.
        bias: ``(C_out,)`` or None.
        stride, dilation: an int or a pair ``(rows, cols)``, each >= 1.
        padding: an int or a pair of zeros added on both sides of each axis, or ``'valid'``
            (none) or ``'same'`` (output as large as the input; stride must be 1).
        groups: splits the channels into this many independent correlations.

    Returns:
        ``(N, C_out, H_out, W_out)`` (or ``(C_out, H_out, W_out)`` unbatched), with
        ``H_out = (H + 2 * padding - dilation * (kH - 1) - 1) // stride + 1``, likewise W_out.

    Example:
        >>> x = torch.randn(2, 4, 8, 8)
        >>> w = torch.randn(6, 2, 3, 3)
        >>> conv2d(x, w, stride=2, padding=1, groups=2).shape
        torch.Size([2, 6, 4, 4])
    """
    if (
        type(stride) is int and type(padding) is int and type(dilation) is int
        and type(groups) is int and isinstance(input, torch.Tensor) and input.dim() == 4
    ):
        # The common call, kept cheap: on a small image the argument handling below costs as
        # much as the correlation itself.
        return _ops.corr2d(input, weight, bias, (stride, stride), (padding, padding),
                           (dilation, dilation), groups)
    stride = _pair(stride, "stride")
    dilation = _pair(dilation, "dilation")
    groups = _int(groups, "groups", "an int")
    unbatched = isinstance(input, torch.Tensor) and input.dim() == 3
    if unbatched:
        input = input.unsqueeze(0)
    if isinstance(padding, str):
        if padding == "valid":
            padding = [0, 0]
        elif padding == "same":
            input, padding = _same_padding(input, weight, stride, dilation)
        else:
            raise RuntimeError(
                f"Invalid padding string: {padding!r}: expected 'valid' or 'same', or ints"
            )
    else:
        padding = _pair(padding, "padding")
    output = _ops.corr2d(input, weight, bias, stride, padding, dilation, groups)
    return output.squeeze(0) if unbatched else output


def corr2d(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """The tutorial's two-dimensional cross-correlation of one image with one kernel.

    Computes ``Y[i, j] = (X[i:i + h, j:j + w] * K).sum()`` for every window that fits, like the
    tutorial's Python loop, with the compiled kernel. Differentiable in both ``X`` and ``K``.

    Args:
        X: ``(H, W)`` image.
        K: ``(h, w)`` kernel, no larger than the image.

    Returns:
        ``(H - h + 1, W - w + 1)``.

    Example:
        >>> X = torch.ones(6, 8); X[:, 2:6] = 0
        >>> corr2d(X, torch.tensor([[1.0, -1.0]]))[0]
        tensor([ 0.,  1.,  0.,  0.,  0., -1.,  0.])
    """
    if not (isinstance(X, torch.Tensor) and isinstance(K, torch.Tensor)
            and X.dim() == K.dim() == 2):
        _reject_2d(X, K)
    # One composite op: on the 6x8 image, views and list arguments made here would cost as
    # much as the correlation.
    return _ops.corr2d_2d(X, K)


def _reject_2d(X, K) -> None:
    for name, t in (("X", X), ("K", K)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"corr2d: expected {name} to be a 2-D tensor, but got "
                            f"{type(t).__name__}")
        if t.dim() != 2:
            raise RuntimeError(f"corr2d: expected {name} to be a 2-D tensor, but got {name} of "
                               f"size {list(t.shape)}")
