"""The CUDA kernels: the same comparisons as on the CPU (F.conv2d, finite differences, opcheck),
plus agreement with the CPU kernels, half precision, determinism and streams. Skipped without
a GPU or without the CUDA kernels in the build."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

import corr2d_ext
from conftest import (
    TOLERANCES,
    assert_all_close,
    assert_matches_conv2d,
    outputs_and_grads,
    randn,
    requires_cuda,
)
from test_against_conv2d import CASES, HALF_CASES, Case

ops = torch.ops.corr2d_ext


def test_cuda_built_is_a_bool():
    assert isinstance(corr2d_ext.cuda_built, bool)
    assert corr2d_ext.cuda_built == bool(corr2d_ext._C.cuda_built)


@pytest.mark.skipif(not torch.cuda.is_available() or corr2d_ext.cuda_built,
                    reason="needs a CUDA device and a build without the CUDA kernels")
def test_cpu_only_build_says_how_to_get_the_cuda_kernels():
    x, w = torch.zeros(1, 1, 3, 3, device="cuda"), torch.zeros(1, 1, 2, 2, device="cuda")
    with pytest.raises(RuntimeError, match=r"corr2d_ext was built without its CUDA kernels.*"
                                           r"CORR2D_CUDA=1"):
        corr2d_ext.conv2d(x, w)


@pytest.fixture
def no_tf32():
    """F.conv2d in true float32 (cuDNN would otherwise use TF32 on Ampere and later)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


# Shapes that reach the CUDA kernels' other paths: several tiles and a partial block of output
# channels; the direct forward (a strided patch too large for a tile's shared memory); long
# sums, split into slices, and kernels of more taps than one weight-gradient block takes;
# a partial block of input channels in the input gradient.
CUDA_CASES = CASES + [
    Case("several tiles, partial output-channel block", (2, 3, 20, 140), (10, 3, 3, 3),
         options=dict(padding=1)),
    Case("depthwise, several tiles", (1, 4, 17, 300), (4, 1, 3, 3), bias=False,
         options=dict(groups=4, padding=(1, 0))),
    Case("stride 8, direct forward", (1, 2, 70, 70), (3, 2, 3, 3), options=dict(stride=8)),
    Case("depthwise, stride 8, direct forward", (1, 3, 70, 600), (3, 1, 3, 3),
         options=dict(stride=8, groups=3)),
    Case("5x5 kernel over long sums", (4, 2, 64, 64), (2, 2, 5, 5), bias=False,
         options=dict(padding=2)),
    Case("6 input channels per group", (1, 12, 9, 9), (4, 6, 3, 3),
         options=dict(groups=2, stride=2)),
]


def on_cuda(case, rng, dtype):
    return [None if t is None else t.cuda() for t in case.tensors(rng, dtype)]


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("case", CUDA_CASES, ids=lambda c: c.name)
def test_cuda_matches_conv2d(rng, no_tf32, case, dtype):
    input, weight, bias = on_cuda(case, rng, dtype)
    assert_matches_conv2d(input, weight, bias, rng=rng, **case.options)


@requires_cuda
@pytest.mark.parametrize("case", CUDA_CASES, ids=lambda c: c.name)
def test_cuda_matches_the_cpu_kernels(rng, case):
    cpu = case.tensors(rng, torch.float64)
    gy = lambda y: randn(y.shape, torch.Generator().manual_seed(1), y.dtype, y.device)
    on_cpu = outputs_and_grads(corr2d_ext.conv2d, *cpu, gy, **case.options)
    on_gpu = outputs_and_grads(corr2d_ext.conv2d, *[None if t is None else t.cuda() for t in cpu],
                               gy, **case.options)
    assert all(t is None or t.is_cuda for t in on_gpu)
    assert_all_close([None if t is None else t.cpu() for t in on_gpu[:-1]], on_cpu[:-1],
                     **TOLERANCES[torch.float64])


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_cuda_noncontiguous_input_and_weight_match_conv2d(rng, no_tf32, dtype):
    input = randn((2, 3, 12, 7), rng, dtype, "cuda").transpose(2, 3)[:, :, :, ::2]
    weight = randn((8, 3, 3, 2), rng, dtype, "cuda")[::2]
    assert not input.is_contiguous() and not weight.is_contiguous()
    assert_matches_conv2d(input, weight, randn(4, rng, dtype, "cuda"), rng=rng, stride=(1, 2),
                          padding=1, dilation=(2, 1))


