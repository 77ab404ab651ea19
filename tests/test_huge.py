"""Tensors past 2**31 elements: no 32-bit index overflows anywhere in the CPU path.

Run by `make test-slow` (or `.venv/bin/python -m pytest -q -m slow tests/test_huge.py`); each
test needs about 10 GB of memory at its peak (the test asserts under 12 GB) and a minute or two
on two cores.

Each tensor is zero except for random rows at its start and at its far end, so the far end's
result can be checked against F.conv2d in float64 on just those rows, and an index that wrapped
at 2**31 would read (or write) the wrong rows: random numbers where zeros belong, or the other
way round. Between the ends the result must be exactly zero.

- float32 (the AVX2 kernels on a CPU with them): an input of 8 x 16385 x 16384 = 2**31 + 2**17
  elements, one output channel (so the output and grad_output stay at 1 GB); forward, weight
  gradient, and input gradient (whose result is the 2**31-element tensor).
- bfloat16 (the portable kernels, the same template as every dtype's): a depthwise 3x3 layer on
  an input of that size, whose output and gradients are 2**31-element tensors too.
"""

from __future__ import annotations

import gc
import resource

import pytest
import torch
import torch.nn.functional as F

import corr2d_ext  # noqa: F401  (registers the ops)

pytestmark = pytest.mark.slow

ops = torch.ops.corr2d_ext
C, H, W = 8, 16385, 16384
ROWS = 12  # random rows at each end
assert C * H * W > 2**31
MEMORY_LIMIT = 12 * 2**30


def peak_resident_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def fill_ends(t: torch.Tensor, gen: torch.Generator, rows: int = ROWS):
    """Random numbers in the first and last `rows` rows of every plane of t (the rest stays as
    it is: zero)."""
    for part in (t[:, :, :rows], t[:, :, -rows:]):
        part.copy_(torch.randn(part.shape, generator=gen))


def assert_zero_between_the_ends(t: torch.Tensor, margin: int):
    # Reductions over views, one plane at a time: no copy of the 8 GB tensor.
    for c in range(t.shape[1]):
        low, high = torch.aminmax(t[0, c, margin:-margin])
        assert low.item() == 0 and high.item() == 0, f"channel {c}: nonzero between the ends"


def assert_close_in_float64(actual, expected, dtype, what):
    tol = {torch.float32: 1e-4, torch.bfloat16: 2e-2}[dtype]
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual.double(), expected, rtol=tol, atol=tol * scale,
                               msg=lambda m: f"{what}: {m}")


def ends(t, rows):
    return t[:, :, :rows], t[:, :, -rows:]


@pytest.fixture(autouse=True)
def free_memory():
    gc.collect()
    yield
    gc.collect()


# The checks take views of the ends, inside functions, so that no view outlives its check and
# keeps a deleted 8 GB tensor alive.


def check_float32_output(x, weight, y):
    # Output row r reads input rows r .. r + 2: the first and last ROWS - 2 rows read only the
    # random rows, the rows between them only zeros.
    for part, x_end, y_end in zip(("start", "far end"), ends(x, ROWS), ends(y, ROWS - 2)):
        expected = F.conv2d(x_end.double(), weight.double())
        assert_close_in_float64(y_end, expected, torch.float32, f"output, {part}")
    assert_zero_between_the_ends(y, ROWS)


def check_float32_weight_grad(x, grad_output, grad_weight):
    expected = sum(torch.nn.grad.conv2d_weight(x_end.double(), grad_weight.shape, gy_end.double())
                   for x_end, gy_end in zip(ends(x, ROWS), ends(grad_output, ROWS - 2)))
    assert_close_in_float64(grad_weight, expected, torch.float32, "grad_weight")


def check_float32_input_grad(grad_output, weight, grad_input):
    # Input row i takes gradient from grad_output rows i - 2 .. i: the first and last ROWS rows
    # from the random rows only.
    for part, gx_end, gy_end in zip(("start", "far end"), ends(grad_input, ROWS),
                                    ends(grad_output, ROWS - 2)):
        expected = torch.nn.grad.conv2d_input((1, C, ROWS, W), weight.double(), gy_end.double())
        assert_close_in_float64(gx_end, expected, torch.float32, f"grad_input, {part}")
    assert_zero_between_the_ends(grad_input, ROWS)


