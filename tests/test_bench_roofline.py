"""FLOPs, bytes and the roofline floor of the benchmark suite, on layers worked out by hand."""

import pytest

from resnet_kernels.bench import roofline
from resnet_kernels.bench.data import sets_for_l2
from resnet_kernels.bench.layers import describe, distinct_layers
from resnet_kernels.layer_shapes import model_layers

# The ceilings DESIGN.md quotes for an H100 (bf16 GEMM, device copy).
PEAK, BANDWIDTH = 790e12, 3.0e12


def _layer(model, name):
    return next(layer for layer in model_layers(model) if layer.name == name)


def test_known_layer_flops_bytes_and_floor():
    # resnet50 layer1.0.conv2: 64 -> 64, 3x3, 56x56, batch 256, fp16.
    layer = _layer("resnet50", "layer1.0.conv2")
    assert layer.flops(256) == 2 * 256 * 64 * 56 * 56 * 64 * 9 == 59_190_018_048
    activations = 256 * 64 * 56 * 56  # input read once, output written once (same size here)
    assert layer.min_bytes(256, 2) == (2 * activations + 64 * 64 * 9) * 2 + 64 * 8 == 205_595_136
    floor = roofline.layer_floor_s(layer, 256, 2, PEAK, BANDWIDTH)
    assert floor == pytest.approx(59_190_018_048 / PEAK)  # 74.9 us, compute-bound
    assert roofline.limiter(layer.flops(256), layer.min_bytes(256, 2), PEAK, BANDWIDTH) == "compute"


def test_residual_read_and_groups_are_counted():
    conv3 = _layer("resnet50", "layer4.0.conv3")  # 512 -> 2048 at 7x7, + residual
    out = 256 * 2048 * 7 * 7
    assert conv3.min_bytes(256, 2) == (256 * 512 * 7 * 7 + 2048 * 512 + 2 * out) * 2 + 2048 * 8
    grouped = _layer("resnext50_32x4d", "layer1.0.conv2")  # 128 -> 128, 3x3, 32 groups of 4
    assert grouped.groups == 32
    assert grouped.flops(1) == 2 * 128 * 56 * 56 * 4 * 9
    assert roofline.limiter(grouped.flops(1), grouped.min_bytes(1, 2), PEAK, BANDWIDTH) == "memory"


def test_resnet50_per_image_and_model_floor():
    layers = model_layers("resnet50")
    assert sum(layer.flops(1) for layer in layers) / 1e9 == pytest.approx(8.174, abs=1e-3)
    # 54.8 MB per image at batch 256 in fp16, 11.0 MB of it the residual reads.
    per_image = sum(layer.min_bytes(256, 2) for layer in layers) / 256
    residual = sum(256 * layer.K * layer.P * layer.Q * 2 for layer in layers if layer.has_residual) / 256
    assert per_image / 1e6 == pytest.approx(54.78, abs=0.01)
    assert residual / 1e6 == pytest.approx(11.04, abs=0.01)
    # DESIGN.md's ~57,000 img/s leaves the residual reads out; with them the floor is ~47,700.
    img_s = 256 / roofline.model_floor_s(layers, 256, 2, PEAK, BANDWIDTH)
    assert img_s == pytest.approx(47_704, rel=1e-3)
    floor_sum = roofline.model_floor_s(layers, 256, 2, PEAK, BANDWIDTH)
    totals = roofline.floor_s(sum(lr.flops(256) for lr in layers), per_image * 256, PEAK, BANDWIDTH)
    assert floor_sum > totals  # per-layer floors add up to more than the whole-model bound


def test_percent_of_floor():
    assert roofline.percent_of_floor(measured_s=2e-3, floor=1e-3) == pytest.approx(50.0)
    assert roofline.percent_of_floor(measured_s=1e-3, floor=1e-3) == pytest.approx(100.0)


def test_distinct_layers_count_every_conv_once():
    for model, distinct, total in (("resnet50", 24, 53), ("resnet18", 15, 20), ("resnext50_32x4d", 24, 53)):
        layers = distinct_layers(model)
        assert (len(layers), sum(m.count for m in layers)) == (distinct, total)
    by_name = {m.layer.name: m for m in distinct_layers("resnet50")}
    assert by_name["layer3.1.conv2"].count == 5
    assert describe(by_name["layer1.0.downsample.0"].layer) == "64>256 1x1/1 56x56 no-relu"
    assert describe(by_name["layer2.0.conv3"].layer) == "128>512 1x1/1 28x28 +res"


@pytest.mark.parametrize(
    "set_bytes, expected",
    [(400_000, 250), (60_000_000, 2), (200_000_000, 1), (1_000, 512)],
)
def test_input_sets_overflow_l2(set_bytes, expected):
    l2 = 50_000_000
    count = sets_for_l2(set_bytes, l2)
    assert count == expected
    assert count * set_bytes >= 2 * l2 or count == 512
