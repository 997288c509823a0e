"""ResNet, ResNeXt and Wide ResNet for ImageNet: drop-ins for torchvision's.

Same constructor and builder signatures, module names, parameter registration
order (so the same state_dict keys in the same order, and the same random
init from the same seed) as ``torchvision.models.resnet``. Differences: the
stateless ``relu`` modules are gone (ReLU runs inside the fused op), forward
takes ``backend=``, and in eval mode each convolution is one fused op call:

* stem: conv1 + bn1 + ReLU;
* BasicBlock: conv1 + bn1 + ReLU, then conv2 + bn2 + residual + ReLU;
* Bottleneck (v1.5, stride in the 3x3): conv1/conv2 + BN + ReLU, then
  conv3 + bn3 + residual + ReLU;
* downsample (option B projection): conv + BN, no ReLU.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from ..nn import ConvBNAct, FusedModule
from ._common import conv1x1, conv3x3, init_weights, kernel_layout, overwrite_named_param, run_layer
from .weights import is_weights_enum, load_weights, resolve

__all__ = [
    "ResNet",
    "BasicBlock",
    "Bottleneck",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
]


class BasicBlock(FusedModule):
    expansion: int = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[ConvBNAct] = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: Optional[Callable[..., nn.Module]] = None,
    ) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor, backend: Optional[str] = None) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x, backend=backend)
        out = self.conv_bn_act(x, self.conv1, self.bn1, backend=backend)
        # The residual add and the block's last ReLU run in conv2's epilogue.
        return self.conv_bn_act(out, self.conv2, self.bn2, identity, backend=backend)


class Bottleneck(FusedModule):
    # The stride sits in the 3x3 convolution (conv2), as in torchvision ("ResNet v1.5").
    expansion: int = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[ConvBNAct] = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: Optional[Callable[..., nn.Module]] = None,
    ) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor, backend: Optional[str] = None) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x, backend=backend)
        out = self.conv_bn_act(x, self.conv1, self.bn1, backend=backend)
        out = self.conv_bn_act(out, self.conv2, self.bn2, backend=backend)
        return self.conv_bn_act(out, self.conv3, self.bn3, identity, backend=backend)


class ResNet(FusedModule):
    """torchvision's ResNet on the fused op; ``backend`` is the default of :meth:`forward`.

    ``norm_layer`` must make BatchNorm-like modules with running statistics
    (BatchNorm2d, SyncBatchNorm, torchvision's FrozenBatchNorm2d): eval mode folds them.
    """

    def __init__(
        self,
        block: type[Union[BasicBlock, Bottleneck]],
        layers: list[int],
        num_classes: int = 1000,
        zero_init_residual: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
        replace_stride_with_dilation: Optional[list[bool]] = None,
        norm_layer: Optional[Callable[..., nn.Module]] = None,
        backend: Optional[str] = None,
    ) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self._norm_layer = norm_layer
        self.backend = backend

        self.inplanes = 64
        self.dilation = 1
        if replace_stride_with_dilation is None:
            # each element says whether to replace the 2x2 stride of layer2..4 with a dilated convolution
            replace_stride_with_dilation = [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError(
                "replace_stride_with_dilation should be None "
                f"or a 3-element tuple, got {replace_stride_with_dilation}"
            )
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, dilate=replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, dilate=replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, dilate=replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        init_weights(self)
        # Zero-initialize the last BN in each residual branch, so that each
        # block starts as an identity (Goyal et al. 2017, +0.2~0.3%).
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck) and m.bn3.weight is not None:
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock) and m.bn2.weight is not None:
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(
        self,
        block: type[Union[BasicBlock, Bottleneck]],
        planes: int,
        blocks: int,
        stride: int = 1,
        dilate: bool = False,
    ) -> nn.Sequential:
        norm_layer = self._norm_layer
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = ConvBNAct(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                norm_layer(planes * block.expansion),
                relu=False,
            )

        layers = [
            block(
                self.inplanes, planes, stride, downsample, self.groups, self.base_width, previous_dilation, norm_layer
            )
        ]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(
                block(
                    self.inplanes,
                    planes,
                    groups=self.groups,
                    base_width=self.base_width,
                    dilation=self.dilation,
                    norm_layer=norm_layer,
                )
            )
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, backend: Optional[str] = None) -> torch.Tensor:
        backend = self.backend if backend is None else backend
        x = self.conv_bn_act(kernel_layout(self, x), self.conv1, self.bn1, backend=backend)
        x = self.maxpool(x)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = run_layer(layer, x, backend)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def _resnet(
    block: type[Union[BasicBlock, Bottleneck]],
    layers: list[int],
    weights: Any,
    enum_name: str,
    **kwargs: Any,
) -> ResNet:
    weights = resolve(weights, enum_name)
    if is_weights_enum(weights):
        overwrite_named_param(kwargs, "num_classes", len(weights.meta["categories"]))
    model = ResNet(block, layers, **kwargs)
    if weights is not None:
        load_weights(model, weights)
    return model


# Builders: torchvision's signatures. ``progress`` is accepted for
# compatibility and unused: weights are never downloaded (see weights.py).


def resnet18(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> ResNet:
    """ResNet-18 (He et al. 2015)."""
    return _resnet(BasicBlock, [2, 2, 2, 2], weights, "ResNet18_Weights", **kwargs)


def resnet34(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> ResNet:
    """ResNet-34 (He et al. 2015)."""
    return _resnet(BasicBlock, [3, 4, 6, 3], weights, "ResNet34_Weights", **kwargs)


def resnet50(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> ResNet:
    """ResNet-50 (He et al. 2015; v1.5, stride in the 3x3 as torchvision)."""
    return _resnet(Bottleneck, [3, 4, 6, 3], weights, "ResNet50_Weights", **kwargs)


def resnet101(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> ResNet:
    """ResNet-101 (He et al. 2015; v1.5)."""
    return _resnet(Bottleneck, [3, 4, 23, 3], weights, "ResNet101_Weights", **kwargs)


def resnet152(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> ResNet:
    """ResNet-152 (He et al. 2015; v1.5)."""
    return _resnet(Bottleneck, [3, 8, 36, 3], weights, "ResNet152_Weights", **kwargs)


def resnext50_32x4d(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> ResNet:
    """ResNeXt-50 32x4d (Xie et al. 2017)."""
    overwrite_named_param(kwargs, "groups", 32)
    overwrite_named_param(kwargs, "width_per_group", 4)
    return _resnet(Bottleneck, [3, 4, 6, 3], weights, "ResNeXt50_32X4D_Weights", **kwargs)


def resnext101_32x8d(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> ResNet:
    """ResNeXt-101 32x8d (Xie et al. 2017)."""
    overwrite_named_param(kwargs, "groups", 32)
    overwrite_named_param(kwargs, "width_per_group", 8)
    return _resnet(Bottleneck, [3, 4, 23, 3], weights, "ResNeXt101_32X8D_Weights", **kwargs)


def resnext101_64x4d(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> ResNet:
    """ResNeXt-101 64x4d (Xie et al. 2017)."""
    overwrite_named_param(kwargs, "groups", 64)
    overwrite_named_param(kwargs, "width_per_group", 4)
    return _resnet(Bottleneck, [3, 4, 23, 3], weights, "ResNeXt101_64X4D_Weights", **kwargs)


def wide_resnet50_2(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> ResNet:
    """Wide ResNet-50-2 (Zagoruyko & Komodakis 2016): bottleneck width doubled."""
    overwrite_named_param(kwargs, "width_per_group", 64 * 2)
    return _resnet(Bottleneck, [3, 4, 6, 3], weights, "Wide_ResNet50_2_Weights", **kwargs)


def wide_resnet101_2(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> ResNet:
    """Wide ResNet-101-2 (Zagoruyko & Komodakis 2016): bottleneck width doubled."""
    overwrite_named_param(kwargs, "width_per_group", 64 * 2)
    return _resnet(Bottleneck, [3, 4, 23, 3], weights, "Wide_ResNet101_2_Weights", **kwargs)
