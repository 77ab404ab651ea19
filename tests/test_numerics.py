"""Numerics: NaN and Inf propagate as in F.conv2d, nothing skips a zero weight or a zero input,
and results are bitwise the same across runs and across 1 and 2 threads, forward and backward.

Where NaN and Inf land is F.conv2d's definition: the correlation of the zero-padded input, so a
tap in the padding is a term (0 * Inf = NaN) and a zero between strided outputs is not. That is
F.conv2d in float64 on the CPU, term for term; tests/reference.py sums those terms without BLAS,
and test_the_reference_is_f_conv2d_in_float64 holds the two together. (F.conv2d's float32 path
disagrees with it, and with itself, in some geometries: oneDNN skips the padding there.)

Every test runs on each CPU path: float32 on the portable kernels and on every fast-path
instantiation this machine runs (native and generic: see FAST_CPU_ISAS in conftest.py), and
float64, bfloat16 and float16 on the default one (the geometries are large enough for the fast
path: FAST_PATH_MIN_MACS).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

import corr2d_ext
from conftest import FAST_CPU_ISAS, cpu_isa, outputs_and_grads
from reference import describe_specials, same_specials, sum_of_terms

INF, NAN = float("inf"), float("nan")
NAMES = ("output", "grad_input", "grad_weight", "grad_bias")
FAST_PATH_MIN_MACS = 4096

#: name -> (dtype, CPU kernel set): float32 on the portable kernels and on every fast-path
#: instantiation this machine runs (the generic ones carry the 16- and 4-lane logic to
#: machines without AVX-512 or NEON), and the other dtypes on the default one.
PATHS = {
    "float64": (torch.float64, "auto"),
    "float32 portable": (torch.float32, "portable"),
    **{f"float32 {isa}": (torch.float32, isa) for isa in FAST_CPU_ISAS},
    "bfloat16": (torch.bfloat16, "auto"),
    "float16": (torch.float16, "auto"),
}


def path_params(names):
    return list(names)


@contextlib.contextmanager
def on_path(name):
    """Runs a block on one CPU path (the kernel set restored after)."""
    dtype, isa = PATHS[name]
    with cpu_isa(isa):
        yield dtype


# (input shape, weight shape, options): padding, stride, dilation, groups, an odd width (the
# AVX2 kernels' right-edge vectors), and padding as wide as the kernel.
GEOMETRIES = {
    "plain": ((2, 3, 12, 13), (4, 3, 3, 3), dict()),
    "padding 1": ((2, 3, 12, 13), (4, 3, 3, 3), dict(padding=1)),
    "stride 2, padding 1": ((2, 3, 17, 19), (4, 3, 3, 3), dict(stride=2, padding=1)),
    "dilation 2, padding 2": ((2, 3, 12, 13), (4, 3, 3, 3), dict(dilation=2, padding=2)),
    "padding (0, 3)": ((2, 3, 12, 13), (4, 3, 3, 3), dict(padding=(0, 3))),
    "stride (1, 3), padding 2": ((2, 3, 14, 25), (4, 3, 3, 3), dict(stride=(1, 3), padding=2)),
    "groups 3, padding 1": ((2, 3, 12, 13), (6, 1, 3, 3), dict(groups=3, padding=1)),
    "depthwise 5x1, padding (2, 0)": ((2, 4, 20, 17), (4, 1, 5, 1), dict(groups=4, padding=(2, 0))),
    "stride 2": ((2, 3, 25, 27), (4, 3, 3, 3), dict(stride=2)),
    "dilation 2": ((2, 3, 14, 15), (4, 3, 3, 3), dict(dilation=2)),
}


def macs(input_shape, weight_shape, options):
    y = F.conv2d(torch.empty(input_shape), torch.empty(weight_shape), None, **options)
    return y.numel() * weight_shape[1] * weight_shape[2] * weight_shape[3]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_geometries_are_large_enough_for_the_fast_path(geometry):
    assert macs(*GEOMETRIES[geometry]) >= FAST_PATH_MIN_MACS


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def make(geometry, seed=0):
    """float64 input, weight, bias and grad_output of a geometry, of moderate size (so that no
    finite sum overflows)."""
    input_shape, weight_shape, options = GEOMETRIES[geometry]
    gen = torch.Generator().manual_seed(seed)
    randn = lambda *s: torch.randn(s, generator=gen, dtype=torch.float64)
    x, w, b = randn(*input_shape), randn(*weight_shape), randn(weight_shape[0])
    gy = randn(*F.conv2d(x, w, b, **options).shape)
    return x, w, b, gy, options


def reference(x, w, b, gy, options):
    return sum_of_terms(x, w, b, gy, pair(options.get("stride", 1)),
                        pair(options.get("padding", 0)), pair(options.get("dilation", 1)),
                        options.get("groups", 1))


def ours_on(path, x, w, b, gy, options):
    """Output and gradients on one path, from arguments rounded to its dtype."""
    with on_path(path) as dtype:
        to = lambda t: t.to(dtype)
        out = outputs_and_grads(corr2d_ext.conv2d, to(x), to(w), to(b), to(gy), **options)[:-1]
    return [t.double() for t in out]


def f_conv2d_in(dtype, x, w, b, gy, options):
    to = lambda t: t.to(dtype)
    return [t.double() for t in
            outputs_and_grads(F.conv2d, to(x), to(w), to(b), to(gy), **options)[:-1]]


def assert_same_specials(ours, expected, what):
    for name, a, e in zip(NAMES, ours, expected):
        assert same_specials(a, e), f"{what}, {name}: {describe_specials(a, e)}"


def assert_finite_parts_close(ours, expected, dtype):
    # Wherever both are finite, the numbers themselves agree (half types: loosely).
    tol = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 1e-2}[dtype]
    for name, a, e in zip(NAMES, ours, expected):
        finite = torch.isfinite(a) & torch.isfinite(e)
        scale = max(1.0, e[finite].abs().max().item()) if finite.any() else 1.0
        torch.testing.assert_close(a[finite], e[finite], rtol=tol, atol=tol * scale,
                                   msg=lambda m, name=name: f"{name}: {m}")


def spoil(x, w, b, gy, where, value):
    """Puts `value` into `where` (input, weight, bias or grad_output): at a corner, at the far
    corner, and inside, so that it meets the padding, the right edge and the middle."""
    t = {"input": x, "weight": w, "bias": b, "grad_output": gy}[where]
    if where == "bias":
        t[1] = value
        return
    t[0, 0, 0, 0] = value
    t[-1, -1, -1, -1] = value
    t[t.shape[0] // 2, t.shape[1] // 2, t.shape[2] // 2, t.shape[3] // 3] = value


# NaN and Inf --------------------------------------------------------------------------------

VALUES = {"+inf": INF, "-inf": -INF, "nan": NAN}
ALL_PATHS = path_params(list(PATHS))


def padded(geometry):
    return pair(GEOMETRIES[geometry][2].get("padding", 0)) != (0, 0)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("where", ["input", "weight", "bias", "grad_output"])
@pytest.mark.parametrize("value", VALUES)
def test_the_reference_is_f_conv2d_in_float64(geometry, where, value):
    # The reference and F.conv2d in float64 put NaN and Inf in the same places (and agree on
    # the finite numbers): the reference is F.conv2d's definition, not a rule of ours.
    x, w, b, gy, options = make(geometry)
    spoil(x, w, b, gy, where, VALUES[value])
    expected = reference(x, w, b, gy, options)
    theirs = f_conv2d_in(torch.float64, x, w, b, gy, options)
    assert_same_specials(theirs, expected, "F.conv2d against the reference")
    assert_finite_parts_close(theirs, expected, torch.float64)


def check_propagation(path, geometry, where, value):
    """Ours on one path, with `value` put into `where`: NaN and Inf exactly where F.conv2d's
    definition puts them, and the finite numbers as F.conv2d's."""
    x, w, b, gy, options = make(geometry)
    spoil(x, w, b, gy, where, VALUES[value])
    dtype = PATHS[path][0]
    x, w, b, gy = (t.to(dtype).double() for t in (x, w, b, gy))  # the numbers ours will see
    ours = ours_on(path, x, w, b, gy, options)
    expected = reference(x, w, b, gy, options)
    assert_same_specials(ours, expected, f"{path}, F.conv2d's definition")
    assert_finite_parts_close(ours, f_conv2d_in(torch.float64, x, w, b, gy, options), dtype)
    assert any(not torch.isfinite(t).all() for t in ours)  # it did propagate


