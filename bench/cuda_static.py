"""A static performance model of the CUDA kernels, for a machine without a GPU.

    python bench/cuda_static.py                       # compile, disassemble, print the report
    python bench/cuda_static.py --md bench/results/cuda-static-after.md
    python bench/cuda_static.py --ptxas saved.txt --sass saved.sass   # from saved tool output

What it does, and why: no GPU has run these kernels yet, so what the compiler says is the best
evidence of how fast they will be. It compiles csrc/cuda/corr2d_kernel.cu for sm_90 (the lent
H200) with `nvcc -Xptxas -v`, disassembles the object with `cuobjdump --dump-sass`, and reports
for each kernel (each template instantiation):

* registers, spill bytes, stack frame and static shared memory (ptxas);
* theoretical occupancy at its block size, from Hopper's per-SM limits (64K 32-bit registers,
  2048 threads, 32 blocks, 228 KB shared memory with 1 KB reserved per block; registers are
  allocated per warp in units of 256, i.e. per thread rounded up to a multiple of 8);
* its hot loop: of the innermost loops (a backward branch whose range holds no other), the one
  with the most FMA instructions (FFMA, DFMA, HFMA2); the instructions in it per FMA, and how
  many of them are shared/global loads.

Then, for every bench/bench_gpu.py case, a predicted GPU time per kernel launch from those
figures and a roofline, and the ratio to a stated "cuDNN-class" time. The roofline (sources
in ROOFLINE below; every figure is a datasheet number or an assumption, none is measured):

* issue: 4 warp instructions per SM per clock (one per scheduler; Hopper has no dual issue),
  132 SMs, 1.98 GHz boost: an FFMA-only loop reaches the datasheet's 67 TFLOP/s fp32;
* shared/global load pipe: 1 warp-wide 32-bit load instruction per SM per clock (128 B/clk);
* HBM 4.8 TB/s (H200 datasheet) for the bytes every tensor must move at least once;
* L2 ~5.5 TB/s for the bytes the kernels stage from global memory (re-reads included): an
  assumption (the order of public H100 microbenchmarks), not a datasheet figure;
* per launch, 2 us of fixed cost (launch latency and the tail of the last wave).

A kernel's time is max(issue, load pipe, L2) x its load imbalance (the busiest SM holds
ceil(blocks / 132) blocks; a grid of 100 blocks uses 100/132 of the chip) + 2 us; an op's time
is at least its minimum bytes over HBM. Latency (dependent FMA chains, too few warps to hide a load) is not
modelled: the prediction is a floor for the code as compiled, good for comparing versions and
for finding the term that dominates, not a promise.

The cuDNN-class time a ratio is taken against: max(useful FLOPs / (70% of 67 TFLOP/s), minimum
bytes / (80% of 4.8 TB/s)) + 2 us per kernel (one kernel forward, three for forward + backward).
That is what a well-tuned fp32 (TF32 off) implicit-GEMM or depthwise kernel typically reaches
on large layers; it is a stated yardstick, not a cuDNN measurement.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KERNEL_CU = REPO / "csrc" / "cuda" / "corr2d_kernel.cu"

# ---------------------------------------------------------------------------------------------
# Hopper (sm_90) limits and the H200's roofline.

SM90 = dict(regs_per_sm=65536, threads_per_sm=2048, blocks_per_sm=32, smem_per_sm=228 * 1024,
            smem_reserved_per_block=1024, reg_unit=256, warp=32)

ROOFLINE = dict(
    sms=132,             # H200 SXM (the H100 SXM's 132 SMs): datasheet
    clock_hz=1.98e9,     # boost clock of the H100/H200 SXM: datasheet
    issue_per_sm=4,      # warp instructions per SM per clock: 4 schedulers, single issue
    lsu_per_sm=1,        # warp-wide 32-bit shared/global load instructions per SM per clock
    hbm_bps=4.8e12,      # H200 HBM3e: datasheet (device README's H200.md)
    l2_bps=5.5e12,       # assumption: the order of public H100 L2 microbenchmarks
    launch_s=2e-6,       # fixed cost per launch: assumption
)
FP32_FLOPS = 2 * 128 * ROOFLINE["sms"] * ROOFLINE["clock_hz"]  # 66.9e12: datasheet's ~67
CUDNN_CLASS = dict(compute_eff=0.7, bw_eff=0.8)


# ---------------------------------------------------------------------------------------------
# Parsing ptxas -v and cuobjdump --dump-sass.

@dataclass
class Resources:
    regs: int = 0
    stack: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    smem: int = 0        # static shared memory, bytes
    barriers: int = 0


def parse_ptxas(text: str) -> dict[str, Resources]:
    """ptxas -v output -> {mangled kernel name: Resources} (sm_90 entries only)."""
    out: dict[str, Resources] = {}
    current = None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '([^']+)' for 'sm_(\d+)", line)
        if m:
            current = m.group(1)
            out[current] = Resources()
            continue
        if current is None:
            continue
        r = out[current]
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads",
                      line)
        if m:
            r.stack, r.spill_stores, r.spill_loads = map(int, m.groups())
        m = re.search(r"Used (\d+) registers", line)
        if m:
            r.regs = int(m.group(1))
            b = re.search(r"used (\d+) barriers", line)
            r.barriers = int(b.group(1)) if b else 0
            s = re.search(r"(\d+) bytes smem", line)
            r.smem = int(s.group(1)) if s else 0
    return out


@dataclass
class Instr:
    addr: int
    op: str          # opcode with its modifiers, e.g. "LDS.U.128"
    operands: str

    @property
    def base(self) -> str:
        return self.op.split(".")[0]


_INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")


def parse_sass(text: str) -> dict[str, list[Instr]]:
    """cuobjdump --dump-sass output -> {mangled kernel name: instructions}."""
    out: dict[str, list[Instr]] = {}
    current = None
    for line in text.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            current = m.group(1)
            out[current] = []
            continue
        if current is None:
            continue
        m = _INSTR.search(line)
        if m:
            out[current].append(Instr(int(m.group(1), 16), m.group(2), m.group(3).strip()))
    return out


FMA_OPS = {"FFMA", "DFMA", "HFMA2"}
LOAD_OPS = {"LDS", "LDG", "LD", "LDL", "LDSM"}


@dataclass
class Loop:
    start: int
    end: int         # address of the backward branch
    instrs: int = 0  # NOPs excluded
    fma: int = 0
    loads: int = 0   # shared, global and local loads

    @property
    def per_fma(self) -> float:
        return self.instrs / self.fma if self.fma else math.inf

    @property
    def loads_per_fma(self) -> float:
        return self.loads / self.fma if self.fma else math.inf


def loops(instrs: list[Instr]) -> list[Loop]:
    """Every backward branch's range [target, branch], with its instruction counts."""
    found = []
    for ins in instrs:
        if ins.base != "BRA":
            continue
        m = re.search(r"0x([0-9a-f]+)", ins.operands)
        if not m:
            continue
        target = int(m.group(1), 16)
        if target <= ins.addr:
            found.append(Loop(target, ins.addr))
    for lp in found:
        body = [i for i in instrs if lp.start <= i.addr <= lp.end and i.base != "NOP"]
        lp.instrs = len(body)
        lp.fma = sum(i.base in FMA_OPS for i in body)
        lp.loads = sum(i.base in LOAD_OPS for i in body)
    return found


