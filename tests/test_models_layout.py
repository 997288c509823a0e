"""The models feed their fused convolutions channels_last activations whatever the input layout.

The op's output takes its input's layout, so without the models' one conversion at the input
(models/_common.py, kernel_layout) an NCHW image batch would make every activation NCHW, the
slow layout of both kernel backends.
"""

from __future__ import annotations

import pytest
import torch

import resnet_kernels
from resnet_kernels import ops

MODELS = {
    "resnet18": (resnet_kernels.resnet18, (2, 3, 64, 64)),
    "resnet50": (resnet_kernels.resnet50, (1, 3, 64, 64)),
    "resnet20": (resnet_kernels.resnet20, (2, 3, 32, 32)),
    "preact_resnet18": (resnet_kernels.preact_resnet18, (2, 3, 64, 64)),
    "preact_resnet164": (resnet_kernels.preact_resnet164, (1, 3, 32, 32)),
}


def record_inputs(monkeypatch) -> list:
    """The x of every fused op call from now on."""
    seen = []
    op = ops.conv_bn_act

    def spy(x, *args):
        seen.append(x)
        return op(x, *args)

    monkeypatch.setattr(ops, "conv_bn_act", spy)
    return seen


@pytest.mark.parametrize("name", MODELS)
def test_every_fused_call_gets_channels_last_from_an_nchw_input(monkeypatch, name, gen):
    build, shape = MODELS[name]
    model = build().eval()
    x = torch.randn(shape, generator=gen)
    assert x.is_contiguous()
    seen = record_inputs(monkeypatch)
    with torch.no_grad():
        from_nchw = model(x, backend="reference")
    assert len(seen) >= 17  # every conv of the net (ResNet-18: 20, ResNet-20: 19)
    not_nhwc = [i for i, t in enumerate(seen) if t.stride(1) != 1]
    assert not not_nhwc, f"calls {not_nhwc} of {len(seen)} got an NCHW x"
    with torch.no_grad():
        from_nhwc = model(x.contiguous(memory_format=torch.channels_last), backend="reference")
    assert torch.equal(from_nchw, from_nhwc)  # the same computation either way
    assert x.is_contiguous(), "the caller's tensor was changed"


def test_train_mode_runs_torch_layers_on_the_input_as_given():
    from resnet_kernels.models._common import kernel_layout

    model = resnet_kernels.resnet20()
    x = torch.randn(2, 3, 8, 8)
    assert kernel_layout(model.train(), x) is x
    assert kernel_layout(model.eval(), x).stride(1) == 1
    cl = x.contiguous(memory_format=torch.channels_last)
    assert kernel_layout(model.eval(), cl) is cl
