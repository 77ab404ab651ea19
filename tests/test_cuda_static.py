"""bench/cuda_static.py, the static performance model: its parsing of ptxas -v and
cuobjdump --dump-sass (over output saved from nvcc 13.0 for sm_90, tests/data/), the loop finder,
the Hopper occupancy arithmetic, and a smoke run of the whole model where nvcc and cuobjdump
are found."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(ROOT / "bench"))

import cuda_static as cs  # noqa: E402


def test_parse_ptxas():
    res = cs.parse_ptxas((DATA / "ptxas_excerpt.txt").read_text())
    by_name = {cs.demangle([m])[m]: r for m, r in res.items()}
    tiled = by_name["forward_tiled_kernel<float, 8, 2>"]
    assert (tiled.regs, tiled.stack, tiled.spill_stores, tiled.spill_loads, tiled.barriers) == \
        (80, 40, 44, 52, 1)
    assert by_name["sum_slices_kernel<float>"].regs == 24
    assert by_name["forward_direct_kernel<float>"].spill_stores == 0


def test_parse_sass_and_hot_loop():
    code = cs.parse_sass((DATA / "sass_forward_direct_float.txt").read_text())
    (name, instrs), = code.items()
    assert "forward_direct_kernel" in name
    assert instrs[0].addr == 0 and instrs[0].op == "LDC"
    assert all(b.addr > a.addr for a, b in zip(instrs, instrs[1:]))
    hot = cs.hot_loop(instrs)
    # The kw loop as nvcc 13.0 unrolled it: 4 taps, each an FFMA, its two loads (input and
    # weight) and the 64-bit index and bounds arithmetic around them.
    assert (hot.fma, hot.loads, hot.instrs) == (4, 8, 71)
    body = [i for i in instrs if hot.start <= i.addr <= hot.end]
    assert body[-1].base == "BRA" and sum(i.base == "FFMA" for i in body) == 4


SYNTHETIC = """
\t\tFunction : _Z4testPf
        /*0000*/                   MOV R0, RZ ;
        /*0010*/                   LDS R2, [R3] ;
        /*0020*/                   FFMA R4, R2, R5, R4 ;
        /*0030*/               @P0 FFMA R6, R2, R7, R6 ;
        /*0040*/                   IADD3 R3, R3, 0x4, RZ ;
        /*0050*/                   NOP ;
        /*0060*/               @P1 BRA 0x10 ;
        /*0070*/                   FADD R4, R4, R6 ;
        /*0080*/              @!P2 BRA 0x0 ;
        /*0090*/                   EXIT ;
"""


def test_innermost_loop_is_chosen_and_nops_are_not_counted():
    (instrs,) = cs.parse_sass(SYNTHETIC).values()
    assert [i.base for i in instrs][:3] == ["MOV", "LDS", "FFMA"]
    found = {(lp.start, lp.end) for lp in cs.loops(instrs)}
    assert found == {(0x10, 0x60), (0x0, 0x80)}
    hot = cs.hot_loop(instrs)
    assert (hot.start, hot.end, hot.instrs, hot.fma, hot.loads) == (0x10, 0x60, 5, 2, 1)
    assert hot.per_fma == 2.5 and hot.loads_per_fma == 0.5


@pytest.mark.parametrize("regs, threads, smem, blocks, occ, limiter", [
    (80, 256, 0, 3, 0.375, "registers"),     # 80 x 32 = 2560 per warp: 25 warps
    (64, 256, 0, 4, 0.5, "registers"),
    (128, 256, 0, 2, 0.25, "registers"),
    (33, 256, 0, 6, 0.75, "registers"),      # rounded up to 40 per thread: 51 warps
    (24, 256, 0, 8, 1.0, "threads"),
    (16, 32, 0, 32, 0.5, "blocks"),
    (32, 256, 48 * 1024, 4, 0.5, "shared memory"),  # 228 KB / (48 + 1) KB
])
def test_hopper_occupancy(regs, threads, smem, blocks, occ, limiter):
    assert cs.occupancy(regs, threads, smem) == (blocks, occ, limiter)


def test_cudnn_class_yardstick_is_the_stated_formula():
    resnet = next(c for c in cs.bench_cases() if c.key == "resnet")
    ref = cs.cudnn_class(resnet)
    compute = resnet.flops / (0.7 * cs.FP32_FLOPS)
    assert ref["fwd"] == pytest.approx(compute + 2e-6)
    assert ref["fwdbwd"] == pytest.approx(3 * compute + 6e-6)


@pytest.mark.skipif(cs.find_tool("nvcc", "NVCC") is None or
                    cs.find_tool("cuobjdump", "CUOBJDUMP") is None or
                    cs.find_tool("nvdisasm", "NVDISASM") is None,
                    reason="needs nvcc, cuobjdump and nvdisasm")
def test_model_runs_on_the_kernels_as_they_are(tmp_path, capsys):
    md = tmp_path / "static.md"
    assert cs.main(["--md", str(md)]) == 0
    text = md.read_text()
    for kernel in ("forward_tiled_kernel<float", "weight_grad_tiled_kernel<float, 8, 3>",
                   "weight_grad_tiled_kernel<float, 1, 9>", "zero_unreached_kernel<float>"):
        assert kernel in text
    for case in cs.bench_cases():
        assert f"| {case.key} (" in text


def test_strided_input_gradient_is_modelled_phase_by_phase():
    """The model follows launch_input_grad: one forward-form launch per stride phase with taps,
    and one zero_unreached_kernel when some phase has none."""
    em = cs._emulator()
    # a 1x1/2 downsample: one phase of 1x1 taps, three that no tap reaches
    g = em.make_geometry((8, 64, 56, 56), (128, 64, 1, 1), (8, 128, 28, 28), (2, 2), (0, 0),
                         (1, 1), 1)
    assert [launch.kernel for launch in cs.input_grad_launches(g, em)] == \
        ["forward_tiled_kernel<float, 8, 4>", "zero_unreached_kernel<float>"]
    # 3x3/2, padding 1: four phases (2x2, 2x1, 1x2, 1x1 taps), all reached
    g = em.make_geometry((8, 64, 56, 56), (128, 64, 3, 3), (8, 128, 28, 28), (2, 2), (1, 1),
                         (1, 1), 1)
    launches = cs.input_grad_launches(g, em)
    assert [launch.kernel for launch in launches] == ["forward_tiled_kernel<float, 8, 4>"] * 4
    # every phase's FMAs, useful ones: grad_output (8, 128, 28, 28) x 64 channels x its taps
    useful = sum(launch.useful_lanes * 32 * launch.warp_fma for launch in launches)
    assert useful == pytest.approx(8 * 64 * 28 * 28 * 128 * (4 + 2 + 2 + 1))
