"""ONNX export: ``torch.onnx.export(model, args, dynamo=True)`` of a model with corr2d_ext layers
writes standard ONNX ``Conv`` nodes, with no extra argument.

The exporter decomposes every op it has no ONNX translation for with the decompositions in
``torch._decomp.decomposition_table`` (torch/onnx/_internal/exporter/_decomp.py), before it
translates the graph. Registered there, ``corr2d`` becomes ``aten.convolution`` (the same
arithmetic: a cross-correlation with the same stride, padding, dilation, groups and bias),
which the exporter's torchlib writes as ``Conv``.

The decomposition is for export only. It is not in ``torch.export.default_decompositions()``
(so ``ExportedProgram.run_decompositions()`` keeps our op), nor in torch.compile's
decomposition table (compiled graphs keep calling our kernels), and eager calls never consult
it. ``tests/test_onnx.py`` checks all three.

Only the forward op is registered: an exported inference graph has no gradient ops.
"""

from __future__ import annotations

import torch
from torch._decomp import register_decomposition

from . import _ops  # noqa: F401  (the op must exist before a decomposition names it)


@register_decomposition(torch.ops.corr2d_ext.corr2d.default)
def _corr2d_as_convolution(input, weight, bias, stride, padding, dilation, groups):
    return torch.ops.aten.convolution.default(input, weight, bias, stride, padding, dilation,
                                              False, [0, 0], groups)
