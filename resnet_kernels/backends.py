"""Backend registry: which implementation runs a call of the fused op.

Backends: ``reference`` (eager PyTorch, everywhere), ``triton`` (Triton kernels;
CUDA tensors, or CPU tensors under TRITON_INTERPRET=1), ``cuda`` (the compiled
CUDA C++ extension; CUDA tensors) and ``auto`` (the fastest measured available
backend per layer shape on a GPU, the reference on the CPU).

Selection, first match wins: the ``backend=`` argument of a call, then
:func:`set_backend`, then the environment variable ``RESNET_KERNELS_BACKEND``,
then ``auto``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Callable, Optional

import torch

from ._args import KERNEL_DTYPES

BACKENDS = ("reference", "triton", "cuda", "auto")
ENV_VAR = "RESNET_KERNELS_BACKEND"

_selected: Optional[str] = None


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run this call; the message says what is missing."""


def _check_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {name!r}")
    return name


def set_backend(name: Optional[str]) -> None:
    """Select the backend for calls that do not pass ``backend=``; None restores the default."""
    global _selected
    _selected = None if name is None else _check_name(name)


def get_backend() -> str:
    """The backend a call without ``backend=`` uses."""
    if _selected is not None:
        return _selected
    env = os.environ.get(ENV_VAR)
    if env:
        if env not in BACKENDS:
            raise ValueError(f"{ENV_VAR}={env!r} is not a backend; use one of {', '.join(BACKENDS)}")
        return env
    return "auto"


def resolve_name(backend: Optional[str]) -> str:
    return get_backend() if backend is None else _check_name(backend)


# --- availability -----------------------------------------------------------


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None  # looked up once: ~10 us a call


def _triton_missing(x: torch.Tensor) -> Optional[str]:
    if not _triton_installed():
        return "backend 'triton' needs the triton package, which is not installed"
    if x.is_cuda or (x.device.type == "cpu" and triton_interpreting()):
        return None
    return (
        f"backend 'triton' runs on CUDA tensors (or CPU tensors with TRITON_INTERPRET=1); "
        f"x is on {x.device}"
    )


def cuda_extension_error() -> Optional[str]:
    """None when the compiled extension is loaded (and its fake registered), else why it is not."""
    from . import cuda_ops

    if cuda_ops.LOAD_ERROR is not None:
        err = cuda_ops.LOAD_ERROR
        if isinstance(err, ModuleNotFoundError):
            state = "which is not built"
        else:  # built, but for another torch/Python, or broken
            state = f"which is built but cannot be loaded with torch {torch.__version__}"
        return (
            f"backend 'cuda' needs the compiled extension resnet_kernels._C, {state} "
            f"({type(err).__name__}: {err}); rebuild it against this torch with nvcc present "
            "(pip install --no-build-isolation . or python setup.py build_ext --inplace)"
        )
    return None


def _cuda_missing(x: torch.Tensor) -> Optional[str]:
    err = cuda_extension_error()
    if err is not None:
        return err
    if not x.is_cuda:
        return f"backend 'cuda' runs on CUDA tensors; x is on {x.device}"
    return None


def _dtype_missing(name: str, x: torch.Tensor) -> Optional[str]:
    if name == "cuda" and x.dtype not in (torch.float16, torch.bfloat16):
        return f"backend 'cuda' supports float16 and bfloat16, not {x.dtype}; use backend='triton' or 'reference'"
    if x.dtype not in KERNEL_DTYPES:
        return f"backend {name!r} supports float16, bfloat16 and float32, not {x.dtype}; use backend='reference'"
    return None


def unavailable_reason(name: str, x: torch.Tensor) -> Optional[str]:
    """Why backend ``name`` cannot run with input ``x``, or None if it can."""
    if name == "reference" or name == "auto":
        return None
    missing = _triton_missing(x) if name == "triton" else _cuda_missing(x)
    return missing or _dtype_missing(name, x)


# --- implementations ----------------------------------------------------------


def _reference_impl() -> Callable[..., torch.Tensor]:
    from . import reference

    return reference.conv_bn_act


def _triton_impl() -> Callable[..., torch.Tensor]:
    from .triton import conv_bn_act

    return conv_bn_act


def _cuda_impl() -> Callable[..., torch.Tensor]:
    # Not the raw op: cuda_conv fits narrow-channel calls (the C=3 stem, ResNeXt's 4 channels
    # per group) to the tensor-core kernel and caches the KRSC weight.
    from . import cuda_conv

    return cuda_conv.conv_bn_act


_IMPLS = {"reference": _reference_impl, "triton": _triton_impl, "cuda": _cuda_impl}


def implementation(name: str, x: torch.Tensor) -> Callable[..., torch.Tensor]:
    """The function that runs backend ``name`` for input ``x``, or a clear error."""
    reason = unavailable_reason(name, x)
    if reason is not None:
        raise BackendUnavailableError(reason)
    return _IMPLS[name]()


def available_kernels(x: torch.Tensor) -> list[str]:
    """The concrete backends that can run input ``x`` (reference always last)."""
    return [b for b in ("cuda", "triton") if unavailable_reason(b, x) is None] + ["reference"]