def hot_loop(instrs: list[Instr]) -> Loop | None:
    """The innermost loop (no other loop's range inside its own) with the most FMAs; ties go
    to the one with fewer instructions per FMA. None when no loop has an FMA."""
    inner = innermost(loops(instrs))
    with_fma = [lp for lp in inner if lp.fma]
    if not with_fma:
        return None
    return max(with_fma, key=lambda lp: (lp.fma, -lp.per_fma))


def innermost(all_loops: list[Loop]) -> list[Loop]:
    return [a for a in all_loops
            if not any(b is not a and a.start <= b.start and b.end <= a.end and
                       (b.start, b.end) != (a.start, a.end) for b in all_loops)]


def staging_loop(instrs: list[Instr]) -> Loop | None:
    """The longest innermost loop that stores to shared memory and has no FMA (the tiled
    kernels' copy of a patch or a tile into shared memory): its body is counted once per 32
    staged words."""
    cands = []
    for lp in innermost(loops(instrs)):
        body = [i for i in instrs if lp.start <= i.addr <= lp.end]
        if any(i.base == "STS" for i in body) and not any(i.base in FMA_OPS for i in body):
            cands.append(lp)
    return max(cands, key=lambda lp: lp.instrs) if cands else None


def demangle(names: list[str]) -> dict[str, str]:
    """Mangled -> short readable name, e.g. forward_tiled_kernel<float, 8, 2>."""
    full = dict(zip(names, names))
    cxxfilt = shutil.which("c++filt")
    if cxxfilt and names:
        r = subprocess.run([cxxfilt], input="\n".join(names), capture_output=True, text=True)
        if r.returncode == 0:
            full = dict(zip(names, r.stdout.splitlines()))
    short = {}
    for m, d in full.items():
        d = re.sub(r"\(corr2d_ext::Geometry.*$", "", d)  # drop the parameter list
        d = re.sub(r"^void ", "", d)
        d = re.sub(r"^.*::", "", d.split("<")[0]) + ("<" + d.split("<", 1)[1] if "<" in d else "")
        d = d.replace("__nv_bfloat16", "bf16").replace("__half", "half")
        d = re.sub(r"\(long, long,.*$", "", d)
        short[m] = d
    return short


