"""The benchmark suite's GPU machinery: device-time measurement, the ceilings,
and the cuDNN baselines' real fused ops. GPU only (skipped elsewhere)."""

import pytest
import torch
from conftest import needs_cuda

from resnet_kernels.bench import timing
from resnet_kernels.bench.accuracy import check, rel_error

pytestmark = needs_cuda


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
def test_measurement_times_every_set_and_feeds_the_device_clock(graph):
    sets = [(torch.randn(512, 512, device="cuda"), torch.randn(512, 512, device="cuda")) for _ in range(3)]
    m = timing.Measurement(torch.matmul, sets, graph=graph)
    assert m.calls_per_round == m.repeats * 3 and m.round_s > 0 and m.first_call_s > 0
    torch.testing.assert_close(m.output(), sets[0][0] @ sets[0][1])
    before = timing.device_clock()
    per_call = m.round()
    assert timing.device_clock() - before == pytest.approx(per_call)
    assert 10 <= m.rounds_for(0.5) <= 200


def test_graph_replay_writes_the_output_of_fresh_inputs():
    a, b = torch.randn(256, 256, device="cuda"), torch.randn(256, 256, device="cuda")
    m = timing.Measurement(torch.matmul, [(a, b)], graph=True)
    a.copy_(torch.randn_like(a))  # a replay must compute with the current contents
    torch.testing.assert_close(m.output(), a @ b)


def test_peaks_are_plausible():
    from resnet_kernels.bench.peaks import copy_bandwidth, gemm_flops

    assert gemm_flops(torch.bfloat16, size=4096, rounds=5) > 1e13  # 10 TFLOP/s: any tensor-core GPU
    assert copy_bandwidth(2**28, rounds=5) > 1e11


@pytest.mark.parametrize("provider", ["cudnn-eager", "cudnn-fused"])
def test_cudnn_layer_baselines_pass_the_tolerance_rule(provider):
    from resnet_kernels.bench.cases import layer_reference
    from resnet_kernels.bench.data import layer_inputs
    from resnet_kernels.bench.layer_providers import cudnn_eager, layer_provider
    from resnet_kernels.layer_shapes import model_layers

    torch.backends.cudnn.benchmark = True
    generator = torch.Generator(device="cuda").manual_seed(0)
    for layer in model_layers("resnet50")[:5]:  # stem, 1x1, 3x3, 1x1 + residual, downsample
        inputs = layer_inputs(layer, 8, torch.float16, generator)
        ref = layer_reference(layer, inputs)
        eager = cudnn_eager(layer)
        baseline = rel_error(eager.fn(*eager.prepare(inputs)), ref)
        impl = layer_provider(provider, layer, inputs.x)
        check(f"{provider} {layer.name}", impl.fn(*impl.prepare(inputs)), ref, baseline, torch.float16)


def test_fused_torchvision_resnet50_on_cudnn():
    torchvision = pytest.importorskip("torchvision")
    from resnet_kernels.bench.data import randomize_batchnorm
    from resnet_kernels.bench.tv_fused import fuse

    torch.manual_seed(0)
    model = torchvision.models.resnet50()
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    model = model.eval().cuda()
    x = torch.randn(4, 3, 224, 224, device="cuda")
    with torch.no_grad():
        ref = model.double()(x.double())
        half = model.half().to(memory_format=torch.channels_last)
        xh = x.half().contiguous(memory_format=torch.channels_last)
        baseline = rel_error(half(xh), ref)
        check("cudnn-fused resnet50", fuse(half)(xh), ref, baseline, torch.float16)
