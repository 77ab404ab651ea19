"""Every CPU fast-path instantiation this machine runs, in every dtype, against float64
F.conv2d: the native ones (avx512, avx2, neon) and the generic ones (generic16, generic8,
generic4: the same templates over compiler vector extensions with AVX-512's, AVX2's and NEON's
lanes and register counts), so that the 16- and 4-lane planner, tile and tail logic is tested
on a machine without AVX-512 or NEON too.

The geometries reach the fast path's edge cases: right-edge vectors, strides (its phase-split
staging), dilation, negative effective padding in the input gradient (padding larger than the
kernel), channel counts that are not multiples of the 4-channel block, depthwise layers, 1x1
kernels, and narrow images (which the fast path stages folded, with vectors across rows).
"""

import pytest
import torch
import torch.nn.functional as F

import corr2d_ext
from conftest import FAST_CPU_ISAS, NATIVE_CPU_ISA, TOLERANCES, assert_all_close, cpu_isa
from corr2d_ext import _C

# (N, C_in, C_out, H, W, kH, kW, stride, padding, dilation, groups)
GEOMETRIES = [
    (2, 3, 5, 9, 13, 3, 3, 1, 1, 1, 1),
    (2, 4, 6, 11, 10, 3, 2, (2, 1), (1, 2), (1, 2), 2),
    (2, 8, 8, 9, 17, 3, 3, 1, 1, 1, 8),  # depthwise
    (3, 6, 16, 14, 14, 5, 5, 1, 0, 1, 1),  # LeNet conv2
    (2, 1, 6, 28, 28, 5, 5, 1, 2, 1, 1),  # LeNet conv1: blocks of 3 channels
    (4, 2, 7, 17, 30, 1, 1, 3, 2, 1, 1),  # padding larger than the kernel
    (1, 3, 7, 20, 21, 4, 5, (2, 3), (0, 3), (2, 1), 1),
    (4, 4, 4, 16, 16, 3, 3, 2, 0, 2, 2),
    (1, 16, 9, 5, 40, 3, 3, 1, 1, 1, 1),  # 9 channels: two blocks of 4 and one of 1
    (2, 3, 8, 31, 29, 7, 7, 2, 3, 1, 1),  # a 7x7/2 stem
    (4, 24, 20, 7, 7, 1, 1, 1, 0, 1, 1),  # 1x1 on a 7x7 image
    (2, 48, 64, 7, 7, 1, 1, 1, 0, 1, 1),  # ... channel-rich: via NHWC at 16 lanes (dispatch.cpp)
    (2, 96, 64, 14, 14, 1, 1, 1, 0, 1, 1),  # channel-rich on 14x14: forward via NHWC at 8 lanes
    (2, 192, 192, 7, 7, 1, 1, 1, 0, 1, 1),  # ... on 7x7: every op via NHWC at 8 lanes
    (2, 8, 8, 14, 14, 3, 3, 2, 1, 1, 8),  # depthwise at stride 2
    (2, 16, 16, 12, 12, 3, 3, 1, 1, 1, 4),  # grouped, 4 channels a group
    # Rows narrower than most of a vector stage folded (vectors across rows; csrc/cpu/plan.h):
    (2, 8, 12, 14, 14, 3, 3, 2, 1, 1, 1),  # 7x7 output, stride 2: row phases folded
    (2, 6, 6, 11, 13, 3, 3, 1, 2, 2, 3),  # dilated, grouped, 11x13
    (3, 4, 4, 9, 9, 3, 3, 1, 1, 1, 4),  # depthwise 9x9
    (2, 5, 7, 12, 10, 3, 5, (1, 2), (1, 2), 1, 1),  # 10x5 output, column stride 2
    # Stride-2 rows split into column phases by vectors (ukernels.h: split_in_two): a 28x28
    # depthwise layer (14-wide rows, one part-filled vector at 16 lanes), and 70-wide rows with
    # two columns of padding, read in several whole pairs of vectors and a part-filled last one
    (2, 24, 24, 28, 28, 3, 3, 2, 1, 1, 24),
    (2, 4, 6, 5, 70, 3, 3, 2, 2, 1, 1),
    # ... and so do channel-rich layers at stride 1 whose rows end in a part-filled vector (30
    # columns in 16, 8 and 4 lanes): whole images in a block, and row blocks of a tall image
    (2, 16, 20, 6, 30, 3, 3, 1, 1, 1, 1),
    (1, 16, 16, 40, 30, 3, 3, 1, 1, 1, 1),
    # 1x1 at stride 1 without padding reads its src in place (float32/float64; plan.h: Slab),
    # the forward with each image's last vector moved back to end at its last pixel:
    (3, 16, 24, 14, 14, 1, 1, 1, 0, 1, 1),  # 196 pixels: whole vectors and an overlapping one
    (8, 32, 16, 3, 3, 1, 1, 1, 0, 1, 1),  # 9 pixels, fewer than 16 lanes: staged instead
    (2, 16, 24, 10, 10, 1, 1, 1, 0, 1, 4),  # grouped
    (1, 8, 12, 61, 5, 1, 1, 1, 0, 1, 1),  # row blocks of one image, a short last one
    (2, 16, 24, 14, 14, 1, 1, 2, 0, 1, 1),  # a 1x1/2 downsample: staged, phases without taps
    # A strided 1x1 without padding: the weight gradient of its subsample at stride 1 (NCHW in:
    # csrc/cpu/dispatch.cpp), rows at stride 3 and columns at 2, the last pixel read short of
    # the image's end
    (2, 8, 12, 17, 19, 1, 1, (3, 2), 0, 1, 1),
    # A channels-last weight gradient of few units cuts the batch's rows into parts, summed in
    # part order (ukernels.h: weight_grad_channels_last; 4096 dst pixels a part): three parts
    # of 122 rows, a 1x1 whose 16 dst channels make one vector at 16 lanes; two depthwise
    (2, 8, 16, 61, 101, 1, 1, 1, 0, 1, 1),
    (2, 16, 16, 50, 90, 3, 3, 1, 1, 1, 16),
    # Contiguous depthwise layers at stride 1 or 2 run plane by plane (plan.h: SrcPlanes and
    # InputGradPlanes), the input gradient at stride 2 as grad_input rows of two column phases
    # interleaved: odd widths whose phases end part-filled at 4, 8 and 16 lanes (33 columns:
    # two vectors of phase columns at 16 lanes, five at 4), 5x5 and 7x7 kernels (the weight
    # gradient's last block of taps part-filled), an even kernel with unequal padding, a 1x1
    # (half the columns and rows reached by no tap), padding beyond the kernel (grad_output
    # rows and columns that no pixel reads), a stride-1 5x5 without padding on 40-wide rows.
    (2, 6, 6, 9, 33, 3, 3, 2, 1, 1, 6),
    (1, 4, 4, 15, 17, 5, 5, 2, 2, 1, 4),
    (2, 3, 3, 13, 12, 7, 7, 2, 3, 1, 3),
    (2, 8, 8, 20, 21, 4, 2, 2, (1, 0), 1, 8),
    (4, 16, 16, 20, 19, 1, 1, 2, 0, 1, 16),
    (2, 8, 8, 8, 10, 3, 3, 2, 4, 1, 8),
    (2, 6, 6, 11, 40, 5, 5, 1, 0, 1, 6),
    # ... but not dilated ones, nor planes whose staged copy would exceed 256 KiB: those take
    # the general kernels' depthwise runs
    (2, 8, 8, 12, 14, 3, 3, 1, 2, 2, 8),
    (1, 2, 2, 300, 300, 3, 3, 1, 1, 1, 2),
    # Few blocks of many channels: staged once and shared by the pieces of each block, and the
    # input gradient's 7x7 phases at stride 2 folded, stored lane by lane (at 16 lanes, 48 and
    # more channels on 7x7 maps route through the NHWC kernels, csrc/cpu/dispatch.cpp; 40 stay):
    (2, 64, 48, 7, 7, 3, 3, 1, 1, 1, 1),
    (2, 64, 40, 7, 7, 3, 3, 1, 1, 1, 1),
    (2, 32, 40, 14, 14, 3, 3, 2, 1, 1, 1),
    # Channels last vectorizes along the dst channels (plan.h: ChannelsLastPlan): a group's last
    # vector part-filled (13 and 20 channels in 16 lanes, 20 in 8), src channels that leave
    # narrower weight-gradient tiles (7 = 6 + 1, 4 + 2 + 1), a 7x7/2 stem's 3 channels:
    (2, 20, 20, 9, 9, 3, 3, 1, 1, 1, 20),  # depthwise, the last vector ends the tensor
    # depthwise tiles run every channel block (8 lanes: 3 + 2 vectors, 3 + 3 + 3; 16 lanes: 3
    # part-filled, 4 + 1) at each tile's addresses, tiles across the images' seams
    (2, 40, 40, 9, 11, 3, 3, 1, 1, 1, 40),
    (3, 72, 72, 6, 7, 3, 3, 2, 1, 1, 72),
    # ... and the weight gradient's tiles take a kernel row's taps at once, in runs the
    # registers hold (a 7x7 row: 5 + 2 taps at 4 vectors of 16 lanes, 3 + 3 + 1 at 3 of 8)
    (2, 64, 64, 9, 10, 7, 7, 1, 3, 1, 64),
    # ... and so do stems with few weights (8 lanes: 3 + 2 vectors, 3 + 3 + 3; 16 lanes: 3
    # part-filled, 4 + 1)
    (2, 3, 40, 12, 13, 3, 3, 2, 1, 1, 1),
    (2, 3, 72, 12, 13, 3, 3, 2, 1, 1, 1),
    (2, 5, 13, 10, 9, 3, 3, 2, 1, 1, 1),
    (2, 7, 24, 8, 8, 3, 3, 1, 1, 1, 1),
    (2, 3, 16, 23, 21, 7, 7, 2, 3, 1, 1),
    # ... and a channel-rich one, whose src channels run in passes of float partial sums:
    (1, 256, 24, 5, 5, 3, 3, 1, 1, 1, 1),
    # Channels-last weights packed by transposes of lanes x lanes (ukernels.h:
    # pack_runs_transposed): 20 x 9 = 180 elements a dst channel (whole vectors and a part-filled
    # last one at 16, 8 and 4 lanes) and 36 dst channels (a part-filled last vector at 16 and 8)
    (2, 20, 36, 6, 6, 3, 3, 1, 1, 1, 1),
    # Contiguous calls routed through the NHWC kernels on copies on wide images (32-wide rows
    # fold in no instantiation): a 3x3 weight gradient, and a 3x3/2 input gradient
    (2, 16, 16, 10, 32, 3, 3, 1, 1, 1, 1),
    (2, 16, 16, 20, 64, 3, 3, 2, 1, 1, 1),
    # Maps of a few pixels (a CIFAR-sized ResNet's last stages): the taps that read only
    # padding are cut off (forward_form.h: drop_padding_taps), and contiguous calls on maps of
    # at most half a vector go through the NHWC kernels, whose tiles take pixels of several
    # images: 1x1 maps (only the centre tap kept), 2x2 maps, a 3x3/2 layer onto 2x2, and a
    # dilated 5x5 that loses taps at both ends of both axes.
    (16, 32, 40, 1, 1, 3, 3, 1, 1, 1, 1),
    (8, 24, 40, 2, 2, 3, 3, 1, 1, 1, 1),
    (8, 24, 40, 4, 4, 3, 3, 2, 1, 1, 1),
    (4, 8, 12, 2, 3, 5, 5, 1, (2, 4), (1, 2), 1),
]
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def macs(geometry):
    n, cin, cout, h, w_, kh, kw, stride, padding, dilation, groups = geometry
    y = F.conv2d(torch.empty(n, cin, h, w_), torch.empty(cout, cin // groups, kh, kw), None,
                 stride, padding, dilation, groups)
    return y.numel() * (cin // groups) * kh * kw


# Both layouts: channels_last arguments take the channels-last kernels wherever the geometry
# suits them (csrc/cpu/dispatch.cpp), and the NCHW ones on copies elsewhere.
FORMATS = [torch.contiguous_format, torch.channels_last]
# ... and the weight's: a channels_last call hands the channels-last kernels a channels_last
# weight as it is (OHWI), which they pack by its strides (ukernels.h: pack_channels_last_block),
# and the NCHW kernels an OIHW copy.
LAYOUTS = [(torch.contiguous_format, torch.contiguous_format),
           (torch.channels_last, torch.contiguous_format),
           (torch.channels_last, torch.channels_last)]
layout_id = lambda layout: f"{layout[0]}-weight_{layout[1]}".replace("torch.", "")


def make(geometry, dtype):
    n, cin, cout, h, w_, kh, kw, stride, padding, dilation, groups = geometry
    gen = torch.Generator().manual_seed(0)
    # Values the dtype holds exactly, so that the float64 reference sees the same numbers.
    rand = lambda *s: torch.randn(s, generator=gen, dtype=torch.float64).to(dtype).double()
    x, w, b = rand(n, cin, h, w_), rand(cout, cin // groups, kh, kw), rand(cout)
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    gy = rand(*F.conv2d(x, w, b, **options).shape)
    return x, w, b, gy, options


def ops(x, w, b, gy, options):
    """The three ops called directly (so that each is certainly the one under test)."""
    pair = lambda v: list(v) if isinstance(v, tuple) else [v, v]
    s, p, d, g = (pair(options["stride"]), pair(options["padding"]), pair(options["dilation"]),
                  options["groups"])
    y = corr2d_ext.conv2d(x, w, b, **options)
    gx = torch.ops.corr2d_ext.corr2d_input_grad(gy, w, list(x.shape[2:]), s, p, d, g)
    gw = torch.ops.corr2d_ext.corr2d_weight_grad(x, gy, list(w.shape[2:]), s, p, d, g)
    return y, gx, gw


def reference(x, w, b, gy, options):
    s, p, d, g = options["stride"], options["padding"], options["dilation"], options["groups"]
    return (F.conv2d(x, w, b, **options), torch.nn.grad.conv2d_input(x.shape, w, gy, s, p, d, g),
            torch.nn.grad.conv2d_weight(x, w.shape, gy, s, p, d, g))


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_geometries_are_large_enough_for_the_fast_path(geometry):
    # Below 4096 multiply-adds every dtype takes the portable kernels (kMinFastMacs in
    # csrc/cpu/dispatch.cpp).
    assert macs(geometry) >= 4096


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS, ids=layout_id)
@pytest.mark.parametrize("isa", FAST_CPU_ISAS)
def test_instantiation_matches_float64_f_conv2d(isa, layout, dtype, geometry):
    x, w, b, gy, options = make(geometry, dtype)
    expected = reference(x, w, b, gy, options)
    laid = lambda t, memory_format=layout[0]: t.to(dtype).contiguous(memory_format=memory_format)
    with cpu_isa(isa):
        ours = ops(laid(x), laid(w, layout[1]), b.to(dtype), laid(gy), options)
    assert all(t.dtype == dtype for t in ours)  # (strides: test_memory_format.py)
    assert_all_close([t.double() for t in ours], expected, ("output", "grad_input", "grad_weight"),
                     **TOLERANCES[dtype])


# A generic instantiation with a native one's lanes and registers has its tiles, its blocking
# and its summation order, and every FMA rounds once in both: the results must be identical,
# which shows that the generic instantiations test what the native ones run.
TWINS = [(native, generic) for native, generic in
         [("avx512", "generic16"), ("avx2", "generic8"), ("neon", "generic4")]
         if native in FAST_CPU_ISAS]


@pytest.mark.skipif(not TWINS, reason="this CPU runs no native fast-path instantiation")
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS, ids=layout_id)
@pytest.mark.parametrize("twin", TWINS, ids="-".join)
def test_generic_instantiation_is_bitwise_its_native_twin(twin, layout, dtype, geometry):
    x, w, b, gy, options = (t.to(dtype) if isinstance(t, torch.Tensor) else t
                            for t in make(geometry, dtype))
    x, gy = (t.contiguous(memory_format=layout[0]) for t in (x, gy))
    w = w.contiguous(memory_format=layout[1])
    results = []
    for isa in twin:
        with cpu_isa(isa):
            results.append(ops(x, w, b, gy, options))
    for name, a, e in zip(("output", "grad_input", "grad_weight"), *results):
        assert torch.equal(a, e), f"{name}: {twin[1]} differs from {twin[0]}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("isa", FAST_CPU_ISAS)
def test_results_are_rounded_once_as_c10_rounds(isa, dtype):
    # A 1x1 kernel of weight 1: each output is x + b, added exactly in float (one FMA, one
    # rounding) and then rounded to the dtype once. Whole vectors and right-edge tails, ties,
    # overflow to inf, NaN: bit for bit as torch's own float -> dtype conversion.
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(1, 1, 70, 61, generator=gen) * 300).to(dtype)
    x[0, 0, 0, :5] = torch.tensor([float("nan"), float("inf"), -float("inf"), 65504, -65504])
    b = (torch.randn(1, generator=gen) * 7).to(dtype)
    w = torch.ones(1, 1, 1, 1, dtype=dtype)
    with cpu_isa(isa):
        y = corr2d_ext.conv2d(x, w, b)
    expected = (x.float() + b.float()).to(dtype)
    same = (y.view(torch.int16) == expected.view(torch.int16)) | (y.isnan() & expected.isnan())
    assert same.all(), f"{(~same).sum()} of {y.numel()} differ"


