"""Weights in the kernel's GEMM layout, packed once per weight version.

Layout: (G', R, S, C', K') contiguous, i.e. for each (merged) group a row-major
(R*S*C', K') matrix whose row (r*S + s)*C' + c holds tap (r, s), input channel
c; output channels are the contiguous dimension, as a GEMM's B operand wants.

Group merging: a grouped conv with few channels per group (ResNeXt 32x4d: 4 in,
4 out) would waste nearly all of a 64-wide tensor-core tile. `merge` adjacent
groups are therefore packed as one block-diagonal group (zeros between the
diagonal blocks): the kernel runs G/merge groups of merge*C/G channels, doing
`merge` times the arithmetic on tiles it could not fill otherwise. Merged
groups are contiguous channel ranges, so channel indices are unchanged.

Cache: packing costs a copy of the weight, so packed weights are kept in
`_packed`, keyed by (data_ptr, shape, strides, dtype, device, groups, merge)
of the source weight. Each entry holds the weight's version counter when it was
packed, the packed tensor (the weight's size, times `merge` for merged groups)
and a weak reference to the tensor it came from. An in-place update (optimizer
step, load_state_dict) bumps the version: the next call repacks and replaces
the entry. The entry is dropped when its source tensor is freed, so a new
tensor at a recycled address can never hit a stale entry.
Tensors without a version counter (created under torch.inference_mode) are
packed on every call.
"""

from __future__ import annotations

import weakref

import torch

#: Merge groups until a merged group is this many channels wide (at most).
MERGED_WIDTH = 64

_packed: dict[tuple, tuple[int, weakref.ref, torch.Tensor]] = {}


def merge_factor(groups: int, c_per_group: int, k_per_group: int) -> int:
    """The largest divisor d of `groups` with d * max(C/G, K/G) <= MERGED_WIDTH (at least 1)."""
    width = max(c_per_group, k_per_group)
    return max(d for d in range(1, groups + 1) if groups % d == 0 and (d == 1 or d * width <= MERGED_WIDTH))


@torch.no_grad()
def pack(weight: torch.Tensor, groups: int, merge: int) -> torch.Tensor:
    """(K, C/G, R, S) -> (G/merge, R, S, merge*C/G, merge*K/G), block-diagonal within a merged group."""
    k, cg, r, s = weight.shape
    kg = k // groups
    per_group = weight.reshape(groups, kg, cg, r, s).permute(0, 3, 4, 2, 1)  # (G, R, S, Cg, Kg)
    if merge == 1:
        return per_group.contiguous()
    gm = groups // merge
    blocks = per_group.reshape(gm, merge, r, s, cg, kg)
    out = weight.new_zeros(gm, r, s, merge, cg, merge, kg)
    # Diagonal block j of merged group i is original group i*merge + j. Two index
    # arrays move their dimension to the front: out[:, :, :, d, :, d, :] is (merge, gm, r, s, cg, kg).
    diag = torch.arange(merge, device=weight.device)
    out[:, :, :, diag, :, diag, :] = blocks.permute(1, 0, 2, 3, 4, 5)
    return out.reshape(gm, r, s, merge * cg, merge * kg)


def _drop(key: tuple, ref: weakref.ref) -> None:
    """Weak-reference callback: forget `key` unless a newer tensor has taken it over."""
    entry = _packed.get(key)
    if entry is not None and entry[1] is ref:
        del _packed[key]


def packed_weight(weight: torch.Tensor, groups: int, merge: int) -> torch.Tensor:
    """pack(weight, groups, merge), from the cache when this weight version was packed before."""
    try:
        version = weight._version
    except RuntimeError:  # inference tensors have no version counter: nothing safe to key on
        return pack(weight, groups, merge)
    key = (weight.data_ptr(), tuple(weight.shape), weight.stride(), weight.dtype, weight.device, groups, merge)
    entry = _packed.get(key)
    if entry is not None and entry[0] == version and entry[1]() is not None:
        return entry[2]
    packed = pack(weight, groups, merge)
    # One entry per source: a new version replaces the old packed copy.
    _packed[key] = (version, weakref.ref(weight, lambda ref, key=key: _drop(key, ref)), packed)
    return packed
