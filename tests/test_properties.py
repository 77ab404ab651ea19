"""Property tests against F.conv2d, over geometries hypothesis draws.

Valid geometries (batch 0-3, channels 1-8, groups dividing both, kernel 1-5 on each side,
stride 1-3, padding 0-3 or 'same' or 'valid', dilation 1-3, with or without a bias, batched or
not, contiguous or not): the output and the gradients of input, weight and bias equal F.conv2d's
in float64, and in float32 on the AVX2 path too, against F.conv2d in float64.

Invalid geometries (a valid one with one or two things broken): whenever F.conv2d raises, ours
raises the same exception class, and whenever F.conv2d accepts, ours accepts and agrees, except
for the differences listed in `known_difference`. The dtype is left out on purpose: F.conv2d on
the CPU takes integer and complex tensors, which ours rejects by design (tests/test_errors.py).

The gradient ops called directly on shapes that may not fit together: they raise, or the shapes
did fit and the result is torch.nn.grad's. tools/sanitize.sh runs all of this under ASan, which
is what shows that a rejected call never read out of bounds first.

The "ci" profile (tests/conftest.py) makes every run draw the same examples;
HYPOTHESIS_PROFILE=explore draws many more at random.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, note, settings
from hypothesis import strategies as st

import corr2d_ext
from conftest import (
    TOLERANCES,
    assert_all_close,
    assert_matches_conv2d,
    contiguous_copy,
    outputs_and_grads,
)
from reference import output_size

ops = torch.ops.corr2d_ext

pytestmark = pytest.mark.filterwarnings(
    "ignore:Using padding=.same. with even kernel lengths:UserWarning")

# The checks of bad arguments are cheap to run: their properties draw more examples than the
# numerical ones.
MORE = settings(max_examples=4 * settings.default.max_examples)

# The AVX2 float32 kernels take problems of at least this many multiply-adds (kMinFastMacs in
# csrc/cpu/corr2d_kernel.cpp); smaller ones take the portable kernels even in float32.
FAST_PATH_MIN_MACS = 4096


@dataclass(frozen=True)
class Geometry:
    """One conv2d call's shapes and options, as conv2d takes them."""

    batch: int
    in_channels: int
    out_channels: int
    groups: int
    height: int
    width: int
    kernel: tuple  # (kH, kW)
    stride: object  # int or pair
    padding: object  # int, pair, 'same' or 'valid'
    dilation: object  # int or pair
    bias: bool = True
    batched: bool = True
    input_layout: str = "contiguous"
    weight_layout: str = "contiguous"

    @property
    def input_shape(self):
        chw = (self.in_channels, self.height, self.width)
        return (self.batch, *chw) if self.batched else chw

    @property
    def weight_shape(self):
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)

    def options(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)

    def output_hw(self):
        stride, dilation = pair(self.stride), pair(self.dilation)
        if self.padding == "same":
            return self.height, self.width
        padding = (0, 0) if self.padding == "valid" else pair(self.padding)
        return tuple(output_size(n, k, s, p, d) for n, k, s, p, d in
                     zip((self.height, self.width), self.kernel, stride, padding, dilation))

    def macs(self):
        h, w = self.output_hw()
        return (self.batch * self.out_channels * h * w * (self.in_channels // self.groups)
                * self.kernel[0] * self.kernel[1])


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


LAYOUTS = ["contiguous", "channels_last", "transposed", "sliced"]  # see make()


def int_or_pair(values):
    """An int, or a pair of ints (drawn from `values`), as a user would pass either."""
    return st.one_of(values, st.tuples(values, values))


@st.composite
def geometries(draw, max_extra=8, max_batch=3):
    """A valid geometry: every check passes."""
    groups = draw(st.integers(1, 8))
    in_channels = groups * draw(st.integers(1, 8 // groups))
    out_channels = groups * draw(st.integers(1, 8 // groups))
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    dilation = draw(int_or_pair(st.integers(1, 3)))
    padding = draw(st.one_of(int_or_pair(st.integers(0, 3)), st.sampled_from(["same", "valid"])))
    stride = 1 if padding == "same" else draw(int_or_pair(st.integers(1, 3)))
    # The smallest image the dilated kernel fits once padded, and up to max_extra more.
    pads = (0, 0) if isinstance(padding, str) else pair(padding)
    smallest = [1 if padding == "same" else max(1, d * (k - 1) + 1 - 2 * p)
                for k, d, p in zip(kernel, pair(dilation), pads)]
    height, width = (draw(st.integers(s, s + max_extra)) for s in smallest)
    return Geometry(
        batch=draw(st.integers(0, max_batch)), in_channels=in_channels,
        out_channels=out_channels, groups=groups, height=height, width=width, kernel=kernel,
        stride=stride, padding=padding, dilation=dilation, bias=draw(st.booleans()),
        batched=draw(st.booleans()),
        input_layout=draw(st.sampled_from(LAYOUTS)),
        weight_layout=draw(st.sampled_from(LAYOUTS)),
    )


def make(shape, layout, gen, dtype):
    """A normal tensor of `shape` (3-D or 4-D) laid out as `layout`: contiguous, channels_last
    (channels innermost), transposed (rows and columns swapped in memory) or sliced (every other
    row, and all columns but the first, of a larger tensor)."""
    def randn(*s):
        return torch.randn(s, generator=gen, dtype=torch.float64).to(dtype)

    *lead, c, h, w = shape
    if layout == "channels_last":
        t = randn(*lead, h, w, c).movedim(-1, -3)
    elif layout == "transposed":
        t = randn(*lead, c, w, h).transpose(-1, -2)
    elif layout == "sliced":
        t = randn(*lead, c, 2 * h, w + 1)[..., ::2, 1:]
    else:
        t = randn(*shape)
    assert t.shape == tuple(shape)
    return t


def tensors(g: Geometry, seed: int, dtype):
    gen = torch.Generator().manual_seed(seed)
    x = make(g.input_shape, g.input_layout, gen, dtype)
    w = make(g.weight_shape, g.weight_layout, gen, dtype)
    b = torch.randn(g.out_channels, generator=gen, dtype=torch.float64) if g.bias else None
    return x, w, None if b is None else b.to(dtype), gen


# Valid geometries ---------------------------------------------------------------------------


@given(g=geometries(), seed=st.integers(0, 2**31 - 1))
def test_float64_output_and_gradients_equal_f_conv2d(g, seed):
    note(f"{g}, macs={g.macs()}")
    x, w, b, gen = tensors(g, seed, torch.float64)
    assert_matches_conv2d(x, w, b, rng=gen, **g.options())


def assert_float32_matches_float64_conv2d(g, seed):
    x, w, b, gen = tensors(g, seed, torch.float32)
    grad_output = lambda y: torch.randn(y.shape, generator=gen).to(y.dtype)
    ours = outputs_and_grads(corr2d_ext.conv2d, x, w, b, grad_output, **g.options())
    up = lambda t: None if t is None else t.double()
    # The reference sees the same float32 numbers, exactly, in float64, and contiguous (as in
    # assert_matches_conv2d): torch 2.14's float64 F.conv2d gets the weight gradient wrong for
    # some channels_last views with groups (an unbatched (4, 1, 2) input of strides (1, 8, 4),
    # a (2, 2, 1, 1) weight, groups=2), which hypothesis found.
    ref = lambda t: up(contiguous_copy(t))
    theirs = outputs_and_grads(F.conv2d, ref(x), ref(w), ref(b), up(ours[-1]), **g.options())
    assert all(t.dtype == torch.float32 for t in ours[:-1] if t is not None)
    assert_all_close([up(t) for t in ours[:-1]], theirs[:-1], **TOLERANCES[torch.float32])


@given(g=geometries(), seed=st.integers(0, 2**31 - 1))
def test_float32_output_and_gradients_equal_float64_f_conv2d(g, seed):
    note(f"{g}, macs={g.macs()}")
    assert_float32_matches_float64_conv2d(g, seed)


def test_float32_on_the_avx2_path_equals_float64_f_conv2d():
    # The same, on problems large enough for the AVX2 kernels (where this CPU has them).
    ran = []

    @given(g=geometries(max_extra=20, max_batch=3), seed=st.integers(0, 2**31 - 1))
    def check(g, seed):
        assume(g.macs() >= FAST_PATH_MIN_MACS)
        note(f"{g}, macs={g.macs()}")
        assert_float32_matches_float64_conv2d(g, seed)
        ran.append(g)

    check()
    # Not vacuous: assume() let enough examples through.
    assert len(ran) >= 10, len(ran)


# Invalid geometries -------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """The shapes and options of a conv2d call that may be invalid."""

    input_shape: tuple
    weight_shape: tuple
    bias_shape: tuple | None
    options: dict

    def tensors(self, seed):
        gen = torch.Generator().manual_seed(seed)
        randn = lambda s: torch.randn(s, generator=gen, dtype=torch.float64)
        return (randn(self.input_shape), randn(self.weight_shape),
                None if self.bias_shape is None else randn(self.bias_shape))


small = st.integers(-1, 3)
# In the order they are applied: the ranks change last, once the sizes they move are set.
BREAKS = ["groups", "stride", "padding", "dilation", "kernel", "image", "input channels",
          "weight channels", "out channels", "bias", "empty batch", "input rank", "weight rank"]


@st.composite
def calls(draw):
    """A valid geometry with one or two things broken (or, by chance, left valid)."""
    g = draw(geometries(max_extra=3, max_batch=2))
    x, w = list(g.input_shape), list(g.weight_shape)
    b = [g.out_channels] if g.bias else None
    opts = g.options()
    chosen = draw(st.lists(st.sampled_from(BREAKS), min_size=1, max_size=2, unique=True))
    for what in sorted(chosen, key=BREAKS.index):
        if what == "groups":
            opts["groups"] = draw(st.integers(-1, 9))
        elif what in ("stride", "dilation"):
            opts[what] = draw(int_or_pair(small))
        elif what == "padding":
            opts["padding"] = draw(st.one_of(int_or_pair(st.integers(-1, 4)),
                                             st.sampled_from(["same", "valid"])))
        elif what == "kernel":
            w[-2:] = [draw(st.integers(0, 12)), draw(st.integers(0, 12))]
        elif what == "image":
            x[-2:] = [draw(st.integers(0, 4)), draw(st.integers(0, 4))]
        elif what == "input channels":
            x[-3] = draw(st.integers(0, 9))
        elif what == "weight channels":
            w[1] = draw(st.integers(0, 5))
        elif what == "out channels":
            w[0] = draw(st.integers(0, 9))
        elif what == "bias":
            b = draw(st.sampled_from([[w[0] + 1], [max(w[0] - 1, 0)], [1, w[0]], []]))
        elif what == "input rank":
            x = draw(st.sampled_from([x[-2:], [1, *x] if len(x) == 4 else [1, 1, *x]]))
        elif what == "weight rank":
            w = draw(st.sampled_from([w[1:], [*w, 1]]))
        elif what == "empty batch":
            x = [0, *x[-3:]]
    return Call(tuple(x), tuple(w), None if b is None else tuple(b), opts)


def outcome(fn):
    """(None, result) if fn returns, (exception, None) if it raises."""
    try:
        return None, fn()
    except Exception as e:  # noqa: BLE001 (any exception is an outcome to compare)
        return e, None


def known_difference(call: Call, theirs: Exception | None):
    """Why ours may differ from F.conv2d on this call (a documented, intended difference), or
    None. Each one is still pinned: see test_invalid_geometry_raises_as_f_conv2d_does."""
    x, w = call.input_shape, call.weight_shape
    if len(x) not in (3, 4) or len(w) != 4:
        return None
    channels = x[-3]
    if channels == 0 and w[1] == 0:
        return "zero input channels"  # ours: every output is its bias (an empty sum)
    if 0 in w[2:]:
        return "zero-size kernel"  # F.conv2d: IndexError or a oneDNN error, by batch size
    empty = 0 in x
    if empty and theirs is None:
        return "empty input"  # F.conv2d skips some checks on an empty input, ours does not
    return None


def test_invalid_geometry_raises_as_f_conv2d_does():
    seen = {"accepted": 0, "rejected": 0}

    @MORE
    @given(call=calls(), seed=st.integers(0, 2**31 - 1))
    def check(call, seed):
        their_error = check_call(call, seed)
        if known_difference(call, their_error) is None:
            seen["rejected" if their_error else "accepted"] += 1

    check()
    # Not vacuous: F.conv2d accepted some calls and rejected others (not counting the known
    # differences).
    assert seen["accepted"] >= 5 and seen["rejected"] >= 5, seen


def check_call(call, seed):
    """Ours against F.conv2d on one call; returns F.conv2d's exception (None if it accepted)."""
    note(str(call))
    x, w, b = call.tensors(seed)
    their_error, theirs = outcome(lambda: F.conv2d(x, w, b, **call.options))
    our_error, ours = outcome(lambda: corr2d_ext.conv2d(x, w, b, **call.options))
    note(f"F.conv2d: {their_error!r}\nours: {our_error!r}")
    why = known_difference(call, their_error)
    if why == "zero input channels":
        # Where F.conv2d accepts, ours accepts and gives the bias (zeros without one)
        # everywhere; where it raises, ours raises the same class.
        assert type(our_error) is type(their_error), f"ours: {our_error!r}, F: {their_error!r}"
        if our_error is None:
            expected = torch.zeros(w.shape[0], dtype=w.dtype) if b is None else b
            assert ours.shape[-3] == w.shape[0]
            assert torch.equal(ours, expected.view(-1, 1, 1).expand_as(ours))
    elif why == "zero-size kernel":
        # Always rejected, in the class of the other geometry errors.
        assert isinstance(our_error, RuntimeError), repr(our_error)
    elif why == "empty input" and our_error is not None:
        # F.conv2d accepted an empty input with an option it checks only on data: ours
        # rejects that option whatever the input holds.
        dilation = pair(call.options["dilation"])
        assert isinstance(our_error, RuntimeError), repr(our_error)
        assert min(dilation) < 1 or 0 in call.input_shape[-2:], repr(our_error)
    else:
        assert type(our_error) is type(their_error), f"ours: {our_error!r}, F: {their_error!r}"
        if their_error is None:
            assert_all_close([ours], [theirs], names=("output",), **TOLERANCES[torch.float64])
    return their_error


# The gradient ops on shapes that may not fit together ---------------------------------------


@st.composite
def gradient_calls(draw):
    """A valid geometry's gradient-op arguments (contiguous, batched), with one shape perhaps
    changed: grad_output's, the weight's or the input's, or the input_size / kernel_size."""
    g = draw(geometries(max_extra=3, max_batch=2))
    g = replace(g, batched=True, padding=(0, 0) if g.padding == "valid" else g.padding)
    if g.padding == "same":
        g = replace(g, padding=tuple(d * (k - 1) // 2 for d, k in zip(pair(g.dilation), g.kernel)))
    x, w = list(g.input_shape), list(g.weight_shape)
    gy = [g.batch, g.out_channels, *g.output_hw()]
    size, kernel = list(x[2:]), list(w[2:])
    which = draw(st.sampled_from(["none", "grad_output", "weight", "input", "size"]))
    if which != "none":
        target = {"grad_output": gy, "weight": w, "input": x,
                  "size": draw(st.sampled_from([size, kernel]))}[which]
        i = draw(st.integers(0, len(target) - 1))
        target[i] = max(0, target[i] + draw(st.sampled_from([-2, -1, 1, 2, 5])))
    params = [list(pair(g.stride)), list(pair(g.padding)), list(pair(g.dilation)), g.groups]
    return tuple(x), tuple(w), tuple(gy), size, kernel, params


def input_grad_outcome(call, seed):
    """ops.corr2d_input_grad on one call: it raises a RuntimeError, or the shapes fit and it
    equals torch.nn.grad.conv2d_input. Returns whether it accepted."""
    x, w, gy, size, _, params = call
    note(f"grad_output {gy}, weight {w}, input_size {size}, params {params}")
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(w, generator=gen, dtype=torch.float64)
    grad_output = torch.randn(gy, generator=gen, dtype=torch.float64)
    error, ours = outcome(lambda: ops.corr2d_input_grad(grad_output, weight, size, *params))
    if error is not None:
        assert isinstance(error, RuntimeError), repr(error)
        return False
    input_size = (gy[0], w[1] * params[3], *size)
    expected = torch.nn.grad.conv2d_input(input_size, weight, grad_output, *params)
    assert_all_close([ours], [expected], names=("grad_input",), **TOLERANCES[torch.float64])
    return True


def weight_grad_outcome(call, seed):
    """ops.corr2d_weight_grad on one call: it raises a RuntimeError, or the shapes fit and it
    equals torch.nn.grad.conv2d_weight. Returns whether it accepted."""
    x, w, gy, _, kernel, params = call
    note(f"input {x}, grad_output {gy}, kernel_size {kernel}, params {params}")
    gen = torch.Generator().manual_seed(seed)
    input = torch.randn(x, generator=gen, dtype=torch.float64)
    grad_output = torch.randn(gy, generator=gen, dtype=torch.float64)
    error, ours = outcome(lambda: ops.corr2d_weight_grad(input, grad_output, kernel, *params))
    if error is not None:
        assert isinstance(error, RuntimeError), repr(error)
        return False
    weight_size = (gy[1], x[1] // params[3], *kernel)
    expected = torch.nn.grad.conv2d_weight(input, weight_size, grad_output, *params)
    assert_all_close([ours], [expected], names=("grad_weight",), **TOLERANCES[torch.float64])
    return True


@pytest.mark.parametrize("op", [input_grad_outcome, weight_grad_outcome],
                         ids=["input_grad", "weight_grad"])
def test_gradient_op_raises_or_equals_torch_nn_grad(op):
    seen = {True: 0, False: 0}

    @MORE
    @given(call=gradient_calls(), seed=st.integers(0, 2**31 - 1))
    def check(call, seed):
        seen[op(call, seed)] += 1

    check()
    assert seen[True] >= 5 and seen[False] >= 5, seen  # not vacuous: both outcomes drawn