def test_float32_past_2_31_elements_is_right_at_the_far_end():
    gen = torch.Generator().manual_seed(0)
    args = ([1, 1], [0, 0], [1, 1], 1)  # stride, padding, dilation, groups
    weight = torch.randn(1, C, 3, 3, generator=gen)

    x = torch.zeros(1, C, H, W)
    fill_ends(x, gen)
    y = ops.corr2d(x, weight, None, *args)
    assert y.shape == (1, 1, H - 2, W - 2)
    check_float32_output(x, weight, y)
    del y

    grad_output = torch.zeros(1, 1, H - 2, W - 2)
    fill_ends(grad_output, gen, ROWS - 2)
    check_float32_weight_grad(x, grad_output, ops.corr2d_weight_grad(x, grad_output, [3, 3], *args))
    del x
    gc.collect()

    grad_input = ops.corr2d_input_grad(grad_output, weight, [H, W], *args)
    assert grad_input.shape == (1, C, H, W)
    check_float32_input_grad(grad_output, weight, grad_input)
    assert peak_resident_bytes() < MEMORY_LIMIT, f"peak {peak_resident_bytes() / 2**30:.1f} GB"


DEPTHWISE = dict(padding=1, groups=C)


def check_bfloat16_output(x, weight, y):
    # With padding 1, output row r reads rows r - 1 .. r + 1. F.conv2d pads each end's slice
    # on both sides, but only the tensor's edge is padding: the row at the cut is left out.
    for part, x_end, y_end, keep in (
            ("start", x[:, :, :ROWS], y[:, :, :ROWS - 1], slice(0, ROWS - 1)),
            ("far end", x[:, :, -ROWS:], y[:, :, -(ROWS - 1):], slice(1, ROWS))):
        expected = F.conv2d(x_end.double(), weight.double(), **DEPTHWISE)[:, :, keep]
        assert_close_in_float64(y_end, expected, torch.bfloat16, f"output, {part}")
    # Output rows ROWS and H - ROWS - 1 still read a random row.
    assert_zero_between_the_ends(y, ROWS + 1)


def check_bfloat16_weight_grad(x, grad_output, grad_weight):
    # Each end's grad_output rows read the input rows beside them (one more, or the padding):
    # those rows, padded where the tensor's edge is, give the same sum.
    start = F.pad(x[:, :, :ROWS + 1].double(), (1, 1, 1, 0))
    far_end = F.pad(x[:, :, -(ROWS + 1):].double(), (1, 1, 0, 1))
    expected = sum(torch.nn.grad.conv2d_weight(x_end, grad_weight.shape, gy_end.double(), groups=C)
                   for x_end, gy_end in zip((start, far_end), ends(grad_output, ROWS)))
    assert_close_in_float64(grad_weight, expected, torch.bfloat16, "grad_weight")


def check_bfloat16_input_grad(grad_output, weight, grad_input):
    # Input row i takes gradient from grad_output rows i - 1 .. i + 1; the reference of each
    # end's slice lacks the rows beyond its cut, so the two rows there are left out.
    for part, gx_end, gy_end, keep in (
            ("start", grad_input[:, :, :ROWS - 2], grad_output[:, :, :ROWS], slice(0, ROWS - 2)),
            ("far end", grad_input[:, :, -(ROWS - 2):], grad_output[:, :, -ROWS:], slice(2, ROWS))):
        expected = torch.nn.grad.conv2d_input((1, C, ROWS, W), weight.double(), gy_end.double(),
                                              **DEPTHWISE)
        assert_close_in_float64(gx_end, expected[:, :, keep], torch.bfloat16, f"grad_input, {part}")
    assert_zero_between_the_ends(grad_input, ROWS + 1)


def test_bfloat16_depthwise_past_2_31_elements_is_right_at_the_far_end():
    gen = torch.Generator().manual_seed(1)
    args = ([1, 1], [1, 1], [1, 1], C)  # stride, padding, dilation, groups
    weight = torch.randn(C, 1, 3, 3, generator=gen).bfloat16()

    x = torch.zeros(1, C, H, W, dtype=torch.bfloat16)
    fill_ends(x, gen)
    y = ops.corr2d(x, weight, None, *args)
    assert y.shape == x.shape
    check_bfloat16_output(x, weight, y)
    del y
    gc.collect()

    grad_output = torch.zeros(1, C, H, W, dtype=torch.bfloat16)
    fill_ends(grad_output, gen)
    check_bfloat16_weight_grad(x, grad_output,
                               ops.corr2d_weight_grad(x, grad_output, [3, 3], *args))
    del x
    gc.collect()

    grad_input = ops.corr2d_input_grad(grad_output, weight, [H, W], *args)
    assert grad_input.shape == (1, C, H, W)
    check_bfloat16_input_grad(grad_output, weight, grad_input)
    assert peak_resident_bytes() < MEMORY_LIMIT, f"peak {peak_resident_bytes() / 2**30:.1f} GB"
