"""resnet_kernels.convert: torchvision models in, fused models with the same function out."""

import pytest
import torch
from torch import nn

from resnet_kernels.models import BasicBlock, Bottleneck, ResNet, convert
from resnet_kernels.nn import ConvBNAct
from test_models_helpers import assert_close, images, randomize_batchnorm

tv = pytest.importorskip("torchvision.models.resnet")
from torchvision.ops import FrozenBatchNorm2d  # noqa: E402


def _torchvision(seed=0, **kwargs):
    torch.manual_seed(seed)
    kwargs.setdefault("num_classes", 10)
    return randomize_batchnorm(tv.ResNet(kwargs.pop("block", tv.Bottleneck), [1, 1, 1, 1], **kwargs), seed)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(block=tv.BasicBlock),
        dict(groups=4, width_per_group=16, replace_stride_with_dilation=[False, False, True]),
        dict(norm_layer=FrozenBatchNorm2d),
    ],
    ids=["basic", "grouped-dilated", "frozen-bn"],
)
def test_convert_gives_same_outputs(kwargs):
    source = _torchvision(**kwargs).eval()
    fused = convert(source, backend="reference")
    assert type(fused) is ResNet and fused.backend == "reference"
    assert isinstance(fused.layer2[0].downsample, ConvBNAct)
    expected_block = BasicBlock if kwargs.get("block") is tv.BasicBlock else Bottleneck
    assert type(fused.layer1[0]) is expected_block
    assert type(fused.bn1) is type(source.bn1)
    x = images(2, 48)
    with torch.no_grad():
        assert_close(fused(x), source(x))


def test_frozen_batchnorm_backbone_in_train_mode():
    """Detection backbones train with frozen BatchNorm and frozen early layers: both survive."""
    source = _torchvision(norm_layer=FrozenBatchNorm2d).train()
    source.conv1.requires_grad_(False)
    fused = convert(source)
    assert fused.training and not fused.conv1.weight.requires_grad and fused.fc.weight.requires_grad
    x = images(2, 32)
    assert_close(fused(x, backend="reference"), source(x))


def test_convert_keeps_weights_dtype_format_and_per_module_modes():
    source = _torchvision().to(torch.float64, memory_format=torch.channels_last).train()
    source.layer1[0].bn1.eval()
    source.layer3[0].downsample[1].eps = 1e-3
    fused = convert(source)
    assert fused.conv1.weight.dtype == torch.float64
    assert fused.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not fused.layer1[0].bn1.training and fused.layer1[0].bn2.training
    assert fused.layer3[0].downsample[1].eps == 1e-3
    theirs = source.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in fused.state_dict().items())
    source.eval()
    fused.eval()
    x = images(1, 32).double()
    with torch.no_grad():
        assert_close(fused(x, backend="reference"), source(x), rel=1e-6)


def _replace(attr, module):
    def edit(model):
        setattr(model, attr, module)
        return model

    return edit


class _SubclassedResNet(tv.ResNet):
    def forward(self, x):
        return super().forward(x) * 2


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: nn.Sequential(nn.Conv2d(3, 8, 3)), "it is a torch.nn.modules.container.Sequential"),
        (lambda: _SubclassedResNet(tv.BasicBlock, [1, 1, 1, 1]), "_SubclassedResNet"),
        (lambda: _replace("maxpool", nn.Identity())(_torchvision()), "maxpool is a Identity"),
        (lambda: _replace("fc", nn.Sequential(nn.Linear(2048, 10)))(_torchvision()), "fc is a Sequential"),
        (lambda: _replace("avgpool", nn.AdaptiveAvgPool2d(2))(_torchvision()), "avgpool"),
        (lambda: tv.ResNet(tv.BasicBlock, [1, 1, 1, 1], norm_layer=lambda c: nn.GroupNorm(2, c)), "GroupNorm"),
    ],
    ids=["not-a-resnet", "subclass", "maxpool-removed", "fc-replaced", "pool-changed", "groupnorm"],
)
def test_unknown_architectures_are_refused(make, match):
    with pytest.raises(ValueError, match=f"cannot convert this model: .*{match}"):
        convert(make())
