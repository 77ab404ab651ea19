"""tools/emulate_cuda.py, the CPU emulation of every CUDA kernel (no GPU is needed): the
kernels as written pass on the named geometries, and every planted bug (at least one in each
kernel) makes the emulation fail. About a minute on two cores; the full random sweep is
`python tools/emulate_cuda.py`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import emulate_cuda as em  # noqa: E402


@pytest.fixture(autouse=True)
def _torch_state():
    """main() sets float64 as the default dtype and one thread: the tests after must not see
    that."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


def test_kernels_pass_on_the_quick_geometries(capsys):
    assert em.main(["--quick"]) == 0, capsys.readouterr().out[-3000:]


def test_every_planted_bug_is_caught(capsys):
    kernels = {"forward_tiled_kernel", "forward_direct_kernel", "zero_unreached_kernel",
               "input_grad_phases", "weight_grad_kernel", "weight_grad_tiled_kernel",
               "sum_slices_kernel"}
    planted_in = {what.split(":")[0].split(" ")[0] for what in em.PLANTS.values()}
    assert kernels <= planted_in | {"block_sum"}, kernels - planted_in
    assert em.main(["--planted"]) == 0, capsys.readouterr().out[-3000:]
    assert em.PLANT is None
