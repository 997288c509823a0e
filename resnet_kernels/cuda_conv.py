"""The cuda backend's entry point: fits a call to the tensor-core kernel, then
runs ``torch.ops.resnet_kernels.conv_bn_act_cuda``.

The C++ op runs its tensor-core (implicit-GEMM) kernel only when C/groups is a
multiple of 8 (a 16-byte cp.async chunk never straddles two taps) and K/groups
is even (paired stores); anything else goes to its direct kernel, one thread
per output doing scalar FMAs. Two common layers miss that rule:

- the ImageNet stem, 7x7 with C = 3 (~60 GFLOP at batch 256: on the direct
  kernel it alone would outlast ResNet-50's whole ~5 ms roofline floor);
- ResNeXt 32x4d's first stage, 4 channels per group (and any odd C/groups).

Both are rewritten here into an exactly equivalent call the tensor-core kernel
takes (`plan` decides, pure Python on shapes):

- **merge**: m adjacent groups become one block-diagonal group (zeros between
  the blocks; `_weight_cache.block_diagonal`, the triton backend's rule too),
  m the smallest divisor of groups with 8 | m*C/g and 2 | m*K/g. Only the
  weight changes (cached); x, the output and every per-channel vector keep
  their channel indices. Costs m times the MACs (2x for ResNeXt 32x4d).
  m = 1 covers both plain cases: nothing to merge (groups == 1, or already
  aligned).
- **pad** (no such m, e.g. groups == 1 with C = 3, or depthwise with an odd
  number of groups): each group's channels are zero-padded to the next
  multiple of 8 in x (a new NHWC buffer), in the weight (zero taps, cached)
  and in in_scale/in_shift (zeros, so pre(0) = relu(0*0 + 0) = 0; the zero
  weight taps make the padded channels add exactly 0 regardless). Costs
  C'/C times the MACs and one write of the padded x; for an NCHW x that write
  replaces the NHWC copy the op would have made anyway.
- **direct** (odd K/groups that no merge can make even): passed through
  unchanged; the op's direct kernel runs it.

Whatever the plan, the weight reaches the op in KRSC (channels_last) memory,
converted once per weight version (`WeightCache`) rather than by the op on
every call. Per call, on a cache hit, the only work besides the op is Python
bookkeeping plus, for a padded call, the x buffer and two tiny vector pads:
no host sync, so it can be captured in a CUDA graph (after one warm-up call
has filled the cache).

Calling ``torch.ops.resnet_kernels.conv_bn_act_cuda`` directly with narrow
channels still works, on the direct kernel.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional, Sequence

import torch

from . import cuda_ops  # noqa: F401  (loads the extension: defines torch.ops.resnet_kernels.conv_bn_act_cuda)
from ._args import output_memory_format
from ._weight_cache import WeightCache, block_diagonal

#: The tensor-core kernel's rule (csrc/kernels/launch.cu, implicit_gemm_supports):
#: C/groups a multiple of CHANNEL_ALIGN, K/groups a multiple of 2.
CHANNEL_ALIGN = 8

_weights = WeightCache()


class Plan(NamedTuple):
    """How one call is fed to the C++ op.

    transform: 'none', 'merge' or 'pad'; kernel: 'tensor_core' or 'direct', the
    kernel the op's shape rule picks for the transformed call (the op itself
    also needs 16-byte aligned buffers and a grid within limits, which holds
    for every tensor this module allocates and for dense channels_last inputs).
    """

    transform: str
    kernel: str
    groups: int  # groups of the transformed call
    merge: int  # original groups per kernel group
    c_per_group: int  # input channels per group of the transformed call (padded for 'pad')
    mac_factor: float  # multiply-adds of the transformed call over the original's


@functools.lru_cache(maxsize=None)
def plan(channels: int, out_channels: int, groups: int) -> Plan:
    """The plan for x with `channels` channels and a weight with `out_channels` rows (see module docstring)."""
    cg, kg = channels // groups, out_channels // groups
    for m in range(1, groups + 1):
        if groups % m == 0 and (m * cg) % CHANNEL_ALIGN == 0 and (m * kg) % 2 == 0:
            return Plan("none" if m == 1 else "merge", "tensor_core", groups // m, m, m * cg, float(m))
    if kg % 2 == 0:
        padded = -(-cg // CHANNEL_ALIGN) * CHANNEL_ALIGN
        return Plan("pad", "tensor_core", groups, 1, padded, padded / cg)
    return Plan("none", "direct", groups, 1, cg, 1.0)


# --- the transforms (pure functions of their inputs; tests/test_cuda_narrow_channels.py
# checks each against the reference conv in float64) ---------------------------------------


def pad_input(x: torch.Tensor, groups: int, c_per_group: int) -> torch.Tensor:
    """x (N, C, H, W), any layout -> channels_last (N, groups*c_per_group, H, W), each group's
    channels followed by zeros up to c_per_group."""
    n, c, h, w = x.shape
    cg = c // groups
    out = x.new_empty(n, h, w, groups, c_per_group)  # NHWC memory, channels split per group
    out[..., cg:].zero_()
    out[..., :cg].copy_(x.permute(0, 2, 3, 1).unflatten(3, (groups, cg)))
    return out.view(n, h, w, groups * c_per_group).permute(0, 3, 1, 2)


def pad_vector(v: Optional[torch.Tensor], groups: int, c_per_group: int) -> Optional[torch.Tensor]:
    """A per-input-channel vector (in_scale, in_shift), zero-padded per group like `pad_input`."""
    if v is None:
        return None
    cg = v.shape[0] // groups
    return torch.nn.functional.pad(v.view(groups, cg), (0, c_per_group - cg)).reshape(-1)


@torch.no_grad()
def kernel_weight_uncached(weight: torch.Tensor, groups: int, p: Plan) -> torch.Tensor:
    """The weight the op gets under plan `p`, in KRSC (channels_last) memory."""
    if p.transform == "merge":
        weight = block_diagonal(weight, groups, p.merge)
    elif p.transform == "pad":
        k, cg, r, s = weight.shape
        out = weight.new_zeros(k, r, s, p.c_per_group)  # KRSC memory; the extra taps stay 0
        out[..., :cg].copy_(weight.permute(0, 2, 3, 1))
        return out.permute(0, 3, 1, 2)
    return weight.contiguous(memory_format=torch.channels_last)


def kernel_weight(weight: torch.Tensor, groups: int, p: Plan) -> torch.Tensor:
    """kernel_weight_uncached, once per weight version; a KRSC weight that needs no change is used as is."""
    if p.transform == "none" and weight.is_contiguous(memory_format=torch.channels_last):
        return weight
    return _weights.get(weight, ("cuda", groups, p), lambda w: kernel_weight_uncached(w, groups, p))


# --- the backend's implementation -----------------------------------------------------------


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
    """The fused op on the C++ extension, same arguments and result as reference.conv_bn_act."""
    return run(
        torch.ops.resnet_kernels.conv_bn_act_cuda, x, weight, scale, shift, residual, stride, padding, dilation,
        groups, relu, in_scale, in_shift, residual_stride,
    )


def run(op, x, weight, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale, in_shift,
        residual_stride):
    """conv_bn_act with `op` in place of the C++ op: the CPU tests pass the reference op here to
    check the transformed call against the original one."""
    p = plan(x.shape[1], weight.shape[0], groups)
    w = kernel_weight(weight, groups, p)
    if p.transform != "pad":
        return op(x, w, scale, shift, residual, stride, padding, dilation, p.groups, relu, in_scale, in_shift,
                  residual_stride)
    y = op(
        pad_input(x, groups, p.c_per_group), w, scale, shift, residual, stride, padding, dilation, p.groups, relu,
        pad_vector(in_scale, groups, p.c_per_group), pad_vector(in_shift, groups, p.c_per_group), residual_stride,
    )
    # The padded x is channels_last, so y is; the op's contract follows the caller's x.
    return y.contiguous(memory_format=output_memory_format(x))
