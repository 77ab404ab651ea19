"""Builds corr2d_ext._C: the CPU kernels always, the CUDA kernels when they can be built.

CORR2D_CUDA=0   build the CPU kernels only
CORR2D_CUDA=1   build the CUDA kernels too, and fail if that is not possible
(unset)         build the CUDA kernels when torch has CUDA and a toolkit is found

CORR2D_SANITIZE=1   compile the C++ with AddressSanitizer and UndefinedBehaviorSanitizer
                    (-fsanitize=address,undefined -fno-sanitize-recover=all -fno-wrapv
                    -fno-omit-frame-pointer -g -O1: every report is fatal), for
                    tools/sanitize.sh (`make sanitize`), which builds such a copy away from the
                    in-place build and runs the tests under it with libasan preloaded.

TORCH_CUDA_ARCH_LIST is honoured. When it is unset and no GPU is visible, the default below is
used: sm_80 (A100) and sm_90 (H100/H200) machine code, plus sm_90 PTX that newer cards JIT.
"""

import os
import sys
from pathlib import Path

from setuptools import setup

DEFAULT_CUDA_ARCH_LIST = "8.0;9.0+PTX"
ROOT = Path(__file__).parent.resolve()


def find_cuda_home():
    """The toolkit folder: $CUDA_HOME (or $CUDA_PATH), else /usr/local/cuda.

    torch guesses it from the `nvcc` on PATH, which is wrong wherever that nvcc is a wrapper
    script outside the toolkit (then the link fails with "cannot find -lcudart").
    """
    for candidate in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if candidate and (Path(candidate) / "bin" / "nvcc").exists():
            return str(Path(candidate).resolve())
    return None


def cuda_request():
    value = os.environ.get("CORR2D_CUDA", "").strip()
    if value not in ("", "0", "1"):
        sys.exit(f"CORR2D_CUDA must be 0, 1 or unset, but got {value!r}")
    return {"": None, "0": False, "1": True}[value]


requested = cuda_request()
cuda_home = find_cuda_home() if requested is not False else None
if cuda_home:
    # Must be set before torch.utils.cpp_extension is imported: it reads CUDA_HOME once.
    os.environ["CUDA_HOME"] = cuda_home

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

why_not_cuda = None
if requested is False:
    why_not_cuda = "CORR2D_CUDA=0"
elif torch.version.cuda is None:
    why_not_cuda = f"torch {torch.__version__} has no CUDA"
elif cuda_home is None:
    why_not_cuda = "no CUDA toolkit found ($CUDA_HOME, /usr/local/cuda)"
with_cuda = why_not_cuda is None
if requested and not with_cuda:
    sys.exit(f"CORR2D_CUDA=1, but the CUDA kernels cannot be built: {why_not_cuda}")

if with_cuda and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
    # torch builds the list from the visible cards, and fails with none visible.
    if not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCH_LIST

import platform  # noqa: E402


def cpp_sources(machine):
    """The C++ sources (op registration and CPU backend) for a platform.machine() name.

    The CPU backend's ISA-neutral parts, then one instantiation per ISA, each compiled only for
    the architecture it targets (csrc/cpu/cpu.h says what each file is). Self-contained, as
    tools/cross_compile_aarch64.sh reads it out of this file to build the aarch64 list.
    """
    sources = ["csrc/corr2d.cpp", "csrc/autograd.cpp", "csrc/cpu/portable.cpp",
               "csrc/cpu/plan.cpp", "csrc/cpu/dispatch.cpp", "csrc/cpu/isa/generic.cpp"]
    machine = machine.lower()
    if machine in ("x86_64", "amd64"):
        sources += ["csrc/cpu/isa/avx2.cpp", "csrc/cpu/isa/avx512.cpp"]
    elif machine in ("aarch64", "arm64"):
        sources += ["csrc/cpu/isa/neon.cpp"]
    return sources


sources = cpp_sources(platform.machine())
# -fopenmp: at::parallel_for is a header template whose threads are an `omp parallel` compiled
# into *our* object files; without the flag it silently runs every task on the calling thread.
# The libgomp.so.1 it links against is the one torch has already loaded (same soname), so
# torch.set_num_threads() governs our kernels too.
cxx_flags = ["-O3", "-fopenmp"]
link_flags = ["-fopenmp"]
sanitize = os.environ.get("CORR2D_SANITIZE", "").strip()
if sanitize not in ("", "0", "1"):
    sys.exit(f"CORR2D_SANITIZE must be 0, 1 or unset, but got {sanitize!r}")
if sanitize == "1":
    # -O1 (after -O3, so it wins) keeps the reports' stacks readable and the run fast enough.
    # -fno-wrapv undoes the -fwrapv of Python's own CFLAGS, under which a signed overflow is
    # defined to wrap and UBSan does not look for it: an overflowing index is what we want found.
    sanitizers = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    cxx_flags += sanitizers + ["-fno-wrapv", "-fno-omit-frame-pointer", "-g", "-O1"]
    link_flags += sanitizers
if with_cuda:
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST") or "the visible GPU's"
    summary = (f"CPU and CUDA kernels (torch {torch.__version__}, CUDA {torch.version.cuda}, "
               f"archs {archs})")
    extension = CUDAExtension(
        "corr2d_ext._C",
        sources + ["csrc/cuda/corr2d_cuda.cpp", "csrc/cuda/corr2d_kernel.cu"],
        define_macros=[("CORR2D_WITH_CUDA", None)],
        extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-lineinfo"]},
        extra_link_args=link_flags,
    )
else:
    summary = f"CPU kernels only (torch {torch.__version__}; no CUDA kernels: {why_not_cuda})"
    extension = CppExtension("corr2d_ext._C", sources, extra_compile_args={"cxx": cxx_flags},
                             extra_link_args=link_flags)
if sanitize == "1":
    summary += ", with AddressSanitizer and UndefinedBehaviorSanitizer"


def project_version():
    """pyproject.toml's [project] version, the one place the version is written."""
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import re

        return re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE).group(1)
    return tomllib.loads(text)["project"]["version"]


# The one-line build summary: printed (pip shows it with -v) and kept for corr2d_ext.build_info,
# with the version for corr2d_ext.__version__ when the package is built in place, not installed.
print(f"corr2d_ext: building {summary}", flush=True)
(ROOT / "corr2d_ext" / "_build_info.py").write_text(
    f'"""Written by setup.py at build time."""\n\nSUMMARY = {summary!r}\n'
    f"VERSION = {project_version()!r}\n"
)

setup(
    ext_modules=[extension],
    cmdclass={"build_ext": BuildExtension},
)
