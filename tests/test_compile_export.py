"""A small CNN of corr2d_ext.Conv2d layers through torch.compile and torch.export: one graph,
no breaks, no recompiles for new shapes when dynamic, our ops (not ATen's convolution) in the
forward and backward graphs, and the outputs and gradients of eager mode.

The default suite compiles with backend="aot_eager": it traces the same forward and backward
graphs as inductor, through our meta kernels and autograd, without inductor's C++ compile
(about 35 s cold on two cores). One inductor test is marked slow."""

from __future__ import annotations

import io

import pytest
import torch
import torch._dynamo
from torch import nn
from torch._dynamo.backends.common import aot_autograd
from torch._dynamo.testing import CompileCounterWithBackend
from torch._functorch.aot_autograd import make_boxed_func

import corr2d_ext
from conftest import randn


class SmallCNN(nn.Module):
    """Every option of the layer at least once: padding, padding_mode, stride, groups,
    dilation, no bias, a 1x1 kernel."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.features = nn.Sequential(
            corr2d_ext.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
            corr2d_ext.Conv2d(8, 16, 3, stride=2, padding=1, groups=2), nn.ReLU(),
            corr2d_ext.Conv2d(16, 16, (3, 2), dilation=(1, 2), padding="same", bias=False),
            nn.ReLU(),
            corr2d_ext.Conv2d(16, 8, 1),
        )
        self.head = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def model_and_copy():
    torch.manual_seed(0)
    model = SmallCNN()
    twin = SmallCNN()
    twin.load_state_dict(model.state_dict())
    return model, twin


def output_and_grads(model, x):
    """The output, and the gradients of the input and of every parameter, by name."""
    x = x.detach().clone().requires_grad_()
    y = model(x)
    y.backward(torch.ones_like(y))
    # A compiled module's parameters are its original's, under "_orig_mod.".
    grads = {name.removeprefix("_orig_mod."): p.grad.clone()
             for name, p in model.named_parameters()}
    model.zero_grad()
    return y.detach(), x.grad, grads


def assert_same_results(actual, expected):
    (y, gx, grads), (ey, egx, egrads) = actual, expected
    torch.testing.assert_close(y, ey)
    torch.testing.assert_close(gx, egx)
    assert grads.keys() == egrads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], egrads[name], msg=lambda m: f"{name}: {m}")


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


# torch.compile ------------------------------------------------------------------------------


@pytest.mark.parametrize("dynamic, memory_format", [
    (False, torch.contiguous_format), (True, torch.contiguous_format),
    (True, torch.channels_last)], ids=["static", "dynamic", "dynamic, channels_last"])
def test_compiled_cnn_matches_eager(rng, dynamic, memory_format):
    eager, compiled = model_and_copy()
    counter = CompileCounterWithBackend("aot_eager")
    compiled_fn = torch.compile(compiled, backend=counter, fullgraph=True, dynamic=dynamic)
    for shape in [(2, 3, 12, 10), (3, 3, 9, 14)]:
        x = randn(shape, rng, torch.float32).contiguous(memory_format=memory_format)
        assert_same_results(output_and_grads(compiled_fn, x), output_and_grads(eager, x))
    # Static shapes recompile for the second shape; dynamic ones trace symbolic sizes once.
    assert counter.frame_count == (1 if dynamic else 2)


def test_cnn_compiles_to_one_graph_without_breaks(rng):
    explanation = torch._dynamo.explain(SmallCNN())(randn((2, 3, 12, 10), rng, torch.float32))
    assert explanation.graph_count == 1
    assert explanation.graph_break_count == 0, explanation.break_reasons


def test_compiled_graphs_call_our_ops_forward_and_backward(rng):
    # AOTAutograd's forward and backward graphs: our three ops, not ATen's convolution.
    graphs = {}

    def recorder(name):
        def compiler(gm, example_inputs):
            graphs[name] = {str(node.target) for node in gm.graph.nodes
                            if node.op == "call_function"}
            return make_boxed_func(gm.forward)
        return compiler

    backend = aot_autograd(fw_compiler=recorder("forward"), bw_compiler=recorder("backward"))
    model = torch.compile(SmallCNN(), backend=backend, fullgraph=True)
    x = randn((2, 3, 12, 10), rng, torch.float32).requires_grad_()
    model(x).sum().backward()
    assert "corr2d_ext.corr2d.default" in graphs["forward"]
    assert {"corr2d_ext.corr2d_input_grad.default",
            "corr2d_ext.corr2d_weight_grad.default"} <= graphs["backward"]
    convolutions = {t for g in graphs.values() for t in g if "convolution" in t}
    assert not convolutions


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last],
                         ids=["contiguous", "channels_last"])
def test_compiled_conv2d_keeps_eager_strides_with_dynamic_shapes(rng, memory_format):
    # The meta kernels decide the compiled graph's strides from symbolic sizes.
    fn = lambda x, w: corr2d_ext.conv2d(x, w, stride=2, padding=1)
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True, dynamic=True)
    w = randn((6, 4, 3, 3), rng, torch.float32)
    for shape in [(2, 4, 9, 8), (3, 4, 11, 7)]:
        x = randn(shape, rng, torch.float32).contiguous(memory_format=memory_format)
        expected, actual = fn(x, w), compiled(x, w)
        assert actual.stride() == expected.stride()
        torch.testing.assert_close(actual, expected)


@pytest.mark.slow
def test_inductor_compiled_cnn_matches_eager(rng):
    eager, compiled = model_and_copy()
    compiled_fn = torch.compile(compiled, backend="inductor", fullgraph=True, dynamic=True)
    for shape in [(2, 3, 12, 10), (3, 3, 9, 14)]:
        x = randn(shape, rng, torch.float32)
        assert_same_results(output_and_grads(compiled_fn, x), output_and_grads(eager, x))


# torch.export -------------------------------------------------------------------------------


def exported_targets(program):
    return {str(node.target) for node in program.graph.nodes if node.op == "call_function"}


def test_exported_cnn_runs_and_matches_eager(rng):
    model = SmallCNN().eval()
    x = randn((2, 3, 12, 10), rng, torch.float32)
    program = torch.export.export(model, (x,))
    assert "corr2d_ext.corr2d.default" in exported_targets(program)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x))


def test_exported_cnn_takes_any_batch_size_with_a_dynamic_batch(rng):
    model = SmallCNN().eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model, (randn((2, 3, 12, 10), rng, torch.float32),),
                                  dynamic_shapes={"x": {0: batch}})
    for n in (1, 3, 7):
        x = randn((n, 3, 12, 10), rng, torch.float32)
        with torch.no_grad():
            torch.testing.assert_close(program.module()(x), model(x))
    # Only the batch was declared dynamic: the height is fixed.
    with pytest.raises(AssertionError, match=r"x.size\(\)\[2\] == 12"):
        program.module()(randn((2, 3, 13, 10), rng, torch.float32))


def test_exported_cnn_survives_save_and_load(rng):
    model = SmallCNN().eval()
    x = randn((2, 3, 12, 10), rng, torch.float32)
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(model, (x,)), buffer)
    buffer.seek(0)
    loaded = torch.export.load(buffer)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module()(x), model(x))


def test_eager_cnn_matches_torchs_layers(rng):
    # Compiled and exported results are held against eager ones; eager is torch's own.
    model = SmallCNN()
    reference = corr2d_ext.convert(model, to="torch")
    assert not any(isinstance(m, corr2d_ext.Conv2d) for m in reference.modules())
    x = randn((2, 3, 12, 10), rng, torch.float32)
    torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-5)
