"""corr2d_ext.convert: every nn.Conv2d of a model becomes a corr2d_ext.Conv2d with the same
Parameters, and back; the converted model computes what the original does, in training and in
evaluation. Tested on a small ResNet (BatchNorm, residual adds, a grouped and a strided
convolution, a 1x1 downsampling shortcut)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import corr2d_ext
from conftest import TOLERANCES, assert_all_close, randn, requires_cuda


class BasicBlock(nn.Module):
    """ResNet's block: two 3x3 convolutions with BatchNorm, and a shortcut that matches the
    shape with a strided 1x1 convolution when the block downsamples."""

    def __init__(self, cin: int, cout: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class TinyResNet(nn.Module):
    def __init__(self, classes: int = 4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"),
                                  nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = BasicBlock(8, 8)
        self.layer2 = BasicBlock(8, 16, stride=2, groups=2)
        self.head = nn.Linear(16, classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.head(x.mean(dim=(2, 3)))


CONVS = ["stem.0", "layer1.conv1", "layer1.conv2", "layer2.conv1", "layer2.conv2",
         "layer2.shortcut.0"]


def resnet(dtype=torch.float64, device="cpu"):
    torch.manual_seed(0)
    return TinyResNet().to(dtype=dtype, device=device)


def types(model):
    return {name: type(m) for name, m in model.named_modules() if name in CONVS}


def run(model, x, grad_output_seed=1):
    """Output, input gradient and parameter gradients (by name) of one forward and backward."""
    x = x.detach().clone().requires_grad_()
    y = model(x)
    y.backward(randn(y.shape, torch.Generator().manual_seed(grad_output_seed), y.dtype,
                     y.device))
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    return y.detach(), x.grad, grads


def assert_same_run(actual, expected, dtype=torch.float64):
    (y, gx, grads), (ey, egx, egrads) = actual, expected
    assert grads.keys() == egrads.keys()
    names = ["output", "grad_input", *grads]
    assert_all_close([y, gx, *grads.values()], [ey, egx, *egrads.values()], names=names,
                     **TOLERANCES[dtype])


def test_every_nn_conv2d_becomes_ours_and_nothing_else_changes():
    model = resnet()
    converted = corr2d_ext.convert(model)
    assert set(types(converted).values()) == {corr2d_ext.Conv2d}
    others = lambda m: [(n, type(x)) for n, x in m.named_modules() if n not in CONVS]
    assert others(converted) == others(model)


def test_converted_layers_carry_the_same_parameters_and_arguments():
    model = resnet()
    converted = corr2d_ext.convert(model)
    assert converted.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key
    for name in CONVS:
        ours, theirs = converted.get_submodule(name), model.get_submodule(name)
        assert ours.extra_repr() == theirs.extra_repr()
        assert ours.weight.dtype == theirs.weight.dtype and ours.weight.device == theirs.weight.device


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_converted_resnet_matches_the_original(rng, training):
    model = resnet().train(training)
    converted = corr2d_ext.convert(model)
    x = randn((2, 3, 10, 9), rng)
    assert_same_run(run(converted, x), run(model, x))
    # In training, BatchNorm's running statistics moved alike.
    for key, value in model.state_dict().items():
        torch.testing.assert_close(converted.state_dict()[key], value, msg=lambda m: f"{key}: {m}")


def test_training_mode_of_every_module_is_kept():
    model = resnet().eval()
    model.layer2.train()
    converted = corr2d_ext.convert(model)
    assert ({n: m.training for n, m in converted.named_modules()} ==
            {n: m.training for n, m in model.named_modules()})


def test_convert_copies_by_default():
    model = resnet()
    converted = corr2d_ext.convert(model)
    assert converted is not model
    assert set(types(model).values()) == {nn.Conv2d}
    with torch.no_grad():
        converted.layer1.conv1.weight.add_(1)
    assert not torch.equal(converted.layer1.conv1.weight, model.layer1.conv1.weight)


def test_convert_in_place_keeps_the_parameters_an_optimizer_holds(rng):
    model = resnet()
    parameters = list(model.parameters())
    optimizer = torch.optim.SGD(parameters, lr=0.1)
    converted = corr2d_ext.convert(model, inplace=True)
    assert converted is model
    assert set(types(model).values()) == {corr2d_ext.Conv2d}
    assert all(a is b for a, b in zip(model.parameters(), parameters))
    before = model.layer1.conv1.weight.detach().clone()
    model(randn((2, 3, 8, 8), rng)).sum().backward()
    optimizer.step()
    assert not torch.equal(model.layer1.conv1.weight, before)


def test_convert_back_to_torch_restores_exact_nn_conv2d(rng):
    model = resnet()
    back = corr2d_ext.convert(corr2d_ext.convert(model), to="torch")
    assert set(types(back).values()) == {nn.Conv2d}
    x = randn((2, 3, 10, 9), rng)
    assert_same_run(run(back, x), run(model, x))


def test_a_bare_convolution_converts_to_its_replacement():
    conv = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding="valid", dilation=(1, 2), groups=2,
                     bias=False, padding_mode="circular", dtype=torch.float64)
    ours = corr2d_ext.convert(conv)
    assert type(ours) is corr2d_ext.Conv2d and ours.extra_repr() == conv.extra_repr()
    assert ours.weight is not conv.weight and torch.equal(ours.weight, conv.weight)
    assert corr2d_ext.convert(conv, inplace=True).weight is conv.weight
    back = corr2d_ext.convert(ours, to="torch")
    assert type(back) is nn.Conv2d and back.extra_repr() == conv.extra_repr()


def test_only_exact_nn_conv2d_is_converted():
    class MyConv(nn.Conv2d):
        pass

    model = nn.Sequential(MyConv(2, 2, 1), nn.Conv1d(2, 2, 1), nn.Conv2d(2, 2, 1))
    converted = corr2d_ext.convert(model)
    assert [type(m) for m in converted] == [MyConv, nn.Conv1d, corr2d_ext.Conv2d]
    # And back: only ours, not every nn.Conv2d subclass.
    assert [type(m) for m in corr2d_ext.convert(converted, to="torch")] == [
        MyConv, nn.Conv1d, nn.Conv2d]


def test_a_layer_used_twice_stays_one_layer():
    conv = nn.Conv2d(2, 2, 3, padding=1)
    converted = corr2d_ext.convert(nn.Sequential(conv, nn.ReLU(), conv))
    assert converted[0] is converted[2] and type(converted[0]) is corr2d_ext.Conv2d


def test_unknown_target_is_rejected():
    with pytest.raises(ValueError, match=r"expected to='corr2d_ext' or to='torch', but got "
                                         r"to='tensorflow'"):
        corr2d_ext.convert(resnet(), to="tensorflow")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_converted_resnet_in_lower_precision_keeps_its_dtype(rng, dtype):
    model = resnet(dtype).eval()
    converted = corr2d_ext.convert(model)
    assert all(p.dtype == dtype for p in converted.parameters())
    x = randn((2, 3, 10, 9), rng, dtype)
    with torch.no_grad():
        assert_all_close([converted(x).float()], [model(x).float()], names=("output",),
                         **TOLERANCES[dtype])


@requires_cuda
def test_converted_resnet_on_cuda_matches_the_original(rng):
    model = resnet(device="cuda")
    converted = corr2d_ext.convert(model)
    assert all(p.is_cuda for p in converted.parameters())
    x = randn((2, 3, 10, 9), rng, device="cuda")
    assert_same_run(run(converted, x), run(model, x))
