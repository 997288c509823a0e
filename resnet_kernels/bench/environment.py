"""Versions of everything a result depends on (for versions.txt and the JSON)."""

from __future__ import annotations

import importlib
import platform


def _module_version(name: str) -> str:
    try:
        return importlib.import_module(name).__version__
    except ImportError:
        return "not installed"


def versions() -> dict[str, str]:
    import torch

    from .. import __version__
    from ..backends import cuda_extension_error

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none (torch.cuda.is_available() is False)"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda (torch build)": str(torch.version.cuda),
        "cudnn": str(cudnn),
        "triton": _module_version("triton"),
        "torchvision": _module_version("torchvision"),
        "resnet_kernels": __version__,
        "cuda extension": cuda_extension_error() or "built",
    }
