"""The transforms PyTorch users apply to nn.Conv2d, on our three ops, each against the same
transform of F.conv2d (float64, on strided, padded, dilated and grouped geometries): forward-mode
AD, torch.func's jvp, jacfwd, jacrev, hessian, grad, vjp, vmap (with the per-sample fallback
disabled, so that a missing batching rule fails instead of running slowly), per-sample gradients
of a Conv2d through functional_call, and forward-over-reverse.

The references of the two gradient ops are F.conv2d's own vector-Jacobian products (the ops are
the correlation's adjoints), taken with torch.func.vjp so that they compose with every transform.
"""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, hessian, jacfwd, jacrev, jvp, vjp, vmap

import corr2d_ext
from conftest import randn

ops = torch.ops.corr2d_ext
TOL = dict(rtol=1e-10, atol=1e-10)

# (input, weight, options): strided, padded, dilated, grouped, depthwise.
GEOMETRIES = {
    "stride (2, 1), padding 1": ((2, 2, 5, 4), (3, 2, 3, 2), dict(stride=(2, 1), padding=(1, 1))),
    "dilation (2, 1), padding (0, 1)": ((1, 2, 6, 4), (2, 2, 2, 3),
                                        dict(dilation=(2, 1), padding=(0, 1))),
    "groups 2, stride 2": ((2, 4, 5, 5), (4, 2, 2, 2), dict(groups=2, stride=(2, 2))),
    "depthwise, stride 2, padding 2, dilation 2": ((1, 3, 5, 4), (3, 1, 2, 2),
                                                   dict(groups=3, stride=(2, 2), padding=(2, 2),
                                                        dilation=(2, 2))),
}
OPS = ["corr2d", "corr2d_input_grad", "corr2d_weight_grad"]


def _params(options):
    return (list(options.get("stride", (1, 1))), list(options.get("padding", (0, 0))),
            list(options.get("dilation", (1, 1))), options.get("groups", 1))


class Case:
    """One op on one geometry: ours and the reference as functions of the op's tensor
    arguments, and random values of those arguments."""

    def __init__(self, op, geometry, rng):
        input_shape, weight_shape, options = GEOMETRIES[geometry]
        self.options = options
        params = _params(options)
        x, w = randn(input_shape, rng), randn(weight_shape, rng)
        b = randn(weight_shape[:1], rng)
        gy = randn(F.conv2d(x, w, **options).shape, rng)
        input_size, kernel_size = list(input_shape[2:]), list(weight_shape[2:])
        conv = lambda x, w, b=None: F.conv2d(x, w, b, **options)
        if op == "corr2d":
            self.args = (x, w, b)
            self.ours = lambda x, w, b: ops.corr2d(x, w, b, *params)
            self.ref = conv
        elif op == "corr2d_input_grad":
            self.args = (gy, w)
            self.ours = lambda gy, w: ops.corr2d_input_grad(gy, w, input_size, *params)
            # conv2d is linear in x, so its vjp does not depend on where it is taken.
            self.ref = lambda gy, w: vjp(lambda x: conv(x, w), torch.zeros_like(x))[1](gy)[0]
        else:
            self.args = (x, gy)
            self.ours = lambda x, gy: ops.corr2d_weight_grad(x, gy, kernel_size, *params)
            self.ref = lambda x, gy: vjp(lambda w: conv(x, w), torch.zeros_like(w))[1](gy)[0]
        self.tangents = tuple(randn(a.shape, rng) for a in self.args)
        self.cotangent = randn(self.ours(*self.args).shape, rng)


NUM_TENSOR_ARGS = {"corr2d": 3, "corr2d_input_grad": 2, "corr2d_weight_grad": 2}
# (op, argument index) pairs for the tests that take one argument at a time; a parametrize on
# "op" overrides the op fixture.
OP_ARGNUMS = [(op, i) for op in OPS for i in range(NUM_TENSOR_ARGS[op])]


@pytest.fixture(params=OPS)
def op(request):
    return request.param


