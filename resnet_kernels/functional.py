"""The public functional form of the fused op."""

from __future__ import annotations

from typing import Optional, Union

import torch

from . import backends, ops
from ._args import IntPair, integer, pair

BatchNormLike = Union[torch.nn.Module, tuple, list, dict]


def _autocast(x, weight, residual):
    """Under torch.autocast the op runs in the autocast dtype, as torch's conv does."""
    device_type = x.device.type
    if device_type in ("cuda", "cpu") and torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        x, weight = x.to(dtype), weight.to(dtype)
        residual = None if residual is None else residual.to(dtype)
    return x, weight, residual


def conv_bn_act(
    x: torch.Tensor,
    weight: torch.Tensor,
    scale: Optional[torch.Tensor] = None,
    shift: Optional[torch.Tensor] = None,
    residual: Optional[torch.Tensor] = None,
    *,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    relu: bool = True,
    in_scale: Optional[torch.Tensor] = None,
    in_shift: Optional[torch.Tensor] = None,
    residual_stride: int = 1,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Fused convolution + folded BatchNorm + residual add + ReLU.

        y = relu?( scale[k] * conv(pre(x), weight)[k] + shift[k] + residual )
        pre(x) = relu(in_scale[c] * x + in_shift[c])   (when in_scale / in_shift are given)

    Args:
        x: input (N, C, H, W); channels_last is the fast layout.
        weight: (K, C/groups, R, S).
        scale, shift: per output channel (K,), e.g. from :func:`fold_bn`; default 1 and 0.
        residual: added before the ReLU; output-shaped, or an option-A shortcut of
            fewer channels read as ``residual[:, :, ::residual_stride, ::residual_stride]``
            into output channels [0, C_r), zeros above.
        stride, padding, dilation: an int or a pair, as in torch.nn.Conv2d.
            Zero padding applies after pre().
        groups: grouped convolution (ResNeXt).
        relu: apply the final ReLU.
        in_scale, in_shift: per input channel (C,), the pre-activation BN+ReLU prologue.
        backend: 'reference', 'triton', 'cuda' or 'auto'; default: see
            :func:`resnet_kernels.set_backend`.
    """
    for name, t in (("x", x), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    x, weight, residual = _autocast(x, weight, residual)
    # Shapes, devices and dtypes are checked once, inside the op (and its fake).
    return ops.conv_bn_act(
        x,
        weight,
        scale,
        shift,
        residual,
        list(pair(stride, "stride")),
        list(pair(padding, "padding")),
        list(pair(dilation, "dilation")),
        integer(groups, "groups"),
        bool(relu),
        in_scale,
        in_shift,
        integer(residual_stride, "residual_stride"),
        backends.resolve_name(backend),
    )


def _bn_params(bn: BatchNormLike):
    if isinstance(bn, torch.nn.Module):
        for name in ("weight", "bias", "running_mean", "running_var"):
            if not hasattr(bn, name):
                raise TypeError(f"bn: {type(bn).__name__} has no {name!r}; pass a BatchNorm module")
        eps = getattr(bn, "eps", 1e-5)
        return bn.weight, bn.bias, bn.running_mean, bn.running_var, eps
    if isinstance(bn, dict):
        missing = [k for k in ("weight", "bias", "running_mean", "running_var") if k not in bn]
        if missing:
            raise KeyError(f"bn: missing {', '.join(missing)}")
        return bn["weight"], bn["bias"], bn["running_mean"], bn["running_var"], bn.get("eps", 1e-5)
    if isinstance(bn, (tuple, list)) and len(bn) in (4, 5):
        weight, bias, mean, var = bn[:4]
        return weight, bias, mean, var, bn[4] if len(bn) == 5 else 1e-5
    raise TypeError(
        "bn must be a BatchNorm module, a dict or a tuple (weight, bias, running_mean, running_var[, eps])"
    )


def fold_bn(bn: BatchNormLike, conv_bias: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an inference BatchNorm (and an optional conv bias) into (scale, shift), in float32.

        scale = gamma / sqrt(running_var + eps)
        shift = beta - running_mean * scale + conv_bias * scale

    ``bn`` is a BatchNorm module (FrozenBatchNorm2d too), a dict with the same
    keys, or a tuple ``(weight, bias, running_mean, running_var[, eps])``; a None
    weight/bias (affine=False) counts as 1/0.
    """
    weight, bias, mean, var, eps = _bn_params(bn)
    if mean is None or var is None:
        raise ValueError("bn has no running statistics (track_running_stats=False); it cannot be folded")
    var32 = var.to(torch.float32)
    scale = torch.rsqrt(var32 + eps)
    if weight is not None:
        scale = scale * weight.to(torch.float32)
    shift = -mean.to(torch.float32) * scale
    if bias is not None:
        shift = shift + bias.to(torch.float32)
    if conv_bias is not None:
        if conv_bias.shape != scale.shape:
            raise ValueError(f"conv_bias must have shape {tuple(scale.shape)}, got {tuple(conv_bias.shape)}")
        shift = shift + conv_bias.to(torch.float32) * scale
    return scale, shift
