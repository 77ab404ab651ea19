"""A line-by-line NumPy emulation of the CUDA kernels in csrc/cuda/corr2d_kernel.cu.

Why: the CUDA kernels can be compiled here but not run (no GPU). This script runs their logic
on the CPU, in float64, and holds the results against torch.nn.functional.conv2d and its two
gradients. It checks the kernels' index arithmetic, tiling, shared-memory use, barriers,
warp-shuffle reduction, grid-stride loops and launch decisions; it does not check the
compiler, the hardware or the half/bfloat16 rounding.

How it stays faithful (read each emulated kernel next to its CUDA source; the comments name
the CUDA lines):

* Every kernel is vectorised over the threads of a block (or of the whole grid for the kernels
  without shared memory): an int64 NumPy array holds one value per thread, and a boolean mask
  says which threads execute a statement (an `if`, or a loop whose trip count differs between
  threads, which runs "rounds" until no thread is left).
* Integer '/' and '%' are C's (truncating), via tdiv / tmod.
* Global memory is a flat array per tensor. Every load and store checks its index against the
  allocation (an out-of-bounds access raises), and every store is counted: after a kernel each
  output element must have been written exactly once. Outputs start as NaN (poisoned), so an
  element never written shows up as NaN.
* Shared memory is a flat array of the launch's dynamic size (or the static array's size),
  filled with NaN when the block starts and kept across the block's grid-stride iterations, as
  on the GPU. Reads and writes are bounds-checked, and between two barriers every access is
  logged: if one thread writes a word that another thread reads or writes in the same phase,
  that is a race and the script raises.
* __syncthreads() asserts that every thread of the block is active at it; the statements
  before it run for all threads before any statement after it (the vectorised execution gives
  that order by construction).
* __shfl_down_sync(0xffffffff, v, offset) asserts that all 32 lanes of each executing warp are
  active, and returns v[lane + offset] for lane + offset < 32, else the lane's own v.
* The host side (plan_weight_grad, tile_shape_for, tiled_shared_bytes, tiled_fits_int32,
  block_weights_fit_int32, forward_form.h's layouts and input_grad_phases, grid_for, the
  launchers' choice of kernel) is transliterated with int64 wrap-around, so overflows show;
  the tiled kernels' 32-bit arithmetic is exact by the launcher's tiled_fits_int32 and
  block_weights_fit_int32. 16-byte shared loads are checked for 16-byte alignment.
* A shared read of a word no thread has written (still NaN) raises; the inputs are finite.

What runs: the index helpers of corr2d.h against brute force (and against the compiled
_C.axis_table when the extension imports); the launcher's shared-memory size on huge strides
(host int64 checks); then 28 named and 40 random geometries (batch 1-2, groups incl.
depthwise, channel tails, narrow outputs, stride 1-3, padding 0-3 and past the kernel,
dilation 1-3 and 100, kernels 1x1 to 7x7, the fallbacks, weight-gradient slices 1-3), each
twice: with grid_for's grid and double's 8-byte staging, and with the grid capped at 3 blocks
(so that every grid-stride loop turns) and float's 4-byte staging. Each run emulates the
forward four times (the launcher's choice, then tiled<8,4>, tiled<1,8> and direct forced where
they fit), the input gradient four times the same way (every stride phase through the
forward kernels, reading the weight flipped and transposed in place and writing every
stride-th pixel; zero_unreached_kernel for the phases no tap reaches), and the weight gradient (tiled 8x3 or 1x9, or per filter; sum_slices_kernel when
the plan slices). --planted then plants one bug at a time (PLANTS: at least one per kernel)
and requires the emulation to fail.

Run (from the repository root):
      .venv/bin/python tools/emulate_cuda.py            (everything, about a minute)
      .venv/bin/python tools/emulate_cuda.py --quick    (6 geometries, one grid)
      .venv/bin/python tools/emulate_cuda.py --planted  (the planted bugs, about a minute)
      .venv/bin/python tools/emulate_cuda.py -v         (one line per run)
Exit status 0 when every check passes. The emulation transliterates the CUDA source as it is:
change it along with the kernels.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# C integer arithmetic.

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def wrap64(v: int) -> int:
    """An int64 result as the hardware gives it (two's complement wrap-around)."""
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= (1 << 63) else v


def int32(v: int) -> int:
    """static_cast<int> of an int64."""
    v &= (1 << 32) - 1
    return v - (1 << 32) if v >= (1 << 31) else v


def tdiv(a, b):
    """C's integer '/': truncates towards zero. Scalars or int64 arrays."""
    if type(a) is int and type(b) is int:  # the common scalar case, fast
        q = abs(a) // abs(b)
        return -q if (a < 0) != (b < 0) else q
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        q = np.abs(a) // np.abs(b)
        return np.where((a < 0) != (b < 0), -q, q)
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def tmod(a, b):
    """C's integer '%': a - (a / b) * b, with the sign of a."""
    return a - tdiv(a, b) * b


def where(c, a, b):
    """The ternary operator, per thread."""
    return np.where(c, a, b)


def min64(a, b):
    return np.minimum(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else min(a, b)


# ---------------------------------------------------------------------------------------------
# csrc/corr2d.h, transliterated. Works on Python ints and on per-thread int64 arrays.


def output_size(input, kernel, stride, padding, dilation):
    return tdiv(input + 2 * padding - dilation * (kernel - 1) - 1, stride) + 1


def div_ceil(a, b):
    # return a >= 0 ? (a + b - 1) / b : -((-a) / b);
    return where(a >= 0, tdiv(a + b - 1, b), -tdiv(-a, b)) if isinstance(a, np.ndarray) else (
        tdiv(a + b - 1, b) if a >= 0 else -tdiv(-a, b))


def div_floor(a, b):
    # return a >= 0 ? a / b : -((-a + b - 1) / b);
    return where(a >= 0, tdiv(a, b), -tdiv(-a + b - 1, b)) if isinstance(a, np.ndarray) else (
        tdiv(a, b) if a >= 0 else -tdiv(-a + b - 1, b))


def clamp_index(v, lo, hi):
    # return v < lo ? lo : (v > hi ? hi : v);
    return where(v < lo, lo, where(v > hi, hi, v)) if isinstance(v, np.ndarray) else (
        lo if v < lo else (hi if v > hi else v))


@dataclass(frozen=True)
class Axis:
    input: int
    output: int
    kernel: int
    stride: int
    padding: int
    dilation: int

    def input_index(self, o, k):
        return o * self.stride - self.padding + k * self.dilation

    def output_begin(self, k):
        return clamp_index(div_ceil(self.padding - k * self.dilation, self.stride), 0, self.output)

    def output_end(self, k):
        last = div_floor(self.input - 1 + self.padding - k * self.dilation, self.stride)
        end = clamp_index(last + 1, 0, self.output)
        begin = self.output_begin(k)
        return where(end < begin, begin, end) if isinstance(end, np.ndarray) else (
            begin if end < begin else end)

    def tap_begin(self, o):
        return clamp_index(div_ceil(self.padding - o * self.stride, self.dilation), 0, self.kernel)

    def tap_end(self, o):
        last = div_floor(self.input - 1 + self.padding - o * self.stride, self.dilation)
        end = clamp_index(last + 1, 0, self.kernel)
        begin = self.tap_begin(o)
        return where(end < begin, begin, end) if isinstance(end, np.ndarray) else (
            begin if end < begin else end)

    def output_index(self, i, k):
        # n < 0 || n % stride != 0 -> -1; o = n / stride; o < output ? o : -1
        n = i + self.padding - k * self.dilation
        if isinstance(n, np.ndarray):
            bad = (n < 0) | (tmod(n, self.stride) != 0)
            o = tdiv(n, self.stride)
            return where(bad, -1, where(o < self.output, o, -1))
        if n < 0 or tmod(n, self.stride) != 0:
            return -1
        o = tdiv(n, self.stride)
        return o if o < self.output else -1


@dataclass(frozen=True)
class Geometry:
    batch: int
    in_channels: int
    out_channels: int
    groups: int
    rows: Axis
    cols: Axis

    def in_channels_per_group(self):
        return tdiv(self.in_channels, self.groups)

    def out_channels_per_group(self):
        return tdiv(self.out_channels, self.groups)

    def group_of_output_channel(self, oc):
        return tdiv(oc, self.out_channels_per_group())

    def first_input_channel(self, group):
        return group * self.in_channels_per_group()

    def kernel_area(self):
        return self.rows.kernel * self.cols.kernel

    def input_plane(self):
        return self.rows.input * self.cols.input

    def output_plane(self):
        return self.rows.output * self.cols.output

    def input_offset(self, n, c):
        return (n * self.in_channels + c) * self.input_plane()

    def output_offset(self, n, oc):
        return (n * self.out_channels + oc) * self.output_plane()

    def weight_offset(self, oc, c_in_group):
        return (oc * self.in_channels_per_group() + c_in_group) * self.kernel_area()


def make_geometry(input, weight, output, stride, padding, dilation, groups):
    """corr2d.cpp's make_geometry."""
    return Geometry(input[0], input[1], weight[0], groups,
                    Axis(input[2], output[2], weight[2], stride[0], padding[0], dilation[0]),
                    Axis(input[3], output[3], weight[3], stride[1], padding[1], dilation[1]))


# ---------------------------------------------------------------------------------------------
# The machine: global memory, shared memory with race detection, barriers, shuffles.


class EmulationError(AssertionError):
    pass


class Global:
    """One tensor's allocation in global memory: bounds-checked, stores counted."""

    def __init__(self, name, values):
        self.name = name
        if isinstance(values, torch.Tensor):
            values = values.numpy()
        self.data = np.array(values, dtype=np.float64).reshape(-1)
        self.writes = np.zeros(self.data.size, dtype=np.int64)

    @classmethod
    def poisoned(cls, name, size):
        return cls(name, np.full(size, np.nan))

    def _check(self, idx, mask, what):
        idx = np.asarray(idx, dtype=np.int64)
        if idx.shape != mask.shape:
            idx = np.broadcast_to(idx, mask.shape)
        bad = mask & ((idx < 0) | (idx >= self.data.size))
        if bad.any():
            raise EmulationError(f"out-of-bounds {what} of {self.name}: index "
                                 f"{int(idx[bad][0])}, size {self.data.size}")
        return idx

    def load(self, idx, mask):
        """__ldg for the threads in mask; other threads get NaN (they must not use it)."""
        idx = self._check(idx, mask, "load")
        return np.where(mask, self.data[np.where(mask, idx, 0)], np.nan)

    def store(self, idx, value, mask):
        idx = self._check(idx, mask, "store")
        i = idx[mask]
        if np.unique(i).size != i.size:
            raise EmulationError(f"two threads store the same element of {self.name}")
        self.data[i] = np.broadcast_to(value, mask.shape)[mask]
        self.writes[i] += 1

    def assert_written_once(self):
        if not (self.writes == 1).all():
            never, twice = int((self.writes == 0).sum()), int((self.writes > 1).sum())
            raise EmulationError(f"{self.name}: {never} elements never written, {twice} written "
                                 f"more than once")


class Block:
    """One thread block: its thread count, shared memory, and the phase log of shared
    accesses between barriers."""

    def __init__(self, threads, shared_words):
        self.threads = threads
        self.tid = np.arange(threads, dtype=np.int64)
        self.all = np.ones(threads, dtype=bool)
        self.shared = np.full(shared_words, np.nan)  # uninitialised shared memory reads as NaN
        self.log = []  # (addresses, tids, is_write) since the last barrier
        self.barriers = 0

    def _check(self, addr, mask, what):
        addr = np.asarray(addr, dtype=np.int64)
        if addr.shape != mask.shape:
            addr = np.broadcast_to(addr, mask.shape)
        bad = mask & ((addr < 0) | (addr >= self.shared.size))
        if bad.any():
            raise EmulationError(f"out-of-bounds shared {what}: word {int(addr[bad][0])}, "
                                 f"{self.shared.size} words allocated")
        return addr

    def sread(self, addr, mask):
        addr = self._check(addr, mask, "read")
        self.log.append((addr[mask], self.tid[mask], False))
        v = self.shared[np.where(mask, addr, 0)]
        if np.isnan(v[mask]).any():
            raise EmulationError("a thread reads shared memory that no thread has written")
        return np.where(mask, v, np.nan)

    def swrite(self, addr, value, mask):
        addr = self._check(addr, mask, "write")
        self.log.append((addr[mask], self.tid[mask], True))
        self.shared[addr[mask]] = np.broadcast_to(value, mask.shape)[mask]

    def syncthreads(self, active):
        """__syncthreads(): every thread must arrive; then the phase's accesses are checked
        for races (a word written by one thread and touched by another)."""
        if not np.all(active):
            raise EmulationError("__syncthreads() reached by only part of the block")
        self.barriers += 1
        if self.log:
            addr = np.concatenate([a for a, _, _ in self.log])
            tids = np.concatenate([t for _, t, _ in self.log])
            wr = np.concatenate([np.full(a.size, w) for a, _, w in self.log])
            written = np.unique(addr[wr])
            touched = np.isin(addr, written)
            if touched.any():
                a, t = addr[touched], tids[touched]
                order = np.lexsort((t, a))
                a, t = a[order], t[order]
                starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
                lo = np.minimum.reduceat(t, starts)
                hi = np.maximum.reduceat(t, starts)
                if (lo != hi).any():
                    k = int(np.flatnonzero(lo != hi)[0])
                    raise EmulationError(f"shared-memory race on word {int(a[starts[k]])} "
                                         f"between threads {int(lo[k])} and {int(hi[k])}")
        self.log = []


def shfl_down_sync(v, offset, active, mask_bits=0xFFFFFFFF):
    """__shfl_down_sync over a block's threads (blockDim.x a multiple of 32, warps are runs of
    32 consecutive thread ids). Every warp with an active lane must have all lanes named in
    mask_bits active."""
    assert mask_bits == 0xFFFFFFFF
    w = v.reshape(-1, 32)
    a = active.reshape(-1, 32)
    executing = a.any(axis=1)
    if not a[executing].all():
        raise EmulationError("__shfl_down_sync with a full mask but inactive lanes")
    lane = np.arange(32)
    src = lane + offset
    out = np.where(src < 32, w[:, np.minimum(src, 31)], w)
    return np.where(a, out, w).reshape(-1)


# ---------------------------------------------------------------------------------------------
# Host constants and helpers of corr2d_kernel.cu / corr2d_cuda.h.

kThreads = 256
kTileThreads = 256
kChannelBlock = 8     # corr2d_cuda.h
kPixels = 4
kPixelsOneToOne = 8
kInputGradChannels = 4
kWeightGradTaps = 9
kSharedBytes = 48 * 1024
GRID_CAP = 1 << 20  # grid_for's cap
INT32_LIM = (1 << 31) - 1

# Planted bugs (--planted): each name breaks one kernel the way a plausible slip would; the
# emulation must then report a failure. None: the kernels as written.
PLANT = None
PLANTS = {
    "tiled-barrier": "forward_tiled_kernel: the barrier before a channel's staging left out",
    "tiled-halo": "forward_tiled_kernel: the patch staged one column short",
    "tiled-weight-layout": "forward_tiled_kernel: weights staged channel-major, read tap-major",
    "tiled-dst-col": "forward_tiled_kernel: the output's column stride taken as 1",
    "direct-tap": "forward_direct_kernel: the last column tap skipped",
    "direct-weight-layout": "forward_direct_kernel: the weight's column taps read unflipped",
    "zero-unreached": "zero_unreached_kernel: the column's phase not tested",
    "phase-shift": "input_grad_phases: a phase's padding one short along the columns",
    "weight-grad-slice": "weight_grad_kernel: each slice one term short",
    "block-sum": "block_sum (weight_grad_kernel): the first shuffle step (offset 16) left out",
    "wg-tiled-slice": "weight_grad_tiled_kernel: each slice one tile short",
    "wg-tiled-shuffle": "weight_grad_tiled_kernel: the first shuffle step left out",
    "wg-tiled-carry": "weight_grad_tiled_kernel: the pixel step's row carry left out",
    "wg-tiled-channel": "weight_grad_tiled_kernel: every warp reads the first channel's patch",
    "sum-slices": "sum_slices_kernel: the last slice left out",
}


def planted(name):
    assert name in PLANTS
    return PLANT == name


def ceil_div(a, b):
    return tdiv(a + b - 1, b)


def grid_for(work_items, per_block, cap=GRID_CAP):
    blocks = ceil_div(work_items, per_block)
    return blocks if blocks < cap else cap


@dataclass
class TileShape:
    tw: int = 0
    th: int = 0
    ocs: int = 0
    threads: int = 0
    patch_rows: int = 0
    patch_cols: int = 0
    patch_words: int = 0
    tiles_w: int = 0
    tiles_h: int = 0
    oc_blocks: int = 0


def tile_shape_for(g, OCB, PW):
    s = TileShape()
    want_tw = ceil_div(g.cols.output, PW)
    s.tw = want_tw if want_tw < 32 else 32
    s.tiles_w = ceil_div(g.cols.output, s.tw * PW)
    # with channels to spare, rows for half the block only: the other half takes a second
    # channel group, so each staged patch serves twice the channels
    ocs_want = ceil_div(g.out_channels_per_group(), OCB)
    th_max = tdiv(kTileThreads // 2 if ocs_want >= 2 else kTileThreads, s.tw)
    s.tiles_h = ceil_div(g.rows.output, th_max)
    s.th = int32(ceil_div(g.rows.output, s.tiles_h))
    ocs_max = tdiv(kTileThreads, s.tw * s.th)
    s.ocs = ocs_want if ocs_want < ocs_max else ocs_max
    s.threads = s.tw * s.th * s.ocs
    s.oc_blocks = ceil_div(g.out_channels_per_group(), s.ocs * OCB)
    return s


def tiled_shared_bytes(g, s, OCB, PW, acc_size):
    """Fills s's patch fields; returns the bytes, > kSharedBytes when the tile cannot fit."""
    max_words = kSharedBytes // acc_size
    rows = wrap64(wrap64((s.th - 1) * g.rows.stride) + wrap64((g.rows.kernel - 1) * g.rows.dilation)
                  + 1)
    cols = wrap64(wrap64((s.tw * PW - 1) * g.cols.stride)
                  + wrap64((g.cols.kernel - 1) * g.cols.dilation) + 1)
    if rows > max_words or cols > max_words or g.kernel_area() > max_words:
        return kSharedBytes + 1
    words = tdiv(rows * cols + 3, 4) * 4
    bytes_ = (words + s.ocs * OCB * g.kernel_area()) * acc_size
    if bytes_ > kSharedBytes:
        return bytes_
    s.patch_rows, s.patch_cols, s.patch_words = rows, cols, words
    return bytes_


def tiled_fits_int32(g):
    lim = INT32_LIM

    def axis_fits(a):
        return (a.input < lim and a.output < lim and a.padding < lim // 4 and
                a.padding > -(lim // 4) and a.output * a.stride < lim // 4 and
                a.kernel * a.dilation < lim // 4)

    return (axis_fits(g.rows) and axis_fits(g.cols) and g.input_plane() < lim and
            g.output_plane() < lim and g.out_channels < lim)


def block_weights_fit_int32(g, s, ocb, wl):
    lim = INT32_LIM
    if abs(wl.dst) >= lim or abs(wl.tap_row) >= lim or abs(wl.tap_col) >= lim:
        return False
    channels = s.ocs * ocb - 1
    return (channels * abs(wl.dst) < lim and (g.rows.kernel - 1) * abs(wl.tap_row) < lim and
            (g.cols.kernel - 1) * abs(wl.tap_col) < lim and
            channels * abs(wl.dst) + (g.rows.kernel - 1) * abs(wl.tap_row) +
            (g.cols.kernel - 1) * abs(wl.tap_col) < lim)


@dataclass(frozen=True)
class WeightLayout:
    """forward_form.h: where weight element (dst channel d, src channel s, tap (kh, kw)) lives."""
    group: int
    dst: int
    src: int
    tap_row: int
    tap_col: int
    offset: int


@dataclass(frozen=True)
class DstLayout:
    """forward_form.h: where dst element (n, d, y, x) is written."""
    image: int
    channel: int
    row: int
    col: int
    offset: int


def forward_weight_layout(g):
    ka, cin = g.kernel_area(), g.in_channels_per_group()
    return WeightLayout(g.out_channels_per_group() * cin * ka, cin * ka, ka, g.cols.kernel, 1, 0)


def contiguous_dst_layout(g):
    return DstLayout(g.out_channels * g.output_plane(), g.output_plane(), g.cols.output, 1, 0)


@dataclass(frozen=True)
class InputGradPhase:
    g: Geometry
    wl: WeightLayout
    dst: DstLayout
    taps: bool


def gcd(a, b):
    return a if b == 0 else gcd(b, tmod(a, b))


def phase_axis(a, i0, shift_fix=0):
    """forward_form.h's detail::phase_axis: (axis, first_tap, tap_step, taps)."""
    outputs = tdiv(a.input - i0 + a.stride - 1, a.stride)
    k0, taps = -1, 0
    for k in range(a.kernel):
        if tmod(i0 + a.padding - k * a.dilation, a.stride) == 0:
            if k0 < 0:
                k0 = k
            taps += 1
    gd = gcd(a.stride, a.dilation)
    step, dilation = tdiv(a.stride, gd), tdiv(a.dilation, gd)
    if taps == 0:
        return Axis(a.output, outputs, 1, 1, 0, 1), 0, step, 0
    shift = tdiv(i0 + a.padding - k0 * a.dilation, a.stride)
    return (Axis(a.output, outputs, taps, 1, (taps - 1) * dilation - shift - shift_fix, dilation),
            k0, step, taps)


def input_grad_phases(g):
    ka, kw, cin, in_plane = g.kernel_area(), g.cols.kernel, g.in_channels_per_group(), \
        g.input_plane()
    phases = []
    for r0 in range(min(g.rows.stride, g.rows.input)):
        for c0 in range(min(g.cols.stride, g.cols.input)):
            rows = phase_axis(g.rows, r0)
            cols = phase_axis(g.cols, c0, 1 if planted("phase-shift") else 0)
            pg = Geometry(g.batch, g.out_channels, g.in_channels, g.groups, rows[0], cols[0])
            last_h = rows[1] + (rows[3] - 1) * rows[2]
            last_w = cols[1] + (cols[3] - 1) * cols[2]
            wl = WeightLayout(g.out_channels_per_group() * cin * ka, ka, cin * ka,
                              -rows[2] * kw, -cols[2], last_h * kw + last_w)
            dst = DstLayout(g.in_channels * in_plane, in_plane, g.rows.stride * g.cols.input,
                            g.cols.stride, r0 * g.cols.input + c0)
            phases.append(InputGradPhase(pg, wl, dst, rows[3] > 0 and cols[3] > 0))
    return phases


def forward_variant(g):
    """try_forward_any_tiled's template choice: (OCB, PW)."""
    return (1, kPixelsOneToOne) if g.out_channels_per_group() == 1 else (kChannelBlock, kPixels)


kWgChannels = 8
kWgTaps = 3
kWgTapsOneChannel = 9
kWgMaxWarps = 8
kWgSharedWords = 48 * 1024 // 8


@dataclass(frozen=True)
class WgTile:
    tile_rows: int = 0
    tile_cols: int = 0
    patch_rows: int = 0
    patch_cols: int = 0
    patch_words: int = 0
    warps: int = 0
    channels: int = 0
    c_blocks: int = 0
    tiles_w: int = 0
    tiles_h: int = 0
    oc_blocks: int = 0
    ocb: int = 0
    tb: int = 0
    tiles: int = 0


@dataclass(frozen=True)
class WeightGradPlan:
    tap_chunks: int
    slices: int
    tiled: bool = False
    tile: WgTile = WgTile()


def plan_weight_grad(g):
    kTargetBlocks, kMinSliceLength = 512, 2048
    sum_length = g.batch * g.output_plane()

    def slices_for(base, max_slices):
        slices = tdiv(kTargetBlocks + base - 1, base)
        if slices > max_slices:
            slices = max_slices
        return 1 if slices < 1 else slices

    if tiled_fits_int32(g):
        ka = g.kernel_area()
        tiles_w = tdiv(g.cols.output + 31, 32)
        tile_cols = int32(tdiv(g.cols.output + tiles_w - 1, tiles_w))
        rows_max = tdiv(256, tile_cols)
        tiles_h = tdiv(g.rows.output + rows_max - 1, rows_max)
        tile_rows = int32(tdiv(g.rows.output + tiles_h - 1, tiles_h))
        rows = (tile_rows - 1) * g.rows.stride + (g.rows.kernel - 1) * g.rows.dilation + 1
        cols = (tile_cols - 1) * g.cols.stride + (g.cols.kernel - 1) * g.cols.dilation + 1
        one = g.out_channels_per_group() == 1
        ocb, tb = (1, kWgTapsOneChannel) if one else (kWgChannels, kWgTaps)
        gy_words = tile_rows * tile_cols * ocb
        if rows <= kWgSharedWords and cols <= kWgSharedWords and \
                tdiv(rows * cols + 3, 4) * 4 + gy_words <= kWgSharedWords:
            tap_groups = tdiv(ka + tb - 1, tb)
            warps = tap_groups if tap_groups < kWgMaxWarps else kWgMaxWarps
            patch_words = tdiv(rows * cols + 3, 4) * 4
            channels = min(tdiv(kWgMaxWarps, warps), g.in_channels_per_group())
            while channels > 1 and channels * patch_words + gy_words > kWgSharedWords:
                channels -= 1
            c_blocks = tdiv(g.in_channels_per_group() + channels - 1, channels)
            oc_blocks = tdiv(g.out_channels_per_group() + ocb - 1, ocb)
            t = WgTile(tile_rows, tile_cols, rows, cols, patch_words, warps, channels, c_blocks,
                       tiles_w, tiles_h, oc_blocks, ocb, tb, g.batch * tiles_h * tiles_w)
            tap_chunks = tdiv(tap_groups + warps - 1, warps)
            base = g.groups * oc_blocks * c_blocks * tap_chunks
            tile_px = tile_rows * tile_cols
            min_tiles = tdiv(kMinSliceLength + tile_px - 1, tile_px)
            return WeightGradPlan(tap_chunks, slices_for(base, tdiv(t.tiles + min_tiles - 1,
                                                                     min_tiles)), True, t)
    filters = g.out_channels * g.in_channels_per_group()
    tap_chunks = tdiv(g.kernel_area() + kWeightGradTaps - 1, kWeightGradTaps)
    base = filters * tap_chunks
    return WeightGradPlan(tap_chunks, slices_for(base, tdiv(sum_length + kMinSliceLength - 1,
                                                            kMinSliceLength)))


def weight_grad_workspace(g, plan):
    if plan.slices == 1:
        return 0
    return g.out_channels * g.in_channels_per_group() * g.kernel_area() * plan.slices


# ---------------------------------------------------------------------------------------------
# forward_tiled_kernel<T, OCB, PW>: 1-D blocks of TileShape's threads rounded up to 32, dynamic
# shared memory.


def forward_tiled_kernel(OCB, PW, grid, threads, shared_bytes, acc_size, g, s, wl, dl, input,
                         weight, bias, output):
    in_w, in_h = int32(g.cols.input), int32(g.rows.input)
    out_w, out_h = int32(g.cols.output), int32(g.rows.output)
    kh_n, kw_n = int32(g.rows.kernel), int32(g.cols.kernel)
    ka = kh_n * kw_n
    cin_g = g.in_channels_per_group()
    cout_g = int32(g.out_channels_per_group())
    oct_ = s.ocs * OCB
    n_blocks = g.batch * g.groups * s.oc_blocks * s.tiles_h * s.tiles_w
    vec = 16 // acc_size  # words per 16-byte weight load
    pc = s.patch_cols
    staged_cols = s.patch_cols - 1 if planted("tiled-halo") else s.patch_cols

    for blockIdx in range(grid):
        blk = Block(threads, tdiv(shared_bytes, acc_size))
        tid = blk.tid
        lane, warp, warps = tid % 32, tid // 32, threads // 32
        os_ = tdiv(tid, s.tw * s.th)
        ty = tmod(tdiv(tid, s.tw), s.th)
        tx = tmod(tid, s.tw)
        x_step = s.tw * int32(g.cols.stride)
        x_base = ty * int32(g.rows.stride) * pc + tx * int32(g.cols.stride)
        row_step = int32(g.rows.dilation) * pc
        col_step = int32(g.cols.dilation)
        w_dst, w_row, w_col = int32(wl.dst), int32(wl.tap_row), int32(wl.tap_col)
        staged_input, staged_weight = 0, s.patch_words

        b = blockIdx
        while b < n_blocks:
            tw_i = tmod(b, s.tiles_w)
            th_i = tmod(tdiv(b, s.tiles_w), s.tiles_h)
            gob = tmod(tdiv(b, s.tiles_w * s.tiles_h), g.groups * s.oc_blocks)
            n = tdiv(b, s.tiles_w * s.tiles_h * g.groups * s.oc_blocks)
            group = tdiv(gob, s.oc_blocks)
            oc_base = int32(tmod(gob, s.oc_blocks)) * oct_
            oc_count = min(oct_, cout_g - oc_base)
            oh0 = int32(th_i) * s.th
            ow0 = int32(tw_i) * s.tw * PW
            ih0 = oh0 * int32(g.rows.stride) - int32(g.rows.padding)
            iw0 = ow0 * int32(g.cols.stride) - int32(g.cols.padding)
            oh = oh0 + ty
            computes = (tid < s.threads) & (oh < out_h) & (os_ * OCB < oc_count)

            acc = np.zeros((OCB, PW, threads))
            for j in range(OCB):
                jb = os_ * OCB + j
                have = computes & (jb < oc_count)
                if bias is not None:
                    b0 = where(have, bias.load(group * cout_g + oc_base + jb, have), 0.0)
                else:
                    b0 = 0.0
                for p in range(PW):
                    acc[j, p] = b0

            w_block = wl.offset + group * wl.group + oc_base * wl.dst
            for c in range(cin_g):
                plane = g.input_offset(n, g.first_input_channel(group) + c)
                w_src = w_block + c * wl.src
                if not (planted("tiled-barrier") and c > 0):
                    blk.syncthreads(blk.all)
                # the patch: for (r = warp; r < patch_rows; r += warps)
                #              for (col = lane; col < patch_cols; col += 32)
                r = warp.copy()
                while True:
                    mr = r < s.patch_rows
                    if not mr.any():
                        break
                    ih = ih0 + r
                    row_inside = (ih >= 0) & (ih < in_h)
                    src = plane + where(row_inside, ih, 0) * in_w
                    col = lane.copy()
                    while True:
                        mc = mr & (col < staged_cols)
                        if not mc.any():
                            break
                        iw = iw0 + col
                        ok = mc & row_inside & (iw >= 0) & (iw < in_w)
                        v = where(ok, input.load(src + iw, ok), 0.0)
                        blk.swrite(staged_input + r * pc + col, v, mc)
                        col = col + 32
                    r = r + warps
                # the weights, tap-major: for (tap = warp; ...) for (j = lane; j < oct; ...)
                tap = warp.copy()
                while True:
                    mt = tap < ka
                    if not mt.any():
                        break
                    tap_at = tdiv(tap, kw_n) * w_row + tmod(tap, kw_n) * w_col  # exact in 32 bits
                    j = lane.copy()
                    while True:
                        mj = mt & (j < oct_)
                        if not mj.any():
                            break
                        real = mj & (j < oc_count)
                        v = where(real, weight.load(w_src + (j * w_dst + tap_at), real),
                                  0.0)
                        dst = (j * ka + tap) if planted("tiled-weight-layout") else (tap * oct_ + j)
                        blk.swrite(staged_weight + dst, v, mj)
                        j = j + 32
                    tap = tap + warps
                blk.syncthreads(blk.all)
                # the taps
                for kh in range(kh_n):
                    for kw in range(kw_n):
                        x_col = staged_input + x_base + kh * row_step + kw * col_step
                        x = [blk.sread(x_col + p * x_step, computes) for p in range(PW)]
                        w_tap = staged_weight + os_ * OCB + (kh * kw_n + kw) * oct_
                        if OCB % vec == 0:  # 16-byte loads need 16-byte aligned addresses
                            bad = computes & ((w_tap * acc_size) % 16 != 0)
                            if bad.any():
                                raise EmulationError("a 16-byte weight load from an address "
                                                     "that is not 16-byte aligned")
                        for j in range(OCB):
                            w = blk.sread(w_tap + j, computes)
                            for p in range(PW):
                                acc[j, p] = where(computes, acc[j, p] + w * x[p], acc[j, p])

            for j in range(OCB):
                jb = os_ * OCB + j
                mj = computes & (jb < oc_count)  # the loop's break, per thread
                col = 1 if planted("tiled-dst-col") else dl.col
                out_px = (dl.offset + n * dl.image + (group * cout_g + oc_base + jb) * dl.channel +
                          oh * dl.row + (ow0 + tx) * col)
                px_step = s.tw * col
                for p in range(PW):
                    output.store(out_px + p * px_step, acc[j, p],
                                 mj & (ow0 + tx + p * s.tw < out_w))
            b += grid


# forward_direct_kernel<T>: 1-D blocks of 256, no shared memory. Vectorised over the grid.


def forward_direct_kernel(grid, block, g, wl, dl, input, weight, bias, output):
    rows, cols = g.rows, g.cols
    total = g.batch * g.out_channels * g.output_plane()
    cin_g = g.in_channels_per_group()
    tap_col = -wl.tap_col if planted("direct-weight-layout") and wl.tap_col < 0 else wl.tap_col
    idx = np.arange(grid * block, dtype=np.int64)  # blockIdx.x * blockDim.x + threadIdx.x
    while True:
        m = idx < total
        if not m.any():
            break
        ow = tmod(idx, cols.output)
        oh = tmod(tdiv(idx, cols.output), rows.output)
        oc = tmod(tdiv(idx, g.output_plane()), g.out_channels)
        n = tdiv(idx, g.output_plane() * g.out_channels)
        group = g.group_of_output_channel(oc)
        c0 = g.first_input_channel(group)
        acc = bias.load(oc, m) if bias is not None else np.zeros(idx.size)
        for c in range(cin_g):
            plane = g.input_offset(n, c0 + c)
            w = (wl.offset + group * wl.group + (oc - group * g.out_channels_per_group()) * wl.dst
                 + c * wl.src)
            for kh in range(rows.kernel):
                ih = rows.input_index(oh, kh)
                for kw in range(cols.kernel - (1 if planted("direct-tap") else 0)):
                    iw = cols.input_index(ow, kw)
                    inside = m & (ih >= 0) & (ih < rows.input) & (iw >= 0) & (iw < cols.input)
                    x = where(inside, input.load(plane + ih * cols.input + iw, inside), 0.0)
                    prod = weight.load(w + kh * wl.tap_row + kw * tap_col, m) * x
                    acc = where(m, acc + prod, acc)
        output.store(dl.offset + n * dl.image + oc * dl.channel + oh * dl.row + ow * dl.col, acc,
                     m)
        idx = idx + grid * block


# ---------------------------------------------------------------------------------------------
# zero_unreached_kernel<T>: 1-D blocks of 256, no shared memory. Vectorised over the grid.


def phase_has_taps(a, i):
    """Per thread: i + padding - k * dilation divisible by the stride for some tap k."""
    has = np.zeros(np.shape(i), dtype=bool)
    for k in range(a.kernel):
        has |= tmod(i + a.padding - k * a.dilation, a.stride) == 0
    return has


def zero_unreached_kernel(grid, block, g, grad_input):
    total = g.batch * g.in_channels * g.input_plane()
    idx = np.arange(grid * block, dtype=np.int64)
    while True:
        m = idx < total
        if not m.any():
            break
        iw = tmod(idx, g.cols.input)
        ih = tmod(tdiv(idx, g.cols.input), g.rows.input)
        reached = phase_has_taps(g.rows, ih) & (
            True if planted("zero-unreached") else phase_has_taps(g.cols, iw))
        grad_input.store(idx, 0.0, m & ~reached)
        idx = idx + grid * block


# ---------------------------------------------------------------------------------------------
# weight_grad_kernel<T> (1-D blocks of 256, static shared scratch[8]) and sum_slices_kernel<T>.


def block_sum(blk, v, scratch):
    """block_sum(v, scratch): returns the per-thread v; thread 0's is the block's sum."""
    lane = blk.tid % 32
    warp = blk.tid // 32
    offset = 8 if planted("block-sum") else 16
    while offset > 0:
        v = v + shfl_down_sync(v, offset, blk.all)
        offset //= 2
    blk.syncthreads(blk.all)  # line 300
    blk.swrite(scratch + warp, v, lane == 0)
    blk.syncthreads(blk.all)  # line 302
    in_warp0 = warp == 0
    v = np.zeros(kThreads)
    # if (warp == 0) { v = lane < 8 ? scratch[lane] : 0; shuffle tree }
    from_scratch = in_warp0 & (lane < kThreads // 32)
    v = where(from_scratch, blk.sread(scratch + np.minimum(lane, kThreads // 32 - 1),
                                      from_scratch), v)
    offset = 16
    while offset > 0:
        v = where(in_warp0, v + shfl_down_sync(v, offset, in_warp0), v)
        offset //= 2
    return v


def weight_grad_kernel(grid, g, plan, input, grad_output, partial, grad_weight):
    rows, cols = g.rows, g.cols
    cin_g = g.in_channels_per_group()
    ka = g.kernel_area()
    filters = g.out_channels * cin_g
    n_blocks = filters * plan.tap_chunks * plan.slices
    sum_length = g.batch * g.output_plane()
    slice_length = tdiv(sum_length + plan.slices - 1, plan.slices)

    for blockIdx in range(grid):
        blk = Block(kThreads, kThreads // 32)  # __shared__ acc_t scratch[kThreads / 32]
        scratch = 0
        threadIdx_x = blk.tid
        b = blockIdx
        while b < n_blocks:
            slice_ = tmod(b, plan.slices)
            chunk = tmod(tdiv(b, plan.slices), plan.tap_chunks)
            filter_ = tdiv(b, plan.slices * plan.tap_chunks)
            oc = tdiv(filter_, cin_g)
            c = g.first_input_channel(g.group_of_output_channel(oc)) + tmod(filter_, cin_g)
            tap0 = chunk * kWeightGradTaps
            taps = min64(kWeightGradTaps, ka - tap0)
            kh = [tdiv(tap0 + j, cols.kernel) for j in range(kWeightGradTaps)]
            kw = [tmod(tap0 + j, cols.kernel) for j in range(kWeightGradTaps)]
            acc = np.zeros((kWeightGradTaps, kThreads))

            r_end = min64(sum_length, (slice_ + 1) * slice_length)
            if planted("weight-grad-slice"):
                r_end -= 1
            r = slice_ * slice_length + threadIdx_x
            while True:
                m = r < r_end
                if not m.any():
                    break
                ow = tmod(r, cols.output)
                oh = tmod(tdiv(r, cols.output), rows.output)
                n = tdiv(r, g.output_plane())
                gy = grad_output.load(g.output_offset(n, oc) + oh * cols.output + ow, m)
                plane = g.input_offset(n, c)
                for j in range(kWeightGradTaps):
                    if j < taps:
                        ih = rows.input_index(oh, kh[j])
                        iw = cols.input_index(ow, kw[j])
                        mi = m & (ih >= 0) & (ih < rows.input) & (iw >= 0) & (iw < cols.input)
                        acc[j] = where(mi, acc[j] + gy * input.load(plane + ih * cols.input + iw,
                                                                    mi), acc[j])
                r = r + kThreads

            for j in range(kWeightGradTaps):
                if j < taps:
                    s = block_sum(blk, acc[j], scratch)
                    t0 = threadIdx_x == 0
                    e = filter_ * ka + tap0 + j
                    if plan.slices == 1:
                        grad_weight.store(np.full(kThreads, e), s, t0)
                    else:
                        partial.store(np.full(kThreads, e * plan.slices + slice_), s, t0)
            b += grid


# weight_grad_tiled_kernel<T>: 1-D blocks of 32 x tile.warps threads, dynamic shared memory.


def weight_grad_tiled_kernel(grid, acc_size, g, plan, t, input, grad_output, partial,
                             grad_weight):
    OCB, TB = t.ocb, t.tb  # the launcher's template choice
    in_w, in_h = int32(g.cols.input), int32(g.rows.input)
    out_w, out_h = int32(g.cols.output), int32(g.rows.output)
    kw_n = int32(g.cols.kernel)
    ka = int32(g.kernel_area())
    cin_g = g.in_channels_per_group()
    cout_g = int32(g.out_channels_per_group())
    sh, sw = int32(g.rows.stride), int32(g.cols.stride)
    tile_px = t.tile_rows * t.tile_cols
    n_blocks = g.groups * t.oc_blocks * t.c_blocks * plan.tap_chunks * plan.slices
    slice_tiles = tdiv(t.tiles + plan.slices - 1, plan.slices)
    threads = 32 * t.warps * t.channels
    shared_words = t.channels * t.patch_words + tile_px * OCB
    vec = 16 // acc_size

    for blockIdx in range(grid):
        blk = Block(threads, shared_words)
        tid = blk.tid
        lane, warp = tid % 32, tid // 32
        staged_input, staged_gy = 0, t.channels * t.patch_words
        warp_taps, warp_c = warp % t.warps, warp // t.warps
        row0, col0 = lane // t.tile_cols, lane % t.tile_cols
        row_step, col_step = 32 // t.tile_cols, 32 % t.tile_cols
        b = blockIdx
        while b < n_blocks:
            slice_ = tmod(b, plan.slices)
            chunk = tmod(tdiv(b, plan.slices), plan.tap_chunks)
            c_block = tmod(tdiv(b, plan.slices * plan.tap_chunks), t.c_blocks)
            gob = tdiv(b, plan.slices * plan.tap_chunks * t.c_blocks)
            c0 = c_block * t.channels
            c_count = int32(min(t.channels, cin_g - c0))
            c = c0 + warp_c
            c_inside = warp_c < c_count
            group = tdiv(gob, t.oc_blocks)
            oc_base = int32(tmod(gob, t.oc_blocks)) * OCB
            oc_count = min(OCB, cout_g - oc_base)
            tap0 = (int32(chunk) * t.warps + warp_taps) * TB
            tap_off = []
            for i in range(TB):
                tap = where(tap0 + i < ka, tap0 + i, 0)
                tap_off.append(tdiv(tap, kw_n) * int32(g.rows.dilation) * t.patch_cols
                               + tmod(tap, kw_n) * int32(g.cols.dilation))
            acc = np.zeros((OCB, TB, threads))

            tile_end = min64(t.tiles, (slice_ + 1) * slice_tiles)
            if planted("wg-tiled-slice"):
                tile_end -= 1
            tile = slice_ * slice_tiles
            while tile < tile_end:
                tw_i = tmod(tile, t.tiles_w)
                th_i = tmod(tdiv(tile, t.tiles_w), t.tiles_h)
                n = tdiv(tile, t.tiles_w * t.tiles_h)
                oh0, ow0 = int32(th_i) * t.tile_rows, int32(tw_i) * t.tile_cols
                rows_valid = min(t.tile_rows, out_h - oh0)
                cols_valid = min(t.tile_cols, out_w - ow0)
                ih0 = oh0 * sh - int32(g.rows.padding)
                iw0 = ow0 * sw - int32(g.cols.padding)
                gy_plane = g.output_offset(n, group * cout_g + oc_base)
                blk.syncthreads(blk.all)
                for ci in range(c_count):
                    plane = g.input_offset(n, g.first_input_channel(group) + c0 + ci)
                    r = warp.copy()
                    while True:  # the patch of input channel c0 + ci
                        mr = r < t.patch_rows
                        if not mr.any():
                            break
                        ih = ih0 + r
                        row_inside = (ih >= 0) & (ih < in_h)
                        src = plane + where(row_inside, ih, 0) * in_w
                        col = lane.copy()
                        while True:
                            mc = mr & (col < t.patch_cols)
                            if not mc.any():
                                break
                            iw = iw0 + col
                            ok = mc & row_inside & (iw >= 0) & (iw < in_w)
                            blk.swrite(staged_input + ci * t.patch_words + r * t.patch_cols + col,
                                       where(ok, input.load(src + iw, ok), 0.0), mc)
                            col = col + 32
                        r = r + threads // 32
                r = warp.copy()
                while True:  # grad_output, pixel-major
                    mr = r < t.tile_rows
                    if not mr.any():
                        break
                    col = lane.copy()
                    while True:
                        mc = mr & (col < t.tile_cols)
                        if not mc.any():
                            break
                        dst = staged_gy + (r * t.tile_cols + col) * OCB
                        inside = mc & (r < rows_valid) & (col < cols_valid)
                        at = (oh0 + r) * out_w + ow0 + col
                        for j in range(OCB):
                            ok = inside & (j < oc_count)
                            v = where(ok, grad_output.load(gy_plane + j * g.output_plane() + at,
                                                           ok), 0.0)
                            blk.swrite(dst + j, v, mc)
                        col = col + 32
                    r = r + threads // 32
                blk.syncthreads(blk.all)
                active = (tap0 < ka) & c_inside
                patch = staged_input + (0 if planted("wg-tiled-channel") else warp_c) * t.patch_words
                row, col = row0.copy(), col0.copy()
                p = lane.copy()
                while True:
                    mp = active & (p < tile_px)
                    if not mp.any():
                        break
                    valid = mp & (row < rows_valid) & (col < cols_valid)
                    x_at = patch + row * sh * t.patch_cols + col * sw
                    x = [blk.sread(x_at + tap_off[i], valid) for i in range(TB)]
                    g_at = staged_gy + p * OCB
                    if ((g_at * acc_size) % 16 != 0)[valid].any() and OCB % vec == 0:
                        raise EmulationError("a 16-byte grad_output load from an address that "
                                             "is not 16-byte aligned")
                    for j in range(OCB):
                        gyv = blk.sread(g_at + j, valid)
                        for i in range(TB):
                            acc[j, i] = where(valid, acc[j, i] + gyv * x[i], acc[j, i])
                    col = col + col_step
                    row = row + row_step
                    carry = col >= t.tile_cols
                    col = where(carry, col - t.tile_cols, col)
                    row = where(carry & (not planted("wg-tiled-carry")), row + 1, row)
                    p = p + 32
                tile += 1

            for j in range(OCB):
                for i in range(TB):
                    offset = 8 if planted("wg-tiled-shuffle") else 16
                    v = acc[j, i]
                    while offset > 0:
                        v = v + shfl_down_sync(v, offset, blk.all)
                        offset //= 2
                    acc[j, i] = v
            for j in range(OCB):
                for i in range(TB):
                    m = (lane == 0) & c_inside & (j < oc_count) & (tap0 + i < ka)
                    oc = group * cout_g + oc_base + j
                    e = (oc * cin_g + c) * ka + tap0 + i
                    if plan.slices == 1:
                        grad_weight.store(e, acc[j, i], m)
                    else:
                        partial.store(e * plan.slices + slice_, acc[j, i], m)
            b += grid


def sum_slices_kernel(grid, block, elements, slices, partial, grad_weight):
    e = np.arange(grid * block, dtype=np.int64)
    while True:
        m = e < elements
        if not m.any():
            break
        s_ = np.zeros(e.size)
        for s in range(slices - (1 if planted("sum-slices") else 0)):
            s_ = where(m, s_ + partial.load(e * slices + s, m), s_)
        grad_weight.store(e, s_, m)
        e = e + grid * block


# ---------------------------------------------------------------------------------------------
# Launchers. acc_size is sizeof(Acc<T>::type): 8 for double, 4 for float/half/bfloat16; it only
# decides the tiled/direct choice and the shared size (the arithmetic here is float64).
# grid_cap lowers grid_for's cap to make the grid-stride loops take several turns on small
# problems.


def try_forward_tiled(OCB, PW, g, wl, dl, input, weight, bias, output, acc_size, grid_cap,
                      force=False):
    if not tiled_fits_int32(g):
        if force:
            raise EmulationError("forced the tiled kernel on a geometry whose indices need "
                                 "64 bits")
        return False
    s = tile_shape_for(g, OCB, PW)
    bytes_ = tiled_shared_bytes(g, s, OCB, PW, acc_size)
    if (bytes_ > kSharedBytes or not block_weights_fit_int32(g, s, OCB, wl)) and not force:
        return False
    if bytes_ > kSharedBytes:
        raise EmulationError(f"forced the tiled kernel with {bytes_} bytes of shared memory")
    blocks = g.batch * g.groups * s.oc_blocks * s.tiles_h * s.tiles_w
    threads = tdiv(s.threads + 31, 32) * 32
    forward_tiled_kernel(OCB, PW, grid_for(blocks, 1, grid_cap), threads, bytes_, acc_size, g, s,
                         wl, dl, input, weight, bias, output)
    return True


def correlate(g, wl, dl, input, weight, bias, output, acc_size, grid_cap, force=None):
    """The .cu's correlate(): the tiled kernel where it fits, else the direct one. Returns the
    kernel that ran. force: None (the launcher's choice), "tiled-block" or "tiled-one" (that
    variant whatever the channels; None when it cannot take the geometry), "direct"."""
    forced = {"tiled-block": (kChannelBlock, kPixels), "tiled-one": (1, kPixelsOneToOne)}
    if force in forced:
        OCB, PW = forced[force]
        if try_forward_tiled(OCB, PW, g, wl, dl, input, weight, bias, output, acc_size,
                             grid_cap):
            return f"tiled<{OCB},{PW}>"
        return None
    if force is None:
        OCB, PW = forward_variant(g)
        if try_forward_tiled(OCB, PW, g, wl, dl, input, weight, bias, output, acc_size,
                             grid_cap):
            return f"tiled<{OCB},{PW}>"
    total = g.batch * g.out_channels * g.output_plane()
    forward_direct_kernel(grid_for(total, kThreads, grid_cap), kThreads, g, wl, dl, input,
                          weight, bias, output)
    return "direct"


def launch_forward(g, input, weight, bias, output, acc_size=8, grid_cap=GRID_CAP, force=None):
    return correlate(g, forward_weight_layout(g), contiguous_dst_layout(g), input, weight, bias,
                     output, acc_size, grid_cap, force)


def launch_input_grad(g, grad_output, weight, grad_input, acc_size=8, grid_cap=GRID_CAP,
                      force=None):
    """Each stride phase with taps through correlate() (force as there), then one
    zero_unreached_kernel when some phase has none. Returns the kernels that ran joined by '+'
    (None when a forced variant cannot take some phase)."""
    ran, unreached = [], False
    for p in input_grad_phases(g):
        if p.taps:
            k = correlate(p.g, p.wl, p.dst, grad_output, weight, None, grad_input, acc_size,
                          grid_cap, force)
            if k is None:
                return None
            ran.append(k)
        else:
            unreached = True
    if unreached:
        total = g.batch * g.in_channels * g.input_plane()
        zero_unreached_kernel(grid_for(total, kThreads, grid_cap), kThreads, g, grad_input)
        ran.append("zero")
    return "+".join(ran)


def launch_weight_grad(g, plan, input, grad_output, workspace, grad_weight, grid_cap=GRID_CAP,
                       acc_size=8):
    partial = workspace
    filters = g.out_channels * g.in_channels_per_group()
    if plan.tiled:
        t = plan.tile
        blocks = g.groups * t.oc_blocks * t.c_blocks * plan.tap_chunks * plan.slices
        weight_grad_tiled_kernel(grid_for(blocks, 1, grid_cap), acc_size, g, plan, t, input,
                                 grad_output, partial, grad_weight)
    else:
        blocks = filters * plan.tap_chunks * plan.slices
        weight_grad_kernel(grid_for(blocks, 1, grid_cap), g, plan, input, grad_output, partial,
                           grad_weight)
    if plan.slices > 1:
        elements = filters * g.kernel_area()
        sum_slices_kernel(grid_for(elements, kThreads, grid_cap), kThreads, elements,
                          plan.slices, partial, grad_weight)


# ---------------------------------------------------------------------------------------------
# The three ops as corr2d.cpp calls them, and the comparison with torch.


@dataclass(frozen=True)
class Case:
    batch: int
    cin: int
    cout: int
    groups: int
    hw: tuple
    khw: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    bias: bool = True

    def valid(self):
        if self.cin % self.groups or self.cout % self.groups:
            return False
        return all((k - 1) * d + 1 <= i + 2 * p
                   for i, k, p, d in zip(self.hw, self.khw, self.padding, self.dilation))

    def __str__(self):
        return (f"N{self.batch} C{self.cin}->{self.cout} g{self.groups} {self.hw[0]}x{self.hw[1]}"
                f" k{self.khw[0]}x{self.khw[1]} s{self.stride} p{self.padding} d{self.dilation}"
                f"{'' if self.bias else ' nobias'}")


def run_case(case, rng, grid_cap=GRID_CAP, forces=(None,), acc_size=8):
    """Emulates the three ops on one geometry; returns (notes, list of failures)."""
    x = torch.from_numpy(rng.standard_normal((case.batch, case.cin) + case.hw))
    w = torch.from_numpy(rng.standard_normal((case.cout, case.cin // case.groups) + case.khw))
    b = torch.from_numpy(rng.standard_normal(case.cout)) if case.bias else None
    opts = dict(stride=case.stride, padding=case.padding, dilation=case.dilation,
                groups=case.groups)
    y = F.conv2d(x, w, b, **opts)
    gy = torch.from_numpy(rng.standard_normal(tuple(y.shape)))
    gx = torch.nn.grad.conv2d_input(x.shape, w, gy, **opts)
    gw = torch.nn.grad.conv2d_weight(x, w.shape, gy, **opts)

    g = make_geometry(tuple(x.shape), tuple(w.shape), tuple(y.shape), case.stride, case.padding,
                      case.dilation, case.groups)
    failures, notes = [], []

    def compare(name, got, want):
        want = want.numpy().reshape(-1)
        if np.isnan(got).any():
            failures.append(f"{name}: {int(np.isnan(got).sum())} NaN (unwritten) elements")
        elif not np.allclose(got, want, rtol=1e-10, atol=1e-10):
            err = float(np.max(np.abs(got - want)))
            failures.append(f"{name}: max abs error {err:.3g}")

    def attempt(name, fn):
        try:
            fn()
        except EmulationError as e:
            failures.append(f"{name}: {e}")
            return False
        return True

    # Forward: corr2d() allocates output, passes contiguous tensors; the launcher picks a kernel.
    for force in forces:
        out = Global.poisoned("output", y.numel())
        ran = []
        ok = attempt(f"forward[{force or 'launcher'}]", lambda: ran.append(launch_forward(
            g, Global("input", x), Global("weight", w), None if b is None else Global("bias", b),
            out, acc_size, grid_cap, force)))
        if ok and ran[0] is None:  # a forced variant that cannot take this geometry
            continue
        if ok and attempt(f"forward[{force or 'launcher'}]", out.assert_written_once):
            compare(f"forward[{ran[0]}]", out.data, y)
        if force is None and ran:
            notes.append(ran[0])

    # Input gradient: the stride phases, each with the launcher's kernel and then each forward
    # kernel forced (a forced variant that cannot take every phase is skipped).
    for force in forces:
        gin = Global.poisoned("grad_input", x.numel())
        path = []
        ok = attempt(f"input_grad[{force or 'launcher'}]", lambda: path.append(launch_input_grad(
            g, Global("grad_output", gy), Global("weight", w), gin, acc_size, grid_cap, force)))
        if ok and path[0] is None:
            continue
        if ok and attempt(f"input_grad[{force or 'launcher'}]", gin.assert_written_once):
            compare(f"input_grad[{path[0]}]", gin.data, gx)
        if force is None and path:
            notes.append(f"dx {path[0]}")

    plan = plan_weight_grad(g)
    notes.append(f"dw {'tiled' if plan.tiled else 'per filter'} chunks={plan.tap_chunks} "
                 f"slices={plan.slices}"
                 + (f" {plan.tile.ocb}x{plan.tile.tb} channels={plan.tile.channels}"
                    if plan.tiled else ""))
    gwt = Global.poisoned("grad_weight", w.numel())
    ws = Global.poisoned("workspace", weight_grad_workspace(g, plan))
    if attempt("weight_grad", lambda: launch_weight_grad(g, plan, Global("input", x),
                                                         Global("grad_output", gy), ws, gwt,
                                                         grid_cap, acc_size)) \
            and attempt("weight_grad", gwt.assert_written_once) \
            and (plan.slices == 1 or attempt("weight_grad workspace", ws.assert_written_once)):
        compare("weight_grad", gwt.data, gw)
    return notes, failures


# ---------------------------------------------------------------------------------------------
# The geometries.


def named_cases():
    C = Case
    return [
        C(1, 1, 1, 1, (5, 5), (3, 3)),                                     # 1 -> 1, tiled<1,8>
        C(1, 1, 1, 1, (20, 150), (3, 3), padding=(1, 1)),                  # 3x2 tiles of <1,4>
        C(2, 3, 5, 1, (7, 9), (3, 3), padding=(1, 1)),                     # OCB tail (5 of 8)
        C(1, 5, 17, 1, (11, 70), (3, 3), padding=(1, 1)),                  # 8+8+1, 2 tiles wide
        C(1, 4, 4, 4, (10, 12), (3, 3), stride=(2, 2), padding=(1, 1)),    # depthwise
        C(1, 3, 6, 3, (17, 140), (3, 3), padding=(1, 0), bias=False),      # depthwise x2, wide
        C(2, 6, 10, 2, (9, 11), (5, 5), padding=(2, 2)),                   # 25 taps, ICB tail 3
        C(1, 8, 8, 2, (7, 7), (5, 5), padding=(3, 3), dilation=(2, 2)),    # ICB = 4 exact
        C(1, 2, 9, 1, (6, 7), (2, 3), stride=(3, 3), padding=(3, 3), dilation=(2, 1)),
        C(1, 2, 3, 1, (2, 2), (1, 1), stride=(3, 2), padding=(3, 3)),      # padding > kernel
        C(2, 2, 3, 1, (17, 30), (1, 1)),                                   # 1x1 kernel
        C(1, 3, 6, 3, (9, 9), (3, 2), stride=(2, 3), padding=(3, 0), dilation=(3, 1)),
        C(1, 1, 2, 1, (1, 1), (1, 1), stride=(3, 3), padding=(2, 2)),      # 1x1 image
        C(1, 2, 2, 1, (1, 9), (1, 4), padding=(0, 2), dilation=(1, 3)),    # one row
        C(1, 2, 3, 1, (30, 30), (5, 5), stride=(3, 3), padding=(3, 3), dilation=(3, 3)),  # direct
        C(1, 1, 1, 1, (40, 300), (3, 3), stride=(3, 3), padding=(1, 1)),   # direct, 1 -> 1
        C(1, 2, 3, 1, (12, 12), (7, 7), padding=(3, 3)),                   # 49 taps, 6 chunks
        C(2, 1, 2, 1, (48, 48), (3, 3), padding=(1, 1)),                   # 3 weight-grad slices
        C(2, 2, 2, 1, (40, 40), (5, 5), padding=(2, 2), bias=False),       # 2 slices, 3 chunks
        C(1, 2, 2, 2, (70, 70), (3, 3), stride=(1, 1), padding=(1, 1)),    # 1->1 groups, slices
        # the tile shapes: narrow outputs, channel groups (ocs) with a tail inside one of them
        C(2, 3, 40, 1, (7, 7), (3, 3), padding=(1, 1)),                    # 7x7: 2-wide rows, ocs 5
        C(1, 2, 9, 1, (14, 14), (3, 3), padding=(1, 1)),                   # ocs 2, second has 1
        C(1, 2, 3, 1, (100, 9), (1, 3), padding=(0, 1)),                   # 2 row tiles of 50
        # stride 1 with padding > (kernel - 1) * dilation: the flipped input gradient's
        # padding is negative
        C(1, 2, 3, 1, (5, 6), (2, 2), padding=(2, 3)),
        C(1, 3, 3, 3, (4, 9), (3, 2), padding=(3, 1), dilation=(1, 2), bias=False),
        # one output channel per group with several input channels: the 1x9 weight gradient
        # with 3 channels per block, and with 2 (5x5: 3 tap warps) and a 1-channel tail block
        C(2, 6, 2, 2, (9, 13), (3, 3), padding=(1, 1)),
        C(1, 3, 1, 1, (12, 11), (5, 5), padding=(2, 2)),
        # strided input gradients, phase by phase: 3x3/2 (phases of 2x2, 2x1, 1x2 and 1x1
        # taps), a 1x1/2 downsample and a 2-tap kernel at stride 3 (phases no tap reaches:
        # zero_unreached_kernel), stride 2 with dilation 2 (gcd 2: only even taps meet a phase),
        # the 7x7/2 stem with 3 channels, a depthwise 3x3/2, stride 3 on an image shorter than
        # the stride
        C(2, 3, 10, 1, (9, 10), (3, 3), stride=(2, 2), padding=(1, 1)),
        C(1, 4, 6, 1, (8, 7), (1, 1), stride=(2, 2)),
        C(1, 2, 3, 1, (11, 10), (2, 2), stride=(3, 3), padding=(1, 0)),
        C(1, 2, 4, 1, (12, 13), (3, 3), stride=(2, 2), padding=(2, 2), dilation=(2, 2)),
        C(1, 3, 9, 1, (16, 15), (7, 7), stride=(2, 2), padding=(3, 3)),
        C(2, 6, 6, 6, (9, 9), (3, 3), stride=(2, 2), padding=(1, 1)),
        C(1, 2, 2, 1, (2, 8), (2, 3), stride=(3, 3), padding=(1, 1)),
        # patches too large for the tiled kernels: direct forward, direct input gradient
        # phases, the per-filter weight gradient
        C(1, 2, 4, 1, (230, 230), (3, 3), padding=(1, 1), dilation=(100, 100)),
    ]


def random_cases(count, seed):
    r = random.Random(seed)
    channels = [(1, 1, 1), (2, 3, 1), (3, 9, 1), (4, 4, 4), (6, 10, 2), (4, 8, 2), (2, 2, 2),
                (3, 3, 1), (5, 12, 1), (6, 6, 3)]
    out = []
    while len(out) < count:
        cin, cout, groups = r.choice(channels)
        c = Case(r.choice((1, 2)), cin, cout, groups,
                 (r.choice((1, 2, 3, 5, 8, 9, 13)), r.choice((1, 3, 7, 31, 33, 65, 70, 129))),
                 (r.choice((1, 2, 3, 5)), r.choice((1, 2, 3, 5))),
                 (r.randint(1, 3), r.randint(1, 3)), (r.randint(0, 3), r.randint(0, 3)),
                 (r.randint(1, 3), r.randint(1, 3)), r.random() < 0.7)
        if c.valid():
            out.append(c)
    return out


# ---------------------------------------------------------------------------------------------
# Host-side checks: the index helpers against brute force (also the compiled ones when the
# extension is importable), and the launcher's int64 shared-memory size.


def check_index_helpers():
    failures = []
    try:
        from corr2d_ext import _C
    except Exception:  # noqa: BLE001 - optional
        _C = None
    count = 0
    for inp, k, s, p, d in itertools.product(range(0, 10), range(1, 6), range(1, 5),
                                             range(0, 10), range(1, 5)):
        if (k - 1) * d + 1 > inp + 2 * p:
            continue
        count += 1
        out = output_size(inp, k, s, p, d)
        brute = 0
        while brute * s + (k - 1) * d <= inp + 2 * p - 1:
            brute += 1
        a = Axis(inp, out, k, s, p, d)
        ok = out == brute
        for kk in range(k):
            outs = {o for o in range(out) if 0 <= a.input_index(o, kk) < inp}
            ok &= set(range(a.output_begin(kk), a.output_end(kk))) == outs
            ok &= 0 <= a.output_begin(kk) <= a.output_end(kk) <= out
        for o in range(out):
            taps = {kk for kk in range(k) if 0 <= a.input_index(o, kk) < inp}
            ok &= set(range(a.tap_begin(o), a.tap_end(o))) == taps
            ok &= 0 <= a.tap_begin(o) <= a.tap_end(o) <= k
        for i in range(inp):
            for kk in range(k):
                want = [o for o in range(out) if a.input_index(o, kk) == i]
                ok &= a.output_index(i, kk) == (want[0] if want else -1)
        if _C is not None:
            t = _C.axis_table(inp, k, s, p, d)
            ok &= t["output"] == out
            ok &= [tuple(v) for v in t["outputs_of_tap"]] == \
                [(a.output_begin(kk), a.output_end(kk)) for kk in range(k)]
            ok &= [tuple(v) for v in t["taps_of_output"]] == \
                [(a.tap_begin(o), a.tap_end(o)) for o in range(out)]
            ok &= [list(v) for v in t["output_index"]] == \
                [[a.output_index(i, kk) for kk in range(k)] for i in range(inp)]
        if not ok:
            failures.append(f"index helpers: input={inp} kernel={k} stride={s} padding={p} "
                            f"dilation={d}")
    # the vectorised forms equal the scalar ones
    a = Axis(7, output_size(7, 3, 2, 5, 2), 3, 2, 5, 2)
    o = np.arange(a.output, dtype=np.int64)
    i = np.arange(a.input, dtype=np.int64)
    for kk in range(3):
        assert list(a.output_index(i, kk)) == [a.output_index(int(v), kk) for v in i]
    assert list(a.tap_begin(o)) == [a.tap_begin(int(v)) for v in o]
    assert list(a.tap_end(o)) == [a.tap_end(int(v)) for v in o]
    return count, _C is not None, failures


def check_shared_bytes_overflow():
    """The launcher's int64 tiled_shared_bytes on valid geometries with huge strides (corr2d's
    check allows strides up to 2^31 - 1): 1x1 images, 1x1 kernels. Returns (report lines,
    failures): a failure is a wrapped size that the launcher accepts. (Transliterates the
    launcher as it is; update tiled_shared_bytes here along with a fix.)"""
    lines, failures = [], []

    def axis(s):
        return Axis(1, output_size(1, 1, s, 0, 1), 1, s, 0, 1)

    def true_bytes(g, OCB, PW, size):
        sh = tile_shape_for(g, OCB, PW)
        rows = (sh.th - 1) * g.rows.stride + (g.rows.kernel - 1) * g.rows.dilation + 1
        cols = (sh.tw * PW - 1) * g.cols.stride + (g.cols.kernel - 1) * g.cols.dilation + 1
        return rows, cols, ((rows * cols + 3) // 4 * 4 + sh.ocs * OCB * g.kernel_area()) * size

    rng = np.random.default_rng(0)
    for label, g, OCB, PW in (
            # stride 2^26: a patch product that would wrap to a negative size
            ("1->1, 1x1 image, stride (2^26, 2^26)", Geometry(1, 1, 1, 1, axis(1 << 26),
                                                              axis(1 << 26)), 1, kPixelsOneToOne),
            # a patch of 2^33 x 2^36 words: a product that would wrap to exactly 0
            ("2->2, 1x1 image, stride (1227133513, 1090785345)",
             Geometry(1, 2, 2, 1, axis(1227133513), axis(1090785345)), kChannelBlock, kPixels)):
        for name, size in (("double", 8), ("float", 4)):
            sh = tile_shape_for(g, OCB, PW)
            got = tiled_shared_bytes(g, sh, OCB, PW, size)
            rows, cols, true = true_bytes(g, OCB, PW, size)
            takes = tiled_fits_int32(g) and got <= kSharedBytes
            line = (f"{label}, {name}: patch {rows} x {cols} words, tiled<{OCB},{PW}> shared "
                    f"bytes = {got} (true {true}); the launcher "
                    f"{'takes the tiled kernel' if takes else 'falls back'}")
            try:
                launch_forward(g, Global("input", rng.standard_normal(g.in_channels)),
                               Global("weight", rng.standard_normal(
                                   g.out_channels * g.in_channels_per_group())), None,
                               Global.poisoned("output", g.out_channels), size)
                line += "; emulated: no error"
            except EmulationError as e:
                line += f"; emulated: {e}"
            lines.append(line)
            if takes and got != true:
                failures.append(line)
    return lines, failures


# ---------------------------------------------------------------------------------------------


def float_choice_of(case):
    """The forward kernel float/half/bfloat16 would get (4-byte staging)."""
    out = tuple(output_size(i, k, s, p, d) for i, k, s, p, d in
                zip(case.hw, case.khw, case.stride, case.padding, case.dilation))
    g = make_geometry((case.batch, case.cin) + case.hw, (case.cout, case.cin // case.groups) +
                      case.khw, (case.batch, case.cout) + out, case.stride, case.padding,
                      case.dilation, case.groups)
    OCB, PW = forward_variant(g)
    sh = tile_shape_for(g, OCB, PW)
    fits = tiled_fits_int32(g) and tiled_shared_bytes(g, sh, OCB, PW, 4) <= kSharedBytes
    return f"tiled<{OCB},{PW}>" if fits else "direct"


# The geometries each planted bug is tried on: the named ones that reach its code.
def plant_cases():
    return named_cases()


def run_planted(verbose=False):
    """Each planted bug must make at least one emulated run fail; one in a kernel with template
    variants (the tiled weight gradient's 8x3 and 1x9) must do so in each variant. Returns the
    bugs that went unnoticed."""
    global PLANT
    missed = []
    rng = np.random.default_rng(1)
    one_channel = lambda c: c.cout // c.groups == 1  # noqa: E731  (the 1x9 variant's cases)
    for name, what in PLANTS.items():
        groups = ([("1x9", one_channel), ("8x3", lambda c: not one_channel(c))]
                  if name.startswith("wg-tiled") else [("", lambda c: True)])
        for label, wanted in groups:
            PLANT = name
            caught = None
            try:
                for case in (c for c in plant_cases() if wanted(c)):
                    for cap, acc in ((GRID_CAP, 8), (3, 4)):
                        _, fails = run_case(case, rng, grid_cap=cap, acc_size=acc,
                                            forces=(None, "tiled-block", "tiled-one", "direct"))
                        if fails:
                            caught = f"{case} grid_cap={cap}: {fails[0]}"
                            break
                    if caught:
                        break
            finally:
                PLANT = None
            tag = f"{name}{' [' + label + ']' if label else ''}"
            print(f"planted bug {tag} ({what}): {'caught: ' + caught if caught else 'NOT CAUGHT'}"
                  if verbose or not caught else f"planted bug {tag}: caught")
            if not caught:
                missed.append(tag)
    return missed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a handful of geometries")
    ap.add_argument("--random", type=int, default=40, help="random geometries (default 40)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--planted", action="store_true",
                    help="only: check that each planted bug (PLANTS) makes the emulation fail")
    args = ap.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    t0 = time.time()
    if args.planted:
        missed = run_planted(args.verbose)
        print(f"planted bugs: {len(PLANTS) - len(missed)} of {len(PLANTS)} caught"
              f"{'' if not missed else '; NOT caught: ' + ', '.join(missed)}; "
              f"{time.time() - t0:.0f} s")
        return 0 if not missed else 1

    count, with_c, failures = check_index_helpers()
    print(f"index helpers: {count} axes against brute force"
          f"{' (and the compiled _C.axis_table)' if with_c else ''}: "
          f"{'pass' if not failures else f'{len(failures)} FAIL'}")
    lines, host_failures = check_shared_bytes_overflow()
    for line in lines:
        print(f"host int64 check ({'FAIL' if line in host_failures else 'ok'}):", line)
    failures += host_failures

    cases = named_cases()
    if args.quick:
        cases = cases[:6]
    else:
        cases += random_cases(args.random, args.seed)
    rng = np.random.default_rng(args.seed)
    runs, double_choice = 0, {}
    for n, case in enumerate(cases):
        # every geometry: the launcher's own choice for double, then every forward kernel
        # forced; and all of it again with a grid of at most 3 blocks, so that every
        # grid-stride loop (and the reuse of shared memory across a block's iterations) turns
        # (the first with double's 8-byte staging, the second with float's 4 bytes: the
        # launcher's choices and the shared layout differ)
        forces = (None, "tiled-block", "tiled-one", "direct")
        caps = (GRID_CAP,) if args.quick else (GRID_CAP, 3)
        for cap in caps:
            notes, fails = run_case(case, rng, grid_cap=cap, forces=forces,
                                    acc_size=8 if cap == GRID_CAP else 4)
            runs += 1
            if cap == GRID_CAP:
                double_choice[notes[0]] = double_choice.get(notes[0], 0) + 1
            tag = (f"[{n:2d}] {case} grid_cap={'2^20' if cap == GRID_CAP else cap}: "
                   f"{', '.join(notes)}")
            if fails:
                failures += [f"{tag}: {f}" for f in fails]
                print("FAIL", tag, *fails, sep="\n    ")
            elif args.verbose:
                print("ok  ", tag)
    float_choice = {}
    for case in cases:
        k = float_choice_of(case)
        float_choice[k] = float_choice.get(k, 0) + 1
    print(f"{len(cases)} geometries, {runs} runs (grid_for's cap"
          f"{'' if args.quick else ', then a cap of 3 blocks'}); each run: forward (the "
          f"launcher's choice, then tiled<8,4>, tiled<1,8> and direct forced where they fit), "
          f"input_grad (its stride phases through the same kernels, the same four ways; "
          f"zero_unreached_kernel where no tap reaches), weight_grad")
    print(f"the launcher's forward kernel, per geometry: double {double_choice}, "
          f"float {float_choice}")
    kernel_failures = len(failures) - len(host_failures)
    print(f"index helpers and kernels: {'all pass' if not kernel_failures else f'{kernel_failures} failures'}; "
          f"host int64 checks: {'all pass' if not host_failures else f'{len(host_failures)} FAIL'}"
          f"; {time.time() - t0:.0f} s")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