@pytest.fixture(params=list(GEOMETRIES))
def case(request, op, rng):
    return Case(op, request.param, rng)


@pytest.fixture
def no_vmap_fallback():
    """vmap without the per-sample fallback: an op without a batching rule raises."""
    saved = torch._C._functorch._is_vmap_fallback_enabled()
    torch._C._functorch._set_vmap_fallback_enabled(False)
    yield
    torch._C._functorch._set_vmap_fallback_enabled(saved)


def assert_close(actual, expected):
    if isinstance(expected, (tuple, list)):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_close(a, e)
        return
    assert actual is not None, "expected a tensor, got None"
    torch.testing.assert_close(actual, expected, **TOL)


def nonlinear(f):
    """A scalar function of f's output with a non-zero second derivative, for hessians."""
    return lambda *args: f(*args).sin().sum()


# Forward-mode AD -----------------------------------------------------------------------------


@pytest.mark.parametrize("op, which", OP_ARGNUMS + [(op, "all") for op in OPS])
def test_forward_ad_tangent(case, which):
    """The tangent of the output, with a tangent in one argument or in all of them."""
    n = len(case.args)
    chosen = range(n) if which == "all" else [which]
    results = []
    for f in (case.ours, case.ref):
        with fwAD.dual_level():
            duals = [fwAD.make_dual(a, t) if i in chosen else a
                     for i, (a, t) in enumerate(zip(case.args, case.tangents))]
            primal, tangent = fwAD.unpack_dual(f(*duals))
            results.append((primal, tangent))
    assert_close(results[0], results[1])


def test_forward_ad_of_conv2d_with_bias_only_tangent(rng):
    """A tangent in the bias alone: the output's tangent is the bias tangent, broadcast."""
    x, w, b, tb = randn((2, 3, 5, 5), rng), randn((4, 3, 3, 3), rng), randn(4, rng), randn(4, rng)
    with fwAD.dual_level():
        y = corr2d_ext.conv2d(x, w, fwAD.make_dual(b, tb), padding=1)
        tangent = fwAD.unpack_dual(y).tangent
    assert_close(tangent, tb.view(1, 4, 1, 1).expand(2, 4, 5, 5))


def test_jvp(case):
    assert_close(jvp(case.ours, case.args, case.tangents), jvp(case.ref, case.args, case.tangents))


def test_jvp_of_jvp(case):
    """Second-order forward mode: two nested jvp levels."""
    def inner(f):
        return lambda *args: jvp(f, args, case.tangents)[1].square().sum()

    expected = jvp(inner(case.ref), case.args, case.tangents)
    assert_close(jvp(inner(case.ours), case.args, case.tangents), expected)


@pytest.mark.parametrize("argnum", [0, 1])
def test_jacfwd(case, argnum):
    assert_close(jacfwd(case.ours, argnums=argnum)(*case.args),
                 jacfwd(case.ref, argnums=argnum)(*case.args))


# Reverse mode through torch.func --------------------------------------------------------------


@pytest.mark.parametrize("op, argnum", OP_ARGNUMS)
def test_grad(case, argnum):
    assert_close(grad(nonlinear(case.ours), argnums=argnum)(*case.args),
                 grad(nonlinear(case.ref), argnums=argnum)(*case.args))


def test_vjp(case):
    out, pullback = vjp(case.ours, *case.args)
    ref_out, ref_pullback = vjp(case.ref, *case.args)
    assert_close(out, ref_out)
    assert_close(pullback(case.cotangent), ref_pullback(case.cotangent))


@pytest.mark.parametrize("argnum", [0, 1])
def test_jacrev(case, argnum):
    assert_close(jacrev(case.ours, argnums=argnum)(*case.args),
                 jacrev(case.ref, argnums=argnum)(*case.args))


def test_hessian(case):
    """jacfwd(jacrev): forward over reverse over vmap, every mode at once."""
    argnums = tuple(range(len(case.args)))
    assert_close(hessian(nonlinear(case.ours), argnums=argnums)(*case.args),
                 hessian(nonlinear(case.ref), argnums=argnums)(*case.args))


