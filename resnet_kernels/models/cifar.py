"""The CIFAR-10 ResNets and plain nets of He et al. 2015, section 4.2.

6n+2 weighted layers: a 3x3 conv (16 filters), then 3 stages of n basic
blocks (two 3x3 convs each) on 32x32, 16x16 and 8x8 maps with 16, 32 and 64
filters, global average pooling and a 10-way fc. The first conv of stages 2
and 3 has stride 2.

ResNets use option-A shortcuts everywhere: the identity, and where a block
halves the map and doubles the filters, the identity subsampled by 2 with the
new channels zero (parameter-free, so a ResNet has exactly the parameters of
its plain counterpart). The fused op takes that shortcut as its residual with
``residual_stride=2``: the input channels land in output channels [0, C_in),
zeros above, with no padded tensor ever built. Plain nets have no shortcuts.

Parameter counts (Table 6): ResNet-20 0.27M, 32 0.46M, 44 0.66M, 56 0.85M,
110 1.7M, 1202 19.4M.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import nn

from ..nn import FusedModule
from ._common import conv3x3, init_weights, kernel_layout, run_layer
from .weights import load_weights, resolve

__all__ = [
    "CifarResNet",
    "CifarBasicBlock",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnet1202",
    "plain20",
    "plain32",
    "plain44",
    "plain56",
    "plain110",
]


class CifarBasicBlock(FusedModule):
    """Two 3x3 conv-BN units; shortcut: option A (``shortcut=True``) or none (a plain net)."""

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        shortcut: bool = True,
        norm_layer: Optional[Callable[..., nn.Module]] = None,
    ) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.stride = stride
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor, backend: Optional[str] = None) -> torch.Tensor:
        out = self.conv_bn_act(x, self.conv1, self.bn1, backend=backend)
        if not self.shortcut:
            return self.conv_bn_act(out, self.conv2, self.bn2, backend=backend)
        # Option A: x read at stride `self.stride`, its channels first, zeros above.
        return self.conv_bn_act(out, self.conv2, self.bn2, x, residual_stride=self.stride, backend=backend)

    def extra_repr(self) -> str:
        return f"shortcut={'option A' if self.shortcut else 'none (plain)'}"


class CifarResNet(FusedModule):
    """A CIFAR ResNet (``shortcut=True``) or plain net of ``6 * blocks_per_stage + 2`` layers."""

    def __init__(
        self,
        blocks_per_stage: int,
        num_classes: int = 10,
        shortcut: bool = True,
        zero_init_residual: bool = False,
        norm_layer: Optional[Callable[..., nn.Module]] = None,
        backend: Optional[str] = None,
    ) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        if zero_init_residual and not shortcut:
            raise ValueError("zero_init_residual needs shortcuts; a plain net would start with an all-zero output")
        self.backend = backend
        self.conv1 = conv3x3(3, 16)
        self.bn1 = norm_layer(16)
        widths = (16, 32, 64)
        inplanes = 16
        for index, planes in enumerate(widths, start=1):
            stride = 1 if index == 1 else 2
            blocks = [CifarBasicBlock(inplanes, planes, stride, shortcut, norm_layer)]
            blocks += [CifarBasicBlock(planes, planes, 1, shortcut, norm_layer) for _ in range(1, blocks_per_stage)]
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)

        init_weights(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, CifarBasicBlock) and m.bn2.weight is not None:
                    nn.init.constant_(m.bn2.weight, 0)

    def forward(self, x: torch.Tensor, backend: Optional[str] = None) -> torch.Tensor:
        backend = self.backend if backend is None else backend
        x = self.conv_bn_act(kernel_layout(self, x), self.conv1, self.bn1, backend=backend)
        for layer in (self.layer1, self.layer2, self.layer3):
            x = run_layer(layer, x, backend)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def _cifar(depth: int, shortcut: bool, weights: Any, **kwargs: Any) -> CifarResNet:
    weights = resolve(weights)
    model = CifarResNet((depth - 2) // 6, shortcut=shortcut, **kwargs)
    if weights is not None:
        load_weights(model, weights)
    return model


def resnet20(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-20 (n=3), option A, 0.27M parameters."""
    return _cifar(20, True, weights, **kwargs)


def resnet32(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-32 (n=5), option A, 0.46M parameters."""
    return _cifar(32, True, weights, **kwargs)


def resnet44(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-44 (n=7), option A, 0.66M parameters."""
    return _cifar(44, True, weights, **kwargs)


def resnet56(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-56 (n=9), option A, 0.85M parameters."""
    return _cifar(56, True, weights, **kwargs)


def resnet110(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-110 (n=18), option A, 1.7M parameters."""
    return _cifar(110, True, weights, **kwargs)


def resnet1202(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-1202 (n=200), option A, 19.4M parameters."""
    return _cifar(1202, True, weights, **kwargs)


def plain20(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> CifarResNet:
    """CIFAR plain-20: ResNet-20 without shortcuts."""
    return _cifar(20, False, weights, **kwargs)


def plain32(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> CifarResNet:
    """CIFAR plain-32: ResNet-32 without shortcuts."""
    return _cifar(32, False, weights, **kwargs)


def plain44(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> CifarResNet:
    """CIFAR plain-44: ResNet-44 without shortcuts."""
    return _cifar(44, False, weights, **kwargs)


def plain56(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> CifarResNet:
    """CIFAR plain-56: ResNet-56 without shortcuts."""
    return _cifar(56, False, weights, **kwargs)


def plain110(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> CifarResNet:
    """CIFAR plain-110: ResNet-110 without shortcuts."""
    return _cifar(110, False, weights, **kwargs)
