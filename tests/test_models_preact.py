"""Pre-activation ResNets against an independent eager implementation, and the paper's sizes."""


import pytest
import torch
import torch.nn.functional as F
from torch import nn

import resnet_kernels.models as rk
from test_models_helpers import assert_close, assert_train_step_matches_eager, images, randomize_batchnorm


def _bn_relu(x, bn, training):
    return F.relu(F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, training, bn.momentum, bn.eps))


def _conv(x, conv):
    return F.conv2d(x, conv.weight, None, conv.stride, conv.padding)


def eager_preact(model, x, training=False):
    """He et al. 2016 written out with torch.nn.functional: BN-ReLU before every conv, nothing after the add."""
    out = _conv(x, model.conv1)
    if isinstance(model, rk.PreActResNet):
        out = F.max_pool2d(_bn_relu(out, model.bn1, training), 3, 2, 1)
    for layer in (model.layer1, model.layer2, model.layer3, getattr(model, "layer4", ())):
        for block in layer:
            pre = out if block.bn1 is None else _bn_relu(out, block.bn1, training)
            shortcut = out if block.downsample is None else _conv(pre, block.downsample)
            y = _conv(pre, block.conv1)
            y = _conv(_bn_relu(y, block.bn2, training), block.conv2)
            if isinstance(block, rk.PreActBottleneck):
                y = _conv(_bn_relu(y, block.bn3, training), block.conv3)
            out = y + shortcut
    out = _bn_relu(out, model.final_bn, training)
    return model.fc(out.mean((2, 3)))


SMALL = {
    "cifar-basic": (lambda: rk.CifarPreActResNet(rk.PreActBasicBlock, 2), 32),
    "cifar-bottleneck": (lambda: rk.CifarPreActResNet(rk.PreActBottleneck, 2), 32),
    "imagenet-basic": (lambda: rk.PreActResNet(rk.PreActBasicBlock, [1, 2, 1, 1], num_classes=10), 64),
    "imagenet-bottleneck": (lambda: rk.PreActResNet(rk.PreActBottleneck, [2, 1, 1, 1], num_classes=10), 64),
    "preact_resnet164": (rk.preact_resnet164, 32),
    "preact_resnet18": (rk.preact_resnet18, 32),
}


def _model(name, seed=0):
    make, size = SMALL[name]
    torch.manual_seed(seed)
    return randomize_batchnorm(make(), seed), size


@pytest.mark.parametrize("name", sorted(SMALL))
def test_eval_matches_eager(name):
    model, size = _model(name)
    model.eval()
    x = images(2, size, channels_last=name.endswith("bottleneck"))
    with torch.no_grad():
        assert_close(model(x, backend="reference"), eager_preact(model, x))


@pytest.mark.parametrize("name", ["cifar-bottleneck", "imagenet-basic"])
def test_train_step_matches_eager(name):
    """Train mode: the shared pre-activation of a projection unit runs once, so running stats update once."""
    model, size = _model(name)
    model.train()
    assert_train_step_matches_eager(model, eager_preact, images(2, size))


def test_compile_fullgraph():
    model, size = _model("cifar-bottleneck")
    model.eval()
    x = images(1, size)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        assert_close(compiled(x, backend="reference"), eager_preact(model, x))


def _main_path_layers(model):
    """Weighted layers on the main path, as the papers count depth: every conv and the fc, minus projections."""
    convs = sum(1 for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    return convs - sum(1 for m in model.modules() if getattr(m, "downsample", None) is not None)


def _weights_without_batchnorm(model):
    return sum(p.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) for p in m.parameters())


# He et al. 2016 (Identity Mappings), Tables 3-4 and the ICML tutorial, to their rounding. Those counts
# leave out BatchNorm's gamma/beta: ResNet-1001 has 10.18M conv/fc parameters plus 0.15M in BatchNorm
# (10.33M in all), and only the former rounds to the printed 10.2M.
PAPER_PARAMS = {"preact_resnet110": 1.7, "preact_resnet164": 1.7, "preact_resnet1001": 10.2}
DEPTHS = {"preact_resnet110": 110, "preact_resnet164": 164, "preact_resnet1001": 1001}


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_parameter_counts_match_the_paper(name):
    with torch.device("meta"):
        model = getattr(rk, name)()
    assert _main_path_layers(model) == DEPTHS[name]
    assert round(_weights_without_batchnorm(model) / 1e6, 1) == PAPER_PARAMS[name]


@pytest.mark.parametrize(
    "name, layers",
    [("preact_resnet18", 18), ("preact_resnet34", 34), ("preact_resnet50", 50), ("preact_resnet101", 101),
     ("preact_resnet152", 152), ("preact_resnet200", 200)],
)
def test_imagenet_depths(name, layers):
    with torch.device("meta"):
        model = getattr(rk, name)()
    assert _main_path_layers(model) == layers
