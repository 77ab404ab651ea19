"""The CPU backend's two float32 paths agree: the AVX2 register-blocked kernels (taken on CPUs
with AVX2 and FMA) and the portable kernels (every other CPU, and every other dtype).

The rest of the suite runs whichever path this CPU takes; here both run on the same inputs,
over geometries that reach the fast path's edge cases: right-edge vectors, strides (its
phase-split staging), dilation, negative effective padding in the input gradient (padding
larger than the kernel), channel counts that are not multiples of the 4-channel block, and
depthwise layers.
"""

import pytest
import torch

import corr2d_ext
from corr2d_ext import _C

pytestmark = pytest.mark.skipif(
    not _C.cpu_fast_path_available(), reason="this CPU has no AVX2/FMA fast path to compare"
)

# (N, C_in, C_out, H, W, kH, kW, stride, padding, dilation, groups)
GEOMETRIES = [
    (1, 1, 1, 6, 8, 1, 2, 1, 0, 1, 1),  # the tutorial
    (2, 3, 5, 9, 13, 3, 3, 1, 1, 1, 1),
    (2, 4, 6, 11, 10, 3, 2, (2, 1), (1, 2), (1, 2), 2),
    (2, 8, 8, 9, 17, 3, 3, 1, 1, 1, 8),  # depthwise
    (3, 6, 16, 14, 14, 5, 5, 1, 0, 1, 1),  # LeNet conv2
    (2, 1, 6, 28, 28, 5, 5, 1, 2, 1, 1),  # LeNet conv1: blocks of 3 channels
    (4, 2, 7, 17, 30, 1, 1, 3, 2, 1, 1),  # padding larger than the kernel
    (1, 3, 7, 20, 21, 4, 5, (2, 3), (0, 3), (2, 1), 1),
    (4, 4, 4, 16, 16, 3, 3, 2, 0, 2, 2),
    (1, 16, 9, 5, 40, 3, 3, 1, 1, 1, 1),  # 9 channels: two blocks of 4 and one of 1
]


@pytest.fixture
def portable():
    """Runs a block with the fast path switched off, and restores it."""

    class Switch:
        def __enter__(self):
            _C.set_cpu_fast_path_enabled(False)

        def __exit__(self, *exc):
            _C.set_cpu_fast_path_enabled(True)

    yield Switch()
    _C.set_cpu_fast_path_enabled(True)


def forward_and_grads(x, w, b, stride, padding, dilation, groups, gy_seed=1):
    x = x.detach().requires_grad_()
    w = w.detach().requires_grad_()
    b = b.detach().requires_grad_()
    y = corr2d_ext.conv2d(x, w, b, stride, padding, dilation, groups)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(gy_seed))
    gx, gw, gb = torch.autograd.grad(y, (x, w, b), gy)
    return y, gx, gw, gb


def macs(geometry):
    n, cin, cout, h, w_, kh, kw, stride, padding, dilation, groups = geometry
    y = torch.nn.functional.conv2d(torch.empty(n, cin, h, w_), torch.empty(cout, cin // groups, kh, kw),
                                   None, stride, padding, dilation, groups)
    return y.numel() * (cin // groups) * kh * kw


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_fast_path_matches_portable_kernels(geometry, portable):
    # Below 4096 multiply-adds even float32 takes the portable kernels (kMinFastMacs in
    # corr2d_kernel.cpp); every geometry here but the tutorial's is above it.
    if geometry != GEOMETRIES[0]:
        assert macs(geometry) >= 4096
    n, cin, cout, h, w_, kh, kw, stride, padding, dilation, groups = geometry
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, cin, h, w_, generator=gen)
    w = torch.randn(cout, cin // groups, kh, kw, generator=gen)
    b = torch.randn(cout, generator=gen)
    fast = forward_and_grads(x, w, b, stride, padding, dilation, groups)
    with portable:
        slow = forward_and_grads(x, w, b, stride, padding, dilation, groups)
    for name, a, r in zip(("output", "grad_input", "grad_weight", "grad_bias"), fast, slow):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5 * max(1.0, r.abs().max().item()),
                                   msg=lambda m: f"{name}: {m}")


def test_weight_grad_does_not_turn_inf_past_a_row_end_into_nan():
    # Column 10 is read by tap 2 of the last output column (8), and only by the lanes past the
    # row's end for taps 0 and 1: their gradients must stay finite, as F.conv2d's do.
    x = torch.randn(1, 1, 5, 11)
    x[0, 0, 2, 10] = float("inf")
    gy = torch.randn(1, 1, 5, 9)
    grad_w = torch.ops.corr2d_ext.corr2d_weight_grad(x, gy, [1, 3], [1, 1], [0, 0], [1, 1], 1)
    assert torch.isfinite(grad_w[0, 0, 0, :2]).all(), grad_w
    assert torch.isinf(grad_w[0, 0, 0, 2]), grad_w


def test_fast_path_switch_is_a_real_switch(portable):
    assert _C.cpu_fast_path_enabled()
    with portable:
        assert not _C.cpu_fast_path_enabled()
    assert _C.cpu_fast_path_enabled()
