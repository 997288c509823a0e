"""The reference backend against independent eager formulations in float64.

The reference is the oracle of every kernel test, so it is itself checked here
against the layers a ResNet is written with (Conv2d, BatchNorm2d, add, ReLU).
"""

import pytest
import torch
import torch.nn.functional as F

from resnet_kernels import fold_bn, reference
from resnet_kernels.functional import conv_bn_act

GEN_SEED = 1234


def _gen():
    return torch.Generator().manual_seed(GEN_SEED)


def _random_bn(channels, g):
    bn = torch.nn.BatchNorm2d(channels).double().eval()
    with torch.no_grad():
        bn.weight.copy_(torch.rand(channels, generator=g, dtype=torch.float64) + 0.5)
        bn.bias.copy_(torch.randn(channels, generator=g, dtype=torch.float64))
        bn.running_mean.copy_(torch.randn(channels, generator=g, dtype=torch.float64))
        bn.running_var.copy_(torch.rand(channels, generator=g, dtype=torch.float64) + 0.1)
    return bn


@pytest.mark.parametrize(
    "k_size,stride,padding,dilation,groups",
    [(3, 1, 1, 1, 1), (3, 2, 1, 1, 1), (1, 2, 0, 1, 1), (7, 2, 3, 1, 1), (3, 1, 2, 2, 1), (3, 1, 1, 1, 4)],
)
def test_matches_conv_bn_add_relu(k_size, stride, padding, dilation, groups):
    g = _gen()
    x = torch.randn(2, 8, 11, 9, generator=g, dtype=torch.float64)
    conv = torch.nn.Conv2d(8, 12, k_size, stride, padding, dilation, groups, bias=True).double()
    bn = _random_bn(12, g)
    with torch.no_grad():
        expected_conv = conv(x)
        residual = torch.randn(expected_conv.shape, generator=g, dtype=torch.float64)
        expected = torch.relu(bn(expected_conv) + residual)
        scale, shift = fold_bn(bn, conv_bias=conv.bias)
        out = conv_bn_act(
            x, conv.weight, scale.double(), shift.double(), residual,
            stride=stride, padding=padding, dilation=dilation, groups=groups, backend="reference",
        )
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)  # fold_bn works in fp32


def test_option_a_residual_is_subsampled_and_zero_padded():
    g = _gen()
    x = torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64)
    w = torch.randn(8, 4, 3, 3, generator=g, dtype=torch.float64)
    shortcut = torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64)  # block input: 4 channels, 8x8
    out = conv_bn_act(x, w, residual=shortcut, stride=2, padding=1, residual_stride=2, relu=False, backend="reference")
    conv = F.conv2d(x, w, stride=2, padding=1)
    expected = conv.clone()
    expected[:, :4] += shortcut[:, :, ::2, ::2]
    torch.testing.assert_close(out, expected)
    # Channels above the shortcut's get nothing added.
    torch.testing.assert_close(out[:, 4:], conv[:, 4:])


def test_preactivation_pads_with_zero_after_the_transform():
    g = _gen()
    x = torch.randn(1, 3, 5, 5, generator=g, dtype=torch.float64)
    w = torch.randn(2, 3, 3, 3, generator=g, dtype=torch.float64)
    in_scale = torch.rand(3, generator=g, dtype=torch.float64) + 0.5
    in_shift = torch.rand(3, generator=g, dtype=torch.float64) + 1.0  # relu(in_shift) > 0: padding must differ
    out = conv_bn_act(x, w, padding=1, in_scale=in_scale, in_shift=in_shift, relu=False, backend="reference")
    pre = torch.relu(x * in_scale.view(1, -1, 1, 1) + in_shift.view(1, -1, 1, 1))
    expected = F.conv2d(F.pad(pre, (1, 1, 1, 1)), w)
    torch.testing.assert_close(out, expected)


def test_scale_shift_default_to_identity():
    g = _gen()
    x = torch.randn(1, 4, 6, 6, generator=g, dtype=torch.float64)
    w = torch.randn(5, 4, 1, 1, generator=g, dtype=torch.float64)
    out = conv_bn_act(x, w, relu=False, backend="reference")
    torch.testing.assert_close(out, F.conv2d(x, w))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_output_is_rounded_once(dtype):
    g = _gen()
    x = torch.randn(1, 8, 6, 6, generator=g).to(dtype)
    w = torch.randn(8, 8, 3, 3, generator=g).to(dtype)
    out = reference.conv_bn_act(x, w, None, None, None, (1, 1), (1, 1), (1, 1), 1, True, None, None, 1)
    assert out.dtype == dtype
    # fp32 accumulation then a single rounding: within one ulp of the float64 result
    # (plus the fp32 accumulation error, far below 1e-5 at this size).
    ulp = {torch.float16: 2**-10, torch.bfloat16: 2**-7, torch.float32: 2**-23}[dtype]
    exact = torch.relu(F.conv2d(x.double(), w.double(), padding=1))
    err = (out.double() - exact).abs()
    assert (err <= ulp * exact.abs() + 1e-5).all()


@pytest.mark.parametrize("channels_last", [False, True])
def test_output_memory_format_follows_input(channels_last):
    x = torch.randn(2, 4, 6, 6)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = conv_bn_act(x, torch.randn(8, 4, 3, 3), padding=1, backend="reference")
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def test_fold_bn_matches_batchnorm_eval():
    g = _gen()
    bn = _random_bn(6, g).float()
    bn.eps = 1e-3
    x = torch.randn(2, 6, 3, 3, generator=g)
    scale, shift = fold_bn(bn)
    assert scale.dtype == torch.float32 and shift.dtype == torch.float32
    torch.testing.assert_close(x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1), bn(x), rtol=1e-5, atol=1e-5)
    # The tuple form, with eps, gives the same fold.
    params = (bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps)
    for a, b in zip(fold_bn(params), (scale, shift)):
        torch.testing.assert_close(a, b)


def test_fold_bn_frozen_batchnorm():
    torchvision = pytest.importorskip("torchvision")
    g = _gen()
    frozen = torchvision.ops.FrozenBatchNorm2d(5)
    frozen.weight.copy_(torch.rand(5, generator=g) + 0.5)
    frozen.running_var.copy_(torch.rand(5, generator=g) + 0.2)
    frozen.running_mean.copy_(torch.randn(5, generator=g))
    x = torch.randn(1, 5, 2, 2, generator=g)
    scale, shift = fold_bn(frozen)
    torch.testing.assert_close(x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1), frozen(x), rtol=1e-5, atol=1e-5)


def test_fold_bn_rejects_what_it_cannot_fold():
    with pytest.raises(TypeError, match="bn"):
        fold_bn(torch.nn.ReLU())
    with pytest.raises(ValueError, match="running statistics"):
        fold_bn(torch.nn.BatchNorm2d(3, track_running_stats=False))
    with pytest.raises(ValueError, match="conv_bias"):
        fold_bn(torch.nn.BatchNorm2d(3), conv_bias=torch.zeros(4))
