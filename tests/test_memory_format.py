"""Memory formats and precision as F.conv2d has them: channels_last in gives channels_last out
(output and gradients, by ATen's rule), the meta kernels give the real kernels' strides, and
bfloat16 (and float16) results are the float32 result rounded once."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import corr2d_ext
from conftest import TOLERANCES, assert_all_close, outputs_and_grads, randn, requires_cuda

ops = torch.ops.corr2d_ext
CL = torch.channels_last
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": CL}


def formatted(t: torch.Tensor, name: str) -> torch.Tensor:
    return t.contiguous(memory_format=FORMATS[name])


def format_of(t: torch.Tensor) -> tuple[bool, bool]:
    """Which formats t is contiguous in: in ambiguous shapes (one channel, 1x1 images) both
    are, and the strides of the size-1 dimensions carry no meaning."""
    return (t.is_contiguous(), t.is_contiguous(memory_format=CL))


def both(conv, input, weight, grad_output, **options):
    """(output, grad_input, grad_weight) of conv on fresh leaves."""
    y, gx, gw, _, _ = outputs_and_grads(conv, input, weight, None, grad_output, **options)
    return y, gx, gw


# An unambiguous geometry: several channels, images larger than 1x1, and every option.
OPTIONS = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)


@pytest.mark.parametrize("grad_format", FORMATS)
@pytest.mark.parametrize("weight_format", FORMATS)
@pytest.mark.parametrize("input_format", FORMATS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_output_and_gradients_have_the_strides_of_f_conv2d(
        rng, dtype, input_format, weight_format, grad_format):
    # F.conv2d on the CPU: channels_last when the input or the weight is, whatever the dtype;
    # its gradients follow the (input, weight) pair, not grad_output.
    input = formatted(randn((2, 4, 7, 6), rng, dtype), input_format)
    weight = formatted(randn((6, 2, 3, 2), rng, dtype), weight_format)
    gy = lambda y: formatted(randn(y.shape, torch.Generator().manual_seed(1), dtype), grad_format)
    ours = both(corr2d_ext.conv2d, input, weight, gy, **OPTIONS)
    theirs = both(F.conv2d, input, weight, gy, **OPTIONS)
    for name, a, e in zip(("output", "grad_input", "grad_weight"), ours, theirs):
        assert a.stride() == e.stride(), f"{name}: strides {a.stride()}, F.conv2d {e.stride()}"
    expected_cl = "channels_last" in (input_format, weight_format)
    assert ours[0].is_contiguous(memory_format=CL if expected_cl else torch.contiguous_format)


@pytest.mark.parametrize("weight_format", FORMATS)
@pytest.mark.parametrize("input_format", FORMATS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_channels_last_arguments_give_the_values_of_f_conv2d(
        rng, dtype, input_format, weight_format):
    input = formatted(randn((2, 4, 7, 6), rng, dtype), input_format)
    weight = formatted(randn((6, 2, 3, 2), rng, dtype), weight_format)
    gy = lambda y: randn(y.shape, torch.Generator().manual_seed(1), dtype)
    assert_all_close(both(corr2d_ext.conv2d, input, weight, gy, **OPTIONS),
                     both(F.conv2d, input, weight, gy, **OPTIONS),
                     names=("output", "grad_input", "grad_weight"), **TOLERANCES[dtype])


@requires_cuda
@pytest.mark.parametrize("grad_format", FORMATS)
@pytest.mark.parametrize("weight_format", FORMATS)
@pytest.mark.parametrize("input_format", FORMATS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_cuda_output_and_gradients_have_the_strides_of_f_conv2d(
        rng, dtype, input_format, weight_format, grad_format):
    # cuDNN's rule is the CPU's, except for float64 (which we keep channels_last: see README).
    input = formatted(randn((2, 4, 7, 6), rng, dtype, "cuda"), input_format)
    weight = formatted(randn((6, 2, 3, 2), rng, dtype, "cuda"), weight_format)
    gy = lambda y: formatted(randn(y.shape, torch.Generator().manual_seed(1), dtype, "cuda"),
                             grad_format)
    ours = both(corr2d_ext.conv2d, input, weight, gy, **OPTIONS)
    theirs = both(F.conv2d, input, weight, gy, **OPTIONS)
    for name, a, e in zip(("output", "grad_input", "grad_weight"), ours, theirs):
        assert a.stride() == e.stride(), f"{name}: strides {a.stride()}, F.conv2d {e.stride()}"


AMBIGUOUS = {
    "one input channel": ((1, 1, 5, 5), (3, 1, 2, 2), 1),
    "1x1 output, depthwise": ((1, 3, 4, 4), (3, 1, 4, 4), 3),
    "1x1 images": ((2, 3, 1, 1), (4, 3, 1, 1), 1),
    "one output channel": ((2, 4, 6, 7), (1, 4, 3, 3), 1),
}


@pytest.mark.parametrize("grad_format", FORMATS)
@pytest.mark.parametrize("formats", list(itertools.product(FORMATS, FORMATS)),
                         ids=lambda f: f"input {f[0]}, weight {f[1]}")
@pytest.mark.parametrize("shapes", AMBIGUOUS)
def test_ambiguous_shapes_are_in_the_formats_of_f_conv2d(rng, shapes, formats, grad_format):
    input_shape, weight_shape, groups = AMBIGUOUS[shapes]
    input = formatted(randn(input_shape, rng), formats[0])
    weight = formatted(randn(weight_shape, rng), formats[1])
    gy = lambda y: formatted(randn(y.shape, torch.Generator().manual_seed(1)), grad_format)
    ours = both(corr2d_ext.conv2d, input, weight, gy, groups=groups)
    theirs = both(F.conv2d, input, weight, gy, groups=groups)
    for name, a, e in zip(("output", "grad_input", "grad_weight"), ours, theirs):
        assert format_of(a) == format_of(e), f"{name}: strides {a.stride()}, F.conv2d {e.stride()}"


def raw_calls(input, weight, grad_output):
    params = ([1, 2], [1, 0], [1, 1], 1)
    return {
        "corr2d": lambda: ops.corr2d(input, weight, None, *params),
        "corr2d_input_grad": lambda: ops.corr2d_input_grad(grad_output, weight,
                                                           list(input.shape[2:]), *params),
        "corr2d_weight_grad": lambda: ops.corr2d_weight_grad(input, grad_output,
                                                             list(weight.shape[2:]), *params),
    }


@pytest.mark.parametrize("op", ["corr2d", "corr2d_input_grad", "corr2d_weight_grad"])
@pytest.mark.parametrize("formats", list(itertools.product(FORMATS, repeat=3)),
                         ids=lambda f: "input {}, weight {}, grad_output {}".format(*f))
def test_raw_ops_are_channels_last_when_either_argument_is(rng, formats, op):
    # Each op applies the rule to its own two tensor arguments; the meta kernel (what
    # FakeTensor and torch.compile see) gives exactly the same strides.
    input, weight, gy = (formatted(randn(s, rng, torch.float32), f)
                         for s, f in zip(((2, 3, 6, 5), (4, 3, 2, 2), (2, 4, 7, 2)), formats))
    arguments = {"corr2d": (0, 1), "corr2d_input_grad": (2, 1), "corr2d_weight_grad": (0, 2)}[op]
    real = raw_calls(input, weight, gy)[op]()
    meta = raw_calls(*(t.to("meta") for t in (input, weight, gy)))[op]()
    channels_last = any(formats[i] == "channels_last" for i in arguments)
    assert real.is_contiguous(memory_format=CL if channels_last else torch.contiguous_format)
    assert meta.stride() == real.stride()


@pytest.mark.parametrize("op", ["corr2d", "corr2d_input_grad", "corr2d_weight_grad"])
def test_empty_results_have_the_meta_kernels_strides(rng, op):
    input = randn((0, 3, 6, 5), rng, torch.float32).contiguous(memory_format=CL)
    weight, gy = randn((4, 3, 2, 2), rng, torch.float32), randn((0, 4, 7, 2), rng, torch.float32)
    real = raw_calls(input, weight, gy)[op]()
    meta = raw_calls(*(t.to("meta") for t in (input, weight, gy)))[op]()
    assert meta.stride() == real.stride()


def test_channels_last_module_matches_nn_conv2d_and_keeps_its_format(rng):
    # The usual way to go channels_last: the model's parameters and the batch both.
    theirs = nn.Conv2d(4, 6, 3, padding=1, groups=2, dtype=torch.float64).to(memory_format=CL)
    ours = corr2d_ext.convert(theirs)
    x = randn((2, 4, 8, 8), rng).contiguous(memory_format=CL)
    results = []
    for module in (ours, theirs):
        module.zero_grad()
        y = module(x)
        y.backward(randn(y.shape, torch.Generator().manual_seed(1)))
        results.append((y.detach(), module.weight.grad, module.bias.grad))
    for a, e in zip(*results):
        assert a.stride() == e.stride()
    assert_all_close(results[0], results[1], names=("output", "grad_weight", "grad_bias"),
                     **TOLERANCES[torch.float64])


# Half precision: float32 sums, one rounding ---------------------------------------------------

# |ours - float32 F.conv2d of the same rounded inputs| <= rtol * |that| + atol * max |that|.
# rtol is half a unit in the last place (2**-8 for bfloat16, 2**-11 for float16): the sums are
# float32, and only the result is rounded. atol covers the float32 sums' own error where a
# result cancels to near zero.
ONE_ROUNDING = {torch.bfloat16: dict(rtol=2.0 ** -8, atol=1e-5),
                torch.float16: dict(rtol=2.0 ** -11, atol=1e-5)}

HALF_GEOMETRIES = {
    "3x3, 16 channels": ((2, 16, 12, 12), (16, 16, 3, 3), dict(padding=1)),
    "depthwise 5x5, stride 2": ((2, 8, 13, 11), (8, 1, 5, 5), dict(groups=8, padding=2, stride=2)),
    "1x1, 32 channels": ((2, 32, 9, 9), (8, 32, 1, 1), {}),
}


@pytest.mark.parametrize("input_format", FORMATS)
@pytest.mark.parametrize("geometry", HALF_GEOMETRIES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_precision_results_are_the_float32_results_rounded_once(
        rng, dtype, geometry, input_format):
    input_shape, weight_shape, options = HALF_GEOMETRIES[geometry]
    input = formatted(randn(input_shape, rng, dtype), input_format)
    weight, bias = randn(weight_shape, rng, dtype), randn(weight_shape[:1], rng, dtype)
    gy = lambda y: randn(y.shape, torch.Generator().manual_seed(1), dtype)
    ours = outputs_and_grads(corr2d_ext.conv2d, input, weight, bias, gy, **options)
    assert all(t.dtype == dtype for t in ours[:4])
    up = lambda t: t.float()
    exact = outputs_and_grads(F.conv2d, up(input), up(weight), up(bias), up(ours[4]),
                              **options)
    # grad_bias is grad_output.sum(), ATen's own reduction: F.conv2d's tolerance.
    assert_all_close([t.float() for t in ours[:3]], exact[:3], **ONE_ROUNDING[dtype])
    assert_all_close([ours[3].float()], [exact[3]], names=("grad_bias",), **TOLERANCES[dtype])
