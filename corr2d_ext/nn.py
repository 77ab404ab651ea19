"""Layers built on the op: the tutorial's ``Conv2D`` and ``Conv2d``, a drop-in for ``nn.Conv2d``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import functional

__all__ = ["Conv2D", "Conv2d"]


class Conv2D(nn.Module):
    """The tutorial's convolution layer: one ``(h, w)`` kernel and a scalar bias.

    ``forward(X) = corr2d(X, weight) + bias`` on a 2-D image, with ``weight`` drawn from
    ``torch.rand(kernel_size)`` and ``bias`` starting at zero, as in the tutorial.

    Args:
        kernel_size: ``(h, w)``.

    Shape:
        input ``(H, W)``, output ``(H - h + 1, W - w + 1)``.

    Example:
        >>> layer = Conv2D((1, 2))
        >>> layer(torch.ones(6, 8)).shape
        torch.Size([6, 7])
    """

    def __init__(self, kernel_size):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(kernel_size))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.corr2d(x, self.weight) + self.bias

    def extra_repr(self) -> str:
        return f"kernel_size={tuple(self.weight.shape)}"


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` computed by corr2d_ext's kernels.

    A drop-in: it is an ``nn.Conv2d`` (same constructor, argument checks, parameter names and
    shapes, initialisation, ``padding_mode``s and ``state_dict``) whose forward runs
    ``corr2d_ext.conv2d`` instead of ATen's convolution, so a ``state_dict`` moves between the
    two in both directions and their outputs agree.

    Args:
        in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
        bias=True, padding_mode='zeros', device=None, dtype=None: as ``nn.Conv2d``.

    Shape:
        input ``(N, C_in, H, W)`` or ``(C_in, H, W)``; output ``(N, C_out, H_out, W_out)`` or
        ``(C_out, H_out, W_out)``, sizes as ``nn.Conv2d``.

    Example:
        >>> layer = Conv2d(3, 8, kernel_size=3, padding=1)
        >>> layer(torch.randn(2, 3, 16, 16)).shape
        torch.Size([2, 8, 16, 16])
    """

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        if self.padding_mode != "zeros":
            # As nn.Conv2d: pad with the mode first, then correlate without padding.
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return functional.conv2d(input, weight, bias, self.stride, 0, self.dilation, self.groups)
        return functional.conv2d(input, weight, bias, self.stride, self.padding, self.dilation,
                                 self.groups)