@requires_cuda
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no bias"])
def test_cuda_batch_of_zero_images_matches_conv2d(rng, bias):
    input, weight = randn((0, 3, 6, 5), rng, device="cuda"), randn((4, 3, 3, 2), rng,
                                                                   device="cuda")
    assert_matches_conv2d(input, weight, randn(4, rng, device="cuda") if bias else None, rng=rng,
                          padding=1)


@requires_cuda
def test_cuda_unbatched_input_matches_conv2d(rng):
    assert_matches_conv2d(randn((3, 6, 5), rng, device="cuda"),
                          randn((4, 3, 3, 2), rng, device="cuda"),
                          randn(4, rng, device="cuda"), rng=rng, stride=(2, 1), padding=1)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", HALF_CASES, ids=lambda c: c.name)
def test_cuda_half_precision_matches_float32(rng, no_tf32, case, dtype):
    tensors = on_cuda(case, rng, torch.float32)
    gy = lambda y: randn(y.shape, torch.Generator().manual_seed(1), y.dtype, y.device)
    low = [None if t is None else t.to(dtype) for t in tensors]
    ours = outputs_and_grads(corr2d_ext.conv2d, *low, gy, **case.options)
    assert all(t is None or t.dtype == dtype for t in ours)
    reference = outputs_and_grads(F.conv2d, *[None if t is None else t.float() for t in low], gy,
                                  **case.options)
    assert_all_close([None if t is None else t.float() for t in ours[:-1]], reference[:-1],
                     **TOLERANCES[dtype])


# Finite differences and registrations -------------------------------------------------------

GRADCHECK_CONFIGS = {
    "stride (2, 1), padding 1, bias": ((2, 2, 5, 4), (3, 2, 3, 2), True,
                                       ([2, 1], [1, 1], [1, 1], 1)),
    "groups 2, dilation (1, 2), no bias": ((1, 4, 5, 6), (4, 2, 2, 2), False,
                                           ([1, 1], [0, 1], [1, 2], 2)),
    "depthwise, stride 2, padding 2, dilation 2, bias": ((1, 3, 5, 4), (3, 1, 2, 2), True,
                                                         ([2, 2], [2, 2], [2, 2], 3)),
}


def cuda_op_args(rng, config, dtype=torch.float64):
    input, weight, bias, params = GRADCHECK_CONFIGS[config]
    x = randn(input, rng, dtype, "cuda").requires_grad_()
    w = randn(weight, rng, dtype, "cuda").requires_grad_()
    b = randn(weight[:1], rng, dtype, "cuda").requires_grad_() if bias else None
    gy = randn(ops.corr2d(x.detach(), w.detach(), None, *params).shape, rng, dtype,
               "cuda").requires_grad_()
    input_size, kernel_size = list(input[2:]), list(weight[2:])
    return {
        "corr2d": (lambda x, w, b=None: ops.corr2d(x, w, b, *params),
                   (x, w) if b is None else (x, w, b)),
        "corr2d_input_grad": (lambda gy, w: ops.corr2d_input_grad(gy, w, input_size, *params),
                              (gy, w)),
        "corr2d_weight_grad": (lambda x, gy: ops.corr2d_weight_grad(x, gy, kernel_size, *params),
                               (x, gy)),
    }


OPS = ["corr2d", "corr2d_input_grad", "corr2d_weight_grad"]


@requires_cuda
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("config", GRADCHECK_CONFIGS)
def test_cuda_gradcheck(rng, config, op):
    fn, tensors = cuda_op_args(rng, config)[op]
    assert gradcheck(fn, tensors)


