"""Weight transforms shared by the triton and cuda backends, and their cache.

A kernel often wants the weight in another form than the model holds it: the
triton backend packs it as a GEMM B operand, the cuda backend wants it KRSC
(channels_last), channel-padded or with narrow groups merged. These transforms
cost a copy of the weight, and the weight is a parameter reused by every
forward, so the result is cached per weight version.

Key: (data_ptr, shape, strides, dtype, device) of the source weight, plus a
caller's `tag` naming the transform and its arguments. Each entry holds the
weight's version counter when it was transformed, a weak reference to the
source tensor and the result. An in-place update (optimizer step,
load_state_dict, `with torch.no_grad(): w.mul_(...)`) bumps the version: the
next call recomputes and replaces the entry. The entry is dropped when its
source tensor is freed, so a new tensor at a recycled address can never hit a
stale entry. Tensors without a version counter (created under
torch.inference_mode) are transformed on every call. Not seen: writes through
`w.data` (a separate version counter), as with any autograd-version-based cache.

A hit is Python bookkeeping only (no kernel, no host sync), so it is safe
inside CUDA graph capture; a miss launches the transform, so warm a model up
(one forward) before capturing it.
"""

from __future__ import annotations

import weakref
from typing import Callable, Hashable

import torch


class WeightCache:
    """transform(weight) per (weight version, tag); see the module docstring."""

    def __init__(self) -> None:
        self._entries: dict[tuple, tuple[int, weakref.ref, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def get(
        self, weight: torch.Tensor, tag: Hashable, transform: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """transform(weight), computed once per (weight version, tag)."""
        try:
            version = weight._version
        except RuntimeError:  # inference tensors have no version counter: nothing safe to key on
            return transform(weight)
        key = (weight.data_ptr(), tuple(weight.shape), weight.stride(), weight.dtype, weight.device, tag)
        entry = self._entries.get(key)
        if entry is not None and entry[0] == version and entry[1]() is not None:
            return entry[2]
        value = transform(weight)
        # One entry per (source, tag): a new version replaces the old copy.
        self._entries[key] = (version, weakref.ref(weight, lambda ref, key=key: self._drop(key, ref)), value)
        return value

    def _drop(self, key: tuple, ref: weakref.ref) -> None:
        """Weak-reference callback: forget `key` unless a newer tensor has taken it over."""
        entry = self._entries.get(key)
        if entry is not None and entry[1] is ref:
            del self._entries[key]


@torch.no_grad()
def block_diagonal(weight: torch.Tensor, groups: int, merge: int) -> torch.Tensor:
    """A (K, C/G, R, S) weight of a conv with G groups as the exactly equivalent
    (K, merge*C/G, R, S) weight of a conv with G/merge groups.

    Adjacent groups are merged: merged group i holds original groups
    i*merge .. i*merge+merge-1 as diagonal blocks, zeros elsewhere (an output
    channel of original group j sees only that group's inputs). Merged groups
    are contiguous channel ranges, so no channel index of x, the output or the
    per-channel vectors changes; the conv does `merge` times the arithmetic.
    Returns `weight` itself for merge == 1; otherwise a new contiguous tensor.
    """
    if merge == 1:
        return weight
    k, cg, r, s = weight.shape
    kg, gm = k // groups, groups // merge
    out = weight.new_zeros(gm, merge, kg, merge, cg, r, s)
    # out[i, j, :, j] (block j of merged group i) is original group i*merge + j;
    # diagonal() views exactly those blocks (its diagonal dimension goes last).
    out.diagonal(dim1=1, dim2=3).copy_(weight.reshape(gm, merge, kg, cg, r, s).permute(0, 2, 3, 4, 5, 1))
    return out.reshape(k, merge * cg, r, s)
