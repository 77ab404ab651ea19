"""Autocast: under torch.autocast our op runs in the precision F.conv2d runs in (the context's
dtype: bfloat16 or float16), leaves float64 alone as F.conv2d does, and its gradients reach
float32 leaves as float32."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import corr2d_ext
from conftest import TOLERANCES, assert_all_close, outputs_and_grads, randn, requires_cuda

OPTIONS = dict(stride=(2, 1), padding=1, groups=2)


def float_tensors(rng, dtype=torch.float32, device="cpu"):
    return tuple(randn(s, rng, dtype, device) for s in ((2, 4, 7, 6), (6, 2, 3, 2), (6,)))


def under_autocast(device, dtype, conv):
    def run(*args, **kwargs):
        with torch.autocast(device, dtype=dtype):
            return conv(*args, **kwargs)
    return run


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_cpu_autocast_runs_in_the_dtype_of_f_conv2d(rng, dtype):
    input, weight, bias = float_tensors(rng)
    with torch.autocast("cpu", dtype=dtype):
        ours = corr2d_ext.conv2d(input, weight, bias, **OPTIONS)
        theirs = F.conv2d(input, weight, bias, **OPTIONS)
    assert ours.dtype == theirs.dtype == dtype


def test_cpu_autocast_casts_the_arguments_then_computes(rng):
    # The same numbers as casting by hand: autocast only casts.
    input, weight, bias = float_tensors(rng)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = corr2d_ext.conv2d(input, weight, bias, **OPTIONS)
    by_hand = corr2d_ext.conv2d(*(t.bfloat16() for t in (input, weight, bias)), **OPTIONS)
    assert torch.equal(ours, by_hand)


def test_cpu_autocast_matches_f_conv2d_under_autocast_with_gradients(rng):
    input, weight, bias = float_tensors(rng)
    gy = lambda y: randn(y.shape, torch.Generator().manual_seed(1), y.dtype)
    ours = outputs_and_grads(under_autocast("cpu", torch.bfloat16, corr2d_ext.conv2d),
                             input, weight, bias, gy, **OPTIONS)
    theirs = outputs_and_grads(under_autocast("cpu", torch.bfloat16, F.conv2d),
                               input, weight, bias, ours[-1], **OPTIONS)
    # The gradients come back through the casts, in the leaves' float32.
    assert [t.dtype for t in ours[1:4]] == [torch.float32] * 3
    assert [t.dtype for t in theirs[1:4]] == [torch.float32] * 3
    assert_all_close([t.float() for t in ours[:-1]], [t.float() for t in theirs[:-1]],
                     **TOLERANCES[torch.bfloat16])


def test_cpu_autocast_leaves_float64_alone(rng):
    input, weight, bias = float_tensors(rng, torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = corr2d_ext.conv2d(input, weight, bias, **OPTIONS)
        theirs = F.conv2d(input, weight, bias, **OPTIONS)
    assert ours.dtype == theirs.dtype == torch.float64


def test_autocast_off_inside_keeps_float32(rng):
    input, weight, bias = float_tensors(rng)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.autocast("cpu", enabled=False):
            y = corr2d_ext.conv2d(input, weight, bias, **OPTIONS)
    assert y.dtype == torch.float32


def test_module_under_cpu_autocast_matches_nn_conv2d(rng):
    theirs = torch.nn.Conv2d(4, 6, (3, 2), **OPTIONS)
    ours = corr2d_ext.convert(theirs)
    x = float_tensors(rng)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, e = ours(x), theirs(x)
    assert a.dtype == e.dtype == torch.bfloat16
    assert_all_close([a.float()], [e.float()], names=("output",), **TOLERANCES[torch.bfloat16])


def test_compiled_conv2d_under_cpu_autocast(rng):
    torch._dynamo.reset()
    input, weight, bias = float_tensors(rng)

    def fn(x, w, b):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return corr2d_ext.conv2d(x, w, b, **OPTIONS)

    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)(input, weight, bias)
    assert compiled.dtype == torch.bfloat16
    assert torch.equal(compiled, fn(input, weight, bias))


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_cuda_autocast_runs_in_the_dtype_of_f_conv2d(rng, dtype):
    input, weight, bias = float_tensors(rng, device="cuda")
    gy = lambda y: randn(y.shape, torch.Generator().manual_seed(1), y.dtype, "cuda")
    ours = outputs_and_grads(under_autocast("cuda", dtype, corr2d_ext.conv2d),
                             input, weight, bias, gy, **OPTIONS)
    theirs = outputs_and_grads(under_autocast("cuda", dtype, F.conv2d),
                               input, weight, bias, ours[-1], **OPTIONS)
    assert ours[0].dtype == theirs[0].dtype == dtype
    assert [t.dtype for t in ours[1:4]] == [torch.float32] * 3
    assert_all_close([t.float() for t in ours[:-1]], [t.float() for t in theirs[:-1]],
                     **TOLERANCES[dtype])


@requires_cuda
def test_cuda_autocast_is_float16_by_default_and_leaves_cpu_tensors_alone(rng):
    cuda = float_tensors(rng, device="cuda")
    cpu = float_tensors(rng)
    with torch.autocast("cuda"):
        assert corr2d_ext.conv2d(*cuda, **OPTIONS).dtype == torch.float16
        assert corr2d_ext.conv2d(*cpu, **OPTIONS).dtype == torch.float32
