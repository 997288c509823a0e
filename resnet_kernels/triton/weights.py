"""Weights in the kernel's GEMM layout, packed once per weight version.

Layout: (G', R, S, C', K') contiguous, i.e. for each (merged) group a row-major
(R*S*C', K') matrix whose row (r*S + s)*C' + c holds tap (r, s), input channel
c; output channels are the contiguous dimension, as a GEMM's B operand wants.
For the kernel's ROW_RUN walk (narrow C, one group): (1, R, RUN, K), each tap
row's S*C rows padded with zero rows to RUN (pack_runs).

Group merging: a grouped conv with few channels per group (ResNeXt 32x4d: 4 in,
4 out) would waste nearly all of a 64-wide tensor-core tile. `merge` adjacent
groups are therefore packed as one block-diagonal group (zeros between the
diagonal blocks): the kernel runs G/merge groups of merge*C/G channels, doing
`merge` times the arithmetic on tiles it could not fill otherwise. Merged
groups are contiguous channel ranges, so channel indices are unchanged.

Cache: packing costs a copy of the weight, so packed weights are kept in
`_packed`, a `resnet_kernels._weight_cache.WeightCache` (shared with the cuda
backend's weight transforms): keyed by the source weight's data_ptr, shape,
strides, dtype, device and (groups, merge), checked against its version
counter, dropped when the weight is freed. One packed copy (the weight's size,
times `merge` for merged groups) per live weight.
"""

from __future__ import annotations

import torch

from .._weight_cache import WeightCache, block_diagonal

#: Merge groups until a merged group is this many channels wide (at most).
MERGED_WIDTH = 64

_packed = WeightCache()


def merge_factor(groups: int, c_per_group: int, k_per_group: int) -> int:
    """The largest divisor d of `groups` with d * max(C/G, K/G) <= MERGED_WIDTH (at least 1)."""
    width = max(c_per_group, k_per_group)
    return max(d for d in range(1, groups + 1) if groups % d == 0 and (d == 1 or d * width <= MERGED_WIDTH))


@torch.no_grad()
def pack(weight: torch.Tensor, groups: int, merge: int) -> torch.Tensor:
    """(K, C/G, R, S) -> (G/merge, R, S, merge*C/G, merge*K/G), block-diagonal within a merged group."""
    k, cg, r, s = weight.shape
    gm, kg = groups // merge, merge * (k // groups)
    dense = block_diagonal(weight, groups, merge)  # (K, merge*C/G, R, S) for G/merge groups
    return dense.reshape(gm, kg, merge * cg, r, s).permute(0, 3, 4, 2, 1).contiguous()  # (G', R, S, C', K')


@torch.no_grad()
def pack_runs(weight: torch.Tensor, run: int) -> torch.Tensor:
    """(K, C, R, S) -> (1, R, run, K): for the kernel's ROW_RUN walk (one group), tap row r's
    S*C rows (s, c) followed by run - S*C zero rows."""
    k, c, r, s = weight.shape
    rows = pack(weight, 1, 1).reshape(1, r, s * c, k)
    return torch.nn.functional.pad(rows, (0, 0, 0, run - s * c)).contiguous()


def packed_weight(weight: torch.Tensor, groups: int, merge: int, run: int = 0) -> torch.Tensor:
    """pack(weight, groups, merge), or pack_runs(weight, run) when run > 0 (groups = 1), from the
    cache when this weight version was packed that way before."""
    # `pack` is looked up at call time (tests count its calls through monkeypatch).
    if run:
        return _packed.get(weight, ("triton-pack-runs", run), lambda w: pack_runs(w, run))
    return _packed.get(weight, ("triton-pack", groups, merge), lambda w: pack(w, groups, merge))
