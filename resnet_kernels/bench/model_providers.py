"""The providers of a whole model: torchvision's ResNet made into each contender.

Inference (matrix.MODEL_PROVIDERS; "-graph" = replayed from a CUDA graph by timing.py):

- ``triton``, ``cuda``: resnet_kernels.models.convert(model, backend=...): the same
  weights, one fused op per conv (BN folded in eval mode).
- ``cuda-wgmma``: ``cuda`` with RESNET_KERNELS_CUDA_KERNEL=wgmma around each
  forward (the opt-in Hopper kernel for the layers it suits; kernel_choice.py).
- ``cudnn-eager``: torchvision as it is (cudnn.benchmark on).
- ``cudnn-fused``: BN folded and cuDNN's fused conv ops (tv_fused.py).
- ``inductor-default``: torch.compile(model).
- ``inductor``: torch.compile(model, mode="max-autotune"), which also replays
  CUDA graphs of its own.

Training (matrix.TRAIN_PROVIDERS): ours converted in train mode, torchvision
eager, and torch.compile(model) with default options.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .layer_providers import Unavailable


def torchvision_model(name: str, seed: int) -> nn.Module:
    """torchvision's ``name`` in float32 on the CPU, random weights from ``seed``,
    with randomized BatchNorm statistics (no weights can be downloaded here)."""
    import torchvision

    from .data import randomize_batchnorm

    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)()
    randomize_batchnorm(model, torch.Generator().manual_seed(seed))
    return model


def _ours(model: nn.Module, backend: str, sample: torch.Tensor) -> nn.Module:
    from .. import backends

    reason = backends.unavailable_reason(backend, sample)
    if reason is not None:
        raise Unavailable(reason)
    try:
        from ..models import convert
    except ImportError as err:
        raise Unavailable(f"resnet_kernels.models.convert is not importable: {err}") from None
    return convert(model, backend=backend)


def _compiled(model: nn.Module, mode) -> nn.Module:
    torch._dynamo.reset()  # a fresh compile: no cache from the previous model, its time measurable
    return torch.compile(model, mode=mode)


def inference_model(provider: str, model: nn.Module, sample: torch.Tensor) -> tuple[nn.Module, bool]:
    """(module to call, whether to replay it from a CUDA graph) for an eval-mode
    torchvision ``model`` already on the device in its dtype and memory format."""
    graph = provider.endswith("-graph")
    base = provider.removesuffix("-graph")
    if base in ("triton", "cuda"):
        return _ours(model, base, sample), graph
    if base == "cuda-wgmma":
        from .kernel_choice import WGMMA, WithKernelChoice, wgmma_unavailable_reason

        ours = _ours(model, "cuda", sample)
        reason = wgmma_unavailable_reason(sample)
        if reason is not None:
            raise Unavailable(reason)
        return WithKernelChoice(ours, WGMMA), graph
    if base == "cudnn-eager":
        return model, graph
    if base == "cudnn-fused":
        if not hasattr(torch, "cudnn_convolution_add_relu"):
            raise Unavailable(f"torch {torch.__version__} has no torch.cudnn_convolution_add_relu")
        from .tv_fused import fuse

        return fuse(model), graph
    if base == "inductor-default":
        return _compiled(model, None), graph
    if base == "inductor":
        return _compiled(model, "max-autotune"), graph
    raise ValueError(f"unknown model provider {provider!r}")


def training_model(provider: str, model: nn.Module, sample: torch.Tensor) -> tuple[nn.Module, nn.Module]:
    """(module a training step runs, module whose named parameters it trains) for a
    train-mode torchvision ``model`` (they differ for torch.compile's wrapper)."""
    if provider in ("triton", "cuda"):
        ours = _ours(model, provider, sample)
        return ours, ours
    if provider == "cudnn-eager":
        return model, model
    if provider == "inductor-default":
        return _compiled(model, None), model
    raise ValueError(f"unknown training provider {provider!r}")


def loss_and_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype,
                      scale: float = 1.0) -> None:
    """Forward under autocast(dtype) (none for float32), cross-entropy, backward of
    ``scale * loss``; the loss."""
    with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        loss = F.cross_entropy(model(x), y)
    (loss * scale).backward()


def train_step(model: nn.Module, dtype: torch.dtype) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One SGD step (momentum 0.9) under AMP: GradScaler for fp16, none needed for bf16."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=dtype):
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step
