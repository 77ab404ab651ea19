"""The d2l "image convolution" tutorial, end to end: its corr2d, its edge detector, its Conv2D
layer, and learning the kernel back from X and Y."""

import pytest
import torch

import corr2d_ext
from conftest import randn


def tutorial_corr2d(X, K):
    """The tutorial's corr2d, verbatim apart from the dtype: a Python loop over the windows."""
    h, w = K.shape
    Y = torch.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1), dtype=X.dtype)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()
    return Y


@pytest.fixture
def X():
    """6x8 image: white (1) with the middle four columns black (0)."""
    X = torch.ones((6, 8))
    X[:, 2:6] = 0
    return X


@pytest.fixture
def K():
    """The horizontal edge detector."""
    return torch.tensor([[1.0, -1.0]])


def test_edge_detector_marks_white_to_black_with_1_and_black_to_white_with_minus_1(X, K):
    expected = torch.zeros(6, 7)
    expected[:, 1] = 1
    expected[:, 5] = -1
    assert torch.equal(corr2d_ext.corr2d(X, K), expected)


def test_edge_detector_equals_the_tutorial_loop_exactly(X, K):
    assert torch.equal(corr2d_ext.corr2d(X, K), tutorial_corr2d(X, K))


def test_edge_detector_misses_horizontal_edges_of_the_transposed_image(X, K):
    Y = corr2d_ext.corr2d(X.t(), K)
    assert Y.shape == (8, 5)
    assert torch.equal(Y, torch.zeros(8, 5))


@pytest.mark.parametrize(
    "image, kernel",
    [((6, 8), (1, 2)), ((3, 3), (2, 2)), ((5, 5), (3, 3)), ((7, 4), (2, 3)), ((3, 9), (3, 1)),
     ((4, 4), (4, 4)), ((1, 1), (1, 1)), ((1, 10), (1, 3)), ((10, 1), (4, 1))],
    ids=lambda s: "x".join(map(str, s)),
)
def test_corr2d_matches_the_tutorial_loop_on_random_images(rng, image, kernel):
    X, K = randn(image, rng), randn(kernel, rng)
    torch.testing.assert_close(corr2d_ext.corr2d(X, K), tutorial_corr2d(X, K),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("image, kernel", [((6, 8), (1, 2)), ((5, 4), (2, 3))])
def test_corr2d_gradients_match_the_tutorial_loop(rng, image, kernel):
    X, K = randn(image, rng).requires_grad_(), randn(kernel, rng).requires_grad_()
    gY = randn((image[0] - kernel[0] + 1, image[1] - kernel[1] + 1), rng)
    ours = torch.autograd.grad(corr2d_ext.corr2d(X, K), (X, K), gY)
    loop = torch.autograd.grad(tutorial_corr2d(X, K), (X, K), gY)
    for name, a, e in zip(("X", "K"), ours, loop):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12, msg=lambda m: f"d{name}: {m}")


# The tutorial's layer -----------------------------------------------------------------------


def test_conv2d_layer_has_a_kernel_shaped_weight_and_a_scalar_bias():
    layer = corr2d_ext.Conv2D((1, 2))
    params = dict(layer.named_parameters())
    assert list(params) == ["weight", "bias"]
    assert params["weight"].shape == (1, 2)
    assert params["bias"].shape == (1,)


def test_conv2d_layer_draws_its_weight_with_torch_rand_and_zeros_its_bias():
    torch.manual_seed(123)
    layer = corr2d_ext.Conv2D((3, 2))
    torch.manual_seed(123)
    assert torch.equal(layer.weight.detach(), torch.rand((3, 2)))
    assert torch.equal(layer.bias.detach(), torch.zeros(1))


def test_conv2d_layer_forward_is_the_loop_plus_the_bias(X):
    layer = corr2d_ext.Conv2D((2, 2))
    with torch.no_grad():
        layer.bias.fill_(0.25)
    expected = tutorial_corr2d(X, layer.weight.detach()) + 0.25
    Y = layer(X)
    assert Y.shape == (5, 7)
    torch.testing.assert_close(Y.detach(), expected)


def test_conv2d_layer_backward_reaches_weight_and_bias(X, K):
    layer = corr2d_ext.Conv2D((1, 2))
    Y = K.new_zeros(6, 7)
    Y[:, 1], Y[:, 5] = 1, -1
    ((layer(X) - Y) ** 2).sum().backward()
    with torch.no_grad():
        r = 2 * (tutorial_corr2d(X, layer.weight) + layer.bias - Y)
    torch.testing.assert_close(layer.bias.grad, r.sum().reshape(1))
    expected_w = torch.stack([(r * X[:, 0:7]).sum(), (r * X[:, 1:8]).sum()]).reshape(1, 2)
    torch.testing.assert_close(layer.weight.grad, expected_w)


# Learning the kernel ------------------------------------------------------------------------


def test_training_learns_the_edge_detector_back_from_x_and_y(X, K):
    torch.manual_seed(0)
    conv2d = corr2d_ext.Conv2d(1, 1, kernel_size=(1, 2), bias=False)
    X4 = X.reshape((1, 1, 6, 8))
    Y4 = corr2d_ext.corr2d(X, K).reshape((1, 1, 6, 7))
    for _ in range(10):
        Y_hat = conv2d(X4)
        l = (Y_hat - Y4) ** 2
        conv2d.zero_grad()
        l.sum().backward()
        conv2d.weight.data[:] -= 3e-2 * conv2d.weight.grad
    loss = ((conv2d(X4) - Y4) ** 2).sum().item()
    assert loss < 0.1
    torch.testing.assert_close(conv2d.weight.data.reshape((1, 2)), K, rtol=0, atol=0.1)
