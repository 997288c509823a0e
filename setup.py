"""Build: pure Python + Triton everywhere; the CUDA C++ extension where it can be built.

Environment:
  RESNET_KERNELS_FORCE_CUDA=1   fail instead of skipping when the extension cannot be built
  RESNET_KERNELS_SKIP_CUDA=1    never build the extension
  TORCH_CUDA_ARCH_LIST          target archs (default "8.0;9.0a": sm_80 for A100s; sm_90a, the only
                                code with the Hopper wgmma kernel, runs on H100/H200)
  MAX_JOBS                      parallel compile jobs (capped by free memory, ~2 GB per job)
"""

import glob
import os
import shutil
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCHS = "8.0;9.0a"


def _flag(name: str) -> bool:
    return os.environ.get(name, "0") not in ("", "0", "false", "False")


def _why_no_cuda():
    """None if the CUDA extension can be built here, else a one-line reason."""
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        return "torch is not importable at build time (use pip install --no-build-isolation .)"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    if os.environ.get("CUDA_HOME") is None and os.path.isdir("/usr/local/cuda"):
        os.environ["CUDA_HOME"] = "/usr/local/cuda"  # the nvcc on PATH may be a wrapper elsewhere
        cpp_extension.CUDA_HOME = "/usr/local/cuda"
    if cpp_extension.CUDA_HOME is None or not os.path.exists(os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc")):
        return "nvcc was not found (set CUDA_HOME to the CUDA toolkit)"
    return None


def _max_jobs() -> None:
    """Cap MAX_JOBS by free memory (~2 GB per nvcc job, to be safe)."""
    try:
        with open("/proc/meminfo") as f:
            avail_kb = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable"))
        by_memory = max(1, avail_kb // (2 * 1024 * 1024))
    except (OSError, StopIteration, ValueError):
        by_memory = 1
    wanted = int(os.environ.get("MAX_JOBS", os.cpu_count() or 1))
    os.environ["MAX_JOBS"] = str(max(1, min(wanted, by_memory)))


def _include_dirs():
    """csrc/ and torch's pip NVIDIA headers (cusparse.h & co. live there, not in the toolkit)."""
    dirs = [os.path.join(ROOT, "csrc")]
    import torch

    site = os.path.dirname(os.path.dirname(torch.__file__))
    dirs += sorted(glob.glob(os.path.join(site, "nvidia", "*", "include")))
    return dirs


def cuda_extensions():
    if _flag("RESNET_KERNELS_SKIP_CUDA"):
        print("resnet_kernels: RESNET_KERNELS_SKIP_CUDA set; building without the CUDA extension", file=sys.stderr)
        return [], {}
    sources = sorted(glob.glob(os.path.join("csrc", "**", "*.cu"), recursive=True))
    sources += sorted(glob.glob(os.path.join("csrc", "**", "*.cpp"), recursive=True))
    sources = [s for s in sources if not s.startswith(os.path.join("csrc", "tests"))]
    why = _why_no_cuda() or (None if sources else "csrc/ has no sources")
    if why is not None:
        if _flag("RESNET_KERNELS_FORCE_CUDA"):
            raise RuntimeError(f"RESNET_KERNELS_FORCE_CUDA=1 but the CUDA extension cannot be built: {why}")
        print(f"resnet_kernels: building without the CUDA extension: {why}", file=sys.stderr)
        return [], {}

    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS)
    _max_jobs()
    ext = CUDAExtension(
        name="resnet_kernels._C",
        sources=sources,
        include_dirs=_include_dirs(),
        extra_compile_args={
            "cxx": ["-O3"],
            "nvcc": ["-O3", "--expt-relaxed-constexpr", "-lineinfo", "--use_fast_math"],
        },
        py_limited_api=False,
    )
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)}


ext_modules, cmdclass = cuda_extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
