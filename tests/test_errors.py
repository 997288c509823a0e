"""Bad input raises a clear error that names the argument."""

import pytest
import torch

from resnet_kernels.functional import conv_bn_act


def _ok():
    g = torch.Generator().manual_seed(0)
    return dict(
        x=torch.randn(2, 4, 8, 8, generator=g),
        weight=torch.randn(6, 4, 3, 3, generator=g),
        scale=torch.rand(6, generator=g),
        shift=torch.randn(6, generator=g),
    )


def _call(**overrides):
    kwargs = dict(_ok(), padding=1, backend="reference")
    kwargs.update(overrides)
    return conv_bn_act(**kwargs)


def test_valid_call_runs():
    assert _call().shape == (2, 6, 8, 8)


BAD = {
    "x not a tensor": (dict(x=[1.0]), TypeError, "x must be a torch.Tensor"),
    "weight not a tensor": (dict(weight=3), TypeError, "weight must be a torch.Tensor"),
    "x 3-D": (dict(x=torch.randn(4, 8, 8)), ValueError, "x must be 4-D"),
    "weight 2-D": (dict(weight=torch.randn(6, 4)), ValueError, "weight must be 4-D"),
    "x int dtype": (dict(x=torch.ones(2, 4, 8, 8, dtype=torch.int32)), TypeError, "x has dtype"),
    "weight dtype mismatch": (dict(weight=torch.randn(6, 4, 3, 3, dtype=torch.float64)), TypeError, "weight has dtype"),
    "empty x": (dict(x=torch.randn(2, 4, 0, 8)), ValueError, "x is empty"),
    "empty weight": (dict(weight=torch.randn(0, 4, 3, 3)), ValueError, "weight is empty"),
    "channels mismatch": (dict(weight=torch.randn(6, 5, 3, 3)), ValueError, "input channels per group"),
    "groups do not divide C": (dict(groups=3, weight=torch.randn(6, 1, 3, 3)), ValueError, "groups=3"),
    "groups do not divide K": (dict(groups=2, weight=torch.randn(5, 2, 3, 3), scale=None, shift=None),
                               ValueError, "5 output channels, not divisible by groups=2"),
    "groups zero": (dict(groups=0), ValueError, "groups must be positive"),
    "groups float": (dict(groups=1.5), TypeError, "groups must be an int"),
    "stride zero": (dict(stride=0), ValueError, "stride must be positive"),
    "stride triple": (dict(stride=(1, 1, 1)), TypeError, "stride must be an int or a pair"),
    "negative padding": (dict(padding=-1), ValueError, "padding must be non-negative"),
    "dilation zero": (dict(dilation=(1, 0)), ValueError, "dilation must be positive"),
    "output empty": (dict(padding=0, weight=torch.randn(6, 4, 9, 9)), ValueError, "output would be empty"),
    "scale length": (dict(scale=torch.rand(5)), ValueError, r"scale must have shape \(6,\)"),
    "shift 2-D": (dict(shift=torch.rand(6, 1)), ValueError, "shift must have shape"),
    "scale int": (dict(scale=torch.ones(6, dtype=torch.int64)), TypeError, "scale must be a floating-point"),
    "in_scale length": (dict(in_scale=torch.rand(6)), ValueError, r"in_scale must have shape \(4,\)"),
    "in_shift length": (dict(in_shift=torch.rand(3)), ValueError, "in_shift must have shape"),
    "residual wrong batch": (dict(residual=torch.randn(1, 6, 8, 8)), ValueError, "residual shape"),
    "residual too many channels": (dict(residual=torch.randn(2, 7, 8, 8)), ValueError, "residual shape"),
    "residual wrong spatial": (dict(residual=torch.randn(2, 6, 4, 4)), ValueError, "residual shape"),
    "residual dtype": (dict(residual=torch.randn(2, 6, 8, 8, dtype=torch.float64)), TypeError, "residual has dtype"),
    "residual 3-D": (dict(residual=torch.randn(2, 6, 8)), ValueError, "residual must be 4-D"),
    "residual_stride without residual": (dict(residual_stride=2), ValueError, "residual is None"),
    "residual_stride zero": (dict(residual=torch.randn(2, 6, 8, 8), residual_stride=0), ValueError,
                             "residual_stride must be positive"),
    "unknown backend": (dict(backend="cudnn"), ValueError, "backend must be one of"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_names_the_argument(case):
    overrides, error, message = BAD[case]
    with pytest.raises(error, match=message):
        _call(**overrides)


def test_mismatched_devices_are_named():
    meta_weight = torch.empty(6, 4, 3, 3, device="meta")
    with pytest.raises(ValueError, match="weight is on meta but x is on cpu"):
        _call(weight=meta_weight)
    with pytest.raises(ValueError, match="residual is on meta"):
        _call(residual=torch.empty(2, 6, 8, 8, device="meta"))


def test_option_a_residual_with_stride_is_accepted():
    x = torch.randn(2, 4, 8, 8)
    out = conv_bn_act(x, torch.randn(8, 4, 3, 3), residual=x, stride=2, padding=1, residual_stride=2,
                      backend="reference")
    assert out.shape == (2, 8, 4, 4)
