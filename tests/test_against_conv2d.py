"""conv2d and Conv2d against torch's own: the same outputs and the same gradients of input,
weight and bias, over strides, paddings, dilations, groups, kernel and image shapes, memory
layouts, dtypes and empty tensors."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import corr2d_ext
from conftest import (
    TOLERANCES,
    assert_all_close,
    assert_matches_conv2d,
    outputs_and_grads,
    random_like,
    randn,
)

# F.conv2d's note that it copies the input for an even kernel with padding='same'.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Using padding=.same. with even kernel lengths:UserWarning")


@dataclass(frozen=True)
class Case:
    """One call of conv2d: input (N, C, H, W), weight (O, C / groups, kH, kW) and options."""

    name: str
    input: tuple
    weight: tuple
    bias: bool = True
    options: dict = field(default_factory=dict)

    def tensors(self, rng, dtype=torch.float64):
        return (randn(self.input, rng, dtype), randn(self.weight, rng, dtype),
                randn(self.weight[:1], rng, dtype) if self.bias else None)


CASES = [
    # Kernel and image shapes.
    Case("3x3", (2, 3, 7, 8), (4, 3, 3, 3)),
    Case("1x1 kernel", (2, 3, 5, 6), (4, 3, 1, 1), bias=False),
    Case("kernel as large as the image", (1, 2, 4, 5), (3, 2, 4, 5)),
    Case("3x2 kernel", (2, 2, 6, 7), (3, 2, 3, 2), bias=False),
    Case("1x4 kernel", (1, 2, 5, 9), (2, 2, 1, 4)),
    Case("4x1 kernel, tall image", (1, 1, 11, 3), (2, 1, 4, 1), bias=False),
    Case("1x1 image", (2, 3, 1, 1), (2, 3, 1, 1)),
    Case("one channel", (3, 1, 6, 5), (1, 1, 2, 3), bias=False),
    # Stride.
    Case("stride 2", (2, 3, 7, 8), (4, 3, 3, 3), options=dict(stride=2)),
    Case("stride (2, 1)", (1, 2, 7, 6), (3, 2, 3, 2), bias=False, options=dict(stride=(2, 1))),
    Case("stride (1, 3), remainder", (1, 2, 6, 11), (2, 2, 2, 3), options=dict(stride=(1, 3))),
    Case("stride 3 > kernel 2 skips inputs", (1, 2, 8, 8), (2, 2, 2, 2), bias=False,
         options=dict(stride=3)),
    Case("stride larger than the image", (1, 1, 4, 5), (2, 1, 2, 2), options=dict(stride=7)),
    # Padding.
    Case("padding 1", (2, 3, 5, 6), (2, 3, 3, 3), options=dict(padding=1)),
    Case("padding (2, 1)", (1, 2, 5, 4), (3, 2, 3, 2), bias=False, options=dict(padding=(2, 1))),
    Case("padding wider than the kernel", (1, 1, 3, 4), (2, 1, 2, 2), options=dict(padding=3)),
    Case("kernel larger than the image, fits the padding", (1, 2, 3, 2), (2, 2, 5, 4),
         bias=False, options=dict(padding=(1, 1))),
    Case("padding 'valid'", (1, 3, 6, 5), (2, 3, 3, 2), options=dict(padding="valid")),
    Case("padding 'same', odd kernel", (2, 2, 5, 6), (3, 2, 3, 5), bias=False,
         options=dict(padding="same")),
    Case("padding 'same', even kernel", (1, 2, 5, 6), (2, 2, 2, 4), options=dict(padding="same")),
    Case("padding 'same', 1x1", (1, 2, 3, 3), (2, 2, 1, 1), options=dict(padding="same")),
    Case("padding 'same', dilation (1, 3), even kernel", (1, 2, 6, 9), (2, 2, 2, 2),
         bias=False, options=dict(padding="same", dilation=(1, 3))),
    Case("padding 'same', dilation 2, odd kernel", (1, 2, 7, 7), (2, 2, 3, 3),
         options=dict(padding="same", dilation=2)),
    # Dilation.
    Case("dilation 2", (1, 2, 8, 7), (3, 2, 3, 3), options=dict(dilation=2)),
    Case("dilation (1, 3)", (2, 2, 5, 9), (2, 2, 2, 3), bias=False, options=dict(dilation=(1, 3))),
    Case("dilated kernel as large as the image", (1, 1, 5, 7), (1, 1, 3, 4),
         options=dict(dilation=2)),
    # Groups.
    Case("groups 2", (2, 4, 6, 5), (6, 2, 3, 3), options=dict(groups=2)),
    Case("groups 2, no bias", (1, 6, 5, 5), (4, 3, 2, 3), bias=False, options=dict(groups=2)),
    Case("groups 3, one channel each", (1, 3, 5, 6), (6, 1, 3, 3), options=dict(groups=3)),
    Case("depthwise", (2, 4, 6, 6), (4, 1, 3, 3), options=dict(groups=4)),
    Case("depthwise, no bias", (1, 5, 4, 7), (5, 1, 2, 2), bias=False, options=dict(groups=5)),
    # Everything at once.
    Case("stride, padding, dilation", (2, 3, 9, 8), (2, 3, 3, 2),
         options=dict(stride=2, padding=1, dilation=2)),
    Case("stride (2, 1), padding (2, 1), dilation (1, 3)", (1, 2, 7, 10), (4, 2, 3, 2),
         bias=False, options=dict(stride=(2, 1), padding=(2, 1), dilation=(1, 3))),
    Case("groups 2, stride 2, padding 1, dilation 2", (2, 4, 9, 9), (4, 2, 3, 3),
         options=dict(stride=2, padding=1, dilation=2, groups=2)),
    Case("depthwise, stride (1, 2), padding 'valid', dilation (2, 1)", (1, 3, 8, 8),
         (3, 1, 2, 3), options=dict(stride=(1, 2), padding="valid", dilation=(2, 1), groups=3)),
    Case("depthwise, padding 'same', dilation 2", (1, 4, 6, 5), (8, 1, 3, 2), bias=False,
         options=dict(padding="same", dilation=2, groups=4)),
    Case("stride 3, padding 2, odd sizes", (3, 2, 11, 13), (3, 2, 4, 3),
         options=dict(stride=3, padding=2)),
    Case("list arguments", (1, 2, 6, 6), (2, 2, 3, 3),
         options=dict(stride=[1, 2], padding=[1, 0], dilation=[2, 1])),
    Case("one-element list arguments", (1, 2, 7, 7), (2, 2, 3, 3),
         options=dict(stride=[2], padding=[1], dilation=[2])),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matches_conv2d(rng, case, dtype):
    input, weight, bias = case.tensors(rng, dtype)
    assert_matches_conv2d(input, weight, bias, rng=rng, **case.options)


# Shapes: unbatched, empty -------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no bias"])
def test_unbatched_3d_input_matches_conv2d(rng, bias):
    input, weight = randn((3, 6, 5), rng), randn((4, 3, 3, 2), rng)
    assert_matches_conv2d(input, weight, randn(4, rng) if bias else None, rng=rng,
                          stride=(2, 1), padding=1)


def test_unbatched_3d_input_gives_a_3d_output(rng):
    output = corr2d_ext.conv2d(randn((3, 6, 5), rng), randn((4, 3, 3, 2), rng))
    assert output.shape == (4, 4, 4)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no bias"])
def test_batch_of_zero_images_matches_conv2d(rng, bias):
    input, weight = randn((0, 3, 6, 5), rng), randn((4, 3, 3, 2), rng)
    assert_matches_conv2d(input, weight, randn(4, rng) if bias else None, rng=rng, padding=1)


def test_batch_of_zero_images_gives_zero_weight_and_bias_gradients(rng):
    input, weight, bias = randn((0, 3, 6, 5), rng), randn((4, 3, 3, 2), rng), randn(4, rng)
    y, gx, gw, gb, _ = outputs_and_grads(corr2d_ext.conv2d, input, weight, bias,
                                         random_like(rng))
    assert y.shape == (0, 4, 4, 4) and gx.shape == (0, 3, 6, 5)
    assert torch.equal(gw, torch.zeros_like(weight))
    assert torch.equal(gb, torch.zeros_like(bias))


def test_zero_input_channels_give_the_bias_everywhere(rng):
    # An empty sum: each output is its bias. (F.conv2d itself returns zero output channels
    # here, which is why the expectation is written out.)
    input, weight, bias = randn((2, 0, 5, 4), rng), randn((3, 0, 2, 2), rng), randn(3, rng)
    gy = randn((2, 3, 4, 3), rng)
    y, gx, gw, gb, _ = outputs_and_grads(corr2d_ext.conv2d, input, weight, bias, gy)
    assert torch.equal(y, bias.view(1, 3, 1, 1).expand(2, 3, 4, 3))
    assert gx.shape == input.shape and gw.shape == weight.shape
    torch.testing.assert_close(gb, gy.sum((0, 2, 3)))


# Memory layouts -----------------------------------------------------------------------------


def transposed_input(rng, dtype):
    """(N, C, H, W) view of a (N, C, W, H) tensor."""
    return randn((2, 3, 7, 6), rng, dtype).transpose(2, 3)


def sliced_input(rng, dtype):
    """Every other row and all but the first column: a view with gaps."""
    return randn((2, 3, 12, 8), rng, dtype)[:, :, ::2, 1:]


def channels_last_input(rng, dtype):
    return randn((2, 3, 6, 7), rng, dtype).contiguous(memory_format=torch.channels_last)


def channel_slice_input(rng, dtype):
    """Channels 1..3 of 5: a view with an offset."""
    return randn((2, 5, 6, 7), rng, dtype)[:, 1:4]


def expanded_input(rng, dtype):
    """One image broadcast over the batch: stride 0."""
    return randn((1, 3, 6, 7), rng, dtype).expand(2, 3, 6, 7)


def transposed_weight(rng, dtype):
    """(O, C, kH, kW) view of a (O, C, kW, kH) tensor."""
    return randn((4, 3, 2, 3), rng, dtype).transpose(2, 3)


def sliced_weight(rng, dtype):
    """Every other output channel, and a column cut off."""
    return randn((8, 3, 3, 3), rng, dtype)[::2, :, :, :2]


def permuted_weight(rng, dtype):
    """(O, C, kH, kW) view of a (C, O, kH, kW) tensor."""
    return randn((3, 4, 3, 2), rng, dtype).permute(1, 0, 2, 3)


NONCONTIGUOUS_INPUTS = [transposed_input, sliced_input, channels_last_input,
                        channel_slice_input, expanded_input]
NONCONTIGUOUS_WEIGHTS = [transposed_weight, sliced_weight, permuted_weight]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("make_input", NONCONTIGUOUS_INPUTS, ids=lambda f: f.__name__)
def test_noncontiguous_input_matches_conv2d(rng, make_input, dtype):
    input = make_input(rng, dtype)
    assert input.shape[:2] == (2, 3) and not input.is_contiguous()
    assert_matches_conv2d(input, randn((4, 3, 3, 2), rng, dtype), randn(4, rng, dtype), rng=rng,
                          stride=(1, 2), padding=1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("make_weight", NONCONTIGUOUS_WEIGHTS, ids=lambda f: f.__name__)
def test_noncontiguous_weight_matches_conv2d(rng, make_weight, dtype):
    weight = make_weight(rng, dtype)
    assert weight.shape[:2] == (4, 3) and not weight.is_contiguous()
    assert_matches_conv2d(randn((2, 3, 6, 7), rng, dtype), weight, randn(4, rng, dtype), rng=rng,
                          dilation=(2, 1))


def test_noncontiguous_bias_matches_conv2d(rng):
    bias = randn(8, rng)[::2]
    assert not bias.is_contiguous()
    assert_matches_conv2d(randn((1, 3, 5, 5), rng), randn((4, 3, 2, 2), rng), bias, rng=rng)


def test_noncontiguous_input_and_weight_together_match_conv2d(rng):
    input, weight = transposed_input(rng, torch.float64), sliced_weight(rng, torch.float64)
    assert_matches_conv2d(input, weight, randn(4, rng), rng=rng, stride=2, padding=(0, 1))


def test_broadcast_grad_output_of_sum_matches_conv2d(rng):
    # y.sum().backward() hands backward a grad_output expanded from one number (all strides 0).
    input, weight, bias = randn((2, 3, 6, 7), rng), randn((4, 3, 3, 2), rng), randn(4, rng)
    assert_matches_conv2d(input, weight, bias, grad_output=lambda y: torch.ones(()).expand_as(y),
                          stride=2, padding=1)


def test_inputs_are_left_unchanged(rng):
    input, weight, bias = randn((2, 3, 6, 7), rng), randn((4, 3, 3, 2), rng), randn(4, rng)
    before = [t.clone() for t in (input, weight, bias)]
    x, w, b = (t.clone().requires_grad_() for t in (input, weight, bias))
    corr2d_ext.conv2d(x, w, b, padding=1).sum().backward()
    for t, original in zip((x, w, b), before):
        assert torch.equal(t.detach(), original)


# Half precision -----------------------------------------------------------------------------

HALF_CASES = [c for c in CASES if c.name in (
    "3x3", "3x2 kernel", "stride (2, 1)", "padding (2, 1)", "padding 'same', even kernel",
    "dilation (1, 3)", "depthwise", "groups 2, stride 2, padding 1, dilation 2")]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", HALF_CASES, ids=lambda c: c.name)
def test_half_precision_forward_matches_float32_conv2d(rng, case, dtype):
    input, weight, bias = (None if t is None else t.to(dtype) for t in case.tensors(rng))
    output = corr2d_ext.conv2d(input, weight, bias, **case.options)
    assert output.dtype == dtype
    up = lambda t: None if t is None else t.float()
    expected = F.conv2d(up(input), up(weight), up(bias), **case.options)
    assert_all_close([output.float()], [expected], names=("output",), **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_gradients_match_float32_conv2d(rng, dtype):
    input, weight, bias = (randn(s, rng).to(dtype) for s in ((2, 4, 6, 7), (4, 2, 3, 2), (4,)))
    gy = randn((2, 4, 3, 8), rng).to(dtype)
    options = dict(stride=(2, 1), padding=1, groups=2)
    ours = outputs_and_grads(corr2d_ext.conv2d, input, weight, bias, gy, **options)[:-1]
    assert all(t.dtype == dtype for t in ours)
    up = lambda t: t.float()
    theirs = outputs_and_grads(F.conv2d, up(input), up(weight), up(bias), up(gy), **options)[:-1]
    assert_all_close([t.float() for t in ours], theirs, **TOLERANCES[dtype])


# The module ---------------------------------------------------------------------------------

PADDING_MODES = ["zeros", "reflect", "replicate", "circular"]
MODULE_ARGS = dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1),
                   padding=(2, 1), dilation=(1, 2), groups=2)


def module_pair(padding_mode, from_ours, **overrides):
    """(ours, torch's) with the same parameters, copied from one to the other by state_dict."""
    args = {**MODULE_ARGS, **overrides, "padding_mode": padding_mode, "dtype": torch.float64}
    ours, theirs = corr2d_ext.Conv2d(**args), nn.Conv2d(**args)
    src, dst = (ours, theirs) if from_ours else (theirs, ours)
    dst.load_state_dict(src.state_dict())
    return ours, theirs


def module_outputs_and_grads(module, input, grad_output):
    x = input.detach().requires_grad_()
    y = module(x)
    params = [p for p in (module.weight, module.bias) if p is not None]
    grads = torch.autograd.grad(y, [x, *params], grad_output)
    return (y.detach(), *grads)


@pytest.mark.parametrize("from_ours", [True, False], ids=["ours to torch", "torch to ours"])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_module_matches_nn_conv2d_after_loading_its_state_dict(rng, padding_mode, from_ours):
    ours, theirs = module_pair(padding_mode, from_ours)
    input = randn((2, 4, 7, 8), rng)
    gy = randn(theirs(input).shape, rng)
    assert_all_close(module_outputs_and_grads(ours, input, gy),
                     module_outputs_and_grads(theirs, input, gy),
                     names=("output", "grad_input", "grad_weight", "grad_bias"),
                     **TOLERANCES[torch.float64])


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_module_with_padding_same_and_no_bias_matches_nn_conv2d(rng, padding_mode):
    ours, theirs = module_pair(padding_mode, from_ours=False, stride=1, padding="same",
                               bias=False)
    input = randn((4, 6, 5), rng)  # unbatched
    gy = randn(theirs(input).shape, rng)
    assert_all_close(module_outputs_and_grads(ours, input, gy),
                     module_outputs_and_grads(theirs, input, gy),
                     names=("output", "grad_input", "grad_weight"),
                     **TOLERANCES[torch.float64])


def test_module_is_a_drop_in_nn_conv2d():
    torch.manual_seed(0)
    ours = corr2d_ext.Conv2d(**MODULE_ARGS)
    torch.manual_seed(0)
    theirs = nn.Conv2d(**MODULE_ARGS)
    assert isinstance(ours, nn.Conv2d)
    assert repr(ours).split("(", 1)[1] == repr(theirs).split("(", 1)[1]
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), f"{key} initialised differently"
