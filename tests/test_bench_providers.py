"""What the benchmarks time computes the right thing: the cuDNN baselines (eager
and BN-folded fused), the fused torchvision model, and the tolerance rule.

On the CPU in float64, with CPU versions standing in for cuDNN's fused ops
(they exist on CUDA only); tests/test_bench_timing.py runs the real ones on a GPU.
"""

import pytest
import torch
import torch.nn.functional as F

from resnet_kernels.bench import layer_providers
from resnet_kernels.bench.accuracy import WrongResult, check, rel_error, tolerance
from resnet_kernels.bench.cases import layer_reference
from resnet_kernels.bench.data import layer_inputs, randomize_batchnorm
from resnet_kernels.bench.tv_fused import fuse
from resnet_kernels.layer_shapes import model_layers


def _conv_relu(x, w, bias, stride, padding, dilation, groups):
    return F.conv2d(x, w, bias, stride, padding, dilation, groups).relu()


def _conv_add_relu(x, w, z, alpha, bias, stride, padding, dilation, groups):
    return (F.conv2d(x, w, bias, stride, padding, dilation, groups) + alpha * z).relu()


@pytest.fixture
def cpu_cudnn_ops(monkeypatch):
    monkeypatch.setattr(torch, "cudnn_convolution_relu", _conv_relu, raising=False)
    monkeypatch.setattr(torch, "cudnn_convolution_add_relu", _conv_add_relu, raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)


LAYERS = [
    ("resnet50", "layer2.0.conv3"),  # + residual
    ("resnet50", "layer2.0.downsample.0"),  # stride 2, no ReLU
    ("resnext50_32x4d", "layer3.0.conv2"),  # grouped 3x3, stride 2
    ("resnet18", "conv1"),  # 7x7 stem
]


@pytest.mark.parametrize("model, name", LAYERS, ids=[f"{m}.{n}" for m, n in LAYERS])
@pytest.mark.parametrize("provider", ["cudnn-eager", "cudnn-fused"])
def test_layer_baselines_match_the_reference(cpu_cudnn_ops, model, name, provider):
    layer = next(layer for layer in model_layers(model) if layer.name == name)
    inputs = layer_inputs(layer, 2, torch.float64, torch.Generator().manual_seed(0))
    impl = layer_providers.layer_provider(provider, layer, inputs.x)
    out = impl.fn(*impl.prepare(inputs))
    ref = layer_reference(layer, inputs)
    # BN is folded in float32 (as fold_bn does) for the reference and cudnn-fused, not for eager.
    assert rel_error(out, ref) < 1e-6
    assert out.shape == (2, layer.K, layer.P, layer.Q)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_fused_torchvision_model_matches_torchvision(cpu_cudnn_ops, name):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)()
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    model = model.double().eval()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        assert rel_error(fuse(model)(x), model(x)) < 1e-6


def test_fuse_refuses_a_training_model():
    torchvision = pytest.importorskip("torchvision")
    with pytest.raises(ValueError, match="eval mode"):
        fuse(torchvision.models.resnet18())


def test_cudnn_fused_has_no_op_for_an_add_without_relu(cpu_cudnn_ops):
    layer = model_layers("resnet50")[0]._replace(has_residual=True, relu=False)
    with pytest.raises(layer_providers.Unavailable, match="without a ReLU"):
        layer_providers.cudnn_fused(layer)


def test_tolerance_rule():
    ref = torch.randn(64, 64, dtype=torch.float64)
    noisy = ref + 3e-3 * ref.norm() / 64 * torch.randn(64, 64, dtype=torch.float64)  # ~3e-3 relative
    assert tolerance(1e-4, torch.float16) == 2e-3  # the floor
    assert tolerance(2e-3, torch.float16) == 4e-3  # twice cuDNN's error
    err, tol = check("noisy", noisy, ref, 2e-3, torch.float16)
    assert err == pytest.approx(3e-3, rel=0.1) and tol == 4e-3
    with pytest.raises(WrongResult, match="exceeds"):
        check("noisy", noisy, ref, 1e-4, torch.float16)
    with pytest.raises(WrongResult, match="NaN"):
        check("nan", torch.full_like(ref, float("nan")), ref, 1.0, torch.float16)
    with pytest.raises(WrongResult, match="shape"):
        check("shape", ref[:32], ref, 1.0, torch.float16)
