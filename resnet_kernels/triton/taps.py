"""Decode table of the FLAT_K reduction walk (conv_kernel.py).

When BLOCK_K does not divide the channel count C (the 7x7 stem: C = 3), the
kernel walks the reduction index kk = (r*S + s)*C + c flattened, and every
column of an A tile has its own tap. Decoding kk in the kernel costs integer
divisions by the runtime C for every element a thread loads (33 divisions
per thread per k tile on sm_90, ~2,100 instructions per 64x64x64 k tile
against ~130 cycles of tensor work). The decode depends on the conv's shape
only, so it is a table, built once per shape on the device:

    table[0, kk] = r * dil_h,  table[1, kk] = s * dil_w,  table[2, kk] = c

(int32, R*S*C columns), and the kernel loads three BLOCK_K vectors per k tile
instead.
"""

from __future__ import annotations

import torch

_tables: dict = {}  # (R, S, C, dil_h, dil_w, device) -> int32 (3, R*S*C) tensor


def tap_table(R: int, S: int, C: int, dil_h: int, dil_w: int, device: torch.device) -> torch.Tensor:
    """(3, R*S*C) int32 on `device`: the r*dil_h, s*dil_w and c of each reduction column (cached)."""
    key = (R, S, C, dil_h, dil_w, str(device))
    table = _tables.get(key)
    if table is None:
        kk = torch.arange(R * S * C, dtype=torch.int64)
        tap = kk // C
        table = torch.stack([tap // S * dil_h, tap % S * dil_w, kk % C]).to(torch.int32).to(device)
        _tables[key] = table
    return table
