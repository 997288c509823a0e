"""CIFAR ResNets (option A) and plain nets against an independent eager implementation, and the paper's sizes."""


import pytest
import torch
import torch.nn.functional as F

import resnet_kernels.models as rk
from test_models_helpers import assert_close, assert_train_step_matches_eager, images, randomize_batchnorm


def _bn(x, bn, training):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, training, bn.momentum, bn.eps)


def _conv(x, conv):
    return F.conv2d(x, conv.weight, None, conv.stride, conv.padding)


def eager_cifar(model, x, training=False):
    """He et al. 2015, section 4.2, written out with torch.nn.functional from the model's parameters only."""
    out = F.relu(_bn(_conv(x, model.conv1), model.bn1, training))
    for layer in (model.layer1, model.layer2, model.layer3):
        for block in layer:
            y = F.relu(_bn(_conv(out, block.conv1), block.bn1, training))
            y = _bn(_conv(y, block.conv2), block.bn2, training)
            if block.shortcut:  # option A: subsample by the block's stride, zero channels appended
                s = out[:, :, :: block.stride, :: block.stride]
                y = y + F.pad(s, (0, 0, 0, 0, 0, y.shape[1] - s.shape[1]))
            out = F.relu(y)
    return model.fc(out.mean((2, 3)))


def _model(name, seed=0):
    torch.manual_seed(seed)
    return randomize_batchnorm(getattr(rk, name)(), seed)


@pytest.mark.parametrize("name", ["resnet20", "plain20"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_eval_matches_eager(name, channels_last):
    model = _model(name).eval()
    x = images(2, 32, channels_last=channels_last)
    with torch.no_grad():
        assert_close(model(x, backend="reference"), eager_cifar(model, x))


def test_train_step_matches_eager():
    model = _model("resnet20").train()
    assert_train_step_matches_eager(model, eager_cifar, images(4, 32))


# Table 6 of He et al. 2015, to its rounding (millions, significant digits as printed).
PAPER_PARAMS = {
    "resnet20": (0.27, 2),
    "resnet32": (0.46, 2),
    "resnet44": (0.66, 2),
    "resnet56": (0.85, 2),
    "resnet110": (1.7, 1),
    "resnet1202": (19.4, 1),
}


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_parameter_counts_match_the_paper(name):
    millions, digits = PAPER_PARAMS[name]
    with torch.device("meta"):
        model = getattr(rk, name)()
    depth = int(name.removeprefix("resnet"))
    assert sum(1 for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))) == depth
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, digits) == millions


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_plain_nets_have_their_resnets_parameters(depth):
    """Option A is parameter-free: same depth, width and parameters (He et al. 2015, 4.2)."""
    with torch.device("meta"):
        plain, resnet = getattr(rk, f"plain{depth}")(), getattr(rk, f"resnet{depth}")()
    assert [(k, v.shape) for k, v in plain.state_dict().items()] == [
        (k, v.shape) for k, v in resnet.state_dict().items()
    ]
    assert not any(b.shortcut for b in plain.modules() if isinstance(b, rk.CifarBasicBlock))


def test_zero_init_residual():
    torch.manual_seed(0)
    model = rk.resnet20(zero_init_residual=True)
    assert all(not b.bn2.weight.any() for b in model.modules() if isinstance(b, rk.CifarBasicBlock))
    with pytest.raises(ValueError, match="needs shortcuts"):
        rk.plain20(zero_init_residual=True)