# ---------------------------------------------------------------------------------------------
# Occupancy.

def occupancy(regs: int, threads: int, smem: int) -> tuple[int, float, str]:
    """(blocks per SM, fraction of 2048 threads resident, the limiting resource)."""
    h = SM90
    warps = -(-threads // h["warp"])
    regs_per_warp = -(-(max(regs, 1) * h["warp"]) // h["reg_unit"]) * h["reg_unit"]
    by = {
        "registers": (h["regs_per_sm"] // regs_per_warp) // warps,
        "threads": h["threads_per_sm"] // (warps * h["warp"]),
        "blocks": h["blocks_per_sm"],
        "shared memory": h["smem_per_sm"] // (smem + h["smem_reserved_per_block"]),
    }
    limiter = min(by, key=by.get)
    blocks = by[limiter]
    return blocks, blocks * warps * h["warp"] / h["threads_per_sm"], limiter


# ---------------------------------------------------------------------------------------------
# Compiling and disassembling.

def find_tool(name: str, env: str) -> str | None:
    """$env, then the toolkit, PATH, a pip --target install in /tmp/cuobjdump, and the copy
    Triton's wheel carries."""
    cands = [os.environ.get(env)]
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home:
            cands.append(f"{home}/bin/{name}")
    cands.append(shutil.which(name))
    cands.append(f"/tmp/cuobjdump/nvidia/cu13/bin/{name}")
    try:
        import triton  # noqa: F401  (only its location)
        cands.append(str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name))
    except Exception:  # noqa: BLE001 - optional
        pass
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def compile_and_dump(cu: Path, arch: str, extra: list[str]) -> tuple[str, str, str]:
    """(ptxas -v text, SASS text, a line saying which tools ran)."""
    nvcc = find_tool("nvcc", "NVCC")
    if nvcc is None:
        sys.exit("cuda_static: nvcc not found (set CUDA_HOME or NVCC)")
    from torch.utils.cpp_extension import include_paths  # the .cu includes c10's CUDA header

    with tempfile.TemporaryDirectory() as tmp:
        obj = Path(tmp) / "k.cubin"
        cmd = [nvcc, f"-arch={arch}", "-O3", "-std=c++17", "-cubin", "-Xptxas", "-v",
               *(f"-I{p}" for p in include_paths()), *extra, str(cu), "-o", str(obj)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"cuda_static: nvcc failed:\n{r.stderr[-4000:]}")
        ptxas = r.stderr
        cuobjdump = find_tool("cuobjdump", "CUOBJDUMP")
        nvdisasm = find_tool("nvdisasm", "NVDISASM")
        if cuobjdump is None or nvdisasm is None:
            sys.exit("cuda_static: cuobjdump and nvdisasm are needed for the SASS; e.g.\n"
                     "  pip install --target /tmp/cuobjdump nvidia-cuda-cuobjdump "
                     "nvidia-cuda-nvdisasm\n(or set CUOBJDUMP / NVDISASM)")
        env = {**os.environ, "PATH": f"{Path(nvdisasm).parent}:{os.environ.get('PATH', '')}"}
        d = subprocess.run([cuobjdump, "--dump-sass", str(obj)], capture_output=True, text=True,
                           env=env)
        if d.returncode != 0:
            sys.exit(f"cuda_static: cuobjdump failed:\n{d.stderr[-2000:]}")
        ver = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
        ver = ver.strip().splitlines()[-1] if ver.strip() else "?"
        return ptxas, d.stdout, f"nvcc {nvcc} ({ver}); cuobjdump {cuobjdump}; nvdisasm {nvdisasm}"


# ---------------------------------------------------------------------------------------------
# Per kernel: resources, occupancy, hot loop.

@dataclass
class KernelStats:
    mangled: str
    name: str
    res: Resources
    threads: int
    hot: Loop | None
    staging: Loop | None

    def occupancy(self, dynamic_smem: int = 0, threads: int | None = None
                  ) -> tuple[int, float, str]:
        return occupancy(self.res.regs, threads or self.threads, self.res.smem + dynamic_smem)


def block_threads(name: str) -> int:
    # kThreads, and the tiled kernels' largest block (each launch's own is in the launch table)
    return 256


def analyse(ptxas: str, sass: str) -> dict[str, KernelStats]:
    """{short name: KernelStats} for every kernel in both outputs."""
    res = parse_ptxas(ptxas)
    code = parse_sass(sass)
    names = demangle(sorted(set(res) | set(code)))
    out = {}
    for mangled, short in names.items():
        instrs = code.get(mangled, [])
        # zero_unreached_kernel and sum_slices_kernel do no products: any FFMAs in their SASS are
        # the 64-bit division's reciprocal steps, not a hot loop.
        no_fma = short.startswith(("zero_unreached_kernel", "sum_slices_kernel"))
        out[short] = KernelStats(mangled, short, res.get(mangled, Resources()),
                                 block_threads(short), None if no_fma else hot_loop(instrs),
                                 staging_loop(instrs))
    return out


# ---------------------------------------------------------------------------------------------
# The launches of each bench case, from the emulator's transliteration of the launchers (so the
# model follows the launchers as the emulator does), and their predicted times.

def _emulator():
    sys.path.insert(0, str(REPO / "tools"))
    import emulate_cuda  # noqa: E402

    return emulate_cuda


@dataclass
class Launch:
    kernel: str          # short name of the float instantiation
    blocks: int
    dynamic_smem: int
    warp_fma: float      # FMA warp instructions the hot loop issues (predicated-off ones too)
    staged_words: float  # words copied into shared memory, summed over blocks (staging loop)
    l2_bytes: float      # bytes the loads fetch from L2 (an estimate; see each model)
    useful_lanes: float  # useful FMAs / (32 x warp_fma)
    threads: int = 256   # blockDim


def case_geometry(case, em):
    ho, wo = case.out_hw
    return em.make_geometry((case.n, case.cin, case.h, case.w),
                            (case.cout, case.cin // case.groups, case.kh, case.kw),
                            (case.n, case.cout, ho, wo), (1, 1), (case.padding, case.padding),
                            (1, 1), case.groups)


def useful_fma(g) -> int:
    return g.batch * g.out_channels * g.output_plane() * g.in_channels_per_group() * \
        g.kernel_area()


def computing_warps(g, shape, OCB) -> int:
    """Warps of the tiled kernel's grid with at least one thread that computes (tid < threads,
    its row inside the output, its channel group inside the block's channels): the others skip
    the taps, so only these issue the hot loop."""
    import numpy as np

    tid = np.arange(-(-shape.threads // 32) * 32)
    os_ = tid // (shape.tw * shape.th)
    ty = (tid // shape.tw) % shape.th
    cout_g, oct_ = g.out_channels_per_group(), shape.ocs * OCB
    total = 0
    for ob in range(shape.oc_blocks):
        oc_count = min(oct_, cout_g - ob * oct_)
        for th_i in range(shape.tiles_h):
            comp = (tid < shape.threads) & (th_i * shape.th + ty < g.rows.output) & \
                (os_ * OCB < oc_count)
            total += int(comp.reshape(-1, 32).any(axis=1).sum())
    return total * g.batch * g.groups * shape.tiles_w


def forward_launches(g, em, acc_size=4, wl=None) -> list[Launch]:
    """The kernel correlate() picks for float on a forward-form geometry (the emulator's
    transliteration of the launcher decides: variant, tile shape, shared-memory and 32-bit
    fit), and its work. wl: the weight layout (the forward's unless given)."""
    wl = wl if wl is not None else em.forward_weight_layout(g)
    OCB, PW = em.forward_variant(g)
    shape = em.tile_shape_for(g, OCB, PW)
    smem = em.tiled_shared_bytes(g, shape, OCB, PW, acc_size)
    if (not em.tiled_fits_int32(g) or smem > em.kSharedBytes or
            not em.block_weights_fit_int32(g, shape, OCB, wl)):
        total = g.batch * g.out_channels * g.output_plane()
        warps = -(-total // 32)
        return [Launch("forward_direct_kernel<float>", -(-total // 256), 0,
                       warps * g.in_channels_per_group() * g.kernel_area(), 0,
                       # every tap of every thread misses L1 once per 128-byte line: a guess
                       warps * g.in_channels_per_group() * g.kernel_area() * 128 / 8,
                       useful_fma(g) / (32 * warps * g.in_channels_per_group() * g.kernel_area()))]
    cin_g, ka = g.in_channels_per_group(), g.kernel_area()
    tiles = shape.tiles_h * shape.tiles_w
    blocks = g.batch * g.groups * shape.oc_blocks * tiles
    threads = -(-shape.threads // 32) * 32
    warps = computing_warps(g, shape, OCB)
    warp_fma = warps * cin_g * ka * OCB * PW
    staged = blocks * cin_g * (shape.patch_words + shape.ocs * OCB * ka)
    return [Launch(f"forward_tiled_kernel<float, {OCB}, {PW}>", blocks, smem, warp_fma, staged,
                   staged * acc_size, useful_fma(g) / (32 * warp_fma), threads)]


def input_grad_launches(g, em, acc_size=4) -> list[Launch]:
    """launch_input_grad: every stride phase with taps (forward_form.h's input_grad_phases)
    through the forward kernels, reading the weight flipped and transposed in place; then, if
    some phase has none, one zero_unreached_kernel over grad_input."""
    out, unreached = [], False
    for p in em.input_grad_phases(g):
        if p.taps:
            out += forward_launches(p.g, em, acc_size, p.wl)
        else:
            unreached = True
    if unreached:
        e = g.batch * g.in_channels * g.input_plane()
        out.append(Launch("zero_unreached_kernel<float>", -(-e // 256), 0, 0, 0, e * 4, 0.0))
    return out


def weight_grad_launches(g, em, acc_size=4) -> list[Launch]:
    """launch_weight_grad: the tiled reduction when plan.tiled (blocks of 8 output channels x
    tile.channels input channels x a chunk of 3-tap warps, or 1 channel x 9-tap warps; lanes over the pixels of each staged
    output tile), else the per-filter kernel; then sum_slices_kernel when the plan slices."""
    plan = em.plan_weight_grad(g)
    filters = g.out_channels * g.in_channels_per_group()
    out = []
    if plan.tiled:
        t = plan.tile
        cin_g, ka = g.in_channels_per_group(), g.kernel_area()
        blocks = g.groups * t.oc_blocks * t.c_blocks * plan.tap_chunks * plan.slices
        tap_groups = -(-ka // t.tb)
        # per tile, each computing warp (one per input channel and tap group) steps its lanes
        # over the tile's pixels 32 at a time
        steps = -(-(t.tile_rows * t.tile_cols) // 32)
        warp_fma = g.groups * t.oc_blocks * cin_g * tap_groups * t.tiles * steps * t.ocb * t.tb
        per_tile = t.channels * t.patch_words + t.tile_rows * t.tile_cols * t.ocb
        staged = g.groups * t.oc_blocks * t.c_blocks * plan.tap_chunks * t.tiles * per_tile
        out.append(Launch(f"weight_grad_tiled_kernel<float, {t.ocb}, {t.tb}>", blocks,
                          per_tile * acc_size, warp_fma, staged, staged * acc_size,
                          useful_fma(g) / (32 * warp_fma), 32 * t.warps * t.channels))
    else:
        sum_length = g.batch * g.output_plane()
        warp_turns = filters * plan.tap_chunks * -(-sum_length // 32)
        warp_fma = warp_turns * em.kWeightGradTaps
        # per warp turn: one line of grad_output and one line of input per kernel row
        l2 = warp_turns * (1 + min(g.rows.kernel, 3)) * 128
        out.append(Launch("weight_grad_kernel<float>", filters * plan.tap_chunks * plan.slices,
                          0, warp_fma, 0, l2, useful_fma(g) / (32 * warp_fma)))
    if plan.slices > 1:
        e = filters * g.kernel_area()
        out.append(Launch("sum_slices_kernel<float>", -(-e // 256), 0, 0, 0,
                          e * plan.slices * 4, 0.0))
    return out


def predict(launch: Launch, stats: dict[str, KernelStats]) -> dict:
    """Predicted seconds of one launch, and which term bounds it."""
    rf = ROOFLINE
    k = stats[launch.kernel]
    bps, occ, limiter = k.occupancy(launch.dynamic_smem, launch.threads)
    per_clock = rf["sms"] * rf["clock_hz"]
    hot = k.hot
    instr = launch.warp_fma * (hot.per_fma if hot else 0)
    loads = launch.warp_fma * (hot.loads_per_fma if hot else 0)
    if k.staging is not None and launch.staged_words:
        rounds = launch.staged_words / 32  # one warp-wide pass of the body per 32 words
        instr += rounds * k.staging.instrs
        loads += rounds * max(k.staging.loads, 1)
    terms = {
        "issue": instr / (rf["issue_per_sm"] * per_clock),
        "load pipe": loads / (rf["lsu_per_sm"] * per_clock),
        "L2": launch.l2_bytes / rf["l2_bps"],
    }
    bound = max(terms, key=terms.get)
    waves = launch.blocks / (rf["sms"] * max(bps, 1))
    # The terms assume every SM busy for the whole launch; the busiest SM holds
    # ceil(blocks / SMs) blocks where the average is blocks / SMs (all SMs' share when the grid
    # is smaller than the chip).
    per_sm = launch.blocks / rf["sms"]
    quant = math.ceil(per_sm) / per_sm if per_sm > 0 else 1.0
    return dict(terms=terms, bound=bound, waves=waves, quant=quant, occ=occ, bps=bps,
                limiter=limiter, seconds=terms[bound] * quant)


def min_bytes(case, acc=4) -> dict[str, int]:
    ho, wo = case.out_hw
    x = case.n * case.cin * case.h * case.w * acc
    w = case.cout * (case.cin // case.groups) * case.kh * case.kw * acc
    y = case.n * case.cout * ho * wo * acc
    # forward: read x, w; write y. backward: read gy, w (dx), x, gy (dw); write dx, dw.
    return dict(fwd=x + w + y, bwd=(y + w + x) + (x + y + w))


def cudnn_class(case) -> dict[str, float]:
    flops = case.flops
    b = min_bytes(case)
    c, bw = CUDNN_CLASS["compute_eff"] * FP32_FLOPS, CUDNN_CLASS["bw_eff"] * ROOFLINE["hbm_bps"]
    fwd = max(flops / c, b["fwd"] / bw) + ROOFLINE["launch_s"]
    bwd = max(2 * flops / c, b["bwd"] / bw) + 2 * ROOFLINE["launch_s"]
    return dict(fwd=fwd, fwdbwd=fwd + bwd)


def case_predictions(cases, stats) -> list[dict]:
    em = _emulator()
    rows = []
    for case in cases:
        g = case_geometry(case, em)
        b = min_bytes(case)
        parts = {}
        for what, fn in (("fwd", forward_launches), ("dx", input_grad_launches),
                         ("dw", weight_grad_launches)):
            launches = fn(g, em)
            preds = [predict(lc, stats) for lc in launches]
            parts[what] = (launches, preds,
                           sum(p["seconds"] for p in preds) + ROOFLINE["launch_s"] * len(launches))
        hbm = {"fwd": b["fwd"] / ROOFLINE["hbm_bps"], "bwd": b["bwd"] / ROOFLINE["hbm_bps"]}
        fwd = max(parts["fwd"][2], hbm["fwd"])
        bwd = max(parts["dx"][2] + parts["dw"][2], hbm["bwd"])
        ref = cudnn_class(case)
        rows.append(dict(case=case, parts=parts, fwd=fwd, fwdbwd=fwd + bwd, ref=ref))
    return rows


# ---------------------------------------------------------------------------------------------
# The report.

def fmt_us(s: float) -> str:
    return f"{s * 1e6:.1f}" if s < 1e-3 else f"{s * 1e6:.0f}"


def report(stats: dict[str, KernelStats], rows: list[dict], tools: str, title: str) -> str:
    L = []
    L.append(f"# {title}")
    L.append("")
    L.append(f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
             f"git {_git_rev()}; {KERNEL_CU.relative_to(REPO)} for sm_90")
    L.append(f"- tools: {tools}")
    L.append("- **static model, no GPU run**: every time below is a prediction from the "
             "compiler's output and the roofline in bench/cuda_static.py's docstring "
             f"({ROOFLINE['sms']} SMs at {ROOFLINE['clock_hz'] / 1e9:.2f} GHz: "
             f"{FP32_FLOPS / 1e12:.1f} TFLOP/s fp32 FMA; HBM {ROOFLINE['hbm_bps'] / 1e12:.1f} TB/s "
             f"(datasheet); L2 {ROOFLINE['l2_bps'] / 1e12:.1f} TB/s (assumed); "
             f"{ROOFLINE['launch_s'] * 1e6:.0f} us per launch (assumed))")
    L.append("")
    L.append("## Kernels (ptxas -v, cuobjdump --dump-sass)")
    L.append("")
    L.append("Occupancy: at 256 threads and the static shared memory only (the tiled kernels' "
             "dynamic shared memory per case is in the next table). Hot loop: the innermost loop "
             "with the most FMAs; instr/FMA counts every instruction in it (the FMA too), so "
             "1.0 is a loop of FMAs only and the goal of <= 2 non-FMA per FMA is <= 3.0.")
    L.append("")
    L.append("| kernel | regs | spill st/ld B | stack B | smem B | blocks/SM | occupancy | "
             "hot loop: instr | FMA | loads | instr/FMA |")
    L.append("|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for name in sorted(stats, key=_kernel_order):
        k = stats[name]
        bps, occ, lim = k.occupancy()
        h = k.hot
        hot = f"{h.instrs} | {h.fma} | {h.loads} | {h.per_fma:.1f}" if h else "- | 0 | - | -"
        L.append(f"| `{name}` | {k.res.regs} | {k.res.spill_stores}/{k.res.spill_loads} | "
                 f"{k.res.stack} | {k.res.smem} | {bps} ({lim}) | {occ:.0%} | {hot} |")
    L.append("")
    L.append("Goals (issue 12), float instantiations: hot loop <= 2 non-FMA instructions per FMA "
             "(instr/FMA <= 3.0); <= 64 registers at the block size or >= 50% theoretical "
             "occupancy; no spills.")
    L.append("")
    L.append("| kernel | instr/FMA <= 3 | regs <= 64 or occupancy >= 50% | no spills |")
    L.append("|:--|:--|:--|:--|")
    for name in sorted(stats, key=_kernel_order):
        if "<float" not in name:
            continue
        k = stats[name]
        _, occ, _ = k.occupancy()
        h = k.hot
        loop = "no FMA loop" if h is None else ("yes" if h.per_fma <= 3.0 else
                                                 f"**no** ({h.per_fma:.1f})")
        regs = "yes" if k.res.regs <= 64 or occ >= 0.5 else f"**no** ({k.res.regs}, {occ:.0%})"
        spills = "yes" if not (k.res.spill_stores or k.res.spill_loads) else "**no**"
        L.append(f"| `{name}` | {loop} | {regs} | {spills} |")
    L.append("")
    L.append("## Predicted time per bench/bench_gpu.py case (float32)")
    L.append("")
    L.append("cuDNN-class: max(FLOPs / (70% of fp32 peak), minimum bytes / (80% of HBM)) + 2 us "
             "per kernel (1 forward, 3 forward + backward): a stated yardstick, not a "
             "measurement. Ratio = ours / cuDNN-class (goal: forward <= 1.5, forward + backward "
             "<= 2.0 for ResNet; depthwise <= 1.0).")
    L.append("")
    L.append("| case | fwd us | cuDNN-class fwd us | ratio | fwd+bwd us | cuDNN-class fwd+bwd us "
             "| ratio |")
    L.append("|:--|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        c = r["case"]
        L.append(f"| {c.key} ({c.problem}) | {fmt_us(r['fwd'])} | {fmt_us(r['ref']['fwd'])} | "
                 f"{r['fwd'] / r['ref']['fwd']:.2f} | {fmt_us(r['fwdbwd'])} | "
                 f"{fmt_us(r['ref']['fwdbwd'])} | {r['fwdbwd'] / r['ref']['fwdbwd']:.2f} |")
    L.append("")
    L.append("### Per launch")
    L.append("")
    L.append("| case | op | kernel | blocks x threads | dyn smem B | blocks/SM | occupancy | "
             "waves | useful lanes | issue us | load pipe us | L2 us | bound | predicted us |")
    L.append("|:--|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|:--|--:|")
    for r in rows:
        for what, (launches, preds, _) in r["parts"].items():
            for lc, p in zip(launches, preds):
                t = p["terms"]
                L.append(f"| {r['case'].key} | {what} | `{lc.kernel}` | {lc.blocks} x "
                         f"{lc.threads} | {lc.dynamic_smem} | {p['bps']} | {p['occ']:.0%} | "
                         f"{p['waves']:.2f} | "
                         f"{lc.useful_lanes:.0%} | {fmt_us(t['issue'])} | "
                         f"{fmt_us(t['load pipe'])} | {fmt_us(t['L2'])} | {p['bound']} | "
                         f"{fmt_us(p['seconds'] + ROOFLINE['launch_s'])} |")
    L.append("")
    return "\n".join(L)


def _kernel_order(name: str):
    dtype_rank = {"float": 0, "double": 1, "half": 2, "bf16": 3}
    m = re.search(r"<(\w+)", name)
    return (dtype_rank.get(m.group(1) if m else "", 9), name)


def _git_rev() -> str:
    try:
        r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "csrc/cuda"],
                               capture_output=True, text=True).stdout.strip()
        return r.stdout.strip() + (" + uncommitted csrc/cuda changes" if dirty else "")
    except OSError:
        return "?"


def bench_cases():
    sys.path.insert(0, str(REPO / "bench"))
    from bench_gpu import CASES  # noqa: E402

    return CASES


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="sm_90")
    p.add_argument("--ptxas", type=Path, help="saved ptxas -v output (skips compiling)")
    p.add_argument("--sass", type=Path, help="saved cuobjdump --dump-sass output")
    p.add_argument("--save", type=Path, help="folder to save the ptxas and SASS text into")
    p.add_argument("--md", type=Path, help="write the report here too")
    p.add_argument("--title", default="CUDA kernels: static performance model (sm_90, H200)")
    args = p.parse_args(argv)
    if args.ptxas and args.sass:
        ptxas, sass = args.ptxas.read_text(), args.sass.read_text()
        tools = f"saved output: {args.ptxas}, {args.sass}"
    else:
        ptxas, sass, tools = compile_and_dump(KERNEL_CU, args.arch, [])
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        (args.save / "ptxas.txt").write_text(ptxas)
        (args.save / "sass.txt").write_text(sass)
    stats = analyse(ptxas, sass)
    rows = case_predictions(bench_cases(), stats)
    text = report(stats, rows, tools, args.title)
    print(text)
    if args.md:
        args.md.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
