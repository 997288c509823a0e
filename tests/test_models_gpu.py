"""The models on a GPU: fp16 channels_last accuracy per backend, CUDA graph capture, device moves."""

import copy

import pytest
import torch

import resnet_kernels.models as rk
from conftest import needs_cuda
from helpers import rel_error
from resnet_kernels.backends import unavailable_reason
from test_models_helpers import assert_close, images, same_weights_pair

tv = pytest.importorskip("torchvision.models.resnet")

pytestmark = needs_cuda

BATCHES, BATCH, SIZE = 16, 8, 160


@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_resnet50_fp16_channels_last(backend):
    """Top-1 agrees with torchvision (float64) on >= 99% of inputs; logits error <= 2x torchvision fp16's."""
    reason = unavailable_reason(backend, torch.empty(1, 1, 1, 1, device="cuda", dtype=torch.float16))
    if reason is not None:
        pytest.skip(reason)
    theirs, ours = same_weights_pair(tv.resnet50, rk.resnet50)
    exact = copy.deepcopy(theirs).double().cuda().eval()
    half = dict(device="cuda", dtype=torch.float16, memory_format=torch.channels_last)
    theirs, ours = theirs.to(**half).eval(), ours.to(**half).eval()
    agree = 0
    with torch.no_grad():
        for i in range(BATCHES):
            x = images(BATCH, SIZE, seed=i).cuda()
            ref = exact(x.double())
            x16 = x.half().contiguous(memory_format=torch.channels_last)
            out, their_out = ours(x16, backend=backend), theirs(x16)
            assert rel_error(out, ref) <= 2 * rel_error(their_out, ref), f"batch {i}"
            agree += int((out.argmax(1) == ref.argmax(1)).sum())
    assert agree >= 0.99 * BATCHES * BATCH


def test_cuda_graph_capture_of_eval_forward():
    """The fold cache's checks do no device work: a warmed-up eval forward captures and replays."""
    _, model = same_weights_pair(
        lambda: tv.ResNet(tv.Bottleneck, [1, 1, 1, 1]), lambda: rk.ResNet(rk.Bottleneck, [1, 1, 1, 1])
    )
    model = model.cuda().eval()
    static_x = images(2, 64).cuda()
    with torch.no_grad():
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            model(static_x)  # warm-up: folds, backend choice
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = model(static_x)
        x = images(2, 64, seed=7).cuda()
        static_x.copy_(x)
        graph.replay()
        assert_close(static_out, model(x), rel=1e-6)


def test_move_to_gpu_after_cpu_forward():
    """A fold cached on the CPU is not reused after .cuda(): the key holds each tensor's device."""
    theirs, ours = same_weights_pair(
        lambda: tv.ResNet(tv.BasicBlock, [1, 1, 1, 1]), lambda: rk.ResNet(rk.BasicBlock, [1, 1, 1, 1])
    )
    x = images(1, 32)
    with torch.no_grad():
        ours.eval()(x, backend="reference")
        assert_close(ours.cuda()(x.cuda(), backend="reference").cpu(), theirs.eval()(x))
