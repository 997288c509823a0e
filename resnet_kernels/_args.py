"""Argument normalisation and validation for the fused conv op.

Every backend, the fake (meta) function and the functional wrapper take their
geometry from here, so there is exactly one definition of the output shape, the
output memory format and of what counts as bad input.

All checks look only at shapes, dtypes and devices, so they run unchanged on
fake tensors under torch.compile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

IntPair = Union[int, Sequence[int]]

#: dtypes the fused kernels accept; float64 is accepted by the reference only.
KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
REFERENCE_DTYPES = KERNEL_DTYPES + (torch.float64,)


def pair(value: IntPair, name: str) -> tuple[int, int]:
    """An int or a sequence of two ints, as torch.nn.Conv2d accepts them."""
    kind = type(value)
    if kind is int:  # the common cases first: every call of the op normalises three of these
        return (value, value)
    if (kind is tuple or kind is list) and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        return (value[0], value[1])
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got bool")
    if isinstance(value, int):
        return (value, value)
    try:
        items = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or a pair of ints, got {type(value).__name__}") from None
    if len(items) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return items  # type: ignore[return-value]


def integer(value: int, name: str) -> int:
    """A plain int (bool and float rejected, as the op schema would, but with a clear message)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class ConvGeometry:
    """Sizes of one call: input (N, C, H, W), weight (K, C/groups, R, S), output (N, K, P, Q)."""

    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    p: int
    q: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.k, self.p, self.q)

    @property
    def flops(self) -> int:
        """Multiply-adds of the convolution counted as 2 FLOPs each."""
        return 2 * self.n * self.k * self.p * self.q * (self.c // self.groups) * self.r * self.s


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """PyTorch's output-size rule: floor((H + 2p - d(R-1) - 1) / s) + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def output_memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last output for a channels_last (NHWC) input, contiguous otherwise.

    An input that is both (C == 1, or H == W == 1) counts as contiguous, which is
    what torch's own convolution does for such tensors.
    """
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _check_tensor(t: torch.Tensor, name: str, x: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device != x.device:
        raise ValueError(f"{name} is on {t.device} but x is on {x.device}; all tensors must be on one device")


def _check_vector(t: Optional[torch.Tensor], name: str, length: int, what: str, x: torch.Tensor) -> None:
    if t is None:
        return
    _check_tensor(t, name, x)
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if t.dim() != 1 or t.shape[0] != length:
        raise ValueError(f"{name} must have shape ({length},) (one value per {what}), got {tuple(t.shape)}")


def check_conv_args(
    x: torch.Tensor,
    weight: torch.Tensor,
    scale: Optional[torch.Tensor],
    shift: Optional[torch.Tensor],
    residual: Optional[torch.Tensor],
    stride: IntPair,
    padding: IntPair,
    dilation: IntPair,
    groups: int,
    in_scale: Optional[torch.Tensor],
    in_shift: Optional[torch.Tensor],
    residual_stride: int,
    dtypes: Sequence[torch.dtype] = REFERENCE_DTYPES,
) -> ConvGeometry:
    """Validate one call of the fused op and return its geometry.

    Raises TypeError for wrong types/dtypes and ValueError for wrong shapes,
    devices or hyper-parameters; every message names the offending argument.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    _check_tensor(weight, "weight", x)
    if x.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"x has dtype {x.dtype}; supported: {names}")
    if weight.dtype != x.dtype:
        raise TypeError(f"weight has dtype {weight.dtype} but x has {x.dtype}; they must match")
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D (N, C, H, W), got {x.dim()}-D shape {tuple(x.shape)}")
    if weight.dim() != 4:
        raise ValueError(f"weight must be 4-D (K, C/groups, R, S), got {weight.dim()}-D shape {tuple(weight.shape)}")
    if 0 in x.shape[1:]:
        raise ValueError(f"x is empty (shape {tuple(x.shape)}); C, H and W must be positive (only the batch may be 0)")
    if weight.numel() == 0:
        raise ValueError(f"weight is empty (shape {tuple(weight.shape)}); every dimension must be positive")

    stride_, padding_, dilation_ = pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation")
    if min(stride_) < 1:
        raise ValueError(f"stride must be positive, got {stride_}")
    if min(padding_) < 0:
        raise ValueError(f"padding must be non-negative, got {padding_}")
    if min(dilation_) < 1:
        raise ValueError(f"dilation must be positive, got {dilation_}")
    if integer(groups, "groups") < 1:
        raise ValueError(f"groups must be positive, got {groups}")

    n, c, h, w = x.shape
    k, c_per_group, r, s = weight.shape
    if c % groups:
        raise ValueError(f"x has {c} channels, not divisible by groups={groups}")
    if k % groups:
        raise ValueError(f"weight has {k} output channels, not divisible by groups={groups}")
    if c_per_group * groups != c:
        raise ValueError(
            f"weight expects {c_per_group} input channels per group (x {c} channels / groups {groups} "
            f"= {c // groups}); weight shape {tuple(weight.shape)} does not match x shape {tuple(x.shape)}"
        )
    p = output_size(h, r, stride_[0], padding_[0], dilation_[0])
    q = output_size(w, s, stride_[1], padding_[1], dilation_[1])
    if p < 1 or q < 1:
        raise ValueError(
            f"output would be empty: input {h}x{w} with kernel {r}x{s}, padding {padding_}, "
            f"dilation {dilation_}, stride {stride_} gives {p}x{q}"
        )

    _check_vector(scale, "scale", k, "output channel", x)
    _check_vector(shift, "shift", k, "output channel", x)
    _check_vector(in_scale, "in_scale", c, "input channel", x)
    _check_vector(in_shift, "in_shift", c, "input channel", x)

    if integer(residual_stride, "residual_stride") < 1:
        raise ValueError(f"residual_stride must be positive, got {residual_stride}")
    if residual is not None:
        _check_tensor(residual, "residual", x)
        if residual.dtype != x.dtype:
            raise TypeError(f"residual has dtype {residual.dtype} but x has {x.dtype}; they must match")
        if residual.dim() != 4:
            raise ValueError(f"residual must be 4-D, got shape {tuple(residual.shape)}")
        rn, rc, rh, rw = residual.shape
        # Option A: residual[:, :, ::rs, ::rs] must have the output's spatial size;
        # its channels fill output channels [0, rc) and the rest are zero.
        sub_h = -(-rh // residual_stride)
        sub_w = -(-rw // residual_stride)
        if rn != n or rc < 1 or rc > k or (sub_h, sub_w) != (p, q):
            raise ValueError(
                f"residual shape {tuple(residual.shape)} with residual_stride={residual_stride} does not fit "
                f"the output {(n, k, p, q)}: need batch {n}, 1..{k} channels and "
                f"residual[:, :, ::{residual_stride}, ::{residual_stride}] of spatial size {p}x{q}"
            )
    elif residual_stride != 1:
        raise ValueError("residual_stride is set but residual is None")

    return ConvGeometry(n, c, h, w, k, r, s, p, q, stride_, padding_, dilation_, groups)
