"""ONNX export: the plain ``torch.onnx.export(model, (x,), dynamo=True)`` of a model with
corr2d_ext layers gives standard ONNX Conv nodes (strides, pads, dilations, group, bias), which
onnxruntime runs to eager's outputs; and the export-only decomposition behind it leaves eager,
torch.export and torch.compile on our op.

Needs the onnx extra (``pip install corr2d_ext[onnx]``; ``make test`` installs it)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import corr2d_ext
from conftest import randn

onnx = pytest.importorskip("onnx", reason="needs the onnx extra: pip install onnx")
pytest.importorskip("onnxscript", reason="needs the onnx extra: pip install onnxscript")
ort = pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install onnxruntime")

# Conv2d arguments: (in, out, kernel, options)
LAYERS = {
    "stride 2, padding 1, bias": (3, 4, 3, dict(stride=2, padding=1)),
    "dilation (2, 1), padding (2, 0), no bias": (3, 4, (3, 2),
                                                 dict(dilation=(2, 1), padding=(2, 0), bias=False)),
    "groups 2, stride (1, 2)": (4, 6, 3, dict(groups=2, stride=(1, 2))),
    "depthwise, padding 'same'": (4, 4, 3, dict(groups=4, padding="same")),
}


def _attributes(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _export(model, x):
    program = torch.onnx.export(model, (x,), dynamo=True, verbose=False)
    return program.model_proto


def _run(proto, x):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


@pytest.mark.parametrize("layer", LAYERS)
def test_export_writes_conv_nodes_that_onnxruntime_runs(rng, layer):
    in_channels, out_channels, kernel, options = LAYERS[layer]
    torch.manual_seed(0)
    model = nn.Sequential(corr2d_ext.Conv2d(in_channels, out_channels, kernel, **options),
                          nn.ReLU()).eval()
    x = randn((2, in_channels, 9, 8), rng, dtype=torch.float32)
    proto = _export(model, x)
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert len(convs) == 1, [n.op_type for n in proto.graph.node]
    assert not [n for n in proto.graph.node
                if "corr2d" in n.op_type or n.domain.startswith("corr2d")]
    conv, layer_ = _attributes(convs[0]), model[0]
    assert conv["strides"] == list(layer_.stride)
    assert conv["dilations"] == list(layer_.dilation)
    assert conv.get("group", 1) == layer_.groups
    # 'same' with an odd kernel is symmetric padding; pads are (top, left, bottom, right).
    padding = (layer_.padding if not isinstance(layer_.padding, str)
               else tuple(d * (k - 1) // 2 for d, k in zip(layer_.dilation, layer_.kernel_size)))
    assert conv.get("pads", [0, 0, 0, 0]) == [padding[0], padding[1], padding[0], padding[1]]
    assert (len(convs[0].input) == 3) == (layer_.bias is not None)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(_run(proto, x), expected, rtol=1e-5, atol=1e-5)


def test_export_of_a_converted_network(rng):
    """A network converted with corr2d_ext.convert exports like the original."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2,
                        groups=4), nn.Flatten(), nn.LazyLinear(5))
    x = randn((1, 3, 12, 12), rng, dtype=torch.float32)
    net(x)
    ours = corr2d_ext.convert(net).eval()
    proto = _export(ours, x)
    assert [n.op_type for n in proto.graph.node].count("Conv") == 2
    with torch.no_grad():
        torch.testing.assert_close(_run(proto, x), net.eval()(x), rtol=1e-5, atol=1e-5)


def test_the_decomposition_is_for_onnx_only(rng):
    """torch.export's default decompositions and torch.compile's keep our op: the
    decomposition only reaches the ONNX exporter."""
    op = torch.ops.corr2d_ext.corr2d.default
    assert op in torch._decomp.decomposition_table
    assert op not in torch.export.default_decompositions()
    from torch._inductor.decomposition import select_decomp_table

    assert op not in select_decomp_table()
    model = corr2d_ext.Conv2d(2, 3, 3)
    program = torch.export.export(model, (torch.randn(1, 2, 5, 5),)).run_decompositions()
    targets = [n.target for n in program.graph.nodes if n.op == "call_function"]
    assert op in targets and torch.ops.aten.convolution.default not in targets
