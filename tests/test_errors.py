"""Bad arguments: each raises, before any kernel runs, the error a user should see. Where
F.conv2d rejects the same call it raises the same exception class; where the message differs
from torch's, the test pins ours (csrc/corr2d.cpp's one argument check, and the argument
normalization of corr2d_ext/functional.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F

import corr2d_ext

ops = torch.ops.corr2d_ext


def t(*shape, dtype=torch.float32, device="cpu"):
    return torch.zeros(shape, dtype=dtype, device=device)


@dataclass
class Bad:
    """A bad call of conv2d: its arguments, and the error it raises."""

    name: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    error: type = RuntimeError
    match: str = ""
    torch_raises: bool = True  # whether F.conv2d rejects the same call


X, W = (1, 4, 6, 6), (2, 4, 3, 3)  # a valid pair: the cases below break one thing at a time

CONV2D_CASES = [
    # Ranks.
    Bad("input 2-D", (t(6, 6), t(*W)),
        match=r"corr2d: expected input to be 4-D \(N, C, H, W\) \(conv2d also takes 3-D "
              r"\(C, H, W\)\), but got input of size \[6, 6\]"),
    Bad("input 5-D", (t(1, 1, 4, 6, 6), t(*W)),
        match=r"expected input to be 4-D .*but got input of size \[1, 1, 4, 6, 6\]"),
    Bad("weight 3-D", (t(*X), t(4, 3, 3)),
        match=r"corr2d: expected weight to be 4-D \(out_channels, in_channels / groups, kH, kW\)"
              r", but got weight of size \[4, 3, 3\]"),
    Bad("weight 5-D", (t(*X), t(2, 4, 3, 3, 1)),
        match=r"expected weight to be 4-D .*but got weight of size \[2, 4, 3, 3, 1\]"),
    # Channels and groups.
    Bad("input channels not weight.size(1)", (t(*X), t(2, 3, 3, 3)),
        match=r"corr2d: given groups=1, weight of size \[2, 3, 3, 3\], expected input of size "
              r"\[1, 4, 6, 6\] to have 3 channels \(weight.size\(1\) \* groups\), but got 4 "
              r"channels instead"),
    Bad("input channels not weight.size(1) * groups", (t(*X), t(2, 4, 3, 3)), dict(groups=2),
        match=r"given groups=2, .*to have 8 channels \(weight.size\(1\) \* groups\), but got 4 "
              r"channels instead"),
    Bad("out channels not divisible by groups", (t(*X), t(3, 2, 3, 3)), dict(groups=2),
        match=r"corr2d: given groups=2, expected the weight's output channels \(dimension 0\) "
              r"to be divisible by 2, but got weight of size \[3, 2, 3, 3\]"),
    Bad("no out channels", (t(*X), t(0, 4, 3, 3)),
        match=r"expected weight to have at least 1 output channel \(dimension 0\), but got "
              r"weight of size \[0, 4, 3, 3\]"),
    Bad("groups 0", (t(*X), t(*W)), dict(groups=0),
        match=r"corr2d: non-positive groups is not supported: expected groups >= 1, but got "
              r"groups=0"),
    Bad("groups -2", (t(*X), t(*W)), dict(groups=-2),
        match=r"non-positive groups is not supported: .*but got groups=-2"),
    # Stride, padding, dilation.
    Bad("stride 0", (t(*X), t(*W)), dict(stride=0),
        match=r"corr2d: non-positive stride is not supported: expected every stride >= 1, but "
              r"got stride=\[0, 0\]"),
    Bad("stride (1, -1)", (t(*X), t(*W)), dict(stride=(1, -1)),
        match=r"non-positive stride is not supported: .*but got stride=\[1, -1\]"),
    Bad("padding -1", (t(*X), t(*W)), dict(padding=-1),
        match=r"corr2d: negative padding is not supported: expected every padding >= 0, but got "
              r"padding=\[-1, -1\]"),
    Bad("padding (0, -2)", (t(*X), t(*W)), dict(padding=(0, -2)),
        match=r"negative padding is not supported: .*but got padding=\[0, -2\]"),
    Bad("dilation 0", (t(*X), t(*W)), dict(dilation=0),
        match=r"corr2d: non-positive dilation is not supported: expected every dilation >= 1, "
              r"but got dilation=\[0, 0\]"),
    Bad("dilation (-1, 1)", (t(*X), t(*W)), dict(dilation=(-1, 1)),
        match=r"non-positive dilation is not supported: .*but got dilation=\[-1, 1\]"),
    Bad("stride of 3 values", (t(*X), t(*W)), dict(stride=[1, 1, 1]),
        match=r"expected stride to be a single integer value or a list of 2 values to match the "
              r"convolution dimensions, but got stride=\[1, 1, 1\]"),
    Bad("padding of 3 values", (t(*X), t(*W)), dict(padding=(1, 1, 1)),
        match=r"expected padding to be a single integer value or a list of 2 values .*but got "
              r"padding=\[1, 1, 1\]"),
    Bad("dilation of no values", (t(*X), t(*W)), dict(dilation=[]),
        match=r"expected dilation to be a single integer value or a list of 2 values .*but got "
              r"dilation=\[\]"),
    Bad("stride a float", (t(*X), t(*W)), dict(stride=1.5), error=TypeError,
        match=r"expected stride to be an int or a sequence of 2 ints, but got float: 1.5"),
    Bad("groups a float", (t(*X), t(*W)), dict(groups=1.0), error=TypeError,
        match=r"expected groups to be an int, but got float: 1.0"),
    # Padding strings.
    Bad("padding 'same' with stride 2", (t(*X), t(*W)), dict(padding="same", stride=2),
        match=r"padding='same' is not supported for strided convolutions"),
    Bad("padding 'same' with stride (1, 2)", (t(*X), t(*W)), dict(padding="same", stride=(1, 2)),
        match=r"padding='same' is not supported for strided convolutions"),
    Bad("unknown padding string", (t(*X), t(*W)), dict(padding="full"),
        match=r"Invalid padding string: 'full'"),
    # Kernel against the padded input.
    Bad("kernel taller than the input", (t(*X), t(2, 4, 7, 3)),
        match=r"corr2d: calculated padded input size per channel: \(6 x 6\), dilated kernel "
              r"size: \(7 x 3\)\. Expected a kernel no larger than the padded input"),
    Bad("dilated kernel wider than the input", (t(*X), t(2, 4, 1, 3)), dict(dilation=3),
        match=r"padded input size per channel: \(6 x 6\), dilated kernel size: \(1 x 7\)"),
    Bad("kernel larger than the padded input", (t(1, 4, 3, 3), t(2, 4, 6, 6)), dict(padding=1),
        match=r"padded input size per channel: \(5 x 5\), dilated kernel size: \(6 x 6\)"),
    Bad("kernel with no rows", (t(*X), t(2, 4, 0, 3)),
        match=r"expected a kernel of at least 1x1, but got weight of size \[2, 4, 0, 3\]"),
    Bad("input with no columns", (t(1, 4, 5, 0), t(2, 4, 3, 3)), dict(padding=2),
        match=r"expected an input of non-zero height and width .* input of size \[1, 4, 5, 0\]"),
    # Bias.
    Bad("bias 2-D", (t(*X), t(*W), t(2, 1)),
        match=r"corr2d: given weight of size \[2, 4, 3, 3\], expected bias to be 1-D with 2 "
              r"elements, but got bias of size \[2, 1\]"),
    Bad("bias 0-D", (t(*X), t(*W), t()),
        match=r"expected bias to be 1-D with 2 elements, but got bias of size \[\]"),
    Bad("bias of the wrong size", (t(*X), t(*W), t(3)),
        match=r"expected bias to be 1-D with 2 elements, but got bias of size \[3\]"),
    # Dtypes.
    Bad("weight float64, input float32", (t(*X), t(*W, dtype=torch.float64)),
        match=r"corr2d: expected weight to have the same dtype as input \(Float\), but got "
              r"Double"),
    Bad("input float64, weight float32", (t(*X, dtype=torch.float64), t(*W)),
        match=r"expected weight to have the same dtype as input \(Double\), but got Float"),
    Bad("bias float64, input float32", (t(*X), t(*W), t(2, dtype=torch.float64)),
        match=r"expected bias to have the same dtype as input \(Float\), but got Double"),
    Bad("bias float16, input float32", (t(*X), t(*W), t(2, dtype=torch.float16)),
        match=r"expected bias to have the same dtype as input \(Float\), but got Half"),
    *(Bad(f"{dtype} tensors", (t(*X, dtype=dtype), t(*W, dtype=dtype)), torch_raises=False,
          match=r"corr2d: expected input to be a floating-point tensor \(float16, bfloat16, "
                rf"float32 or float64\), but got dtype {name}")
      for dtype, name in [(torch.int64, "Long"), (torch.int32, "Int"), (torch.uint8, "Byte"),
                          (torch.complex64, "ComplexFloat"), (torch.complex128, "ComplexDouble")]),
    # Devices: 'meta' stands in for a second device.
    Bad("weight on another device", (t(*X), t(*W, device="meta")), torch_raises=False,
        match=r"corr2d: expected weight to be on the same device as input \(cpu\), but got meta"),
    Bad("input on another device", (t(*X, device="meta"), t(*W)), torch_raises=False,
        match=r"expected weight to be on the same device as input \(meta\), but got cpu"),
    Bad("bias on another device", (t(*X), t(*W), t(2, device="meta")), torch_raises=False,
        match=r"expected bias to be on the same device as input \(cpu\), but got meta"),
]
CASE_IDS = [c.name for c in CONV2D_CASES]


@pytest.mark.parametrize("case", CONV2D_CASES, ids=CASE_IDS)
def test_conv2d_rejects(case):
    with pytest.raises(case.error, match=case.match):
        corr2d_ext.conv2d(*case.args, **case.kwargs)


@pytest.mark.parametrize("case", [c for c in CONV2D_CASES if c.torch_raises],
                         ids=[c.name for c in CONV2D_CASES if c.torch_raises])
def test_conv2d_raises_the_exception_class_of_f_conv2d(case):
    with pytest.raises(Exception) as theirs:
        F.conv2d(*case.args, **case.kwargs)
    with pytest.raises(Exception) as ours:
        corr2d_ext.conv2d(*case.args, **case.kwargs)
    assert ours.type is theirs.type, f"ours: {ours.value!r}\nF.conv2d: {theirs.value!r}"


def on_meta(arg):
    return arg.to("meta") if isinstance(arg, torch.Tensor) else arg


@pytest.mark.parametrize("case", [c for c in CONV2D_CASES if "device" not in c.name],
                         ids=[c.name for c in CONV2D_CASES if "device" not in c.name])
def test_meta_kernel_rejects_with_the_same_words(case):
    # torch.compile and opcheck trace with the meta kernel: it must fail as eager does.
    with pytest.raises(case.error) as eager:
        corr2d_ext.conv2d(*case.args, **case.kwargs)
    with pytest.raises(case.error) as meta:
        corr2d_ext.conv2d(*map(on_meta, case.args), **case.kwargs)
    assert str(meta.value) == str(eager.value)


def floating(case):
    return all(a.is_floating_point() for a in case.args if isinstance(a, torch.Tensor))


@pytest.mark.parametrize("case", [c for c in CONV2D_CASES if floating(c)],
                         ids=[c.name for c in CONV2D_CASES if floating(c)])
def test_conv2d_rejects_alike_when_autograd_records(case):
    # With a tensor that requires grad, the call goes through the autograd node first.
    args = [a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in case.args]
    with pytest.raises(case.error, match=case.match):
        corr2d_ext.conv2d(*args, **case.kwargs)


@pytest.mark.parametrize("case", [c for c in CONV2D_CASES if c.name in (
    "input channels not weight.size(1)", "kernel taller than the input", "bias of the wrong size",
    "weight float64, input float32")], ids=lambda c: c.name)
def test_unbatched_input_is_checked_as_its_batch_of_one(case):
    input, *rest = case.args
    # The message names the batched sizes, as conv2d passes them to the op.
    with pytest.raises(case.error, match=case.match):
        corr2d_ext.conv2d(input[0], *rest, **case.kwargs)


# The raw op ---------------------------------------------------------------------------------

DEFAULTS = ([1, 1], [0, 0], [1, 1], 1)


def test_raw_op_rejects_3d_input():
    # conv2d adds the batch dimension of an unbatched input; the op itself takes only 4-D.
    with pytest.raises(RuntimeError, match=r"corr2d: expected input to be 4-D \(N, C, H, W\).*"
                                           r"but got input of size \[4, 6, 6\]"):
        ops.corr2d(t(4, 6, 6), t(*W), None, *DEFAULTS)


@pytest.mark.parametrize("name, index", [("stride", 0), ("padding", 1), ("dilation", 2)])
@pytest.mark.parametrize("values", [[1], [1, 1, 1]], ids=["1 value", "3 values"])
def test_raw_op_rejects_lists_not_of_two_values(name, index, values):
    params = list(DEFAULTS)
    params[index] = values
    expected = re.escape(f"corr2d: expected {name} to be a single integer value or a list of 2 "
                         f"values to match the convolution dimensions, but got {name}={values}")
    with pytest.raises(RuntimeError, match=expected):
        ops.corr2d(t(*X), t(*W), None, *params)


@pytest.mark.parametrize("name, index", [("stride", 0), ("padding", 1), ("dilation", 2)])
def test_raw_op_rejects_parameters_beyond_int32(name, index):
    params = list(DEFAULTS)
    params[index] = [1, 2**31]
    with pytest.raises(RuntimeError, match=rf"corr2d: expected every {name} <= 2147483647, but "
                                           rf"got {name}=\[1, 2147483648\]"):
        ops.corr2d(t(*X), t(*W), None, *params)


# The gradient ops: inconsistent shapes raise instead of reading out of bounds ---------------

GY = (1, 2, 4, 4)  # the output of X and W

INPUT_GRAD_CASES = {
    "grad_output taller than the output": (
        t(1, 2, 5, 4), t(*W), [6, 6], DEFAULTS,
        r"corr2d_input_grad: expected grad_output of size \[1, 2, 4, 4\] \(the output of the "
        r"given input_size and weight\), but got grad_output of size \[1, 2, 5, 4\]"),
    "grad_output with more channels than the weight": (
        t(1, 3, 4, 4), t(*W), [6, 6], DEFAULTS,
        r"expected grad_output of size \[1, 2, 4, 4\] .*but got grad_output of size "
        r"\[1, 3, 4, 4\]"),
    "input_size larger than grad_output covers": (
        t(*GY), t(*W), [100, 6], DEFAULTS,
        r"expected grad_output of size \[1, 2, 98, 4\] .*but got grad_output of size "
        r"\[1, 2, 4, 4\]"),
    "input_size smaller than the kernel": (
        t(*GY), t(*W), [2, 2], DEFAULTS,
        r"corr2d_input_grad: calculated padded input size per channel: \(2 x 2\), dilated "
        r"kernel size: \(3 x 3\)"),
    "input_size of 3 values": (
        t(*GY), t(*W), [6, 6, 6], DEFAULTS,
        r"corr2d_input_grad: expected input_size to be the input's \(H, W\), but got "
        r"input_size=\[6, 6, 6\]"),
    "input_size whose strided output is larger": (
        t(1, 2, 2, 2), t(*W), [8, 8], ([2, 2], [0, 0], [1, 1], 1),
        r"expected grad_output of size \[1, 2, 3, 3\] .*but got grad_output of size "
        r"\[1, 2, 2, 2\]"),
    "grad_output 3-D": (
        t(2, 4, 4), t(*W), [6, 6], DEFAULTS,
        r"corr2d_input_grad: expected grad_output to be 4-D \(N, out_channels, H_out, W_out\), "
        r"but got grad_output of size \[2, 4, 4\]"),
    "negative input_size": (
        t(1, 2, 1, 1), t(*W), [-1, -1], ([1, 1], [2, 2], [1, 1], 1),
        r"corr2d_input_grad: expected an input of non-zero height and width .*but got input of "
        r"size \[1, 4, -1, -1\]"),
    "grad_output and weight of different dtypes": (
        t(*GY, dtype=torch.float64), t(*W), [6, 6], DEFAULTS,
        r"corr2d_input_grad: expected weight to have the same dtype as grad_output \(Double\), "
        r"but got Float"),
}

WEIGHT_GRAD_CASES = {
    "grad_output larger than the output": (
        t(*X), t(1, 2, 5, 5), [3, 3], DEFAULTS,
        r"corr2d_weight_grad: expected grad_output of size \[1, 2, 4, 4\] \(the output of the "
        r"given input and kernel_size\), but got grad_output of size \[1, 2, 5, 5\]"),
    "grad_output of another batch size": (
        t(*X), t(2, 2, 4, 4), [3, 3], DEFAULTS,
        r"expected grad_output of size \[1, 2, 4, 4\] .*but got grad_output of size "
        r"\[2, 2, 4, 4\]"),
    "kernel_size that gives another output": (
        t(*X), t(*GY), [1, 1], DEFAULTS,
        r"expected grad_output of size \[1, 2, 6, 6\] .*but got grad_output of size "
        r"\[1, 2, 4, 4\]"),
    "kernel_size larger than the input": (
        t(*X), t(*GY), [7, 7], DEFAULTS,
        r"corr2d_weight_grad: calculated padded input size per channel: \(6 x 6\), dilated "
        r"kernel size: \(7 x 7\)"),
    "kernel_size 0": (
        t(*X), t(1, 2, 7, 7), [0, 0], DEFAULTS,
        r"corr2d_weight_grad: expected a kernel of at least 1x1, but got weight of size "
        r"\[2, 4, 0, 0\]"),
    "negative kernel_size": (
        t(*X), t(1, 2, 8, 8), [-1, -1], DEFAULTS,
        r"expected a kernel of at least 1x1, but got weight of size \[2, 4, -1, -1\]"),
    "kernel_size of 1 value": (
        t(*X), t(*GY), [3], DEFAULTS,
        r"corr2d_weight_grad: expected kernel_size to be the weight's \(kH, kW\), but got "
        r"kernel_size=\[3\]"),
    "input channels not divisible by groups": (
        t(*X), t(1, 3, 4, 4), [3, 3], ([1, 1], [0, 0], [1, 1], 3),
        r"corr2d_weight_grad: given groups=3, expected the input's channels to be divisible by "
        r"groups, but got input of size \[1, 4, 6, 6\]"),
    "input 3-D": (
        t(4, 6, 6), t(*GY), [3, 3], DEFAULTS,
        r"corr2d_weight_grad: expected input to be 4-D \(N, C, H, W\), but got input of size "
        r"\[4, 6, 6\]"),
    "input and grad_output on different devices": (
        t(*X), t(*GY, device="meta"), [3, 3], DEFAULTS,
        r"expected grad_output to be on the same device as input \(cpu\), but got meta"),
}


@pytest.mark.parametrize("case", INPUT_GRAD_CASES)
def test_input_grad_rejects(case):
    grad_output, weight, input_size, params, match = INPUT_GRAD_CASES[case]
    with pytest.raises(RuntimeError, match=match):
        ops.corr2d_input_grad(grad_output, weight, input_size, *params)


@pytest.mark.parametrize("case", WEIGHT_GRAD_CASES)
def test_weight_grad_rejects(case):
    input, grad_output, kernel_size, params, match = WEIGHT_GRAD_CASES[case]
    with pytest.raises(RuntimeError, match=match):
        ops.corr2d_weight_grad(input, grad_output, kernel_size, *params)


# The tutorial's function and layer ----------------------------------------------------------


@pytest.mark.parametrize("X, K, name, size", [
    (t(1, 4, 5), t(2, 2), "X", r"\[1, 4, 5\]"),
    (t(5), t(2, 2), "X", r"\[5\]"),
    (t(4, 5), t(1, 2, 2), "K", r"\[1, 2, 2\]"),
], ids=["X 3-D", "X 1-D", "K 3-D"])
def test_corr2d_rejects_tensors_not_2d(X, K, name, size):
    with pytest.raises(RuntimeError,
                       match=rf"corr2d: expected {name} to be a 2-D tensor, but got {name} of "
                             rf"size {size}"):
        corr2d_ext.corr2d(X, K)


def test_corr2d_rejects_a_list():
    with pytest.raises(TypeError, match=r"corr2d: expected X to be a 2-D tensor, but got list"):
        corr2d_ext.corr2d([[1.0, 2.0]], t(1, 1))


def test_corr2d_rejects_a_kernel_larger_than_the_image():
    with pytest.raises(RuntimeError, match=r"calculated padded input size per channel: \(2 x 3\), "
                                           r"dilated kernel size: \(3 x 1\)"):
        corr2d_ext.corr2d(t(2, 3), t(3, 1))


def test_tutorial_layer_rejects_a_batched_image():
    with pytest.raises(RuntimeError, match=r"expected X to be a 2-D tensor, but got X of size "
                                           r"\[1, 1, 6, 8\]"):
        corr2d_ext.Conv2D((1, 2))(t(1, 1, 6, 8))


def test_module_rejects_input_with_the_wrong_channel_count():
    with pytest.raises(RuntimeError, match=r"expected input of size \[2, 3, 8, 8\] to have 4 "
                                           r"channels"):
        corr2d_ext.Conv2d(4, 2, 3)(t(2, 3, 8, 8))
