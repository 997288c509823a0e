"""Pieces every model file shares: torchvision's conv helpers, weight init, builder kwargs."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding (torchvision's helper)."""
    return nn.Conv2d(
        in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation, groups=groups, bias=False,
        dilation=dilation,
    )


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution (torchvision's helper)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def init_weights(model: nn.Module) -> None:
    """torchvision's ResNet init (He et al. 2015, fan_out), which the papers' models use too.

    Iterates modules in registration order, so a model registered in
    torchvision's order draws the same random numbers as torchvision's.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def overwrite_named_param(kwargs: dict[str, Any], name: str, value: Any) -> None:
    """Set a builder's fixed argument, refusing a different value from the caller (as torchvision does)."""
    if name in kwargs and kwargs[name] != value:
        raise ValueError(f"The parameter '{name}' expected value {value} but got {kwargs[name]} instead.")
    kwargs[name] = value


def kernel_layout(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's input in the layout its fused convolutions are fast in: channels_last (NHWC).

    The op's output takes its input's layout, so an NCHW image batch would keep every activation
    of the network NCHW: strided channel loads in the Triton kernels, and an NHWC copy in and an
    NCHW copy out of every call in the CUDA backend. One copy of the input (3 channels, about a
    fifth of the stem's output) avoids all of that; the model returns logits, whose layout does
    not depend on it. In train mode torch's own layers run on the input as given.
    """
    if model.training or x.dim() != 4:
        return x
    return x.contiguous(memory_format=torch.channels_last)


def run_layer(layer: nn.Sequential, x: torch.Tensor, backend: Optional[str]) -> torch.Tensor:
    """nn.Sequential's forward, passing the backend to every block."""
    for block in layer:
        x = block(x, backend)
    return x
