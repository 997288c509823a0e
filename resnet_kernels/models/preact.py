"""Pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks").

Each unit is BN-ReLU-conv, and nothing follows the addition: the shortcut is
a clean identity path. Fused form of a unit (eval mode):

* the unit's leading BN-ReLU is the prologue of its first convolution (the
  op's ``in_scale``/``in_shift``): it must read the un-activated ``x``,
  which the identity shortcut also carries;
* every later BN-ReLU directly follows a convolution whose output nothing else
  reads, so it runs as that convolution's epilogue (the same function as the
  next convolution's prologue, applied once per output instead of once per
  kernel tap);
* the last convolution adds the shortcut with ``relu=False``.

Where a unit changes shape, the shortcut is a 1x1 projection that reads the
pre-activated input too (the reference code's "both_preact"), with the same
BN-ReLU prologue. Bottleneck units put the stride in the 3x3 convolution, as
torchvision does (the ImageNet reference code, fb.resnet.torch, does too).

ImageNet (fb.resnet.torch ``preresnet``): stem conv 7x7/2 + BN + ReLU, max
pool; the first unit of layer1 has no leading BN-ReLU (the stem just applied
one); 4 stages; final BN-ReLU, average pool, fc. Depths 18/34 (basic) and
50/101/152/200 (bottleneck).

CIFAR (the 1k-layer reference code): stem conv 3x3 with 16 filters, no BN (the
first unit's BN-ReLU follows); stages on 32/16/8 maps with 16/32/64 bottleneck
widths (x4 outputs for bottleneck units); final BN-ReLU, average pool,
fc. ResNet-110 (basic, 1.7M parameters), 164 (bottleneck, 1.7M), 1001
(bottleneck, 10.2M).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from ..nn import FusedModule
from ._common import conv1x1, conv3x3, init_weights, kernel_layout, run_layer
from .weights import load_weights, resolve

__all__ = [
    "PreActResNet",
    "CifarPreActResNet",
    "PreActBasicBlock",
    "PreActBottleneck",
    "preact_resnet18",
    "preact_resnet34",
    "preact_resnet50",
    "preact_resnet101",
    "preact_resnet152",
    "preact_resnet200",
    "preact_resnet110",
    "preact_resnet164",
    "preact_resnet1001",
]

NormLayer = Optional[Callable[..., nn.Module]]


def _projection(inplanes: int, outplanes: int, stride: int) -> Optional[nn.Conv2d]:
    return conv1x1(inplanes, outplanes, stride) if stride != 1 or inplanes != outplanes else None


class PreActBasicBlock(FusedModule):
    """BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus the shortcut. ``preact=False``: no leading BN-ReLU."""

    expansion: int = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, preact: bool = True, norm_layer: NormLayer = None
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        self.bn1 = norm_layer(inplanes) if preact else None
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = _projection(inplanes, planes, stride)
        self.stride = stride

    def forward(self, x: torch.Tensor, backend: Optional[str] = None) -> torch.Tensor:
        inp, pre_bn = self.pre_activation(x, self.bn1)
        shortcut = x
        if self.downsample is not None:
            shortcut = self.conv_bn_act(inp, self.downsample, pre_bn=pre_bn, relu=False, backend=backend)
        out = self.conv_bn_act(inp, self.conv1, self.bn2, pre_bn=pre_bn, backend=backend)
        return self.conv_bn_act(out, self.conv2, residual=shortcut, relu=False, backend=backend)


class PreActBottleneck(FusedModule):
    """BN-ReLU-conv1x1, BN-ReLU-conv3x3 (stride), BN-ReLU-conv1x1 (x4 channels), plus the shortcut."""

    expansion: int = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, preact: bool = True, norm_layer: NormLayer = None
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        self.bn1 = norm_layer(inplanes) if preact else None
        self.conv1 = conv1x1(inplanes, planes)
        self.bn2 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = norm_layer(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.downsample = _projection(inplanes, planes * self.expansion, stride)
        self.stride = stride

    def forward(self, x: torch.Tensor, backend: Optional[str] = None) -> torch.Tensor:
        inp, pre_bn = self.pre_activation(x, self.bn1)
        shortcut = x
        if self.downsample is not None:
            shortcut = self.conv_bn_act(inp, self.downsample, pre_bn=pre_bn, relu=False, backend=backend)
        out = self.conv_bn_act(inp, self.conv1, self.bn2, pre_bn=pre_bn, backend=backend)
        out = self.conv_bn_act(out, self.conv2, self.bn3, backend=backend)
        return self.conv_bn_act(out, self.conv3, residual=shortcut, relu=False, backend=backend)


Block = type[Union[PreActBasicBlock, PreActBottleneck]]


def _make_layer(
    block: Block, inplanes: int, planes: int, blocks: int, stride: int, preact_first: bool, norm_layer: NormLayer
) -> nn.Sequential:
    outplanes = planes * block.expansion
    units = [block(inplanes, planes, stride, preact_first, norm_layer)]
    units += [block(outplanes, planes, 1, True, norm_layer) for _ in range(1, blocks)]
    return nn.Sequential(*units)


class _PreActHead(FusedModule):
    """What both pre-activation nets end with: the final BN-ReLU, average pool, fc."""

    def head(self, x: torch.Tensor) -> torch.Tensor:
        # An ordinary BatchNorm even in eval mode: it follows a residual
        # addition, which the op adds after its scale, so it cannot fold into one.
        x = torch.relu(self.final_bn(x))
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


class PreActResNet(_PreActHead):
    """ImageNet pre-activation ResNet (fb.resnet.torch ``preresnet``)."""

    def __init__(
        self,
        block: Block,
        layers: list[int],
        num_classes: int = 1000,
        norm_layer: NormLayer = None,
        backend: Optional[str] = None,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        self.backend = backend
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            stride = 1 if index == 1 else 2
            # The stem ends in BN-ReLU, so the very first unit starts with its conv.
            layer = _make_layer(block, inplanes, planes, blocks, stride, index != 1, norm_layer)
            self.add_module(f"layer{index}", layer)
            inplanes = planes * block.expansion
        self.final_bn = norm_layer(inplanes)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor, backend: Optional[str] = None) -> torch.Tensor:
        backend = self.backend if backend is None else backend
        x = self.conv_bn_act(kernel_layout(self, x), self.conv1, self.bn1, backend=backend)
        x = self.maxpool(x)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = run_layer(layer, x, backend)
        return self.head(x)


class CifarPreActResNet(_PreActHead):
    """CIFAR pre-activation ResNet: 3 stages of ``blocks_per_stage`` units on 32/16/8 maps."""

    def __init__(
        self,
        block: Block,
        blocks_per_stage: int,
        num_classes: int = 10,
        norm_layer: NormLayer = None,
        backend: Optional[str] = None,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        self.backend = backend
        self.conv1 = conv3x3(3, 16)
        inplanes = 16
        for index, planes in enumerate((16, 32, 64), start=1):
            stride = 1 if index == 1 else 2
            layer = _make_layer(block, inplanes, planes, blocks_per_stage, stride, True, norm_layer)
            self.add_module(f"layer{index}", layer)
            inplanes = planes * block.expansion
        self.final_bn = norm_layer(inplanes)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor, backend: Optional[str] = None) -> torch.Tensor:
        backend = self.backend if backend is None else backend
        x = self.conv_bn_act(kernel_layout(self, x), self.conv1, relu=False, backend=backend)
        for layer in (self.layer1, self.layer2, self.layer3):
            x = run_layer(layer, x, backend)
        return self.head(x)


def _imagenet(block: Block, layers: list[int], weights: Any, **kwargs: Any) -> PreActResNet:
    weights = resolve(weights)
    model = PreActResNet(block, layers, **kwargs)
    if weights is not None:
        load_weights(model, weights)
    return model


def _cifar(block: Block, depth: int, weights: Any, **kwargs: Any) -> CifarPreActResNet:
    layers_per_unit = 2 if block is PreActBasicBlock else 3
    weights = resolve(weights)
    model = CifarPreActResNet(block, (depth - 2) // (3 * layers_per_unit), **kwargs)
    if weights is not None:
        load_weights(model, weights)
    return model


def preact_resnet18(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> PreActResNet:
    """ImageNet pre-activation ResNet-18 (basic units)."""
    return _imagenet(PreActBasicBlock, [2, 2, 2, 2], weights, **kwargs)


def preact_resnet34(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> PreActResNet:
    """ImageNet pre-activation ResNet-34 (basic units)."""
    return _imagenet(PreActBasicBlock, [3, 4, 6, 3], weights, **kwargs)


def preact_resnet50(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> PreActResNet:
    """ImageNet pre-activation ResNet-50 (bottleneck units)."""
    return _imagenet(PreActBottleneck, [3, 4, 6, 3], weights, **kwargs)


def preact_resnet101(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> PreActResNet:
    """ImageNet pre-activation ResNet-101 (bottleneck units)."""
    return _imagenet(PreActBottleneck, [3, 4, 23, 3], weights, **kwargs)


def preact_resnet152(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> PreActResNet:
    """ImageNet pre-activation ResNet-152 (bottleneck units)."""
    return _imagenet(PreActBottleneck, [3, 8, 36, 3], weights, **kwargs)


def preact_resnet200(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> PreActResNet:
    """ImageNet pre-activation ResNet-200 (bottleneck units), the paper's ImageNet model."""
    return _imagenet(PreActBottleneck, [3, 24, 36, 3], weights, **kwargs)


def preact_resnet110(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> CifarPreActResNet:
    """CIFAR pre-activation ResNet-110 (basic units, n=18), 1.7M parameters."""
    return _cifar(PreActBasicBlock, 110, weights, **kwargs)


def preact_resnet164(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> CifarPreActResNet:
    """CIFAR pre-activation ResNet-164 (bottleneck units, n=18), 1.7M parameters."""
    return _cifar(PreActBottleneck, 164, weights, **kwargs)


def preact_resnet1001(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> CifarPreActResNet:
    """CIFAR pre-activation ResNet-1001 (bottleneck units, n=111), 10.2M parameters."""
    return _cifar(PreActBottleneck, 1001, weights, **kwargs)
