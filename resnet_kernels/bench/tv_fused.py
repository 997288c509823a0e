"""torchvision's ResNet with BatchNorm folded and cuDNN's fused ops: the strongest
cuDNN baseline that stock PyTorch offers for inference.

Every conv + BN (+ add) (+ ReLU) becomes one call of torch.cudnn_convolution_relu
or torch.cudnn_convolution_add_relu on weights with the BN folded in (scale) and
a bias (shift); the projection shortcut, which has no ReLU, is conv2d with a bias.
Max pooling, average pooling and the final linear layer are torchvision's.
The ops are looked up at call time, so the tests can stand CPU versions in for them.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class FusedConv(nn.Module):
    """conv + folded BN, then ReLU and/or a residual add as cuDNN's fused ops do them."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, relu: bool) -> None:
        from ..functional import fold_bn

        super().__init__()
        scale, shift = fold_bn(bn, conv.bias)
        weight = (conv.weight.float() * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype)
        self.register_buffer("weight", weight.contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", shift.to(conv.weight.dtype))
        self.geometry = (list(conv.stride), list(conv.padding), list(conv.dilation), conv.groups)
        self.relu = relu

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        if residual is not None:
            return torch.cudnn_convolution_add_relu(x, self.weight, residual, 1.0, self.bias, *self.geometry)
        if self.relu:
            return torch.cudnn_convolution_relu(x, self.weight, self.bias, *self.geometry)
        return F.conv2d(x, self.weight, self.bias, *self.geometry)


class FusedBlock(nn.Module):
    """A BasicBlock (two convs) or Bottleneck (three); the last one adds the shortcut."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        names = ["conv1", "conv2", "conv3"] if hasattr(block, "conv3") else ["conv1", "conv2"]
        self.convs = nn.ModuleList(
            FusedConv(getattr(block, name), getattr(block, "bn" + name[-1]), relu=True) for name in names
        )
        ds = block.downsample
        self.downsample = None if ds is None else FusedConv(ds[0], ds[1], relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        for conv in self.convs[:-1]:
            x = conv(x)
        return self.convs[-1](x, identity)


class FusedResNet(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.stem = FusedConv(model.conv1, model.bn1, relu=True)
        self.maxpool = model.maxpool
        self.layers = nn.Sequential(
            *(FusedBlock(block) for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for block in layer)
        )
        self.avgpool, self.fc = model.avgpool, model.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.maxpool(self.stem(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def fuse(model: nn.Module) -> FusedResNet:
    """The BN-folded, cuDNN-fused equivalent of a torchvision ResNet in eval mode."""
    if model.training:
        raise ValueError("fuse: BatchNorm folds only in eval mode; call model.eval() first")
    return FusedResNet(model).eval()