# An Inf or NaN weight meets the padding in the forward (F.conv2d: NaN at the border) and a
# zero-padded grad_output in the AVX2 input gradient (F.conv2d: no such term); one in
# grad_output meets the padding in the weight gradient. Each of these was a bug, found here.
@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("where", ["input", "bias", "weight", "grad_output"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("path", ALL_PATHS)
def test_nan_and_inf_propagate_as_in_f_conv2d(path, geometry, where, value):
    check_propagation(path, geometry, where, value)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("path", ALL_PATHS)
def test_a_zero_weight_does_not_skip_an_inf_input(path, geometry):
    # 0 * Inf is NaN: every output that reads the Inf is NaN, though the whole weight is zero.
    x, w, b, gy, options = make(geometry)
    w.zero_()
    spoil(x, w, b, gy, "input", INF)
    ours = ours_on(path, x, w, b, gy, options)
    assert_same_specials(ours, reference(x, w, b, gy, options), "F.conv2d's definition")
    assert torch.isnan(ours[0]).any()
    assert not torch.isfinite(ours[2]).all()  # grad_weight: grad_output * Inf


@pytest.mark.parametrize("geometry", [g for g in GEOMETRIES if not padded(g)])
@pytest.mark.parametrize("path", ALL_PATHS)
def test_a_zero_input_does_not_skip_an_inf_weight(path, geometry):
    x, w, b, gy, options = make(geometry)
    x.zero_()
    w[1, 0, 1, 1] = INF
    ours = ours_on(path, x, w, b, gy, options)
    # Output channel 1 reads the Inf (times a zero input) at every pixel: NaN throughout.
    assert torch.isnan(ours[0][:, 1]).all()
    assert not torch.isnan(ours[0][:, 0]).any()
    assert_same_specials(ours, reference(x, w, b, gy, options), "F.conv2d's definition")


@pytest.mark.parametrize("path", ALL_PATHS)
def test_a_zero_grad_output_does_not_skip_an_inf_input_in_the_weight_gradient(path):
    x, w, b, gy, options = make("plain")
    gy.zero_()
    x[0, 2, 5, 5] = INF
    _, grad_input, grad_weight, grad_bias = ours_on(path, x, w, b, gy, options)
    # Every tap of every filter meets the Inf (times a zero) in channel 2: NaN there only.
    assert torch.isnan(grad_weight[:, 2]).all()
    assert not torch.isnan(grad_weight[:, :2]).any()
    assert torch.equal(grad_input, torch.zeros_like(grad_input))
    assert torch.equal(grad_bias, torch.zeros_like(grad_bias))


# Determinism --------------------------------------------------------------------------------

# Large enough that each op splits its work over two threads (the kernels' grain is about 2**15
# multiply-adds per task), on every path.
DETERMINISM = {
    "3x3, padding 1": ((4, 8, 40, 40), (16, 8, 3, 3), dict(padding=1)),
    "stride 2, dilation 2": ((3, 6, 41, 39), (8, 6, 3, 3), dict(stride=2, dilation=2)),
    "groups 2, 5x3": ((2, 8, 37, 45), (8, 4, 5, 3), dict(groups=2, padding=(2, 1))),
    "depthwise": ((4, 6, 48, 40), (6, 1, 3, 3), dict(groups=6, padding=1)),
    "one filter, tall": ((2, 1, 200, 24), (1, 1, 7, 1), dict(stride=(1, 2))),
}
# The channels-last kernels (their own tasks and summation order) on the same shapes.
CHANNELS_LAST = {f"{name}, channels_last": DETERMINISM[name]
                 for name in ("3x3, padding 1", "stride 2, dilation 2", "depthwise")}
DETERMINISM.update(CHANNELS_LAST)


def run_once(path, name, threads):
    input_shape, weight_shape, options = DETERMINISM[name]
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    randn = lambda *s: torch.randn(s, generator=gen, dtype=torch.float64)
    x, w, b = randn(*input_shape), randn(*weight_shape), randn(weight_shape[0])
    gy = randn(*F.conv2d(x, w, b, **options).shape)
    if name in CHANNELS_LAST:
        x, gy = (t.contiguous(memory_format=torch.channels_last) for t in (x, gy))
    with on_path(path) as dtype:
        return outputs_and_grads(corr2d_ext.conv2d, x.to(dtype), w.to(dtype), b.to(dtype),
                                 gy.to(dtype), **options)[:-1]


@pytest.mark.parametrize("shapes", DETERMINISM)
@pytest.mark.parametrize("path", path_params(list(PATHS)))
def test_results_are_bitwise_identical_across_runs_and_thread_counts(num_threads, path, shapes):
    first = run_once(path, shapes, threads=1)
    for threads in (2, 2, 1, 2):
        again = run_once(path, shapes, threads)
        for name, a, e in zip(NAMES, again, first):
            assert torch.equal(a, e), f"{name} differs with {threads} threads"
