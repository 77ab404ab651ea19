"""Layers built on the op: the tutorial's ``Conv2D`` and ``Conv2d``, a drop-in for ``nn.Conv2d``."""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from . import functional

__all__ = ["Conv2D", "Conv2d", "convert"]


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

    def __init__(self, kernel_size: int | tuple[int, int]) -> None:
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

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            # As nn.Conv2d: pad with the mode first, then correlate without padding.
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return functional.conv2d(input, weight, bias, self.stride, 0, self.dilation, self.groups)
        return functional.conv2d(input, weight, bias, self.stride, self.padding, self.dilation,
                                 self.groups)


def convert(model: nn.Module, to: Literal["corr2d_ext", "torch"] = "corr2d_ext", *,
            inplace: bool = False) -> nn.Module:
    """``model`` with every ``nn.Conv2d`` replaced by ``corr2d_ext.Conv2d``, or back.

    Each replacement has the arguments of the layer it replaces (channels, kernel size,
    stride, padding, dilation, groups, bias, padding_mode) and carries the same ``weight`` and
    ``bias`` Parameters: same values, device, dtype and ``requires_grad``. The training mode of
    every module is kept, so outputs and gradients match the original's.

    Only exact types are converted: ``to="corr2d_ext"`` replaces modules whose type is exactly
    ``nn.Conv2d`` (not its other subclasses, such as quantization-aware or lazy layers, whose
    forward differs); ``to="torch"`` replaces exactly ``corr2d_ext.Conv2d``. Hooks registered
    on a replaced layer are not carried over.

    Args:
        model: any module; it may itself be a convolution.
        to: ``"corr2d_ext"`` (torch's layers to ours) or ``"torch"`` (ours back to torch's).
        inplace: False (the default) converts a ``copy.deepcopy`` of ``model`` and leaves
            ``model`` as it was. True replaces the layers inside ``model`` itself and shares
            their Parameters, so an optimizer built on ``model.parameters()`` keeps working.

    Returns:
        The converted model (``model`` itself when ``inplace``, unless ``model`` is itself a
        convolution, which cannot replace itself in place: then its replacement).

    Shape:
        unchanged: each layer maps ``(N, C_in, H, W)`` to ``(N, C_out, H_out, W_out)`` as before.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3))
        >>> ours = convert(net)
        >>> [type(m).__name__ for m in ours]
        ['Conv2d', 'ReLU', 'Conv2d']
        >>> type(ours[0]) is Conv2d, type(net[0]) is nn.Conv2d
        (True, True)
        >>> type(convert(ours, to="torch")[0]) is nn.Conv2d
        True
    """
    targets = {"corr2d_ext": (nn.Conv2d, Conv2d), "torch": (Conv2d, nn.Conv2d)}
    if to not in targets:
        raise ValueError(f"convert: expected to='corr2d_ext' or to='torch', but got to={to!r}")
    source, target = targets[to]
    if not inplace:
        model = copy.deepcopy(model)
    if type(model) is source:
        return _converted(model, target)
    replacements: dict[int, nn.Module] = {}  # a layer used twice stays one layer
    for module in list(model.modules()):
        # _modules, not named_children(), which would skip a second place of the same layer.
        for name, child in list(module._modules.items()):
            if type(child) is source:
                if id(child) not in replacements:
                    replacements[id(child)] = _converted(child, target)
                setattr(module, name, replacements[id(child)])
    return model


def _converted(conv: nn.Conv2d, cls: type[nn.Conv2d]) -> nn.Conv2d:
    """A ``cls`` with ``conv``'s arguments and its very Parameters."""
    # Built on the meta device: no memory and no initialisation for weights about to be replaced.
    new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
              padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
              bias=conv.bias is not None, padding_mode=conv.padding_mode, device="meta",
              dtype=conv.weight.dtype)
    new.weight = conv.weight
    new.bias = conv.bias
    new.train(conv.training)
    return new
