"""corr2d_ext: 2-D cross-correlation with hand-written CPU and CUDA kernels.

>>> import torch, corr2d_ext
>>> X = torch.ones(6, 8); X[:, 2:6] = 0
>>> corr2d_ext.corr2d(X, torch.tensor([[1.0, -1.0]]))[0]
tensor([ 0.,  1.,  0.,  0.,  0., -1.,  0.])

Public names:
    corr2d(X, K)            the tutorial's function on one 2-D image
    conv2d(...)             F.conv2d's signature and semantics
    Conv2D(kernel_size)     the tutorial's layer
    Conv2d(...)             a drop-in for nn.Conv2d
    convert(model, to=...)  every nn.Conv2d of a model as a Conv2d, or back
    cuda_built              whether the CUDA kernels were compiled into this build
    build_info              one line: what was built, against which torch, for which GPUs
    __version__             the installed version (pyproject.toml's)
    torch.ops.corr2d_ext.corr2d / corr2d_input_grad / corr2d_weight_grad   the raw ops
"""

from . import _onnx  # noqa: F401  (registers the ONNX export of the op)
from ._ops import build_info, cuda_built
from .functional import conv2d, corr2d
from .nn import Conv2D, Conv2d, convert


def _version() -> str:
    """The version pip installed (pyproject.toml's), else the one setup.py built from."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("corr2d_ext")
    except PackageNotFoundError:  # built in place, never installed
        try:
            from ._build_info import VERSION
        except ImportError:
            return "0+unknown"
        return VERSION


__version__: str = _version()

__all__ = ["corr2d", "conv2d", "Conv2D", "Conv2d", "convert", "cuda_built", "build_info",
           "__version__"]
