"""Test setup shared by every test file.

Without a GPU, Triton kernels run under the interpreter: TRITON_INTERPRET must
be set before any @triton.jit function is defined, so it is set here, before
the package is imported.
"""

import os
import sys
import zlib

import pytest

try:
    import torch

    HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover - torch is a hard requirement
    HAS_CUDA = False

if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import resnet_kernels  # noqa: E402,F401  (after TRITON_INTERPRET)

needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU; this machine has none")

# The cuda backend's Hopper wgmma kernel (and its TMA loads) runs on compute capability 9.0 only.
IS_SM90 = HAS_CUDA and torch.cuda.get_device_capability() == (9, 0)
needs_sm90 = pytest.mark.skipif(not IS_SM90, reason="the wgmma kernel needs a compute capability 9.0 GPU (H100/H200)")
# RESNET_KERNELS_CUDA_KERNEL values that force a wgmma tile -> the tile's BN.
WGMMA_TILES = {"wgmma_n64": 64, "wgmma_n128": 128, "wgmma_n256": 256}


def _extension_loaded() -> bool:
    from resnet_kernels.backends import cuda_extension_error

    return cuda_extension_error() is None


needs_extension = pytest.mark.skipif(
    not _extension_loaded(), reason="the CUDA extension resnet_kernels._C is not built here"
)


@pytest.fixture
def gen(request):
    """A generator seeded from the test's id: fresh inputs per case, the same on every run."""
    return torch.Generator().manual_seed(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(autouse=True)
def _fresh_backend_selection():
    """Each test starts from the default backend selection, and without the triton backend's
    launch plans of earlier tests (a plan assumes the GPU and tuning.py's tables, which tests
    patch, stay as they were when it was made)."""
    resnet_kernels.set_backend(None)
    _clear_triton_plans()
    yield
    resnet_kernels.set_backend(None)
    _clear_triton_plans()


def _clear_triton_plans() -> None:
    conv = sys.modules.get("resnet_kernels.triton.conv")  # not imported: no plans to clear
    if conv is not None:
        conv.clear_plans()
