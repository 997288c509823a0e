"""Eager-PyTorch implementation of the fused op: the CPU fallback and the oracle.

    y = relu?( scale[k] * conv(pre(x), W)[k] + shift[k] + residual )
    pre(x) = relu(in_scale[c] * x + in_shift[c])     (only when in_scale/in_shift given)

Arithmetic runs in float32 (float64 for float64 inputs) and the result is cast
to x's dtype once, as a fused kernel with fp32 accumulation would do.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ._args import output_memory_format


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _channel(v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A per-channel vector shaped to broadcast over (N, C, H, W)."""
    return v.to(dtype).view(1, -1, 1, 1)


def preactivation(
    x: torch.Tensor, in_scale: Optional[torch.Tensor], in_shift: Optional[torch.Tensor]
) -> torch.Tensor:
    """relu(in_scale * x + in_shift), or x itself when neither is given."""
    if in_scale is None and in_shift is None:
        return x
    if in_scale is not None:
        x = x * _channel(in_scale, x.dtype)
    if in_shift is not None:
        x = x + _channel(in_shift, x.dtype)
    return torch.relu(x)


def expand_residual(residual: torch.Tensor, out_channels: int, residual_stride: int) -> torch.Tensor:
    """The residual as the output sees it: subsampled by residual_stride and
    zero-padded in the channels above its own (the paper's option-A shortcut)."""
    if residual_stride != 1:
        residual = residual[:, :, ::residual_stride, ::residual_stride]
    missing = out_channels - residual.shape[1]
    if missing:
        residual = F.pad(residual, (0, 0, 0, 0, 0, missing))
    return residual


def conv_bn_act(
    x: torch.Tensor,
    weight: torch.Tensor,
    scale: Optional[torch.Tensor],
    shift: Optional[torch.Tensor],
    residual: Optional[torch.Tensor],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    relu: bool,
    in_scale: Optional[torch.Tensor],
    in_shift: Optional[torch.Tensor],
    residual_stride: int,
) -> torch.Tensor:
    acc = compute_dtype(x.dtype)
    # Zero padding is applied by conv2d after pre(), so a padded tap reads 0.
    inp = preactivation(x.to(acc), in_scale, in_shift)
    # The inputs already carry the autocast dtype (functional.py casts them);
    # the arithmetic itself must stay in `acc`.
    with torch.autocast(x.device.type, enabled=False):
        y = F.conv2d(inp, weight.to(acc), None, tuple(stride), tuple(padding), tuple(dilation), groups)
    if scale is not None:
        y = y * _channel(scale, acc)
    if shift is not None:
        y = y + _channel(shift, acc)
    if residual is not None:
        y = y + expand_residual(residual.to(acc), y.shape[1], residual_stride)
    if relu:
        y = torch.relu(y)
    return y.to(x.dtype).contiguous(memory_format=output_memory_format(x))