def test_forward_over_reverse_hessian_vector_product(case):
    def hvp(f):
        return jvp(grad(nonlinear(f), argnums=tuple(range(len(case.args)))), case.args,
                   case.tangents)[1]

    assert_close(hvp(case.ours), hvp(case.ref))


def test_reverse_over_forward(case):
    def f(g):
        return grad(lambda *args: jvp(g, args, case.tangents)[1].square().sum(),
                    argnums=tuple(range(len(case.args))))(*case.args)

    assert_close(f(case.ours), f(case.ref))


def test_forward_over_reverse_with_torch_autograd(case):
    """The same Hessian-vector product with torch.autograd.forward_ad and autograd.grad, outside
    torch.func: the backward graph's saved tensors carry the tangents."""
    results = []
    for f in (case.ours, case.ref):
        with fwAD.dual_level():
            leaves = [a.clone().requires_grad_() for a in case.args]
            duals = [fwAD.make_dual(a, t) for a, t in zip(leaves, case.tangents)]
            grads = torch.autograd.grad(nonlinear(f)(*duals), duals)
            results.append([fwAD.unpack_dual(g).tangent for g in grads])
    assert_close(results[0], results[1])


# vmap --------------------------------------------------------------------------------------


def _batched(rng, args, in_dims, size=3):
    """The arguments with a batch of `size` at in_dims (None: not batched)."""
    out = []
    for a, d in zip(args, in_dims):
        if d is None:
            out.append(a)
        else:
            out.append(randn((size,) + tuple(a.shape), rng).movedim(0, d))
    return tuple(out)


IN_DIMS = {
    "first": (0, None, None),
    "second": (None, 0, None),
    "third": (None, None, 0),
    "first and second": (0, 0, None),
    "all": (0, 0, 0),
    "all, batch dims 1, 2, 0": (1, 2, 0),
}
# The gradient ops have two tensor arguments: no "third", and "all" is "first and second".
VMAP_CASES = [(op, which) for op in OPS for which in IN_DIMS
              if NUM_TENSOR_ARGS[op] == 3 or which not in ("third", "all")]


@pytest.mark.parametrize("op, which", VMAP_CASES)
def test_vmap(case, rng, no_vmap_fallback, which):
    in_dims = IN_DIMS[which][: len(case.args)]
    args = _batched(rng, case.args, in_dims)
    assert_close(vmap(case.ours, in_dims)(*args), vmap(case.ref, in_dims)(*args))


def test_nested_vmap(case, rng, no_vmap_fallback):
    """vmap of vmap: the outer batch on the first argument, the inner on the second."""
    first = randn((2,) + tuple(case.args[0].shape), rng)
    second = randn((3,) + tuple(case.args[1].shape), rng)
    rest = case.args[2:]

    def run(f):
        return vmap(lambda a: vmap(lambda c: f(a, c, *rest))(second))(first)

    assert_close(run(case.ours), run(case.ref))


def test_vmap_of_jvp_and_jacrev_of_vmap(case, rng, no_vmap_fallback):
    """Batched tangents (vmap over jvp) and a jacobian (vmap over vjp) of a vmapped function."""
    tangents = tuple(randn((2,) + tuple(t.shape), rng) for t in case.tangents)
    ours = vmap(lambda *t: jvp(case.ours, case.args, t)[1])(*tangents)
    assert_close(ours, vmap(lambda *t: jvp(case.ref, case.args, t)[1])(*tangents))
    batch = _batched(rng, case.args, (0,) + (None,) * (len(case.args) - 1), size=2)
    j = lambda f: jacrev(vmap(f, (0,) + (None,) * (len(case.args) - 1)), argnums=1)(*batch)
    assert_close(j(case.ours), j(case.ref))


def test_vmap_reports_per_sample_shapes(rng, no_vmap_fallback):
    """A shape error under vmap names the shapes the function sees, not the folded ones."""
    x, w = randn((4, 2, 3, 5, 5), rng), randn((3, 2, 3, 3), rng)
    with pytest.raises(RuntimeError, match=r"expected input of size \[2, 3, 5, 5\] to have 2 "
                                           r"channels"):
        vmap(lambda x: corr2d_ext.conv2d(x, w))(x)


