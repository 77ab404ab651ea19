"""The index helpers of csrc/corr2d.h, which every CPU and CUDA kernel loops with, against
brute force over the one relation they solve:

    i = o * stride - padding + k * dilation

(input index i, output index o, kernel tap k), tabulated for one axis by _C.axis_table."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from corr2d_ext import _C

STRIDES, PADDINGS, DILATIONS = (1, 2, 3), (0, 1, 2, 3), (1, 2, 3)
INPUTS, KERNELS = range(0, 9), range(1, 5)


def valid(input, kernel, padding, dilation):
    return (kernel - 1) * dilation + 1 <= input + 2 * padding


def axes(stride, padding, dilation):
    """Every valid (input, kernel) of one (stride, padding, dilation), with its table."""
    for input, kernel in itertools.product(INPUTS, KERNELS):
        if valid(input, kernel, padding, dilation):
            yield (input, kernel), _C.axis_table(input, kernel, stride, padding, dilation)


def brute_output(input, kernel, stride, padding, dilation):
    """Windows that fit the padded input: o counts while the last tap stays inside."""
    o = 0
    while o * stride + (kernel - 1) * dilation <= input + 2 * padding - 1:
        o += 1
    return o


def reads(o, k, stride, padding, dilation):
    return o * stride - padding + k * dilation


def as_range(begin_end, items, limit):
    """Checks that (begin, end) is a valid half-open range in [0, limit] holding exactly
    `items`, a set of ints; returns an error text or None."""
    begin, end = begin_end
    if not 0 <= begin <= end <= limit:
        return f"[{begin}, {end}) is not a range inside [0, {limit}]"
    if set(range(begin, end)) != items:
        return f"[{begin}, {end}) but the brute force finds {sorted(items)}"
    return None


GRID = list(itertools.product(STRIDES, PADDINGS, DILATIONS))
GRID_IDS = [f"stride={s},padding={p},dilation={d}" for s, p, d in GRID]
grid = pytest.mark.parametrize("stride, padding, dilation", GRID, ids=GRID_IDS)


@grid
def test_output_size_counts_the_windows_that_fit(stride, padding, dilation):
    for (input, kernel), table in axes(stride, padding, dilation):
        assert table["output"] == brute_output(input, kernel, stride, padding, dilation), (
            f"input={input}, kernel={kernel}")


@grid
def test_output_size_is_torchs(stride, padding, dilation):
    for (input, kernel), table in axes(stride, padding, dilation):
        if input == 0:
            continue  # F.conv2d takes no empty image
        y = F.conv2d(torch.empty(1, 1, input, 1, device="meta"),
                     torch.empty(1, 1, kernel, 1, device="meta"),
                     stride=(stride, 1), padding=(padding, 0), dilation=(dilation, 1))
        assert table["output"] == y.shape[2], f"input={input}, kernel={kernel}"


@grid
def test_outputs_of_tap_are_the_outputs_that_read_inside_the_input(stride, padding, dilation):
    for (input, kernel), table in axes(stride, padding, dilation):
        assert len(table["outputs_of_tap"]) == kernel
        for k, begin_end in enumerate(table["outputs_of_tap"]):
            inside = {o for o in range(table["output"])
                      if 0 <= reads(o, k, stride, padding, dilation) < input}
            error = as_range(begin_end, inside, table["output"])
            assert error is None, f"input={input}, kernel={kernel}, tap {k}: {error}"


@grid
def test_taps_of_output_are_the_taps_that_read_inside_the_input(stride, padding, dilation):
    for (input, kernel), table in axes(stride, padding, dilation):
        assert len(table["taps_of_output"]) == table["output"]
        for o, begin_end in enumerate(table["taps_of_output"]):
            inside = {k for k in range(kernel)
                      if 0 <= reads(o, k, stride, padding, dilation) < input}
            error = as_range(begin_end, inside, kernel)
            assert error is None, f"input={input}, kernel={kernel}, output {o}: {error}"


@grid
def test_output_index_is_the_output_that_reads_input_i_through_tap_k(stride, padding, dilation):
    for (input, kernel), table in axes(stride, padding, dilation):
        index = table["output_index"]
        assert len(index) == input and all(len(row) == kernel for row in index)
        for i, k in itertools.product(range(input), range(kernel)):
            readers = [o for o in range(table["output"])
                       if reads(o, k, stride, padding, dilation) == i]
            expected = readers[0] if readers else -1
            assert index[i][k] == expected, f"input={input}, kernel={kernel}, i={i}, k={k}"


def test_the_tables_cover_outputs_taps_and_gaps():
    # The grid above reaches every branch: empty tap ranges, inputs no output reads (stride >
    # dilation gaps), and an empty input that only padding fills.
    tables = [t for s, p, d in GRID for _, t in axes(s, p, d)]
    assert any(b == e for t in tables for b, e in t["outputs_of_tap"])
    assert any(b == e for t in tables for b, e in t["taps_of_output"])
    assert any(all(o == -1 for o in row) for t in tables for row in t["output_index"])
    assert any(not t["output_index"] and t["output"] > 0 for t in tables)


@pytest.mark.parametrize("input, kernel, stride, padding, dilation", [
    (-1, 1, 1, 1, 1), (4, 0, 1, 0, 1), (4, 1, 0, 0, 1), (4, 1, 1, -1, 1), (4, 1, 1, 0, 0),
    (4, 5, 1, 0, 1), (4, 3, 1, 0, 2), (1, 4, 1, 1, 1),
], ids=["negative input", "no taps", "stride 0", "negative padding", "dilation 0",
        "kernel larger than the input", "dilated kernel larger than the input",
        "kernel larger than the padded input"])
def test_invalid_axis_raises(input, kernel, stride, padding, dilation):
    with pytest.raises(RuntimeError, match=(
            rf"axis_table: invalid axis \(input={input}, kernel={kernel}, stride={stride}, "
            rf"padding={padding}, dilation={dilation}\)")):
        _C.axis_table(input, kernel, stride, padding, dilation)
