"""Shared fixtures and helpers: a seeded generator, the CUDA skip marker, and the reference
comparison every numerical test is built on (our conv2d against F.conv2d: output, and the
gradients of input, weight and bias for one random grad_output)."""

from __future__ import annotations

import contextlib
import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, settings

import corr2d_ext

# The property tests' profiles. "ci" (the default) is what `make test` runs: a bounded number of
# examples drawn from a fixed seed (derandomized: the same examples on every run and machine),
# no per-example deadline (a loaded 2-core machine must not turn slowness into failures), and
# no example database. HYPOTHESIS_PROFILE=explore draws many more, at random, to look for new
# failures; a failure it finds prints the example and a @reproduce_failure line.
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True, database=None,
                          suppress_health_check=_SLOW_OK, print_blob=True)
settings.register_profile("explore", max_examples=2000, deadline=None, database=None,
                          suppress_health_check=_SLOW_OK, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: The CPU fast-path instantiations this machine runs, best first (native ones such as avx512,
#: avx2 or neon, then generic16, generic8 and generic4, which run the 16-, 8- and 4-lane
#: instantiations' logic with compiler vector extensions on any CPU); "portable" is not one.
FAST_CPU_ISAS = [name for name in corr2d_ext._C.cpu_isas() if name != "portable"]
NATIVE_CPU_ISA = corr2d_ext._C.cpu_isa()


@contextlib.contextmanager
def cpu_isa(name: str):
    """Runs a block with every CPU call on one kernel set (an instantiation's name, "portable"
    or "auto"), and restores the one before."""
    before = corr2d_ext._C.cpu_isa()
    corr2d_ext._C.set_cpu_isa(name)
    try:
        yield name
    finally:
        corr2d_ext._C.set_cpu_isa(before)


requires_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and corr2d_ext.cuda_built),
    reason="needs a CUDA device and corr2d_ext built with its CUDA kernels",
)


def pytest_collection_modifyitems(config, items):
    """Every test that needs CUDA (it carries requires_cuda, or lives in test_cuda.py) gets the
    `cuda` marker, so that `pytest -m cuda tests` selects all of them wherever they are (GPU
    check: bench/gpu_check.sh runs those first).

    Tests marked slow are deselected (not skipped) unless asked for with -m slow, so that a
    plain run's skips are only the CUDA tests on a machine without a GPU."""
    for item in items:
        if item.path.name == "test_cuda.py" or any(
                m is requires_cuda.mark for m in item.iter_markers("skipif")):
            item.add_marker(pytest.mark.cuda)
    if "slow" in (config.getoption("markexpr") or ""):
        return
    slow = [item for item in items if "slow" in item.keywords]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if "slow" not in item.keywords]


#: Tolerances of the reference comparison, by dtype: rtol per element, and atol relative to the
#: largest magnitude of the expected tensor (at least 1), since a long sum's rounding error
#: scales with its terms, not with its (possibly cancelled) result. float64 is exact up to
#: summation order; half precision is compared with a float32 reference.
TOLERANCES = {
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float32: dict(rtol=1e-4, atol=1e-5),
    torch.float16: dict(rtol=1e-2, atol=2e-3),
    torch.bfloat16: dict(rtol=2e-2, atol=1e-2),
}


@pytest.fixture
def rng() -> torch.Generator:
    """A CPU generator seeded with 0: every test draws the same numbers on every run."""
    return torch.Generator().manual_seed(0)


@pytest.fixture
def num_threads():
    """Restores torch's intra-op thread count after a test that changes it."""
    saved = torch.get_num_threads()
    yield saved
    torch.set_num_threads(saved)


def randn(shape, rng: torch.Generator, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """Standard normal numbers drawn on the CPU from `rng` (so they do not depend on the device),
    then moved to dtype and device."""
    return torch.randn(shape, generator=rng, dtype=torch.float64).to(dtype=dtype, device=device)


def leaf(t: torch.Tensor | None) -> torch.Tensor | None:
    """`t` as a new leaf that requires grad, keeping its strides (a non-contiguous view stays
    one)."""
    return None if t is None else t.detach().requires_grad_()


def outputs_and_grads(conv, input, weight, bias, grad_output, **kwargs):
    """Runs conv(input, weight, bias, **kwargs) on fresh leaves and backpropagates grad_output
    (a tensor, or a function of the output that makes one).

    Returns (output, grad_input, grad_weight, grad_bias, grad_output); grad_bias is None
    without a bias.
    """
    x, w, b = leaf(input), leaf(weight), leaf(bias)
    y = conv(x, w, b, **kwargs)
    if callable(grad_output):
        grad_output = grad_output(y)
    grads = torch.autograd.grad(y, [t for t in (x, w, b) if t is not None], grad_output)
    return (y.detach(), grads[0], grads[1], grads[2] if b is not None else None, grad_output)


def random_like(rng: torch.Generator):
    """A grad_output maker for outputs_and_grads: normal numbers of the output's shape."""
    return lambda y: randn(y.shape, rng, dtype=y.dtype, device=y.device)


def assert_matches_conv2d(input, weight, bias=None, *, rng=None, grad_output=None, **kwargs):
    """Our conv2d against F.conv2d on the same arguments: output and the gradients of input,
    weight and bias for one grad_output (random unless given), within the tolerance of the
    input's dtype.

    The reference runs on contiguous copies, so a non-contiguous argument checks our handling
    of its strides against a reference that never sees them.
    """
    if grad_output is None:
        grad_output = random_like(rng if rng is not None else torch.Generator().manual_seed(1))
    ours = outputs_and_grads(corr2d_ext.conv2d, input, weight, bias, grad_output, **kwargs)
    theirs = outputs_and_grads(F.conv2d, contiguous_copy(input), contiguous_copy(weight),
                               contiguous_copy(bias), ours[-1], **kwargs)
    assert_all_close(ours[:-1], theirs[:-1], **TOLERANCES[input.dtype])


def contiguous_copy(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().clone(memory_format=torch.contiguous_format)


NAMES = ("output", "grad_input", "grad_weight", "grad_bias")


def assert_all_close(actual, expected, names=NAMES, **tolerance):
    """Pairwise assert_close of (output, grad_input, ...) tuples, naming the one that differs,
    with rtol and a scaled atol as in TOLERANCES."""
    for name, a, e in zip(names, actual, expected):
        if e is None:
            assert a is None, f"{name}: expected None"
            continue
        assert a.shape == e.shape, f"{name}: shape {tuple(a.shape)}, expected {tuple(e.shape)}"
        scale = max(1.0, e.abs().max().item()) if e.numel() else 1.0
        torch.testing.assert_close(a, e, rtol=tolerance["rtol"], atol=tolerance["atol"] * scale,
                                   msg=lambda m, name=name: f"{name}: {m}")