@requires_cuda
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("config", GRADCHECK_CONFIGS)
def test_cuda_gradgradcheck(rng, config, op):
    fn, tensors = cuda_op_args(rng, config)[op]
    assert gradgradcheck(fn, tensors)


@requires_cuda
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("config", GRADCHECK_CONFIGS)
def test_cuda_opcheck(rng, config, op):
    fn, tensors = cuda_op_args(rng, config, torch.float32)[op]
    input, weight, bias, params = GRADCHECK_CONFIGS[config]
    args = {
        "corr2d": (*tensors, *([None] if len(tensors) == 2 else []), *params),
        "corr2d_input_grad": (*tensors, list(input[2:]), *params),
        "corr2d_weight_grad": (*tensors, list(weight[2:]), *params),
    }[op]
    result = torch.library.opcheck(getattr(ops, op), args)
    assert set(result.values()) == {"SUCCESS"}, result


# Determinism and streams --------------------------------------------------------------------

# Large enough for many thread blocks per output, where atomics would reorder sums.
DETERMINISM_SHAPES = {
    "one filter": ((8, 1, 128, 128), (1, 1, 3, 3), dict(padding=1)),
    "depthwise": ((4, 16, 64, 64), (16, 1, 5, 5), dict(groups=16, padding=2)),
    "dense, strided": ((4, 32, 48, 48), (64, 32, 3, 3), dict(stride=2, dilation=2)),
}


def cuda_results(shapes, dtype=torch.float32):
    input, weight, options = shapes
    rng = torch.Generator().manual_seed(0)
    x = randn(input, rng, dtype, "cuda").requires_grad_()
    w = randn(weight, rng, dtype, "cuda").requires_grad_()
    y = corr2d_ext.conv2d(x, w, **options)
    gx, gw = torch.autograd.grad(y, (x, w), randn(y.shape, rng, dtype, "cuda"))
    return y.detach(), gx, gw


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("shapes", DETERMINISM_SHAPES)
def test_cuda_results_are_bitwise_identical_across_runs(shapes, dtype):
    first = cuda_results(DETERMINISM_SHAPES[shapes], dtype)
    for _ in range(2):
        again = cuda_results(DETERMINISM_SHAPES[shapes], dtype)
        for name, a, b in zip(("output", "grad_input", "grad_weight"), again, first):
            assert torch.equal(a, b), name


@requires_cuda
def test_cuda_forward_runs_on_the_current_stream(rng):
    # The input is written on a side stream after a long sleep: a kernel launched on any other
    # stream would read it before it is written.
    x, w, b = (randn(s, rng, torch.float32, "cuda")
               for s in ((4, 8, 64, 64), (16, 8, 3, 3), (16,)))
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(100_000_000)
        y = corr2d_ext.conv2d(x * 2, w, b, padding=1)
    side.synchronize()
    assert torch.equal(y, corr2d_ext.conv2d(x * 2, w, b, padding=1))


@requires_cuda
def test_cuda_backward_runs_on_the_current_stream(rng):
    x, w = (randn(s, rng, torch.float32, "cuda") for s in ((4, 8, 32, 32), (8, 8, 3, 3)))
    gy = randn((4, 8, 32, 32), rng, torch.float32, "cuda")
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(100_000_000)
        result = outputs_and_grads(corr2d_ext.conv2d, x * 2, w, None, gy * 2, padding=1)
    side.synchronize()
    expected = outputs_and_grads(corr2d_ext.conv2d, x * 2, w, None, gy * 2, padding=1)
    for name, a, e in zip(("output", "grad_input", "grad_weight"), result, expected):
        assert torch.equal(a, e), name


@requires_cuda
def test_cuda_runs_on_a_second_device_under_its_own_guard(rng):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    x, w = randn((1, 2, 6, 6), rng, device="cuda:1"), randn((3, 2, 3, 3), rng, device="cuda:1")
    y = corr2d_ext.conv2d(x, w)
    assert y.device == torch.device("cuda:1")
    torch.testing.assert_close(y.cpu(), F.conv2d(x.cpu(), w.cpu()))
