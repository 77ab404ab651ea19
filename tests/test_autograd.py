"""Autograd of the op family: first and second derivatives by finite differences (gradcheck,
gradgradcheck, with forward-mode AD, forward-over-reverse and batched gradients checked too)
through conv2d and through each raw op; the ops' registrations (opcheck);
torch.compile; and gradients that do not depend on the thread count."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

import corr2d_ext
from conftest import randn

ops = torch.ops.corr2d_ext

# (input, weight, bias?, options) of conv2d, small enough for finite differences.
CONFIGS = {
    "stride (2, 1), padding 1": ((2, 2, 5, 4), (3, 2, 3, 2), True, dict(stride=(2, 1), padding=1)),
    "dilation (2, 1), padding (0, 1)": ((1, 2, 6, 4), (2, 2, 2, 3), False,
                                        dict(dilation=(2, 1), padding=(0, 1))),
    "groups 2, stride 2": ((1, 4, 5, 5), (4, 2, 2, 2), True, dict(groups=2, stride=2)),
    "depthwise, stride 2, padding 2, dilation 2": ((1, 3, 5, 4), (3, 1, 2, 2), False,
                                                   dict(groups=3, stride=2, padding=2, dilation=2)),
    "padding 'same', dilation (1, 2)": ((1, 2, 4, 5), (2, 2, 3, 2), True,
                                        dict(padding="same", dilation=(1, 2))),
}


def conv2d_args(rng, config):
    input, weight, bias, options = CONFIGS[config]
    tensors = (randn(input, rng), randn(weight, rng), randn(weight[:1], rng) if bias else None)
    return [None if t is None else t.requires_grad_() for t in tensors], options


def raw_options(options):
    """conv2d's options in the raw ops' form (four lists and groups); no padding strings."""
    pair = lambda v: list(v) if isinstance(v, tuple) else [v, v]
    return (pair(options.get("stride", 1)), pair(options.get("padding", 0)),
            pair(options.get("dilation", 1)), options.get("groups", 1))


RAW_CONFIGS = [c for c in CONFIGS if not isinstance(CONFIGS[c][3].get("padding"), str)]


def raw_op_args(rng, config):
    """Arguments of the three raw ops for one config: a dict op name -> (function of the
    differentiable tensors, the tensors)."""
    (x, w, b), options = conv2d_args(rng, config)
    params = raw_options(options)
    y = ops.corr2d(x.detach(), w.detach(), None, *params)
    gy = randn(y.shape, rng).requires_grad_()
    input_size, kernel_size = list(x.shape[2:]), list(w.shape[2:])
    return {
        "corr2d": (lambda x, w, b=None: ops.corr2d(x, w, b, *params),
                   (x, w) if b is None else (x, w, b)),
        "corr2d_input_grad": (lambda gy, w: ops.corr2d_input_grad(gy, w, input_size, *params),
                              (gy, w)),
        "corr2d_weight_grad": (lambda x, gy: ops.corr2d_weight_grad(x, gy, kernel_size, *params),
                               (x, gy)),
    }


# Finite differences -------------------------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS)
def test_conv2d_gradcheck(rng, config):
    (x, w, b), options = conv2d_args(rng, config)
    assert gradcheck(lambda *t: corr2d_ext.conv2d(*t, **options), (x, w, b),
                     check_forward_ad=True, check_batched_grad=True,
                     check_batched_forward_grad=True)


@pytest.mark.parametrize("config", CONFIGS)
def test_conv2d_gradgradcheck(rng, config):
    (x, w, b), options = conv2d_args(rng, config)
    assert gradgradcheck(lambda *t: corr2d_ext.conv2d(*t, **options), (x, w, b),
                         check_fwd_over_rev=True, check_batched_grad=True)


@pytest.mark.parametrize("op", ["corr2d", "corr2d_input_grad", "corr2d_weight_grad"])
@pytest.mark.parametrize("config", RAW_CONFIGS)
def test_raw_op_gradcheck(rng, config, op):
    fn, tensors = raw_op_args(rng, config)[op]
    assert gradcheck(fn, tensors, check_forward_ad=True, check_batched_grad=True,
                     check_batched_forward_grad=True)


@pytest.mark.parametrize("op", ["corr2d", "corr2d_input_grad", "corr2d_weight_grad"])
@pytest.mark.parametrize("config", RAW_CONFIGS[:2])
def test_raw_op_gradgradcheck(rng, config, op):
    fn, tensors = raw_op_args(rng, config)[op]
    assert gradgradcheck(fn, tensors, check_fwd_over_rev=True, check_batched_grad=True)


def test_third_derivative_of_conv2d_passes_gradgradcheck(rng):
    # Double backward builds its graph from the ops themselves, so any order works: check the
    # gradient of a double-backward result once more.
    x, w = randn((1, 2, 4, 4), rng).requires_grad_(), randn((2, 2, 2, 2), rng).requires_grad_()

    def second(x, w):
        y = corr2d_ext.conv2d(x, w, stride=(1, 2), padding=1)
        (gx,) = torch.autograd.grad((y ** 2).sum(), x, create_graph=True)
        return gx

    assert gradgradcheck(second, (x, w))


@pytest.mark.parametrize("config", RAW_CONFIGS)
def test_gradient_ops_are_the_adjoints_of_corr2d(rng, config):
    # <corr2d(x, w), gy> = <x, input_grad(gy, w)> = <w, weight_grad(x, gy)>
    (x, w, _), options = conv2d_args(rng, config)
    x, w = x.detach(), w.detach()
    params = raw_options(options)
    y = ops.corr2d(x, w, None, *params)
    gy = randn(y.shape, rng)
    gx = ops.corr2d_input_grad(gy, w, list(x.shape[2:]), *params)
    gw = ops.corr2d_weight_grad(x, gy, list(w.shape[2:]), *params)
    inner = (y * gy).sum()
    torch.testing.assert_close((x * gx).sum(), inner, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close((w * gw).sum(), inner, rtol=1e-12, atol=1e-12)


# When autograd records ------------------------------------------------------------------------


def small_conv_tensors(rng):
    return dict(input=randn((2, 2, 5, 4), rng), weight=randn((3, 2, 3, 2), rng),
                bias=randn(3, rng))


@pytest.mark.parametrize("name", ["input", "weight", "bias"])
def test_one_argument_requiring_grad_is_enough_to_record_the_graph(rng, name):
    tensors = small_conv_tensors(rng)
    tensors[name].requires_grad_()
    y = corr2d_ext.conv2d(**tensors, stride=(2, 1), padding=1)
    assert y.requires_grad and y.grad_fn is not None
    gy = randn(y.shape, rng)
    (ours,) = torch.autograd.grad(y, tensors[name], gy)
    reference = {k: t.detach().clone().requires_grad_(k == name) for k, t in tensors.items()}
    (theirs,) = torch.autograd.grad(F.conv2d(**reference, stride=(2, 1), padding=1),
                                    reference[name], gy)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_no_graph_is_recorded_when_grad_is_off(rng, context):
    tensors = {k: t.requires_grad_() for k, t in small_conv_tensors(rng).items()}
    recorded = corr2d_ext.conv2d(**tensors, padding=1)
    with context():
        y = corr2d_ext.conv2d(**tensors, padding=1)
    assert not y.requires_grad and y.grad_fn is None
    assert torch.equal(y, recorded.detach())


# Registrations ------------------------------------------------------------------------------

OPCHECK_SAMPLES = {
    "plain, bias": ((2, 3, 5, 6), (4, 3, 3, 3), True, [1, 1], [0, 0], [1, 1], 1),
    "stride, padding, dilation, groups, bias": ((2, 4, 7, 6), (6, 2, 3, 2), True,
                                                [2, 1], [1, 2], [1, 2], 2),
    "depthwise, no bias": ((1, 3, 6, 6), (3, 1, 2, 3), False, [1, 2], [1, 0], [2, 1], 3),
    "batch 0": ((0, 2, 5, 5), (2, 2, 3, 3), True, [1, 1], [1, 1], [1, 1], 1),
}


def opcheck_args(rng, sample, op):
    input, weight, bias, *params = OPCHECK_SAMPLES[sample]
    x = randn(input, rng, torch.float32).requires_grad_()
    w = randn(weight, rng, torch.float32).requires_grad_()
    b = randn(weight[:1], rng, torch.float32).requires_grad_() if bias else None
    gy = randn(ops.corr2d(x.detach(), w.detach(), None, *params).shape, rng,
               torch.float32).requires_grad_()
    return {
        "corr2d": (x, w, b, *params),
        "corr2d_input_grad": (gy, w, list(input[2:]), *params),
        "corr2d_weight_grad": (x, gy, list(weight[2:]), *params),
    }[op]


@pytest.mark.parametrize("op", ["corr2d", "corr2d_input_grad", "corr2d_weight_grad"])
@pytest.mark.parametrize("sample", OPCHECK_SAMPLES)
def test_opcheck(rng, sample, op):
    result = torch.library.opcheck(getattr(ops, op), opcheck_args(rng, sample, op))
    assert set(result.values()) == {"SUCCESS"}, result


# (dtype, which of the op's two tensor arguments are channels_last): the fake kernels must give
# the real kernels' strides, and the autograd and compiled paths must agree in each.
OPCHECK_LAYOUTS = {
    "float32, first argument channels_last": (torch.float32, (True, False)),
    "bfloat16, second argument channels_last": (torch.bfloat16, (False, True)),
}


@pytest.mark.parametrize("op", ["corr2d", "corr2d_input_grad", "corr2d_weight_grad"])
@pytest.mark.parametrize("layout", OPCHECK_LAYOUTS)
def test_opcheck_on_channels_last_and_bfloat16(rng, layout, op):
    dtype, channels_last = OPCHECK_LAYOUTS[layout]
    args = list(opcheck_args(rng, "stride, padding, dilation, groups, bias", op))
    for i in (0, 1):
        t = args[i].detach().to(dtype)
        if channels_last[i]:
            t = t.contiguous(memory_format=torch.channels_last)
        args[i] = t.requires_grad_()
    if op == "corr2d":
        args[2] = args[2].detach().to(dtype).requires_grad_()
    result = torch.library.opcheck(getattr(ops, op), args)
    assert set(result.values()) == {"SUCCESS"}, result


def test_opcheck_on_noncontiguous_arguments(rng):
    x = randn((2, 3, 6, 5), rng, torch.float32).transpose(2, 3).requires_grad_()
    w = randn((8, 3, 3, 2), rng, torch.float32)[::2].requires_grad_()
    result = torch.library.opcheck(ops.corr2d, (x, w, None, [1, 2], [1, 1], [1, 1], 1))
    assert set(result.values()) == {"SUCCESS"}, result


# torch.compile ------------------------------------------------------------------------------


def block(x, w, b):
    return torch.relu(corr2d_ext.conv2d(x, w, b, stride=(2, 1), padding=1, groups=2)).sum(dim=1)


# Inductor compiles C++ on a cold cache (about 35 s on two cores); aot_eager traces the same
# graph, with the fake kernels, in a few seconds.
@pytest.mark.parametrize("backend", [
    "aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_conv2d_matches_eager(rng, backend):
    torch._dynamo.reset()
    tensors = [randn(s, rng, torch.float32) for s in ((2, 4, 6, 5), (6, 2, 3, 2), (6,))]
    gy = randn((2, 3, 6), rng, torch.float32)
    leaves = lambda: [t.clone().requires_grad_() for t in tensors]
    eager_in, compiled_in = leaves(), leaves()
    eager = block(*eager_in)
    compiled = torch.compile(block, fullgraph=True, backend=backend)(*compiled_in)
    torch.testing.assert_close(compiled, eager)
    for e, c in zip(torch.autograd.grad(eager, eager_in, gy),
                    torch.autograd.grad(compiled, compiled_in, gy)):
        torch.testing.assert_close(c, e)


# Determinism --------------------------------------------------------------------------------

# Large enough that the CPU kernels split the work over threads.
DETERMINISM_SHAPES = {
    "one filter": ((4, 1, 64, 64), (1, 1, 3, 3), dict(padding=1)),
    "depthwise": ((2, 3, 48, 40), (3, 1, 3, 2), dict(groups=3, stride=(1, 2))),
    "many filters": ((2, 8, 32, 32), (16, 8, 3, 3), dict(dilation=2)),
}


def gradients(rng, shapes, dtype=torch.float32):
    input, weight, options = shapes
    x, w = randn(input, rng, dtype).requires_grad_(), randn(weight, rng, dtype).requires_grad_()
    y = corr2d_ext.conv2d(x, w, **options)
    gx, gw = torch.autograd.grad(y, (x, w), randn(y.shape, rng, dtype))
    return y.detach(), gx, gw


@pytest.mark.parametrize("shapes", DETERMINISM_SHAPES)
def test_weight_gradient_is_bitwise_identical_for_one_and_two_threads(num_threads, shapes):
    results = []
    for threads in (1, 2, 1, 2):
        torch.set_num_threads(threads)
        results.append(gradients(torch.Generator().manual_seed(0), DETERMINISM_SHAPES[shapes]))
    for r in results[1:]:
        assert torch.equal(r[2], results[0][2]), "weight gradient"


@pytest.mark.parametrize("shapes", DETERMINISM_SHAPES)
def test_output_and_input_gradient_are_bitwise_identical_for_one_and_two_threads(
        num_threads, shapes):
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results.append(gradients(torch.Generator().manual_seed(0), DETERMINISM_SHAPES[shapes]))
    assert torch.equal(results[1][0], results[0][0]), "output"
    assert torch.equal(results[1][1], results[0][1]), "input gradient"


def test_weight_gradient_is_bitwise_identical_across_runs(num_threads):
    torch.set_num_threads(2)
    first = gradients(torch.Generator().manual_seed(0), DETERMINISM_SHAPES["one filter"])[2]
    for _ in range(5):
        again = gradients(torch.Generator().manual_seed(0), DETERMINISM_SHAPES["one filter"])[2]
        assert torch.equal(again, first)


@pytest.mark.parametrize("shapes", DETERMINISM_SHAPES)
def test_threaded_gradients_match_float64(num_threads, shapes):
    # Splitting the sums over threads must not change what is summed.
    torch.set_num_threads(2)
    ours = gradients(torch.Generator().manual_seed(0), DETERMINISM_SHAPES[shapes])
    exact = gradients(torch.Generator().manual_seed(0), DETERMINISM_SHAPES[shapes], torch.float64)
    for name, a, e in zip(("output", "grad_input", "grad_weight"), ours, exact):
        torch.testing.assert_close(a, e.float(), rtol=1e-4, atol=1e-3,
                                   msg=lambda m, name=name: f"{name}: {m}")