# Per-sample gradients of a module ----------------------------------------------------------


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_per_sample_gradients_of_conv2d_module(rng, no_vmap_fallback, geometry):
    """vmap(grad(loss)) through functional_call: per-sample gradients of every parameter of a
    small network, ours against nn.Conv2d's."""
    input_shape, weight_shape, options = GEOMETRIES[geometry]
    groups = options.get("groups", 1)
    in_channels = input_shape[1]
    torch.manual_seed(0)
    reference = nn.Sequential(
        nn.Conv2d(in_channels, weight_shape[0], weight_shape[2:], **options),
        nn.Tanh(),
        nn.Conv2d(weight_shape[0], 2 * groups, 1, groups=groups),
    ).double()
    ours = corr2d_ext.convert(reference)
    assert isinstance(ours[0], corr2d_ext.Conv2d)
    x = randn((5,) + tuple(input_shape[1:]), rng)
    target = randn((5,) + tuple(reference(x[:1]).shape[1:]), rng)

    def per_sample_grads(model):
        params = {k: v.detach() for k, v in model.named_parameters()}

        def loss(params, x, t):
            y = functional_call(model, params, (x[None],))
            return F.mse_loss(y, t[None])

        return vmap(grad(loss), in_dims=(None, 0, 0))(params, x, target)

    ours_grads, ref_grads = per_sample_grads(ours), per_sample_grads(reference)
    assert ours_grads.keys() == ref_grads.keys()
    for name in ref_grads:
        assert_close(ours_grads[name], ref_grads[name])


def test_vmap_grad_runs_our_kernels(rng, no_vmap_fallback):
    """The per-sample gradients are computed by our three ops, batched (one call each), and by
    no ATen convolution."""
    layer = corr2d_ext.Conv2d(2, 3, 3, padding=1).double()
    params = {k: v.detach() for k, v in layer.named_parameters()}
    x = randn((4, 2, 6, 6), rng)
    loss = lambda p, x: functional_call(layer, p, (x[None],)).square().sum()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        g = vmap(grad(loss), in_dims=(None, 0))(params, x)
    names = [e.name for e in prof.events()]
    assert g["weight"].shape == (4, 3, 2, 3, 3) and g["bias"].shape == (4, 3)
    assert not [n for n in names if "convolution" in n or "conv2d" in n], names
    # One call of each op below vmap (the kernels' calls), not one per sample.
    assert names.count("corr2d_ext::corr2d") >= 1
    assert names.count("corr2d_ext::corr2d_weight_grad") >= 1


# Together with torch.compile ---------------------------------------------------------------


def test_compiled_grad_fullgraph(rng):
    """torch.compile(fullgraph=True) of a function that calls torch.func.grad on our op."""
    x, w, b = randn((2, 3, 6, 6), rng), randn((4, 3, 3, 3), rng), randn(4, rng)
    loss = lambda w, b: corr2d_ext.conv2d(x, w, b, padding=1).sin().sum()
    ref = lambda w, b: F.conv2d(x, w, b, padding=1).sin().sum()
    compiled = torch.compile(grad(loss, argnums=(0, 1)), fullgraph=True, backend="aot_eager")
    assert_close(compiled(w, b), grad(ref, argnums=(0, 1))(w, b))


# The tutorial's corr2d(X, K) on 2-D tensors -------------------------------------------------


def _tutorial_ref(X, K):
    return F.conv2d(X[None, None], K[None, None])[0, 0]


