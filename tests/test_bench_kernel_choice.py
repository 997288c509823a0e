"""The cuda-wgmma benchmark providers: the kernel choice is scoped to their calls,
and they explain why they cannot run (on the CPU: no CUDA tensors)."""

import os

import pytest
import torch
from conftest import needs_cuda
from helpers import REL_TOL, rel_error

from resnet_kernels.bench import kernel_choice
from resnet_kernels.bench.cases import layer_reference
from resnet_kernels.bench.data import layer_inputs
from resnet_kernels.bench.layer_providers import Unavailable, layer_provider
from resnet_kernels.bench.model_providers import inference_model
from resnet_kernels.layer_shapes import model_layers

ENV = kernel_choice.ENV


@pytest.mark.parametrize("before", [None, "mma"])
def test_the_choice_is_set_inside_and_restored_after(monkeypatch, before):
    if before is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, before)
    with pytest.raises(ZeroDivisionError):
        with kernel_choice.kernel_choice("wgmma"):
            assert os.environ[ENV] == "wgmma"
            raise ZeroDivisionError  # an error inside still restores the variable
    assert os.environ.get(ENV) == before


def test_the_wrapped_model_sees_the_choice_only_during_forward(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(os.environ.get(ENV))
            return x + 1

    wrapped = kernel_choice.WithKernelChoice(Probe(), "wgmma")
    assert torch.equal(wrapped(torch.zeros(2)), torch.ones(2))
    assert seen == ["wgmma"] and ENV not in os.environ


def test_cpu_tensors_are_refused_with_a_reason():
    assert "CUDA tensors" in kernel_choice.wgmma_unavailable_reason(torch.zeros(1))


def test_providers_say_why_they_cannot_run_here():
    layer = next(layer for layer in model_layers("resnet50") if layer.name == "layer3.1.conv2")
    x = torch.zeros(1, layer.C, layer.H, layer.W, dtype=torch.float16)
    with pytest.raises(Unavailable, match="."):
        layer_provider("cuda-wgmma", layer, x)
    with pytest.raises(Unavailable, match="."):
        inference_model("cuda-wgmma-graph", torch.nn.Identity(), x)


@needs_cuda
def test_on_an_h100_the_wgmma_provider_runs_the_wgmma_kernel_correctly(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    reason = kernel_choice.wgmma_unavailable_reason(torch.zeros(1, device="cuda"))
    if reason is not None:
        pytest.skip(reason)
    # 3x3 256->256 on 14x14 at batch 128: compute-bound, 392 CTAs of 128x128: the wgmma choice takes it.
    layer = next(layer for layer in model_layers("resnet50") if layer.name == "layer3.1.conv2")
    inputs = layer_inputs(layer, 128, torch.float16, torch.Generator(device="cuda").manual_seed(0))
    assert kernel_choice._plan(layer, inputs.x, kernel_choice.WGMMA).kernel == "wgmma"
    impl = layer_provider("cuda-wgmma", layer, inputs.x)
    out = impl.fn(*impl.prepare(inputs))
    assert ENV not in os.environ
    err = rel_error(out, layer_reference(layer, inputs))
    assert err <= REL_TOL[torch.float16], f"relative error {err:.3g}"


# --- the triton provider's label: the autotuned tile that ran ------------------------------------


def test_triton_label_names_the_tile_of_the_latest_launch_and_the_split(monkeypatch):
    """After a launch (the interpreter's one config) the label is that tile; the split is the
    backend's rule for the layer (an H100's 132 SMs split layer4's 3x3 at batch 1, not at 32)."""
    from resnet_kernels import functional
    from resnet_kernels.bench.triton_choice import config_label, triton_label
    from resnet_kernels.triton import tuning
    from resnet_kernels.triton.conv_kernel import conv_bn_act_kernel

    x = torch.randn(1, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    functional.conv_bn_act(x, torch.randn(16, 8, 1, 1), backend="triton")
    layer = next(lay for lay in model_layers("resnet50") if lay.name == "layer4.1.conv2")
    expected = config_label(conv_bn_act_kernel.best_config)
    assert expected == "{}x{}x{} w{} s{}".format(*tuning._INTERPRETER)
    sample = torch.empty(1, layer.C, layer.H, layer.W).contiguous(memory_format=torch.channels_last)
    assert triton_label(layer, sample) == expected  # the CPU has no SMs: nothing splits
    monkeypatch.setattr(tuning, "num_sms", lambda device: 132)
    assert triton_label(layer, sample) == expected + " split 16"
    assert triton_label(layer, sample.expand(32, -1, -1, -1)) == expected


def test_triton_config_labels_name_tma_persistent_and_stream_k():
    from resnet_kernels.bench.triton_choice import config_label
    from resnet_kernels.triton import tuning

    spec = (128, 128, 64, 8, 4)
    assert config_label(tuning._config(spec)) == "128x128x64 w8 s4"
    assert config_label(tuning._config(spec, tma=True)) == "128x128x64 w8 s4 tma"
    assert config_label(tuning._config(spec, persistent=True)) == "128x128x64 w8 s4 tma-persistent"
    assert config_label(tuning._config(spec, stream_k=True)) == "128x128x64 w8 s4 stream-k"
