"""Concurrency and leaks: eight Python threads calling forward and backward at once, on
different shapes, dtypes and paths, all get the results a lone call gets (bitwise: the kernels
are deterministic); and ten thousand forward and backward calls leave the process's resident
memory where it was, within a few MB."""

from __future__ import annotations

import gc
import threading

import pytest
import torch
import torch.nn.functional as F

import corr2d_ext
from conftest import TOLERANCES, assert_all_close, outputs_and_grads

# (input, weight, options, dtype): one per thread. Big enough that most take the AVX2 kernels
# and split their work over the intra-op threads too; the float64 and bfloat16 ones take the
# portable kernels, and so do the stride-2 input gradients.
WORKLOADS = [
    ((2, 3, 24, 24), (8, 3, 3, 3), dict(padding=1), torch.float32),
    ((1, 8, 17, 31), (8, 1, 3, 3), dict(groups=8, stride=2), torch.float32),
    ((3, 4, 20, 16), (6, 2, 5, 3), dict(groups=2, dilation=(1, 2), padding=(2, 0)), torch.float32),
    ((2, 6, 28, 28), (16, 6, 5, 5), dict(), torch.float32),
    ((2, 3, 15, 19), (4, 3, 3, 2), dict(stride=(2, 1), padding=1), torch.float64),
    ((1, 2, 33, 9), (3, 2, 1, 4), dict(padding="same"), torch.float64),
    ((2, 4, 16, 16), (4, 4, 3, 3), dict(padding=2, dilation=2), torch.bfloat16),
    ((5, 1, 12, 40), (2, 1, 2, 7), dict(stride=(1, 3)), torch.float32),
]
THREADS = len(WORKLOADS)
ROUNDS = 15


def workload_tensors(index):
    input_shape, weight_shape, options, dtype = WORKLOADS[index]
    gen = torch.Generator().manual_seed(index)
    randn = lambda *s: torch.randn(s, generator=gen, dtype=torch.float64)
    x, w, b = randn(*input_shape), randn(*weight_shape), randn(weight_shape[0])
    gy = randn(*F.conv2d(x, w, b, **options).shape)
    return [t.to(dtype) for t in (x, w, b, gy)], options


def run(index):
    (x, w, b, gy), options = workload_tensors(index)
    return outputs_and_grads(corr2d_ext.conv2d, x, w, b, gy, **options)[:-1]


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel lengths:UserWarning")
def test_eight_threads_at_once_get_what_a_lone_call_gets(num_threads):
    torch.set_num_threads(2)
    alone = [run(i) for i in range(THREADS)]
    # The lone results are right to begin with.
    for i, got in enumerate(alone):
        (x, w, b, gy), options = workload_tensors(i)
        up = lambda t: t.double()
        expected = outputs_and_grads(F.conv2d, up(x), up(w), up(b), up(gy), **options)[:-1]
        tolerance = TOLERANCES[torch.float32 if x.dtype == torch.float32 else x.dtype]
        assert_all_close([up(t) for t in got], expected, **tolerance)

    start = threading.Barrier(THREADS)
    failures, rounds_done = [], [0] * THREADS

    def worker(i):
        try:
            start.wait()
            for _ in range(ROUNDS):
                got = run(i)
                for name, a, e in zip(("output", "grad_input", "grad_weight", "grad_bias"),
                                      got, alone[i]):
                    if not torch.equal(a, e):
                        failures.append(f"thread {i} ({WORKLOADS[i]}): {name} differs")
                rounds_done[i] += 1
        except Exception as e:  # noqa: BLE001 (reported below, with the thread)
            failures.append(f"thread {i}: {e!r}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not failures, "\n".join(failures[:10])
    assert rounds_done == [ROUNDS] * THREADS


def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def leak_check_calls():
    """The calls the leak test repeats: forward and backward on each path, with and without a
    bias, double backward, and the no-grad fast path."""
    gen = torch.Generator().manual_seed(0)
    x32 = torch.randn(2, 4, 16, 16, generator=gen)
    w32 = torch.randn(8, 4, 3, 3, generator=gen)
    b32 = torch.randn(8, generator=gen)
    x64, w64 = x32.double()[:, :, :9, :11], w32.double()[:4, :, :2, :3]

    def f32():
        x, w, b = (t.clone().requires_grad_() for t in (x32, w32, b32))
        corr2d_ext.conv2d(x, w, b, padding=1).sum().backward()

    def f64():
        x, w = (t.clone().requires_grad_() for t in (x64, w64))
        y = corr2d_ext.conv2d(x, w, stride=(2, 1), dilation=(1, 2))
        (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        gx.sum().backward()  # double backward: the gradient ops' own graph

    def no_grad():
        with torch.no_grad():
            corr2d_ext.conv2d(x32, w32, b32)

    return [f32, f64, no_grad]


def test_ten_thousand_calls_do_not_grow_resident_memory():
    calls = leak_check_calls()
    for _ in range(300):  # warm up: allocator caches, autograd's and Python's own structures
        for call in calls:
            call()
    gc.collect()
    before = resident_bytes()
    n = 0
    while n < 10_000:
        for call in calls:
            call()
            n += 1
    gc.collect()
    grown = resident_bytes() - before
    # A leak of one of these tensors per call (2 KB to 8 KB) would grow it by 20 MB or more.
    assert grown < 4 * 2**20, f"resident memory grew by {grown / 2**20:.1f} MB over {n} calls"
