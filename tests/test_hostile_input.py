"""Hostile input: wrong Python types and absurd values for every argument of conv2d, corr2d,
Conv2D and Conv2d, and of the raw ops torch.ops.corr2d_ext.* (the gradient ops included). Each
one raises an ordinary Python exception, never crashes the process, and where F.conv2d raises a
TypeError for a wrong type, conv2d does too.

tools/sanitize.sh runs this file under AddressSanitizer, which is what shows that no rejected
call read out of bounds before it raised.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import corr2d_ext

ops = torch.ops.corr2d_ext

#: The exceptions a bad argument may raise. Not SystemError (a C-API misuse), AssertionError or
#: anything else that means a bug rather than a rejected argument.
REJECTIONS = (TypeError, ValueError, RuntimeError, IndexError, NotImplementedError, OverflowError)

X = torch.randn(1, 4, 6, 6)
W = torch.randn(2, 4, 3, 3)
B = torch.randn(2)
GY = torch.randn(1, 2, 4, 4)  # the output of X and W


class Opaque:
    """An object with nothing a tensor or an int would have."""

    def __repr__(self):
        return "Opaque()"


# Values no integer argument may take: wrong types, wrong lengths, out of range.
NOT_INTS = ["1", b"1", 1.5, 1.0, float("nan"), float("inf"), 1j, None, Opaque(), {}, {1: 1},
            [None, 1], [1.0, 1.0], (1, "1"), [[1, 1]], X, torch.tensor([1.5]),
            2**63, -(2**63) - 1, 2**64, 10**30, [2**63, 1], [1, -(2**65)]]
#: ...and those that are ints, or lists of them, but invalid for stride and dilation.
BAD_STRIDES = NOT_INTS + [0, -1, -(2**63), 2**31, 2**62, [], [1, 2, 3], [1, 0], [1, -1], [0]]
BAD_PADDINGS = NOT_INTS + ["full", "", "SAME", -1, -(2**63), 2**31, 2**62, [], [0, 0, 0], [0, -1]]
BAD_GROUPS = NOT_INTS + [0, -1, -(2**63), 2**31, 2**62, 3, [1], (1, 1)]
#: Values no tensor argument may take.
NOT_TENSORS = ["x", 1.0, 1, None, Opaque(), [[1.0]], [[[[1.0]]]], np.ones((1, 4, 6, 6))]


def bad_tensors(shape):
    """Tensors of the wrong kind for an argument of `shape`: the wrong rank, dtype or layout, an
    empty one, a huge broadcast view."""
    wrong_rank = [torch.randn(shape[-1])] if len(shape) > 1 else []
    return wrong_rank + [
        torch.tensor(1.0), torch.randn(*shape, 1),
        torch.zeros(shape, dtype=torch.int64), torch.zeros(shape, dtype=torch.bool),
        torch.zeros(shape, dtype=torch.complex64), torch.zeros(shape, dtype=torch.float64),
        torch.zeros(shape).to_sparse(), torch.zeros(0),
        torch.zeros(1).expand(*shape[:-1], 2**40),
    ]


def ids(values):
    return [f"{type(v).__name__}:{v!r}"[:40] if not isinstance(v, torch.Tensor)
            else f"Tensor{list(v.shape)}:{v.dtype}:{v.layout}"[:40] for v in values]


def named_ids(cases):
    """Test ids "name=value" for (name, value) cases."""
    return [f"{n}={i}" for (n, _), i in zip(cases, ids(v for _, v in cases))]


def rejects(fn):
    with pytest.raises(REJECTIONS) as info:
        fn()
    return info.value


# conv2d -------------------------------------------------------------------------------------

CONV2D_BAD = (
    [("stride", v) for v in BAD_STRIDES] + [("dilation", v) for v in BAD_STRIDES]
    + [("padding", v) for v in BAD_PADDINGS] + [("groups", v) for v in BAD_GROUPS]
    + [("input", v) for v in NOT_TENSORS + bad_tensors(X.shape)]
    + [("weight", v) for v in NOT_TENSORS + bad_tensors(W.shape)]
    + [("bias", v) for v in NOT_TENSORS + bad_tensors(B.shape) + [torch.randn(3)] if v is not None]
)


@pytest.mark.parametrize("name, value", CONV2D_BAD,
                         ids=named_ids(CONV2D_BAD))
def test_conv2d_rejects(name, value):
    kwargs = dict(input=X, weight=W, bias=B)
    kwargs[name] = value
    rejects(lambda: corr2d_ext.conv2d(**kwargs))


# The wrong Python types for which F.conv2d raises a TypeError: ours does too.
TYPE_ERRORS = [(name, v) for name in ("stride", "padding", "dilation", "groups") for v in
               [1.5, 1.0, None, Opaque(), True, [1.0, 1.0], [None, 1], (1, "1"), 1j, {}]
               if not (name == "groups" and isinstance(v, list))]


@pytest.mark.parametrize("name, value", TYPE_ERRORS,
                         ids=named_ids(TYPE_ERRORS))
def test_conv2d_raises_type_error_where_f_conv2d_does(name, value):
    with pytest.raises(TypeError):
        F.conv2d(X, W, B, **{name: value})
    with pytest.raises(TypeError, match=rf"expected {name} to be an int"):
        corr2d_ext.conv2d(X, W, B, **{name: value})


@pytest.mark.parametrize("name", ["stride", "padding", "dilation", "groups"])
@pytest.mark.parametrize("value", [np.int64(1), np.int32(1), torch.tensor(1)],
                         ids=["numpy int64", "numpy int32", "0-d int tensor"])
def test_conv2d_takes_the_integer_types_f_conv2d_takes(name, value):
    expected = F.conv2d(X, W, B, **{name: value})
    torch.testing.assert_close(corr2d_ext.conv2d(X, W, B, **{name: value}), expected)


def test_conv2d_rejects_an_int_beyond_int64_by_value():
    with pytest.raises(ValueError, match=r"expected stride to fit in 64 bits, but got "
                                         r"stride=9223372036854775808"):
        corr2d_ext.conv2d(X, W, B, stride=[1, 2**63])


# corr2d, Conv2D, Conv2d ---------------------------------------------------------------------

CORR2D_BAD = ([("X", v) for v in NOT_TENSORS + bad_tensors((6, 8))]
              + [("K", v) for v in NOT_TENSORS + bad_tensors((1, 2)) + [torch.randn(7, 2)]])


@pytest.mark.parametrize("name, value", CORR2D_BAD,
                         ids=named_ids(CORR2D_BAD))
def test_corr2d_rejects(name, value):
    args = dict(X=torch.randn(6, 8), K=torch.randn(1, 2))
    args[name] = value
    rejects(lambda: corr2d_ext.corr2d(**args))


# kernel_size values that torch.rand rejects; none is large enough to allocate much.
BAD_KERNEL_SIZES = ["a", 1.5, None, Opaque(), (-1, 2), (2, -1), (1.0, 2.0), (2**62, 2**62),
                    (2**40, 2**40, 2**40), ("1", 2)]


@pytest.mark.parametrize("kernel_size", BAD_KERNEL_SIZES, ids=ids(BAD_KERNEL_SIZES))
def test_tutorial_layer_rejects_a_bad_kernel_size(kernel_size):
    rejects(lambda: corr2d_ext.Conv2D(kernel_size)(torch.randn(6, 8)))


@pytest.mark.parametrize("x", NOT_TENSORS + bad_tensors((6, 8)) + [torch.randn(1, 1)],
                         ids=ids(NOT_TENSORS + bad_tensors((6, 8)) + [torch.randn(1, 1)]))
def test_tutorial_layer_rejects_a_bad_image(x):
    rejects(lambda: corr2d_ext.Conv2D((1, 2))(x))


MODULE_ARGS = dict(in_channels=4, out_channels=2, kernel_size=3)
MODULE_BAD = (
    [("in_channels", v) for v in ["4", 4.0, None, -1, Opaque()]]
    + [("out_channels", v) for v in ["2", 2.5, None, -2, Opaque()]]
    + [("kernel_size", v) for v in ["3", 3.5, None, -1, (3, -1), (3, 3, 3), (2**62, 2**62)]]
    + [("stride", v) for v in ["1", 1.5, 0, -1, (1, 0), None]]
    + [("padding", v) for v in ["full", -1, (1, -1), 1.5]]
    + [("dilation", v) for v in ["1", 0, -1, 1.5, (1, 0)]]
    + [("groups", v) for v in ["1", 0, -1, 3, 1.5, None]]
    + [("padding_mode", v) for v in ["bogus", None, 1]]
    + [("dtype", v) for v in ["float", torch.int64, 1]]
    + [("device", v) for v in ["nowhere", 1.5]]
)


@pytest.mark.parametrize("name, value", MODULE_BAD,
                         ids=named_ids(MODULE_BAD))
def test_module_rejects_a_bad_argument(name, value):
    # Either nn.Conv2d's constructor rejects it, or the forward call does.
    rejects(lambda: corr2d_ext.Conv2d(**{**MODULE_ARGS, name: value})(torch.randn(1, 4, 6, 6)))


@pytest.mark.parametrize("x", NOT_TENSORS + bad_tensors(X.shape) + [torch.randn(1, 3, 6, 6)],
                         ids=ids(NOT_TENSORS + bad_tensors(X.shape) + [torch.randn(1, 3, 6, 6)]))
def test_module_rejects_a_bad_input(x):
    rejects(lambda: corr2d_ext.Conv2d(**MODULE_ARGS)(x))


# The raw ops --------------------------------------------------------------------------------

INT2_NAMES = ("stride", "padding", "dilation")
RAW_OPS = {
    "corr2d": (ops.corr2d, ("input", "weight", "bias", *INT2_NAMES, "groups"),
               (X, W, B, [1, 1], [0, 0], [1, 1], 1)),
    "corr2d_input_grad": (ops.corr2d_input_grad,
                          ("grad_output", "weight", "input_size", *INT2_NAMES, "groups"),
                          (GY, W, [6, 6], [1, 1], [0, 0], [1, 1], 1)),
    "corr2d_weight_grad": (ops.corr2d_weight_grad,
                           ("input", "grad_output", "kernel_size", *INT2_NAMES, "groups"),
                           (X, GY, [3, 3], [1, 1], [0, 0], [1, 1], 1)),
}
# Every int[2] or SymInt[2] argument: the wrong type, the wrong length, out of range. (The
# schema takes one int for an int[2], as F.conv2d does, so a lone int is not in this list.)
BAD_INT_LISTS = ["1", 1.5, None, Opaque(), [], [1], [1, 1, 1], [1.0, 1.0], [None, 1], X,
                 [2**63, 1], [-(2**63), 1], [2**62, 2**62], [-1, -1], [0, 0], [2**31, 1]]
BAD_OP_GROUPS = ["1", 1.5, None, Opaque(), [1], 0, -1, 2**31, 2**63, -(2**63), 3]


def raw_op_cases():
    for op_name, (op, names, good) in RAW_OPS.items():
        for i, name in enumerate(names):
            if name == "bias":
                values = [v for v in NOT_TENSORS if v is not None] + bad_tensors(B.shape)
            elif i < 2:
                values = NOT_TENSORS + bad_tensors(good[i].shape)
            elif name == "groups":
                values = BAD_OP_GROUPS
            else:
                values = BAD_INT_LISTS
            for value in values:
                if name == "padding" and value == [0, 0]:
                    continue  # valid
                yield pytest.param(op_name, i, value, id=f"{op_name}-{name}={ids([value])[0]}")


@pytest.mark.parametrize("op_name, index, value", list(raw_op_cases()))
def test_raw_op_rejects(op_name, index, value):
    op, _, good = RAW_OPS[op_name]
    args = list(good)
    args[index] = value
    rejects(lambda: op(*args))


def test_raw_ops_accept_the_good_arguments_the_cases_above_spoil():
    # The rejections above are the bad argument's doing, not the others'.
    for op, _, good in RAW_OPS.values():
        assert op(*good).dim() == 4


# The gradient ops on shapes that do not fit together: each is rejected by the check, before a
# kernel could read past the end of a tensor whose shape it took from the others.
INCONSISTENT_INPUT_GRAD = {
    "grad_output wider than the output": (torch.randn(1, 2, 4, 5), W, [6, 6]),
    "grad_output with fewer rows": (torch.randn(1, 2, 1, 4), W, [6, 6]),
    "grad_output with more channels": (torch.randn(1, 8, 4, 4), W, [6, 6]),
    "input_size much larger": (GY, W, [600, 600]),
    "input_size of 2**63 - 1": (GY, W, [2**63 - 1, 6]),
    "input_size one row short": (GY, W, [5, 6]),
    "a weight with more taps": (GY, torch.randn(2, 4, 5, 5), [6, 6]),
    "a weight with more output channels": (GY, torch.randn(4, 4, 3, 3), [6, 6]),
    "a huge broadcast grad_output": (torch.zeros(1).expand(1, 2, 2**20, 2**20), W, [6, 6]),
}
INCONSISTENT_WEIGHT_GRAD = {
    "grad_output wider than the output": (X, torch.randn(1, 2, 4, 5), [3, 3]),
    "grad_output with another batch": (X, torch.randn(3, 2, 4, 4), [3, 3]),
    "kernel_size smaller than grad_output says": (X, GY, [2, 2]),
    "kernel_size larger than the input": (X, GY, [9, 9]),
    "kernel_size of 2**62": (X, GY, [2**62, 3]),
    "input narrower than grad_output says": (torch.randn(1, 4, 6, 5), GY, [3, 3]),
    "a huge broadcast input": (torch.zeros(1).expand(1, 4, 2**20, 2**20), GY, [3, 3]),
}


@pytest.mark.parametrize("case", INCONSISTENT_INPUT_GRAD)
def test_input_grad_rejects_inconsistent_shapes(case):
    grad_output, weight, input_size = INCONSISTENT_INPUT_GRAD[case]
    with pytest.raises(RuntimeError, match=r"corr2d_input_grad: "):
        ops.corr2d_input_grad(grad_output, weight, input_size, [1, 1], [0, 0], [1, 1], 1)


@pytest.mark.parametrize("case", INCONSISTENT_WEIGHT_GRAD)
def test_weight_grad_rejects_inconsistent_shapes(case):
    input, grad_output, kernel_size = INCONSISTENT_WEIGHT_GRAD[case]
    with pytest.raises(RuntimeError, match=r"corr2d_weight_grad: "):
        ops.corr2d_weight_grad(input, grad_output, kernel_size, [1, 1], [0, 0], [1, 1], 1)


# Sizes whose arithmetic in the check would pass 2**63: the gradient ops' input_size and
# kernel_size are the only sizes a caller gives as numbers rather than as a tensor's shape.
# (These were a bug: they were not bounded, and the check's int64 arithmetic wrapped.)
WRAPS_TO_2 = (2 * pow(3, -1, 2**64)) % 2**64 + 1  # (WRAPS_TO_2 - 1) * 3 == 2 (mod 2**64)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_weight_grad_rejects_a_kernel_size_whose_dilated_extent_would_wrap(device):
    # Unbounded, (kernel - 1) * dilation + 1 wrapped to 3 rows here: the check accepted, and
    # the op returned a "weight gradient" of size [1, 0, 6148914691236517207, 1].
    input = torch.randn(1, 0, 6, 6, device=device)
    grad_output = torch.randn(1, 1, 4, 6, device=device)
    with pytest.raises(RuntimeError, match=r"corr2d_weight_grad: expected heights and widths of "
                                           r"at most 2147483647"):
        ops.corr2d_weight_grad(input, grad_output, [WRAPS_TO_2, 1], [1, 1], [0, 0], [3, 1], 1)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_input_grad_rejects_an_input_size_whose_padded_size_would_wrap(device):
    # Unbounded, input_size + 2 * padding wrapped negative, and the error showed the wrapped
    # "padded input size per channel: (-9223372036854775807 x 6)".
    grad_output = torch.randn(0, 1, 4, 4, device=device)
    weight = torch.randn(1, 1, 3, 3, device=device)
    with pytest.raises(RuntimeError, match=r"corr2d_input_grad: expected heights and widths of "
                                           r"at most 2147483647") as info:
        ops.corr2d_input_grad(grad_output, weight, [2**63 - 1, 6], [1, 1], [1, 0], [1, 1], 1)
    assert "-9223372036854775807" not in str(info.value)


def test_the_process_survives_ten_thousand_rejected_calls():
    # Rejections that allocate their messages and unwind through the dispatcher, many times:
    # a leak or a corrupted heap would show here (under ASan, or as a crash).
    for i in range(10_000):
        with pytest.raises(RuntimeError):
            ops.corr2d_input_grad(GY, W, [6 + i % 3 + 1, 6], [1, 1], [0, 0], [1, 1], 1)
    assert ops.corr2d_input_grad(GY, W, [6, 6], [1, 1], [0, 0], [1, 1], 1).shape == X.shape