@pytest.mark.parametrize("isa", FAST_CPU_ISAS)
def test_weight_grad_in_place_does_not_read_past_an_image(isa):
    # A 1x1 weight gradient on 7x7 reads input and grad_output in place: each image's last
    # vector holds one pixel, and its other lanes would read the next channel's, here inf.
    x = torch.randn(8, 2, 7, 7)
    x[:, 1, 0, 0] = float("inf")
    gy = torch.randn(8, 8, 7, 7)
    gy[:, 1, 0, 0] = float("inf")
    with cpu_isa(isa):
        grad_w = torch.ops.corr2d_ext.corr2d_weight_grad(x, gy, [1, 1], [1, 1], [0, 0], [1, 1], 1)
    expected = torch.nn.grad.conv2d_weight(x.double(), (8, 2, 1, 1), gy.double())
    finite = torch.isfinite(expected)
    assert finite[0, 0] and finite[2:, 0].all()
    assert torch.equal(torch.isfinite(grad_w), finite)
    torch.testing.assert_close(grad_w[finite].double(), expected[finite], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("isa", FAST_CPU_ISAS)
def test_a_non_finite_weight_sends_the_input_gradient_to_the_portable_kernels(isa, dtype):
    # The fast path would multiply the inf by padding zeros (NaN where F.conv2d has none): the
    # dispatch scans the weight's bits for inf and NaN in every dtype.
    gen = torch.Generator().manual_seed(0)
    gy = torch.randn(2, 8, 12, 12, generator=gen).to(dtype)
    w = torch.randn(8, 6, 3, 3, generator=gen).to(dtype)
    w[3, 2, 0, 0] = float("inf")  # a corner tap: it meets the padding
    with cpu_isa(isa):
        gx = torch.ops.corr2d_ext.corr2d_input_grad(gy, w, [12, 12], [1, 1], [1, 1], [1, 1], 1)
    expected = torch.nn.grad.conv2d_input((2, 6, 12, 12), w.double(), gy.double(), 1, 1)
    assert torch.equal(gx.isnan(), expected.isnan()) and not gx.isnan().all()
    assert torch.equal(gx.isinf(), expected.isinf())


@pytest.mark.parametrize("memory_format", FORMATS, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("isa", FAST_CPU_ISAS)
def test_an_inf_weight_on_a_tap_that_reads_only_padding_still_makes_nan(isa, dtype,
                                                                        memory_format):
    # On 1x1 maps a 3x3 kernel with padding 1 reads the input through its centre tap only, and
    # the fast path drops the other eight; F.conv2d's definition multiplies their weights by
    # the padding's zeros, so an inf there makes its output channel NaN (float64 F.conv2d
    # does; oneDNN's float32 skips the padding): such a call takes the portable kernels.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 32, 1, 1, generator=gen).to(dtype).contiguous(memory_format=memory_format)
    w = torch.randn(40, 32, 3, 3, generator=gen).to(dtype)
    w[2, 3, 0, 0] = float("inf")
    with cpu_isa(isa):
        y = corr2d_ext.conv2d(x, w, None, 1, 1)
    expected = F.conv2d(x.double(), w.double(), None, 1, 1)
    assert expected[:, 2].isnan().all()
    assert torch.equal(y.isnan(), expected.isnan())
    finite = [c for c in range(40) if c != 2]
    assert_all_close([y[:, finite].double()], [expected[:, finite]], ("output",),
                     **TOLERANCES[dtype])
    # And with a finite weight the same call drops the taps and still matches.
    w[2, 3, 0, 0] = 1.0
    with cpu_isa(isa):
        y = corr2d_ext.conv2d(x, w, None, 1, 1)
    assert_all_close([y.double()], [F.conv2d(x.double(), w.double(), None, 1, 1)], ("output",),
                     **TOLERANCES[dtype])


@pytest.mark.parametrize("isa", FAST_CPU_ISAS)
def test_weight_grad_does_not_turn_inf_past_a_row_end_into_nan(isa):
    # Column 10 is read by tap 2 of the last output column (8), and only by the lanes past the
    # row's end for taps 0 and 1: their gradients must stay finite, as F.conv2d's do.
    x = torch.randn(1, 1, 5 * 100, 11)
    x[0, 0, 2, 10] = float("inf")
    gy = torch.randn(1, 1, 5 * 100, 9)
    with cpu_isa(isa):
        grad_w = torch.ops.corr2d_ext.corr2d_weight_grad(x, gy, [1, 3], [1, 1], [0, 0], [1, 1], 1)
    assert torch.isfinite(grad_w[0, 0, 0, :2]).all(), grad_w
    assert torch.isinf(grad_w[0, 0, 0, 2]), grad_w


def test_the_hook_lists_selects_and_restores_kernel_sets():
    names = _C.cpu_isas()
    assert names[-1] == "portable" and {"generic16", "generic8", "generic4"} <= set(names)
    assert NATIVE_CPU_ISA in names
    for name in names:
        with cpu_isa(name):
            assert _C.cpu_isa() == name
    assert _C.cpu_isa() == NATIVE_CPU_ISA
    with cpu_isa("auto"):
        assert _C.cpu_isa() == NATIVE_CPU_ISA


def test_the_hook_names_the_choices_when_given_an_unknown_one():
    with pytest.raises(RuntimeError, match=r"unknown CPU kernel set 'sse9'; expected one of .*portable"):
        _C.set_cpu_isa("sse9")
    assert _C.cpu_isa() == NATIVE_CPU_ISA


SCRATCH_CHILD = r"""
import resource, sys, torch, corr2d_ext
torch.manual_seed(0)
cl = torch.channels_last
x = torch.randn(1, 2048, 7, 7).contiguous(memory_format=cl)
w = torch.randn(2048, 2048, 3, 3)  # 151 MB: past any bound on packed weights
gy = torch.randn(1, 2048, 7, 7).contiguous(memory_format=cl)
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
corr2d_ext.conv2d(x[:, :, :1, :1], w[:, :, :1, :1])  # load the kernels, start the threads
before = peak()
y = corr2d_ext.conv2d(x, w, padding=1)
gx = torch.ops.corr2d_ext.corr2d_input_grad(gy, w, [7, 7], [1, 1], [1, 1], [1, 1], 1)
print((peak() - before) / 2**20, y.is_contiguous(memory_format=cl), gx.is_contiguous(memory_format=cl))
"""


def test_a_huge_weight_in_channels_last_keeps_the_scratch_bound():
    # The channels-last forward packs its weights once per call: a 151 MB weight would double
    # itself, so past 16 MiB (as the NCHW kernels bound theirs) the NCHW kernels take the call,
    # packing per task. Measured in a fresh process, whose peak resident size nothing else moved.
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", SCRATCH_CHILD], capture_output=True, text=True,
                         check=True, timeout=300).stdout.split()
    grown, y_cl, gx_cl = float(out[0]), out[1] == "True", out[2] == "True"
    assert y_cl and gx_cl
    assert grown <= 64, f"the two calls raised peak RSS by {grown:.0f} MiB"