def test_tutorial_corr2d_under_transforms(rng, no_vmap_fallback):
    """corr2d(X, K) (the composite 2-D op): grad in each argument, jvp, and vmap over images,
    over kernels and over both."""
    X, K = randn((6, 8), rng), randn((2, 3), rng)
    f = lambda X, K: corr2d_ext.corr2d(X, K).sin().sum()
    g = lambda X, K: _tutorial_ref(X, K).sin().sum()
    assert_close(grad(f, argnums=(0, 1))(X, K), grad(g, argnums=(0, 1))(X, K))
    tangents = (randn((6, 8), rng), randn((2, 3), rng))
    assert_close(jvp(corr2d_ext.corr2d, (X, K), tangents), jvp(_tutorial_ref, (X, K), tangents))
    Xs, Ks = randn((4, 6, 8), rng), randn((4, 2, 3), rng)
    for in_dims, args in (((0, None), (Xs, K)), ((None, 0), (X, Ks)), ((0, 0), (Xs, Ks))):
        assert_close(vmap(corr2d_ext.corr2d, in_dims)(*args), vmap(_tutorial_ref, in_dims)(*args))


def test_graph_nodes_are_ours(rng):
    """The eager graph records our Nodes (not a torch::autograd::Function's CppNode)."""
    x = randn((1, 2, 5, 5), rng).requires_grad_()
    w = randn((3, 2, 3, 3), rng).requires_grad_()
    y = corr2d_ext.conv2d(x, w)
    assert y.grad_fn.name() == "Corr2dBackward"
    (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    assert gx.grad_fn.name() == "Corr2dInputGradBackward"
    (gw,) = torch.autograd.grad(y.sum(), w, create_graph=True)
    assert gw.grad_fn.name() == "Corr2dWeightGradBackward"


def test_vmap_of_an_empty_batch(rng, no_vmap_fallback):
    """Each sample with N = 0: the folds must not infer sizes from an empty result."""
    x, w = randn((3, 0, 4, 5, 5), rng), randn((6, 4, 3, 3), rng)
    ws = randn((3, 6, 4, 3, 3), rng)
    for in_dims, args in (((0, None), (x, w)), ((0, 0), (x, ws))):
        assert_close(vmap(corr2d_ext.conv2d, in_dims)(*args), vmap(F.conv2d, in_dims)(*args))


def test_forward_ad_keeps_channels_last(rng):
    """The tangent takes the output's memory format, as F.conv2d's does."""
    x = randn((2, 4, 7, 7), rng).to(memory_format=torch.channels_last)
    w, b = randn((6, 4, 3, 3), rng), randn(6, rng)
    tx, tb = randn(x.shape, rng).to(memory_format=torch.channels_last), randn(6, rng)
    results = []
    for f in (corr2d_ext.conv2d, F.conv2d):
        with fwAD.dual_level():
            primal, tangent = fwAD.unpack_dual(f(fwAD.make_dual(x, tx), w, fwAD.make_dual(b, tb)))
        assert tangent.is_contiguous(memory_format=torch.channels_last)
        results.append((primal, tangent))
    assert_close(results[0], results[1])


def test_compiled_vmap_fullgraph(rng):
    """torch.compile(fullgraph=True) of a vmap over inputs and weights together."""
    x, w = randn((5, 2, 4, 9, 9), rng), randn((5, 8, 2, 3, 3), rng)
    f = lambda x, w: corr2d_ext.conv2d(x, w, groups=2, stride=2)
    compiled = torch.compile(vmap(f), backend="aot_eager", fullgraph=True)
    assert_close(compiled(x, w), vmap(lambda x, w: F.conv2d(x, w, groups=2, stride=2))(x, w))


def test_compiled_autograd(rng):
    """torch._dynamo.compiled_autograd traces our Nodes' backward: gradients as nn.Conv2d's,
    for the first and a second backward (the cached graph)."""
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.Tanh(),
                        nn.Conv2d(4, 2, 2, groups=2, dilation=2)).double()
    ours = corr2d_ext.convert(ref)
    x = randn((2, 2, 9, 9), rng)
    expected = torch.autograd.grad(ref(x).square().sum(), list(ref.parameters()))
    compiler = torch.compile(backend="eager")
    for _ in range(2):
        for p in ours.parameters():
            p.grad = None
        with torch._dynamo.compiled_autograd._enable(compiler):
            ours(x).square().sum().backward()
        assert_close([p.grad for p in ours.parameters()], list(expected))
