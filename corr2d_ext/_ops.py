"""Loads the compiled library, which registers the ops ``torch.ops.corr2d_ext.*``.

The three ops, their CPU and CUDA kernels, their autograd formulas and their meta kernels (the
shape functions FakeTensor, ``torch.compile`` and ``torch.export`` trace with) are all
registered in C++ (``csrc/corr2d.cpp``). The meta kernels run the same argument check as the
real ones, on symbolic sizes, so there is no second copy of the check or the shape math here.
"""

import torch

from . import _C  # noqa: F401  (importing it registers the ops)

#: Whether this build has the CUDA kernels.
cuda_built: bool = bool(_C.cuda_built)

try:
    from ._build_info import SUMMARY as build_info
except ImportError:  # built by something other than setup.py
    build_info = "CPU and CUDA kernels" if cuda_built else "CPU kernels only"

corr2d = torch.ops.corr2d_ext.corr2d
corr2d_input_grad = torch.ops.corr2d_ext.corr2d_input_grad
corr2d_weight_grad = torch.ops.corr2d_ext.corr2d_weight_grad
# corr2d on one 2-D image and kernel (composite: views around corr2d), for corr2d_ext.corr2d.
corr2d_2d = torch.ops.corr2d_ext.corr2d_2d.default
