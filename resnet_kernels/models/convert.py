"""``convert(model)``: a torchvision ResNet-family model as the fused model, same weights.

Accepted: ``torchvision.models.ResNet`` itself (every torchvision ResNet,
ResNeXt and Wide ResNet, any ``num_classes``, dilation, and BatchNorm2d,
SyncBatchNorm or FrozenBatchNorm2d as the norm layer, as detection backbones
have) with torchvision's own blocks, unmodified. Anything else is refused by
name rather than converted into a model that computes something different:
the check compares every submodule's type and configuration, so a replaced
pool, an extra layer or a subclass with its own forward is caught.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..nn import ConvBNAct
from .imagenet import BasicBlock, Bottleneck, ResNet
from .weights import check_state_dict

_LAYERS = (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AdaptiveAvgPool2d)


def _torchvision_types():
    """torchvision's resnet module and the norm layer types convert() accepts (torchvision is optional)."""
    try:
        import torchvision.models.resnet as tv
        from torchvision.ops import FrozenBatchNorm2d
    except ImportError as err:
        raise ImportError(f"convert() needs torchvision ({err})") from None
    return tv, (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d)


def _refuse(reason: str) -> ValueError:
    return ValueError(
        f"convert() cannot convert this model: {reason}. It converts torchvision.models.ResNet models "
        "(resnet*, resnext*, wide_resnet*) built by torchvision, unmodified."
    )


def _config(model: nn.Module):
    """ResNet(...) arguments that rebuild ``model``'s architecture."""
    tv, norms = _torchvision_types()
    if type(model) is not tv.ResNet:
        raise _refuse(f"it is a {type(model).__module__}.{type(model).__qualname__}")
    block_type = type(model.layer1[0])
    block = {tv.BasicBlock: BasicBlock, tv.Bottleneck: Bottleneck}.get(block_type)
    if block is None:
        raise _refuse(f"layer1[0] is a {block_type.__qualname__}, not a torchvision BasicBlock/Bottleneck")
    norm_layer = type(model.bn1)
    if not issubclass(norm_layer, norms):
        raise _refuse(f"its norm layer is {norm_layer.__qualname__}, not a BatchNorm")
    if type(model.fc) is not nn.Linear:
        raise _refuse(f"fc is a {type(model.fc).__qualname__}, not a Linear")
    try:
        # layer2..4 always have a downsample (their channels change); its stride
        # is 1 exactly where torchvision replaced the stride with dilation.
        dilated = [getattr(model, f"layer{i}")[0].downsample[0].stride == (1, 1) for i in (2, 3, 4)]
        layers = [len(model.layer1), len(model.layer2), len(model.layer3), len(model.layer4)]
    except (AttributeError, TypeError, IndexError) as err:
        raise _refuse(f"its layers are not torchvision's ({err})") from None
    return dict(
        block=block,
        layers=layers,
        num_classes=model.fc.out_features,
        groups=model.groups,
        width_per_group=model.base_width,
        replace_stride_with_dilation=dilated,
        norm_layer=norm_layer,
    )


def _copy_norm_settings(source: dict[str, nn.Module], fused: nn.Module) -> None:
    """Each norm layer's eps and momentum, which the norm_layer constructor left at their defaults."""
    _, norms = _torchvision_types()
    for name, module in fused.named_modules():
        theirs = source.get(name)
        if isinstance(module, norms) and type(theirs) is type(module):
            module.eps = theirs.eps
            if hasattr(theirs, "momentum"):
                module.momentum = theirs.momentum


def _check_same_structure(source: dict[str, nn.Module], fused: nn.Module) -> None:
    tv, norms = _torchvision_types()
    # torchvision type -> the type it becomes; ReLU modules are fused away.
    containers = {tv.ResNet: ResNet, tv.BasicBlock: BasicBlock, tv.Bottleneck: Bottleneck}
    ours = dict(fused.named_modules())
    seen = set()
    for name, module in source.items():
        if type(module) is nn.ReLU:
            continue
        mine = ours.get(name)
        if type(module) is nn.Sequential:
            same = type(mine) in (nn.Sequential, ConvBNAct)
        elif type(module) in containers:
            same = type(mine) is containers[type(module)]
        elif isinstance(module, _LAYERS + norms):
            # A leaf's repr shows its whole configuration: sizes, kernel, stride, padding, eps, ...
            same = repr(mine) == repr(module)
        else:
            raise _refuse(f"{name or 'the model'} is a {type(module).__qualname__}")
        if not same:
            expected = "nothing" if mine is None else repr(mine)
            raise _refuse(f"{name} is {module!r} where a torchvision-built ResNet has {expected}")
        seen.add(name)
    extra = sorted(set(ours) - seen)
    if extra:
        raise _refuse(f"it lacks {', '.join(extra)}")


def convert(model: nn.Module, *, backend: Optional[str] = None) -> ResNet:
    """The fused equivalent of a torchvision ResNet-family ``model``.

    A new model with the same architecture and a copy of the same parameters
    and buffers (with their requires_grad), on the same device, dtype and
    memory format, each submodule in the same train/eval mode; ``backend``
    is its default backend. ``model`` itself is not modified.
    """
    config = _config(model)
    # Built on the meta device: no time spent on a random init that the
    # source's weights overwrite anyway.
    with torch.device("meta"):
        fused = ResNet(**config, backend=backend)
    source = dict(model.named_modules())
    _copy_norm_settings(source, fused)
    _check_same_structure(source, fused)
    state_dict = model.state_dict()
    check_state_dict(fused, state_dict)
    weight = model.conv1.weight
    channels_last = weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    fused.to_empty(device=weight.device)
    fused.to(dtype=weight.dtype, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    fused.load_state_dict(state_dict)
    for name, param in fused.named_parameters():
        param.requires_grad_(model.get_parameter(name).requires_grad)
    for name, module in fused.named_modules():
        module.training = source[name].training
    return fused
