"""The cuda backend's opt-in Hopper kernel as benchmark providers ("cuda-wgmma").

The cuda backend picks its tensor-core kernel from the environment variable
RESNET_KERNELS_CUDA_KERNEL on every call (csrc/kernels/launch.h): unset or
"mma" = the mma.sync kernel, "wgmma" = the Hopper wgmma kernel for the calls it
suits (compute-bound, or with both operands loaded by TMA: 1x1 stride-1 GEMMs and,
in im2col mode, calls with 64 | C/groups;
a grid that fills the GPU; K/groups <= 64 on its 128x64 tile or >= 128 on its
128x128 / 128x256 ones). These
providers set it to "wgmma" around their calls only, so one process measures
both kernels side by side. Under a CUDA graph the choice made at capture is
the one replayed.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional

import torch

from ..layer_shapes import ConvLayer

ENV = "RESNET_KERNELS_CUDA_KERNEL"
WGMMA = "wgmma"


@contextlib.contextmanager
def kernel_choice(value: str) -> Iterator[None]:
    """RESNET_KERNELS_CUDA_KERNEL=value inside the block; the previous value (or its absence) after."""
    previous = os.environ.get(ENV)
    os.environ[ENV] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous


def _plan(layer: ConvLayer, x: torch.Tensor, value: Optional[str]):
    """The cuda op's plan for `layer` on input x under RESNET_KERNELS_CUDA_KERNEL=value (None: as the
    environment has it now); nothing runs."""
    from ..cuda_ops import conv_plan

    make = dict(device=x.device, dtype=x.dtype)
    weight = torch.empty(layer.K, layer.C // layer.groups, layer.R, layer.S, **make)
    weight = weight.contiguous(memory_format=torch.channels_last)
    vector = torch.empty(layer.K, device=x.device)
    residual = None
    if layer.has_residual:
        residual = torch.empty(x.shape[0], layer.K, layer.P, layer.Q, **make)
        residual = residual.contiguous(memory_format=torch.channels_last)
    conv = ([layer.stride] * 2, [layer.padding] * 2, [1, 1], layer.groups)
    with contextlib.nullcontext() if value is None else kernel_choice(value):
        return conv_plan(x, weight, vector, vector, residual, *conv, layer.relu, None, None, 1)


def plan_label(layer: ConvLayer, x: torch.Tensor, value: Optional[str] = None) -> str:
    """What the cuda op runs for `layer` on input x (under RESNET_KERNELS_CUDA_KERNEL=value; None:
    the environment's), in a few words for the report: e.g. 'mma 128x128', 'mma 64x64 split 4',
    'wgmma 128x64 tma_b', 'wgmma-ws 128x256 tma_im2col' (the persistent kernel), 'direct'."""
    plan = _plan(layer, x, value)
    if plan.kernel == "direct":
        return "direct"
    if plan.kernel == "mma":
        return f"mma {plan.tile_m}x{plan.tile_n}" + (f" split {plan.split}" if plan.split > 1 else "")
    kind = "wgmma-ws" if plan.persistent else "wgmma"
    return f"{kind} {plan.tile_m}x{plan.tile_n} {plan.loads}"


def wgmma_unavailable_reason(x: torch.Tensor) -> Optional[str]:
    """None when the wgmma kernel can run on x's GPU with this build, else why not (one sentence)."""
    if not x.is_cuda:
        return "the wgmma kernel runs on CUDA tensors only"
    capability = torch.cuda.get_device_capability(x.device)
    if capability != (9, 0):
        return f"the wgmma kernel needs a compute capability 9.0 GPU (H100/H200), this one is {capability}"
    probe = ConvLayer("probe", 128, 128, 8, 8, 1, 1, 1, 0, 1, False, True)
    sample = torch.empty(1, 128, 8, 8, device=x.device, dtype=torch.float16)
    try:  # a forced tile is refused, with the reason, where the build has no sm_90a code
        _plan(probe, sample.contiguous(memory_format=torch.channels_last), "wgmma_n128")
    except RuntimeError as err:
        return f"the wgmma kernel is not available: {err}"
    return None


def wgmma_layer_unavailable_reason(layer: ConvLayer, x: torch.Tensor) -> Optional[str]:
    """Why RESNET_KERNELS_CUDA_KERNEL=wgmma would not run `layer` on the wgmma kernel, or None."""
    reason = wgmma_unavailable_reason(x)
    if reason is not None:
        return reason
    plan = _plan(layer, x, WGMMA)
    if plan.kernel != "wgmma":
        return (f"RESNET_KERNELS_CUDA_KERNEL=wgmma keeps this layer on the {plan.kernel} kernel "
                f"(memory-bound, 64 < K/groups < 128 or a grid too small for it): the 'cuda' row is its time")
    return None


class WithKernelChoice(torch.nn.Module):
    """`module` with RESNET_KERNELS_CUDA_KERNEL=value set around each forward."""

    def __init__(self, module: torch.nn.Module, value: str):
        super().__init__()
        self.module = module
        self.value = value

    def forward(self, *args, **kwargs):
        with kernel_choice(self.value):
            return self.module(*args, **kwargs)
