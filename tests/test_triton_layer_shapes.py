"""resnet_kernels.layer_shapes (the conv layers the GPU tests and benchmarks run) against
torchvision's models, observed with forward hooks on a meta-device forward pass."""

import pytest
import torch

from resnet_kernels.layer_shapes import MODELS, distinct_layers, model_layers


def _torchvision_convs(model_name):
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        model = getattr(torchvision.models, model_name)()
    seen = []

    def hook(name):
        def record(module, inputs, _output):
            _, c, h, w = inputs[0].shape
            r, s = module.kernel_size
            seen.append((name, c, module.out_channels, h, w, r, s, module.stride[0], module.padding[0], module.groups))

        return record

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            assert module.stride[0] == module.stride[1] and module.padding[0] == module.padding[1]
            module.register_forward_hook(hook(name))
    model(torch.empty(1, 3, 224, 224, device="meta"))
    return seen


@pytest.mark.parametrize("model_name", list(MODELS))
def test_layers_match_torchvision(model_name):
    ours = model_layers(model_name)
    assert [tuple(layer[:10]) for layer in ours] == _torchvision_convs(model_name)
    block_end = "conv2" if MODELS[model_name][0] == "basic" else "conv3"
    for layer in ours:
        assert layer.has_residual == layer.name.endswith(block_end)
        assert layer.relu == ("downsample" not in layer.name)


def test_resnet50_totals():
    layers = model_layers("resnet50")
    assert len(layers) == 53
    assert sum(layer.flops(1) for layer in layers) == pytest.approx(8.17e9, rel=1e-3)  # DESIGN.md


def test_distinct_layers_are_distinct_and_named_by_model():
    layers = distinct_layers()
    assert len({layer[1:] for layer in layers}) == len(layers)
    assert layers[0].name == "resnet18.conv1"
    assert any(layer.groups == 32 and layer.name.startswith("resnext50_32x4d.") for layer in layers)
    assert {layer[1:] for model in MODELS for layer in model_layers(model)} == {layer[1:] for layer in layers}
