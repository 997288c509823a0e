"""The providers of one fused conv layer: a function and how to prepare its inputs.

Each provider turns a LayerInputs set (BN unfolded, as torchvision holds it)
into its own arguments once, outside the timing (folding BN is a one-time cost
of inference), then runs ``fn(*args)`` in the timed loop:

- ``triton``, ``cuda``: resnet_kernels.functional.conv_bn_act with BN folded
  into fp32 scale/shift, one kernel per layer.
- ``cuda-wgmma``: ``cuda`` with RESNET_KERNELS_CUDA_KERNEL=wgmma (the opt-in
  Hopper kernel, kernel_choice.py); skipped on layers that choice leaves on
  the mma.sync kernel, whose time is the ``cuda`` row.
- ``cudnn-eager``: conv2d, batch_norm (eval), in-place add, in-place ReLU:
  the ops torchvision's blocks run, in their order.
- ``cudnn-fused``: BN folded into the weights and a bias, then cuDNN's fused
  torch.cudnn_convolution_relu / torch.cudnn_convolution_add_relu (conv2d with
  a bias for the projection shortcut, which has no ReLU).
- ``inductor``: the cudnn-eager layer under torch.compile(mode=
  "max-autotune-no-cudagraphs"): max-autotune's kernel choice, while the CUDA
  graph is the same one every provider is replayed from (timing.py).
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F

from .data import BN_EPS, LayerInputs
from ..layer_shapes import ConvLayer


class Unavailable(Exception):
    """This provider cannot run here; the message says why (the benchmark is skipped)."""


class LayerProvider(NamedTuple):
    fn: Callable[..., torch.Tensor]
    prepare: Callable[[LayerInputs], tuple]


def _folded(inputs: LayerInputs) -> tuple[torch.Tensor, torch.Tensor]:
    from ..functional import fold_bn

    return fold_bn((inputs.gamma, inputs.beta, inputs.mean, inputs.var, BN_EPS))


def ours(backend: str, layer: ConvLayer, sample: torch.Tensor) -> LayerProvider:
    from .. import backends, functional

    reason = backends.unavailable_reason(backend, sample)
    if reason is not None:
        raise Unavailable(reason)

    def prepare(inputs: LayerInputs) -> tuple:
        scale, shift = _folded(inputs)
        return (inputs.x, inputs.weight, scale, shift, inputs.residual)

    fn = functools.partial(
        functional.conv_bn_act, stride=layer.stride, padding=layer.padding, groups=layer.groups,
        relu=layer.relu, backend=backend,
    )
    return LayerProvider(fn, prepare)


def eager_fn(layer: ConvLayer) -> Callable[..., torch.Tensor]:
    def run(x, weight, gamma, beta, mean, var, residual: Optional[torch.Tensor]) -> torch.Tensor:
        y = F.conv2d(x, weight, None, layer.stride, layer.padding, 1, layer.groups)
        y = F.batch_norm(y, mean, var, gamma, beta, False, 0.0, BN_EPS)
        if residual is not None:
            y += residual
        return y.relu_() if layer.relu else y

    return run


def _eager_args(inputs: LayerInputs) -> tuple:
    return (inputs.x, inputs.weight, inputs.gamma, inputs.beta, inputs.mean, inputs.var, inputs.residual)


def cudnn_eager(layer: ConvLayer) -> LayerProvider:
    return LayerProvider(eager_fn(layer), _eager_args)


def cudnn_fused(layer: ConvLayer) -> LayerProvider:
    if not (torch.backends.cudnn.is_available() and hasattr(torch, "cudnn_convolution_add_relu")):
        raise Unavailable(f"torch {torch.__version__} has no cuDNN or no torch.cudnn_convolution_add_relu")
    if layer.has_residual and not layer.relu:
        raise Unavailable("cuDNN has no fused op for conv + bias + add without a ReLU")
    geometry = ([layer.stride] * 2, [layer.padding] * 2, [1, 1], layer.groups)

    def prepare(inputs: LayerInputs) -> tuple:
        scale, shift = _folded(inputs)
        weight = (inputs.weight.float() * scale.view(-1, 1, 1, 1)).to(inputs.weight.dtype)
        return (inputs.x, weight.contiguous(memory_format=torch.channels_last), shift.to(inputs.x.dtype),
                inputs.residual)

    def run(x, weight, bias, residual: Optional[torch.Tensor]) -> torch.Tensor:
        if residual is not None:
            return torch.cudnn_convolution_add_relu(x, weight, residual, 1.0, bias, *geometry)
        if layer.relu:
            return torch.cudnn_convolution_relu(x, weight, bias, *geometry)
        return F.conv2d(x, weight, bias, layer.stride, layer.padding, 1, layer.groups)

    return LayerProvider(run, prepare)


def inductor(layer: ConvLayer) -> LayerProvider:
    # A fresh compile per layer: Dynamo would otherwise count each layer's closure as a
    # recompile of the same code and, past its recompile limit, silently run it eagerly.
    torch._dynamo.reset()
    compiled = torch.compile(eager_fn(layer), mode="max-autotune-no-cudagraphs", dynamic=False, fullgraph=True)
    return LayerProvider(compiled, _eager_args)


def cuda_wgmma(layer: ConvLayer, sample: torch.Tensor) -> LayerProvider:
    from .kernel_choice import WGMMA, kernel_choice, wgmma_layer_unavailable_reason

    base = ours("cuda", layer, sample)
    reason = wgmma_layer_unavailable_reason(layer, sample)
    if reason is not None:
        raise Unavailable(reason)

    def run(*args) -> torch.Tensor:
        with kernel_choice(WGMMA):
            return base.fn(*args)

    return LayerProvider(run, base.prepare)


def layer_provider(name: str, layer: ConvLayer, sample: torch.Tensor) -> LayerProvider:
    """The provider ``name`` (matrix.LAYER_PROVIDERS) for ``layer``; raises Unavailable."""
    if name in ("triton", "cuda"):
        return ours(name, layer, sample)
    if name == "cuda-wgmma":
        return cuda_wgmma(layer, sample)
    builders = {"cudnn-eager": cudnn_eager, "cudnn-fused": cudnn_fused, "inductor": inductor}
    return builders[name](layer)
